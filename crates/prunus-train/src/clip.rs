//! Gradient clipping by the global L2 norm over every buffer, as
//! `torch.nn.utils.clip_grad_norm_` does it: when the norm exceeds `max_norm`, every gradient
//! is scaled by `max_norm / (norm + 1e-6)`. The squares are summed in f64 over fixed chunks of
//! each buffer (in parallel), then the chunks' sums in buffer and chunk order, so the norm does
//! not depend on the thread count.

use rayon::prelude::*;

use crate::error::{Result, TrainError};

/// Elements per chunk of the parallel passes over parameters and gradients.
pub(crate) const CHUNK: usize = 1 << 16;

/// The L2 norm of all `grads` together, its squares summed in f64 per chunk, the chunks in
/// buffer order.
pub fn global_norm(grads: &[&mut [f32]]) -> f64 {
    let mut total = 0f64;
    for g in grads {
        let parts: Vec<f64> = g.par_chunks(CHUNK).map(|c| c.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()).collect();
        total += parts.iter().sum::<f64>();
    }
    total.sqrt()
}

/// Clips `grads` to a global L2 norm of `max_norm` (> 0); returns the norm before clipping
/// (what a training log records).
pub fn clip_global_norm(grads: &mut [&mut [f32]], max_norm: f64) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(TrainError::Hyperparameter { name: "gradient clipping norm", value: max_norm.to_string(), reason: "must be positive and finite" });
    }
    let norm = global_norm(grads);
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        let coef = coef as f32;
        grads.iter_mut().for_each(|g| g.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x *= coef)));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_to_the_norm_across_buffers_and_leaves_small_gradients_alone() {
        let (mut a, mut b) = (vec![3.0f32, 0.0], vec![4.0f32]);
        let norm = clip_global_norm(&mut [&mut a, &mut b], 1.0).unwrap();
        assert_eq!(norm, 5.0);
        let after = (a[0] * a[0] + b[0] * b[0]).sqrt();
        assert!((after - 1.0).abs() < 1e-6, "{after}");
        assert!((a[0] / b[0] - 0.75).abs() < 1e-6, "the direction is kept");
        let mut c = vec![0.3f32, -0.4];
        assert!((clip_global_norm(&mut [&mut c], 1.0).unwrap() - 0.5).abs() < 1e-7);
        assert_eq!(c, vec![0.3, -0.4]);
        assert!(clip_global_norm(&mut [&mut c], 0.0).unwrap_err().to_string().contains("clipping norm"));
    }
}
