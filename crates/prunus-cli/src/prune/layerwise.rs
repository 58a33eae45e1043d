//! A layer-wise method's step of `prunus prune`: calibration windows of token ids, then the
//! core's block-sequential pipeline.

use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use prunus_core::pipeline::{Event, PipelineOptions, prune_layerwise};
use prunus_core::{Built, LayerwiseMethod, PrunableModel, Target};
use prunus_data::corpus::{CALIBRATION_SAMPLER, calibration_windows};
use prunus_eval::report::{Seconds, SparsityInfo};

use super::Pruned;
use crate::plan::CalibrationPlan;
use crate::report::calibration_info;
use crate::session::bar;

/// Prunes `model` with `method` at `target`, calibrating on windows of `pool` (the
/// calibration pool's tokens) when the method uses data.
pub(super) fn prune(
    model: &mut dyn PrunableModel,
    method: &Built<dyn LayerwiseMethod>,
    target: &Target,
    calibration: Option<CalibrationPlan>,
    pool: &[u32],
    batch_size: usize,
    seconds: &mut Seconds,
) -> Result<Pruned> {
    let pattern = target.pattern();
    let calibration = match calibration {
        Some(c) => {
            let windows = calibration_windows(pool, c.samples, c.seq_len, c.seed)?;
            let info = calibration_info(&windows, c.seq_len, CALIBRATION_SAMPLER.into());
            Some((Tensor::from_vec(windows.ids, (windows.offsets.len(), c.seq_len), &Device::Cpu)?, info))
        }
        None => None,
    };
    let pb = bar(model.n_blocks() as u64, &format!("pruning ({})", method.name));
    let t = Instant::now();
    let outcome = prune_layerwise(
        model,
        method,
        pattern,
        calibration.as_ref().map(|(t, _)| t),
        &PipelineOptions { batch_size },
        &mut |e| match e {
            Event::Block { index, .. } => pb.set_position(index as u64),
        },
    )?;
    pb.finish_and_clear();
    seconds.prune_total = t.elapsed().as_secs_f64();
    seconds.calibration_forward = outcome.seconds.calibration_forward;
    seconds.statistics = outcome.seconds.statistics;
    seconds.score_and_mask = outcome.seconds.score_and_mask;
    Ok(Pruned {
        asked: pattern.to_string(),
        summary: format!("realised sparsity {:.6} over {} weights", outcome.sparsity(), outcome.numel()),
        tail: format!("; pruning {:.1} s (score+mask {:.2} s)", seconds.prune_total, seconds.score_and_mask),
        sparsity: SparsityInfo {
            pattern: pattern.label(),
            requested: pattern.sparsity(),
            realised: outcome.sparsity(),
            pruned: outcome.pruned(),
            numel: outcome.numel(),
            group: target.group().to_string(),
            per_layer: outcome.layers,
            per_block: outcome.blocks,
        },
        structure: None,
        calibration: calibration.map(|(_, info)| info),
    })
}
