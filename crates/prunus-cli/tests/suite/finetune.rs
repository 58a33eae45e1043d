//! `prunus finetune` end to end on a small seeded model (two SmolLM2-shaped blocks from
//! `prunus synth`, f32) and the real corpus: a run killed with SIGKILL and resumed from its
//! last checkpoint writes the same weights, bit for bit, as an uninterrupted run (with 2
//! threads against 1, so the thread count is covered too); bad input gets one line and leaves
//! nothing behind.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{fails_with, prunus};

fn ok(args: &[&str]) {
    let run = prunus(args);
    assert!(run.status.success(), "prunus {args:?}: {}", String::from_utf8_lossy(&run.stderr));
}

fn tensors(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let model = prunus_model::LlamaModel::from_hf_dir(dir, &candle_core::Device::Cpu).unwrap();
    model.named_tensors().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect())).collect()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const RUN: [&str; 14] = ["finetune", "--method", "platon", "--sparsity", "0.5", "--steps", "10", "--batch", "2", "--window", "32", "--eval", "none", "--lr"];

#[test]
fn a_killed_run_resumed_from_its_checkpoint_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]);
    let args = |out: &str| -> Vec<String> {
        let mut v: Vec<String> = RUN.iter().map(|s| s.to_string()).collect();
        v.extend(["1e-3", "--model", &p("syn"), "--out", &p(out), "--report", &p(&format!("{out}.json"))].map(String::from));
        v
    };
    let whole = Command::new(env!("CARGO_BIN_EXE_prunus")).args(args("whole")).env("RAYON_NUM_THREADS", "1").output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));

    let mut killed_args = args("killed");
    killed_args.extend(["--checkpoints", &p("ck"), "--checkpoint-every", "2"].map(String::from));
    let mut child = Command::new(env!("CARGO_BIN_EXE_prunus")).args(&killed_args).env("RAYON_NUM_THREADS", "2").spawn().unwrap();
    let started = Instant::now();
    while !dir.path().join("ck").join("step-00000004").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its fourth step's checkpoint");
        assert!(started.elapsed() < Duration::from_secs(300), "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run must still be going when it is killed");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!dir.path().join("killed").exists(), "a killed run writes no model");

    // Without --resume the directory is refused; with it the run continues.
    fails_with(&prunus(&killed_args.iter().map(String::as_str).collect::<Vec<_>>()), &["already holds", "--resume"]);
    let mut resume = killed_args.clone();
    resume.push("--resume".into());
    let resumed = Command::new(env!("CARGO_BIN_EXE_prunus")).args(&resume).env("RAYON_NUM_THREADS", "2").output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(tensors(&dir.path().join("killed")), tensors(&dir.path().join("whole")), "resumed weights differ");

    let (a, b) = (report(&dir.path().join("whole.json")), report(&dir.path().join("killed.json")));
    let losses = |r: &serde_json::Value| r["training"]["log"].as_array().unwrap().iter().map(|s| s["loss"].as_f64().unwrap().to_bits()).collect::<Vec<_>>();
    assert_eq!(losses(&a), losses(&b));
    assert_eq!(losses(&a).len(), 10);
    assert!(b["training"]["resumed_from"].as_u64().unwrap() >= 4, "{}", b["training"]);
    assert_eq!(a["threads"], b["threads"]);
    assert_eq!(a["sparsity"]["realised"], b["sparsity"]["realised"]);
    assert!((a["sparsity"]["realised"].as_f64().unwrap() - 0.5).abs() < 1e-3, "{}", a["sparsity"]);
    assert_eq!(a["method"]["kind"], "training");

    // Resuming with another learning rate is another run: refused, naming the difference.
    let mut other = resume.clone();
    let i = other.iter().position(|s| s == "1e-3").unwrap();
    other[i] = "2e-3".into();
    let i = other.iter().position(|s| s.ends_with("killed")).unwrap();
    other[i] = p("other");
    fails_with(&prunus(&other.iter().map(String::as_str).collect::<Vec<_>>()), &["another run", "lr.peak"]);
    assert!(!dir.path().join("other").exists());
    // So is another model (same shape, another seed).
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--seed", "1", "--out", &p("syn1")]);
    let mut other = resume.clone();
    let i = other.iter().position(|s| *s == p("syn")).unwrap();
    other[i] = p("syn1");
    let i = other.iter().position(|s| s.ends_with("killed")).unwrap();
    other[i] = p("other");
    fails_with(&prunus(&other.iter().map(String::as_str).collect::<Vec<_>>()), &["another run", "run.model."]);
    assert!(!dir.path().join("other").exists());
}

#[test]
fn bad_input_gets_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let out = p("out");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--method", "gmp", "--sparsity", "1.0"], &["--sparsity 1", "[0, 1)"]),
        (&["--method", "gmp"], &["--sparsity S"]),
        (&["--sparsity", "0.5"], &["--sparsity needs a training-time method"]),
        (&["--method", "wanda", "--sparsity", "0.5"], &["layer-wise", "prunus prune"]),
        (&["--method", "gmp", "--sparsity", "0.5", "--prune-start", "60", "--prune-end", "50"], &["pruning start", "must not come after its end"]),
        (&["--method", "gmp", "--sparsity", "0.5", "--prune-end", "100"], &["must be a step of the run"]),
        (&["--lr", "0"], &["learning rate", "positive"]),
        (&["--batch", "0"], &["batch", "at least 1"]),
        (&["--batch", "2", "--accumulate", "3"], &["accumulate = 3"]),
        (&["--decay", "step"], &["--decay step"]),
        (&["--resume"], &["--checkpoints DIR"]),
        (&["--checkpoints", out.as_str()], &["--checkpoints", "--out overlap"]),
        (&["--method", "mgpp", "--sparsity", "0.5", "--config", "{\"sigma0\": 1.0}"], &["sigma0 < sigma1"]),
    ];
    for (extra, needles) in cases {
        let args = [&["finetune", "--out", out.as_str()][..], extra].concat();
        fails_with(&prunus(&args), needles);
        assert!(!dir.path().join("out").exists(), "{extra:?} wrote its output");
    }
    // A NaN loss (a learning rate that blows the weights up) stops the run at its step and
    // keeps the last good checkpoint.
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]);
    let run = prunus(&["finetune", "--model", &p("syn"), "--steps", "4", "--batch", "1", "--window", "16", "--lr", "1e30", "--eval", "none", "--checkpoints", &p("ck"), "--checkpoint-every", "1", "--out", &out]);
    fails_with(&run, &["of step 1 is", "training stopped", "step-00000001"]);
    assert!(dir.path().join("ck").join("step-00000001").exists() && !dir.path().join("out").exists());
}

#[test]
fn swe_prunes_a_fine_tune_once_from_its_history() {
    // Systematic Weight Evaluation on a fine-tuning run: the history recorded at every
    // checkpoint boundary, one pruning at the last step (a one-shot schedule).
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]);
    let syn = p("syn");
    let run = |initial: &str, extra: &[&str]| {
        let mut args = vec!["finetune", "--model", &syn, "--method", "swe", "--sparsity", "0.6", "--initial-sparsity", initial, "--prune-start", "3", "--prune-end", "3", "--steps", "4", "--batch", "1", "--window", "32", "--checkpoint-every", "1", "--eval", "none", "--lr", "1e-3"];
        args.extend(extra);
        prunus(&args)
    };
    let report_path = p("r.json");
    let out = run("0.6", &["--config", r#"{"keep":3}"#, "--report", &report_path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&dir.path().join("r.json"));
    let realised = r["sparsity"]["realised"].as_f64().unwrap();
    assert!((realised - 0.6).abs() < 1e-3, "{realised}");
    let log = r["training"]["log"].as_array().unwrap();
    assert_eq!(log[2]["sparsity"].as_f64().unwrap(), 0.0, "dense before the last step");
    assert_eq!(log[3]["notes"]["history_checkpoints"], 3);
    assert!(log[3]["notes"]["mask_threshold"].as_f64().unwrap() > 0.0);
    // k beyond the ring is refused before anything runs.
    let never = p("never");
    fails_with(&run("0.6", &["--config", r#"{"keep":2,"k":3}"#, "--out", &never]), &["k = 3 must be between 1 and keep = 2"]);
    assert!(!dir.path().join("never").exists());
    // A one-shot schedule must prune to its final sparsity at once.
    fails_with(&run("0.3", &[]), &["one-shot schedule"]);
}
