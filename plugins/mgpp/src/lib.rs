//! MGPP: magnitude pruning under a mixture-Gaussian prior (Zhang, Sun & Liang, arXiv
//! 2411.00969), as the authors' PTMGP code (`pruners/MWA.py`) computes it.
//!
//! Every candidate weight θ has the spike-and-slab prior
//! `π(θ) = λ N(θ; 0, σ1) + (1 - λ) N(θ; 0, σ0)` (σ0 ≪ σ1 are variances). While the step
//! `t <= t_end`, the gradient of `-(1/n) log π(θ)` is added to the loss's gradient after the
//! backward pass:
//!
//! ```text
//! c1 = log λ_t - log(1 - λ_t) + ½ log σ0 - ½ log σ1,   c2 = 1/(2σ0) - 1/(2σ1)
//! p0 = 1 / (1 + exp(c2 θ² + c1))          (the posterior weight of the spike)
//! grad -= θ (p0 (σ0 - σ1) / (n σ0 σ1) - 1 / (n σ1))
//! ```
//!
//! with the exponential left to overflow to `inf` for weights far from zero (`p0 = 0`, the
//! code's limit, in IEEE arithmetic without a NaN), `n` the number of training examples, and the slab weight annealed linearly
//! from `λ α_i` at `t0` to `λ α_f` at `t_end` (`λ` itself before `t0`). Pruning is the core's:
//! global magnitude `|θ|` over all candidates on the cubic schedule (prunus-core's
//! `PruneSchedule`), weights free to regrow between pruning steps until the mask freezes at
//! `t_end`. The prior makes magnitude informative: it pulls the weights inside the spike's
//! reach (`|θ|` below [`prior_threshold`]) to zero and leaves the slab almost alone.

use prunus_core::training::{RunInfo, StepInfo, TrainingMethod};
use prunus_core::{Method, Notes, Result, declare::bad_config};
use serde::{Deserialize, Serialize};

/// Configuration: the prior (defaults are the PTMGP scripts' MNLI/QQP/SQuAD values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Variance of the spike, > 0 and < `sigma1`.
    pub sigma0: f64,
    /// Variance of the slab.
    pub sigma1: f64,
    /// Slab weight λ, in (0, 1).
    pub lambda: f64,
    /// λ's multiplier at the pruning start `t0`.
    pub alpha_i: f64,
    /// λ's multiplier from the pruning end `t_end` on.
    pub alpha_f: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { sigma0: 1e-10, sigma1: 0.05, lambda: 0.1, alpha_i: 1.0, alpha_f: 0.001 }
    }
}

/// The prior's constants at one slab weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    /// Spike variance.
    pub sigma0: f64,
    /// Slab variance.
    pub sigma1: f64,
    /// Slab weight.
    pub lambda: f64,
}

impl Prior {
    fn c1(&self) -> f64 {
        self.lambda.ln() - (1.0 - self.lambda).ln() + 0.5 * self.sigma0.ln() - 0.5 * self.sigma1.ln()
    }

    fn c2(&self) -> f64 {
        0.5 / self.sigma0 - 0.5 / self.sigma1
    }

    /// The posterior weight of the spike at θ.
    pub fn p0(&self, theta: f64) -> f64 {
        // For |θ| beyond a few spike widths the exponent overflows to +inf and p0 is exactly 0,
        // as in the code (IEEE arithmetic, no NaN: 1 / inf = 0).
        1.0 / (1.0 + (self.c2() * theta * theta + self.c1()).exp())
    }

    /// The gradient of `-(1/n) log π(θ)`, what the method adds to θ's gradient.
    pub fn grad(&self, theta: f64, n: f64) -> f64 {
        let (s0, s1) = (self.sigma0, self.sigma1);
        -theta * (self.p0(theta) * (s0 - s1) / (n * s0 * s1) - 1.0 / (n * s1))
    }
}

/// `|θ|` where the spike and the slab are equally likely (logged, not used to prune).
pub fn prior_threshold(p: &Prior) -> f64 {
    (((1.0 - p.lambda) / p.lambda * (p.sigma1 / p.sigma0).sqrt()).ln() / p.c2()).sqrt()
}

/// The slab weight of step `t` for a pruning start `t0` and end `t_end` (PTMGP's
/// `annealing_scheduler`).
pub fn annealed_lambda(c: &Config, t: u64, t0: u64, t_end: u64) -> f64 {
    let alpha = if t < t0 {
        1.0
    } else if t == t0 {
        c.alpha_i
    } else if t < t_end {
        let frac = 1.0 - (t - t0) as f64 / (t_end - t0) as f64;
        c.alpha_f + (c.alpha_i - c.alpha_f) * frac
    } else {
        c.alpha_f
    };
    alpha * c.lambda
}

/// The MGPP method.
#[derive(Debug, Clone)]
pub struct Mgpp {
    config: Config,
    candidates: Vec<usize>,
    n: f64,
    t0: u64,
    t_end: u64,
    last: Option<(f64, f64)>,
}

impl Method for Mgpp {
    const NAME: &'static str = "mgpp";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "MGPP (training-time): mixture-Gaussian prior gradient, then global magnitude on the cubic schedule";
    type Config = Config;

    fn new(c: Config) -> Result<Self> {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if !(ok(c.sigma0) && ok(c.sigma1) && c.sigma0 < c.sigma1) {
            return Err(bad_config(Self::NAME, format!("need 0 < sigma0 < sigma1 (variances), got sigma0 = {}, sigma1 = {}", c.sigma0, c.sigma1)));
        }
        for (name, v) in [("lambda", c.lambda), ("lambda * alpha_i", c.lambda * c.alpha_i), ("lambda * alpha_f", c.lambda * c.alpha_f)] {
            if !(v > 0.0 && v < 1.0) {
                return Err(bad_config(Self::NAME, format!("{name} = {v} must be in (0, 1)")));
            }
        }
        Ok(Mgpp { config: c, candidates: vec![], n: 0.0, t0: 0, t_end: 0, last: None })
    }
}

impl TrainingMethod for Mgpp {
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()> {
        let Some(s) = run.schedule else {
            return Err(bad_config(Self::NAME, "MGPP prunes on a schedule: give a final sparsity"));
        };
        if run.n_examples == 0 {
            return Err(bad_config(Self::NAME, "the number of training examples (the prior's n) is 0"));
        }
        self.candidates = run.candidates.to_vec();
        self.n = run.n_examples as f64;
        (self.t0, self.t_end) = (s.start, s.end);
        Ok(())
    }

    fn after_backward(&mut self, step: &StepInfo, weights: &[Vec<f32>], grads: &mut [Vec<f32>]) -> Result<()> {
        if step.step > self.t_end {
            self.last = None;
            return Ok(());
        }
        let c = &self.config;
        let prior = Prior { sigma0: c.sigma0, sigma1: c.sigma1, lambda: annealed_lambda(c, step.step, self.t0, self.t_end) };
        for &i in &self.candidates {
            for (g, &w) in grads[i].iter_mut().zip(&weights[i]) {
                *g += prior.grad(f64::from(w), self.n) as f32;
            }
        }
        self.last = Some((prior.lambda, prior_threshold(&prior)));
        Ok(())
    }

    fn log(&self) -> Notes {
        let mut notes = Notes::new();
        if let Some((lambda, threshold)) = self.last {
            notes.insert("lambda".into(), lambda.into());
            notes.insert("prior_threshold".into(), threshold.into());
        }
        notes
    }
}

prunus_core::register!(training Mgpp);
