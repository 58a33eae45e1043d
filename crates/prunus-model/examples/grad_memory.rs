//! Peak memory and time of one `loss_and_grads` on the default model (SmolLM2-135M) at
//! batch 4 x 128 tokens:
//!
//! ```text
//! cargo run --release -p prunus-model --example grad_memory
//! ```
//!
//! Memory is the kernel's peak resident set (VmHWM in /proc/self/status), reset after the
//! model is loaded (writing 5 to /proc/self/clear_refs), so the peak is the training pass's;
//! the process's peak including loading is printed too. Linux only.

use std::time::Instant;

use candle_core::{Device, Tensor};
use prunus_model::LlamaModel;

/// A field of /proc/self/status in bytes (the kernel reports kB).
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_string(), |b| format!("{:.2} GB", b as f64 / 1e9))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = prunus_data::assets::default_model_path()?;
    let model = LlamaModel::load(&path, &Device::Cpu)?;
    let load_peak = status_bytes("VmHWM:");
    let (n, seq) = (4, 128);
    let vocab = model.config().vocab_size as u64;
    // Deterministic pseudo-random ids: memory and time do not depend on the text.
    let mut rng = prunus_core::rng::SplitMix64::new(1);
    let ids: Vec<u32> = (0..n * seq).map(|_| rng.below(vocab) as u32).collect();
    let tokens = Tensor::from_vec(ids, (n, seq), &Device::Cpu)?;

    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_bytes("VmRSS:");
    let t0 = Instant::now();
    let (loss, grads) = model.loss_and_grads(&tokens)?;
    let secs = t0.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM:");
    println!("model: {} ({} parameters)", path.display(), model.n_params());
    println!("loss_and_grads at {n} x {seq} tokens: loss {loss:.4}, {} gradients, {secs:.2} s", grads.len());
    println!("resident before the call: {}", gb(before));
    if reset {
        println!("peak resident during the call: {}", gb(peak));
    } else {
        println!("peak resident (could not reset the peak after loading): {}", gb(peak));
    }
    println!("peak resident while loading: {}", gb(load_peak));
    // For scale: a second call (the allocator has its memory now), the differentiable forward
    // alone, and the inference forward.
    let t0 = Instant::now();
    model.loss_and_grads(&tokens)?;
    println!("a second loss_and_grads: {:.2} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    model.training_loss(&tokens, prunus_model::Precision::F32)?;
    println!("the differentiable forward alone (training_loss): {:.2} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    model.nll(&tokens)?;
    println!("the inference forward (nll): {:.2} s", t0.elapsed().as_secs_f64());
    Ok(())
}
