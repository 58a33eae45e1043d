//! Sparsity patterns and comparison groups.
//!
//! A *pattern* is what the user asks for (unstructured at sparsity s, or N:M). A *group* is
//! the set of weights whose scores are compared with each other when the mask is built: the
//! whole matrix, one output row, or M consecutive input columns of one row. The group is an
//! explicit, recorded parameter: a method maps the pattern to a group, the core builds the mask.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    /// Any weight may go; `sparsity` in [0, 1) is the fraction removed.
    Unstructured {
        /// Fraction of the weights removed, in [0, 1).
        sparsity: f64,
    },
    /// In each group of `m` consecutive input columns of each row, `n` weights are removed.
    NM {
        /// Weights removed per group (0 < n < m).
        n: usize,
        /// Consecutive input columns per group.
        m: usize,
    },
}

impl Pattern {
    /// Unstructured pattern at `sparsity`, checked to lie in [0, 1).
    pub fn unstructured(sparsity: f64) -> Result<Self> {
        check_sparsity(sparsity)?;
        Ok(Pattern::Unstructured { sparsity })
    }

    /// N:M pattern, checked: 0 < n < m.
    pub fn n_m(n: usize, m: usize) -> Result<Self> {
        if m == 0 || n == 0 || n >= m {
            return Err(Error::BadPattern {
                pattern: format!("{n}:{m}"),
                reason: "N:M needs 0 < N < M".into(),
            });
        }
        Ok(Pattern::NM { n, m })
    }

    /// Fraction of weights this pattern removes.
    pub fn sparsity(&self) -> f64 {
        match *self {
            Pattern::Unstructured { sparsity } => sparsity,
            Pattern::NM { n, m } => n as f64 / m as f64,
        }
    }

    /// Short label used in tables: `unstructured` or `2:4`.
    pub fn label(&self) -> String {
        match self {
            Pattern::Unstructured { .. } => "unstructured".into(),
            Pattern::NM { n, m } => format!("{n}:{m}"),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Unstructured { sparsity } => write!(f, "unstructured {sparsity}"),
            Pattern::NM { n, m } => write!(f, "{n}:{m}"),
        }
    }
}

/// Checks that a sparsity lies in [0, 1).
pub fn check_sparsity(value: f64) -> Result<()> {
    if value.is_finite() && (0.0..1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::BadSparsity { value })
    }
}

/// Parses `N:M` (e.g. `2:4`); anything else is a [`Error::BadPattern`].
pub fn parse_nm(s: &str) -> Result<Pattern> {
    let bad = |reason: &str| Error::BadPattern { pattern: s.to_string(), reason: reason.to_string() };
    let (n, m) = s.split_once(':').ok_or_else(|| bad("expected `unstructured` or `N:M`, e.g. `2:4`"))?;
    let n: usize = n.trim().parse().map_err(|_| bad("N is not a non-negative integer"))?;
    let m: usize = m.trim().parse().map_err(|_| bad("M is not a non-negative integer"))?;
    Pattern::n_m(n, m)
}

/// The pattern named on a command line: `unstructured` (with `sparsity`) or `N:M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternKind {
    /// `unstructured`; the sparsity is given separately.
    Unstructured,
    /// `N:M`, already checked: 0 < n < m.
    NM {
        /// Weights removed per group of `m`.
        n: usize,
        /// Consecutive input columns per group.
        m: usize,
    },
}

impl FromStr for PatternKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("unstructured") {
            return Ok(PatternKind::Unstructured);
        }
        match parse_nm(s)? {
            Pattern::NM { n, m } => Ok(PatternKind::NM { n, m }),
            Pattern::Unstructured { .. } => unreachable!("parse_nm only returns N:M"),
        }
    }
}

/// The set of weights whose scores compete with each other when a mask is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Group {
    /// All weights of one linear layer (Wanda's code for magnitude pruning).
    PerMatrix,
    /// Each output row separately (Wanda): every row loses exactly floor(d_in * s) weights.
    PerRow,
    /// Each run of `m` consecutive input columns within a row loses exactly `n` weights.
    NM {
        /// Weights removed per run.
        n: usize,
        /// Input columns per run.
        m: usize,
    },
}

impl Group {
    /// Whether masks over this group can realise `pattern` (N:M needs the same N:M group).
    pub fn realises(&self, pattern: &Pattern) -> bool {
        match (self, pattern) {
            (Group::PerMatrix | Group::PerRow, Pattern::Unstructured { .. }) => true,
            (Group::NM { n, m }, Pattern::NM { n: pn, m: pm }) => n == pn && m == pm,
            _ => false,
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::PerMatrix => write!(f, "per-matrix"),
            Group::PerRow => write!(f, "per-row"),
            Group::NM { n, m } => write!(f, "{n}:{m} per row over consecutive inputs"),
        }
    }
}

/// Which weights compete for unstructured sparsity, as a method's configuration names it; N:M
/// always compares within each group of M consecutive inputs. Shared by the methods whose
/// group is a choice (magnitude, Wanda); each picks its own default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnstructuredGroup {
    /// The whole weight matrix of one linear layer.
    PerMatrix,
    /// Each output row separately.
    PerRow,
}

impl UnstructuredGroup {
    /// The comparison group for `pattern`.
    pub fn group(self, pattern: &Pattern) -> Group {
        match (*pattern, self) {
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerMatrix) => Group::PerMatrix,
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerRow) => Group::PerRow,
            (Pattern::NM { n, m }, _) => Group::NM { n, m },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsity_bounds() {
        assert!(Pattern::unstructured(0.0).is_ok());
        assert!(Pattern::unstructured(0.999).is_ok());
        for bad in [1.0, -0.1, f64::NAN, 1.5] {
            let e = Pattern::unstructured(bad).unwrap_err();
            assert!(e.to_string().contains("outside [0, 1)"), "{e}");
        }
    }

    #[test]
    fn nm_parsing() {
        assert_eq!("2:4".parse::<PatternKind>().unwrap(), PatternKind::NM { n: 2, m: 4 });
        assert_eq!("UNSTRUCTURED".parse::<PatternKind>().unwrap(), PatternKind::Unstructured);
        for bad in ["4:4", "5:4", "0:4", "2-4", "a:4", "2:"] {
            let e = bad.parse::<PatternKind>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}
