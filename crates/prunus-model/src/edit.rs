//! Structural edits: the model gets physically smaller and stays a valid Llama.
//!
//! - [`LlamaModel::remove_layers`] deletes whole decoder layers; the residual stream passes
//!   straight on. `num_hidden_layers` shrinks and the config stays plain, so the saved
//!   directory loads in transformers as it is.
//! - [`LlamaModel::remove_kv_groups`] deletes key/value heads of one layer together with the
//!   query heads that read them (grouped-query attention); [`LlamaModel::remove_query_heads`]
//!   deletes query heads inside groups, the same number from every group (GQA needs each key/
//!   value head to serve the same number of query heads). Query rows, key/value rows and
//!   output-projection columns are cut consistently. Weights are held in the Hugging Face
//!   layout (GGUF's interleaved q/k rows are un-permuted on loading), where head h owns the
//!   contiguous rows h*head_dim..(h+1)*head_dim, so a head is a block of rows.
//! - [`LlamaModel::remove_mlp_channels`] deletes SwiGLU channels of one layer: rows of
//!   gate_proj and up_proj, columns of down_proj.
//!
//! Width edits give layers different widths. The config records them per layer in
//! `prunus_layer_widths` ([`LayerWidths`](crate::config::LayerWidths)) whenever the layers
//! differ, the forward reads each layer's widths from there, and
//! [`save_hf_dir`](LlamaModel::save_hf_dir) / [`from_hf_dir`](LlamaModel::from_hf_dir)
//! write and read it back.
//!
//! Removing a head or channel is exactly zeroing its share of the output projection (its
//! o_proj columns, its down_proj columns) in the unedited model: the tests check that
//! equivalence. Every edit validates all its indices before touching a weight; the indices
//! are a set (order and repeats do not matter). [`ParamReduction`] reports what an edit
//! saved, with and without the embeddings.

use candle_core::Tensor;
use serde::Serialize;

use crate::error::{ModelError, Result};
use crate::layout::BlockSlot::{DownProj, GateProj, KProj, OProj, QProj, UpProj, VProj};
use crate::llama::{LlamaModel, ParamCounts};

/// Sorted, deduplicated indices, each below `n`; `out_of_range` builds the error for the
/// first that is not.
fn index_set(indices: &[usize], n: usize, out_of_range: impl FnOnce(usize) -> ModelError) -> Result<Vec<usize>> {
    let mut set = indices.to_vec();
    set.sort_unstable();
    set.dedup();
    match set.iter().find(|&&i| i >= n) {
        Some(&i) => Err(out_of_range(i)),
        None => Ok(set),
    }
}

/// The indices below `n` that are not in the sorted set `removed`.
fn complement(removed: &[usize], n: usize) -> Vec<usize> {
    (0..n).filter(|i| removed.binary_search(i).is_err()).collect()
}

/// The rows of `keep` blocks of `block` consecutive rows, in order.
fn block_rows(keep: &[usize], block: usize) -> Vec<usize> {
    keep.iter().flat_map(|&b| b * block..(b + 1) * block).collect()
}

/// `t` restricted to the given indices along `dim`, contiguous.
fn select(t: &Tensor, dim: usize, indices: &[usize]) -> Result<Tensor> {
    let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, indices.len(), t.device())?;
    Ok(t.index_select(&idx, dim)?.contiguous()?)
}

/// An edit that would break the model, named by what was asked.
fn refuse(what: String, indices: &[usize], reason: String) -> ModelError {
    ModelError::Config { field: what, value: format!("{indices:?}"), reason }
}

impl LlamaModel {
    /// Removes the decoder layers `layers` (0-based indices of the current model); the
    /// layers after them move up. At least one layer must remain.
    pub fn remove_layers(&mut self, layers: &[usize]) -> Result<()> {
        let n = self.blocks.len();
        let removed = index_set(layers, n, |block| ModelError::BlockOutOfRange { block, n_blocks: n })?;
        if removed.is_empty() {
            return Ok(());
        }
        if removed.len() == n {
            return Err(refuse("layers to remove".into(), &removed, format!("the model has only {n} layers; one must remain")));
        }
        let keep = complement(&removed, n);
        let mut widths = self.config.layer_widths();
        for list in [&mut widths.num_attention_heads, &mut widths.num_key_value_heads, &mut widths.intermediate_size] {
            *list = keep.iter().map(|&l| list[l]).collect();
        }
        let mut config = self.config.clone();
        config.set_layer_widths(widths);
        config.validate()?;
        let mut blocks = std::mem::take(&mut self.blocks).into_iter().map(Some).collect::<Vec<_>>();
        self.blocks = keep.iter().map(|&l| blocks[l].take().expect("each layer kept once")).collect();
        self.config = config;
        Ok(())
    }

    /// Removes key/value heads `groups` (0-based, below the layer's num_key_value_heads) of
    /// decoder layer `layer`, each with the query heads of its group: their k_proj and
    /// v_proj rows, q_proj rows and o_proj columns. At least one group must remain.
    pub fn remove_kv_groups(&mut self, layer: usize, groups: &[usize]) -> Result<()> {
        self.check_layer(layer)?;
        let c = &self.config;
        let (kv, rep, hd) = (c.layer_kv_heads(layer), c.layer_n_rep(layer), c.head_dim());
        let what = || format!("layer {layer} key/value groups to remove");
        let removed = index_set(groups, kv, |g| {
            refuse(what(), groups, format!("group {g} is out of range (the layer has {kv} key/value heads)"))
        })?;
        if removed.is_empty() {
            return Ok(());
        }
        if removed.len() == kv {
            return Err(refuse(what(), &removed, format!("the layer has only {kv} key/value heads; one must remain")));
        }
        let keep_groups = complement(&removed, kv);
        // Query heads are grouped: head h reads key/value head h / rep.
        let keep_heads: Vec<usize> = keep_groups.iter().flat_map(|&g| g * rep..(g + 1) * rep).collect();
        self.cut_attention(layer, &keep_heads, &keep_groups, hd)
    }

    /// Removes query heads `heads` (0-based, below the layer's num_attention_heads; head h
    /// belongs to key/value group h / (heads per group)) of decoder layer `layer`: their
    /// q_proj rows and o_proj columns. Every group must lose the same number of heads and
    /// keep at least one (to remove a whole group use
    /// [`remove_kv_groups`](Self::remove_kv_groups)); otherwise this is an error naming the
    /// constraint and nothing changes.
    pub fn remove_query_heads(&mut self, layer: usize, heads: &[usize]) -> Result<()> {
        self.check_layer(layer)?;
        let c = &self.config;
        let (n_heads, kv, rep, hd) = (c.layer_heads(layer), c.layer_kv_heads(layer), c.layer_n_rep(layer), c.head_dim());
        let what = || format!("layer {layer} query heads to remove");
        let removed = index_set(heads, n_heads, |h| {
            refuse(what(), heads, format!("head {h} is out of range (the layer has {n_heads} query heads)"))
        })?;
        if removed.is_empty() {
            return Ok(());
        }
        let mut per_group = vec![0usize; kv];
        for &h in &removed {
            per_group[h / rep] += 1;
        }
        if per_group.iter().any(|&r| r != per_group[0]) {
            return Err(refuse(
                what(),
                &removed,
                format!(
                    "grouped-query attention needs every key/value group to keep the same number of query heads, \
                     but this removes {per_group:?} heads from groups 0..{kv} ({rep} heads each); remove the same \
                     number from every group, or whole groups with remove_kv_groups"
                ),
            ));
        }
        if per_group[0] == rep {
            return Err(refuse(
                what(),
                &removed,
                format!("this removes every query head of the layer; at least one per key/value group must remain ({kv} groups of {rep})"),
            ));
        }
        let keep_heads = complement(&removed, n_heads);
        let all_groups: Vec<usize> = (0..kv).collect();
        self.cut_attention(layer, &keep_heads, &all_groups, hd)
    }

    /// Removes SwiGLU channels `channels` (0-based, below the layer's intermediate size) of
    /// decoder layer `layer`: rows of gate_proj and up_proj, columns of down_proj. At least
    /// one channel must remain.
    pub fn remove_mlp_channels(&mut self, layer: usize, channels: &[usize]) -> Result<()> {
        self.check_layer(layer)?;
        let f = self.config.layer_intermediate_size(layer);
        let what = || format!("layer {layer} mlp channels to remove");
        let removed = index_set(channels, f, |ch| {
            refuse(what(), channels, format!("channel {ch} is out of range (the layer has {f} channels)"))
        })?;
        if removed.is_empty() {
            return Ok(());
        }
        if removed.len() == f {
            return Err(refuse(what(), &removed, format!("the layer has only {f} channels; one must remain")));
        }
        let keep = complement(&removed, f);
        let mut widths = self.config.layer_widths();
        widths.intermediate_size[layer] = keep.len();
        let mut config = self.config.clone();
        config.set_layer_widths(widths);
        config.validate()?;
        let blk = &self.blocks[layer];
        let gate = select(&blk[GateProj], 0, &keep)?; // (f', d_model)
        let up = select(&blk[UpProj], 0, &keep)?; // (f', d_model)
        let down = select(&blk[DownProj], 1, &keep)?; // (d_model, f')
        let blk = &mut self.blocks[layer];
        (blk[GateProj], blk[UpProj], blk[DownProj]) = (gate, up, down);
        self.config = config;
        Ok(())
    }

    /// Parameter counts now, against counts taken before editing (`before`, from
    /// [`param_counts`](Self::param_counts)).
    pub fn param_reduction(&self, before: &ParamCounts) -> ParamReduction {
        ParamReduction { before: before.clone(), after: self.param_counts() }
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        let n_blocks = self.blocks.len();
        if layer >= n_blocks {
            return Err(ModelError::BlockOutOfRange { block: layer, n_blocks });
        }
        Ok(())
    }

    /// Keeps query heads `keep_heads` and key/value heads `keep_groups` of `layer` (every
    /// kept group keeping the same number of kept query heads, in group order).
    fn cut_attention(&mut self, layer: usize, keep_heads: &[usize], keep_groups: &[usize], hd: usize) -> Result<()> {
        let mut widths = self.config.layer_widths();
        widths.num_attention_heads[layer] = keep_heads.len();
        widths.num_key_value_heads[layer] = keep_groups.len();
        let mut config = self.config.clone();
        config.set_layer_widths(widths);
        config.validate()?;
        let (q_rows, kv_rows) = (block_rows(keep_heads, hd), block_rows(keep_groups, hd));
        let blk = &self.blocks[layer];
        let q = select(&blk[QProj], 0, &q_rows)?; // (heads' * hd, d_model)
        let k = select(&blk[KProj], 0, &kv_rows)?; // (kv' * hd, d_model)
        let v = select(&blk[VProj], 0, &kv_rows)?;
        let o = select(&blk[OProj], 1, &q_rows)?; // (d_model, heads' * hd)
        let blk = &mut self.blocks[layer];
        (blk[QProj], blk[KProj], blk[VProj], blk[OProj]) = (q, k, v, o);
        self.config = config;
        Ok(())
    }
}

impl ParamCounts {
    /// Parameters outside the token embedding and the output head (tied or untied): the
    /// decoder blocks and the final norm. This is the count that "excluding embeddings"
    /// in pruning reports refers to.
    pub fn excluding_embeddings(&self) -> usize {
        self.total - self.embedding - self.lm_head
    }
}

/// Parameter counts before and after structural edits; see
/// [`LlamaModel::param_reduction`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamReduction {
    /// Counts before the edits.
    pub before: ParamCounts,
    /// Counts after them.
    pub after: ParamCounts,
}

impl ParamReduction {
    /// Parameters removed, embeddings and head included (tied embeddings counted once).
    pub fn removed(&self) -> usize {
        self.before.total.saturating_sub(self.after.total)
    }

    /// Parameters removed outside the embedding and the output head.
    pub fn removed_excluding_embeddings(&self) -> usize {
        self.before.excluding_embeddings().saturating_sub(self.after.excluding_embeddings())
    }

    /// Fraction of all parameters removed.
    pub fn fraction_removed(&self) -> f64 {
        ratio(self.removed(), self.before.total)
    }

    /// Fraction of the parameters outside the embedding and the output head removed.
    pub fn fraction_removed_excluding_embeddings(&self) -> f64 {
        ratio(self.removed_excluding_embeddings(), self.before.excluding_embeddings())
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}
