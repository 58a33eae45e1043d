//! `prunus generate`: text from a prompt on the packed-sparse runtime (`prunus_model::runtime`),
//! greedy or sampled with a seed, with a key/value cache; the time to the first token and the
//! decode speed on stderr (or as JSON).

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use prunus_model::runtime::{Packing, Runtime};
use prunus_sparse::Format;

use crate::session;

/// `prunus generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// `default` (SmolLM2-135M), a GGUF file or a Hugging Face directory, e.g. one that
    /// `prunus prune --out` wrote.
    #[arg(long, default_value = "default")]
    pub model: String,
    /// The text to continue (tokenized without special tokens, as the evaluations are).
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate (fewer if the model emits its end-of-sequence token).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_tokens: usize,
    /// Sampling temperature: 0 takes the most likely token at every step (greedy, the lowest
    /// id on ties); above 0, tokens are drawn from softmax(logits / T) with --seed.
    #[arg(long, default_value_t = 0.0, value_name = "T", allow_negative_numbers = true)]
    pub temperature: f64,
    /// Seed of the sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How the block linears are stored: `auto` (each in the format its zeros suit: a bitmap
    /// of the non-zeros, CSR when very sparse, dense when at least 3/4 of it is non-zero),
    /// `dense` (every linear through the dense kernels, the reference), or one format for all:
    /// `csr`, `bitmap`, `2:4`, `4:8` (kept values with their positions in each group).
    #[arg(long, default_value = "auto", value_name = "PACKING")]
    pub packing: String,
    /// Print one JSON object (text, token counts, timings, formats and sizes) instead of the
    /// text and a timing line.
    #[arg(long)]
    pub json: bool,
    /// Threads for the kernels [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// `auto`, `dense`, `csr`, `bitmap` or `N:M`.
pub fn parse_packing(s: &str) -> Result<Packing> {
    Ok(match s {
        "auto" => Packing::Auto,
        "dense" => Packing::Dense,
        "csr" => Packing::All(Format::Csr),
        "bitmap" => Packing::All(Format::Bitmap),
        other => match other.split_once(':').map(|(n, m)| (n.parse::<usize>(), m.parse::<usize>())) {
            Some((Ok(n), Ok(m))) if n < m && m <= 256 => Packing::All(Format::NM { n, m }),
            _ => bail!("unknown packing `{other}`: give auto, dense, csr, bitmap or N:M (e.g. 2:4)"),
        },
    })
}

/// A token drawn from `logits`: the largest (lowest id on ties) at temperature 0, else from
/// softmax(logits / temperature) by the inverse distribution at a uniform draw.
fn pick(logits: &[f32], temperature: f64, rng: &mut prunus_core::rng::SplitMix64) -> u32 {
    if temperature <= 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f64> = logits.iter().map(|&v| ((f64::from(v) - f64::from(m)) / temperature).exp()).collect();
    let total: f64 = w.iter().sum();
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for (i, wi) in w.iter().enumerate() {
        acc += wi;
        if u < acc {
            return i as u32;
        }
    }
    (w.len() - 1) as u32
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let packing = parse_packing(&a.packing)?;
    if a.max_tokens == 0 {
        bail!("--max-tokens 0 generates nothing: give at least 1");
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        bail!("--temperature {} must be a finite number >= 0", a.temperature);
    }
    if a.threads == Some(0) {
        bail!("--threads 0: give at least 1");
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads.unwrap_or(0)).build()?;
    let resolved = session::resolve(&a.model)?;
    let session = session::load_resolved(&a.model, resolved)?;
    let prompt = prunus_data::tokenizer::encode_whole(&session.tokenizer, &a.prompt)?;
    if prompt.is_empty() {
        bail!("the prompt has no tokens: give some text");
    }
    let eos: Vec<u32> = match &session.model.config().eos_token_id {
        Some(prunus_model::TokenIds::One(id)) => vec![*id],
        Some(prunus_model::TokenIds::Many(ids)) => ids.clone(),
        None => Vec::new(),
    };
    let t = Instant::now();
    let rt = Runtime::new(&session.model, packing)?;
    let pack_seconds = t.elapsed().as_secs_f64();
    let mut rng = prunus_core::rng::SplitMix64::new(a.seed);
    let (out, ttft, decode_seconds) = pool.install(|| -> Result<(Vec<u32>, f64, f64)> {
        let mut cache = rt.cache();
        let t = Instant::now();
        let logits = rt.extend(&mut cache, &prompt)?;
        let mut next = pick(&logits, a.temperature, &mut rng);
        let ttft = t.elapsed().as_secs_f64();
        let mut out = vec![next];
        let t = Instant::now();
        while out.len() < a.max_tokens && !eos.contains(&next) {
            let logits = rt.extend(&mut cache, &[next])?;
            next = pick(&logits, a.temperature, &mut rng);
            out.push(next);
        }
        Ok((out, ttft, t.elapsed().as_secs_f64()))
    })?;
    let text = prunus_data::tokenizer::decode(&session.tokenizer, &out)?;
    let linears = rt.linears();
    let (bytes, dense_bytes) = linears.iter().fold((0, 0), |(a, b), l| (a + l.bytes, b + l.dense_bytes));
    let formats = rt.format_counts();
    let decoded = out.len() - 1;
    let decode_tps = if decode_seconds > 0.0 { decoded as f64 / decode_seconds } else { 0.0 };
    let json = serde_json::json!({
        "model": session.info,
        "prompt_tokens": prompt.len(),
        "generated_tokens": out.len(),
        "text": text,
        "temperature": a.temperature,
        "seed": a.seed,
        "packing": a.packing,
        "threads": pool.current_num_threads(),
        "isa": prunus_sparse::simd::detected().name(),
        "formats": formats.iter().map(|(f, n)| serde_json::json!({"format": f.to_string(), "linears": n})).collect::<Vec<_>>(),
        "linear_bytes": bytes,
        "linear_dense_bytes": dense_bytes,
        "seconds": {"load": session.seconds, "pack": pack_seconds, "time_to_first_token": ttft, "decode": decode_seconds},
        "decode_tokens_per_second": decode_tps,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("{text}");
        let formats: Vec<String> = formats.iter().map(|(f, n)| format!("{n} {f}")).collect();
        eprintln!(
            "{} prompt tokens, {} generated; time to first token {:.3} s, decode {:.1} tokens/s ({} tokens in {:.2} s); linears {} ({:.1} of {:.1} MiB), kernels {}",
            prompt.len(),
            out.len(),
            ttft,
            decode_tps,
            decoded,
            decode_seconds,
            formats.join(", "),
            bytes as f64 / (1 << 20) as f64,
            dense_bytes as f64 / (1 << 20) as f64,
            prunus_sparse::simd::detected().name(),
        );
    }
    Ok(())
}
