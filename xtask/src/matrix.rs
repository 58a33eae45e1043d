//! The benchmark matrix: a TOML file naming models, methods (with configs), patterns and
//! sparsities, tasks (with limits), calibration and evaluation windows. See
//! benchmarks/README.md for the schema with an example per field.
//!
//! Parsing is strict: unknown keys are errors with line and column, unknown method and task
//! names are errors naming the line and the closest valid name, an empty matrix is an error.

use std::ops::Range;
use std::path::Path;

use anyhow::{Result, bail};
use serde::Deserialize;
use toml::Spanned;

use crate::record::{CalibSpec, CellSpec, EvalSpec, TaskSpec};

/// The matrix file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Free text, copied into summary.md.
    #[serde(default)]
    pub description: String,
    /// Shared libraries of methods to load at run time (`prunus --plugin`), relative to the
    /// matrix file; their methods are then named in `methods` like built-in ones.
    #[serde(default)]
    pub plugins: Vec<Spanned<String>>,
    /// `default`, GGUF files or Hugging Face directories.
    #[serde(default = "default_models")]
    pub models: Vec<String>,
    /// Whether each model's dense cell is run (needed for gates and dense agreement).
    #[serde(default = "yes")]
    pub dense: bool,
    /// `unstructured` and/or `N:M` patterns.
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    /// Sparsities of the unstructured cells, in (0, 1).
    #[serde(default)]
    pub sparsities: Vec<f64>,
    /// Target parameter reductions of structured methods, in (0, 1).
    #[serde(default)]
    pub reductions: Vec<f64>,
    /// Method label whose pruning time the others are divided by in the timing table.
    #[serde(default)]
    pub time_reference: Option<Spanned<String>>,
    /// Calibration data of the methods that use data (an entry may override it).
    #[serde(default)]
    pub calibration: Calibration,
    /// Evaluation protocol of every cell.
    #[serde(default)]
    pub eval: Eval,
    /// The tasks every cell is evaluated on.
    #[serde(default)]
    pub tasks: Vec<TaskEntry>,
    /// The methods, each expanded into cells.
    #[serde(default)]
    pub methods: Vec<MethodEntry>,
    /// Expected dense values that gate the pruned cells.
    #[serde(default)]
    pub gates: Vec<Gate>,
    /// How training cells train (training-time methods, and the dense fine-tune).
    #[serde(default)]
    pub training: Option<Training>,
    /// The training-time method label the others are compared with per sparsity in the
    /// fine-tuning section (e.g. `gmp`: MGPP's claim is about its advantage over GMP).
    #[serde(default)]
    pub training_baseline: Option<Spanned<String>>,
    /// Time every layer-wise pruned model packed against dense (`prunus prune --speed`).
    #[serde(default)]
    pub speed: bool,
}


/// Calibration windows of a matrix or a method entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Windows drawn.
    #[serde(default = "default_calib_samples")]
    pub samples: usize,
    /// Tokens per window.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Sampler seeds; each seed is a cell of its own.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration { samples: default_calib_samples(), seq_len: default_seq_len(), seeds: default_seeds() }
    }
}

/// The evaluation protocol of a matrix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eval {
    /// Tokens per perplexity window.
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Perplexity windows (the first this many).
    #[serde(default = "default_windows")]
    pub windows: usize,
    /// Windows on which the agreement with the dense model is measured.
    #[serde(default = "default_agreement_windows")]
    pub agreement_windows: usize,
}

impl Default for Eval {
    fn default() -> Self {
        Eval { seq_len: default_seq_len(), windows: default_windows(), agreement_windows: default_agreement_windows() }
    }
}

/// A task of the matrix.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEntry {
    /// Registry name (see `prunus list`).
    pub name: Spanned<String>,
    /// At most this many documents (multiple-choice tasks).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A method of the matrix, with its label, configuration and overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodEntry {
    /// Registry name (see `prunus list`).
    pub name: Spanned<String>,
    /// Row label in the tables (default: the name); must be unique.
    #[serde(default)]
    pub label: Option<String>,
    /// The method's configuration (an inline table), passed to `prunus prune --config`.
    #[serde(default)]
    pub config: Option<toml::Table>,
    /// Patterns for this method only (default: the matrix's `patterns`). Layer-wise methods.
    #[serde(default)]
    pub patterns: Option<Vec<Spanned<String>>>,
    /// Structured methods: the unit removed (`layer`, `head`, `query_head`, `channel`;
    /// default `layer`).
    #[serde(default)]
    pub unit: Option<Spanned<String>>,
    /// Structured methods: target reductions, each in (0, 1) (default: the matrix's
    /// `reductions`), of the parameters outside the embeddings unless `budget_of` says `all`.
    #[serde(default)]
    pub reductions: Option<Vec<f64>>,
    /// Structured methods: what the reductions are a share of, `excluding_embeddings`
    /// (default) or `all` (LLM-Pruner's convention).
    #[serde(default)]
    pub budget_of: Option<Spanned<String>>,
    /// Calibration for this method only (e.g. 10 x 64 for structured methods).
    #[serde(default)]
    pub calibration: Option<Calibration>,
}

/// The expected dense value of a task: pruned cells of a model run only if its dense cell
/// lands within `tolerance` (relative) of `expected`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// The model whose dense cell is checked.
    #[serde(default = "default_model")]
    pub model: String,
    /// The task (one of the matrix's tasks).
    pub task: Spanned<String>,
    /// The metric of that task.
    pub metric: String,
    /// The expected value.
    pub expected: f64,
    /// Relative tolerance, e.g. 1e-4.
    pub tolerance: f64,
}

fn yes() -> bool {
    true
}
fn default_model() -> String {
    "default".into()
}
fn default_models() -> Vec<String> {
    vec![default_model()]
}
fn default_calib_samples() -> usize {
    32
}
fn default_seq_len() -> usize {
    512
}
fn default_seeds() -> Vec<u64> {
    vec![0]
}
fn default_windows() -> usize {
    64
}
fn default_agreement_windows() -> usize {
    8
}

/// The registered names a matrix may use (from `prunus list --json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Catalog {
    /// Registered methods.
    pub methods: Vec<CatalogMethod>,
    /// Registered tasks.
    pub tasks: Vec<CatalogTask>,
}

/// A registered method.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogMethod {
    /// Registry name.
    pub name: String,
    /// `layer-wise` or `structured`.
    #[serde(default)]
    pub kind: String,
    /// The library a method loaded at run time came from (`None` for a built-in one).
    #[serde(default)]
    pub library: Option<CatalogLibrary>,
}

/// The library of a loaded method, as `prunus list --json` gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogLibrary {
    /// The sha256 of its bytes.
    pub sha256: String,
}

impl Catalog {
    /// The sha256 of the library `method` was loaded from, if it was.
    fn library(&self, method: &str) -> Option<String> {
        self.methods.iter().find(|m| m.name == method).and_then(|m| m.library.as_ref()).map(|l| l.sha256.clone())
    }

    fn is_structured(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.name == method && m.kind == "structured")
    }

    fn is_training(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m.name == method && m.kind == "training")
    }
}

const UNITS: [&str; 4] = ["layer", "head", "query_head", "channel"];

/// What a structured method's reductions may be a share of (`budget_of`).
const BUDGETS: [&str; 2] = ["excluding_embeddings", "all"];

/// A registered task.
#[derive(Debug, Clone, Deserialize)]
pub struct CatalogTask {
    /// Registry name.
    pub name: String,
    /// The task's data file, if it has one.
    #[serde(default)]
    pub file: Option<String>,
    /// Whether that file is present.
    #[serde(default = "yes")]
    pub available: bool,
}

/// A parsed and validated matrix with its source text (for the manifest).
pub struct MatrixFile {
    /// Matrix name: the file stem.
    pub name: String,
    /// The file as written.
    pub text: String,
    /// The file parsed.
    pub matrix: Matrix,
}

/// Reads and parses `path` (syntax and unknown keys only; see [`validate`] for names).
pub fn load(path: &Path) -> Result<MatrixFile> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        bail!("cannot read matrix {}: not a regular file", path.display());
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read matrix {}: {e}", path.display()))?;
    let matrix: Matrix = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("matrix").to_string();
    Ok(MatrixFile { name, text, matrix })
}

/// `line:column` (1-based) of a byte span in `text`.
pub fn line_col(text: &str, span: Range<usize>) -> String {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{line}:{col}")
}

fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn unknown(kind: &str, path: &str, text: &str, name: &Spanned<String>, valid: Vec<&str>) -> anyhow::Error {
    let at = line_col(text, name.span());
    let hint = match closest(name.get_ref(), valid.iter().copied()) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => format!("; valid: {}", valid.join(", ")),
    };
    anyhow::anyhow!("{path}:{at}: unknown {kind} `{}`{hint}", name.get_ref())
}

/// Checks that the data file of every task is there (after the assets were fetched: a missing
/// one then means a broken cache or an unknown layout, not a first run).
pub fn check_data(loaded: &MatrixFile, path: &str, catalog: &Catalog) -> Result<()> {
    for entry in &loaded.matrix.tasks {
        if let Some(task) = catalog.tasks.iter().find(|t| &t.name == entry.name.get_ref())
            && !task.available
        {
            bail!(
                "{path}:{}: the data file of task `{}` is missing ({}) although the assets were fetched; check PRUNUS_HOME or run `prunus assets --verify`",
                line_col(&loaded.text, entry.name.span()),
                task.name,
                task.file.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// Checks names against the registry, values against their ranges, and that the matrix has
/// at least one cell.
pub fn validate(loaded: &MatrixFile, path: &str, catalog: &Catalog) -> Result<()> {
    let m = &loaded.matrix;
    let text = &loaded.text;
    let methods: Vec<&str> = catalog.methods.iter().map(|c| c.name.as_str()).collect();
    let tasks: Vec<&str> = catalog.tasks.iter().map(|c| c.name.as_str()).collect();
    for entry in &m.methods {
        if !methods.contains(&entry.name.get_ref().as_str()) {
            return Err(unknown("method", path, text, &entry.name, methods));
        }
    }
    for entry in &m.tasks {
        let Some(task) = catalog.tasks.iter().find(|t| &t.name == entry.name.get_ref()) else {
            return Err(unknown("task", path, text, &entry.name, tasks));
        };
        if entry.limit == Some(0) {
            bail!("{path}:{}: task `{}` has limit 0", line_col(text, entry.name.span()), task.name);
        }
    }
    for gate in &m.gates {
        if !m.tasks.iter().any(|t| t.name.get_ref() == gate.task.get_ref()) {
            let listed: Vec<&str> = m.tasks.iter().map(|t| t.name.get_ref().as_str()).collect();
            return Err(unknown("gate task (not among the matrix's tasks)", path, text, &gate.task, listed));
        }
        if !(gate.tolerance >= 0.0 && gate.expected.is_finite()) {
            bail!("{path}:{}: a gate needs a finite `expected` and a `tolerance` >= 0", line_col(text, gate.task.span()));
        }
    }
    let mut labels = Vec::new();
    for entry in &m.methods {
        let label = entry.label.clone().unwrap_or_else(|| entry.name.get_ref().clone());
        if label == "dense" || label == "dense-finetune" || labels.contains(&label) {
            bail!("{path}:{}: method label `{label}` is used twice (or is `dense`); give each entry its own `label`", line_col(text, entry.name.span()));
        }
        labels.push(label);
        let at = line_col(text, entry.name.span());
        if catalog.is_training(entry.name.get_ref()) {
            if m.training.is_none() {
                bail!("{path}:{at}: `{}` is a training-time method: the matrix needs a [training] section (steps, batch, lr, ...)", entry.name.get_ref());
            }
            if entry.patterns.is_some() || entry.unit.is_some() || entry.reductions.is_some() || entry.calibration.is_some() {
                bail!("{path}:{at}: `{}` is a training-time method: it prunes globally to each of the matrix's `sparsities` under [training]; `patterns`, `unit`, `reductions` and `calibration` are for other kinds", entry.name.get_ref());
            }
            if m.sparsities.is_empty() {
                bail!("{path}:{at}: training-time method `{}` needs `sparsities`", entry.name.get_ref());
            }
            continue;
        }
        if catalog.is_structured(entry.name.get_ref()) {
            if entry.patterns.is_some() {
                bail!("{path}:{at}: `{}` is a structured method: give `unit` and `reductions`, not `patterns`", entry.name.get_ref());
            }
            if let Some(u) = &entry.unit
                && !UNITS.contains(&u.get_ref().as_str())
            {
                return Err(unknown("unit", path, text, u, UNITS.to_vec()));
            }
            let reductions = entry.reductions.as_ref().unwrap_or(&m.reductions);
            if reductions.is_empty() {
                bail!("{path}:{at}: structured method `{}` needs `reductions` (here or at the top of the matrix)", entry.name.get_ref());
            }
            if let Some(r) = reductions.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
                bail!("{path}:{at}: reductions must lie in (0, 1), got {r}");
            }
            if let Some(b) = &entry.budget_of
                && !BUDGETS.contains(&b.get_ref().as_str())
            {
                return Err(unknown("budget_of", path, text, b, BUDGETS.to_vec()));
            }
        } else if entry.unit.is_some() || entry.reductions.is_some() || entry.budget_of.is_some() {
            bail!("{path}:{at}: `{}` is a layer-wise method: `unit`, `reductions` and `budget_of` are for structured methods", entry.name.get_ref());
        }
        for p in entry.patterns.iter().flatten() {
            check_pattern(path, text, p)?;
        }
    }
    for p in &m.patterns {
        check_pattern(path, text, p)?;
    }
    if let Some(r) = &m.training_baseline
        && !labels.contains(r.get_ref())
    {
        return Err(unknown("training_baseline method label", path, text, r, labels.iter().map(String::as_str).collect()));
    }
    if let Some(r) = &m.time_reference
        && !labels.contains(r.get_ref())
    {
        return Err(unknown("time_reference method label", path, text, r, labels.iter().map(String::as_str).collect()));
    }
    for &s in &m.sparsities {
        if !(s > 0.0 && s < 1.0) {
            bail!("{path}: sparsities must lie in (0, 1), got {s}");
        }
    }
    if let Some(t) = &m.training {
        let spec = t.spec(m.sparsities.iter().copied().fold(0.0, f64::max));
        if t.steps == 0 || t.batch == 0 || t.window < 2 || !(t.lr > 0.0) || t.eval_windows == 0 {
            bail!("{path}: [training] needs steps >= 1, batch >= 1, window >= 2, lr > 0 and eval_windows >= 1");
        }
        if spec.accumulate == 0 || t.batch % spec.accumulate != 0 {
            bail!("{path}: [training] accumulate = {} must divide batch = {}", spec.accumulate, t.batch);
        }
        if !["linear", "cosine", "constant"].contains(&t.decay.as_str()) {
            bail!("{path}: [training] decay = {:?}: use linear, cosine or constant", t.decay);
        }
        if !(spec.prune_start < spec.prune_end && spec.prune_end < t.steps) {
            bail!("{path}: [training] needs prune_start ({}) < prune_end ({}) < steps ({})", spec.prune_start, spec.prune_end, t.steps);
        }
    }
    let c = &m.calibration;
    if c.samples == 0 || c.seq_len < 2 || c.seeds.is_empty() {
        bail!("{path}: [calibration] needs samples >= 1, seq_len >= 2 and at least one seed");
    }
    if m.eval.seq_len < 2 || m.eval.windows == 0 {
        bail!("{path}: [eval] needs seq_len >= 2 and windows >= 1");
    }
    if m.models.is_empty() {
        bail!("{path}: `models` is empty");
    }
    if m.tasks.is_empty() {
        bail!("{path}: the matrix has no [[tasks]]; add at least one (e.g. name = \"ppl:wiki-vital\")");
    }
    if cells(m, catalog).is_empty() {
        bail!("{path}: the matrix is empty: no dense cell and no method x pattern x sparsity combination");
    }
    Ok(())
}

fn check_pattern(path: &str, text: &str, p: &Spanned<String>) -> Result<()> {
    let s = p.get_ref();
    if s == "unstructured" {
        return Ok(());
    }
    if let Some((n, m)) = s.split_once(':')
        && let (Ok(n), Ok(m)) = (n.parse::<usize>(), m.parse::<usize>())
        && n > 0
        && n < m
    {
        return Ok(());
    }
    bail!("{path}:{}: pattern `{s}` is neither `unstructured` nor `N:M` with 0 < N < M", line_col(text, p.span()))
}

/// The cells of the matrix in run order: per model, the dense cell first, then each method
/// entry x pattern (x sparsity for unstructured) x calibration seed.
pub fn cells(m: &Matrix, catalog: &Catalog) -> Vec<CellSpec> {
    let tasks: Vec<TaskSpec> = m.tasks.iter().map(|t| TaskSpec { name: t.name.get_ref().clone(), limit: t.limit }).collect();
    let eval = EvalSpec { seq_len: m.eval.seq_len, windows: m.eval.windows, agreement_windows: m.eval.agreement_windows };
    let mut out = Vec::new();
    for model in &m.models {
        if m.dense {
            out.push(CellSpec {
                model: model.clone(),
                method: None,
                label: "dense".into(),
                config: serde_json::Value::Null,
                pattern: "dense".into(),
                sparsity: 0.0,
                tasks: tasks.clone(),
                // The dense cell uses no calibration; a fixed record keeps its key independent of it.
                calibration: CalibSpec { samples: 0, seq_len: 0, seed: 0 },
                eval: EvalSpec { agreement_windows: 0, ..eval.clone() },
                structured: false,
                training: None,
                library: None,
                budget_of: None,
                speed: false,
            });
        }
        for seed in &m.calibration.seeds {
            // Training cells: windows drawn from the calibration pool with this seed.
            let train_cell = |t: &Training, method: Option<String>, label: String, config: serde_json::Value, s: f64| CellSpec {
                model: model.clone(),
                library: method.as_deref().and_then(|n| catalog.library(n)),
                budget_of: None,
                method,
                label,
                config,
                pattern: "unstructured".into(),
                sparsity: s,
                tasks: tasks.clone(),
                calibration: CalibSpec { samples: t.steps as usize * t.batch, seq_len: t.window, seed: *seed },
                eval: EvalSpec { agreement_windows: 0, ..eval.clone() },
                structured: false,
                training: Some(t.spec(s)),
                speed: false,
            };
            if let Some(t) = m.training.as_ref().filter(|t| t.dense) {
                out.push(train_cell(t, None, "dense-finetune".into(), serde_json::Value::Null, 0.0));
            }
            for entry in &m.methods {
                let config = entry
                    .config
                    .as_ref()
                    .map(|t| serde_json::to_value(t).expect("TOML tables convert to JSON"))
                    .unwrap_or(serde_json::Value::Null);
                let label = entry.label.clone().unwrap_or_else(|| entry.name.get_ref().clone());
                if catalog.is_training(entry.name.get_ref()) {
                    if let Some(t) = &m.training {
                        for &s in &m.sparsities {
                            out.push(train_cell(t, Some(entry.name.get_ref().clone()), label.clone(), config.clone(), s));
                        }
                    }
                    continue;
                }
                let c = entry.calibration.as_ref().unwrap_or(&m.calibration);
                let calibration = CalibSpec { samples: c.samples, seq_len: c.seq_len, seed: *seed };
                if catalog.is_structured(entry.name.get_ref()) {
                    let unit = entry.unit.as_ref().map_or("layer", |u| u.get_ref().as_str());
                    for &r in entry.reductions.as_ref().unwrap_or(&m.reductions) {
                        out.push(CellSpec {
                            model: model.clone(),
                            method: Some(entry.name.get_ref().clone()),
                            label: label.clone(),
                            config: config.clone(),
                            pattern: unit.to_string(),
                            sparsity: r,
                            tasks: tasks.clone(),
                            calibration: calibration.clone(),
                            eval: eval.clone(),
                            structured: true,
                            training: None,
                            library: catalog.library(entry.name.get_ref()),
                            // The default base stays out of the key: cells keep their keys.
                            budget_of: entry.budget_of.as_ref().map(|b| b.get_ref().clone()).filter(|b| b == "all"),
                            speed: false,
                        });
                    }
                    continue;
                }
                let patterns = entry.patterns.as_ref().unwrap_or(&m.patterns);
                for p in patterns {
                    let p = p.get_ref();
                    let sparsities: Vec<f64> = match p.split_once(':') {
                        Some((n, mm)) => vec![n.parse::<f64>().unwrap_or(0.0) / mm.parse::<f64>().unwrap_or(1.0)],
                        None => m.sparsities.clone(),
                    };
                    for s in sparsities {
                        out.push(CellSpec {
                            model: model.clone(),
                            method: Some(entry.name.get_ref().clone()),
                            label: label.clone(),
                            config: config.clone(),
                            pattern: p.clone(),
                            sparsity: s,
                            tasks: tasks.clone(),
                            calibration: calibration.clone(),
                            eval: eval.clone(),
                            structured: false,
                            training: None,
                            library: catalog.library(entry.name.get_ref()),
                            budget_of: None,
                            speed: m.speed,
                        });
                    }
                }
            }
        }
    }
    out
}

mod shard;
mod training;

pub use shard::Shard;

pub use training::Training;

#[cfg(test)]
mod tests;
