//! Helpers shared by the CLI's integration tests (each test file includes this module; a file
//! may use only some of them).
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the built `prunus` binary with `args`.
pub fn prunus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunus")).args(args).output().expect("run prunus")
}

/// Asserts failure with exactly one `error:` line containing every `needle`.
pub fn fails_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, got success; stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "expected one error line, got: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "error line lacks `{n}`: {}", errors[0]);
    }
}

/// [`fails_with`], and the exit status is exactly 1 (prunus's own errors, not clap's usage 2).
pub fn fails_with_status_1(out: &Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    fails_with(out, needles);
}
