//! Tests that rerun themselves as child processes with a different environment, e.g.
//! `RAYON_NUM_THREADS`, which candle reads per call and an in-process rayon pool cannot vary.
//!
//! The pattern: the test checks for a marker variable; when it is set it prints `KEY value`
//! lines and returns; otherwise it calls [`run_self`] once per setting and compares
//! [`printed`] values.

use std::process::Command;

/// Runs test `test` of the current test binary alone, with `marker` set to 1 and `env` applied
/// (`CANDLE_NUM_THREADS` removed, so `RAYON_NUM_THREADS` decides), and returns its stdout.
/// Panics with the child's output when it fails.
pub fn run_self(test: &str, marker: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(marker, "1").env_remove("CANDLE_NUM_THREADS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the test binary as a child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child with {env:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The value the child printed on its line `KEY value`.
pub fn printed(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')).map(str::trim))
        .unwrap_or_else(|| panic!("no `{key}` line in {stdout}"))
        .to_string()
}
