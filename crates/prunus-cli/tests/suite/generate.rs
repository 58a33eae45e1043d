//! `prunus generate`: greedy text from the default model and from a 2:4-pruned copy packed as
//! 2:4, the same tokens with 1 and 2 threads, seeded sampling that repeats, the timing and
//! format fields, and one clear line for bad input.

use crate::common;
use common::{fails_with_status_1 as fails_with, prunus};

fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["generate", "--json"];
    all.extend_from_slice(args);
    let out = prunus(&all);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn generates_times_and_packs_a_pruned_model() {
    let prompt = ["--prompt", "The river flows through the valley and", "--max-tokens", "6"];
    let dense = json(&[&prompt[..], &["--threads", "2"]].concat());
    assert!(dense["prompt_tokens"].as_u64().unwrap() > 3 && dense["generated_tokens"] == 6, "{dense}");
    assert!(!dense["text"].as_str().unwrap().is_empty());
    assert_eq!(dense["formats"], serde_json::json!([{"format": "dense", "linears": 210}]), "an unpruned model stays dense");
    assert!(dense["seconds"]["time_to_first_token"].as_f64().unwrap() > 0.0 && dense["decode_tokens_per_second"].as_f64().unwrap() > 0.0);
    // Greedy decoding does not depend on the thread count.
    assert_eq!(json(&[&prompt[..], &["--threads", "1"]].concat())["text"], dense["text"]);

    // A 2:4-pruned copy: every block linear packed as 2:4, 5/8 of the dense bytes.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned");
    let p = prunus(&["prune", "--method", "magnitude", "--pattern", "2:4", "--eval", "none", "--out", out.to_str().unwrap()]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let model = out.to_str().unwrap();
    let packed = json(&[&prompt[..], &["--model", model]].concat());
    assert_eq!(packed["formats"], serde_json::json!([{"format": "2:4", "linears": 210}]), "{packed}");
    let (bytes, dense_bytes) = (packed["linear_bytes"].as_u64().unwrap(), packed["linear_dense_bytes"].as_u64().unwrap());
    assert_eq!(bytes * 8, dense_bytes * 5, "2:4 keeps half the values (4 bytes) and a byte of position each");
    assert_eq!(json(&[&prompt[..], &["--model", model, "--packing", "csr"]].concat())["formats"][0]["format"], "csr");

    // Sampling repeats under a seed.
    let sample = |seed: &str| json(&[&prompt[..], &["--temperature", "0.8", "--seed", seed]].concat())["text"].clone();
    assert_eq!(sample("3"), sample("3"));
}

#[test]
fn bad_generate_input_is_one_line() {
    for (args, needle) in [
        (&["--prompt", "x", "--packing", "3:2"][..], "unknown packing `3:2`"),
        (&["--prompt", "x", "--max-tokens", "0"][..], "--max-tokens 0"),
        (&["--prompt", "x", "--temperature", "-1"][..], "--temperature -1"),
        (&["--prompt", "x", "--threads", "0"][..], "--threads 0"),
        (&["--prompt", ""][..], "the prompt has no tokens"),
        (&["--prompt", "x", "--packing", "2:4"][..], "2:4"),
    ] {
        let mut all = vec!["generate"];
        all.extend_from_slice(args);
        fails_with(&prunus(&all), &[needle]);
    }
}
