//! `cargo xtask bench` on the smoke fine-tuning matrix (benchmarks/finetune_smoke.toml) with
//! the real `prunus` binary and model: every training cell runs `prunus finetune`, its record
//! keeps the per-step log, and the tables gain the fine-tuning section, MGPP's claim table and
//! the loss curves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn prunus() -> PathBuf {
    if let Some(p) = std::env::var_os("PRUNUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("prunus")
}

#[test]
fn the_smoke_matrix_trains_records_and_tabulates() {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    let root = manifest.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench"])
        .arg(root.join("benchmarks/finetune_smoke.toml"))
        .arg("--out")
        .arg(&out)
        .arg("--prunus")
        .arg(prunus())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let cells: Vec<serde_json::Value> = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert_eq!(cells.len(), 5, "dense, dense-finetune, mgpp, gmp, platon");
    for c in &cells {
        let label = c["cell"]["label"].as_str().unwrap();
        if label == "dense" {
            assert!(c["report"]["training"].is_null());
            continue;
        }
        let t = &c["report"]["training"];
        assert_eq!(t["log"].as_array().unwrap().len(), 4, "{label}");
        assert_eq!(t["evals"].as_array().unwrap().len(), 2, "{label}: every 2 steps");
        let sparsity = c["report"]["sparsity"]["realised"].as_f64();
        match label {
            "dense-finetune" => assert!(sparsity.is_none() && c["report"]["method"].is_null()),
            _ => assert!((sparsity.unwrap() - 0.5).abs() < 1e-3, "{label}: {sparsity:?}"),
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for needle in ["## Fine-tuning", "Against `gmp`", "gmp / mgpp", "gmp / platon", "dense-finetune", "plot_loss_50.svg", "plot_heldout_50.svg"] {
        assert!(summary.contains(needle), "summary.md lacks {needle}:\n{summary}");
    }
    assert!(out.join("plot_loss_50.svg").exists() && out.join("plot_heldout_50.svg").exists());
}
