//! `cargo xtask assets`: fetch, verify and cache every asset (see docs in prunus-data).

use anyhow::{Context, Result};

pub fn run() -> Result<()> {
    let start = std::time::Instant::now();
    let mut say = |msg: &str| eprintln!("assets: {msg}");
    prunus_data::assets::ensure_all(&mut say).context("fetching the assets")?;
    eprintln!("assets: ready in {} ({:.1} s)", prunus_data::assets::home().display(), start.elapsed().as_secs_f64());
    Ok(())
}
