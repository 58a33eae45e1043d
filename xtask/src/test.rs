//! `cargo xtask test`: build the suite, fetch the assets, run every test in release mode.
//!
//! Release, because numeric code in a debug build runs about 150x slower. The workspace
//! (everything but xtask) and xtask are tested in two cargo invocations on purpose: cargo
//! unifies dependency features over the packages it builds together, and candle's tree turns
//! on features that polars' dependencies also have, so a single `--workspace` build would
//! compile polars a second time (it is already compiled for the xtask binary). Split, each
//! heavy tree is built once and shared with `cargo xtask bench`.
//!
//! 1. `cargo test --workspace --exclude xtask --release --no-run` (also builds `prunus`);
//! 2. `prunus assets` (fetch, verify, cache: the tests read the real model and data);
//! 3. `cargo test --workspace --exclude xtask --release`;
//! 4. `cargo test -p xtask --release` (its end-to-end bench test drives the `prunus` of step 1).

use std::time::Instant;

use anyhow::Result;

use crate::cargo;

/// Runs the whole suite; `extra` goes to both `cargo test` invocations.
pub fn run(extra: &[String]) -> Result<()> {
    let start = Instant::now();
    cargo::run(&["test", "--workspace", "--exclude", "xtask", "--release", "--no-run"], &[])?;
    crate::prunus::fetch_assets(&crate::prunus::binary())?;
    cargo::run(&["test", "--workspace", "--exclude", "xtask", "--release"], extra)?;
    // The bench test finds the prunus binary built above next to its own executable.
    cargo::run(&["test", "-p", "xtask", "--release"], extra)?;
    eprintln!("test: whole suite passed in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
