//! What a structured method removes: unit kinds, units, where their parameters live, and
//! parameter counts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a structured method removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A whole decoder layer (attention and MLP); the residual stream passes straight on.
    Layer,
    /// A key/value head with the query heads that read it (grouped-query attention); one
    /// query head and its key/value head in a model without GQA.
    Head,
    /// Query head j of every key/value group of a layer (grouped-query attention needs every
    /// group to keep the same number of query heads); the key/value heads stay. Refused by
    /// models without GQA, where a query head cannot go without its key/value head.
    QueryHead,
    /// One MLP channel (a row of gate and up projections, a column of the down projection).
    Channel,
}

impl UnitKind {
    /// Every kind, in CLI order.
    pub const ALL: [UnitKind; 4] = [UnitKind::Layer, UnitKind::Head, UnitKind::QueryHead, UnitKind::Channel];

    /// The snake_case name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Layer => "layer",
            UnitKind::Head => "head",
            UnitKind::QueryHead => "query_head",
            UnitKind::Channel => "channel",
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UnitKind {
    type Err = Error;

    /// `layer`, `head`, `query_head` (or `query-head`), `channel`.
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        UnitKind::ALL.into_iter().find(|k| k.name() == norm).ok_or_else(|| {
            Error::Invalid(format!("unknown unit `{s}` (expected one of layer, head, query_head, channel)"))
        })
    }
}

/// A slice of one named parameter tensor: `tensor.narrow(dim, start, len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The parameter's name, as in [`StructuredModel::weights`].
    pub tensor: String,
    /// The dimension sliced.
    pub dim: usize,
    /// First index of the slice along `dim`.
    pub start: usize,
    /// Number of indices along `dim`.
    pub len: usize,
}

/// One removable unit of the current model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// What kind of unit it is.
    pub kind: UnitKind,
    /// The decoder layer (for a layer unit, the layer itself), in the current model.
    pub layer: usize,
    /// The unit's index inside its layer (key/value head, query head, channel); 0 for a layer.
    pub index: usize,
    /// Parameters that removing the unit removes: the total size of `parts`.
    pub params: usize,
    /// Where its parameters live.
    pub parts: Vec<Part>,
}

impl Unit {
    /// `layer 3`, `head 1 of layer 3`, ... (current indices).
    pub fn describe(&self) -> String {
        match self.kind {
            UnitKind::Layer => format!("layer {}", self.layer),
            k => format!("{k} {} of layer {}", self.index, self.layer),
        }
    }

    /// Units of one container compete for "at least one must remain": the layer of a head or
    /// channel, the whole model (`None`) for a layer.
    pub fn container(&self) -> Option<usize> {
        match self.kind {
            UnitKind::Layer => None,
            _ => Some(self.layer),
        }
    }
}

pub use prunus_report::ParamCount;
