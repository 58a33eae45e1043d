//! `prunus generate`: greedy text from the default model and from a 2:4-pruned copy (packed
//! as bitmaps, or as 2:4 on request), the same tokens with 1 and 2 threads, seeded sampling
//! that repeats, the timing and format fields, and one clear line for bad input; `prunus prune
//! --out-format sparse-bitmask --speed` (a smaller checkpoint with the same weights, and the
//! report's packed timing).

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

    // A 2:4-pruned copy, saved dense and saved sparse (timed packed against dense on the way):
    // auto packs every block linear as a bitmap (a bit per weight and the kept values, fewer
    // bytes than 2:4's byte of position per kept value), 2:4 on request.
    let dir = tempfile::tempdir().unwrap();
    let (out, sparse, report) = (dir.path().join("pruned"), dir.path().join("sparse"), dir.path().join("r.json"));
    let prune = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["prune", "--method", "magnitude", "--pattern", "2:4", "--eval", "none", "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let p = prunus(&args);
        assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    };
    prune(&out, &[]);
    prune(&sparse, &["--out-format", "sparse-bitmask", "--speed", "--report", report.to_str().unwrap()]);
    let model = out.to_str().unwrap();
    let packed = json(&[&prompt[..], &["--model", model]].concat());
    assert_eq!(packed["formats"], serde_json::json!([{"format": "bitmap", "linears": 210}]), "{packed}");
    let (bytes, dense_bytes) = (packed["linear_bytes"].as_u64().unwrap(), packed["linear_dense_bytes"].as_u64().unwrap());
    assert!(bytes * 16 < dense_bytes * 9, "half the values and a bit per weight: {bytes} of {dense_bytes}");
    let nm = json(&[&prompt[..], &["--model", model, "--packing", "2:4"]].concat());
    assert_eq!(nm["formats"][0]["format"], "2:4");
    assert_eq!(nm["linear_bytes"].as_u64().unwrap() * 8, dense_bytes * 5, "2:4 keeps half the values (4 bytes) and a byte of position each");
    assert_eq!(json(&[&prompt[..], &["--model", model, "--packing", "csr"]].concat())["formats"][0]["format"], "csr");

    // The sparse checkpoint: smaller on disk, the same weights (the same perplexity to the bit),
    // and the report's timing of packed against dense.
    let size = |d: &std::path::Path| std::fs::metadata(d.join("model.safetensors")).unwrap().len();
    assert!(size(&sparse) * 10 < size(&out) * 7, "{} vs {}", size(&sparse), size(&out));
    let ppl = |d: &std::path::Path| {
        let r = d.with_extension("eval.json");
        let e = prunus(&["eval", "--model", d.to_str().unwrap(), "--task", "ppl:wiki-vital", "--max-windows", "1", "--report", r.to_str().unwrap()]);
        assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        r["evaluations"][0]["value"].as_f64().unwrap().to_bits()
    };
    assert_eq!(ppl(&out), ppl(&sparse));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let p = &r["packed"];
    assert_eq!(p["formats"], "210 bitmap", "{p}");
    for k in ["decode_tokens_per_s", "eval_tokens_per_s", "first_token_s"] {
        assert!(p[k]["dense"].as_f64().unwrap() > 0.0 && p[k]["packed"].as_f64().unwrap() > 0.0, "{k}: {p}");
    }
    for k in ["decode_speedup_median", "eval_speedup_median"] {
        assert!(p[k].as_f64().is_some_and(|v| v > 0.0 && v.is_finite()), "{k}: {p}");
    }
    assert!(p["disk_bytes"]["packed"].as_f64().unwrap() < p["disk_bytes"]["dense"].as_f64().unwrap());
    assert_eq!(r["output"], sparse.to_str().unwrap());

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
