//! The `prunus` binary, as the bench drives it: built in release mode, asked for its
//! registry and models (`list --json`, `inspect --json`), and made to fetch the assets.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The `prunus` binary of the release build (`$CARGO_TARGET_DIR` or `target/`).
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::workspace::root().join("target"));
    target.join("release").join("prunus")
}

/// Builds the release `prunus` binary and returns its path.
pub fn build() -> Result<PathBuf> {
    crate::cargo::run(&["build", "--release", "-p", "prunus-cli"], &[])?;
    Ok(binary())
}

/// The standard output of `prunus <args>`; its standard error when it fails.
pub fn output(prunus: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(prunus).args(args).output().with_context(|| format!("could not start {}", prunus.display()))?;
    if !out.status.success() {
        bail!("`prunus {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `prunus assets`: fetches what is missing, hashes the model and corpus against their pins
/// and checks the task files' manifest (its progress lines go to this terminal).
pub fn fetch_assets(prunus: &Path) -> Result<()> {
    let status = Command::new(prunus).arg("assets").stdin(Stdio::null()).status().with_context(|| format!("could not start {}", prunus.display()))?;
    if !status.success() {
        bail!("fetching the assets failed ({status}); see the line above");
    }
    Ok(())
}
