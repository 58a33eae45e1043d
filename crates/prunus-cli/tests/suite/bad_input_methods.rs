//! `prunus prune` refuses method-level bad input (no calibration data for a method that needs
//! it, a pattern the method does not support, an invalid method config) with one `error:` line
//! and exit status 1, before anything expensive: the model path given does not exist, so an
//! error about the input proves that the model was never resolved, let alone loaded.

use std::process::{Command, Output};

use crate::common;

const NO_MODEL: &str = "/nonexistent/prunus-test/model.gguf";

fn prune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prunus"))
        .args(["prune", "--model", NO_MODEL, "--eval", "none"])
        .args(args)
        .output()
        .expect("run prunus")
}

/// Exit status 1 and exactly one `error` line on stderr, containing every needle, and not about
/// the (missing) model.
fn refused_early(out: &Output, needles: &[&str]) {
    common::fails_with_status_1(out, needles);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("nonexistent"), "the model was looked at before the input was checked: {stderr}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn methods_that_need_data_refuse_zero_calibration_samples() {
    for (method, config) in [("sparsegpt", "null"), ("wanda", "null"), ("swiftprune", r#"{"x_source": "activation_norm"}"#)] {
        let out = prune(&["--method", method, "--config", config, "--calib-samples", "0"]);
        refused_early(&out, &[&format!("method `{method}` needs calibration data"), "--calib-samples", "at least 1"]);
    }
    // Magnitude uses no data, so zero calibration samples are fine: it gets as far as the model.
    let out = prune(&["--method", "magnitude", "--calib-samples", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("nonexistent") && !stderr.contains("calib"), "{stderr}");
}

#[test]
fn unsupported_patterns_name_the_method_and_the_pattern() {
    // SparseGPT's N:M groups may not straddle two lazy batches: M must divide the blocksize.
    let out = prune(&["--method", "sparsegpt", "--config", r#"{"blocksize": 6}"#, "--pattern", "2:4"]);
    refused_early(&out, &["`sparsegpt`", "does not support", "2:4", "blocksize 6"]);
}

#[test]
fn invalid_method_configs_are_refused_before_the_model() {
    let out = prune(&["--method", "sparsegpt", "--config", r#"{"percdamp": -0.5}"#]);
    refused_early(&out, &["`sparsegpt`", "percdamp"]);
    let out = prune(&["--method", "swiftprune", "--config", r#"{"selection": "argsort"}"#]);
    refused_early(&out, &["`swiftprune`", "unknown variant `argsort`"]);
}
