//! Agreement of a pruned model with its dense self (task `agree:wiki-vital`): KL divergence
//! per token and top-1 agreement on the first K perplexity windows.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;
use prunus_eval::Agreement;
use prunus_eval::report::Evaluation;
use prunus_eval::tasks::{self, Task};

use crate::args::EvalOpts;
use crate::session::{Session, bar, window_batch};

/// Agreement with the dense model on the first K perplexity windows: the dense final-norm
/// hidden states (K x seq_len x d_model floats, 9.4 MB for 8 x 512 on SmolLM2) and the dense
/// output head are kept from before pruning.
pub(crate) struct DenseAgreement {
    task: &'static Task,
    seq_len: usize,
    /// (seq_len, d_model) per window.
    hidden: Vec<Tensor>,
    head: Tensor,
    acc: Agreement,
    /// Windows compared so far (always a prefix).
    next: usize,
    batch_size: usize,
    pub(crate) dense_seconds: f64,
}

impl DenseAgreement {
    pub(crate) fn new(session: &Session, tokens: &[u32], o: &EvalOpts, k: usize) -> Result<Self> {
        let task = tasks::find("agree:wiki-vital")?;
        let corpus = task.corpus().context("an agreement task names its corpus")?;
        let windows = prunus_eval::perplexity::n_windows(corpus, tokens.len(), o.seq_len, k)?;
        let start = Instant::now();
        let pb = bar(windows as u64, "dense reference");
        let mut hidden = Vec::with_capacity(windows);
        for w0 in (0..windows).step_by(o.batch_size) {
            let b = o.batch_size.min(windows - w0);
            let t = window_batch(tokens, w0, b, o.seq_len)?;
            let h = session.model.forward_hidden(&t)?;
            for i in 0..b {
                hidden.push(h.get(i)?);
            }
            pb.set_position(hidden.len() as u64);
        }
        pb.finish_and_clear();
        Ok(DenseAgreement {
            task,
            seq_len: o.seq_len,
            hidden,
            head: session.model.lm_head_weight().clone(),
            acc: Agreement::new(),
            next: 0,
            batch_size: o.batch_size,
            dense_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Compares the pruned hidden states (b, seq_len, d_model) of windows `first..first + b`
    /// with the dense ones, for the windows that come next in order.
    pub(crate) fn observe(&mut self, first: usize, pruned: &Tensor, pruned_head: &Tensor) -> prunus_eval::Result<()> {
        let (b, seq, _) = pruned.dims3()?;
        if seq != self.seq_len {
            return Ok(());
        }
        for i in 0..b {
            let w = first + i;
            if w == self.next && w < self.hidden.len() {
                let dense = self.hidden[w].narrow(0, 0, seq - 1)?;
                let p = pruned.get(i)?.narrow(0, 0, seq - 1)?;
                self.acc.add_hidden(&dense, &self.head, &p, pruned_head)?;
                self.next += 1;
            }
        }
        Ok(())
    }

    /// Runs the pruned model on the windows not seen yet and returns the two rows.
    pub(crate) fn finish(&mut self, session: &Session, tokens: &[u32]) -> Result<Vec<Evaluation>> {
        let k = self.hidden.len();
        while self.next < k {
            let (w0, b) = (self.next, self.batch_size.min(k - self.next));
            let t = window_batch(tokens, w0, b, self.seq_len)?;
            let h = session.model.forward_hidden(&t)?;
            self.observe(w0, &h, session.model.lm_head_weight())?;
        }
        let positions = self.acc.positions();
        println!(
            "{} v{}: kl_dense = {:.5} nats/token, top1_agree = {:.4} ({k} windows of {} tokens; dense reference {:.1} s)",
            self.task.name, self.task.version, self.acc.kl(), self.acc.top1(), self.seq_len, self.dense_seconds
        );
        let protocol = format!("{} (K = {k})", self.task.protocol);
        Ok([("kl_dense", self.acc.kl()), ("top1_agree", self.acc.top1())]
            .into_iter()
            .map(|(metric, value)| Evaluation {
                task: self.task.name.into(),
                task_version: self.task.version,
                metric: metric.into(),
                value,
                seq_len: Some(self.seq_len),
                windows: Some(k),
                predictions: Some(positions),
                stderr: None,
                docs: None,
                protocol: protocol.clone(),
            })
            .collect())
    }
}
