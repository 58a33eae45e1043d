//! `cargo xtask new-plugin` in a scratch copy of the workspace: a method of each kind,
//! scaffolded, builds, registers, is listed beside the others by prunus-all and passes its
//! kind's conformance suite on its first build; an out-of-tree one builds as a shared library
//! that the real `prunus` lists with `--plugin`. Bad names, taken names and existing
//! directories are one line each, with nothing written.
//!
//! The scratch build shares this build's target directory, so that only the workspace's own
//! crates compile again (their paths differ), not the third-party ones.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{prunus, root};

/// Copies the checkout's sources (not its build outputs, results or git data) to `to`.
fn copy_sources(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if [".git", "target", "results", "bench-runs", ".prunus", "fuzz-logs"].iter().any(|n| name == *n) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_sources(&src, &dst);
        } else if entry.file_type().unwrap().is_file() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `cargo xtask new-plugin ARGS` with `scratch` as the workspace.
fn new_plugin(scratch: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("new-plugin")
        .args(args)
        .env("CARGO_MANIFEST_DIR", scratch.join("xtask"))
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// A one-line failure containing `needle`.
fn refused(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted; stderr: {stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn scaffolded_methods_build_register_and_pass_their_conformance_suites() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("ws");
    std::fs::create_dir(&scratch).unwrap();
    copy_sources(&root(), &scratch);
    let manifest_before = std::fs::read(scratch.join("Cargo.toml")).unwrap();

    // Refusals first: nothing is written by any of them.
    refused(new_plugin(&scratch, &["Bad_Name", "--kind", "layerwise"]), "plugin name `Bad_Name`");
    refused(new_plugin(&scratch, &["magnitude", "--kind", "layerwise"]), "plugins/magnitude exists already");
    let x = dir.path().join("x");
    refused(new_plugin(&scratch, &["struct-x", "--kind", "structured", "--out-of-tree", x.to_str().unwrap()]), "--out-of-tree writes a layer-wise method");
    assert_eq!(std::fs::read(scratch.join("Cargo.toml")).unwrap(), manifest_before, "a refusal wrote to the workspace");
    assert!(!x.exists());

    for kind in ["layerwise", "structured", "training"] {
        ok(new_plugin(&scratch, &[&format!("t-{kind}"), "--kind", kind]));
    }
    refused(new_plugin(&scratch, &["t-layerwise", "--kind", "layerwise"]), "exists already");
    // A name a method has, in a directory of another name.
    std::fs::rename(scratch.join("plugins/t-training"), scratch.join("plugins/renamed")).unwrap();
    let manifest = std::fs::read_to_string(scratch.join("Cargo.toml")).unwrap().replace("plugins/t-training", "plugins/renamed");
    std::fs::write(scratch.join("Cargo.toml"), manifest).unwrap();
    refused(new_plugin(&scratch, &["t-training", "--kind", "training"]), "a method called `t-training` exists already");

    // Build and test them, and prunus-all's listing (what `prunus list` shows).
    let mut test = cargo();
    test.current_dir(&scratch).args(["test", "--release", "--offline", "-p", "prunus-t-layerwise", "-p", "prunus-t-structured", "-p", "prunus-t-training", "-p", "prunus-all", "--", "--nocapture"]);
    let out = ok(test.output().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (name, kind) in [("t-layerwise", "layer-wise"), ("t-structured", "structured"), ("t-training", "training")] {
        assert!(stdout.contains(&format!("listed: {name} {kind} prunus-{name}")), "{name} is not listed:\n{stdout}");
    }
    assert!(stdout.contains("test it_registers_and_passes_the_training_conformance_suite ... ok"), "{stdout}");

    // Out of tree: a shared library the real prunus lists.
    let ext = dir.path().join("ext");
    ok(new_plugin(&scratch, &["t-ext", "--kind", "layerwise", "--out-of-tree", ext.to_str().unwrap()]));
    refused(new_plugin(&scratch, &["t-ext", "--kind", "layerwise", "--out-of-tree", ext.to_str().unwrap()]), "is not empty");
    let target = ext.join("target");
    ok(cargo().current_dir(&ext).args(["build", "--release", "--offline", "--target-dir"]).arg(&target).env_remove("CARGO_TARGET_DIR").output().unwrap());
    let lib = target.join("release").join(format!("{}prunus_t_ext{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let out = ok(Command::new(prunus()).arg("--plugin").arg(&lib).arg("list").output().unwrap());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.lines().any(|l| l.trim_start().starts_with("t-ext") && l.contains("[loaded from")), "{listed}");
}
