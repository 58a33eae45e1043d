//! The sparsity schedule of gradual pruning during training, as the PTMGP code
//! (`pruners/MWA.py` and `pruners/PLATON.py`, `sparsity_scheduler`) computes it.
//!
//! With steps `t` counted from 0, a start `t0` and an end `t_end` (`t0 < t_end`), an initial
//! sparsity `s_i` and a final one `s_f`:
//!
//! - `t < t0`: dense, nothing pruned;
//! - `t == t0`: prune at once to `s_i` (MGPP's initial jump; `s_i = 0` is Zhu & Gupta's start);
//! - `t0 < t < t_end`: the cubic `s_f + (s_i - s_f) (1 - (t - t0) / (t_end - t0))^3`, pruned
//!   only at steps with `t % interval == 0` (between them pruned weights may grow back);
//! - `t == t_end`: prune to `s_f` and freeze that mask;
//! - `t > t_end`: re-apply the frozen mask after every step.
//!
//! `t0 == t_end` with `s_i == s_f` is one-shot pruning at that step (Systematic Weight
//! Evaluation's, at the end of training), then the frozen mask.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A gradual pruning schedule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneSchedule {
    /// Sparsity of the jump at `start`, in [0, final].
    pub initial_sparsity: f64,
    /// Sparsity from `end` on, in [0, 1).
    pub final_sparsity: f64,
    /// `t0`: the step of the first pruning.
    pub start: u64,
    /// `t_end`: the step the mask freezes, not before `start` and before the run's last step + 1.
    pub end: u64,
    /// Prune every `interval` steps between `start` and `end` (at least 1).
    pub interval: u64,
}

/// What the schedule does after step `t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PruneAction {
    /// Nothing.
    None,
    /// Zero the weights whose scores fall below the threshold of this sparsity.
    Prune(f64),
    /// The same, then keep this mask for the rest of the run.
    PruneAndFreeze(f64),
    /// Re-apply the frozen mask.
    ApplyFrozen,
}

impl PruneSchedule {
    /// Checks the schedule against a run of `total_steps`: one clear message per violation.
    pub fn check(&self, total_steps: u64) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if !(0.0..1.0).contains(&self.final_sparsity) {
            return Err(Error::BadSparsity { value: self.final_sparsity });
        }
        if !(0.0..=self.final_sparsity).contains(&self.initial_sparsity) {
            return bad(format!(
                "initial sparsity {} must be in [0, final sparsity {}]",
                self.initial_sparsity, self.final_sparsity
            ));
        }
        if self.start > self.end {
            return bad(format!("the pruning start (step {}) must not come after its end (step {})", self.start, self.end));
        }
        if self.start == self.end && self.initial_sparsity != self.final_sparsity {
            return bad(format!(
                "a one-shot schedule (start = end = step {}) prunes to its final sparsity at once: the initial sparsity {} must equal the final {}",
                self.start, self.initial_sparsity, self.final_sparsity
            ));
        }
        if self.end >= total_steps {
            return bad(format!(
                "the pruning end (step {}) must be a step of the run (steps 0..{})",
                self.end,
                total_steps.saturating_sub(1)
            ));
        }
        if self.interval == 0 {
            return bad("the pruning interval must be at least 1 step".into());
        }
        Ok(())
    }

    /// The scheduled sparsity of step `t` (whether or not it prunes then).
    pub fn sparsity(&self, t: u64) -> f64 {
        if t < self.start {
            0.0
        } else if t == self.start {
            self.initial_sparsity
        } else if t < self.end {
            let frac = 1.0 - (t - self.start) as f64 / (self.end - self.start) as f64;
            self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * frac.powi(3)
        } else {
            self.final_sparsity
        }
    }

    /// What happens after step `t`. A scheduled sparsity of 0 prunes nothing (as in the code).
    pub fn action(&self, t: u64) -> PruneAction {
        let s = self.sparsity(t);
        let prunes = t == self.start || t >= self.end || t % self.interval == 0;
        if t < self.start || !prunes || s <= 0.0 {
            PruneAction::None
        } else if t < self.end {
            PruneAction::Prune(s)
        } else if t == self.end {
            PruneAction::PruneAndFreeze(s)
        } else {
            PruneAction::ApplyFrozen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> PruneSchedule {
        PruneSchedule { initial_sparsity: 0.3, final_sparsity: 0.9, start: 10, end: 50, interval: 5 }
    }

    #[test]
    fn jumps_then_follows_the_cubic_then_freezes() {
        let s = schedule();
        assert_eq!(s.action(9), PruneAction::None);
        assert_eq!(s.action(10), PruneAction::Prune(0.3));
        assert_eq!(s.action(11), PruneAction::None);
        // t = 30: frac = 1 - 20/40 = 0.5, s = 0.9 - 0.6 * 0.125.
        assert_eq!(s.action(30), PruneAction::Prune(0.9 + (0.3 - 0.9) * 0.125));
        assert_eq!(s.action(50), PruneAction::PruneAndFreeze(0.9));
        assert_eq!(s.action(51), PruneAction::ApplyFrozen);
        assert_eq!(s.sparsity(0), 0.0);
        assert!((1..40).all(|t| s.sparsity(10 + t) >= s.sparsity(10 + t - 1)), "monotone");
    }

    #[test]
    fn one_shot_prunes_once_then_keeps_the_mask() {
        let s = PruneSchedule { initial_sparsity: 0.6, final_sparsity: 0.6, start: 9, end: 9, interval: 1 };
        s.check(12).unwrap();
        assert_eq!(s.action(8), PruneAction::None);
        assert_eq!(s.action(9), PruneAction::PruneAndFreeze(0.6));
        assert_eq!(s.action(10), PruneAction::ApplyFrozen);
        let e = PruneSchedule { initial_sparsity: 0.3, ..s }.check(12).unwrap_err().to_string();
        assert!(e.contains("one-shot schedule"), "{e}");
    }

    #[test]
    fn zero_sparsity_prunes_nothing() {
        let s = PruneSchedule { initial_sparsity: 0.0, ..schedule() };
        assert_eq!(s.action(10), PruneAction::None);
        assert!(matches!(s.action(15), PruneAction::Prune(_)));
    }

    #[test]
    fn bad_schedules_say_why() {
        let msg = |s: PruneSchedule, total| s.check(total).unwrap_err().to_string();
        assert!(msg(PruneSchedule { final_sparsity: 1.0, ..schedule() }, 100).contains("outside [0, 1)"));
        assert!(msg(PruneSchedule { initial_sparsity: 0.95, ..schedule() }, 100).contains("initial sparsity"));
        assert!(msg(PruneSchedule { start: 51, ..schedule() }, 100).contains("must not come after its end"));
        assert!(msg(schedule(), 50).contains("must be a step of the run"));
        assert!(msg(PruneSchedule { interval: 0, ..schedule() }, 100).contains("interval"));
        schedule().check(51).unwrap();
    }
}
