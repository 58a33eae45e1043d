//! Files that appear whole or not at all: written under a temporary name (with this process's
//! id, so two writers do not clash) in the same directory, then renamed.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, anyhow};

/// Writes `path` with `write`, atomically.
pub fn write_with(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| anyhow!("bad path {}", path.display()))?;
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    write(&mut file).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().ok();
    drop(file);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Writes `bytes` to `path`, atomically.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |f| {
        std::io::Write::write_all(f, bytes)?;
        Ok(())
    })
}
