//! The block-sequential calibration driver, as Wanda and SparseGPT run it.
//!
//! For each decoder block in order:
//! 1. run the calibration hidden states through the still-dense block, gathering each capture
//!    site's statistics (all linears of the block see the same dense pass);
//! 2. let the method decide every linear of the block and apply the masks (and new weights);
//! 3. re-run the block with the pruned weights to produce the next block's inputs, so the
//!    error of earlier blocks propagates into the statistics of later ones.
//!
//! Step 0 is the [`preflight`]; step 2 is [`prune_linear`], public so that benchmarks time
//! exactly what a run does per linear.
//!
//! Each linear gets a [`LayerRecord`] (with whatever notes the method attached); wall seconds
//! are kept per stage, in total and per block ([`BlockSeconds`]).
//!
//! Memory stays bounded by the model plus one set of calibration hidden states (n_samples,
//! seq_len, d_model), processed in chunks of `batch_size` sequences. A method that needs no
//! statistics (magnitude) runs no forward pass at all. A streaming model
//! ([`PrunableModel::streams`]) is told when each block starts and ends
//! ([`load_block`](PrunableModel::load_block), [`release_block`](PrunableModel::release_block)),
//! so that only one block's weights are in memory: then the bound is one block, not the model.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::declare::{Built, Notes};
use crate::layerwise::{LayerView, LayerwiseMethod};
use crate::mask::check_finite;
use crate::model::PrunableModel;
use crate::pattern::{Group, Pattern};
use crate::stats::{StatKind, Stats};
use crate::error::{Error, Result};

mod preflight;
mod statistics;
mod step;

pub use preflight::preflight;
pub use prunus_report::BlockSeconds;
pub use step::{PrunedLinear, prune_linear};

/// Knobs of the driver that do not change the numbers.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PipelineOptions {
    /// Calibration sequences per forward call.
    pub batch_size: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { batch_size: 4 }
    }
}

/// Progress events, for a progress bar in the binary (the core never prints).
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Block `index` of `total` is about to be processed.
    Block {
        /// 0-based index of the block.
        index: usize,
        /// Number of blocks in the model.
        total: usize,
    },
}

/// What happened to one linear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    /// 0-based index of its decoder block.
    pub block: usize,
    /// Short name inside the block, e.g. `q_proj`.
    pub name: String,
    /// Output features (rows of the weight).
    pub d_out: usize,
    /// Input features (columns of the weight).
    pub d_in: usize,
    /// The comparison group its mask was built over.
    pub group: Group,
    /// Number of weights pruned.
    pub pruned: usize,
    /// Number of weights, `d_out * d_in`.
    pub numel: usize,
    /// Realised sparsity, `pruned / numel`.
    pub sparsity: f64,
    /// Seconds spent scoring, building the mask and applying it (and any weight update).
    pub score_mask_seconds: f64,
    /// What the method noted about this layer (e.g. SparseGPT's damping retries); absent when
    /// it noted nothing.
    #[serde(default, skip_serializing_if = "Notes::is_empty")]
    pub notes: Notes,
}

/// Wall seconds per stage of a pruning run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StageSeconds {
    /// Embedding the calibration tokens and running the blocks (dense and pruned passes),
    /// excluding the time spent accumulating statistics.
    pub calibration_forward: f64,
    /// Accumulating the statistics from the captured activations.
    pub statistics: f64,
    /// Scoring, mask building and applying (Wanda's "metric time").
    pub score_and_mask: f64,
}

/// The result of [`prune_layerwise`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneOutcome {
    /// One record per pruned linear, in block and forward order.
    pub layers: Vec<LayerRecord>,
    /// Wall seconds per stage, over the whole run.
    pub seconds: StageSeconds,
    /// Per decoder block, in order.
    #[serde(default)]
    pub blocks: Vec<BlockSeconds>,
}

impl PruneOutcome {
    /// Pruned weights over all pruned linears.
    pub fn pruned(&self) -> usize {
        self.layers.iter().map(|l| l.pruned).sum()
    }

    /// Weights of all pruned linears.
    pub fn numel(&self) -> usize {
        self.layers.iter().map(|l| l.numel).sum()
    }

    /// Realised sparsity over the pruned linears.
    pub fn sparsity(&self) -> f64 {
        self.pruned() as f64 / self.numel().max(1) as f64
    }
}

/// Prunes every linear of every block of `model` with `method` at `pattern`.
///
/// `calibration` holds token ids (n_samples, seq_len); it is required when the method asks
/// for statistics and ignored otherwise. Every argument is validated before any weight
/// changes ([`preflight`]): a bad pattern, missing data or a non-finite weight (named) leaves
/// the model untouched.
pub fn prune_layerwise(
    model: &mut dyn PrunableModel,
    method: &Built<dyn LayerwiseMethod>,
    pattern: &Pattern,
    calibration: Option<&Tensor>,
    options: &PipelineOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<PruneOutcome> {
    let (target, calibration) = preflight(model, method, pattern, calibration)?;
    let n_blocks = model.n_blocks();
    let mut seconds = StageSeconds::default();
    let mut layers = Vec::new();
    let mut blocks = Vec::with_capacity(n_blocks);
    let mut hidden = match calibration {
        Some(tokens) => {
            let t = Instant::now();
            let chunks = statistics::embed_chunks(model, tokens, options.batch_size.max(1))?;
            seconds.calibration_forward += t.elapsed().as_secs_f64();
            chunks
        }
        None => Vec::new(),
    };

    for block in 0..n_blocks {
        on_event(Event::Block { index: block, total: n_blocks });
        let mut block_seconds = BlockSeconds { block, ..BlockSeconds::default() };
        model.load_block(block)?;
        if model.streams() {
            preflight::check_block_finite(model, block)?;
        }
        let linears = model.linears(block);
        // 1. Statistics from the dense block.
        let stats = match calibration {
            Some(_) => {
                let (stats, forward, statistics) = statistics::block_statistics(model, block, &linears, method.stats(), &hidden)?;
                block_seconds.calibration_forward = forward;
                block_seconds.statistics = statistics;
                stats
            }
            None => BTreeMap::new(),
        };
        // 2. Decide and apply, linear by linear.
        let empty = Stats::new(StatKind::None, 0);
        for lin in &linears {
            let t = Instant::now();
            let name = format!("blk.{block}.{}", lin.name);
            let weight_t = model.weight(block, &lin.name)?;
            let device = weight_t.device().clone();
            let weight = weight_t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if weight.len() != lin.d_out * lin.d_in {
                return Err(Error::Shape { tensor: name, expected: vec![lin.d_out, lin.d_in], got: weight_t.dims().to_vec() });
            }
            check_finite(&weight, &name)?;
            let site_stats = stats.get(&lin.input_site).unwrap_or(&empty);
            let view = LayerView { block, name: &name, d_out: lin.d_out, d_in: lin.d_in, weight: &weight, stats: site_stats };
            let PrunedLinear { weight, mask, notes } = prune_linear(method, &target, &view)?;
            let pruned = mask.n_pruned();
            model.set_weight(block, &lin.name, Tensor::from_vec(weight, (lin.d_out, lin.d_in), &device)?)?;
            let score_mask_seconds = t.elapsed().as_secs_f64();
            block_seconds.score_and_mask += score_mask_seconds;
            layers.push(LayerRecord {
                block,
                name: lin.name.clone(),
                d_out: lin.d_out,
                d_in: lin.d_in,
                group: target.group(),
                pruned,
                numel: lin.d_out * lin.d_in,
                sparsity: pruned as f64 / (lin.d_out * lin.d_in) as f64,
                score_mask_seconds,
                notes,
            });
        }
        // 3. The pruned block's outputs feed the next block.
        if calibration.is_some() && block + 1 < n_blocks {
            block_seconds.calibration_forward += statistics::propagate(model, block, &mut hidden)?;
        }
        model.release_block(block)?;
        seconds.calibration_forward += block_seconds.calibration_forward;
        seconds.statistics += block_seconds.statistics;
        seconds.score_and_mask += block_seconds.score_and_mask;
        blocks.push(block_seconds);
    }
    Ok(PruneOutcome { layers, seconds, blocks })
}
