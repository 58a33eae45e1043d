//! The validated plan of a `prunus prune` run (the high-level arguments).
//!
//! [`PrunePlan::new`] turns the flags as typed ([`PruneArgs`]) into what the run does, checking
//! everything that can be checked without the model: the method and its configuration, the
//! flags of its kind (a layer-wise method refuses the structured flags and the other way
//! round), the pattern or the reduction target, the task list, the evaluation options and the
//! calibration size. Defaults that depend on the method's kind are chosen here, once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use prunus_core::layerwise::Target;
use prunus_core::registry::{Factory, MethodRegistration};
use prunus_core::structured::{self, StructuredOptions, UnitKind};
use prunus_core::{Built, LayerwiseMethod, Pattern, PatternKind, StatKind, StructuredMethod, registry};
use prunus_eval::tasks::{self, TaskSpec};

use crate::args::{EvalOpts, OutFormat, PruneArgs};
use crate::{eval, outputs};

/// What a `prunus prune` run does.
pub struct PrunePlan {
    /// The model argument (`default`, a GGUF file or a Hugging Face directory).
    pub model: String,
    /// The method's registration.
    pub registration: &'static MethodRegistration,
    /// The configured method with what it prunes.
    pub method: MethodPlan,
    /// Tasks evaluated after pruning.
    pub specs: Vec<TaskSpec>,
    /// How they are evaluated (`report` checked by [`PrunePlan::check_outputs`]).
    pub opts: EvalOpts,
    /// The calibration data, if the method uses any.
    pub calibration: Option<CalibrationPlan>,
    /// Windows of agreement with the dense model (0: none).
    pub agreement_windows: usize,
    /// Where the pruned model is saved (checked by [`PrunePlan::check_outputs`]).
    pub out: Option<PathBuf>,
    /// One block at a time ([`prune::stream`](crate::prune)); then `out` is set, the method
    /// is layer-wise and nothing is evaluated.
    pub stream: bool,
    /// Whether `out` stores the block linears in the sparse-bitmask layout.
    pub sparse_out: bool,
    /// Whether the pruned model is timed packed against dense (`--speed`).
    pub speed: bool,
}

/// A method of one kind, with what it is asked for.
pub enum MethodPlan {
    /// A layer-wise method at a pattern.
    Layerwise {
        /// The method.
        method: Built<dyn LayerwiseMethod>,
        /// The pattern (unstructured at a sparsity, or N:M) with the method's comparison group,
        /// checked against everything but the model's linears (the pipeline's preflight does
        /// those).
        target: Target,
    },
    /// A structured method at a reduction target.
    Structured {
        /// The method.
        method: Built<dyn StructuredMethod>,
        /// Unit, target and protected layers.
        options: StructuredOptions,
        /// Windows of the dense-vs-pruned timing (0: none).
        speed_windows: usize,
    },
}

/// How many calibration windows of how many tokens, drawn with which seed.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationPlan {
    /// Windows.
    pub samples: usize,
    /// Tokens per window the method sees.
    pub seq_len: usize,
    /// Seed of the sampler.
    pub seed: u64,
}

impl PrunePlan {
    /// Checks `args` (see the module docs) and plans the run.
    pub fn new(args: PruneArgs) -> Result<Self> {
        let registration = registry::find(&args.method)?;
        let config: serde_json::Value = match &args.config {
            Some(text) => serde_json::from_str(text).with_context(|| format!("--config is not valid JSON: {text}"))?,
            None => serde_json::Value::Null,
        };
        let default_eval = if args.stream { "none" } else { "ppl:wiki-vital" };
        let specs = |args: &PruneArgs| tasks::parse_list(args.eval.as_deref().unwrap_or(default_eval), args.opts.limit);
        let (method, specs, needs_data, calibration) = match registration.factory {
            Factory::Layerwise(_) => {
                if args.structure.any() {
                    bail!(
                        "--reduction, --unit, --protect-first, --protect-last and --speed-windows are for structured methods; `{}` is layer-wise: use --sparsity and --pattern",
                        args.method
                    );
                }
                let method = registration.build_layerwise(&config)?;
                let target = Target::check(method.name, &*method, &pattern(args.pattern.as_deref(), args.sparsity)?, [])?;
                let needs_data = method.stats() > StatKind::None;
                let calibration = (args.calib_samples.unwrap_or(32), args.calib_seq_len.unwrap_or(args.opts.seq_len));
                (MethodPlan::Layerwise { method, target }, specs(&args)?, needs_data, calibration)
            }
            Factory::Training(_) => {
                bail!("`{}` is a training-time method: it prunes while the model trains, so run it with `prunus finetune --method {}`", registration.name, registration.name);
            }
            Factory::Structured(_) => {
                let method = registration.build_structured(&config)?;
                let s = &args.structure;
                let Some(target) = s.reduction else {
                    bail!("`{}` is a structured method: give --reduction R, the share of the parameters outside the embeddings to remove (e.g. 0.2)", registration.name);
                };
                structured::check_target(target)?;
                if args.sparsity.is_some() || args.pattern.is_some() {
                    bail!("--sparsity and --pattern are for layer-wise methods; `{}` is structured: use --reduction (and --unit)", registration.name);
                }
                let unit: UnitKind = s.unit.as_deref().unwrap_or("layer").parse()?;
                let budget: prunus_core::structured::BudgetBase = match s.budget_of.as_deref() {
                    Some(b) => b.parse().map_err(|e: String| anyhow::anyhow!("--budget-of: {e}"))?,
                    None => Default::default(),
                };
                let options = StructuredOptions {
                    unit,
                    target,
                    budget,
                    protect_first: s.protect_first.unwrap_or(1),
                    protect_last: s.protect_last.unwrap_or(1),
                };
                let specs = specs(&args)?;
                // `--eval none` asks for no evaluation: no timing either, unless asked for.
                let speed_windows = s.speed_windows.unwrap_or(if specs.is_empty() { 0 } else { 4 });
                let needs_data = method.needs_calibration();
                let calibration = (args.calib_samples.unwrap_or(10), args.calib_seq_len.unwrap_or(64));
                (MethodPlan::Structured { method, options, speed_windows }, specs, needs_data, calibration)
            }
        };
        eval::check_opts(&args.opts)?;
        let (samples, seq_len) = calibration;
        if needs_data && (samples == 0 || seq_len < 2) {
            bail!(
                "method `{}` needs calibration data: --calib-samples must be at least 1 and --calib-seq-len at least 2 (got {samples} and {seq_len})",
                registration.name
            );
        }
        let agreement_windows = args.agreement_windows.unwrap_or(if specs.is_empty() { 0 } else { 8 });
        if args.out_format != OutFormat::Dense && args.out.is_none() {
            bail!("--out-format sparse-bitmask says how --out is written: give --out DIR");
        }
        if args.stream {
            if !matches!(method, MethodPlan::Layerwise { .. }) {
                bail!("--stream is for layer-wise methods; `{}` is structured (it needs the whole model for its gradients)", registration.name);
            }
            if args.out.is_none() {
                bail!("--stream writes each pruned block as it goes: give --out DIR");
            }
            if !specs.is_empty() || agreement_windows > 0 {
                bail!("--stream evaluates nothing (the pruned model is never whole in memory): leave out --eval and --agreement-windows, and evaluate --out with `prunus eval` if it fits");
            }
            if args.speed {
                bail!("--stream never holds the whole pruned model, so --speed cannot time it: time --out with `prunus generate`");
            }
            if args.out_format != OutFormat::Dense {
                bail!("--stream writes dense shards; --out-format sparse-bitmask needs the run without --stream");
            }
        }
        Ok(PrunePlan {
            model: args.model,
            registration,
            method,
            specs,
            opts: args.opts,
            calibration: needs_data.then_some(CalibrationPlan { samples, seq_len, seed: args.seed }),
            agreement_windows,
            out: args.out,
            sparse_out: args.out_format == OutFormat::SparseBitmask,
            speed: args.speed,
            stream: args.stream,
        })
    }

    /// Checks `--out` and `--report` against the resolved model path, before any work, and
    /// replaces them with the absolute paths that will be written.
    pub fn check_outputs(&mut self, model: &Path) -> Result<()> {
        if let Some(out) = self.out.take() {
            self.out = Some(outputs::check_out_dir(&out, model)?);
        }
        if let Some(report) = self.opts.report.take() {
            self.opts.report = Some(outputs::check_report(&report, model, self.out.as_deref())?);
        }
        Ok(())
    }

    /// Whether windows of `--seq-len` run besides the tasks (dense agreement, timing).
    pub fn extra_windows(&self) -> bool {
        let speed = matches!(self.method, MethodPlan::Structured { speed_windows, .. } if speed_windows > 0);
        speed || self.agreement_windows > 0
    }
}

/// The pattern of `--pattern` and `--sparsity` (unstructured at 0.5 when neither is given).
fn pattern(pattern: Option<&str>, sparsity: Option<f64>) -> Result<Pattern> {
    Ok(match pattern.unwrap_or("unstructured").parse::<PatternKind>()? {
        PatternKind::Unstructured => Pattern::unstructured(sparsity.unwrap_or(0.5))?,
        PatternKind::NM { n, m } => {
            let pattern = Pattern::n_m(n, m)?;
            if let Some(s) = sparsity {
                prunus_core::pattern::check_sparsity(s)?;
                if (s - pattern.sparsity()).abs() > 1e-12 {
                    bail!("--sparsity {s} contradicts --pattern {n}:{m}, which removes {n} of every {m} weights ({}); leave --sparsity out", pattern.sparsity());
                }
            }
            pattern
        }
    })
}
