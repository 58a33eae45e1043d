//! Token trees: many continuations of one context scored in a single pass, shared prefixes
//! computed once (multiple choice). A node sits at its depth and attends to its ancestors.

use candle_core::{Device, Tensor};

use super::model::LlamaModel;
use super::forward::PassCtx;
use super::nll::LOGITS_CHUNK_ELEMS;
use crate::error::{ModelError, Result};

impl LlamaModel {
    /// Checks a token tree (see [`tree_hidden`](Self::tree_hidden)) and returns each node's
    /// position (its depth: a root is at position 0).
    fn tree_positions(&self, tokens: &[u32], parents: &[Option<usize>]) -> Result<Vec<usize>> {
        if tokens.is_empty() || tokens.len() != parents.len() {
            return Err(ModelError::Tokens {
                reason: format!("a token tree needs one parent per token (got {} tokens, {} parents)", tokens.len(), parents.len()),
            });
        }
        let mut pos = Vec::with_capacity(tokens.len());
        for (i, p) in parents.iter().enumerate() {
            pos.push(match *p {
                None => 0,
                Some(j) if j < i => pos[j] + 1,
                Some(j) => {
                    return Err(ModelError::Tokens { reason: format!("token {i} of a tree has parent {j}; parents must come first") });
                }
            });
        }
        Ok(pos)
    }

    /// Pass context of a token tree: RoPE at each node's depth, and an additive mask letting
    /// node i see exactly itself and its ancestors (rows stacked n_rep times, as in
    /// [`PassCtx::mask`]).
    fn tree_pass_ctx(&self, parents: &[Option<usize>], positions: &[usize]) -> Result<PassCtx> {
        let nodes = parents.len();
        // The same angles as `pass_ctx` gives position p.
        let (cos, sin) = self.rope_tables(positions.iter().copied())?;
        let mut visible = vec![f32::NEG_INFINITY; nodes * nodes]; // (nodes, nodes)
        for i in 0..nodes {
            let mut j = Some(i);
            while let Some(k) = j {
                visible[i * nodes + k] = 0.0;
                j = parents[k];
            }
        }
        let rep = self.config.n_rep();
        let one = Tensor::from_vec(visible, (1, nodes, nodes), &self.device)?;
        let mask = one.broadcast_as((rep, nodes, nodes))?.contiguous()?.reshape((rep * nodes, nodes))?;
        Ok(PassCtx {
            cos,
            sin,
            seq: nodes,
            n_rep: rep,
            device: self.device.clone(),
            mask: std::sync::OnceLock::from(mask),
            custom_mask: true,
        })
    }

    /// Final-norm hidden states of a token tree (a forest), (nodes, d_model).
    ///
    /// Node i holds token `tokens[i]` and continues node `parents[i]` (`None`: it starts a
    /// sequence); parents come before their children. Each root-to-node path is one
    /// sequence, and node i's hidden state equals the one [`forward_hidden`](Self::forward_hidden)
    /// gives the last token of its path: it sits at position = depth and attends to itself
    /// and its ancestors only. Sequences that share a prefix (multiple-choice continuations
    /// of one context) thus compute it once, and several trees pack into one forward.
    pub fn tree_hidden(&self, tokens: &[u32], parents: &[Option<usize>]) -> Result<Tensor> {
        let positions = self.tree_positions(tokens, parents)?;
        let ids = Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), &Device::Cpu)?;
        let mut x = self.embed(&ids)?; // (1, nodes, d_model)
        let ctx = self.tree_pass_ctx(parents, &positions)?;
        for b in 0..self.blocks.len() {
            x = self.run_block::<ModelError>(b, &x, &ctx, None)?;
        }
        Ok(self.final_norm(&x)?.squeeze(0)?)
    }

    /// Log-probabilities of next tokens in a token tree: for each `(node, token)` in
    /// `targets`, log p(token | the path ending at node). Log-softmax as in
    /// [`token_nll`](Self::token_nll) (f32 logits, log-sum-exp summed in f64); the output
    /// head runs only on the nodes that some target reads.
    pub fn tree_logprobs(&self, tokens: &[u32], parents: &[Option<usize>], targets: &[(usize, u32)]) -> Result<Vec<f64>> {
        let nodes = tokens.len();
        let vocab = self.config.vocab_size;
        if let Some(&(node, tok)) = targets.iter().find(|&&(n, t)| n >= nodes || t as usize >= vocab) {
            return Err(ModelError::Tokens {
                reason: format!("target (node {node}, token {tok}) is outside the tree ({nodes} nodes) or the vocabulary ({vocab})"),
            });
        }
        if targets.is_empty() {
            self.tree_positions(tokens, parents)?;
            return Ok(Vec::new());
        }
        let hidden = self.tree_hidden(tokens, parents)?; // (nodes, d_model)
        // The distinct nodes read, in order, and each target's row among them.
        let mut row_of = vec![usize::MAX; nodes];
        let mut rows = Vec::new();
        for &(node, _) in targets {
            if row_of[node] == usize::MAX {
                row_of[node] = rows.len();
                rows.push(node as u32);
            }
        }
        let n_rows = rows.len();
        let h = hidden.index_select(&Tensor::from_vec(rows, n_rows, &self.device)?, 0)?; // (n_rows, d_model)
        let w_t = self.lm_head_weight().t()?; // (d_model, vocab)
        let chunk = (LOGITS_CHUNK_ELEMS / vocab).max(1);
        let mut out = vec![0f64; targets.len()];
        let mut r0 = 0;
        while r0 < n_rows {
            let len = chunk.min(n_rows - r0);
            let logits = h.narrow(0, r0, len)?.matmul(&w_t)?; // (len, vocab)
            let lse = if self.device.is_cpu() {
                crate::kernels::row_logsumexp(&logits)? // (len)
            } else {
                let max = logits.max_keepdim(1)?;
                (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?.squeeze(1)?
            };
            let lse = lse.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
            let logits = logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            for (o, &(node, tok)) in out.iter_mut().zip(targets) {
                let r = row_of[node];
                if (r0..r0 + len).contains(&r) {
                    *o = f64::from(logits[(r - r0) * vocab + tok as usize] - lse[r - r0]);
                }
            }
            r0 += len;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;

    /// log p(seq[t] | seq[..t]) for t >= 1 from the plain forward.
    fn plain_logprobs(m: &LlamaModel, seq: &[u32]) -> Vec<f64> {
        let t = Tensor::from_vec(seq.to_vec(), (1, seq.len()), &Device::Cpu).unwrap();
        m.token_nll(&t).unwrap().to_vec2::<f32>().unwrap()[0].iter().map(|&v| -f64::from(v)).collect()
    }

    /// Appends `seq` to a tree as a fresh chain (no sharing) and returns its node indices.
    fn chain(tokens: &mut Vec<u32>, parents: &mut Vec<Option<usize>>, seq: &[u32], parent: Option<usize>) -> Vec<usize> {
        let mut prev = parent;
        seq.iter()
            .map(|&t| {
                tokens.push(t);
                parents.push(prev);
                prev = Some(tokens.len() - 1);
                tokens.len() - 1
            })
            .collect()
    }

    #[test]
    fn a_token_tree_scores_like_separate_sequences() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap();
        // Two "docs" packed as a forest: doc A has a shared context and three continuations
        // (two of them share their first token), doc B is a plain chain.
        let ctx = [5u32, 9, 3, 17, 40];
        let conts: [&[u32]; 3] = [&[4, 8], &[4, 2, 11], &[30]];
        let other = [1u32, 2, 3, 4, 5, 6];
        let (mut tokens, mut parents) = (Vec::new(), Vec::new());
        let ctx_nodes = chain(&mut tokens, &mut parents, &ctx, None);
        let last_ctx = *ctx_nodes.last().unwrap();
        let mut targets = Vec::new();
        let mut expect = Vec::new();
        // Continuations: the shared first token `4` is one node; every continuation token is a
        // target read from its predecessor's node.
        let first4 = chain(&mut tokens, &mut parents, &[4], Some(last_ctx))[0];
        let c0 = chain(&mut tokens, &mut parents, &[8], Some(first4));
        let c1 = chain(&mut tokens, &mut parents, &[2, 11], Some(first4));
        let c2 = chain(&mut tokens, &mut parents, &[30], Some(last_ctx));
        let nodes_of: [Vec<usize>; 3] = [vec![first4, c0[0]], vec![first4, c1[0], c1[1]], c2];
        for (cont, nodes) in conts.iter().zip(&nodes_of) {
            let full: Vec<u32> = ctx.iter().chain(cont.iter()).copied().collect();
            let lp = plain_logprobs(&m, &full);
            for (k, &node) in nodes.iter().enumerate() {
                let pred = if k == 0 { last_ctx } else { nodes[k - 1] };
                assert_eq!(tokens[node], cont[k]);
                targets.push((pred, cont[k]));
                expect.push(lp[ctx.len() - 1 + k]);
            }
        }
        let other_nodes = chain(&mut tokens, &mut parents, &other, None);
        let lp = plain_logprobs(&m, &other);
        for k in 1..other.len() {
            targets.push((other_nodes[k - 1], other[k]));
            expect.push(lp[k - 1]);
        }
        let got = m.tree_logprobs(&tokens, &parents, &targets).unwrap();
        assert_eq!(got.len(), expect.len());
        for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
            assert!((g - e).abs() < 1e-5, "target {i}: tree {g} vs plain {e}");
        }
        // The hidden state of a node is the plain forward's at the end of its path.
        let h = m.tree_hidden(&tokens, &parents).unwrap();
        let full: Vec<u32> = ctx.iter().chain([4u32, 2, 11].iter()).copied().collect();
        let plain = m.forward_hidden(&Tensor::from_vec(full.clone(), (1, full.len()), &Device::Cpu).unwrap()).unwrap();
        let a = h.get(c1[1]).unwrap();
        let b = plain.get(0).unwrap().get(full.len() - 1).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "hidden differs by {diff}");
    }


    #[test]
    fn malformed_trees_are_refused() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 1).unwrap();
        let e = m.tree_logprobs(&[1, 2], &[None, Some(1)], &[(0, 3)]).unwrap_err().to_string();
        assert!(e.contains("token 1 of a tree has parent 1"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None], &[(0, 3)]).unwrap_err().to_string();
        assert!(e.contains("2 tokens, 1 parents"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None, Some(0)], &[(2, 3)]).unwrap_err().to_string();
        assert!(e.contains("node 2"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None, Some(0)], &[(1, 64)]).unwrap_err().to_string();
        assert!(e.contains("token 64"), "{e}");
    }
}
