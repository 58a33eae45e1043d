//! `cargo xtask bench` on the smoke from-scratch matrix (benchmarks/swe_smoke.toml) with the
//! real `prunus` binary and corpus: one training run and one sweep, the tables, plots and
//! verdict; a rerun reuses both steps; `--update` into a results directory, then a rerun
//! compares equal with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prunus() -> PathBuf {
    if let Some(p) = std::env::var_os("PRUNUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("prunus")
}

fn bench(out: &Path, extra: &[&str]) -> Output {
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    let root = manifest.parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench")
        .arg(root.join("benchmarks/swe_smoke.toml"))
        .arg("--out")
        .arg(out)
        .arg("--prunus")
        .arg(prunus())
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_smoke_matrix_trains_sweeps_and_tabulates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let committed = dir.path().join("results");
    let c = committed.to_str().unwrap();
    let run = bench(&out, &["--compare-with", c, "--update"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    for f in ["swe_smoke.csv", "swe_smoke.parquet", "summary.md", "loss_vs_sparsity.svg", "training_curve.svg", "manifest.json", "sweep.json", "train.json"] {
        assert!(committed.join(f).is_file(), "{f} not in the results");
    }
    let csv = std::fs::read_to_string(out.join("swe_smoke.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6 * 3 * 2, "header, 6 rules x 3 sparsities x (with, without retraining)");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for needle in ["## The claim", "**swe**", "swe + retrain", "## swe against tensor-magnitude", "Realised sparsity", "characters/s"] {
        assert!(summary.contains(needle), "summary.md lacks {needle}:\n{summary}");
    }
    // A rerun does neither step again and equals the committed results.
    let again = bench(&out, &["--compare-with", c]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("is done (same flags); using it") && !stderr.contains("prunus train"), "{stderr}");
    assert!(stderr.contains("0 outside the relative tolerance"), "{stderr}");
    // Sharding a from-scratch matrix is refused in one line.
    let sharded = bench(&out, &["--shard", "1/2"]);
    assert!(!sharded.status.success());
    assert!(String::from_utf8_lossy(&sharded.stderr).contains("has no shards"));
}
