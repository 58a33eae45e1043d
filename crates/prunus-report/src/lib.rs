//! prunus-report: the run report, everything needed to trace a number back to what produced
//! it.
//!
//! `prunus prune` / `prunus eval` write it as JSON; `cargo xtask bench` keeps it whole in its
//! cell records and `cargo xtask report` builds the tables from it. Both sides use these types,
//! so there is one schema. The crate depends on serde and serde_json only: xtask links it
//! without linking candle or any other prunus crate.
//!
//! The records prunus-core's drivers produce for a report are defined here and used there
//! (per-block seconds, structured iterations and removed units, parameter counts, notes), so
//! each has one definition. The per-layer record of a layer-wise run names prunus-core's
//! comparison group, so it stays a type parameter: `prunus_eval::report` binds it to
//! prunus-core's `LayerRecord` (what the CLI builds); the default here is the record as
//! [`serde_json::Value`], since nothing outside the CLI reads it field by field. A report read
//! with the default serializes back to the same JSON.
//!
//! Reading is lenient: a field that an older report lacks is defaulted (an absent `Option`
//! reads as `None`), so every committed record still parses. Writing follows the field order of the types below and skips
//! nothing but an absent `structure` and empty `notes`.


use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bumped when the report's fields change meaning.
pub const REPORT_VERSION: u32 = 1;

/// Free-form remarks of a method (key: a snake_case name), e.g. `{"damping_retries": 2}`,
/// recorded next to the layer or iteration they describe.
pub type Notes = BTreeMap<String, serde_json::Value>;

/// One run of the CLI. `L`: the per-layer record (see the crate documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport<L = serde_json::Value> {
    /// [`REPORT_VERSION`] of the binary that wrote the report.
    #[serde(default)]
    pub report_version: u32,
    /// `prune` or `eval`.
    #[serde(default)]
    pub command: String,
    /// Version of the `prunus` binary.
    #[serde(default)]
    pub prunus_version: String,
    /// Commit the binary was built from (`unknown` outside a git checkout).
    pub git_commit: String,
    /// Seconds since the Unix epoch when the run started.
    #[serde(default)]
    pub started_unix: u64,
    /// The model that was pruned or evaluated.
    pub model: ModelInfo,
    /// The pruning method, absent for a dense evaluation.
    #[serde(default)]
    pub method: Option<MethodInfo>,
    /// What was pruned (layer-wise), or the removed share (structured); absent for a dense
    /// evaluation.
    pub sparsity: Option<SparsityInfo<L>>,
    /// The calibration windows, for methods that use data.
    #[serde(default)]
    pub calibration: Option<CalibrationInfo>,
    /// Every measured number, with its protocol.
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    /// Wall seconds per stage.
    pub seconds: Seconds,
    /// Peak resident set size of the process (VmHWM), bytes.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Worker threads available to the numeric kernels.
    #[serde(default)]
    pub threads: usize,
    /// Where the pruned model was written, if it was.
    #[serde(default)]
    pub output: Option<String>,
    /// What a structured (model-level) method removed; absent for layer-wise runs and
    /// evaluations. `sparsity` then holds the unit as `pattern` and the requested and
    /// realised share of the parameters outside the embeddings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureInfo>,
    /// How a training run (`prunus finetune`) trained: its configuration, per-step log and
    /// evaluations; absent for other commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainingInfo>,
    /// How fast and how large the pruned model is with packed sparse linears against the same
    /// model dense (`prunus prune --speed`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<PackedSpeed>,
}

/// A number for the dense model and for the same model with packed linears.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DensePacked {
    /// Every linear dense (gemm).
    pub dense: f64,
    /// Each block linear in the format its zeros suit.
    pub packed: f64,
}

/// The pruned model's speed and size on this CPU, dense against packed, measured side by side
/// in one process on the same runtime (`prunus_model::runtime`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackedSpeed {
    /// The instruction set the sparse kernels ran on (`avx512f`, `avx2+fma`, `portable`).
    pub isa: String,
    /// The CPU's model name.
    pub cpu: String,
    /// Block linears per format, e.g. `210 bitmap`.
    pub formats: String,
    /// Tokens per second evaluating windows of `eval_window` tokens from position 0.
    pub eval_tokens_per_s: DensePacked,
    /// Tokens per second decoding one token at a time after a prompt, with the key/value cache.
    pub decode_tokens_per_s: DensePacked,
    /// Seconds to the first token (the prompt's prefill).
    pub first_token_s: DensePacked,
    /// Bytes of the model's tensors on disk: dense f32 safetensors against the sparse-bitmask
    /// layout (`prune --out-format sparse-bitmask`).
    pub disk_bytes: DensePacked,
    /// Bytes of the block linears in memory: dense f32 against packed.
    pub linear_bytes: DensePacked,
    /// The median over the evaluation rounds of the dense time over the packed time (each
    /// round times the two back to back, so a load that drifts slows both alike); absent from
    /// reports written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_speedup_median: Option<f64>,
    /// The same for decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_speedup_median: Option<f64>,
    /// The protocol: windows and their length, prompt and decoded tokens, repeats (the best of
    /// which is kept, each side alternately).
    pub protocol: String,
}

/// One optimizer step of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainStep {
    /// The step, from 0.
    pub step: u64,
    /// Mean loss of its batch (nats per token).
    pub loss: f64,
    /// Its learning rate.
    pub lr: f64,
    /// The global gradient norm before clipping (after the method's additions).
    pub grad_norm: f64,
    /// The scheduled sparsity.
    pub scheduled_sparsity: f64,
    /// Zeros among the candidate weights after the step.
    pub sparsity: f64,
    /// Wall seconds of the step.
    pub seconds: f64,
    /// What the method logged (e.g. MGPP's slab weight) and the pruning threshold.
    #[serde(default, skip_serializing_if = "Notes::is_empty")]
    pub notes: Notes,
}

/// One evaluation during a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainEval {
    /// Steps done when it ran.
    pub steps_done: u64,
    /// The metric (held-out perplexity for `prunus finetune`).
    pub value: f64,
    /// Wall seconds it took.
    pub seconds: f64,
}

/// A training run's record. Its token windows are the report's `calibration` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The training configuration (steps, batch, accumulation, window, learning-rate schedule,
    /// AdamW, clipping, pruning schedule, evaluation and checkpoint intervals).
    pub config: serde_json::Value,
    /// The number of training examples the run counts (MGPP's `n`): the non-overlapping
    /// windows of the calibration pool.
    pub n_examples: u64,
    /// What the periodic evaluations measure.
    pub eval_protocol: String,
    /// Every step.
    pub log: Vec<TrainStep>,
    /// Every periodic evaluation.
    pub evals: Vec<TrainEval>,
    /// Training seconds over every process of the run (evaluation excluded).
    pub train_seconds: f64,
    /// Training tokens per second over those seconds.
    pub tokens_per_s: f64,
    /// The step the last process resumed from, if it did.
    #[serde(default)]
    pub resumed_from: Option<u64>,
    /// The last checkpoint written.
    #[serde(default)]
    pub checkpoint: Option<String>,
}

/// The model a run loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Human label, e.g. `SmolLM2-135M-Instruct (Q4_1, dequantized)`.
    pub label: String,
    /// The path the model was loaded from.
    #[serde(default)]
    pub path: String,
    /// sha256 of the model file (GGUF) or of model.safetensors / the shard index.
    pub sha256: String,
    /// `gguf` or `hf`.
    #[serde(default)]
    pub format: String,
    /// The architecture named in the model's metadata (e.g. `llama`).
    #[serde(default)]
    pub architecture: String,
    /// Parameters of the model as loaded.
    pub n_params: usize,
    /// Decoder blocks.
    #[serde(default)]
    pub n_blocks: usize,
}

/// The pruning method of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodInfo {
    /// Registry name.
    pub name: String,
    /// The method's version (bumped when its numbers change).
    pub version: String,
    /// `layer-wise` or `structured`.
    #[serde(default)]
    pub kind: String,
    /// Effective configuration, defaults filled in.
    #[serde(default)]
    pub config: serde_json::Value,
    /// For a method loaded from a shared library (`prunus --plugin`): which one, by path and
    /// sha256. Absent for a method linked into prunus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<LibraryInfo>,
}

/// The shared library a method was loaded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryInfo {
    /// Its absolute path when the run loaded it.
    pub path: String,
    /// The sha256 of its bytes.
    pub sha256: String,
}

/// What a pruning run removed. `L`: the per-layer record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SparsityInfo<L = serde_json::Value> {
    /// `unstructured` or `N:M` (a structured run: the unit).
    pub pattern: String,
    /// Requested sparsity (a structured run: the requested parameter reduction).
    pub requested: f64,
    /// Over the pruned linears (all linears of all decoder blocks).
    pub realised: f64,
    /// Weights set to zero.
    #[serde(default)]
    pub pruned: usize,
    /// Weights of the pruned linears.
    #[serde(default)]
    pub numel: usize,
    /// The comparison group, e.g. `per-row`.
    #[serde(default)]
    pub group: String,
    /// One record per pruned linear.
    #[serde(default = "Vec::new")]
    pub per_layer: Vec<L>,
    /// Wall seconds per decoder block (calibration forward, statistics, score and mask).
    #[serde(default = "Vec::new")]
    pub per_block: Vec<BlockSeconds>,
}

/// Wall seconds of one decoder block of a layer-wise run. Summed over the blocks,
/// `statistics` and `score_and_mask` give the run's totals; `calibration_forward` lacks only
/// the embedding of the calibration tokens, which belongs to no block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockSeconds {
    /// 0-based index of the block.
    pub block: usize,
    /// The dense pass (statistics excluded) and the pruned pass that feeds the next block.
    pub calibration_forward: f64,
    /// Accumulating the statistics of the block's capture sites.
    pub statistics: f64,
    /// Sum of the block's per-linear score-and-mask seconds.
    pub score_and_mask: f64,
}

/// A structured pruning run: units, budget, parameter accounting, iterations and speed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructureInfo {
    /// `layer`, `head`, `query_head` or `channel`.
    pub unit: String,
    /// Requested share of the parameters to remove, of the count `budget` names.
    pub requested: f64,
    /// What `requested` is a share of; written only when it is not the default (the
    /// parameters outside the embeddings), so absent in older reports and in default runs.
    #[serde(default, skip_serializing_if = "BudgetBase::is_default")]
    pub budget: BudgetBase,
    /// Units of the first this many decoder layers were never removed.
    #[serde(default)]
    pub protect_first: usize,
    /// Units of the last this many decoder layers were never removed.
    #[serde(default)]
    pub protect_last: usize,
    /// `one-shot` or `iterative (k per iteration)`.
    #[serde(default)]
    pub schedule: String,
    /// Parameter counts before and after.
    pub params: ParamAccounting,
    /// Per scoring: the removed units (original layer and index) with their scores, the
    /// reduction reached, seconds, and the method's notes.
    #[serde(default = "Vec::new")]
    pub iterations: Vec<IterationRecord>,
    /// Seconds scoring (gradient passes included), summed over the iterations.
    #[serde(default)]
    pub score_seconds: f64,
    /// Seconds removing units, summed over the iterations.
    #[serde(default)]
    pub remove_seconds: f64,
    /// Dense vs pruned evaluation speed, measured side by side in this run.
    #[serde(default)]
    pub speed: Option<SpeedInfo>,
}

/// Parameter counts before and after (tied embeddings counted once).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ParamAccounting {
    /// Before pruning.
    pub before: ParamCount,
    /// After pruning.
    pub after: ParamCount,
    /// Share of the parameters outside the embeddings removed.
    pub removed_fraction: f64,
    /// Share of all parameters removed.
    pub removed_fraction_including_embeddings: f64,
}

/// What a structured budget is a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetBase {
    /// The parameters outside the token embedding and the output head (prunus's default: what
    /// removing units can reach).
    #[default]
    ExcludingEmbeddings,
    /// Every parameter (LLM-Pruner's convention for "20% of the parameters").
    All,
}

impl BudgetBase {
    /// Whether this is the default base (the parameters outside the embeddings).
    pub fn is_default(&self) -> bool {
        *self == BudgetBase::ExcludingEmbeddings
    }

    /// The count of `params` the budget is a share of.
    pub fn count(self, params: &ParamCount) -> usize {
        match self {
            BudgetBase::ExcludingEmbeddings => params.excluding_embeddings,
            BudgetBase::All => params.total,
        }
    }

    /// "of the parameters outside the embeddings" or "of all parameters".
    pub fn describe(self) -> &'static str {
        match self {
            BudgetBase::ExcludingEmbeddings => "of the parameters outside the embeddings",
            BudgetBase::All => "of all parameters",
        }
    }
}

impl std::fmt::Display for BudgetBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BudgetBase::ExcludingEmbeddings => "excluding-embeddings",
            BudgetBase::All => "all",
        })
    }
}

impl std::str::FromStr for BudgetBase {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "excluding-embeddings" | "excluding_embeddings" => Ok(BudgetBase::ExcludingEmbeddings),
            "all" => Ok(BudgetBase::All),
            other => Err(format!("unknown budget base `{other}`: give `excluding-embeddings` or `all`")),
        }
    }
}

/// Parameter counts of a model (tied embeddings counted once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCount {
    /// Every parameter (tied embeddings counted once).
    pub total: usize,
    /// Without the token embedding and the output head: the count structured budgets use.
    pub excluding_embeddings: usize,
}

/// One scoring of a structured run and the removal that followed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IterationRecord {
    /// 0-based.
    pub iteration: usize,
    /// Units scored (protected layers left out).
    pub candidates: usize,
    /// In removal order (lowest score first).
    pub removed: Vec<RemovedUnit>,
    /// Share of the parameters outside the embeddings removed after this iteration.
    pub reduction: f64,
    /// Seconds scoring.
    pub score_seconds: f64,
    /// Seconds removing.
    pub remove_seconds: f64,
    /// What the method noted about this scoring (e.g. PIP's losses on both views).
    #[serde(default, skip_serializing_if = "Notes::is_empty")]
    pub notes: Notes,
}

/// One removed unit, by its index in the unpruned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedUnit {
    /// Original decoder layer.
    pub layer: usize,
    /// Original index inside the layer (0 for a layer unit).
    pub index: usize,
    /// Parameters removed with it.
    pub params: usize,
    /// The method's score for it in the scoring that removed it.
    pub score: f64,
}

/// Evaluation throughput (forward and next-token NLL) of the dense and the pruned model on
/// the same perplexity windows, timed alternately after pruning, best of `repeats` each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SpeedInfo {
    /// Perplexity windows timed.
    pub windows: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
    /// Timings per model; the best is kept.
    pub repeats: usize,
    /// Tokens per second of the dense model.
    pub dense_tokens_per_second: f64,
    /// Tokens per second of the pruned model.
    pub pruned_tokens_per_second: f64,
    /// pruned / dense.
    pub speedup: f64,
}

/// The calibration windows of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// The corpus the windows come from.
    #[serde(default)]
    pub corpus: String,
    /// Which split of the corpus (`calibration pool`).
    #[serde(default)]
    pub split: String,
    /// Windows drawn.
    #[serde(default)]
    pub n_samples: usize,
    /// Tokens per window.
    #[serde(default)]
    pub seq_len: usize,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: u64,
    /// Tokens in the calibration stream the windows were drawn from.
    #[serde(default)]
    pub stream_tokens: usize,
    /// Start offset of each window in that stream, in draw order.
    #[serde(default)]
    pub offsets: Vec<usize>,
    /// `CPython random.seed(seed); start = randint(0, len - seq_len - 1)`.
    #[serde(default)]
    pub sampler: String,
}

/// One measured number with its protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Registry name of the task, e.g. `ppl:wiki-vital`.
    pub task: String,
    /// The task's version.
    pub task_version: u32,
    /// `ppl`, `acc`, `acc_norm`, `kl_dense`, `top1_agree`, ...
    pub metric: String,
    /// The number.
    pub value: f64,
    /// Tokens per window (perplexity, agreement).
    #[serde(default)]
    pub seq_len: Option<usize>,
    /// Windows evaluated (perplexity, agreement).
    #[serde(default)]
    pub windows: Option<usize>,
    /// Predictions compared (agreement).
    #[serde(default)]
    pub predictions: Option<usize>,
    /// Standard error of the value, where the metric has one (accuracies).
    #[serde(default)]
    pub stderr: Option<f64>,
    /// Documents scored (multiple choice).
    #[serde(default)]
    pub docs: Option<usize>,
    /// How the number was measured, in words.
    #[serde(default)]
    pub protocol: String,
}

impl Evaluation {
    /// `value` of `metric` on `task` (version 1) measured as `protocol` says, with no window
    /// or document counts (derived numbers, e.g. a structured run's parameter share).
    pub fn derived(task: &str, metric: &str, value: f64, protocol: &str) -> Self {
        Evaluation {
            task: task.into(),
            task_version: 1,
            metric: metric.into(),
            value,
            seq_len: None,
            windows: None,
            predictions: None,
            stderr: None,
            docs: None,
            protocol: protocol.into(),
        }
    }
}

/// Wall seconds per stage.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Seconds {
    /// Loading the model.
    #[serde(default)]
    pub load: f64,
    /// Tokenizing (or reading the token caches).
    #[serde(default)]
    pub tokenize: f64,
    /// Embedding the calibration tokens and running the blocks.
    #[serde(default)]
    pub calibration_forward: f64,
    /// Accumulating the statistics.
    #[serde(default)]
    pub statistics: f64,
    /// Scoring, masking and weight updates: Wanda's "metric time".
    #[serde(default)]
    pub score_and_mask: f64,
    /// Calibration forward + statistics + score and mask: the whole pruning stage.
    #[serde(default)]
    pub prune_total: f64,
    /// Every evaluation.
    #[serde(default)]
    pub evaluation: f64,
    /// Writing the pruned model.
    #[serde(default)]
    pub save: f64,
    /// The whole run.
    #[serde(default)]
    pub total: f64,
}
