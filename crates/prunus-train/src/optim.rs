//! AdamW (Loshchilov and Hutter): Adam with the weight decay applied to the weights directly
//! instead of through the gradient, and both moments bias-corrected.
//!
//! One step, per weight, in the order of PyTorch's single-tensor `torch.optim.AdamW` (scalars
//! computed in f64 as Python does, applied in f32 as the f32 tensors are):
//!
//! ```text
//! p <- p * (1 - lr * weight_decay)
//! m <- m + (1 - beta1) * (g - m)
//! v <- v * beta2 + (1 - beta2) * g * g
//! p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// AdamW's hyperparameters besides the learning rate (which a [`Schedule`](crate::Schedule)
/// gives per step). Defaults are MGPP's recipe.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamWConfig {
    /// Decay of the first moment, in [0, 1).
    pub beta1: f64,
    /// Decay of the second moment, in [0, 1).
    pub beta2: f64,
    /// Added to the root of the second moment, > 0.
    pub eps: f64,
    /// Decoupled weight decay per unit of learning rate, >= 0.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.98, eps: 1e-6, weight_decay: 0.0 }
    }
}

impl AdamWConfig {
    /// Errors naming the first hyperparameter out of its range.
    pub fn check(&self) -> Result<()> {
        let bad = |name, value: f64, reason| Err(TrainError::Hyperparameter { name, value: value.to_string(), reason });
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(name, b, "must be in [0, 1)");
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad("eps", self.eps, "must be positive and finite");
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("weight_decay", self.weight_decay, "must be zero or positive, and finite");
        }
        Ok(())
    }
}

/// AdamW over a fixed list of f32 buffers (see the module docs). The state (step count and
/// both moments) is public through [`state`](Self::state) and [`from_state`](Self::from_state),
/// so that a checkpoint can carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamW {
    config: AdamWConfig,
    steps: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl AdamW {
    /// A fresh optimizer for buffers of the given lengths (moments at zero, no step taken).
    pub fn new(config: AdamWConfig, lengths: &[usize]) -> Result<Self> {
        config.check()?;
        Ok(AdamW { config, steps: 0, m: lengths.iter().map(|&n| vec![0.0; n]).collect(), v: lengths.iter().map(|&n| vec![0.0; n]).collect() })
    }

    /// An optimizer resumed from a checkpoint's state (see [`state`](Self::state)).
    pub fn from_state(config: AdamWConfig, steps: u64, m: Vec<Vec<f32>>, v: Vec<Vec<f32>>) -> Result<Self> {
        config.check()?;
        if m.len() != v.len() || m.iter().zip(&v).any(|(a, b)| a.len() != b.len()) {
            return Err(TrainError::Buffers("the first and second moments have different lengths".into()));
        }
        Ok(AdamW { config, steps, m, v })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// (steps taken, first moments, second moments).
    pub fn state(&self) -> (u64, &[Vec<f32>], &[Vec<f32>]) {
        (self.steps, &self.m, &self.v)
    }

    /// One step at learning rate `lr` on `params` with their `grads`, buffer by buffer in the
    /// order the optimizer was made with.
    pub fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], lr: f64) -> Result<()> {
        if params.len() != self.m.len() || grads.len() != self.m.len() {
            return Err(TrainError::Buffers(format!("{} parameters and {} gradients for an optimizer of {} buffers", params.len(), grads.len(), self.m.len())));
        }
        for (i, ((p, g), m)) in params.iter().zip(grads).zip(&self.m).enumerate() {
            if p.len() != m.len() || g.len() != m.len() {
                return Err(TrainError::Buffers(format!("buffer {i}: {} parameters and {} gradients, state of {}", p.len(), g.len(), m.len())));
            }
        }
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(TrainError::Hyperparameter { name: "learning rate", value: lr.to_string(), reason: "must be zero or positive, and finite" });
        }
        self.steps += 1;
        let c = &self.config;
        let t = self.steps as i32;
        let decay = (1.0 - lr * c.weight_decay) as f32;
        let (w1, b2, w2) = ((1.0 - c.beta1) as f32, c.beta2 as f32, (1.0 - c.beta2) as f32);
        let step_size = (lr / (1.0 - c.beta1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt() as f32;
        let eps = c.eps as f32;
        use rayon::prelude::*;
        const CHUNK: usize = crate::clip::CHUNK;
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            // Element by element: the same result on any number of threads.
            p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(|(((p, g), m), v)| {
                for (((p, &g), m), v) in p.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    *p *= decay;
                    *m += w1 * (g - *m);
                    *v = *v * b2 + w2 * g * g;
                    *p -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same step in f64, written from the paper's formula (not from the code above).
    fn reference(p: &mut [f64], m: &mut [f64], v: &mut [f64], g: &[f64], lr: f64, c: &AdamWConfig, t: i32) {
        for i in 0..p.len() {
            p[i] -= lr * c.weight_decay * p[i];
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
            let m_hat = m[i] / (1.0 - c.beta1.powi(t));
            let v_hat = v[i] / (1.0 - c.beta2.powi(t));
            p[i] -= lr * m_hat / (v_hat.sqrt() + c.eps);
        }
    }

    #[test]
    fn three_steps_match_the_formula() {
        let config = AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() };
        let mut opt = AdamW::new(config, &[3, 2]).unwrap();
        let (mut a, mut b) = (vec![0.5f32, -1.25, 2.0], vec![0.75f32, -0.1]);
        let mut want: Vec<f64> = a.iter().chain(&b).map(|&x| f64::from(x)).collect();
        let (mut m, mut v) = (vec![0.0; 5], vec![0.0; 5]);
        let grads: [(&[f32], &[f32]); 3] = [(&[0.1, -0.3, 0.02], &[1.5, 0.0]), (&[-0.2, -0.1, 0.05], &[0.5, 1e-4]), (&[0.3, 0.2, -0.01], &[-1.0, 2.0])];
        for (t, (ga, gb)) in grads.iter().enumerate() {
            let lr = 1e-3 * (t + 1) as f64;
            opt.step(&mut [&mut a, &mut b], &[ga, gb], lr).unwrap();
            let g: Vec<f64> = ga.iter().chain(gb.iter()).map(|&x| f64::from(x)).collect();
            reference(&mut want, &mut m, &mut v, &g, lr, &config, t as i32 + 1);
        }
        for (got, want) in a.iter().chain(&b).zip(&want) {
            assert!((f64::from(*got) - want).abs() <= 1e-6 * want.abs().max(1e-3), "{got} vs {want}");
        }
        assert_eq!(opt.state().0, 3);
    }

    #[test]
    fn the_first_step_moves_each_weight_by_about_the_learning_rate() {
        // m_hat = g and v_hat = g^2 after one step: the update is lr * g / (|g| + eps).
        let mut opt = AdamW::new(AdamWConfig::default(), &[2]).unwrap();
        let mut p = vec![1.0f32, 1.0];
        opt.step(&mut [&mut p], &[&[0.5, -2.0]], 0.01).unwrap();
        assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] - 1.01).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn weight_decay_is_decoupled_from_the_gradient() {
        // A zero gradient leaves the moments at zero: only the decay moves the weight.
        let config = AdamWConfig { weight_decay: 0.1, ..AdamWConfig::default() };
        let mut opt = AdamW::new(config, &[1]).unwrap();
        let mut p = vec![2.0f32];
        opt.step(&mut [&mut p], &[&[0.0]], 0.5).unwrap();
        assert_eq!(p[0], 2.0 * (1.0 - 0.5 * 0.1) as f32);
    }

    #[test]
    fn a_resumed_optimizer_continues_bit_for_bit() {
        let mut a = AdamW::new(AdamWConfig::default(), &[4]).unwrap();
        let mut p = vec![0.1f32, 0.2, 0.3, 0.4];
        let g = [0.01f32, -0.02, 0.03, -0.04];
        a.step(&mut [&mut p], &[&g], 1e-3).unwrap();
        let (steps, m, v) = a.state();
        let mut b = AdamW::from_state(*a.config(), steps, m.to_vec(), v.to_vec()).unwrap();
        let mut q = p.clone();
        a.step(&mut [&mut p], &[&g], 1e-3).unwrap();
        b.step(&mut [&mut q], &[&g], 1e-3).unwrap();
        assert_eq!(p, q);
        assert_eq!(a, b);
    }

    #[test]
    fn bad_hyperparameters_and_buffers_are_named() {
        let bad = |c: AdamWConfig| AdamW::new(c, &[1]).unwrap_err().to_string();
        assert!(bad(AdamWConfig { beta1: 1.0, ..AdamWConfig::default() }).contains("beta1 = 1"));
        assert!(bad(AdamWConfig { beta2: -0.1, ..AdamWConfig::default() }).contains("beta2"));
        assert!(bad(AdamWConfig { eps: 0.0, ..AdamWConfig::default() }).contains("eps"));
        assert!(bad(AdamWConfig { weight_decay: f64::NAN, ..AdamWConfig::default() }).contains("weight_decay"));
        let mut opt = AdamW::new(AdamWConfig::default(), &[2]).unwrap();
        let mut p = vec![0.0f32; 3];
        assert!(opt.step(&mut [&mut p], &[&[0.0; 3]], 1e-3).unwrap_err().to_string().contains("buffer 0"));
        let mut p = vec![0.0f32; 2];
        assert!(opt.step(&mut [&mut p], &[&[0.0; 2]], -1.0).unwrap_err().to_string().contains("learning rate"));
        assert_eq!(opt.state().0, 0, "a refused step changes nothing");
    }
}
