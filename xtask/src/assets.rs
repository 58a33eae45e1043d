//! `cargo xtask assets`: fetch, verify and cache every asset, through `prunus assets` (the
//! fetching code lives in prunus-data; see its docs).

use anyhow::Result;

/// `cargo run --release -p prunus-cli -- assets`.
pub fn run() -> Result<()> {
    crate::cargo::run(&["run", "--quiet", "--release", "-p", "prunus-cli", "--", "assets"], &[])
}
