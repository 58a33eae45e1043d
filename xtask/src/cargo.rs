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
