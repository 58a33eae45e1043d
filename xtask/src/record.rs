//! What one bench cell leaves behind: its specification and the run report of its `prunus`
//! process, written atomically as `cells/<key>.json`; the cell's key; reading records back.
//!
//! The report is [`prunus_report::RunReport`], the schema the CLI writes with (xtask links
//! prunus-report, which is serde only, and no other prunus crate: that would build candle a
//! second time with other features).
//!
//! A cell's key hashes its full specification and the model file's sha256, so a record is
//! found again by any run of the same cell on the same model, and never by another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Calibration windows.
    pub samples: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Seed of the window sampler.
    pub seed: u64,
}

/// Perplexity windows and dense-agreement windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSpec {
    /// Tokens per perplexity window.
    pub seq_len: usize,
    /// Perplexity windows (the first this many).
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
    /// The tasks evaluated, with their limits.
    pub tasks: Vec<TaskSpec>,
    /// Calibration data (a fixed empty one for the dense cell).
    pub calibration: CalibSpec,
    /// Evaluation protocol.
    pub eval: EvalSpec,
    /// A structured (model-level) method: `pattern` is then the unit (`layer`, `head`,
    /// `query_head`, `channel`) and `sparsity` the target parameter reduction outside the
    /// embeddings. Absent from the key of layer-wise cells.
    #[serde(default, skip_serializing_if = "is_false")]
    pub structured: bool,
    /// A training cell (`prunus finetune`: a training-time method, or a dense fine-tune when
    /// `method` is `None`): how it trains. `pattern` is then `unstructured` and `sparsity` the
    /// final sparsity over all candidate linears together. Absent from the key of other cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<TrainSpec>,
    /// For a method loaded from a shared library (the matrix's `plugins`), the sha256 of that
    /// library: a rebuilt library is another cell. Absent from the key of other cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<String>,
    /// A structured cell whose target is a share of all parameters (`all`, passed as
    /// `prunus prune --budget-of all`) instead of those outside the embeddings. Absent from
    /// the key of other cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_of: Option<String>,
    /// A layer-wise cell of a matrix with `speed = true`: the pruned model is also timed with
    /// packed linears against dense (`prunus prune --speed`). Absent from the key of other cells.
    #[serde(default, skip_serializing_if = "is_false")]
    pub speed: bool,
}

/// How a training cell trains: the flags of `prunus finetune` (see its `--help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSpec {
    /// Optimizer steps.
    pub steps: u64,
    /// Windows per step.
    pub batch: usize,
    /// Micro-batches per step (gradient accumulation).
    pub accumulate: usize,
    /// Tokens per training window.
    pub window: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: u64,
    /// `linear`, `cosine` or `constant`.
    pub decay: String,
    /// The final learning rate as a multiple of `lr`.
    pub final_lr: f64,
    /// Gradient clipping norm, if any.
    pub clip: Option<f64>,
    /// Sparsity of the jump at the pruning start.
    pub initial_sparsity: f64,
    /// Step of the first pruning.
    pub prune_start: u64,
    /// Step the mask freezes.
    pub prune_end: u64,
    /// Steps between prunings.
    pub prune_every: u64,
    /// Held-out perplexity logged every this many steps (0: only at the end).
    pub eval_every: u64,
    /// Windows of that held-out perplexity.
    pub eval_windows: usize,
}

impl CellSpec {
    /// The model's dense cell (no method, no training): what gates the other cells of its
    /// model and what they are compared with. The dense fine-tune is not.
    pub fn is_dense(&self) -> bool {
        self.method.is_none() && self.training.is_none()
    }

    /// The pattern as the tables show and group it: a structured cell with a budget of all
    /// parameters reads `<unit> of all` (a column of its own beside `<unit>`).
    pub fn setting_pattern(&self) -> String {
        match self.budget_of.as_deref() {
            Some("all") => format!("{} of all", self.pattern),
            _ => self.pattern.clone(),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A finished cell, as written to `cells/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellRecord {
    /// [`RECORD_VERSION`] of the xtask that wrote it.
    pub record_version: u32,
    /// Hex hash of the cell's specification and the model's sha256.
    pub key: String,
    /// Matrix name (file stem).
    pub matrix: String,
    /// What the cell ran.
    pub cell: CellSpec,
    /// Wall seconds of the whole `prunus` process, as the bench measured it.
    pub wall_seconds: f64,
    /// Seconds since the Unix epoch when the cell finished.
    pub finished_unix: u64,
    /// The run report of the cell's `prunus` process, whole.
    pub report: RunReport,
}

/// The run report as a record holds it: prunus-report's schema with its default forms of the
/// prunus-core parts (per-layer and per-block records kept as JSON).
pub type RunReport = prunus_report::RunReport;

/// The cell's key: sha256 over the record version, the cell's canonical JSON and the model's
/// sha256 (first 16 hex digits).
pub fn cell_key(cell: &CellSpec, model_sha256: &str) -> String {
    let canonical = canonical_json(&serde_json::to_value(cell).expect("cells serialize"));
    let mut h = Sha256::new();
    h.update(format!("prunus-cell v{RECORD_VERSION}\n{canonical}\n{model_sha256}").as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// JSON with object keys sorted at every level.
fn canonical_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String((*k).clone()))).collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The records directory of a run (or results) directory.
pub fn cells_dir(out: &Path) -> PathBuf {
    out.join("cells")
}

/// The finished record of `key` in `out`, if there is a valid one.
pub fn existing(out: &Path, key: &str) -> Option<CellRecord> {
    let text = std::fs::read_to_string(cells_dir(out).join(format!("{key}.json"))).ok()?;
    let rec: CellRecord = serde_json::from_str(&text).ok()?;
    (rec.record_version == RECORD_VERSION && rec.key == key).then_some(rec)
}

/// Every valid record in `out` (of this record version, named by its key), by file name.
pub fn all(out: &Path) -> Vec<CellRecord> {
    let Ok(entries) = std::fs::read_dir(cells_dir(out)) else { return Vec::new() };
    let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    names.sort();
    names.iter().filter_map(|n| existing(out, n.strip_suffix(".json")?)).collect()
}

/// A cell spec for tests (a SwiftPrune 2:4 cell on the default model).
#[cfg(test)]
pub(crate) fn sample_cell() -> CellSpec {
    CellSpec {
        model: "default".into(),
        method: Some("swiftprune".into()),
        label: "swift".into(),
        config: serde_json::json!({"selection": "quantile", "alpha": 0.125}),
        pattern: "2:4".into(),
        sparsity: 0.5,
        tasks: vec![TaskSpec { name: "ppl:wiki-vital".into(), limit: None }],
        calibration: CalibSpec { samples: 32, seq_len: 512, seed: 0 },
        eval: EvalSpec { seq_len: 512, windows: 64, agreement_windows: 8 },
        structured: false,
        training: None,
        library: None,
        budget_of: None,
        speed: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell() -> CellSpec {
        sample_cell()
    }

    #[test]
    fn key_depends_on_every_field_and_the_model_but_not_on_key_order() {
        let base = cell_key(&cell(), "abc");
        let mut reordered = cell();
        reordered.config = serde_json::from_str(r#"{"alpha": 0.125, "selection": "quantile"}"#).unwrap();
        assert_eq!(cell_key(&reordered, "abc"), base);
        assert_ne!(cell_key(&cell(), "abd"), base);
        let mut other = cell();
        other.calibration.seed = 1;
        assert_ne!(cell_key(&other, "abc"), base);
        let mut other = cell();
        other.tasks[0].limit = Some(10);
        assert_ne!(cell_key(&other, "abc"), base);
        assert_eq!(base.len(), 16);
    }

    #[test]
    fn the_dense_fine_tune_is_not_the_dense_cell() {
        let mut c = cell();
        assert!(!c.is_dense());
        c.method = None;
        assert!(c.is_dense());
        c.training = Some(TrainSpec {
            steps: 4, batch: 1, accumulate: 1, window: 32, lr: 1e-4, warmup: 0, decay: "linear".into(), final_lr: 0.1, clip: None,
            initial_sparsity: 0.0, prune_start: 1, prune_end: 3, prune_every: 1, eval_every: 0, eval_windows: 1,
        });
        assert!(!c.is_dense());
    }

    #[test]
    fn records_keep_the_whole_report() {
        let text = r#"{"git_commit": "c", "threads": 2, "calibration": {"offsets": [5, 9]},
            "model": {"label": "m", "sha256": "s", "n_params": 3, "format": "gguf"},
            "sparsity": {"pattern": "2:4", "requested": 0.5, "realised": 0.5, "per_layer": [{"name": "q", "notes": {"damping_retries": 1}}]},
            "evaluations": [{"task": "ppl:wiki-vital", "task_version": 1, "metric": "ppl", "value": 14.9, "windows": 64}],
            "seconds": {"load": 1.0, "tokenize": 0.5, "save": 0.25}}"#;
        let report: RunReport = serde_json::from_str(text).unwrap();
        let back = serde_json::to_value(&report).unwrap();
        assert_eq!(back["calibration"]["offsets"], serde_json::json!([5, 9]));
        assert_eq!(back["model"]["format"], "gguf");
        assert_eq!(back["sparsity"]["per_layer"][0]["notes"]["damping_retries"], 1);
        assert_eq!(back["evaluations"][0]["windows"], 64);
        assert_eq!(back["seconds"]["tokenize"], 0.5);
    }

    /// Every committed record parses, its report serializes back to the same JSON (nothing
    /// lost, nothing added), and its key is the hash of its cell and its model's sha256.
    #[test]
    fn committed_records_parse_whole_and_their_keys_hash_their_cells() {
        let mut n = 0;
        for matrix in std::fs::read_dir(crate::workspace::root().join("results")).unwrap() {
            let dir = cells_dir(&matrix.unwrap().path());
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries {
                let path = e.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let rec: CellRecord = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let original: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(serde_json::to_value(&rec.report).unwrap(), original["report"], "{}", path.display());
                assert_eq!(cell_key(&rec.cell, &rec.report.model.sha256), rec.key, "{}", path.display());
                n += 1;
            }
        }
        assert!(n > 0, "no committed records found");
    }
}
