//! Running cargo from a task: the one place xtask starts cargo (the cargo that runs xtask,
//! `$CARGO`, in the workspace root).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// `cargo` (`$CARGO`, else the one on the PATH) with the workspace root as working directory.
fn command() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(crate::workspace::root());
    cmd
}

/// Runs `cargo <args> <extra>`, says how long it took, and fails if it failed.
pub fn run(args: &[&str], extra: &[String]) -> Result<()> {
    let shown = format!("cargo {}", args.iter().map(|s| s.to_string()).chain(extra.iter().cloned()).collect::<Vec<_>>().join(" "));
    let start = Instant::now();
    let status = command().args(args).args(extra).status().with_context(|| format!("could not start `{shown}`"))?;
    eprintln!("xtask: `{shown}` took {:.0} s", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The build's target directory as cargo resolves it (`$CARGO_TARGET_DIR`, else a
/// `build.target-dir` in a cargo config file, else `target/` in the workspace), from
/// `cargo metadata`; `target/` if that cannot be asked.
pub fn target_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    command()
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|m| m.get("target_directory").and_then(|d| d.as_str()).map(std::path::PathBuf::from))
        .unwrap_or_else(|| crate::workspace::root().join("target"))
}

/// `cargo --version`, or `unknown`.
pub fn version() -> String {
    command()
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
