//! The training loop on prunus-model's tiny synthetic Llama: it learns, it prunes on the
//! schedule to the final sparsity with every method, accumulation is the big batch's mean,
//! a run resumed from a checkpoint ends bit-identical to an uninterrupted one (method state
//! included), and bad input (a checkpoint of another run, a NaN loss) stops with one message.

use prunus_core::Method;
use prunus_core::training::{PruneSchedule, TrainableModel, TrainingMethod};
use prunus_model::config::LlamaConfig;
use prunus_model::llama::LlamaModel;
use prunus_train::{AdamWConfig, Decay, Io, Outcome, Schedule, StepRecord, TrainConfig, TrainError, train};

const SEQ: usize = 12;

fn model() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap()
}

/// Step t's windows: a fixed pseudo-random function of (t, window, position); ids < 64.
fn batch_of(batch: usize) -> impl Fn(u64) -> prunus_core::Result<Vec<u32>> {
    move |t| Ok((0..batch * SEQ).map(|i| ((t as usize * 131 + i * 7 + (i / SEQ) * 13) % 61) as u32).collect())
}

fn config(steps: u64, prune: Option<PruneSchedule>) -> TrainConfig {
    TrainConfig {
        steps,
        batch: 4,
        accumulate: 1,
        seq_len: SEQ,
        lr: Schedule::new(3e-3, 2.min(steps - 1), steps, Decay::Linear, 0.1).unwrap(),
        adamw: AdamWConfig::default(),
        clip: Some(1.0),
        prune,
        eval_every: 3,
        checkpoint_every: 3,
    }
}

fn schedule() -> PruneSchedule {
    PruneSchedule { initial_sparsity: 0.2, final_sparsity: 0.6, start: 2, end: 9, interval: 2 }
}

fn method(name: &str) -> Box<dyn TrainingMethod> {
    match name {
        "gmp" => Box::new(prunus_gmp::Gmp::new(Default::default()).unwrap()),
        "mgpp" => Box::new(prunus_mgpp::Mgpp::new(prunus_mgpp::Config { sigma0: 1e-6, ..Default::default() }).unwrap()),
        "platon" => Box::new(prunus_platon::Platon::new(Default::default()).unwrap()),
        other => panic!("{other}"),
    }
}

fn run(m: &mut LlamaModel, method: Option<&mut dyn TrainingMethod>, cfg: &TrainConfig, dir: Option<&std::path::Path>, resume: bool, fail_at: Option<u64>) -> Result<Outcome, TrainError> {
    let inner = batch_of(cfg.batch);
    let batch = move |t: u64| {
        if Some(t) == fail_at {
            return Err(prunus_core::Error::Invalid(format!("killed at step {t}")));
        }
        inner(t)
    };
    let mut on_step = |_: &StepRecord, _: &prunus_train::Progress| {};
    // A stand-in for held-out perplexity: a number that depends on every weight.
    let mut eval = |m: &LlamaModel| -> prunus_core::Result<f64> { Ok(m.read_params()?.iter().flatten().map(|&x| f64::from(x) * f64::from(x)).sum()) };
    let io = Io { batch: &batch, eval: Some(&mut eval), on_step: &mut on_step, checkpoints: dir, resume };
    train(m, method, cfg, serde_json::json!({"model": "tiny seed 7"}), 1000, io)
}

fn bits(m: &LlamaModel) -> Vec<Vec<u32>> {
    m.read_params().unwrap().iter().map(|p| p.iter().map(|x| x.to_bits()).collect()).collect()
}

#[test]
fn a_dense_fine_tune_lowers_the_loss_on_its_data() {
    let mut m = model();
    let cfg = TrainConfig { lr: Schedule::new(1e-2, 0, 30, Decay::Constant, 1.0).unwrap(), checkpoint_every: 0, ..config(30, None) };
    let out = run(&mut m, None, &cfg, None, false, None).unwrap();
    let (first, last) = (out.log[0].loss, out.log.last().unwrap().loss);
    assert!(last < first * 0.8, "loss {first} -> {last}");
    assert!(out.log.iter().all(|r| r.sparsity == 0.0 && r.grad_norm > 0.0));
    assert!(out.tokens_per_s > 0.0);
}

#[test]
fn every_method_reaches_the_final_sparsity_on_the_schedule() {
    for name in ["gmp", "mgpp", "platon"] {
        let mut m = model();
        let mut meth = method(name);
        let out = run(&mut m, Some(&mut *meth), &config(12, Some(schedule())), None, false, None).unwrap();
        assert_eq!(out.log[1].sparsity, 0.0, "{name}: dense before the start");
        assert!(out.log[2].sparsity > 0.15 && out.log[2].sparsity <= 0.2, "{name}: the jump: {}", out.log[2].sparsity);
        for r in &out.log[9..] {
            assert!((r.sparsity - 0.6).abs() < 0.01, "{name} step {}: {}", r.step, r.sparsity);
        }
        if name == "mgpp" {
            assert!(out.log[0].notes.contains_key("lambda") && !out.log[10].notes.contains_key("lambda"), "{name}: prior only until t_end");
        }
        // The candidates (linears) are sparse, the rest dense.
        let params = m.params();
        let w = m.read_params().unwrap();
        for (p, v) in params.iter().zip(&w) {
            let zeros = v.iter().filter(|x| **x == 0.0).count();
            assert_eq!(zeros > 0, p.prunable, "{name}: {} has {zeros} zeros", p.name);
        }
    }
}

#[test]
fn accumulation_gives_the_big_batch_gradient() {
    let cfg = TrainConfig { clip: None, checkpoint_every: 0, lr: Schedule::new(3e-3, 0, 1, Decay::Constant, 1.0).unwrap(), ..config(1, None) };
    let (mut a, mut b) = (model(), model());
    let one = run(&mut a, None, &cfg, None, false, None).unwrap();
    let two = run(&mut b, None, &TrainConfig { accumulate: 2, ..cfg.clone() }, None, false, None).unwrap();
    assert!((one.log[0].loss / two.log[0].loss - 1.0).abs() < 1e-6, "{} vs {}", one.log[0].loss, two.log[0].loss);
    assert!((one.log[0].grad_norm / two.log[0].grad_norm - 1.0).abs() < 1e-5);
    let (wa, wb) = (a.read_params().unwrap(), b.read_params().unwrap());
    let max = wa.iter().zip(&wb).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0f32, f32::max);
    assert!(max < 1e-5, "weights differ by {max}");
}

#[test]
fn a_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    for name in ["gmp", "mgpp", "platon"] {
        let cfg = config(12, Some(schedule()));
        let mut whole = model();
        let full = run(&mut whole, Some(&mut *method(name)), &cfg, None, false, None).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut broken = model();
        // Dies in step 10 (after the checkpoint of step 9, past the frozen mask), then again
        // resumes from scratch: the checkpoint after 9 steps is what the second process reads.
        let e = run(&mut broken, Some(&mut *method(name)), &cfg, Some(dir.path()), false, Some(10)).unwrap_err();
        assert!(e.to_string().contains("killed at step 10"), "{e}");
        let e = run(&mut model(), Some(&mut *method(name)), &cfg, Some(dir.path()), false, None).unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        let mut resumed = model();
        let rest = run(&mut resumed, Some(&mut *method(name)), &cfg, Some(dir.path()), true, None).unwrap();
        assert_eq!(rest.resumed_from, Some(9), "{name}");
        assert_eq!(bits(&resumed), bits(&whole), "{name}: weights differ after resuming");
        let losses = |o: &Outcome| o.log.iter().map(|r| r.loss.to_bits()).collect::<Vec<_>>();
        assert_eq!(losses(&rest), losses(&full), "{name}: the log differs");
        let evals = |o: &Outcome| o.evals.iter().map(|e| (e.steps_done, e.value.to_bits())).collect::<Vec<_>>();
        assert_eq!(evals(&rest), evals(&full), "{name}: the evaluations differ");
        assert_eq!(evals(&full).iter().map(|e| e.0).collect::<Vec<_>>(), [3, 6, 9, 12]);
    }
}

#[test]
fn another_runs_checkpoint_and_a_nan_loss_stop_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(6, Some(schedule_short()));
    run(&mut model(), Some(&mut *method("gmp")), &cfg, Some(dir.path()), false, Some(4)).unwrap_err();
    let other = TrainConfig { lr: Schedule::new(1e-3, 2, 6, Decay::Linear, 0.1).unwrap(), ..cfg.clone() };
    let e = run(&mut model(), Some(&mut *method("gmp")), &other, Some(dir.path()), true, None).unwrap_err().to_string();
    assert!(e.contains("another run") && e.contains("train.lr.peak differs"), "{e}");

    let mut bad = model();
    let mut w = bad.read_params().unwrap();
    w[3][0] = f32::NAN;
    bad.write_params(&w).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = run(&mut bad, None, &config(6, None), Some(dir.path()), false, None).unwrap_err().to_string();
    assert!(e.contains("loss of step 0 is NaN") && e.contains("no checkpoint"), "{e}");
}

fn schedule_short() -> PruneSchedule {
    PruneSchedule { initial_sparsity: 0.2, final_sparsity: 0.5, start: 1, end: 4, interval: 1 }
}

#[test]
fn bad_hyperparameters_are_named() {
    let e = |c: TrainConfig| c.check().unwrap_err().to_string();
    assert!(e(TrainConfig { batch: 0, ..config(6, None) }).contains("batch"));
    assert!(e(TrainConfig { accumulate: 3, ..config(6, None) }).contains("accumulate"));
    assert!(e(config(6, Some(PruneSchedule { start: 5, ..schedule_short() }))).contains("must not come after its end"));
    assert!(e(config(6, Some(PruneSchedule { final_sparsity: 1.0, ..schedule_short() }))).contains("outside [0, 1)"));
    assert!(Schedule::new(0.0, 0, 6, Decay::Linear, 0.0).unwrap_err().to_string().contains("learning rate"));
}
