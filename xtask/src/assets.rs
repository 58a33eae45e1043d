//! `cargo xtask assets`: fetch, verify and cache every asset, through `prunus assets` (the
//! fetching code lives in prunus-data; see its docs).

use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::root())
        .args(["run", "--quiet", "--release", "-p", "prunus-cli", "--", "assets"])
        .status()
        .context("could not start `cargo run -p prunus-cli -- assets`")?;
    if !status.success() {
        bail!("fetching the assets failed ({status})");
    }
    Ok(())
}
