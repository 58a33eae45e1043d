//! The per-linear step: a method's decision for one weight matrix, turned into a mask and the
//! weights to keep. The pipeline runs it for every linear; benchmarks time it alone.

use crate::declare::{Built, Notes};
use crate::layerwise::{Decision, LayerView, LayerwiseMethod, Target};
use crate::mask::{Mask, check_finite};
use crate::error::{Error, Result};

/// One linear after its step.
#[derive(Debug, Clone)]
pub struct PrunedLinear {
    /// Row-major (d_out, d_in) weights with the masked ones zeroed.
    pub weight: Vec<f32>,
    /// Which weights went.
    pub mask: Mask,
    /// The method's notes about this linear.
    pub notes: Notes,
}

/// Lets `method` decide `layer` at `target` and applies the decision: the lowest scores of
/// each group go (scores), the method's mask goes (mask), or the method's weights replace the
/// layer's before its mask goes (mask and weights). A mask or weight of the wrong shape and a
/// non-finite rewritten weight are errors naming the linear and the method.
pub fn prune_linear(method: &Built<dyn LayerwiseMethod>, target: &Target, layer: &LayerView<'_>) -> Result<PrunedLinear> {
    let (name, d_out, d_in) = (layer.name, layer.d_out, layer.d_in);
    let mut notes = Notes::new();
    let decision = method.decide(layer, target, &mut notes)?;
    let (mask, mut weight) = match decision {
        Decision::Scores(scores) => (Mask::build(&scores, d_out, d_in, target.group(), target.pattern(), name)?, layer.weight.to_vec()),
        Decision::Mask(mask) => {
            check_mask_shape(&mask, name, method.name, d_out, d_in)?;
            (mask, layer.weight.to_vec())
        }
        Decision::MaskAndWeights { mask, weight: updated } => {
            check_mask_shape(&mask, name, method.name, d_out, d_in)?;
            if updated.len() != layer.weight.len() {
                return Err(Error::Shape {
                    tensor: format!("{name} updated by {}", method.name),
                    expected: vec![d_out, d_in],
                    got: vec![updated.len()],
                });
            }
            check_finite(&updated, &format!("{name} updated by {}", method.name))?;
            (mask, updated)
        }
    };
    mask.apply(&mut weight);
    Ok(PrunedLinear { weight, mask, notes })
}

/// Errors unless a method's mask has the linear's shape.
fn check_mask_shape(mask: &Mask, name: &str, method: &str, d_out: usize, d_in: usize) -> Result<()> {
    if (mask.d_out, mask.d_in) != (d_out, d_in) {
        return Err(Error::Shape {
            tensor: format!("{name} mask from method {method}"),
            expected: vec![d_out, d_in],
            got: vec![mask.d_out, mask.d_in],
        });
    }
    Ok(())
}
