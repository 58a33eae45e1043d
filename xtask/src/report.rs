//! `cargo xtask report [MATRIX]`: merge the records of a (sharded) run into its tables,
//! plots and manifest, then compare with the committed results (as `bench` does).
//!
//! It only aggregates: the cells' keys come from the records in `cells/` (and the run's
//! `manifest.json`), so nothing is built and `prunus` is not run (see [`crate::plan::from_records`]).

use std::path::PathBuf;

use anyhow::Result;

use crate::outputs::{ResultsArgs, finish, git_state, write_outputs};
use crate::plan;
use crate::workspace::{absolute, results_dir, same_dir};

/// Arguments of `cargo xtask report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The matrix file whose records are merged.
    #[arg(default_value = "benchmarks/default.toml")]
    matrix: PathBuf,
    /// The directory holding the records (default: the run directory bench-runs/<matrix file
    /// stem>; give results/<matrix> to rewrite the committed tables from their records).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    results: ResultsArgs,
}

/// Writes the tables of the records in the run directory and compares them with the
/// committed results (`--update`: replaces those).
pub fn report(args: ReportArgs) -> Result<()> {
    let plan = plan::from_records(&args.matrix, args.out.as_deref())?;
    let previous = std::fs::read(plan.out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    write_outputs(&plan, &plan.out, git_state(), 0.0, 0, previous)?;
    let committed = args.results.compare_with.as_deref().map(absolute).unwrap_or_else(|| results_dir(&plan.loaded.name));
    if same_dir(&plan.out, &committed) {
        return Ok(());
    }
    finish(&plan, &committed, args.results.update)
}
