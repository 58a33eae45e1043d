//! The run report: everything needed to trace a number back to what produced it.
//!
//! Written by `prunus prune` / `prunus eval` as JSON, read by `cargo xtask bench`.

use prunus_core::pipeline::{BlockSeconds, LayerRecord};
use prunus_core::structured::{IterationRecord, ParamCount};
use serde::{Deserialize, Serialize};

/// Bumped when the report's fields change meaning.
pub const REPORT_VERSION: u32 = 1;

/// One run of the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// [`REPORT_VERSION`] of the code that wrote the report.
    pub report_version: u32,
    /// `prune` or `eval`.
    pub command: String,
    /// The `prunus` crate version.
    pub prunus_version: String,
    /// Commit the binary was built from (`unknown` outside a git checkout).
    pub git_commit: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// The model the run read.
    pub model: ModelInfo,
    /// The pruning method, absent for a dense evaluation.
    pub method: Option<MethodInfo>,
    /// What a layer-wise method zeroed (or, for a structured method, the parameter share removed).
    pub sparsity: Option<SparsityInfo>,
    /// The calibration windows, for methods that read data.
    pub calibration: Option<CalibrationInfo>,
    /// Every measured number, in the order the tasks ran.
    pub evaluations: Vec<Evaluation>,
    /// Wall seconds per stage.
    pub seconds: Seconds,
    /// Peak resident set size of the process (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Worker threads available to the numeric kernels.
    pub threads: usize,
    /// Where the pruned model was written, if it was.
    pub output: Option<String>,
    /// What a structured (model-level) method removed; absent for layer-wise runs and
    /// evaluations. `sparsity` then holds the unit as `pattern` and the requested and
    /// realised share of the parameters outside the embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureInfo>,
}

/// The model a run read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Human label, e.g. `SmolLM2-135M-Instruct (Q4_1, dequantized)`.
    pub label: String,
    /// The path given (or the cached default model's path).
    pub path: String,
    /// sha256 of the model file (GGUF) or of model.safetensors / the shard index.
    pub sha256: String,
    /// `gguf` or `hf`.
    pub format: String,
    /// The architecture (`llama`).
    pub architecture: String,
    /// Parameter count (tied embeddings counted once).
    pub n_params: usize,
    /// Decoder blocks.
    pub n_blocks: usize,
}

/// The pruning method of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodInfo {
    /// The registered name (`wanda`).
    pub name: String,
    /// The method's version.
    pub version: String,
    /// `layer-wise` or `structured`.
    pub kind: String,
    /// Effective configuration, defaults filled in.
    pub config: serde_json::Value,
}

/// What a layer-wise method zeroed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SparsityInfo {
    /// `unstructured` or `N:M`.
    pub pattern: String,
    /// The sparsity asked for.
    pub requested: f64,
    /// Over the pruned linears (all linears of all decoder blocks).
    pub realised: f64,
    /// Weights zeroed over the pruned linears.
    pub pruned: usize,
    /// Weights in the pruned linears.
    pub numel: usize,
    /// The comparison group, e.g. `per-row`.
    pub group: String,
    /// One record per linear: its mask and statistics, in pipeline order.
    pub per_layer: Vec<LayerRecord>,
    /// Wall seconds per decoder block (calibration forward, statistics, score and mask).
    #[serde(default)]
    pub per_block: Vec<BlockSeconds>,
}

/// A structured pruning run: units, budget, parameter accounting, iterations and speed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructureInfo {
    /// `layer`, `head`, `query_head` or `channel`.
    pub unit: String,
    /// Requested share of the parameters outside the embeddings (token embedding and output
    /// head) to remove.
    pub requested: f64,
    /// Units of the first and last this many decoder layers were never removed.
    pub protect_first: usize,
    /// Units of the last this many decoder layers were never removed.
    pub protect_last: usize,
    /// `one-shot` or `iterative (k per iteration)`.
    pub schedule: String,
    /// Parameter counts before and after.
    pub params: ParamAccounting,
    /// Per scoring: the removed units (original layer and index) with their scores, the
    /// reduction reached, seconds, and the method's notes.
    pub iterations: Vec<IterationRecord>,
    /// Seconds scoring (gradient passes included) and removing, summed over the iterations.
    pub score_seconds: f64,
    /// Seconds spent removing units.
    pub remove_seconds: f64,
    /// Dense vs pruned evaluation speed, measured side by side in this run.
    pub speed: Option<SpeedInfo>,
}

/// Parameter counts before and after (tied embeddings counted once).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ParamAccounting {
    /// Counts before pruning.
    pub before: ParamCount,
    /// Counts after pruning.
    pub after: ParamCount,
    /// Share of the parameters outside the embeddings removed (what the budget counts).
    pub removed_fraction: f64,
    /// Share of all parameters removed.
    pub removed_fraction_including_embeddings: f64,
}

/// Evaluation throughput (forward and next-token NLL) of the dense and the pruned model on
/// the same perplexity windows, timed alternately after pruning, best of `repeats` each.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SpeedInfo {
    /// Perplexity windows timed.
    pub windows: usize,
    /// Their length in tokens.
    pub seq_len: usize,
    /// Windows per forward batch.
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

/// The calibration data of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// The corpus name (`wiki-vital`).
    pub corpus: String,
    /// Which split of the corpus (`calibration pool`).
    pub split: String,
    /// Windows drawn.
    pub n_samples: usize,
    /// Their length in tokens.
    pub seq_len: usize,
    /// The sampler's seed.
    pub seed: u64,
    /// Tokens in the calibration stream the windows were drawn from.
    pub stream_tokens: usize,
    /// Start offset of each window in that stream, in draw order.
    pub offsets: Vec<usize>,
    /// `CPython random.seed(seed); start = randint(0, len - seq_len - 1)`.
    pub sampler: String,
}

/// One measured number with its protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// The task name (`ppl:wiki-vital`).
    pub task: String,
    /// The task's version.
    pub task_version: u32,
    /// The metric name (`ppl`, `acc`, ...).
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Window length in tokens (windowed tasks).
    pub seq_len: Option<usize>,
    /// Windows evaluated (windowed tasks).
    pub windows: Option<usize>,
    /// Next-token predictions scored (windowed tasks).
    pub predictions: Option<usize>,
    /// Standard error of the value, where the metric has one (accuracies).
    #[serde(default)]
    pub stderr: Option<f64>,
    /// Documents scored (multiple choice).
    #[serde(default)]
    pub docs: Option<usize>,
    /// How the number was measured (corpus or file, split, documents, tokenization).
    pub protocol: String,
}

/// Wall seconds per stage.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Seconds {
    /// Loading the model.
    pub load: f64,
    /// Tokenizing the corpora.
    pub tokenize: f64,
    /// Calibration forward passes (block by block).
    pub calibration_forward: f64,
    /// Accumulating the methods' statistics.
    pub statistics: f64,
    /// Scoring and building masks.
    pub score_and_mask: f64,
    /// Calibration forward + statistics + score and mask: the whole pruning stage.
    pub prune_total: f64,
    /// Evaluating the tasks.
    pub evaluation: f64,
    /// Saving the pruned model.
    pub save: f64,
    /// The whole run.
    pub total: f64,
}

/// Peak resident set size of this process in bytes, from /proc (Linux); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
