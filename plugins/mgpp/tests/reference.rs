//! MGPP's arithmetic against the numpy transcription of the PTMGP code
//! (`scripts/reference/mgpp_reference.py`, fixture `fixtures/train/mgpp.json`): the prior's
//! gradient and spike weight, the spike/slab threshold (also against the test vectors the
//! project's notes computed from the code), the slab weight's annealing, the cubic schedule
//! and the global threshold mask.

use prunus_core::Method;
use prunus_core::training::{PruneAction, PruneSchedule, global_mask};
use prunus_mgpp::{Config, Mgpp, Prior, annealed_lambda, prior_threshold};
use serde_json::Value;

fn fixture() -> Value {
    let path = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/reference/fixtures/train/mgpp.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

#[test]
fn the_prior_gradient_and_spike_weight_match_the_code() {
    for case in fixture()["prior"].as_array().unwrap() {
        let prior = Prior { sigma0: f(&case["sigma0"]), sigma1: f(&case["sigma1"]), lambda: f(&case["lambda"]) };
        let n = f(&case["n"]);
        for ((theta, g), p0) in case["theta"].as_array().unwrap().iter().zip(case["grad"].as_array().unwrap()).zip(case["p0"].as_array().unwrap()) {
            let (ours, p) = (prior.grad(f(theta), n), prior.p0(f(theta)));
            assert!(close(ours, f(g), 1e-9), "{prior:?} n {n} theta {theta}: {ours} vs {g}");
            assert!(close(p, f(p0), 1e-9), "{prior:?} theta {theta}: p0 {p} vs {p0}");
        }
    }
}

#[test]
fn the_spike_slab_threshold_matches_the_code_and_the_notes_test_vectors() {
    let cases = fixture()["thresholds"].as_array().unwrap().clone();
    let notes = [4.942e-5, 5.406e-5, 5.818e-5, 6.201e-5, 1.487e-4, 1.510e-4];
    assert_eq!(cases.len(), notes.len());
    for (case, want) in cases.iter().zip(notes) {
        let p = Prior { sigma0: f(&case["sigma0"]), sigma1: f(&case["sigma1"]), lambda: f(&case["lambda"]) };
        let ours = prior_threshold(&p);
        assert!(close(ours, f(&case["threshold"]), 1e-12), "{p:?}: {ours}");
        assert!(close(ours, want, 1e-3), "{p:?}: {ours} vs the notes' {want}");
    }
}

#[test]
fn the_annealing_and_the_cubic_schedule_match_the_code() {
    let s = &fixture()["schedule"];
    let config = Config { lambda: f(&s["lambda"]), alpha_i: f(&s["alpha_i"]), alpha_f: f(&s["alpha_f"]), ..Config::default() };
    let schedule = PruneSchedule {
        initial_sparsity: f(&s["initial"]),
        final_sparsity: f(&s["final"]),
        start: s["t0"].as_u64().unwrap(),
        end: s["t_end"].as_u64().unwrap(),
        interval: s["interval"].as_u64().unwrap(),
    };
    for step in s["steps"].as_array().unwrap() {
        let t = step["t"].as_u64().unwrap();
        let lambda = annealed_lambda(&config, t, schedule.start, schedule.end);
        assert!(close(lambda, f(&step["lambda"]), 1e-14), "t {t}: lambda {lambda} vs {}", step["lambda"]);
        assert!(close(schedule.sparsity(t), f(&step["sparsity"]), 1e-14), "t {t}: sparsity {}", schedule.sparsity(t));
        assert_eq!(schedule.action(t) != PruneAction::None, step["prunes"].as_bool().unwrap(), "t {t}: {:?}", schedule.action(t));
    }
}

#[test]
fn the_global_mask_matches_kthvalue_and_strictly_below() {
    let m = &fixture()["mask"];
    let scores: Vec<Vec<f32>> = m["scores"].as_array().unwrap().iter().map(|s| s.as_array().unwrap().iter().map(|v| f(v) as f32).collect()).collect();
    for case in m["cases"].as_array().unwrap() {
        let (masks, stats) = global_mask(&["a", "b"], &scores, f(&case["sparsity"])).unwrap();
        assert_eq!(stats.threshold, Some(f(&case["threshold"]) as f32));
        let want: Vec<Vec<bool>> = serde_json::from_value(case["keep"].clone()).unwrap();
        assert_eq!(masks, want, "sparsity {}", case["sparsity"]);
    }
}

#[test]
fn bad_priors_are_refused_with_the_reason() {
    let e = |c: Config| Mgpp::new(c).unwrap_err().to_string();
    assert!(e(Config { sigma0: 0.1, ..Config::default() }).contains("sigma0 < sigma1"));
    assert!(e(Config { lambda: 1.0, ..Config::default() }).contains("lambda = 1"));
    assert!(e(Config { alpha_f: 0.0, ..Config::default() }).contains("lambda * alpha_f"));
}
