//! Perplexity over non-overlapping windows (the wiki-vital protocol of docs/protocols.md).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A perplexity with its protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerplexityResult {
    /// exp(mean_nll).
    pub ppl: f64,
    /// Mean negative log-likelihood per prediction (nats).
    pub mean_nll: f64,
    /// Window length in tokens.
    pub seq_len: usize,
    /// Number of windows W scored.
    pub windows: usize,
    /// Total predictions, W * (seq_len - 1).
    pub predictions: usize,
    /// Tokens in the corpus split (before taking W windows).
    pub corpus_tokens: usize,
    /// Summed NLL of each window, in order.
    pub window_nll: Vec<f64>,
}

/// Number of windows the protocol scores: min(max_windows, n_tokens / seq_len), at least one.
pub fn n_windows(corpus: &str, n_tokens: usize, seq_len: usize, max_windows: usize) -> Result<usize> {
    if seq_len < 2 {
        return Err(Error::Invalid(format!("seq_len must be at least 2, got {seq_len}")));
    }
    if max_windows == 0 {
        return Err(Error::Invalid("max_windows must be at least 1".into()));
    }
    let w = (n_tokens / seq_len).min(max_windows);
    if w == 0 {
        return Err(Error::TooShort { corpus: corpus.to_string(), n_tokens, seq_len });
    }
    Ok(w)
}

/// Perplexity of `tokens` (one corpus split) under the windows protocol.
///
/// `window_nll` receives a (batch, seq_len) u32 tensor and returns each window's summed
/// next-token NLL over its seq_len - 1 predictions; `on_window` is told how many windows are
/// done, for a progress bar.
pub fn perplexity(
    corpus: &str,
    tokens: &[u32],
    seq_len: usize,
    max_windows: usize,
    batch_size: usize,
    window_nll: &mut dyn FnMut(&Tensor) -> Result<Vec<f64>>,
    on_window: &mut dyn FnMut(usize),
) -> Result<PerplexityResult> {
    let windows = n_windows(corpus, tokens.len(), seq_len, max_windows)?;
    let mut nll = Vec::with_capacity(windows);
    for start in (0..windows).step_by(batch_size.max(1)) {
        let b = batch_size.max(1).min(windows - start);
        let ids = tokens[start * seq_len..(start + b) * seq_len].to_vec();
        let batch = Tensor::from_vec(ids, (b, seq_len), &Device::Cpu)?;
        let got = window_nll(&batch)?;
        if got.len() != b {
            return Err(Error::Invalid(format!("expected {b} window NLLs, got {}", got.len())));
        }
        for (i, v) in got.into_iter().enumerate() {
            if !v.is_finite() {
                return Err(Error::NonFinite { window: start + i, value: v });
            }
            nll.push(v);
        }
        on_window(nll.len());
    }
    let predictions = windows * (seq_len - 1);
    let total: f64 = nll.iter().sum();
    let mean_nll = total / predictions as f64;
    Ok(PerplexityResult {
        ppl: mean_nll.exp(),
        mean_nll,
        seq_len,
        windows,
        predictions,
        corpus_tokens: tokens.len(),
        window_nll: nll,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_protocol() {
        assert_eq!(n_windows("c", 1000, 100, 64).unwrap(), 10);
        assert_eq!(n_windows("c", 1000, 100, 3).unwrap(), 3);
        let e = n_windows("wiki-vital", 99, 100, 3).unwrap_err().to_string();
        assert_eq!(e, "corpus `wiki-vital` has 99 tokens, too few for one window of seq_len 100");
    }

    #[test]
    fn uniform_model_has_vocab_perplexity() {
        // A model that spreads probability evenly over 50 tokens has perplexity 50.
        let tokens: Vec<u32> = (0..1000).map(|i| i % 50).collect();
        let mut seen = Vec::new();
        let mut nll = |t: &Tensor| -> Result<Vec<f64>> {
            let (b, s) = t.dims2()?;
            seen.push(t.to_vec2::<u32>()?[0][0]);
            Ok(vec![(s - 1) as f64 * (50f64).ln(); b])
        };
        let r = perplexity("c", &tokens, 100, 7, 3, &mut nll, &mut |_| {}).unwrap();
        assert!((r.ppl - 50.0).abs() < 1e-9);
        assert_eq!((r.windows, r.predictions), (7, 7 * 99));
        // batches start at windows 0, 3, 6: tokens 0, 300 % 50, 600 % 50
        assert_eq!(seen, vec![0, 0, 0]);
    }
}
