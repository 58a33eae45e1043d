//! Project automation, run as `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `assets`: fetch, verify and cache the model, corpus and task files (idempotent, through
//!   `prunus assets`);
//! - `test`: `assets`, then `cargo test --workspace --release`;
//! - `bench [MATRIX]`: fetch and verify the assets, run a benchmark matrix (default
//!   benchmarks/default.toml) through the release `prunus` binary, one process per cell,
//!   resumable and shardable, into the run directory `bench-runs/<matrix>/` (records,
//!   parquet/CSV tables, summary.md, plots, manifest), then compare every cell with the
//!   committed `results/<matrix>/` (`--update` replaces those with the run);
//! - `report [MATRIX]`: merge the records of a sharded run into the tables (and compare),
//!   from the records alone (nothing is built or run);
//! - `streaming`: prune a model larger than memory (LLaMA-2-7B-shaped, seeded bf16 weights)
//!   one block at a time and record its peak memory and time;
//! - `new-plugin NAME --kind K`: scaffold a method crate in the workspace, or with
//!   `--out-of-tree DIR` a shared-library crate against the C ABI.
//!
//! xtask links no prunus crate but the serde-only prunus-report (and so no candle): it drives
//! the `prunus` binary and reads its reports through prunus-report's types.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod assets;
mod atomic;
mod bench;
mod cargo;
mod cell;
mod compare;
mod matrix;
mod outputs;
mod plan;
mod plots;
mod prunus;
mod record;
mod report;
mod scaffold;
mod streaming;
mod swe;
mod sparse_plot;
mod tables;
mod test;
mod workspace;

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
    /// Build the suite, fetch the assets, then run every test in release mode (the workspace,
    /// then xtask; see xtask/src/test.rs for why in two steps).
    Test {
        /// Extra arguments passed to both `cargo test` invocations (e.g. a test-name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fetch the assets, run a benchmark matrix (default benchmarks/default.toml) into
    /// bench-runs/<matrix>/ and compare it, cell by cell, with the committed results/<matrix>/.
    ///
    /// A run is resumable: rerun after an interruption and finished cells are kept (`--fresh`
    /// runs them all again). The comparison allows one document (or prediction) on accuracies
    /// and 1e-4 relative on perplexity, KL and realised sparsity, and fails the command when a
    /// cell differs beyond that; `--update` makes the run the committed results instead.
    Bench(bench::Args),
    /// Merge the cell records of a (sharded) matrix run into tables, plots and a manifest.
    Report(report::ReportArgs),
    /// Prune a LLaMA-2-7B-shaped model (13.8 GB in bf16, 27.5 GB as f32, more than this
    /// machine's memory) one block at a time and record its peak memory and time
    /// (bench-runs/streaming/; with --update, results/speed/streaming.{json,md}).
    Streaming(streaming::Args),
    /// Write a new method crate: in the workspace (plugins/NAME, registered, linked by
    /// prunus-all, with its kind's conformance test and a README skeleton), or with
    /// --out-of-tree DIR a shared-library crate against the C ABI for `prunus --plugin`.
    NewPlugin(scaffold::Args),
    /// Draw DIR/plot.svg (packed over dense speed against sparsity, decode and evaluation)
    /// from the DIR/speed.csv that `cargo run --release -p prunus-benches --example
    /// sparse_speed -- DIR` writes.
    SparsePlot {
        /// The directory of speed.csv, e.g. results/sparse-speed.
        dir: std::path::PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Assets => assets::run(),
        Task::Test { args } => test::run(&args),
        Task::Bench(args) => bench::run(args),
        Task::Report(args) => report::report(args),
        Task::Streaming(args) => streaming::run(args),
        Task::NewPlugin(args) => scaffold::run(args),
        Task::SparsePlot { dir } => sparse_plot::run(&dir),
    }
}
