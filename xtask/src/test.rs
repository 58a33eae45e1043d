//! `cargo xtask test`: fetch the assets, then `cargo test --workspace --release`.
//!
//! Release, because numeric code in a debug build runs about 150x slower; one profile for
//! everything, so the build is shared with `cargo xtask bench`.

use std::process::Command;

use anyhow::{Context, Result, bail};

pub fn run(extra: &[String]) -> Result<()> {
    crate::assets::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let start = std::time::Instant::now();
    let status = Command::new(cargo)
        .current_dir(crate::root())
        .args(["test", "--workspace", "--release"])
        .args(extra)
        .status()
        .context("could not start `cargo test`")?;
    eprintln!("cargo test --workspace --release took {:.0} s", start.elapsed().as_secs_f64());
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}
