//! Activation statistics a layer-wise method may ask for, gathered per capture site.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What a method needs to know about a linear's inputs. Ordered: each kind includes the
/// cheaper ones before it (a Hessian run also has the squared norms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatKind {
    /// Nothing: the method looks at the weights only (magnitude).
    None,
    /// Per input feature j, the sum over calibration tokens of x_j^2 (Wanda).
    SqNorm,
    /// The full d_in x d_in Gram matrix sum of x x^T (SparseGPT).
    Hessian,
}

/// Statistics of one capture site's inputs over the calibration set, accumulated in f64.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Input width.
    pub d_in: usize,
    /// Number of calibration sequences seen.
    pub n_samples: usize,
    /// Number of tokens seen (n_samples * seq_len).
    pub n_tokens: usize,
    /// Per feature sum over tokens of x_j^2, length d_in (if asked for).
    pub sq_sum: Option<Vec<f64>>,
    /// Row-major d_in x d_in sum over tokens of x x^T (if asked for).
    pub gram: Option<Vec<f64>>,
}

impl Stats {
    /// Empty statistics for a site of width `d_in`, gathering what `kind` needs.
    pub fn new(kind: StatKind, d_in: usize) -> Self {
        Stats {
            d_in,
            n_samples: 0,
            n_tokens: 0,
            sq_sum: (kind >= StatKind::SqNorm).then(|| vec![0.0; d_in]),
            gram: (kind >= StatKind::Hessian).then(|| vec![0.0; d_in * d_in]),
        }
    }

    /// Adds a batch of `n_samples` sequences whose inputs are `x`, (n_tokens, d_in).
    pub fn add(&mut self, x: &Tensor, n_samples: usize) -> Result<()> {
        let (n_tokens, d_in) = x.dims2()?;
        if d_in != self.d_in {
            return Err(crate::Error::Shape {
                tensor: "captured activations".into(),
                expected: vec![n_tokens, self.d_in],
                got: vec![n_tokens, d_in],
            });
        }
        let x = x.to_dtype(DType::F32)?;
        if let Some(sq) = self.sq_sum.as_mut() {
            let flat = x.flatten_all()?.to_vec1::<f32>()?;
            crate::mask::check_finite(&flat, "calibration activations")?;
            for row in flat.chunks_exact(d_in) {
                for (acc, &v) in sq.iter_mut().zip(row) {
                    *acc += f64::from(v) * f64::from(v);
                }
            }
        }
        if let Some(gram) = self.gram.as_mut() {
            // (d_in, n_tokens) x (n_tokens, d_in) in f32, summed per batch into f64.
            let g = x.t()?.matmul(&x)?.flatten_all()?.to_vec1::<f32>()?;
            for (acc, v) in gram.iter_mut().zip(g) {
                *acc += f64::from(v);
            }
        }
        self.n_samples += n_samples;
        self.n_tokens += n_tokens;
        Ok(())
    }

    /// Wanda's `scaler_row`: per feature, sum over tokens of x_j^2 divided by the number of
    /// sequences (Wanda's running mean over calibration sequences), or `None` if not gathered.
    pub fn mean_sq_per_sample(&self) -> Option<Vec<f64>> {
        let n = self.n_samples.max(1) as f64;
        self.sq_sum.as_ref().map(|s| s.iter().map(|v| v / n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accumulates_sq_norm_and_gram() {
        let x = Tensor::new(&[[1f32, 2.0], [3.0, -1.0]], &Device::Cpu).unwrap();
        let mut s = Stats::new(StatKind::Hessian, 2);
        s.add(&x, 1).unwrap();
        s.add(&x, 1).unwrap();
        assert_eq!(s.sq_sum.as_deref(), Some(&[20.0, 10.0][..]));
        assert_eq!(s.gram.as_deref(), Some(&[20.0, -2.0, -2.0, 10.0][..]));
        assert_eq!(s.mean_sq_per_sample().unwrap(), vec![10.0, 5.0]);
        assert_eq!((s.n_samples, s.n_tokens), (2, 4));
    }

    #[test]
    fn none_gathers_nothing_and_nan_is_an_error() {
        let s = Stats::new(StatKind::None, 3);
        assert!(s.sq_sum.is_none() && s.gram.is_none());
        let x = Tensor::new(&[[1f32, f32::NAN]], &Device::Cpu).unwrap();
        let mut s = Stats::new(StatKind::SqNorm, 2);
        assert!(s.add(&x, 1).unwrap_err().to_string().contains("calibration activations"));
    }
}
