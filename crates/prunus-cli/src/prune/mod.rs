//! `prunus prune`: the run every method kind shares.
//!
//! Plan the run from the flags ([`PrunePlan`]), resolve the model and check the outputs, load
//! it and bound the work by its size and the machine's memory, tokenize the corpus, take the
//! dense side of the agreement metrics, prune (one module per method kind: [`layerwise`],
//! [`structured`]), evaluate the pruned model, save it, and report. With `--stream`, [`stream`]
//! runs a layer-wise method a block at a time instead.

mod layerwise;
mod stream;
mod structured;

use std::time::Instant;

use anyhow::Result;
use prunus_eval::report::{CalibrationInfo, Evaluation, Seconds, SparsityInfo, StructureInfo};
use prunus_eval::tasks::TaskSpec;

use crate::agreement::DenseAgreement;
use crate::args::{EvalOpts, PruneArgs};
use crate::plan::{MethodPlan, PrunePlan};
use crate::session::{self, Session};
use crate::{budget, eval, outputs, report};

/// What a method kind's pruning step hands back for the report and the summary line.
struct Pruned {
    /// What was asked, as printed after the method's name (`2:4`, `layer`).
    asked: String,
    /// The summary before the perplexity (`realised sparsity ... over ... weights`).
    summary: String,
    /// The summary after it (`; pruning 3.1 s ...`).
    tail: String,
    sparsity: SparsityInfo,
    structure: Option<StructureInfo>,
    calibration: Option<CalibrationInfo>,
}

/// `prunus prune`.
pub fn run(args: PruneArgs) -> Result<()> {
    let started = Instant::now();
    // Everything that can be checked before loading is checked first.
    let mut plan = PrunePlan::new(args)?;
    if plan.stream {
        return stream::run(plan, started);
    }
    let model_path = session::resolve(&plan.model)?;
    plan.check_outputs(&model_path.path)?;

    let mut session = session::load_resolved(&plan.model, model_path)?;
    if let MethodPlan::Structured { options, .. } = &plan.method {
        prunus_core::structured::check(&session.model, options)?; // the unit kind, protection and budget fit this model
    }
    eval::check_budget(&session, &plan.opts, &plan.specs, plan.extra_windows())?;
    if let Some(c) = &plan.calibration {
        let cfg = session.model.config();
        match &plan.method {
            MethodPlan::Layerwise { .. } => budget::check_calibration(cfg, c.samples, c.seq_len, plan.opts.batch_size)?,
            MethodPlan::Structured { .. } => budget::check_gradients(cfg, session.model.n_params(), c.samples, c.seq_len)?,
        }
    }
    let tokens = session::wiki_vital_tokens(&session.tokenizer, plan.calibration.is_some())?;
    let mut seconds = Seconds { load: session.seconds, tokenize: tokens.seconds, ..Seconds::default() };

    // The dense side of the agreement metrics, after every check and before any weight changes
    // (with `--eval none`, only when --agreement-windows asks for it).
    let mut agreement = match plan.agreement_windows {
        0 => None,
        k => Some(DenseAgreement::new(&session, &tokens.eval, &plan.opts, k)?),
    };

    let pruned = match &plan.method {
        MethodPlan::Layerwise { method, target } => layerwise::prune(&mut session.model, method, target, plan.calibration, &tokens.calib, plan.opts.batch_size, &mut seconds)?,
        MethodPlan::Structured { method, options, speed_windows } => {
            let speed = structured::Speed { windows: *speed_windows, seq_len: plan.opts.seq_len, batch_size: plan.opts.batch_size };
            structured::prune(&mut session, method, options, plan.calibration, &tokens, speed, &mut seconds)?
        }
    };

    let out = plan.out.as_deref().map(|p| (p, plan.sparse_out));
    let evaluations = evaluate_and_save(&session, &plan.specs, &tokens.eval, &plan.opts, out, agreement.as_mut(), &mut seconds)?;
    seconds.total = started.elapsed().as_secs_f64();

    let (method, config) = match &plan.method {
        MethodPlan::Layerwise { method, .. } => (method.name, method.config.clone()),
        MethodPlan::Structured { method, .. } => (method.name, method.config.clone()),
    };
    let mut report = report::base("prune", &session.info, evaluations, seconds);
    report.method = Some(report::method_info(plan.registration, config));
    report.sparsity = Some(pruned.sparsity);
    report.calibration = pruned.calibration;
    report.output = plan.out.as_ref().map(|p| p.display().to_string());
    report.structure = pruned.structure;
    if plan.speed {
        let pb = crate::session::spinner("timing the model packed against dense");
        let packed = crate::speed::measure(&session.model, &tokens.eval, plan.opts.seq_len)?;
        pb.finish_and_clear();
        let mib = |b: f64| b / (1u64 << 20) as f64;
        eprintln!(
            "packed ({}, {}): decode {:.1} tok/s (dense {:.1}; median ratio {:.2}x), evaluation {:.0} tok/s (dense {:.0}; median ratio {:.2}x), {:.0} MiB on disk as sparse-bitmask (dense {:.0})",
            packed.formats,
            packed.isa,
            packed.decode_tokens_per_s.packed,
            packed.decode_tokens_per_s.dense,
            packed.decode_speedup_median.unwrap_or(f64::NAN),
            packed.eval_tokens_per_s.packed,
            packed.eval_tokens_per_s.dense,
            packed.eval_speedup_median.unwrap_or(f64::NAN),
            mib(packed.disk_bytes.packed),
            mib(packed.disk_bytes.dense)
        );
        report.packed = Some(packed);
    }

    let ppl = report.evaluations.iter().find(|e| e.metric == "ppl").map(|e| format!(", {} = {:.4}", e.task, e.value)).unwrap_or_default();
    println!("{} {method} {}: {}{ppl}{}", session.info.label, pruned.asked, pruned.summary, pruned.tail);
    outputs::write_report(plan.opts.report.as_deref(), &report)
}

/// The end of a pruning run: the tasks on the pruned model, the dense-agreement metrics (whose
/// dense pass ran before pruning and counts as evaluation time), then saving to `out` if given
/// (with the block linears in the sparse-bitmask layout when its flag is set).
fn evaluate_and_save(
    session: &Session,
    specs: &[TaskSpec],
    eval_tokens: &[u32],
    opts: &EvalOpts,
    out: Option<(&std::path::Path, bool)>,
    mut agreement: Option<&mut DenseAgreement>,
    seconds: &mut Seconds,
) -> Result<Vec<Evaluation>> {
    let t = Instant::now();
    let mut evaluations = eval::run_tasks(session, specs, eval_tokens, opts, agreement.as_deref_mut())?;
    if let Some(a) = agreement.as_deref_mut() {
        evaluations.extend(a.finish(session, eval_tokens)?);
    }
    seconds.evaluation = t.elapsed().as_secs_f64() + agreement.as_ref().map_or(0.0, |a| a.dense_seconds);
    if let Some((out, sparse)) = out {
        seconds.save = session::save(session, out, sparse)?;
    }
    Ok(evaluations)
}
