//! An output directory written whole or not at all: files go into a temporary directory beside
//! the target, which is renamed into place only when everything is written. Dropping an
//! [`OutputDir`] without [`commit`](OutputDir::commit) removes what was written.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Temporary directories of a save are named `<TEMP_PREFIX><pid>-<name>.<random>` beside the
/// output, so that a later run can tell the leftovers of a killed process from a save in
/// progress.
pub const TEMP_PREFIX: &str = ".prunus-tmp-";

/// Removes the temporary directories that killed saves left in `dir` (their process is gone),
/// with a warning naming each; returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(TEMP_PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        tracing::warn!(path = %path.display(), "removing the temporary output of an interrupted save");
        let removed_ok = if entry.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if removed_ok.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// A directory being written (see the module docs).
pub struct OutputDir {
    tmp: tempfile::TempDir,
    target: PathBuf,
    parent: PathBuf,
    name: std::ffi::OsString,
    /// `None`: the target does not exist; `Some(empty)`: it is a directory, empty or not.
    existing: Option<bool>,
}

impl OutputDir {
    /// Starts writing `out`. Refuses `out` when it is (or contains) `source` (the input
    /// model's canonical path), when it is an existing file, or a non-empty directory without
    /// `overwrite`; removes the temporary directories that killed runs left beside it.
    pub fn create(out: &Path, source: Option<&Path>, overwrite: bool) -> Result<Self> {
        let refuse = |reason: String| ModelError::OutputDir { path: out.to_path_buf(), reason };
        let name = out.file_name().ok_or_else(|| refuse("the path has no final component".into()))?.to_owned();
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| refuse(format!("cannot create parent directory: {e}")))?;
        let parent = std::fs::canonicalize(&parent).map_err(|e| refuse(format!("cannot resolve parent directory: {e}")))?;
        let target = parent.join(&name);
        if let Some(src) = source
            && src.starts_with(&target)
        {
            return Err(refuse(format!("it is the input model's path ({})", src.display())));
        }
        let existing = match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                let empty = std::fs::read_dir(&target)
                    .map_err(|e| refuse(format!("cannot read existing directory: {e}")))?
                    .next()
                    .is_none();
                if !empty && !overwrite {
                    return Err(refuse("it exists and is not empty (another run may have written it since the checks at the start)".into()));
                }
                Some(empty)
            }
            Ok(_) => return Err(refuse("it exists and is not a directory".into())),
            Err(_) => None,
        };
        // Mode 0777 less the umask, as a plain mkdir gives: a model written for a shared
        // directory is readable by the team (tempfile's default is 0700).
        remove_stale_temps(&parent);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{}{}-{}.", TEMP_PREFIX, std::process::id(), name.to_string_lossy()))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .tempdir_in(&parent)
            .map_err(|e| refuse(format!("cannot create a temporary directory in {}: {e}", parent.display())))?;
        Ok(OutputDir { tmp, target, parent, name, existing })
    }

    /// Where the files go until [`commit`](Self::commit).
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The directory it becomes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the written directory into place (an existing one is swapped out only now).
    pub fn commit(self) -> Result<()> {
        let OutputDir { tmp, target, parent, name, existing } = self;
        let refuse = |reason: String| ModelError::OutputDir { path: target.clone(), reason };
        match existing {
            None => {}
            Some(true) => std::fs::remove_dir(&target).map_err(|e| refuse(format!("cannot replace empty directory: {e}")))?,
            Some(false) => {
                let old = tempfile::Builder::new()
                    .prefix(&format!("{}{}-{}.old.", TEMP_PREFIX, std::process::id(), name.to_string_lossy()))
                    .tempdir_in(&parent)
                    .map_err(|e| refuse(format!("cannot create a temporary directory: {e}")))?;
                let old_path = old.path().to_path_buf();
                // Rename the existing output over the (empty) placeholder; drop removes it.
                std::fs::rename(&target, &old_path).map_err(|e| refuse(format!("cannot move the old directory aside: {e}")))?;
                let tmp_path = tmp.keep();
                if let Err(e) = std::fs::rename(&tmp_path, &target) {
                    let _ = std::fs::rename(&old_path, &target);
                    let _ = std::fs::remove_dir_all(&tmp_path);
                    return Err(refuse(format!("cannot move the new directory into place: {e}")));
                }
                drop(old);
                tracing::info!(path = %target.display(), "replaced model directory");
                return Ok(());
            }
        }
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &target) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            return Err(refuse(format!("cannot move the new directory into place: {e}")));
        }
        tracing::info!(path = %target.display(), "wrote model directory");
        Ok(())
    }
}
