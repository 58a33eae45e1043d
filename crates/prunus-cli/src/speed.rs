//! `prunus prune --speed`: how much faster and smaller the pruned model is with packed sparse
//! linears (`prunus_model::runtime`) than the same model dense, measured side by side in one
//! process on this CPU, for the run report (`packed`) and the bench tables.
//!
//! Protocol: `WINDOWS` evaluation windows from position 0 (the first of the perplexity
//! windows), timed `EVAL_REPEATS` times, then decoding: the first `PROMPT` tokens of the
//! evaluation text as the prompt and `DECODE` tokens one at a time with the key/value cache,
//! greedy, timed `DECODE_REPEATS` times. Dense and packed run alternately after one untimed
//! run each, and the best time of each is kept (the machines are shared: load only ever slows
//! a run down). The tied embedding and output head stay dense in both.

use std::time::Instant;

use anyhow::Result;
use prunus_eval::report::{DensePacked, PackedSpeed};
use prunus_model::LlamaModel;
use prunus_model::runtime::{Packing, Runtime};

const WINDOWS: usize = 2;
const EVAL_REPEATS: usize = 5;
const PROMPT: usize = 32;
const DECODE: usize = 32;
const DECODE_REPEATS: usize = 3;

/// The CPU's model name, from /proc/cpuinfo (empty where there is none).
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default()
}

/// Seconds of one decode after a prefill of `prompt`: (first token, the `DECODE` that follow).
fn decode(rt: &Runtime, prompt: &[u32]) -> Result<(f64, f64)> {
    let mut cache = rt.cache();
    let t = Instant::now();
    let mut logits = rt.extend(&mut cache, prompt)?;
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..DECODE {
        let next = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b }) as u32;
        logits = rt.extend(&mut cache, &[next])?;
    }
    Ok((first, t.elapsed().as_secs_f64()))
}

/// Measures `model` (pruned) dense and packed on the evaluation text `tokens` in windows of
/// `seq_len`.
pub fn measure(model: &LlamaModel, tokens: &[u32], seq_len: usize) -> Result<PackedSpeed> {
    let windows: Vec<&[u32]> = tokens.chunks_exact(seq_len).take(WINDOWS).collect();
    anyhow::ensure!(windows.len() == WINDOWS && tokens.len() > PROMPT, "the evaluation text is too short to time the model");
    let prompt = &tokens[..PROMPT];
    let sides = [Runtime::new(model, Packing::Dense)?, Runtime::new(model, Packing::Auto)?];
    let (mut eval, mut first, mut dec) = ([f64::INFINITY; 2], [f64::INFINITY; 2], [f64::INFINITY; 2]);
    for rt in &sides {
        rt.window_logits(windows[0])?; // untimed: the kernels' buffers and the pool warm up
    }
    for _ in 0..EVAL_REPEATS {
        for (i, rt) in sides.iter().enumerate() {
            let t = Instant::now();
            for w in &windows {
                rt.window_logits(w)?;
            }
            eval[i] = eval[i].min(t.elapsed().as_secs_f64());
        }
    }
    for _ in 0..DECODE_REPEATS {
        for (i, rt) in sides.iter().enumerate() {
            let (f, d) = decode(rt, prompt)?;
            first[i] = first[i].min(f);
            dec[i] = dec[i].min(d);
        }
    }
    let pair = |v: [f64; 2], f: &dyn Fn(f64) -> f64| DensePacked { dense: f(v[0]), packed: f(v[1]) };
    let linears = sides[1].linears();
    Ok(PackedSpeed {
        isa: prunus_sparse::simd::detected().name().into(),
        cpu: cpu_name(),
        formats: sides[1].format_counts().iter().map(|(f, n)| format!("{n} {f}")).collect::<Vec<_>>().join(", "),
        eval_tokens_per_s: pair(eval, &|s| (WINDOWS * seq_len) as f64 / s),
        decode_tokens_per_s: pair(dec, &|s| DECODE as f64 / s),
        first_token_s: pair(first, &|s| s),
        disk_bytes: DensePacked { dense: model.tensor_bytes(false)? as f64, packed: model.tensor_bytes(true)? as f64 },
        linear_bytes: DensePacked {
            dense: linears.iter().map(|l| l.dense_bytes).sum::<usize>() as f64,
            packed: linears.iter().map(|l| l.bytes).sum::<usize>() as f64,
        },
        protocol: format!(
            "{WINDOWS} windows of {seq_len} tokens, best of {EVAL_REPEATS}; decode {DECODE} tokens after a {PROMPT}-token prompt, best of {DECODE_REPEATS}; dense and packed alternately, {} threads",
            rayon::current_num_threads()
        ),
    })
}
