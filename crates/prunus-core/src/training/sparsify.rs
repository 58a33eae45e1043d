//! One mask over all candidate tensors together, from a method's scores.
//!
//! The PTMGP code's rule (`calculate_mask_threshold`, `create_pruning_mask`): with `N` scores
//! in all and `k = floor(N * s)`, the threshold is the k-th smallest score, and every weight
//! whose score is strictly below it is pruned. Ties at the threshold are kept, so the realised
//! sparsity may fall short of `s` by the ties (and by one weight without ties); it is reported
//! in [`MaskStats`]. Deterministic: no sort order or thread count enters.

use crate::error::{Error, Result};

/// What a global mask did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskStats {
    /// The scheduled sparsity.
    pub target: f64,
    /// The threshold score (weights strictly below it were pruned); `None` when k was 0.
    pub threshold: Option<f32>,
    /// Weights pruned, over all candidates.
    pub pruned: u64,
    /// Candidate weights in all.
    pub total: u64,
}

/// The keep-mask (`true` = kept) of every candidate from its `scores` (one buffer per
/// candidate), pruning at sparsity `s` over all of them together by the module's rule. A
/// non-finite score is an error naming the candidate and index.
pub fn global_mask(names: &[&str], scores: &[Vec<f32>], s: f64) -> Result<(Vec<Vec<bool>>, MaskStats)> {
    if !(0.0..1.0).contains(&s) {
        return Err(Error::BadSparsity { value: s });
    }
    let mut all = Vec::with_capacity(scores.iter().map(Vec::len).sum());
    for (name, sc) in names.iter().zip(scores) {
        if let Some((index, &value)) = sc.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::NonFinite { tensor: format!("the scores of {name}"), value, index });
        }
        all.extend_from_slice(sc);
    }
    let total = all.len() as u64;
    let k = (all.len() as f64 * s).floor() as usize;
    if k == 0 {
        let masks = scores.iter().map(|sc| vec![true; sc.len()]).collect();
        return Ok((masks, MaskStats { target: s, threshold: None, pruned: 0, total }));
    }
    let (_, &mut threshold, _) = all.select_nth_unstable_by(k - 1, f32::total_cmp);
    drop(all);
    let mut pruned = 0u64;
    let masks = scores
        .iter()
        .map(|sc| {
            sc.iter()
                .map(|v| {
                    let keep = v.total_cmp(&threshold).is_ge();
                    pruned += u64::from(!keep);
                    keep
                })
                .collect()
        })
        .collect();
    Ok((masks, MaskStats { target: s, threshold: Some(threshold), pruned, total }))
}

/// The indices of the prunable parameters (the candidates), in parameter order.
pub fn candidate_indices(params: &[super::model::ParamInfo]) -> Vec<usize> {
    params.iter().enumerate().filter(|(_, p)| p.prunable).map(|(i, _)| i).collect()
}

/// Zeros among the candidate parameters' weights (`candidates` index `weights`), and their
/// number: the realised sparsity a training run reports.
pub fn candidate_zeros(weights: &[Vec<f32>], candidates: &[usize]) -> (usize, usize) {
    candidates.iter().fold((0, 0), |(z, n), &i| (z + weights[i].iter().filter(|w| **w == 0.0).count(), n + weights[i].len()))
}

/// Zeroes the weights a keep-mask drops.
pub fn apply_mask(weights: &mut [f32], keep: &[bool]) {
    debug_assert_eq!(weights.len(), keep.len());
    for (w, &k) in weights.iter_mut().zip(keep) {
        if !k {
            *w = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_strictly_below_the_kth_smallest_over_all_candidates() {
        let scores = vec![vec![0.5, 0.1, 0.9], vec![0.3, 0.7, 0.2, 0.8]];
        // 7 scores, s = 0.5: k = 3, the 3rd smallest is 0.3; pruned: 0.1 and 0.2.
        let (masks, stats) = global_mask(&["a", "b"], &scores, 0.5).unwrap();
        assert_eq!(masks, vec![vec![true, false, true], vec![true, true, false, true]]);
        assert_eq!((stats.threshold, stats.pruned, stats.total), (Some(0.3), 2, 7));
    }

    #[test]
    fn ties_at_the_threshold_are_kept_and_zero_sparsity_prunes_nothing() {
        let scores = vec![vec![0.0, 0.0, 0.0, 1.0]];
        let (masks, stats) = global_mask(&["a"], &scores, 0.5).unwrap();
        assert_eq!((masks[0].clone(), stats.pruned), (vec![true; 4], 0));
        let (masks, stats) = global_mask(&["a"], &scores, 0.2).unwrap();
        assert_eq!((masks[0].clone(), stats.threshold), (vec![true; 4], None));
    }

    #[test]
    fn non_finite_scores_and_bad_sparsity_are_errors() {
        let e = global_mask(&["a", "b"], &[vec![1.0], vec![0.0, f32::NAN]], 0.5).unwrap_err();
        assert!(e.to_string().contains("scores of b") && e.to_string().contains("index 1"), "{e}");
        assert!(global_mask(&["a"], &[vec![1.0]], 1.0).is_err());
    }
}
