//! PLATON's windowed importance averages against the numpy transcription of the PTMGP code
//! (`scripts/reference/mgpp_reference.py`, fixture `fixtures/train/mgpp.json`), bit for bit
//! in f32, driven through the method's hooks; and its state round-trips.

use prunus_core::Method;
use prunus_core::training::{ParamInfo, PruneSchedule, RunInfo, StepInfo, TrainingMethod};
use prunus_platon::{Config, Platon};
use serde_json::Value;

fn fixture() -> Value {
    let path = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/reference/fixtures/train/mgpp.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture")).unwrap()
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()).collect()
}

#[test]
fn importance_averages_match_the_code_bit_for_bit() {
    let p = &fixture()["platon"];
    let (ws, gs) = (rows(&p["weights"]), rows(&p["grads"]));
    let params = vec![
        ParamInfo { name: "norm".into(), shape: vec![2], prunable: false },
        ParamInfo { name: "w".into(), shape: vec![2, 3], prunable: true },
    ];
    let schedule = PruneSchedule { initial_sparsity: 0.0, final_sparsity: 0.5, start: 0, end: 20, interval: p["interval"].as_u64().unwrap() };
    let run = RunInfo { params: &params, candidates: &[1], total_steps: 30, n_examples: 100, schedule: Some(&schedule) };
    let config = Config { beta1: p["beta1"].as_f64().unwrap(), beta2: p["beta2"].as_f64().unwrap() };
    let mut m = Platon::new(config).unwrap();
    m.begin(&run).unwrap();
    for (t, (w, g)) in ws.iter().zip(&gs).enumerate() {
        let mut weights = vec![vec![1.0, 1.0], w.clone()];
        m.after_update(&StepInfo { step: t as u64, lr: 1e-3 }, &mut weights, &[vec![0.0, 0.0], g.clone()]).unwrap();
    }
    let score = m.scores(&StepInfo { step: 8, lr: 1e-3 }, &[], 1).unwrap();
    let want: Vec<f32> = p["score"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    assert_eq!(score.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{score:?} vs {want:?}");
    assert!(m.scores(&StepInfo { step: 8, lr: 1e-3 }, &[], 0).is_err(), "not a candidate");

    let mut again = Platon::new(config).unwrap();
    again.begin(&run).unwrap();
    again.restore(m.state()).unwrap();
    assert_eq!(again.scores(&StepInfo { step: 8, lr: 1e-3 }, &[], 1).unwrap(), score);
    let mut other = Platon::new(config).unwrap();
    other.begin(&RunInfo { candidates: &[0], ..run }).unwrap();
    assert!(other.restore(m.state()).unwrap_err().to_string().contains("does not fit"));
}

#[test]
fn bad_betas_are_refused() {
    assert!(Platon::new(Config { beta1: 1.0, beta2: 0.5 }).unwrap_err().to_string().contains("beta1"));
    assert!(Platon::new(Config { beta1: 0.5, beta2: 0.0 }).unwrap_err().to_string().contains("beta2"));
}
