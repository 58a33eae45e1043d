//! The `prunus` binary, as the bench drives it: built in release mode, asked for its
//! registry and models (`list --json`, `inspect --json`), and made to fetch the assets.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The `prunus` binary of the release build, in the target directory cargo builds into
/// ([`crate::cargo::target_dir`]).
pub fn binary() -> PathBuf {
    crate::cargo::target_dir().join("release").join("prunus")
}

/// Builds the release `prunus` binary and returns its path.
pub fn build() -> Result<PathBuf> {
    crate::cargo::run(&["build", "--release", "-p", "prunus-cli"], &[])?;
    Ok(binary())
}

/// The method libraries every `prunus` run of this process loads (`PRUNUS_PLUGINS`), from the
/// matrix's `plugins`.
static PLUGINS: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Sets the method libraries of every later `prunus` run (once per process).
pub fn set_plugins(paths: &[PathBuf]) -> Result<()> {
    if PLUGINS.get().is_some_and(|p| p.as_slice() != paths) {
        bail!("one bench process runs one matrix's plugins");
    }
    let _ = PLUGINS.set(paths.to_vec());
    Ok(())
}

/// `prunus` as a command, with the matrix's method libraries in `PRUNUS_PLUGINS` (added to any
/// the environment already names).
pub fn command(prunus: &Path) -> Command {
    let mut cmd = Command::new(prunus);
    if let Some(paths) = PLUGINS.get().filter(|p| !p.is_empty()) {
        let inherited = std::env::var_os("PRUNUS_PLUGINS").map(|v| std::env::split_paths(&v).collect::<Vec<_>>()).unwrap_or_default();
        let all = inherited.into_iter().chain(paths.iter().cloned());
        cmd.env("PRUNUS_PLUGINS", std::env::join_paths(all).expect("library paths without the path separator"));
    }
    cmd
}

/// The standard output of `prunus <args>`; its standard error when it fails.
pub fn output(prunus: &Path, args: &[&str]) -> Result<String> {
    let out = command(prunus).args(args).output().with_context(|| format!("could not start {}", prunus.display()))?;
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
