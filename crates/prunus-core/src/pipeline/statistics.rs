//! The calibration side of a layer-wise run: embedding the tokens, gathering a dense block's
//! input statistics, and running the pruned block to feed the next one.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::Tensor;

use crate::model::{LinearInfo, PrunableModel};
use crate::stats::{StatKind, Stats};
use crate::error::{Error, Result};

/// Embeds (n_samples, seq_len) token ids in chunks of `batch_size` sequences.
pub(super) fn embed_chunks(model: &dyn PrunableModel, tokens: &Tensor, batch_size: usize) -> Result<Vec<Tensor>> {
    let (n_samples, _seq_len) = tokens.dims2()?;
    if n_samples == 0 {
        return Err(Error::Invalid("the calibration set is empty".into()));
    }
    (0..n_samples)
        .step_by(batch_size)
        .map(|start| model.embed(&tokens.narrow(0, start, batch_size.min(n_samples - start))?))
        .collect()
}

/// Statistics of every capture site of `block`'s `linears`, from one pass of the dense block
/// over `hidden`, with the seconds spent running the block (statistics excluded) and
/// accumulating the statistics.
pub(super) fn block_statistics(
    model: &dyn PrunableModel,
    block: usize,
    linears: &[LinearInfo],
    kind: StatKind,
    hidden: &[Tensor],
) -> Result<(BTreeMap<String, Stats>, f64, f64)> {
    let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
    for lin in linears {
        stats.entry(lin.input_site.clone()).or_insert_with(|| Stats::new(kind, lin.d_in));
    }
    let t = Instant::now();
    let mut stat_seconds = 0.0;
    for chunk in hidden {
        let n_samples = chunk.dim(0)?;
        let mut capture = |site: &str, x: &Tensor| -> Result<()> {
            if let Some(s) = stats.get_mut(site) {
                let t = Instant::now();
                s.add(x, n_samples).map_err(|e| match e {
                    Error::NonFinite { index, value, .. } => Error::NonFinite {
                        tensor: format!("blk.{block} calibration inputs of capture site `{site}`"),
                        index,
                        value,
                    },
                    e => e,
                })?;
                stat_seconds += t.elapsed().as_secs_f64();
            }
            Ok(())
        };
        model.block_capture(block, chunk, &mut capture)?;
    }
    let forward_seconds = t.elapsed().as_secs_f64() - stat_seconds;
    Ok((stats, forward_seconds, stat_seconds))
}

/// Replaces every chunk of `hidden` by `block`'s output for it (the pruned block feeds the
/// next one); returns the seconds it took.
pub(super) fn propagate(model: &dyn PrunableModel, block: usize, hidden: &mut [Tensor]) -> Result<f64> {
    let t = Instant::now();
    for chunk in hidden.iter_mut() {
        *chunk = model.block_forward(block, chunk, None)?;
    }
    Ok(t.elapsed().as_secs_f64())
}
