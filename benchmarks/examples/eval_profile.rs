//! Evaluates one 512-token window of the default model again and again on one side of the
//! sparse-speed comparison (or, with `decode`, decodes 64 tokens after a 32-token prompt
//! again and again), for a profiler (`perf record -e cpu-clock -- ...`) to see where that
//! side's time goes, and prints the best time.
//!
//! Run: `cargo run --release -p prunus-benches --example eval_profile -- 0.7 packed 20 [decode]`
//! (sparsity pruned by magnitude per matrix, 0 for none; `dense` or `packed` as in
//! `sparse_speed`; seconds to loop).

use prunus_core::Pattern;
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_model::runtime::{Packing, Runtime};
use {prunus_magnitude as _, prunus_sparse as _};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: eval_profile SPARSITY dense|packed SECONDS [eval|decode]";
    let (sparsity, side, seconds, decode) = match &args[..] {
        [a, b, c] => (a, b, c, false),
        [a, b, c, m] if m == "eval" || m == "decode" => (a, b, c, m == "decode"),
        _ => anyhow::bail!(usage),
    };
    let (sparsity, seconds): (f64, f64) = (sparsity.parse()?, seconds.parse()?);
    let packing = match side.as_str() {
        "dense" => Packing::Dense,
        "packed" => Packing::Auto,
        _ => anyhow::bail!(usage),
    };
    let (mut model, eval) = prunus_benches::default_model_and_tokens(prunus_benches::Text::Eval)?;
    if sparsity > 0.0 {
        let magnitude = prunus_core::registry::find("magnitude").expect("linked").build_layerwise(&serde_json::Value::Null)?;
        prune_layerwise(&mut model, &magnitude, &Pattern::Unstructured { sparsity }, None, &PipelineOptions::default(), &mut |_| {})?;
    }
    let runtime = Runtime::new(&model, packing)?;
    if decode {
        let argmax = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b }) as u32;
        let (start, mut best, mut n) = (std::time::Instant::now(), f64::INFINITY, 0);
        while start.elapsed().as_secs_f64() < seconds {
            let mut cache = runtime.cache();
            let mut logits = runtime.extend(&mut cache, &eval[..32])?;
            let t = std::time::Instant::now();
            for _ in 0..64 {
                logits = runtime.extend(&mut cache, &[argmax(&logits)])?;
            }
            best = best.min(t.elapsed().as_secs_f64());
            n += 1;
        }
        println!("{side} at {sparsity}: {n} decodes of 64 tokens, best {:.1} ms ({:.1} tokens/s)", best * 1e3, 64.0 / best);
        return Ok(());
    }
    let window = &eval[..512];
    runtime.window_logits(window)?;
    let (start, mut best, mut n) = (std::time::Instant::now(), f64::INFINITY, 0);
    while start.elapsed().as_secs_f64() < seconds {
        let t = std::time::Instant::now();
        runtime.window_logits(window)?;
        best = best.min(t.elapsed().as_secs_f64());
        n += 1;
    }
    println!("{side} at {sparsity}: {n} windows, best {:.1} ms ({:.1} tokens/s)", best * 1e3, 512.0 / best);
    Ok(())
}
