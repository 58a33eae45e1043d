//! Masks, and the builders that turn scores into masks for a comparison group.
//!
//! Convention: a low score means "matters little"; the lowest-scoring weights of each group
//! are pruned. Ties are broken by position (the lower flat index goes first), which is what a
//! stable ascending sort does (Wanda's `torch.sort(stable=True)`), so masks are deterministic.

use serde::{Deserialize, Serialize};

use crate::pattern::{Group, Pattern};
use crate::error::{Error, Result};

/// A pruning mask over a (d_out, d_in) weight; `true` means pruned (set to zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    /// Rows of the weight (output features).
    pub d_out: usize,
    /// Columns of the weight (input features).
    pub d_in: usize,
    pruned: Vec<bool>,
}

impl Mask {
    /// Wraps a row-major vector of `d_out * d_in` flags (`true` = pruned).
    pub fn from_vec(d_out: usize, d_in: usize, pruned: Vec<bool>) -> Result<Self> {
        if pruned.len() != d_out * d_in {
            return Err(Error::Shape {
                tensor: "mask".into(),
                expected: vec![d_out, d_in],
                got: vec![pruned.len()],
            });
        }
        Ok(Mask { d_out, d_in, pruned })
    }

    /// Row-major flags, `true` = pruned.
    pub fn as_slice(&self) -> &[bool] {
        &self.pruned
    }

    /// Number of pruned entries.
    pub fn n_pruned(&self) -> usize {
        self.pruned.iter().filter(|&&p| p).count()
    }

    /// Fraction of pruned entries.
    pub fn sparsity(&self) -> f64 {
        self.n_pruned() as f64 / self.pruned.len().max(1) as f64
    }

    /// Zeroes the pruned entries of a row-major (d_out, d_in) weight.
    pub fn apply(&self, weight: &mut [f32]) {
        debug_assert_eq!(weight.len(), self.pruned.len());
        for (w, &p) in weight.iter_mut().zip(&self.pruned) {
            if p {
                *w = 0.0;
            }
        }
    }

    /// Builds the mask that prunes the lowest `scores` of each `group` at `pattern`.
    ///
    /// `scores` is row-major (d_out, d_in). Per matrix: exactly floor(d_out * d_in * s)
    /// entries go. Per row: exactly floor(d_in * s) entries of every row. N:M: exactly `n` of
    /// each `m` consecutive input columns of every row. `tensor` names the linear in errors.
    pub fn build(
        scores: &[f32],
        d_out: usize,
        d_in: usize,
        group: Group,
        pattern: &Pattern,
        tensor: &str,
    ) -> Result<Mask> {
        if scores.len() != d_out * d_in {
            return Err(Error::Shape {
                tensor: format!("{tensor} scores"),
                expected: vec![d_out, d_in],
                got: vec![scores.len()],
            });
        }
        check_finite(scores, &format!("{tensor} scores"))?;
        let mut pruned = vec![false; scores.len()];
        match (group, *pattern) {
            (Group::PerMatrix, Pattern::Unstructured { sparsity }) => {
                let k = count(scores.len(), sparsity);
                prune_lowest(scores, 0, &mut pruned, k);
            }
            (Group::PerRow, Pattern::Unstructured { sparsity }) => {
                let k = count(d_in, sparsity);
                for r in 0..d_out {
                    let row = r * d_in..(r + 1) * d_in;
                    prune_lowest(&scores[row.clone()], row.start, &mut pruned, k);
                }
            }
            (Group::NM { n, m }, Pattern::NM { n: pn, m: pm }) if n == pn && m == pm => {
                check_nm_fits(pattern, tensor, d_in)?;
                for start in (0..scores.len()).step_by(m) {
                    prune_lowest(&scores[start..start + m], start, &mut pruned, n);
                }
            }
            (group, pattern) => {
                return Err(Error::Invalid(format!(
                    "comparison group {group} cannot realise pattern {pattern} for {tensor}"
                )));
            }
        }
        Ok(Mask { d_out, d_in, pruned })
    }
}

/// floor(n * s), as Python's `int(n * s)`.
fn count(n: usize, sparsity: f64) -> usize {
    ((n as f64) * sparsity).floor() as usize
}

/// Marks the `k` lowest entries of `scores` (ties: lower index first) in `pruned[offset..]`.
fn prune_lowest(scores: &[f32], offset: usize, pruned: &mut [bool], k: usize) {
    if k == 0 {
        return;
    }
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    let order = |a: &u32, b: &u32| scores[*a as usize].total_cmp(&scores[*b as usize]).then(a.cmp(b));
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
    }
    for &i in &idx[..k.min(idx.len())] {
        pruned[offset + i as usize] = true;
    }
}

/// Checks that an N:M pattern fits a linear of input width `d_in`.
pub fn check_nm_fits(pattern: &Pattern, tensor: &str, d_in: usize) -> Result<()> {
    if let Pattern::NM { m, .. } = *pattern {
        if d_in % m != 0 {
            return Err(Error::PatternMismatch {
                pattern: *pattern,
                tensor: tensor.to_string(),
                d_in,
                reason: format!("M = {m} does not divide the input width"),
            });
        }
    }
    Ok(())
}

/// Errors with the first non-finite value of `values`, naming `tensor`.
pub fn check_finite(values: &[f32], tensor: &str) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { tensor: tensor.to_string(), index, value: values[index] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> Vec<f32> {
        // 2 x 8, with a tie (0.5 twice in row 0).
        vec![0.9, 0.5, 0.1, 0.5, 0.7, 0.3, 0.8, 0.2, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    }

    #[test]
    fn per_matrix_takes_globally_lowest() {
        let p = Pattern::Unstructured { sparsity: 0.5 };
        let m = Mask::build(&scores(), 2, 8, Group::PerMatrix, &p, "t").unwrap();
        assert_eq!(m.n_pruned(), 8);
        // All of row 0 is below every entry of row 1.
        assert!(m.as_slice()[..8].iter().all(|&x| x));
    }

    #[test]
    fn per_row_is_exact_and_breaks_ties_by_index() {
        let p = Pattern::Unstructured { sparsity: 0.5 };
        let m = Mask::build(&scores(), 2, 8, Group::PerRow, &p, "t").unwrap();
        let flags: Vec<u8> = m.as_slice().iter().map(|&b| b as u8).collect();
        // row 0: lowest four are 0.1 (2), 0.2 (7), 0.3 (5), then the tie 0.5 at 1 and 3: index 1 wins.
        assert_eq!(&flags[..8], &[0, 1, 1, 0, 0, 1, 0, 1]);
        assert_eq!(&flags[8..], &[1, 1, 1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn n_m_prunes_n_per_group() {
        let p = Pattern::NM { n: 2, m: 4 };
        let m = Mask::build(&scores(), 2, 8, Group::NM { n: 2, m: 4 }, &p, "t").unwrap();
        for g in m.as_slice().chunks(4) {
            assert_eq!(g.iter().filter(|&&x| x).count(), 2);
        }
        let flags: Vec<u8> = m.as_slice().iter().map(|&b| b as u8).collect();
        assert_eq!(&flags[..8], &[0, 1, 1, 0, 0, 1, 0, 1]);
    }

    #[test]
    fn n_m_must_divide_width() {
        let p = Pattern::NM { n: 2, m: 4 };
        let e = Mask::build(&[0.0; 12], 2, 6, Group::NM { n: 2, m: 4 }, &p, "blk.0.q_proj").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("blk.0.q_proj") && msg.contains("d_in = 6"), "{msg}");
    }

    #[test]
    fn non_finite_scores_are_named() {
        let mut s = scores();
        s[5] = f32::NAN;
        let p = Pattern::Unstructured { sparsity: 0.5 };
        let e = Mask::build(&s, 2, 8, Group::PerRow, &p, "blk.3.up_proj").unwrap_err();
        assert!(e.to_string().contains("blk.3.up_proj scores") && e.to_string().contains("index 5"), "{e}");
    }

    #[test]
    fn zero_sparsity_prunes_nothing() {
        let p = Pattern::Unstructured { sparsity: 0.0 };
        let m = Mask::build(&scores(), 2, 8, Group::PerMatrix, &p, "t").unwrap();
        assert_eq!(m.n_pruned(), 0);
    }
}
