//! `prunus prune --speed`: how much faster and smaller the pruned model is with packed sparse
//! linears (`prunus_model::runtime`) than the same model dense, measured side by side in one
//! process on this CPU, for the run report (`packed`) and the bench tables.
//!
//! Protocol: `WINDOWS` evaluation windows from position 0 (the first of the perplexity
//! windows), timed `EVAL_REPEATS` times, then decoding: the first `PROMPT` tokens of the
//! evaluation text as the prompt and `DECODE` tokens one at a time with the key/value cache,
//! greedy, timed `DECODE_REPEATS` times. Dense and packed run alternately after one untimed
//! run each, and the best time of each is kept (the machines are shared: load only ever slows
//! a run down), with the median over the rounds of the dense time over the packed time (a
//! round times the two back to back). The tied embedding and output head stay dense in both.

use anyhow::Result;
use prunus_eval::report::{DensePacked, PackedSpeed};
use prunus_model::LlamaModel;
use prunus_model::runtime::{Packing, Runtime, side_by_side};

const WINDOWS: usize = 2;
const EVAL_REPEATS: usize = 5;
const PROMPT: usize = 32;
const DECODE: usize = 32;
const DECODE_REPEATS: usize = 3;

/// Measures `model` (pruned) dense and packed on the evaluation text `tokens` in windows of
/// `seq_len`.
pub fn measure(model: &LlamaModel, tokens: &[u32], seq_len: usize) -> Result<PackedSpeed> {
    let windows: Vec<&[u32]> = tokens.chunks_exact(seq_len).take(WINDOWS).collect();
    anyhow::ensure!(windows.len() == WINDOWS && tokens.len() > PROMPT, "the evaluation text is too short to time the model");
    let prompt = &tokens[..PROMPT];
    let sides = [Runtime::new(model, Packing::Dense)?, Runtime::new(model, Packing::Auto)?];
    for rt in &sides {
        rt.window_logits(windows[0])?; // untimed: the kernels' buffers and the pool warm up
    }
    let t = side_by_side([&sides[0], &sides[1]], &windows, prompt, DECODE, EVAL_REPEATS, DECODE_REPEATS)?;
    let pair = |v: [f64; 2], f: &dyn Fn(f64) -> f64| DensePacked { dense: f(v[0]), packed: f(v[1]) };
    let linears = sides[1].linears();
    Ok(PackedSpeed {
        isa: prunus_sparse::simd::detected().name().into(),
        cpu: prunus_sparse::simd::cpu_name(),
        formats: sides[1].format_counts().iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "),
        eval_tokens_per_s: pair(t.eval, &|s| (WINDOWS * seq_len) as f64 / s),
        decode_tokens_per_s: pair(t.decode, &|s| DECODE as f64 / s),
        first_token_s: pair(t.first_token, &|s| s),
        disk_bytes: DensePacked { dense: model.tensor_bytes(false)? as f64, packed: model.tensor_bytes(true)? as f64 },
        linear_bytes: DensePacked {
            dense: linears.iter().map(|l| l.dense_bytes).sum::<usize>() as f64,
            packed: linears.iter().map(|l| l.bytes).sum::<usize>() as f64,
        },
        eval_speedup_median: Some(t.eval_speedup),
        decode_speedup_median: Some(t.decode_speedup),
        protocol: format!(
            "{WINDOWS} windows of {seq_len} tokens, best of {EVAL_REPEATS}; decode {DECODE} tokens after a {PROMPT}-token prompt, best of {DECODE_REPEATS}; dense and packed alternately, {} threads; speed-ups also as the median of the rounds' dense-over-packed ratios",
            rayon::current_num_threads()
        ),
    })
}
