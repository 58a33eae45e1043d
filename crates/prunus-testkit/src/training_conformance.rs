//! The conformance suite of training-time plugins, on a model the plugin provides (a tiny
//! synthetic Llama from prunus-model, which this crate does not link), driven by prunus-train's
//! loop on seeded token windows.
//!
//! Checks: the run reaches the schedule's final sparsity over the prunable candidates, and
//! parameters that are not candidates stay dense; two runs end bit-identical (weights, losses,
//! per-step sparsities), and so do runs inside rayon pools of 1 and 2 threads; a run killed
//! after a checkpoint and resumed from it ends bit-identical to an uninterrupted one (the
//! method's state round-trips through the checkpoint).

use prunus_core::training::{PruneSchedule, TrainableModel, TrainingMethod};
use prunus_core::{Built, Error};
use prunus_train::{AdamWConfig, Decay, Io, Outcome, Progress, Schedule, StepRecord, TrainConfig, train};

const SEQ: usize = 12;
const STEPS: u64 = 12;

/// The suite's schedule: a 20% jump at step 2, cubic to 60% at step 9, every 2 steps.
pub fn schedule() -> PruneSchedule {
    PruneSchedule { initial_sparsity: 0.2, final_sparsity: 0.6, start: 2, end: 9, interval: 2 }
}

fn config() -> TrainConfig {
    TrainConfig {
        steps: STEPS,
        batch: 4,
        accumulate: 2,
        seq_len: SEQ,
        lr: Schedule::new(3e-3, 2, STEPS, Decay::Linear, 0.1).expect("a valid schedule"),
        adamw: AdamWConfig::default(),
        clip: Some(1.0),
        prune: Some(schedule()),
        eval_every: 0,
        checkpoint_every: 3,
    }
}

/// Runs the loop; `vocab` bounds the token ids, `fail_at` makes the batch of that step fail.
fn run<M: TrainableModel>(
    model: &mut M,
    method: &mut dyn TrainingMethod,
    vocab: usize,
    dir: Option<&std::path::Path>,
    resume: bool,
    fail_at: Option<u64>,
) -> prunus_train::Result<Outcome> {
    let batch = move |t: u64| {
        if Some(t) == fail_at {
            return Err(Error::Invalid(format!("stopped at step {t}")));
        }
        let mut rng = prunus_core::rng::SplitMix64::new(1000 + t);
        Ok((0..4 * SEQ).map(|_| (rng.next_u64() % vocab as u64) as u32).collect())
    };
    let mut on_step = |_: &StepRecord, _: &Progress| {};
    let io = Io { batch: &batch, eval: None, on_step: &mut on_step, checkpoints: dir, resume };
    train(model, Some(method), &config(), serde_json::json!({"suite": "training conformance"}), 1000, io)
}

fn bits<M: TrainableModel>(m: &M) -> Vec<Vec<u32>> {
    m.read_params().expect("parameters").iter().map(|p| p.iter().map(|x| x.to_bits()).collect()).collect()
}

fn trace(o: &Outcome) -> Vec<(u64, u64)> {
    o.log.iter().map(|r| (r.loss.to_bits(), r.sparsity.to_bits())).collect()
}

/// Runs the suite for the method `make` builds (a fresh one per run) on copies of `model`,
/// whose token ids are below `vocab`; panics (a test failure) naming the method and check.
pub fn check<M: TrainableModel + Clone + Send>(make: &dyn Fn() -> Built<dyn TrainingMethod>, model: &M, vocab: usize) {
    let name = make().name;
    let fresh = || (model.clone(), make());
    let (mut m, mut method) = fresh();
    let out = run(&mut m, &mut *method.method, vocab, None, false, None).unwrap_or_else(|e| panic!("{name}: the run failed: {e}"));

    // The schedule's sparsity is reached over the candidates; the rest stays dense.
    let last = out.log.last().expect("a log").sparsity;
    assert!((last - schedule().final_sparsity).abs() < 0.01, "{name}: final sparsity {last}, the schedule's is {}", schedule().final_sparsity);
    let params = m.params();
    let weights = m.read_params().expect("parameters");
    let (mut zeros, mut total) = (0usize, 0usize);
    for (p, w) in params.iter().zip(&weights) {
        let z = w.iter().filter(|x| **x == 0.0).count();
        if p.prunable {
            (zeros, total) = (zeros + z, total + w.len());
        } else {
            assert_eq!(z, 0, "{name}: {} is not a candidate but has {z} zeros", p.name);
        }
    }
    let realised = zeros as f64 / total.max(1) as f64;
    assert!((realised - schedule().final_sparsity).abs() < 0.01, "{name}: the candidates are {realised} sparse");

    // Determinism: again, and in pools of 1 and 2 threads.
    let (mut again, mut method) = fresh();
    let out2 = run(&mut again, &mut *method.method, vocab, None, false, None).expect("a second run");
    assert_eq!(bits(&again), bits(&m), "{name}: two runs end with different weights");
    assert_eq!(trace(&out2), trace(&out), "{name}: two runs log different losses or sparsities");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a pool");
        let (mut t, mut method) = fresh();
        pool.install(|| run(&mut t, &mut *method.method, vocab, None, false, None)).expect("a run in a pool");
        assert_eq!(bits(&t), bits(&m), "{name}: {threads} thread(s) end with different weights");
    }

    // Killed after the checkpoint of step 9 (past the frozen mask), resumed: the same end.
    let dir = std::env::temp_dir().join(format!("prunus-training-conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a checkpoint directory");
    let (mut broken, mut method) = fresh();
    let e = run(&mut broken, &mut *method.method, vocab, Some(&dir), false, Some(10)).expect_err("the batch of step 10 fails");
    assert!(e.to_string().contains("stopped at step 10"), "{name}: {e}");
    let (mut resumed, mut method) = fresh();
    let rest = run(&mut resumed, &mut *method.method, vocab, Some(&dir), true, None).unwrap_or_else(|e| panic!("{name}: resuming failed: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(rest.resumed_from, Some(9), "{name}: resumed from the wrong step");
    assert_eq!(bits(&resumed), bits(&m), "{name}: a resumed run ends with different weights (is the method's state in its checkpoint?)");
    assert_eq!(trace(&rest), trace(&out), "{name}: a resumed run logs differently");
}
