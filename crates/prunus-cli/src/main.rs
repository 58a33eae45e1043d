//! `prunus`: prune and evaluate language models.
//!
//! Subcommands: `list` (registered methods and tasks), `eval` (perplexity and zero-shot
//! multiple choice of a model), `prune` (prune with a registered method, evaluate, compare
//! with the dense model, save, report), `finetune` (fine-tune while a training-time method
//! prunes, evaluate, save, report), `assets` (fetch and verify the model, corpus and task
//! files), `inspect` (architecture, parameter counts, sparsity per layer) and `synth` (a
//! Llama-shaped directory with seeded weights, for benchmarks of models larger than memory). Errors print as
//! one line and exit with status 1; progress bars go to stderr; `RUST_LOG=info` shows the log.

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

mod agreement;
mod args;
mod budget;
mod commands;
mod eval;
mod finetune;
mod generate;
mod outputs;
mod plan;
mod prune;
mod report;
mod scratch;
mod session;
mod speed;

/// mimalloc rather than the system allocator (feature `mimalloc`, on by default): glibc's
/// malloc keeps the memory of SparseGPT's many mid-sized temporaries (its mmap threshold grows
/// with every freed chunk, so later ones land on fragmented heaps), several times the peak of
/// a streamed prune; mimalloc returns it. The measurements are in `docs/memory.md`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How mimalloc hands freed memory back to the system.
#[cfg(feature = "mimalloc")]
mod allocator {
    use std::ffi::{c_int, c_long};

    // SAFETY: the C functions of the mimalloc library the global allocator links; they take
    // an option's number and a value, and any number is accepted (unknown ones are ignored).
    unsafe extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
        #[cfg(test)]
        fn mi_option_get(option: c_int) -> c_long;
    }

    /// `mi_option_purge_decommits` in mimalloc.h (the number of its place in `mi_option_t`).
    const PURGE_DECOMMITS: c_int = 5;
    /// `mi_option_purge_delay`, which only the test reads, to check the numbering.
    #[cfg(test)]
    const PURGE_DELAY: c_int = 15;

    /// Freed memory is reset (the kernel may take the pages back when it needs them) rather
    /// than decommitted: a decommitted page that is used again faults and is zeroed by the
    /// kernel, and the training step and evaluation free and reuse buffers of many MiB all the
    /// time (a fine-tuning step of 8 x 512 tokens spent 15% of its time zeroing pages).
    /// Measured in docs/memory.md; no value changes. `MIMALLOC_PURGE_DECOMMITS` in the
    /// environment, which mimalloc reads itself, is left to decide.
    pub(crate) fn configure() {
        if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
            // SAFETY: see the declarations; this sets one option to a value it documents.
            unsafe { mi_option_set(PURGE_DECOMMITS, 0) }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn purge_resets_instead_of_decommitting() {
            // SAFETY: reading options, see the declarations.
            let delay = unsafe { mi_option_get(PURGE_DELAY) };
            // The default delay in milliseconds of the linked mimalloc (v3): the options'
            // numbers are those of its header.
            assert_eq!(delay, 1000);
            if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_some() {
                return;
            }
            configure();
            // SAFETY: as above.
            assert_eq!(unsafe { mi_option_get(PURGE_DECOMMITS) }, 0);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(feature = "mimalloc")]
    allocator::configure();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none())
        .init();
    prunus_all::link();
    outputs::install_signal_cleanup();
    let cli = Cli::parse();
    if let Err(e) = load_plugins(&cli.plugins) {
        eprintln!("error: {}", one_line(&e));
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::List { json } => commands::list(json),
        Command::Eval(a) => commands::eval(a),
        Command::Prune(a) => prune::run(*a),
        Command::Finetune(a) => finetune::run(*a),
        Command::Train(a) => scratch::train::run(*a),
        Command::Sweep(a) => scratch::sweep::run(*a),
        Command::Assets { verify } => commands::assets(verify),
        Command::Inspect { model, json } => commands::inspect(&model, json),
        Command::Synth(a) => commands::synth(a),
        Command::Generate(a) => generate::run(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Loads the method libraries of `PRUNUS_PLUGINS` (separated as in PATH) and then of
/// `--plugin`, each once (by canonical path), before anything else runs.
fn load_plugins(flags: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let from_env = std::env::var_os("PRUNUS_PLUGINS").map(|v| std::env::split_paths(&v).collect::<Vec<_>>()).unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for path in from_env.iter().filter(|p| !p.as_os_str().is_empty()).chain(flags) {
        if seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())) {
            prunus_loader::load(path)?;
        }
    }
    Ok(())
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
