//! `cargo xtask report [MATRIX]`: merge the records of a (sharded) run into its tables,
//! plots and manifest, then compare with the committed results (as `bench` does).

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::outputs::{ResultsArgs, finish, git_state, write_outputs};
use crate::plan::{absolute, cells_dir, plan, results_dir, same_dir};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The matrix file whose records are merged.
    #[arg(default_value = "benchmarks/default.toml")]
    matrix: PathBuf,
    /// The directory holding the records (default: the run directory bench-runs/<matrix file
    /// stem>; give results/<matrix> to rewrite the committed tables from their records).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this `prunus` binary instead of building it.
    #[arg(long, env = "PRUNUS_BIN")]
    prunus: Option<PathBuf>,
    #[command(flatten)]
    results: ResultsArgs,
}
pub fn report(args: ReportArgs) -> Result<()> {
    let plan = plan(&args.matrix, args.out.as_deref(), args.prunus.as_deref(), false)?;
    if !cells_dir(&plan.out).is_dir() {
        bail!(
            "{} holds no records; `cargo xtask report` merges a run's records (give `--out results/{}` to rewrite the committed tables)",
            plan.out.display(),
            plan.loaded.name
        );
    }
    let previous = std::fs::read(plan.out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    write_outputs(&plan, &plan.out, git_state(), 0.0, 0, previous)?;
    let committed = args.results.compare_with.as_deref().map(absolute).unwrap_or_else(|| results_dir(&plan.loaded.name));
    if same_dir(&plan.out, &committed) {
        return Ok(());
    }
    finish(&plan, &committed, args.results.update)
}
