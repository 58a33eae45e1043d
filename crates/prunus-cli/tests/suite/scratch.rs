//! `prunus train` and `prunus sweep` end to end on a tiny model and the real Shakespeare
//! corpus: the same seed gives the same weights, log and sweep bit for bit with 1 and 2
//! threads; the history is required and bounded; bad input gets one line and writes nothing.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{fails_with, prunus};

fn run_with(threads: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunus")).args(args).env("RAYON_NUM_THREADS", threads).output().unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const TRAIN: [&str; 18] = ["--layers", "2", "--hidden", "32", "--heads", "2", "--steps", "16", "--batch", "4", "--window", "32", "--warmup", "2", "--checkpoint-every", "4", "--eval-windows", "4"];
const KEEP3: [&str; 2] = ["--config", r#"{"keep":3}"#];

fn train(dir: &Path, name: &str, threads: &str, extra: &[&str]) -> Output {
    let run = dir.join(name);
    let mut args = vec!["train", "--run", run.to_str().unwrap()];
    args.extend(TRAIN);
    args.extend(extra);
    run_with(threads, &args)
}

fn bits(report: &serde_json::Value, key: &str) -> Vec<u64> {
    report["rows"].as_array().unwrap().iter().map(|r| r[key].as_f64().unwrap_or(f64::NAN).to_bits()).collect()
}

#[test]
fn training_and_sweeping_are_bit_identical_across_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    ok(train(dir.path(), "a", "1", &KEEP3));
    ok(train(dir.path(), "b", "2", &KEEP3));
    let (a, b) = (std::fs::read(dir.path().join("a/model/model.safetensors")).unwrap(), std::fs::read(dir.path().join("b/model/model.safetensors")).unwrap());
    assert_eq!(a, b, "trained weights differ between 1 and 2 threads");
    let (ta, tb) = (json(&dir.path().join("a/train.json")), json(&dir.path().join("b/train.json")));
    let log = |t: &serde_json::Value, k: &str| t["log"].as_array().unwrap().iter().map(|r| r[k].as_f64().unwrap().to_bits()).collect::<Vec<_>>();
    assert_eq!(log(&ta, "loss"), log(&tb, "loss"));
    assert_eq!(log(&ta, "grad_norm"), log(&tb, "grad_norm"));
    let evals = |t: &serde_json::Value| t["evals"].as_array().unwrap().iter().map(|r| r["value"].as_f64().unwrap().to_bits()).collect::<Vec<_>>();
    assert_eq!(evals(&ta), evals(&tb));
    assert_eq!(ta["evals"].as_array().unwrap().len(), 4, "a validation loss at every boundary");
    let first = ta["log"][0]["loss"].as_f64().unwrap();
    assert!((first - (ta["data"]["vocab"].as_f64().unwrap()).ln()).abs() < 0.3, "an untrained model is near uniform: {first}");
    // The ring keeps 3 of the 4 checkpoints: 3 x the block linears in f32.
    assert_eq!(ta["history_bytes"].as_u64().unwrap(), 3 * 4 * ta["prunable"].as_u64().unwrap());
    assert!(dir.path().join("a/model/tokenizer.json").is_file());

    let sweep = |run: &str, threads: &str, report: &str| {
        let (r, rep) = (dir.path().join(run), dir.path().join(report));
        ok(run_with(threads, &["sweep", "--run", r.to_str().unwrap(), "--sparsities", "0.3,0.7", "--retrain-steps", "3", "--calib-samples", "4", "--report", rep.to_str().unwrap()]))
    };
    let printed = sweep("a", "1", "sa.json");
    sweep("b", "2", "sb.json");
    let (sa, sb) = (json(&dir.path().join("sa.json")), json(&dir.path().join("sb.json")));
    for key in ["validation_loss", "retrained_loss", "realised", "threshold"] {
        assert_eq!(bits(&sa, key), bits(&sb, key), "{key}");
    }
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap().to_bits();
    assert_eq!(f(&sa, "dense_retrained_loss"), f(&sb, "dense_retrained_loss"));
    assert_eq!(f(&sa, "dense_validation_loss"), ta["final_validation_loss"].as_f64().unwrap().to_bits(), "the sweep's dense loss is the run's");
    let rows = sa["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "6 rules x 2 sparsities");
    assert_eq!(sa["history"], serde_json::json!([2, 3, 4]));
    for r in rows {
        let (target, realised) = (r["target"].as_f64().unwrap(), r["realised"].as_f64().unwrap());
        assert!((realised - target).abs() < 0.02, "{r}");
        assert!(r["validation_loss"].as_f64().unwrap().is_finite());
        if r["rule"] == "swe" {
            // One rate for the model: the tensors end at different sparsities.
            let per: Vec<f64> = r["per_tensor"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let spread = per.iter().cloned().fold(f64::MIN, f64::max) - per.iter().cloned().fold(f64::MAX, f64::min);
            assert!(spread > 0.0, "{per:?}");
            assert!(r["threshold"].as_f64().unwrap() > 0.0);
        }
    }
    assert!(String::from_utf8_lossy(&printed.stdout).contains("swe-sqrt"));

    // By rate: the realised sparsity grows with the rate.
    let rep = dir.path().join("rates.json");
    ok(prunus(&["sweep", "--run", dir.path().join("a").to_str().unwrap(), "--rules", "swe,tensor-magnitude", "--rates", "0.5,1.5", "--retrain-steps", "0", "--report", rep.to_str().unwrap()]));
    let r = json(&rep);
    let realised: Vec<f64> = r["rows"].as_array().unwrap().iter().map(|x| x["realised"].as_f64().unwrap()).collect();
    assert!(realised[0] < realised[1] && realised[2] < realised[3], "{realised:?}");
    assert!(r["rows"][0]["retrained_loss"].is_null());

    // Bad input: one line each, nothing written.
    let a = dir.path().join("a");
    let a = a.to_str().unwrap();
    let bad = dir.path().join("bad.json");
    let bad_s = bad.to_str().unwrap();
    fails_with(&prunus(&["sweep", "--run", a, "--k", "4", "--report", bad_s]), &["--k 4 is larger than the 3 checkpoints the run kept"]);
    fails_with(&prunus(&["sweep", "--run", a, "--rates", "-1", "--rules", "swe", "--report", bad_s]), &["--rates: -1 must be a positive number"]);
    fails_with(&prunus(&["sweep", "--run", dir.path().join("nothing").to_str().unwrap(), "--report", bad_s]), &["no finished `prunus train` run"]);
    assert!(!bad.exists());
    ok(train(dir.path(), "plain", "2", &["--method", "none"]));
    fails_with(&train(dir.path(), "plain", "2", &["--method", "none"]), &["is not empty", "--resume"]);
    fails_with(&prunus(&["sweep", "--run", dir.path().join("plain").to_str().unwrap(), "--report", bad_s]), &["recorded no weight history"]);
    fails_with(&train(dir.path(), "x", "2", &["--method", "wanda"]), &["`wanda` is a layer-wise method"]);
    fails_with(&train(dir.path(), "y", "2", &["--corpus", "c4"]), &["--corpus c4"]);
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}
