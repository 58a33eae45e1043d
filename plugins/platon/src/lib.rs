//! PLATON (Zhang et al., ICML 2022), MGPP's second baseline, as the PTMGP code
//! (`pruners/PLATON.py`) runs it: the importance of a weight is `|θ · ∇θ L|`, averaged over a
//! local window of `interval` steps; at each window's start the averages move,
//!
//! ```text
//! Ī ← β1 Ī + (1 - β1) I          (I: the finished window's mean importance)
//! Ū ← β2 Ū + (1 - β2) |I - Ī|    (with the updated Ī)
//! ```
//!
//! and the score is `Ī · Ū` (β2 = 1: `Ī` alone). The update runs after the optimizer step with
//! the updated weights and the gradients the step used (PTMGP's `BATCH_END`), for steps up to
//! the pruning end; the pruning itself is the core's global mask on the cubic schedule, by
//! these scores. State: three f32 buffers the size of the candidates (window mean, Ī, Ū),
//! saved with every checkpoint.

use prunus_core::training::{MethodState, RunInfo, StepInfo, TrainingMethod};
use prunus_core::{Error, Method, Result, declare::bad_config};
use serde::{Deserialize, Serialize};

/// Configuration (defaults: PTMGP's `PLATON` class; PLATON's own GLUE scripts use β2 = 0.95).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Smoothing of the importance, in [0, 1).
    pub beta1: f64,
    /// Smoothing of its uncertainty, in (0, 1), or exactly 1 to score by `Ī` alone.
    pub beta2: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { beta1: 0.85, beta2: 0.85 }
    }
}

/// The PLATON method.
#[derive(Debug, Clone)]
pub struct Platon {
    config: Config,
    interval: u64,
    end: u64,
    /// Candidate parameter index -> slot in the buffers.
    slots: Vec<Option<usize>>,
    ipt: Vec<Vec<f32>>,
    avg: Vec<Vec<f32>>,
    unc: Vec<Vec<f32>>,
}

impl Method for Platon {
    const NAME: &'static str = "platon";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "PLATON (training-time): |θ·∇θ| smoothed with its uncertainty, global on the cubic schedule";
    type Config = Config;

    fn new(c: Config) -> Result<Self> {
        if !(0.0..1.0).contains(&c.beta1) {
            return Err(bad_config(Self::NAME, format!("beta1 = {} must be in [0, 1)", c.beta1)));
        }
        if !(c.beta2 > 0.0 && c.beta2 <= 1.0) {
            return Err(bad_config(Self::NAME, format!("beta2 = {} must be in (0, 1], 1 meaning no uncertainty term", c.beta2)));
        }
        Ok(Platon { config: c, interval: 1, end: 0, slots: vec![], ipt: vec![], avg: vec![], unc: vec![] })
    }
}

impl TrainingMethod for Platon {
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()> {
        let Some(s) = run.schedule else {
            return Err(bad_config(Self::NAME, "PLATON prunes on a schedule: give a final sparsity"));
        };
        (self.interval, self.end) = (s.interval, s.end);
        self.slots = vec![None; run.params.len()];
        let zeros = || run.candidates.iter().map(|&i| vec![0f32; run.params[i].numel()]).collect::<Vec<_>>();
        for (slot, &i) in run.candidates.iter().enumerate() {
            self.slots[i] = Some(slot);
        }
        (self.ipt, self.avg, self.unc) = (zeros(), zeros(), zeros());
        Ok(())
    }

    fn after_update(&mut self, step: &StepInfo, weights: &mut [Vec<f32>], grads: &[Vec<f32>]) -> Result<()> {
        if step.step > self.end {
            return Ok(());
        }
        let local = step.step % self.interval;
        let (b1, b2) = (self.config.beta1 as f32, self.config.beta2 as f32);
        let (c1, c2) = ((1.0 - self.config.beta1) as f32, (1.0 - self.config.beta2) as f32);
        let uncertainty = self.config.beta2 < 1.0;
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(s) = *slot else { continue };
            let (ipt, avg, unc) = (&mut self.ipt[s], &mut self.avg[s], &mut self.unc[s]);
            for (j, (&w, &g)) in weights[i].iter().zip(&grads[i]).enumerate() {
                let now = (w * g).abs();
                if local == 0 {
                    avg[j] = b1 * avg[j] + c1 * ipt[j];
                    if uncertainty {
                        unc[j] = b2 * unc[j] + c2 * (ipt[j] - avg[j]).abs();
                    }
                    ipt[j] = now;
                } else {
                    let l = local as f32;
                    ipt[j] = (ipt[j] * l + now) / (l + 1.0);
                }
            }
        }
        Ok(())
    }

    fn scores(&self, _: &StepInfo, _: &[Vec<f32>], param: usize) -> Result<Vec<f32>> {
        let s = self.slots.get(param).copied().flatten().ok_or_else(|| Error::Invalid(format!("parameter {param} is not a candidate")))?;
        Ok(if self.config.beta2 < 1.0 { self.avg[s].iter().zip(&self.unc[s]).map(|(a, u)| a * u).collect() } else { self.avg[s].clone() })
    }

    fn state(&self) -> MethodState {
        let mut buffers = Vec::new();
        for (name, set) in [("ipt", &self.ipt), ("avg", &self.avg), ("unc", &self.unc)] {
            buffers.extend(set.iter().enumerate().map(|(k, b)| (format!("{name}/{k}"), b.clone())));
        }
        MethodState { scalars: serde_json::Value::Null, buffers }
    }

    fn restore(&mut self, state: MethodState) -> Result<()> {
        let n = self.ipt.len();
        if state.buffers.len() != 3 * n {
            return Err(Error::Invalid(format!("PLATON's checkpoint holds {} buffers, not {}", state.buffers.len(), 3 * n)));
        }
        for (k, (name, buf)) in state.buffers.into_iter().enumerate() {
            let target = [&mut self.ipt, &mut self.avg, &mut self.unc][k / n].get_mut(k % n).expect("in range");
            if buf.len() != target.len() || !name.ends_with(&format!("/{}", k % n)) {
                return Err(Error::Invalid(format!("PLATON's checkpoint buffer {name} does not fit")));
            }
            *target = buf;
        }
        Ok(())
    }
}

prunus_core::register!(training Platon);
