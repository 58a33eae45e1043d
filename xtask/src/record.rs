//! What one bench cell leaves behind: its specification and the run report of its `prunus`
//! process, written atomically as `cells/<key>.json`.
//!
//! xtask does not link the prunus crates (that would build candle a second time with other
//! features); the report is read through [`Report`], a mirror of the fields the tables need.
//! Unknown fields are ignored, so the CLI's report may grow without breaking old records.

use serde::{Deserialize, Serialize};

/// Bumped when a record's fields change meaning; records of another version are rerun.
pub const RECORD_VERSION: u32 = 1;

/// One task of a cell, with its optional document / window limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Registry name, e.g. `ppl:wiki-vital` or `mc:arc_easy`.
    pub name: String,
    /// At most this many documents (multiple choice); `None` for all.
    pub limit: Option<usize>,
}

/// Calibration data of a cell (methods that use data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibSpec {
    pub samples: usize,
    pub seq_len: usize,
    pub seed: u64,
}

/// Perplexity windows and dense-agreement windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    pub seq_len: usize,
    pub windows: usize,
    /// Windows on which KL(dense || pruned) and top-1 agreement are measured.
    pub agreement_windows: usize,
}

/// Everything that determines a cell's numbers. The cell's key is a hash of this and the
/// model's sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSpec {
    /// Model name as the CLI takes it: `default`, a GGUF file or a Hugging Face directory.
    pub model: String,
    /// Registry name of the method; `None` for the dense model.
    pub method: Option<String>,
    /// Label of this method entry in the matrix (defaults to the method name), so that two
    /// configurations of one method (e.g. SwiftPrune's selection variants) stay apart.
    pub label: String,
    /// Method configuration (JSON; `null` for the defaults).
    pub config: serde_json::Value,
    /// `dense`, `unstructured` or `N:M`.
    pub pattern: String,
    /// Requested sparsity (N/M for N:M, 0 for dense).
    pub sparsity: f64,
    pub tasks: Vec<TaskSpec>,
    pub calibration: CalibSpec,
    pub eval: EvalSpec,
    /// A structured (model-level) method: `pattern` is then the unit (`layer`, `head`,
    /// `query_head`, `channel`) and `sparsity` the target parameter reduction outside the
    /// embeddings. Absent from the key of layer-wise cells.
    #[serde(default, skip_serializing_if = "is_false")]
    pub structured: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A finished cell, as written to `cells/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    pub record_version: u32,
    /// Hex hash of the cell's specification and the model's sha256.
    pub key: String,
    /// Matrix name (file stem).
    pub matrix: String,
    pub cell: CellSpec,
    /// Wall seconds of the whole `prunus` process, as the bench measured it.
    pub wall_seconds: f64,
    /// Seconds since the Unix epoch when the cell finished.
    pub finished_unix: u64,
    pub report: Report,
}

/// The CLI's run report (`prunus_eval::report::RunReport`): the fields the tables use are
/// typed, every other field is kept as it came in `rest` (per-layer sparsity, timings and
/// notes, calibration offsets, protocols), so a record holds the whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub git_commit: String,
    pub model: ModelInfo,
    #[serde(default)]
    pub method: Option<MethodInfo>,
    #[serde(default)]
    pub sparsity: Option<SparsityInfo>,
    #[serde(default)]
    pub evaluations: Vec<Evaluation>,
    pub seconds: Seconds,
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    #[serde(default)]
    pub threads: usize,
    /// The report's other fields, verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    pub label: String,
    pub sha256: String,
    pub n_params: usize,
    /// The report's other fields here, verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodInfo {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub config: serde_json::Value,
    /// The report's other fields here, verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SparsityInfo {
    pub pattern: String,
    pub requested: f64,
    pub realised: f64,
    /// The report's other fields here, verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// One measured number with its protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub task: String,
    pub task_version: u32,
    pub metric: String,
    pub value: f64,
    /// Standard error of the value, where the metric has one (accuracies).
    #[serde(default)]
    pub stderr: Option<f64>,
    /// Documents scored (multiple choice).
    #[serde(default)]
    pub docs: Option<usize>,
    #[serde(default)]
    pub protocol: String,
    /// The report's other fields here, verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Wall seconds per stage, as the CLI measured them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Seconds {
    #[serde(default)]
    pub load: f64,
    #[serde(default)]
    pub tokenize: f64,
    #[serde(default)]
    pub calibration_forward: f64,
    #[serde(default)]
    pub statistics: f64,
    /// Scoring, masking and weight updates: Wanda's "metric time".
    #[serde(default)]
    pub score_and_mask: f64,
    /// Calibration forward + statistics + score and mask.
    #[serde(default)]
    pub prune_total: f64,
    #[serde(default)]
    pub evaluation: f64,
    #[serde(default)]
    pub save: f64,
    #[serde(default)]
    pub total: f64,
}
