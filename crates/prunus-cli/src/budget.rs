//! Sizes a user can ask for, bounded before anything is allocated: windows against the model's
//! context, and the memory a run will take against the memory the machine has available.
//!
//! The estimates are deliberately simple upper-end counts of the large f32 buffers (they are
//! for refusing a run that cannot fit, not for accounting): one forward batch holds the
//! attention scores (and their softmax) of every head, the logits and their log-softmax, and a
//! few hidden-size and MLP-size activations per token; calibration keeps every window's hidden
//! states twice (a block's inputs and outputs); the gradient path keeps every intermediate of
//! the whole model for the backward pass.

use anyhow::{Result, bail};
use prunus_model::LlamaConfig;

const F32: u64 = 4;

/// `MemAvailable` from /proc/meminfo, in bytes.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// Bytes of the large buffers of one forward pass over `batch` windows of `seq` tokens.
pub fn forward_bytes(cfg: &LlamaConfig, batch: usize, seq: usize) -> u64 {
    let per_token = 3 * cfg.num_attention_heads as u64 * seq as u64 // scores, softmax, masked copy
        + 2 * cfg.vocab_size as u64 // logits and log-softmax
        + 8 * cfg.hidden_size as u64
        + 4 * cfg.intermediate_size as u64;
    (batch as u64).saturating_mul(seq as u64).saturating_mul(per_token).saturating_mul(F32)
}

/// Refuses windows longer than the model's context, and a batch whose forward pass would
/// need more memory than is available. `flag` names the window-length flag in the message.
pub fn check_windows(cfg: &LlamaConfig, flag: &str, seq: usize, batch: usize) -> Result<()> {
    if seq > cfg.max_position_embeddings {
        bail!("{flag} {seq} exceeds the model's context of {} tokens", cfg.max_position_embeddings);
    }
    check_fits(&format!("{flag} {seq} with --batch-size {batch}"), forward_bytes(cfg, batch, seq), "lower --batch-size or the window length")
}

/// Refuses a packed multiple-choice pass of `tokens` tokens (one tree of shared prefixes, so
/// it may be longer than the context) that would not fit in memory.
pub fn check_packed_tokens(cfg: &LlamaConfig, flag: &str, tokens: usize) -> Result<()> {
    check_fits(&format!("{flag} {tokens}"), forward_bytes(cfg, 1, tokens), "lower it")
}

/// Refuses calibration whose hidden states (every window, kept twice) and forward batch would
/// not fit in memory.
pub fn check_calibration(cfg: &LlamaConfig, samples: usize, seq: usize, batch: usize) -> Result<()> {
    if seq > cfg.max_position_embeddings {
        bail!("the calibration window of {seq} tokens exceeds the model's context of {} tokens", cfg.max_position_embeddings);
    }
    let states = (samples as u64).saturating_mul(seq as u64).saturating_mul(cfg.hidden_size as u64).saturating_mul(2 * F32);
    let need = states.saturating_add(forward_bytes(cfg, batch.min(samples), seq));
    check_fits(&format!("--calib-samples {samples} of {seq} tokens"), need, "use fewer or shorter calibration windows")
}

/// Refuses gradients over `tokens` calibration tokens (structured methods) that would not
/// fit: the weights, their gradients and every intermediate of the forward pass.
pub fn check_gradients(cfg: &LlamaConfig, n_params: usize, texts: usize, seq: usize) -> Result<()> {
    if seq > cfg.max_position_embeddings {
        bail!("the calibration window of {seq} tokens exceeds the model's context of {} tokens", cfg.max_position_embeddings);
    }
    let weights = (n_params as u64).saturating_mul(3 * F32);
    let graph = forward_bytes(cfg, texts, seq).saturating_mul(cfg.num_hidden_layers as u64 / 4 + 1);
    check_fits(&format!("gradients over --calib-samples {texts} of {seq} tokens"), weights.saturating_add(graph), "use fewer or shorter calibration texts")
}

fn check_fits(what: &str, need: u64, advice: &str) -> Result<()> {
    if let Some(avail) = available_bytes()
        && need > avail
    {
        bail!("{what} would need about {} of memory and {} is available; {advice}", gb(need), gb(avail));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_protocol_fits_and_absurd_sizes_do_not() {
        let mut cfg = LlamaConfig::new(49152, 576, 1536, 30, 9, 3, true);
        cfg.max_position_embeddings = 8192;
        let ok = forward_bytes(&cfg, 4, 512);
        assert!(ok > 500_000_000 && ok < 2_000_000_000, "{ok}");
        assert_eq!(forward_bytes(&cfg, usize::MAX, usize::MAX), u64::MAX, "saturates");
        let e = check_windows(&cfg, "--seq-len", 100_000, 4).unwrap_err().to_string();
        assert_eq!(e, "--seq-len 100000 exceeds the model's context of 8192 tokens");
        let e = check_calibration(&cfg, 1 << 40, 512, 4).unwrap_err().to_string();
        assert!(e.starts_with("--calib-samples 1099511627776 of 512 tokens would need about") && e.contains("is available"), "{e}");
    }
}
