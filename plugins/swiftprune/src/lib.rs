//! SwiftPrune: Hessian-free weight pruning (Kang et al., Findings of EMNLP 2025; arXiv 2501.16376,
//! v1 titled HWPQ). No code was released: this is the reconstruction of docs/methods.md §4,
//! with every open choice exposed in [`Config`] (see README.md).
//!
//! Score (the "contribution" or L-score): with a per-input-feature summary x_j and
//! S = sum_k x_k^2, two readings of the sources (`form`): `divide` (default, the third-party
//! port) `L_ij = w_ij^2 / max(1 - x_j^2 / (S + ridge), 1e-10)`, the OBS saliency w^2 / [H^-1]_jj
//! under a rank-1 Hessian H = ridge I + x x^T (Sherman-Morrison), so no inverse; and
//! `half_product` (two reviews) `L_ij = 1/2 w_ij^2 (1 - x_j^2 / (S + ridge))`. x_j is the root
//! mean square of input feature j over the calibration tokens (`x_source = activation_norm`,
//! default), or, data-free, the weight row itself (`x_source = weight_row`).
//!
//! Selection per output row without sorting, in linear time: (A) `ewma`, a Jacobson/Karels
//! running threshold tau_j = mu_j - c * delta_j (mu, delta: exponentially weighted mean and
//! mean deviation of L along the row, gains alpha and beta), with c found per row by bisection
//! so that the row's count lands on floor(d_in * s) as closely as the threshold allows, and an
//! optional exact-count fix-up; (B) `quantile`, a stochastic-approximation quantile tracker;
//! (C) `single_pass`, the sources' literal rule: one streaming pass, the same running state,
//! a keep-or-prune decision per weight as it streams, c set from s once (`pass_model`), so the
//! realised sparsity is whatever the rule gives; `sort`, the k smallest of each row (the port's
//! argsort, as a linear-time selection), the exact reference. N:M prunes the N smallest L in each group of
//! M consecutive inputs by comparisons.

use prunus_core::mask::check_finite;
use prunus_core::declare::bad_config;
use prunus_core::layerwise::{Decision, LayerView, LayerwiseMethod, Target};
use prunus_core::{Error, Group, Mask, Method, Notes, Pattern, Result, StatKind};
use serde::{Deserialize, Serialize};

/// What x in the contribution score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XSource {
    /// Root mean square of each input feature over the calibration tokens (needs data).
    #[default]
    ActivationNorm,
    /// The weight row itself (data-free; the third-party port's behaviour).
    WeightRow,
}

/// Which reading of the contribution formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `w^2 / (1 - x^2 / S)`: the third-party port's docstring and the rank-1 OBS saliency.
    #[default]
    Divide,
    /// `1/2 w^2 (1 - x^2 / S)`: two reviews of the paper's first version.
    HalfProduct,
}

/// How `single_pass` turns the target sparsity s into the multiplier c of tau = mu - c * delta
/// (the sources fix the running state and the bound la = 4, not this map).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassModel {
    /// The s-quantile of the score if a row's weights were Gaussian (L proportional to a
    /// chi-square with one degree of freedom): c = (1 - q_s) / E|X - 1|, X ~ chi^2_1.
    #[default]
    ChiSquare,
    /// The s-quantile if the scores themselves were Gaussian with mean mu and mean deviation
    /// delta: c = -z_s * sqrt(pi / 2).
    Normal,
}

/// How the weights of a row are selected for unstructured sparsity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// (A) EWMA running threshold mu - c * delta, c bisected per row.
    #[default]
    Ewma,
    /// (B) Stochastic-approximation quantile tracking of the threshold.
    Quantile,
    /// (C) One streaming pass with c fixed by `pass_model`: the sources' rule.
    SinglePass,
    /// The k smallest scores of each row by linear-time selection (the port's argsort, without
    /// the full sort): exact, and the reference the sort-free rules are measured against.
    Sort,
}

/// Configuration (all fields optional).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Source of x in L = w^2 / (1 - x^2 / S). Default `activation_norm`.
    pub x_source: XSource,
    /// Reading of the formula: `divide` (default) or `half_product`.
    pub form: Form,
    /// Ridge added to S (rank-1 plus ridge Hessian). Default 0.
    pub ridge: f64,
    /// Unstructured selection rule. Default `ewma`.
    pub selection: Selection,
    /// How `single_pass` sets its multiplier from the target. Default `chi_square`.
    pub pass_model: PassModel,
    /// EWMA gain of the running mean (Jacobson/Karels 1/8). Default 0.125.
    pub alpha: f64,
    /// EWMA gain of the running mean deviation. Default 0.125.
    pub beta: f64,
    /// Bound on |c| in tau = mu - c * delta (the paper's multiplier 4). Default 4.
    pub la: f64,
    /// Bisection steps for c per row (each one linear pass). Default 24.
    pub bisection_steps: usize,
    /// After selection, move the fewest weights to hit floor(d_in * s) exactly. Default false.
    pub exact_count: bool,
    /// Step size of the quantile tracker, relative to the running mean deviation. Default 0.05.
    pub quantile_step: f64,
    /// Passes of the quantile tracker over a row before the deciding pass (its gain decays
    /// as 1 / (1 + passes so far)). Default 4.
    pub quantile_warmup_passes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            x_source: XSource::ActivationNorm,
            form: Form::Divide,
            ridge: 0.0,
            selection: Selection::Ewma,
            pass_model: PassModel::ChiSquare,
            alpha: 0.125,
            beta: 0.125,
            la: 4.0,
            bisection_steps: 24,
            exact_count: false,
            quantile_step: 0.05,
            quantile_warmup_passes: 4,
        }
    }
}

/// The SwiftPrune method.
#[derive(Debug, Clone, Default)]
pub struct SwiftPrune {
    /// Its configuration.
    pub config: Config,
}

impl Method for SwiftPrune {
    const NAME: &'static str = "swiftprune";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "SwiftPrune (reconstruction) w^2/(1 - x^2/S) or its readings, sort-free EWMA row threshold (bisected or single-pass) or N:M";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        for (field, v) in [("alpha", config.alpha), ("beta", config.beta)] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(bad_config(Self::NAME, format!("{field} = {v} must lie in (0, 1]")));
            }
        }
        if !(config.ridge >= 0.0 && config.la > 0.0 && config.quantile_step > 0.0) {
            return Err(bad_config(
                Self::NAME,
                format!("ridge ({}) must be >= 0, la ({}) and quantile_step ({}) > 0", config.ridge, config.la, config.quantile_step),
            ));
        }
        Ok(SwiftPrune { config })
    }
}

impl LayerwiseMethod for SwiftPrune {
    fn stats(&self) -> StatKind {
        match self.config.x_source {
            XSource::ActivationNorm => StatKind::SqNorm,
            XSource::WeightRow => StatKind::None,
        }
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        Ok(match *pattern {
            Pattern::Unstructured { .. } => Group::PerRow,
            Pattern::NM { n, m } => Group::NM { n, m },
        })
    }

    fn decide(&self, layer: &LayerView<'_>, target: &Target, _notes: &mut Notes) -> Result<Decision> {
        let scores = self.scores(layer)?;
        check_finite(&scores, &format!("{} contribution scores", layer.name))?;
        let mut pruned = vec![false; scores.len()];
        match *target.pattern() {
            Pattern::NM { n, m } => {
                for (g, flags) in scores.chunks_exact(m).zip(pruned.chunks_exact_mut(m)) {
                    select_n_smallest(g, n, flags);
                }
            }
            Pattern::Unstructured { sparsity } => {
                let k = (layer.d_in as f64 * sparsity).floor() as usize;
                let c = self.pass_multiplier(sparsity);
                for (row, flags) in scores.chunks_exact(layer.d_in).zip(pruned.chunks_exact_mut(layer.d_in)) {
                    match self.config.selection {
                        Selection::Ewma => self.ewma_select(row, k, flags),
                        Selection::Quantile => self.quantile_select(row, sparsity, flags),
                        Selection::SinglePass => self.single_pass(row, c, flags),
                        Selection::Sort => fix_count(row, k, flags), // from nothing pruned: the k smallest
                    }
                    if self.config.exact_count {
                        fix_count(row, k, flags);
                    }
                }
            }
        }
        Ok(Decision::Mask(Mask::from_vec(layer.d_out, layer.d_in, pruned)?))
    }
}

impl SwiftPrune {
    /// The contribution score L, row-major (d_out, d_in). A weight or statistic that is not
    /// finite, or of the wrong size, is an error naming the layer.
    pub fn scores(&self, layer: &LayerView<'_>) -> Result<Vec<f32>> {
        if layer.weight.len() != layer.d_out * layer.d_in {
            return Err(Error::Shape {
                tensor: layer.name.to_string(),
                expected: vec![layer.d_out, layer.d_in],
                got: vec![layer.weight.len()],
            });
        }
        check_finite(layer.weight, layer.name)?;
        let (ridge, form) = (self.config.ridge, self.config.form);
        let l = |w: f32, x2: f64, s: f64| -> f32 {
            // An all-zero row (weight_row) has S = 0: every share is 0, and so is every score.
            let share = if s + ridge > 0.0 { x2 / (s + ridge) } else { 0.0 };
            let w2 = f64::from(w) * f64::from(w);
            (match form {
                Form::Divide => w2 / (1.0 - share).max(1e-10),
                Form::HalfProduct => 0.5 * w2 * (1.0 - share).max(0.0),
            }) as f32
        };
        match self.config.x_source {
            XSource::ActivationNorm => {
                let x2 = layer.stats.mean_sq_per_sample().ok_or_else(|| Error::NeedsCalibration {
                    method: Self::NAME.into(),
                    what: "per-feature mean of x^2 (x_source = activation_norm)".into(),
                })?;
                let tensor = || format!("{} input statistics", layer.name);
                if x2.len() != layer.d_in {
                    return Err(Error::Shape { tensor: tensor(), expected: vec![layer.d_in], got: vec![x2.len()] });
                }
                if let Some(index) = x2.iter().position(|v| !v.is_finite()) {
                    return Err(Error::NonFinite { tensor: tensor(), index, value: x2[index] as f32 });
                }
                let s: f64 = x2.iter().sum();
                Ok(layer.weight.chunks_exact(layer.d_in).flat_map(|row| row.iter().zip(&x2).map(move |(w, x)| l(*w, *x, s))).collect())
            }
            XSource::WeightRow => Ok(layer
                .weight
                .chunks_exact(layer.d_in)
                .flat_map(|row| {
                    let s: f64 = row.iter().map(|w| f64::from(*w) * f64::from(*w)).sum();
                    row.iter().map(move |w| l(*w, f64::from(*w) * f64::from(*w), s))
                })
                .collect()),
        }
    }

    /// (A) One pass computes the EWMA mean mu_j and mean deviation delta_j along the row; the
    /// rule prunes j iff L_j < mu_j - c * delta_j. The count is non-increasing in c, so c in
    /// [-la, la] is bisected (each step one linear pass) towards `k` pruned.
    fn ewma_select(&self, row: &[f32], k: usize, flags: &mut [bool]) {
        let (a, b) = (self.config.alpha, self.config.beta);
        let mut mu = f64::from(row[0]);
        let mut delta = 0.0;
        let mut track = Vec::with_capacity(row.len()); // (mu_j, delta_j) after seeing L_j
        for &l in row {
            mu = (1.0 - a) * mu + a * f64::from(l);
            delta = (1.0 - b) * delta + b * (f64::from(l) - mu).abs();
            track.push((mu, delta));
        }
        let count = |c: f64| row.iter().zip(&track).filter(|(l, (m, d))| f64::from(**l) < m - c * d).count();
        let (mut lo, mut hi) = (-self.config.la, self.config.la); // count(lo) >= count(hi)
        let mut best = (count(lo).abs_diff(k), lo);
        for _ in 0..self.config.bisection_steps {
            let mid = 0.5 * (lo + hi);
            let n = count(mid);
            if n.abs_diff(k) < best.0 {
                best = (n.abs_diff(k), mid);
            }
            if n > k { lo = mid } else { hi = mid }
        }
        let c = if count(hi).abs_diff(k) < best.0 { hi } else { best.1 };
        for ((f, l), (m, d)) in flags.iter_mut().zip(row).zip(&track) {
            *f = f64::from(*l) < m - c * d;
        }
    }

    /// (C) The literal streaming rule: after seeing L_j the state (mu, delta) is updated as in
    /// (A) and weight j is pruned iff L_j < mu_j - c * delta_j; one pass, no look-back, c fixed.
    fn single_pass(&self, row: &[f32], c: f64, flags: &mut [bool]) {
        let (a, b) = (self.config.alpha, self.config.beta);
        let mut mu = f64::from(row[0]);
        let mut delta = 0.0;
        for (f, &l) in flags.iter_mut().zip(row) {
            let l = f64::from(l);
            mu = (1.0 - a) * mu + a * l;
            delta = (1.0 - b) * delta + b * (l - mu).abs();
            *f = l < mu - c * delta;
        }
    }

    /// The multiplier c that `single_pass` uses at target sparsity `s`, within [-la, la].
    pub fn pass_multiplier(&self, s: f64) -> f64 {
        let c = match self.config.pass_model {
            // X ~ chi^2_1 (mean 1): its s-quantile is z_{(1+s)/2}^2 and E|X - 1| = 4 phi(1).
            PassModel::ChiSquare => {
                let z = normal_quantile(0.5 * (1.0 + s));
                let mad = 4.0 * (-0.5f64).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (1.0 - z * z) / mad
            }
            // A normal's mean absolute deviation is sigma * sqrt(2 / pi).
            PassModel::Normal => -normal_quantile(s) * (std::f64::consts::PI / 2.0).sqrt(),
        };
        c.clamp(-self.config.la, self.config.la)
    }

    /// (B) Tracks the s-quantile of L along the row: tau += gain * delta * (s - 1[L < tau]),
    /// delta the EWMA mean deviation; warm-up passes, then a deciding pass with tau frozen.
    fn quantile_select(&self, row: &[f32], s: f64, flags: &mut [bool]) {
        let n = row.len();
        let mut three = [row[0], row[n / 2], row[n - 1]];
        three.sort_by(f32::total_cmp);
        let mut tau = f64::from(three[1]);
        let mut mu = f64::from(row[0]);
        let mut delta = 0.0;
        let mut t = 0.0;
        for _ in 0..self.config.quantile_warmup_passes.max(1) {
            for &l in row {
                let l = f64::from(l);
                mu = (1.0 - self.config.alpha) * mu + self.config.alpha * l;
                delta = (1.0 - self.config.beta) * delta + self.config.beta * (l - mu).abs();
                let below = if l < tau { 1.0 } else { 0.0 };
                // Robbins-Monro gain, decaying once per pass over the row.
                tau += self.config.quantile_step * delta * (s - below) / (1.0 + t / n as f64);
                t += 1.0;
            }
        }
        for (f, l) in flags.iter_mut().zip(row) {
            *f = f64::from(*l) < tau;
        }
    }
}

/// The standard normal's quantile function, by bisection on its distribution function
/// (erfc by the Chebyshev fit of Numerical Recipes, fractional error below 1.2e-7).
/// `p` outside (0, 1) gives -8 or 8.
pub fn normal_quantile(p: f64) -> f64 {
    let cdf = |z: f64| {
        let x = -z / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.5 * x.abs());
        let poly = -1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
        let erfc = t * (-x * x + poly).exp();
        0.5 * if x >= 0.0 { erfc } else { 2.0 - erfc }
    };
    let (mut lo, mut hi) = (-8.0, 8.0);
    for _ in 0..64 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// Marks the `n` smallest of a small group by repeated minimum (ties: lower index first).
fn select_n_smallest(group: &[f32], n: usize, flags: &mut [bool]) {
    for _ in 0..n {
        let mut best: Option<usize> = None;
        for (j, v) in group.iter().enumerate() {
            if !flags[j] && best.is_none_or(|b| *v < group[b]) {
                best = Some(j);
            }
        }
        if let Some(b) = best {
            flags[b] = true;
        }
    }
}

/// Moves the fewest entries so that exactly `k` are pruned: un-prunes the highest pruned or
/// prunes the lowest kept, by a linear-time selection (`select_nth_unstable`), ties by index.
fn fix_count(row: &[f32], k: usize, flags: &mut [bool]) {
    let n_pruned = flags.iter().filter(|f| **f).count();
    let order = |a: &usize, b: &usize| row[*a].total_cmp(&row[*b]).then(a.cmp(b));
    if n_pruned > k {
        let mut idx: Vec<usize> = (0..row.len()).filter(|&j| flags[j]).collect();
        let extra = n_pruned - k;
        let cut = idx.len() - extra;
        idx.select_nth_unstable_by(cut, order);
        idx[cut..].iter().for_each(|&j| flags[j] = false);
    } else if n_pruned < k {
        let mut idx: Vec<usize> = (0..row.len()).filter(|&j| !flags[j]).collect();
        let missing = k - n_pruned;
        idx.select_nth_unstable_by(missing - 1, order);
        idx[..missing].iter().for_each(|&j| flags[j] = true);
    }
}

prunus_core::register!(layerwise SwiftPrune);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_count_hits_k_both_ways() {
        let row = [5.0, 1.0, 4.0, 2.0, 3.0, 0.5];
        let mut f = [true, true, true, true, false, false];
        fix_count(&row, 2, &mut f); // un-prune the two highest pruned (5 and 4)
        assert_eq!(f, [false, true, false, true, false, false]);
        let mut f = [false, false, false, false, false, true];
        fix_count(&row, 3, &mut f); // prune the two lowest kept (1 and 2)
        assert_eq!(f, [false, true, false, true, false, true]);
    }

    #[test]
    fn n_smallest_breaks_ties_by_index() {
        let mut f = [false; 4];
        select_n_smallest(&[2.0, 1.0, 1.0, 0.5], 2, &mut f);
        assert_eq!(f, [false, true, false, true]);
    }

    #[test]
    fn normal_quantile_and_the_pass_multipliers() {
        for (p, z) in [(0.5, 0.0), (0.975, 1.959_964), (0.75, 0.674_490), (0.1, -1.281_552)] {
            assert!((normal_quantile(p) - z).abs() < 1e-5, "{p}: {}", normal_quantile(p));
        }
        let m = |pass_model| SwiftPrune { config: Config { pass_model, ..Config::default() } };
        // chi^2_1 at s = 0.5: median 0.454936, E|X - 1| = 0.967883.
        assert!((m(PassModel::ChiSquare).pass_multiplier(0.5) - (1.0 - 0.454_936) / 0.967_883).abs() < 1e-5);
        assert!(m(PassModel::Normal).pass_multiplier(0.5).abs() < 1e-6);
        assert!(m(PassModel::Normal).pass_multiplier(0.3) > 0.0 && m(PassModel::Normal).pass_multiplier(0.7) < 0.0);
        assert_eq!(m(PassModel::Normal).pass_multiplier(1e-12), 4.0); // clamped to la
    }

    #[test]
    fn weight_row_score_is_monotone_in_magnitude_within_a_row() {
        let stats = prunus_core::Stats::new(StatKind::None, 4);
        let w = [0.1f32, -0.4, 0.2, 0.3];
        let view = LayerView { block: 0, name: "t", d_out: 1, d_in: 4, weight: &w, stats: &stats };
        let m = SwiftPrune { config: Config { x_source: XSource::WeightRow, ..Config::default() } };
        let l = m.scores(&view).unwrap();
        let mut by_l: Vec<usize> = (0..4).collect();
        by_l.sort_by(|a, b| l[*a].total_cmp(&l[*b]));
        assert_eq!(by_l, [0, 2, 3, 1]);
    }
}
