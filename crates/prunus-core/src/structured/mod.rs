//! The model-level (structured) method kind: PIP and its baselines.
//!
//! A structured method removes whole units and leaves a physically smaller model. The units
//! ([`UnitKind`]) are decoder layers, attention heads (a key/value head with the query heads
//! that read it, or the same query head of every key/value group, so grouped-query attention
//! stays consistent) and MLP channels. A model family offers them through
//! [`StructuredModel`]: it lists its units with their parameter counts and where their
//! parameters live ([`Part`]), computes the loss and gradients of a token batch, and removes
//! units. The core knows nothing about the family beyond that.
//!
//! As in the layer-wise kind, a method says how much each unit matters
//! ([`StructuredMethod::score`]) and the core decides which go ([`prune_structured`]): lowest
//! score first (ties to the earlier unit), never a protected layer's units
//! ([`StructuredOptions::protect_first`], [`StructuredOptions::protect_last`]), never the
//! last unit of a layer (or the last layer), until the removed share of the parameters is as
//! close to the target as whole units allow. The share is of the parameters outside the
//! embeddings by default, or of all parameters ([`BudgetBase::All`], LLM-Pruner's convention). A method asks for
//! one scoring ([`Schedule::OneShot`]) or for a rescoring after every few removals
//! ([`Schedule::Iterative`], PIP's greedy loop). Every iteration is recorded with the
//! original indices and scores of what it removed ([`IterationRecord`]).
//!
//! The budget rule: units are taken lowest score first while the removed parameters are
//! below the target and taking the next unit ends no farther from the target than stopping
//! (a tie removes). So the realised reduction is within half a unit of the target: 20% of
//! SmolLM2-135M's non-embedding parameters is 6.0 of its 30 layers, and 6 layers are
//! 19.9999%; 20% of all its parameters (the tied embedding is 21% of them) is 7.6 layers, so
//! 8 go (21.1%).
//!
//! Methods that need data get a [`Calibration`]: texts with the tokenizer that turns them
//! (or perturbed copies of them) into token windows. [`mean_gradients`] and [`unit_sums`]
//! are the shared arithmetic: gradients averaged over the calibration set, and sums of an
//! elementwise expression over each unit's parameters.

mod driver;
mod method;
mod params;
mod units;

pub use driver::{BudgetBase, Event, IterationRecord, RemovedUnit, StructuredOptions, StructuredOutcome, check, check_target, prune_structured};
pub use method::{Calibration, Schedule, ScoreInput, Scored, StructuredMethod, StructuredModel, TokenizeFn, mean_gradients};
pub use params::{Params, unit_sums};
pub use units::{ParamCount, Part, Unit, UnitKind};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};

    #[test]
    fn calibration_checks_sizes() {
        let bytes = |s: &str| -> Result<Vec<u32>> { Ok(s.bytes().map(u32::from).collect()) };
        assert!(matches!(Calibration::new(vec![], 4, &bytes).unwrap_err(), Error::CalibrationTooSmall { .. }));
        assert!(matches!(Calibration::new(vec!["abcdef".into()], 1, &bytes).unwrap_err(), Error::CalibrationTooSmall { .. }));
        let e = Calibration::new(vec!["abcdef".into(), "abc".into()], 4, &bytes).unwrap_err();
        assert!(e.to_string().contains("sample 1 has 3 tokens, fewer than seq_len 4"), "{e}");
        let c = Calibration::new(vec!["abcdef".into(), "ghij".into()], 4, &bytes).unwrap();
        let t = c.original().unwrap();
        assert_eq!(t.to_vec2::<u32>().unwrap(), [[97, 98, 99, 100], [103, 104, 105, 106]]);
    }

    #[test]
    fn unit_kinds_parse_and_print() {
        for k in UnitKind::ALL {
            assert_eq!(k.to_string().parse::<UnitKind>().unwrap(), k);
        }
        assert_eq!("query-head".parse::<UnitKind>().unwrap(), UnitKind::QueryHead);
        assert!("block".parse::<UnitKind>().unwrap_err().to_string().contains("expected one of layer"));
        assert_eq!(serde_json::to_string(&Schedule::Iterative { units_per_iteration: 2 }).unwrap(), r#"{"kind":"iterative","units_per_iteration":2}"#);
    }
}

