//! Project automation, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `assets`: fetch, verify and cache the model, corpus and task files (idempotent);
//! - `test`: `assets`, then `cargo test --workspace --release`;
//! - `bench`: run the default matrix (dense, magnitude, Wanda at 50% and 2:4) through the
//!   release `prunus` binary, one process per cell, and write `results/default/`.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[allow(dead_code)] // until the bench runner and `cargo xtask report` call it
mod aggregate;
mod assets;
mod bench;
#[allow(dead_code)] // used by the matrix runner and the aggregation (in progress)
mod record;
#[allow(dead_code)]
mod plots;
mod test;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "prunus project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch, verify (sha256) and cache the default model, corpus and task files.
    Assets,
    /// Fetch the assets, then run the whole test suite in release mode.
    Test {
        /// Extra arguments passed to `cargo test` after `--workspace --release`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the default benchmark matrix and write results/default/.
    Bench(bench::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Assets => assets::run(),
        Task::Test { args } => test::run(&args),
        Task::Bench(args) => bench::run(args),
    }
}

/// The workspace root (the parent of this crate's directory). `cargo run` sets
/// CARGO_MANIFEST_DIR at run time; the build-time value is only a fallback, because several
/// checkouts sharing one target directory overwrite each other's `target/release/xtask`.
pub fn root() -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from);
    let dir = dir.unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.parent().expect("xtask lives in the workspace").to_path_buf()
}
