//! Running cargo from a task, and where its release binaries land.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Runs `cargo <args> <extra>` in the workspace root (the cargo that runs xtask, `$CARGO`),
/// says how long it took, and fails if it failed.
pub fn run(args: &[&str], extra: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shown = format!("cargo {}", args.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect::<Vec<_>>().join(" "));
    let start = Instant::now();
    let status = Command::new(cargo)
        .current_dir(crate::root())
        .args(args)
        .args(extra)
        .status()
        .with_context(|| format!("could not start `{shown}`"))?;
    eprintln!("xtask: `{shown}` took {:.0} s", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The `prunus` binary of the release build (`$CARGO_TARGET_DIR` or `target/`).
pub fn prunus_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::root().join("target"));
    target.join("release").join("prunus")
}
