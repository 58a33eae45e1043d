//! `cargo xtask streaming`: prune a model larger than this machine's memory, one decoder block
//! at a time, and record its peak memory and time.
//!
//! The model has LLaMA-2-7B's blocks (32 layers, hidden 4096, MLP 11008, 32 heads, untied
//! head) with SmolLM2's 49152-token vocabulary (so that the corpus tokenizes) and seeded bf16
//! weights, written by `prunus synth` into `bench-runs/streaming/` (13.8 GB; kept for the next
//! run). `prunus prune --stream` prunes it (Wanda at 50% on 8 x 512 calibration tokens by
//! default) into `bench-runs/streaming/pruned`, `prunus inspect --json` reads the sparsity of
//! every linear back from the files, and the run's numbers go to
//! `bench-runs/streaming/streaming.{json,md}` (with `--update`, also to `results/speed/`). The
//! pruned copy is removed afterwards unless `--keep`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use prunus_report::RunReport;
use serde_json::Value;

/// `cargo xtask streaming`.
#[derive(clap::Args)]
pub struct Args {
    /// Decoder layers of the synthetic model (32 is LLaMA-2-7B's; fewer for a quick check,
    /// which then fits in memory and shows only the mechanics).
    #[arg(long, default_value_t = 32)]
    layers: usize,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The layer-wise method.
    #[arg(long, default_value = "wanda")]
    method: String,
    /// Calibration windows.
    #[arg(long, default_value_t = 8)]
    calib_samples: usize,
    /// Tokens per calibration window.
    #[arg(long, default_value_t = 512)]
    calib_seq_len: usize,
    /// Keep the pruned model in bench-runs/streaming/pruned.
    #[arg(long)]
    keep: bool,
    /// Also write the result to results/speed/streaming.{json,md}.
    #[arg(long)]
    update: bool,
    /// Use this `prunus` binary instead of building it.
    #[arg(long, env = "PRUNUS_BIN")]
    prunus: Option<PathBuf>,
}

/// Bytes of the regular files directly in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.flatten().filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// Free bytes on the file system holding `dir` (`df`), if it can tell.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("df").args(["-B1", "--output=avail"]).arg(dir).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

/// The CPU's model name and the vector extensions the kernels can use, from /proc/cpuinfo.
pub fn cpu_line() -> String {
    let field = |key: &str| crate::outputs::cpuinfo_field(key).unwrap_or_default();
    let flags = field("flags");
    let wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16"];
    let have: Vec<&str> = wanted.into_iter().filter(|w| flags.split_whitespace().any(|f| f == *w)).collect();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{} ({cores} cores; {})", field("model name"), have.join(", "))
}

fn run_prunus(prunus: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new(prunus).args(args).stdin(Stdio::null()).status().with_context(|| format!("could not start {}", prunus.display()))?;
    if !status.success() {
        bail!("`prunus {}` failed ({status}); see the lines above", args.join(" "));
    }
    Ok(())
}

/// `cargo xtask streaming`.
pub fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    if args.layers == 0 {
        bail!("--layers must be at least 1");
    }
    // The tree the binary is built from (edits made while the run goes on do not count).
    let (git, dirty) = crate::outputs::git_state();
    let prunus = match &args.prunus {
        Some(p) => p.clone(),
        None => crate::prunus::build()?,
    };
    crate::prunus::fetch_assets(&prunus)?;
    let dir = crate::workspace::run_dir("streaming");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = dir.join(format!("llama-2-7b-shaped-{}l-seed{}-bf16", args.layers, args.seed));
    let pruned = dir.join("pruned");
    if pruned.exists() {
        std::fs::remove_dir_all(&pruned).with_context(|| format!("removing the last run's {}", pruned.display()))?;
    }
    // Two copies of the model in bf16: the input (unless kept from a run before) and the output.
    let per_copy = 2 * (args.layers as u64 * 202_383_360 + 2 * 49152 * 4096);
    let needed = if model.join("model.safetensors.index.json").exists() { per_copy } else { 2 * per_copy };
    if let Some(free) = free_bytes(&dir)
        && free < needed + (1 << 30)
    {
        bail!("{} has {:.1} GB free; this run writes {:.1} GB", dir.display(), free as f64 / 1e9, needed as f64 / 1e9);
    }
    let synth_seconds = if model.join("model.safetensors.index.json").exists() {
        eprintln!("streaming: reusing {}", model.display());
        None
    } else {
        let t = Instant::now();
        let (layers, seed) = (args.layers.to_string(), args.seed.to_string());
        run_prunus(&prunus, &["synth", "--shape", "llama-2-7b", "--layers", &layers, "--seed", &seed, "--dtype", "bf16", "--out", &model.display().to_string()])?;
        Some(t.elapsed().as_secs_f64())
    };

    let report_path = dir.join("report.json");
    let (samples, seq_len) = (args.calib_samples.to_string(), args.calib_seq_len.to_string());
    let t = Instant::now();
    run_prunus(
        &prunus,
        &[
            "prune", "--model", &model.display().to_string(), "--method", &args.method, "--sparsity", "0.5", "--calib-samples", &samples,
            "--calib-seq-len", &seq_len, "--stream", "--out", &pruned.display().to_string(), "--report", &report_path.display().to_string(),
        ],
    )?;
    let wall = t.elapsed().as_secs_f64();
    let report: RunReport = serde_json::from_str(&std::fs::read_to_string(&report_path)?).context("reading the run report")?;
    let inspect: Value = serde_json::from_str(&crate::prunus::output(&prunus, &["inspect", "--json", &pruned.display().to_string()])?)?;
    let linears = inspect["linears"].as_array().context("inspect --json has no linears")?;
    let fractions: Vec<f64> = linears.iter().map(|l| l["zeros"].as_f64().unwrap_or(0.0) / l["numel"].as_f64().unwrap_or(1.0)).collect();
    let (min, max) = fractions.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &f| (a.min(f), b.max(f)));
    let (input_bytes, output_bytes) = (dir_bytes(&model), dir_bytes(&pruned));
    let n_params = report.model.n_params as u64;
    let config: Value = serde_json::from_str(&std::fs::read_to_string(pruned.join("config.json"))?)?;
    if !args.keep {
        std::fs::remove_dir_all(&pruned).with_context(|| format!("removing {}", pruned.display()))?;
    }

    let peak = report.peak_rss_bytes.context("the report has no peak RSS")?;
    let result = serde_json::json!({
        "command": format!("cargo xtask streaming{}", if args.layers == 32 { String::new() } else { format!(" --layers {}", args.layers) }),
        "git_commit": git,
        "git_dirty": dirty,
        "cpu": cpu_line(),
        "memory_bytes": std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())).map(|k| k * 1024),
        "model": {"layers": args.layers, "hidden": 4096, "mlp": 11008, "heads": 32, "vocab": 49152, "seed": args.seed, "dtype": "bf16", "params": n_params, "bytes_on_disk": input_bytes, "bytes_as_f32": n_params * 4},
        "method": args.method,
        "sparsity": report.sparsity.as_ref().map(|s| s.realised),
        "calibration": {"samples": args.calib_samples, "seq_len": args.calib_seq_len},
        "peak_rss_bytes": peak,
        "prune_wall_seconds": wall,
        "synth_seconds": synth_seconds,
        "seconds": report.seconds,
        "output": {"bytes": output_bytes, "torch_dtype": config["torch_dtype"], "linears": linears.len(), "sparsity_min": min, "sparsity_max": max},
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let md = format!(
        "# Pruning a model larger than memory, one block at a time\n\n\
         `{cmd}` at commit `{commit}`{dirty} on {cpu}, {mem:.0} GiB of memory.\n\n\
         | model | on disk | as f32 | method | calibration | peak RSS | prune wall time | realised sparsity | per-linear sparsity |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         | LLaMA-2-7B-shaped: {layers} x (4096, MLP 11008, 32 heads), vocab 49152, bf16, seed {seed}; {params:.2} B parameters | {disk:.1} GB | {f32:.1} GB | {method} 50% unstructured | {samples} x {seq_len} tokens | {peak:.2} GiB | {wall:.0} s | {realised:.6} | {min:.4}-{max:.4} over {n} linears |\n\n\
         Stages (seconds, from the run report): load {load:.1} (headers, embedding, tokenizer), calibration forward {fwd:.1}, statistics {stats:.1}, \
         score and mask {score:.1}, last shard and rename {save:.1}; reading and writing each block is inside the pruning time.\n\n\
         The output is {shards} safetensors shards, {out:.1} GB, `torch_dtype` {dtype}, read back by `prunus inspect --json` for the sparsity of every linear. \
         The peak is what the process itself reports (VmHWM): the f32 embedding, one f32 block, the calibration activations and the method's working set; \
         the checkpoint is read with positioned reads, not mapped, so the page cache it fills is the kernel's, not the process's.\n",
        cmd = result["command"].as_str().unwrap_or(""),
        commit = &git[..git.len().min(12)],
        dirty = if dirty { " (with uncommitted changes)" } else { "" },
        cpu = result["cpu"].as_str().unwrap_or(""),
        mem = gib(result["memory_bytes"].as_u64().unwrap_or(0)),
        layers = args.layers,
        seed = args.seed,
        params = n_params as f64 / 1e9,
        disk = input_bytes as f64 / 1e9,
        f32 = (n_params * 4) as f64 / 1e9,
        method = args.method,
        samples = args.calib_samples,
        seq_len = args.calib_seq_len,
        peak = gib(peak),
        realised = report.sparsity.as_ref().map_or(f64::NAN, |s| s.realised),
        n = linears.len(),
        load = report.seconds.load,
        fwd = report.seconds.calibration_forward,
        stats = report.seconds.statistics,
        score = report.seconds.score_and_mask,
        save = report.seconds.save,
        shards = args.layers + 2,
        out = output_bytes as f64 / 1e9,
        dtype = config["torch_dtype"].as_str().unwrap_or("?"),
    );
    let json = serde_json::to_string_pretty(&result)? + "\n";
    crate::atomic::write(&dir.join("streaming.json"), json.as_bytes())?;
    crate::atomic::write(&dir.join("streaming.md"), md.as_bytes())?;
    if args.update {
        let results = crate::workspace::results_dir("speed");
        crate::atomic::write(&results.join("streaming.json"), json.as_bytes())?;
        crate::atomic::write(&results.join("streaming.md"), md.as_bytes())?;
    }
    println!("{md}");
    Ok(())
}
