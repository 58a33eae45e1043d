//! Everything a layer-wise run checks before any weight changes.

use candle_core::{DType, Tensor};

use crate::declare::Built;
use crate::layerwise::{LayerwiseMethod, Target};
use crate::mask::check_finite;
use crate::model::PrunableModel;
use crate::pattern::Pattern;
use crate::stats::StatKind;
use crate::error::{Error, Result};

/// Checks `pattern` against `method` and every linear of `model` ([`Target::check`]), that
/// calibration tokens are there when the method asks for statistics, and that every weight is
/// finite (a non-finite weight would otherwise surface as non-finite activations of a later
/// capture site). Returns the target and the calibration the run uses (`None` for a method
/// that needs no statistics). A streaming model's weights are checked as each block loads
/// instead ([`PrunableModel::streams`]).
pub fn preflight<'t>(
    model: &dyn PrunableModel,
    method: &Built<dyn LayerwiseMethod>,
    pattern: &Pattern,
    calibration: Option<&'t Tensor>,
) -> Result<(Target, Option<&'t Tensor>)> {
    let names: Vec<(String, usize)> = (0..model.n_blocks())
        .flat_map(|block| model.linears(block).into_iter().map(move |lin| (format!("blk.{block}.{}", lin.name), lin.d_in)))
        .collect();
    let target = Target::check(method.name, &**method, pattern, names.iter().map(|(n, d)| (n.as_str(), *d)))?;
    let calibration = match (method.stats(), calibration) {
        (StatKind::None, _) => None,
        (_, Some(tokens)) => Some(tokens),
        (kind, None) => {
            return Err(Error::NeedsCalibration { method: method.name.to_string(), what: format!("{kind:?} statistics") });
        }
    };
    if !model.streams() {
        for block in 0..model.n_blocks() {
            check_block_finite(model, block)?;
        }
    }
    Ok((target, calibration))
}

/// Errors (naming the tensor) unless every linear weight of `block` is finite. The preflight
/// runs it on every block of a model held in memory; the pipeline on each block of a
/// streaming model as it loads.
pub(super) fn check_block_finite(model: &dyn PrunableModel, block: usize) -> Result<()> {
    for lin in model.linears(block) {
        let w = model.weight(block, &lin.name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        check_finite(&w, &format!("blk.{block}.{}", lin.name))?;
    }
    Ok(())
}
