//! Agreement of a pruned model with its dense original, position by position.
//!
//! For each predicted position, with p = softmax(dense logits) and q = softmax(pruned
//! logits) over the vocabulary: KL(p || q) = sum_v p_v (log p_v - log q_v) in nats, and
//! whether argmax p == argmax q (the lowest token id wins ties). Both are averaged over
//! positions. Exponentials are f32, every sum is f64, and per-row results are combined in a
//! fixed order, so the numbers do not depend on the thread count.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Rows of logits materialised at once by [`Agreement::add_hidden`] (per model).
const ROWS_PER_CHUNK: usize = 128;

/// Running sums of the agreement metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    kl_sum: f64,
    agree: usize,
    positions: usize,
}

/// (KL(p || q), argmax p == argmax q) of one row of dense and pruned logits.
fn row(d: &[f32], p: &[f32]) -> (f64, bool) {
    let argmax = |x: &[f32]| {
        let mut best = (0, f32::NEG_INFINITY);
        for (i, &v) in x.iter().enumerate() {
            if v > best.1 {
                best = (i, v);
            }
        }
        best
    };
    let (ad, md) = argmax(d);
    let (ap, mp) = argmax(p);
    // sum p_v (log p_v - log q_v) = (1/Sd) sum e_v ((d_v - md) - (p_v - mp)) - ln Sd + ln Sp,
    // with e_v = exp(d_v - md), Sd = sum e_v, Sp = sum exp(p_v - mp).
    let (mut sd, mut sp, mut cross) = (0f64, 0f64, 0f64);
    for (&x, &y) in d.iter().zip(p) {
        let (a, b) = (x - md, y - mp);
        let e = f64::from(a.exp());
        sd += e;
        sp += f64::from(b.exp());
        cross += e * (f64::from(a) - f64::from(b));
    }
    (cross / sd - sd.ln() + sp.ln(), ad == ap)
}

impl Agreement {
    /// An empty accumulator (no tokens seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the positions of row-major (rows, vocab) dense and pruned logits.
    pub fn add_logits(&mut self, dense: &[f32], pruned: &[f32], vocab: usize) -> Result<()> {
        if vocab == 0 || dense.len() != pruned.len() || !dense.len().is_multiple_of(vocab) {
            return Err(Error::Invalid(format!(
                "agreement needs equal (rows, {vocab}) logits, got {} and {} values",
                dense.len(),
                pruned.len()
            )));
        }
        let rows = dense.len() / vocab;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, rows.max(1));
        let per = rows.div_ceil(threads).max(1);
        let parts: Vec<Vec<(f64, bool)>> = std::thread::scope(|s| {
            let handles: Vec<_> = dense
                .chunks(per * vocab)
                .zip(pruned.chunks(per * vocab))
                .map(|(a, b)| s.spawn(move || a.chunks_exact(vocab).zip(b.chunks_exact(vocab)).map(|(x, y)| row(x, y)).collect()))
                .collect();
            handles.into_iter().map(|h| h.join().expect("agreement worker panicked")).collect()
        });
        for (kl, same) in parts.into_iter().flatten() {
            if !kl.is_finite() {
                return Err(Error::Invalid(format!("non-finite KL {kl} at agreement position {}", self.positions)));
            }
            self.kl_sum += kl;
            self.agree += usize::from(same);
            self.positions += 1;
        }
        Ok(())
    }

    /// Adds the positions of final-norm hidden states, (rows, d_model) each, through the two
    /// models' output heads, (vocab, d_model) each, a chunk of rows at a time.
    pub fn add_hidden(&mut self, dense_hidden: &Tensor, dense_head: &Tensor, pruned_hidden: &Tensor, pruned_head: &Tensor) -> Result<()> {
        let (rows, d) = dense_hidden.dims2()?;
        if pruned_hidden.dims2()? != (rows, d) {
            return Err(Error::Invalid(format!("agreement hidden states differ in shape: {:?} vs {:?}", dense_hidden.dims(), pruned_hidden.dims())));
        }
        let vocab = dense_head.dim(0)?;
        let (dt, pt) = (dense_head.t()?, pruned_head.t()?); // (d_model, vocab)
        let logits = |h: &Tensor, w: &Tensor, r0: usize, len: usize| -> Result<Vec<f32>> {
            Ok(h.narrow(0, r0, len)?.matmul(w)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let mut r0 = 0;
        while r0 < rows {
            let len = ROWS_PER_CHUNK.min(rows - r0);
            let a = logits(dense_hidden, &dt, r0, len)?;
            let b = logits(pruned_hidden, &pt, r0, len)?;
            self.add_logits(&a, &b, vocab)?;
            r0 += len;
        }
        Ok(())
    }

    /// Mean KL(dense || pruned) per position, nats.
    pub fn kl(&self) -> f64 {
        self.kl_sum / self.positions as f64
    }

    /// Fraction of positions whose argmax tokens agree.
    pub fn top1(&self) -> f64 {
        self.agree as f64 / self.positions as f64
    }

    /// Positions added.
    pub fn positions(&self) -> usize {
        self.positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KL and argmax straight from the definition, in f64.
    fn naive(d: &[f32], p: &[f32]) -> (f64, bool) {
        let soft = |x: &[f32]| {
            let m = x.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let s: f64 = x.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            x.iter().map(|&v| (f64::from(v) - m).exp() / s).collect::<Vec<f64>>()
        };
        let (a, b) = (soft(d), soft(p));
        let kl = a.iter().zip(&b).map(|(x, y)| x * (x / y).ln()).sum();
        let am = |v: &[f64]| v.iter().enumerate().fold((0, f64::NEG_INFINITY), |acc, (i, &x)| if x > acc.1 { (i, x) } else { acc }).0;
        (kl, am(&a) == am(&b))
    }

    #[test]
    fn matches_the_definition_and_is_zero_for_equal_models() {
        let mut rng = prunus_core::rng::SplitMix64::new(11);
        let vocab = 37;
        let rows = 9;
        let d: Vec<f32> = (0..rows * vocab).map(|_| 4.0 * rng.uniform(1.0)).collect();
        let p: Vec<f32> = d.iter().map(|&v| v + rng.uniform(1.5)).collect();
        let mut a = Agreement::new();
        a.add_logits(&d, &p, vocab).unwrap();
        let (mut kl, mut agree) = (0.0, 0);
        for (x, y) in d.chunks(vocab).zip(p.chunks(vocab)) {
            let (k, s) = naive(x, y);
            kl += k;
            agree += usize::from(s);
        }
        assert_eq!(a.positions(), rows);
        assert!((a.kl() - kl / rows as f64).abs() < 1e-6, "{} vs {}", a.kl(), kl / rows as f64);
        assert_eq!(a.top1(), agree as f64 / rows as f64);
        assert!(a.kl() > 0.0 && a.top1() < 1.0, "the perturbation changes something: {a:?}");
        let mut same = Agreement::new();
        same.add_logits(&d, &d, vocab).unwrap();
        assert_eq!((same.kl(), same.top1()), (0.0, 1.0));
        assert!(Agreement::new().add_logits(&d, &p[1..], vocab).is_err());
    }

    #[test]
    fn hidden_states_go_through_each_head() {
        let mut rng = prunus_core::rng::SplitMix64::new(5);
        let (rows, dm, vocab) = (300, 8, 21); // more rows than one chunk
        let t = |n: usize, m: usize, rng: &mut prunus_core::rng::SplitMix64| {
            Tensor::from_vec((0..n * m).map(|_| rng.uniform(1.0)).collect::<Vec<f32>>(), (n, m), &candle_core::Device::Cpu).unwrap()
        };
        let (hd, hp, w) = (t(rows, dm, &mut rng), t(rows, dm, &mut rng), t(vocab, dm, &mut rng));
        let mut a = Agreement::new();
        a.add_hidden(&hd, &w, &hp, &w).unwrap();
        let ld = hd.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let lp = hp.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut b = Agreement::new();
        b.add_logits(&ld, &lp, vocab).unwrap();
        assert_eq!(a.positions(), rows);
        assert!((a.kl() - b.kl()).abs() < 1e-9 && a.top1() == b.top1());
    }
}
