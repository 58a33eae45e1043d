//! How much faster pruned SmolLM2-135M runs with packed sparse linears than the same model
//! dense, measured side by side in one process: evaluation (windows of 512 tokens from
//! position 0) and decoding (a 32-token prompt, then one token at a time with the key/value
//! cache), for unstructured sparsity from 50% to 95% and for 2:4 and 4:8.
//!
//! Each setting prunes the default model with magnitude (per matrix for unstructured; which
//! weights go does not change the speed), builds the runtime twice, `Packing::Dense` (every
//! linear dense: gemm for many tokens, a row loop for one) and `Packing::Auto` (each linear in
//! the format its zeros suit),
//! compares their logits with each other and with the f64 forward of the same weights, and
//! times them alternately on the same windows, the best of `REPEATS` each. The tied embedding
//! and output head (21% of the parameters) stay dense in both.
//!
//! Run: `cargo run --release -p prunus-benches --example sparse_speed -- results/sparse-speed`
//! (about twelve minutes on two cores; settings named after the folder, `dense 70% 2:4`, run
//! only those); writes `speed.csv` and `speed.md` there, and
//! `cargo xtask sparse-plot results/sparse-speed` draws `plot.svg` from the CSV.

use std::fmt::Write as _;
use std::path::PathBuf;

use prunus_core::Pattern;
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_model::runtime::{Packing, Runtime, side_by_side};
use {prunus_magnitude as _, prunus_sparse as _};

const WINDOWS: usize = 3;
const SEQ: usize = 512;
const PROMPT: usize = 32;
const DECODE: usize = 64;
const REPEATS: usize = 7;

struct Row {
    setting: String,
    formats: String,
    bytes: usize,
    dense_bytes: usize,
    eval: (f64, f64),
    decode: (f64, f64),
    /// Median over the rounds of dense time over packed time: evaluation, decoding.
    speedup: (f64, f64),
    ttft: (f64, f64),
    max_diff: f64,
    /// Largest error of the dense and the packed logits against the f64 forward, as a share of
    /// the largest logit.
    f64_error: (f64, f64),
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "results/sparse-speed".into()));
    // Settings to run (`dense 70% 2:4`); all of them when none is named.
    let only: Vec<String> = std::env::args().skip(2).collect();
    std::fs::create_dir_all(&out)?;
    let (dense_model, eval) = prunus_benches::default_model_and_tokens(prunus_benches::Text::Eval)?;
    let windows: Vec<&[u32]> = (0..WINDOWS).map(|w| &eval[w * SEQ..(w + 1) * SEQ]).collect();
    let prompt = &eval[..PROMPT];

    let settings: Vec<(String, Option<Pattern>)> = std::iter::once(("dense".to_string(), None))
        .chain([0.5, 0.6, 0.7, 0.8, 0.9, 0.95].map(|s| (format!("{:.0}%", s * 100.0), Some(Pattern::Unstructured { sparsity: s }))))
        .chain([(2, 4), (4, 8)].map(|(n, m)| (format!("{n}:{m}"), Some(Pattern::NM { n, m }))))
        .filter(|(name, _)| only.is_empty() || only.contains(name))
        .collect();
    let magnitude = prunus_core::registry::find("magnitude").expect("linked").build_layerwise(&serde_json::Value::Null)?;
    let mut rows = Vec::new();
    for (setting, pattern) in settings {
        eprintln!("{setting}: pruning and packing");
        let mut model = dense_model.clone();
        if let Some(p) = &pattern {
            prune_layerwise(&mut model, &magnitude, p, None, &PipelineOptions::default(), &mut |_| {})?;
        }
        let (dense, packed) = (Runtime::new(&model, Packing::Dense)?, Runtime::new(&model, Packing::Auto)?);
        let mut max_diff = 0f64;
        for w in &windows {
            let (a, b) = (dense.window_logits(w)?, packed.window_logits(w)?);
            let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            max_diff = max_diff.max(f64::from(diff / scale));
        }
        // Both f32 paths against the f64 forward of the same pruned weights, window by window.
        let mut f64_error = (0f64, 0f64);
        for w in &windows {
            let exact = model.window_logits_f64(w)?;
            let scale = exact.iter().fold(0f64, |m, v| m.max(v.abs()));
            let error = |l: &[f32]| l.iter().zip(&exact).fold(0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs())) / scale;
            f64_error = (f64_error.0.max(error(&dense.window_logits(w)?)), f64_error.1.max(error(&packed.window_logits(w)?)));
        }
        eprintln!("{setting}: packed - dense {max_diff:.2e}, dense - f64 {:.2e}, packed - f64 {:.2e}", f64_error.0, f64_error.1);
        // A wrong kernel is off by whole units; f32 rounding through 30 blocks by 1e-5 to 1e-4
        // of the largest logit, the dense path's as much as the packed one's.
        assert!(f64_error.1 <= 1e-3, "{setting}: packed logits off the f64 forward by {:e} of the largest", f64_error.1);
        eprintln!("{setting}: timing");
        let t = side_by_side([&dense, &packed], &windows, prompt, DECODE, REPEATS, REPEATS)?;
        let linears = packed.linears();
        let formats = packed.format_counts();
        let tokens = (WINDOWS * SEQ) as f64;
        rows.push(Row {
            setting,
            formats: formats.iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "),
            bytes: linears.iter().map(|l| l.bytes).sum(),
            dense_bytes: linears.iter().map(|l| l.dense_bytes).sum(),
            eval: (tokens / t.eval[0], tokens / t.eval[1]),
            decode: (DECODE as f64 / t.decode[0], DECODE as f64 / t.decode[1]),
            speedup: (t.eval_speedup, t.decode_speedup),
            ttft: (t.first_token[0], t.first_token[1]),
            max_diff,
            f64_error,
        });
    }

    // Decoding reads every weight once per token: with the head's bytes (the tied embedding,
    // never pruned) on both sides, the ratio of bytes bounds the decode speed-up.
    let c = dense_model.config();
    let head = (c.vocab_size * c.hidden_size * 4) as f64;
    let bound = |r: &Row| (r.dense_bytes as f64 + head) / (r.bytes as f64 + head);
    let mut csv = String::from("setting,formats,linear_bytes,linear_dense_bytes,eval_tps_dense,eval_tps_packed,decode_tps_dense,decode_tps_packed,ttft_dense_s,ttft_packed_s,max_logit_diff,f64_error_dense,f64_error_packed,decode_bound,eval_speedup_median,decode_speedup_median\n");
    for r in &rows {
        writeln!(
            csv,
            "{},\"{}\",{},{},{:.2},{:.2},{:.2},{:.2},{:.4},{:.4},{:.3e},{:.3e},{:.3e},{:.3},{:.3},{:.3}",
            r.setting, r.formats, r.bytes, r.dense_bytes, r.eval.0, r.eval.1, r.decode.0, r.decode.1, r.ttft.0, r.ttft.1, r.max_diff, r.f64_error.0, r.f64_error.1, bound(r), r.speedup.0, r.speedup.1
        )?;
    }
    std::fs::write(out.join("speed.csv"), csv)?;
    let cpu = prunus_sparse::simd::cpu_name();
    let mut md = format!(
        "# Packed sparse linears against dense, SmolLM2-135M\n\n\
         Produced by `cargo run --release -p prunus-benches --example sparse_speed -- results/sparse-speed` \
         (benchmarks/examples/sparse_speed.rs) on {cpu}, kernels `{}`, {} threads. Magnitude pruning at each setting; \
         dense = every linear in the dense format (gemm for many tokens, a row loop for one), packed = each linear in its format (`Packing::Auto`), same runtime, timed alternately, \
         best of {REPEATS} (x: the ratio of the bests; median: the median over the {REPEATS} rounds of dense time over packed time, each round timing both back to back). Evaluation: {WINDOWS} windows of {SEQ} tokens from position 0. Decode: a {PROMPT}-token prompt, then {DECODE} tokens one at a time \
         with the key/value cache. Bound: the decode speed-up if it were set by the bytes read alone \
         (linears plus the {:.0} MiB dense tied head, dense over packed). The last three columns: the largest difference between the logits of packed and dense over the \
         evaluation windows, and of each against the f64 forward of the same weights, as shares of the largest logit (the largest over the windows).\n\n\
         | setting | formats | linears MiB (dense {:.1}) | eval tok/s dense | packed | x | median | decode tok/s dense | packed | x | median | bound | first token s dense | packed | packed - dense | dense - f64 | packed - f64 |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        prunus_sparse::simd::detected().name(),
        rayon::current_num_threads(),
        head / (1 << 20) as f64,
        rows[0].dense_bytes as f64 / (1 << 20) as f64,
    );
    for r in &rows {
        writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.1e} | {:.1e} | {:.1e} |",
            r.setting,
            r.formats,
            r.bytes as f64 / (1 << 20) as f64,
            r.eval.0,
            r.eval.1,
            r.eval.1 / r.eval.0,
            r.speedup.0,
            r.decode.0,
            r.decode.1,
            r.decode.1 / r.decode.0,
            r.speedup.1,
            bound(r),
            r.ttft.0,
            r.ttft.1,
            r.max_diff,
            r.f64_error.0,
            r.f64_error.1
        )?;
    }
    std::fs::write(out.join("speed.md"), &md)?;
    print!("{md}");
    Ok(())
}
