//! `cargo xtask bench` with a method from a shared library: the matrix's `plugins` key loads
//! the out-of-tree Rust example (examples/plugins/magnitude-rs, built here by cargo), whose
//! cells run, are recorded and tabulated like the built-in magnitude's, with the same numbers;
//! the library's sha256 is part of its cells' keys. A missing library is one line naming the
//! matrix line, with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{prunus, root};

/// The example's cdylib, built by cargo in a build directory of its own (the one
/// prunus-testkit's `plugins::examples` uses too).
fn example_library() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"));
    let dir = target.join("plugin-examples/cargo");
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release", "--lib", "--locked", "--manifest-path"])
        .arg(root().join("examples/plugins/magnitude-rs/Cargo.toml"))
        .arg("--target-dir")
        .arg(&dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("release").join(format!("{}prunus_magnitude_rs{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

fn matrix(library: &Path) -> String {
    format!(
        r#"
description = "a method from a shared library beside the built-in it reimplements"
plugins = ["{}"]
patterns = ["unstructured"]
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
name = "magnitude-rs"
"#,
        library.display()
    )
}

fn bench(matrix: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).arg("bench").arg(matrix).arg("--out").arg(out).arg("--prunus").arg(prunus()).output().unwrap()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn a_matrix_loads_a_plugin_and_its_cells_equal_the_builtins() {
    let library = example_library();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("plug.toml");
    std::fs::write(&m, matrix(&library)).unwrap();
    let out = dir.path().join("out");
    let run = bench(&m, &out);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mut by_label = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out.join("cells")).unwrap() {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        by_label.insert(r["cell"]["label"].as_str().unwrap().to_string(), r);
    }
    assert_eq!(by_label.keys().collect::<Vec<_>>(), ["dense", "magnitude", "magnitude-rs"]);
    let (builtin, loaded) = (&by_label["magnitude"], &by_label["magnitude-rs"]);
    assert_eq!(loaded["cell"]["library"], sha256(&library), "the library is part of the cell");
    assert!(builtin["cell"].get("library").is_none(), "built-in cells keep their keys");
    assert_eq!(loaded["report"]["method"]["library"]["sha256"], sha256(&library));
    let evals = |r: &serde_json::Value| r["report"]["evaluations"].clone();
    assert!(evals(builtin).as_array().is_some_and(|e| e.iter().any(|e| e["metric"] == "ppl" && e["value"].as_f64().is_some())), "{}", evals(builtin));
    assert_eq!(evals(builtin), evals(loaded), "the same pruned model: the same perplexity and agreement with the dense model");
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("magnitude-rs"), "{summary}");
    // A rerun finds every cell done.
    let again = bench(&m, &out);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && stderr.contains("0 cells run"), "{stderr}");
}

#[test]
fn a_missing_plugin_library_names_the_matrix_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("plug.toml");
    std::fs::write(&m, matrix(Path::new("no/such/libplugin.so"))).unwrap();
    let out = dir.path().join("out");
    let run = bench(&m, &out);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("plug.toml:3:") && stderr.contains("libplugin.so not found"), "{stderr}");
    assert!(!out.exists(), "nothing written");
}
