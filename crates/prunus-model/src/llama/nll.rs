//! Next-token negative log-likelihood: per position and summed per window, with the output
//! head run in chunks of positions so that memory stays bounded.

use candle_core::{Device, Tensor};

use super::model::LlamaModel;
use crate::error::{ModelError, Result};

/// Elements of one logits chunk in [`LlamaModel::token_nll`] (64 MiB of f32).
pub(super) const LOGITS_CHUNK_ELEMS: usize = 1 << 24;

impl LlamaModel {
    /// Per-position next-token NLL, (n_samples, seq_len) -> (n_samples, seq_len - 1) f32:
    /// entry (i, t) is -log p(tokens[i, t+1] | tokens[i, ..=t]). Log-softmax is computed in
    /// f32, the output head in chunks of positions so that memory stays bounded.
    pub fn token_nll(&self, tokens: &Tensor) -> Result<Tensor> {
        let (ids, _, seq) = self.check_tokens(tokens)?;
        if seq < 2 {
            return Err(ModelError::Tokens { reason: format!("seq_len {seq} leaves nothing to predict") });
        }
        let hidden = self.forward_hidden(&ids)?; // (n, seq, d_model)
        self.token_nll_from_hidden(&hidden, &ids)
    }

    /// [`token_nll`](Self::token_nll) from hidden states that
    /// [`forward_hidden`](Self::forward_hidden) already computed for `tokens`, so that a
    /// caller who also needs the hidden states (dense agreement) runs the blocks once.
    pub fn token_nll_from_hidden(&self, hidden: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let (ids, n, seq) = self.check_tokens(tokens)?;
        if seq < 2 {
            return Err(ModelError::Tokens { reason: format!("seq_len {seq} leaves nothing to predict") });
        }
        let d = self.config.hidden_size;
        if hidden.dims() != [n, seq, d] {
            return Err(ModelError::ShapeMismatch {
                tensor: "hidden states for token_nll_from_hidden".into(),
                expected: vec![n, seq, d],
                found: hidden.dims().to_vec(),
            });
        }
        let rows = n * (seq - 1);
        let h = hidden.narrow(1, 0, seq - 1)?.contiguous()?.reshape((rows, d))?; // (n*(seq-1), d_model)
        let targets = ids.narrow(1, 1, seq - 1)?.contiguous()?.reshape((rows, 1))?; // (n*(seq-1), 1)
        let w_t = self.lm_head_weight().t()?; // (d_model, vocab)
        let chunk = (LOGITS_CHUNK_ELEMS / self.config.vocab_size).max(1);
        let mut parts = Vec::with_capacity(rows.div_ceil(chunk));
        let mut r0 = 0;
        while r0 < rows {
            let len = chunk.min(rows - r0);
            let logits = h.narrow(0, r0, len)?.matmul(&w_t)?; // (len, vocab)
            let lse = if self.device.is_cpu() {
                crate::kernels::row_logsumexp(&logits)?.unsqueeze(1)? // (len, 1)
            } else {
                let max = logits.max_keepdim(1)?; // (len, 1)
                (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?
            };
            let tgt = logits.gather(&targets.narrow(0, r0, len)?, 1)?; // (len, 1)
            parts.push((lse - tgt)?);
            r0 += len;
        }
        Ok(Tensor::cat(&parts, 0)?.reshape((n, seq - 1))?)
    }

    /// Summed next-token NLL of each window, (n_samples, seq_len) -> n_samples values; each
    /// window scores its seq_len - 1 predictions (f32 log-softmax, f64 sums). Perplexity over
    /// windows is `exp(sum / (n_samples * (seq_len - 1)))`.
    pub fn nll(&self, tokens: &Tensor) -> Result<Vec<f64>> {
        let per_pos = self.token_nll(tokens)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        Ok(per_pos.iter().map(|row| row.iter().map(|&v| v as f64).sum()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;

    #[test]
    fn token_nll_from_hidden_equals_token_nll() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
        let ids: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % 64).collect();
        let t = Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap();
        let a = m.token_nll(&t).unwrap().to_vec2::<f32>().unwrap();
        let h = m.forward_hidden(&t).unwrap();
        let b = m.token_nll_from_hidden(&h, &t).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
        let e = m.token_nll_from_hidden(&h.narrow(1, 0, 11).unwrap(), &t).unwrap_err().to_string();
        assert!(e.contains("token_nll_from_hidden"), "{e}");
    }
}
