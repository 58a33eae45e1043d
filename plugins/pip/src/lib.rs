//! PIP: Perturbation-based Iterative Pruning (Cao et al., "PIP: Perturbation-based Iterative
//! Pruning for Large Language Models", Findings of EMNLP 2025, arXiv 2501.15278).
//!
//! A reconstruction: the authors' code is not available, and the paper's text gives the idea
//! rather than every choice. Each calibration text is seen twice, as it is and perturbed
//! ([`perturb`]: by default real-word edits, "host" -> "ghost", that keep the text's length in
//! tokens; random typos as an option). A unit whose parameters get nearly the same gradient from both views
//! "struggles to distinguish" them and goes first:
//!
//! ```text
//! g_u  = mean over texts s of  dL(s)/dθ_u        g'_u = mean of dL(P(s))/dθ_u
//! PertImport(u) = d(θ_u − α g_u, θ_u − α g'_u) = α ‖g_u − g'_u‖     (α only scales)
//! ```
//!
//! Greedy and iterative: score every unit, remove the lowest (`units_per_iteration`, default
//! 1), perturb the texts afresh, rescore the smaller model, until the core's budget is met
//! (a share of the parameters outside the embeddings; see [`prunus_core::structured`]). The
//! open choices are [`Config`] fields; README.md lists them with their defaults.

use std::collections::HashMap;

use candle_core::Tensor;
use prunus_core::{Method, Notes};
use prunus_core::structured::{Calibration, Params, Schedule, ScoreInput, Scored, StructuredMethod, StructuredModel, Unit, mean_gradients, unit_sums};
use prunus_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub mod perturb;

pub use perturb::{Edit, Perturbed, Perturber, single_edits};

/// How two views' gradients of a unit are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distance {
    /// ‖g − g'‖₂ (the paper's parameter distance after one gradient step).
    #[default]
    L2,
    /// ‖g − g'‖₁.
    L1,
    /// 1 − cos(g, g'): the direction only.
    Cosine,
    /// Σ |θ ⊙ (g − g')|: LLM-Pruner's first-order salience |θ ⊙ g| with g replaced by the
    /// difference of the two views (`docs/methods.md` 3.4), so a unit's size enters too.
    Taylor,
}

/// How the perturbed view is made ([`perturb`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Perturbation {
    /// Swaps, replacements and insertions whose result is another real word: a whole-word
    /// token of the tokenizer (with its leading space where the word has one), as the word
    /// itself must be. Both views keep their length in tokens; words without such an edit
    /// are passed over, so fewer than the fraction may change (the notes count them).
    #[default]
    RealWord,
    /// One random edit of the same kinds per chosen word, whatever it makes (mostly typos
    /// that the tokenizer splits into rarer pieces): the first reconstruction.
    Typo,
}

/// Where the average over the calibration texts is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Distance between the gradients averaged over the texts (one batch per view).
    #[default]
    MeanGradient,
    /// Mean over the texts of the distance between that text's two gradients (one backward
    /// pass per text and view).
    MeanDistance,
}

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Share of each text's words that get one character edit. Default 0.3.
    pub perturb_fraction: f64,
    /// Default `real_word`.
    pub perturbation: Perturbation,
    /// Default `l2`.
    pub distance: Distance,
    /// Default `mean_gradient`.
    pub aggregate: Aggregate,
    /// Divide each unit's distance by sqrt(its parameter count) (matters when units differ
    /// in size). Default false.
    pub normalize: bool,
    /// Units removed between two scorings. Default 1.
    pub units_per_iteration: usize,
    /// Calibration texts per backward pass (memory vs speed; the mean gradient is the same).
    /// Default 16.
    pub batch_size: usize,
    /// Seed of the perturbations (iteration i, text j use stream (i, j)). Default 0.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            perturb_fraction: 0.3,
            perturbation: Perturbation::RealWord,
            distance: Distance::L2,
            aggregate: Aggregate::MeanGradient,
            normalize: false,
            units_per_iteration: 1,
            batch_size: 16,
            seed: 0,
        }
    }
}

/// The PIP method.
#[derive(Debug, Clone)]
pub struct Pip {
    config: Config,
}

impl Method for Pip {
    const NAME: &'static str = "pip";
    const VERSION: &'static str = "2";
    const SUMMARY: &'static str = "PIP: remove the units whose gradients on original and perturbed text differ least (iterative; reconstruction)";
    type Config = Config;

    /// Checks the config: `perturb_fraction` in [0, 1], `units_per_iteration` and
    /// `batch_size` at least 1.
    fn new(config: Config) -> Result<Self> {
        let bad = |reason: String| Err(Error::BadConfig { method: Self::NAME.into(), reason });
        if !(0.0..=1.0).contains(&config.perturb_fraction) {
            return bad(format!("perturb_fraction {} is outside [0, 1]", config.perturb_fraction));
        }
        if config.units_per_iteration == 0 || config.batch_size == 0 {
            return bad(format!("units_per_iteration ({}) and batch_size ({}) must be at least 1", config.units_per_iteration, config.batch_size));
        }
        Ok(Pip { config })
    }
}

impl Pip {

    /// The perturbed view of the calibration texts at `iteration` (fresh every iteration);
    /// real-word edits ask the calibration's tokenizer which strings are one token.
    pub fn perturbed(&self, calib: &Calibration<'_>, iteration: usize) -> Result<Vec<Perturbed>> {
        let p = Perturber { fraction: self.config.perturb_fraction, seed: self.config.seed };
        let stream = |j: usize| ((iteration as u64) << 32) | j as u64;
        let texts = calib.texts();
        match self.config.perturbation {
            Perturbation::Typo => Ok(texts.iter().enumerate().map(|(j, t)| p.perturb(t, stream(j))).collect()),
            Perturbation::RealWord => {
                let mut known: HashMap<String, bool> = HashMap::new();
                let mut failure = None;
                let mut one_token = |s: String| -> bool {
                    if let Some(&b) = known.get(&s) {
                        return b;
                    }
                    let b = match calib.tokenize(&s) {
                        Ok(ids) => ids.len() == 1,
                        Err(e) => {
                            failure.get_or_insert(e);
                            false
                        }
                    };
                    known.insert(s, b);
                    b
                };
                let mut accept = |word: &str, candidate: &str, spaced: bool| {
                    let space = if spaced { " " } else { "" };
                    one_token(format!("{space}{word}")) && one_token(format!("{space}{candidate}"))
                };
                let views = texts.iter().enumerate().map(|(j, t)| p.perturb_real(t, stream(j), &mut accept)).collect();
                match failure {
                    Some(e) => Err(e),
                    None => Ok(views),
                }
            }
        }
    }

    /// The distance of every unit's gradients under the two views (`model`: the weights, for
    /// [`Distance::Taylor`]).
    fn distances(&self, model: &dyn StructuredModel, units: &[Unit], a: &Params, b: &Params) -> Result<Vec<f64>> {
        let diff = |n: &str| -> Result<Tensor> { Ok((a.get(n)? - b.get(n)?)?) };
        match self.config.distance {
            Distance::L2 => Ok(unit_sums(units, |n| Ok(diff(n)?.sqr()?))?.into_iter().map(f64::sqrt).collect()),
            Distance::L1 => unit_sums(units, |n| Ok(diff(n)?.abs()?)),
            Distance::Cosine => {
                let dot = unit_sums(units, |n| Ok((a.get(n)? * b.get(n)?)?))?;
                let aa = unit_sums(units, |n| Ok(a.get(n)?.sqr()?))?;
                let bb = unit_sums(units, |n| Ok(b.get(n)?.sqr()?))?;
                Ok((0..units.len())
                    .map(|i| match (aa[i] > 0.0, bb[i] > 0.0) {
                        (true, true) => (1.0 - dot[i] / (aa[i] * bb[i]).sqrt()).clamp(0.0, 2.0),
                        (false, false) => 0.0,
                        _ => 1.0,
                    })
                    .collect())
            }
            Distance::Taylor => {
                let w = model.weights()?;
                unit_sums(units, |n| Ok((w.get(n)? * diff(n)?)?.abs()?))
            }
        }
    }
}

impl StructuredMethod for Pip {
    fn schedule(&self) -> Schedule {
        Schedule::Iterative { units_per_iteration: self.config.units_per_iteration }
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
        let calib = input
            .calibration
            .ok_or_else(|| Error::NeedsCalibration { method: Self::NAME.into(), what: "calibration texts".into() })?;
        let views = self.perturbed(calib, input.iteration)?;
        let texts: Vec<String> = views.iter().map(|v| v.text.clone()).collect();
        let original = calib.original()?; // (n_samples, seq_len)
        let perturbed = calib.tokens(&texts)?; // (n_samples, seq_len)
        let model = input.model;
        let (mut scores, loss_original, loss_perturbed) = match self.config.aggregate {
            Aggregate::MeanGradient => {
                let (lo, go) = mean_gradients(model, &original, self.config.batch_size)?;
                let (lp, gp) = mean_gradients(model, &perturbed, self.config.batch_size)?;
                (self.distances(model, input.units, &go, &gp)?, lo, lp)
            }
            Aggregate::MeanDistance => {
                let n = calib.n_samples();
                let (mut sum, mut lo, mut lp) = (vec![0.0; input.units.len()], 0.0, 0.0);
                for s in 0..n {
                    let (l1, g1) = model.loss_and_grads(&original.narrow(0, s, 1)?)?;
                    let (l2, g2) = model.loss_and_grads(&perturbed.narrow(0, s, 1)?)?;
                    for (acc, d) in sum.iter_mut().zip(self.distances(model, input.units, &g1, &g2)?) {
                        *acc += d / n as f64;
                    }
                    (lo, lp) = (lo + l1 / n as f64, lp + l2 / n as f64);
                }
                (sum, lo, lp)
            }
        };
        if self.config.normalize {
            for (s, u) in scores.iter_mut().zip(input.units) {
                *s /= (u.params as f64).sqrt();
            }
        }
        let changed = original.ne(&perturbed)?.to_dtype(candle_core::DType::F32)?.mean_all()?.to_scalar::<f32>()?;
        let mut notes = Notes::new();
        notes.insert("loss_original".into(), loss_original.into());
        notes.insert("loss_perturbed".into(), loss_perturbed.into());
        notes.insert("words".into(), views.iter().map(|v| v.words).sum::<usize>().into());
        notes.insert("words_edited".into(), views.iter().map(|v| v.edits.len()).sum::<usize>().into());
        let wanted: usize = views.iter().map(|v| (self.config.perturb_fraction * v.words as f64).round() as usize).sum();
        notes.insert("words_wanted".into(), wanted.into());
        notes.insert("tokens_changed".into(), f64::from(changed).into());
        Ok(Scored { scores, notes })
    }
}

prunus_core::register!(structured Pip);
