//! The block-sequential calibration driver, as Wanda and SparseGPT run it.
//!
//! For each decoder block in order:
//! 1. run the calibration hidden states through the still-dense block, gathering each capture
//!    site's statistics (all linears of the block see the same dense pass);
//! 2. let the method decide every linear of the block and apply the masks (and new weights);
//! 3. re-run the block with the pruned weights to produce the next block's inputs, so the
//!    error of earlier blocks propagates into the statistics of later ones.
//!
//! Each linear gets a [`LayerRecord`] (with whatever notes the method attached); wall seconds
//! are kept per stage, in total and per block ([`BlockSeconds`]).
//!
//! Memory stays bounded by the model plus one set of calibration hidden states (n_samples,
//! seq_len, d_model), processed in chunks of `batch_size` sequences. A method that needs no
//! statistics (magnitude) runs no forward pass at all.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::mask::{Mask, check_finite, check_nm_fits};
use crate::method::{Decided, Decision, LayerView, LayerwiseMethod, Notes};
use crate::model::PrunableModel;
use crate::pattern::{Group, Pattern};
use crate::stats::{StatKind, Stats};
use crate::{Error, Result};

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
    Block { index: usize, total: usize },
}

/// What happened to one linear.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub block: usize,
    pub name: String,
    pub d_out: usize,
    pub d_in: usize,
    pub group: Group,
    pub pruned: usize,
    pub numel: usize,
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

/// Wall seconds of one decoder block. Summed over the blocks, `statistics` and
/// `score_and_mask` give the [`StageSeconds`] totals; `calibration_forward` lacks only the
/// embedding of the calibration tokens, which belongs to no block.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct BlockSeconds {
    pub block: usize,
    /// The dense pass (statistics excluded) and the pruned pass that feeds the next block.
    pub calibration_forward: f64,
    pub statistics: f64,
    /// Sum of the block's `LayerRecord::score_mask_seconds`.
    pub score_and_mask: f64,
}

/// The result of [`prune_layerwise`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PruneOutcome {
    pub layers: Vec<LayerRecord>,
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
/// changes: a bad pattern, missing data or a non-finite weight (named) leaves the model
/// untouched.
pub fn prune_layerwise(
    model: &mut dyn PrunableModel,
    method: &dyn LayerwiseMethod,
    pattern: &Pattern,
    calibration: Option<&Tensor>,
    options: &PipelineOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<PruneOutcome> {
    crate::pattern::check_sparsity(pattern.sparsity())?;
    let group = method.group(pattern)?;
    if !group.realises(pattern) {
        return Err(Error::Invalid(format!(
            "method `{}` chose comparison group {group}, which cannot realise pattern {pattern}",
            method.name()
        )));
    }
    let n_blocks = model.n_blocks();
    for block in 0..n_blocks {
        for lin in model.linears(block) {
            check_nm_fits(pattern, &format!("blk.{block}.{}", lin.name), lin.d_in)?;
        }
    }
    let kind = method.stats();
    let calibration = match (kind, calibration) {
        (StatKind::None, _) => None,
        (_, Some(tokens)) => Some(tokens),
        (kind, None) => {
            return Err(Error::NeedsCalibration {
                method: method.name().to_string(),
                what: format!("{kind:?} statistics"),
            });
        }
    };
    // A non-finite weight would otherwise surface as non-finite activations of a later site.
    for block in 0..n_blocks {
        for lin in model.linears(block) {
            let w = model.weight(block, &lin.name)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            check_finite(&w, &format!("blk.{block}.{}", lin.name))?;
        }
    }

    let mut seconds = StageSeconds::default();
    let mut layers = Vec::new();
    let mut blocks = Vec::with_capacity(n_blocks);
    let mut hidden = match calibration {
        Some(tokens) => {
            let t = Instant::now();
            let chunks = embed_chunks(model, tokens, options.batch_size.max(1))?;
            seconds.calibration_forward += t.elapsed().as_secs_f64();
            chunks
        }
        None => Vec::new(),
    };

    for block in 0..n_blocks {
        on_event(Event::Block { index: block, total: n_blocks });
        let mut block_seconds = BlockSeconds { block, ..BlockSeconds::default() };
        let linears = model.linears(block);
        // 1. Statistics from the dense block.
        let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
        if calibration.is_some() {
            for lin in &linears {
                stats.entry(lin.input_site.clone()).or_insert_with(|| Stats::new(kind, lin.d_in));
            }
            let t = Instant::now();
            let mut stat_seconds = 0.0;
            for chunk in &hidden {
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
                model.block_forward(block, chunk, Some(&mut capture))?;
            }
            block_seconds.statistics = stat_seconds;
            block_seconds.calibration_forward = t.elapsed().as_secs_f64() - stat_seconds;
        }
        // 2. Decide and apply, linear by linear.
        let empty = Stats::new(StatKind::None, 0);
        for lin in &linears {
            let t = Instant::now();
            let name = format!("blk.{block}.{}", lin.name);
            let weight_t = model.weight(block, &lin.name)?;
            let device = weight_t.device().clone();
            let mut weight = weight_t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if weight.len() != lin.d_out * lin.d_in {
                return Err(Error::Shape { tensor: name, expected: vec![lin.d_out, lin.d_in], got: weight_t.dims().to_vec() });
            }
            check_finite(&weight, &name)?;
            let site_stats = stats.get(&lin.input_site).unwrap_or(&empty);
            let view = LayerView { block, name: &name, d_out: lin.d_out, d_in: lin.d_in, weight: &weight, stats: site_stats };
            let Decided { decision, notes } = method.decide_with_notes(&view, pattern, group)?;
            let mask = match decision {
                Decision::Scores(scores) => {
                    let mask = Mask::build(&scores, lin.d_out, lin.d_in, group, pattern, &name)?;
                    mask.apply(&mut weight);
                    mask
                }
                Decision::Mask(mask) => {
                    check_mask_shape(&mask, &name, method.name(), lin.d_out, lin.d_in)?;
                    mask.apply(&mut weight);
                    mask
                }
                Decision::MaskAndWeights { mask, weight: updated } => {
                    check_mask_shape(&mask, &name, method.name(), lin.d_out, lin.d_in)?;
                    if updated.len() != weight.len() {
                        return Err(Error::Shape {
                            tensor: format!("{name} updated by {}", method.name()),
                            expected: vec![lin.d_out, lin.d_in],
                            got: vec![updated.len()],
                        });
                    }
                    check_finite(&updated, &format!("{name} updated by {}", method.name()))?;
                    weight = updated;
                    mask.apply(&mut weight);
                    mask
                }
            };
            let pruned = mask.n_pruned();
            model.set_weight(block, &lin.name, Tensor::from_vec(weight, (lin.d_out, lin.d_in), &device)?)?;
            let score_mask_seconds = t.elapsed().as_secs_f64();
            block_seconds.score_and_mask += score_mask_seconds;
            layers.push(LayerRecord {
                block,
                name: lin.name.clone(),
                d_out: lin.d_out,
                d_in: lin.d_in,
                group,
                pruned,
                numel: lin.d_out * lin.d_in,
                sparsity: pruned as f64 / (lin.d_out * lin.d_in) as f64,
                score_mask_seconds,
                notes,
            });
        }
        // 3. The pruned block's outputs feed the next block.
        if calibration.is_some() && block + 1 < n_blocks {
            let t = Instant::now();
            for chunk in hidden.iter_mut() {
                *chunk = model.block_forward(block, chunk, None)?;
            }
            block_seconds.calibration_forward += t.elapsed().as_secs_f64();
        }
        seconds.calibration_forward += block_seconds.calibration_forward;
        seconds.statistics += block_seconds.statistics;
        seconds.score_and_mask += block_seconds.score_and_mask;
        blocks.push(block_seconds);
    }
    Ok(PruneOutcome { layers, seconds, blocks })
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

/// Embeds (n_samples, seq_len) token ids in chunks of `batch_size` sequences.
fn embed_chunks(model: &dyn PrunableModel, tokens: &Tensor, batch_size: usize) -> Result<Vec<Tensor>> {
    let (n_samples, _seq_len) = tokens.dims2()?;
    if n_samples == 0 {
        return Err(Error::Invalid("the calibration set is empty".into()));
    }
    (0..n_samples)
        .step_by(batch_size)
        .map(|start| model.embed(&tokens.narrow(0, start, batch_size.min(n_samples - start))?))
        .collect()
}
