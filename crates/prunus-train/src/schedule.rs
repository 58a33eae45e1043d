//! Learning rate per step: linear warm-up from 0 to the peak, then a decay towards a final
//! multiplier of the peak, as Composer's `LinearWithWarmupScheduler` and
//! `CosineAnnealingWithWarmupScheduler` (which MGPP's scripts use) compute it; Hugging Face's
//! linear schedule is the final multiplier 0.
//!
//! Step `t` counts from 0. During warm-up (`t < warmup`) the rate is `peak * t / warmup`;
//! after it, with `f = (t - warmup) / (total - warmup)` clamped to [0, 1], it is `peak * (1 +
//! (final - 1) * f)` (linear), `peak * (final + (1 - final) * (1 + cos(pi f)) / 2)` (cosine), or
//! `peak` (constant). As in both sources, `f` reaches 1 at `t = total`, one past the last step.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// How the rate falls after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// Linearly to `final_multiplier * peak`.
    Linear,
    /// Along half a cosine to `final_multiplier * peak`.
    Cosine,
    /// Not at all.
    Constant,
}

/// A learning-rate schedule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The rate at the end of the warm-up, > 0.
    pub peak: f64,
    /// Steps of linear warm-up from 0 (0: none).
    pub warmup: u64,
    /// Steps of the whole run, > `warmup`.
    pub total: u64,
    /// The decay after the warm-up.
    pub decay: Decay,
    /// The rate the decay reaches at `total` as a multiple of the peak, in [0, 1].
    pub final_multiplier: f64,
}

impl Schedule {
    /// A checked schedule.
    pub fn new(peak: f64, warmup: u64, total: u64, decay: Decay, final_multiplier: f64) -> Result<Self> {
        let bad = |name, value: String, reason| Err(TrainError::Hyperparameter { name, value, reason });
        if !(peak > 0.0 && peak.is_finite()) {
            return bad("learning rate", peak.to_string(), "must be positive and finite");
        }
        if total == 0 {
            return bad("steps", total.to_string(), "must be at least 1");
        }
        if warmup >= total {
            return bad("warmup steps", warmup.to_string(), "must be fewer than the steps of the run");
        }
        if !(0.0..=1.0).contains(&final_multiplier) {
            return bad("final multiplier", final_multiplier.to_string(), "must be in [0, 1]");
        }
        Ok(Schedule { peak, warmup, total, decay, final_multiplier })
    }

    /// The learning rate of step `t` (0-based).
    pub fn lr(&self, t: u64) -> f64 {
        if t < self.warmup {
            return self.peak * t as f64 / self.warmup as f64;
        }
        let f = ((t - self.warmup) as f64 / (self.total - self.warmup) as f64).min(1.0);
        let fin = self.final_multiplier;
        self.peak
            * match self.decay {
                Decay::Linear => 1.0 + (fin - 1.0) * f,
                Decay::Cosine => fin + (1.0 - fin) * 0.5 * (1.0 + (std::f64::consts::PI * f).cos()),
                Decay::Constant => 1.0,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_decay_to_the_final_multiplier() {
        // 10 steps: warm-up over 0..4, then the decay over 6 intervals, reaching 0.1 at t = 10.
        let lin = Schedule::new(1.0, 4, 10, Decay::Linear, 0.1).unwrap();
        let got: Vec<f64> = (0..12).map(|t| lin.lr(t)).collect();
        let want = [0.0, 0.25, 0.5, 0.75, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        let cos = Schedule::new(2.0, 0, 10, Decay::Cosine, 0.0).unwrap();
        assert_eq!(cos.lr(0), 2.0);
        assert!((cos.lr(5) - 1.0).abs() < 1e-12, "half way down: {}", cos.lr(5));
        assert!(cos.lr(10).abs() < 1e-12);
        let flat = Schedule::new(3e-4, 2, 5, Decay::Constant, 0.5).unwrap();
        assert_eq!((flat.lr(1), flat.lr(2), flat.lr(4)), (1.5e-4, 3e-4, 3e-4));
    }

    #[test]
    fn bad_schedules_are_named() {
        let err = |r: Result<Schedule>| r.unwrap_err().to_string();
        assert!(err(Schedule::new(0.0, 0, 10, Decay::Linear, 0.1)).contains("learning rate = 0"));
        assert!(err(Schedule::new(1e-3, 10, 10, Decay::Linear, 0.1)).contains("warmup steps = 10"));
        assert!(err(Schedule::new(1e-3, 0, 0, Decay::Linear, 0.1)).contains("steps = 0"));
        assert!(err(Schedule::new(1e-3, 0, 10, Decay::Cosine, 1.5)).contains("final multiplier"));
    }
}
