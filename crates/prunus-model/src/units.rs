//! The Llama model as structured methods see it: [`prunus_core::StructuredModel`].
//!
//! Units and where their parameters live (Hugging Face names, linear weights (d_out, d_in),
//! head h owning rows h*head_dim..(h+1)*head_dim of q_proj; see [`edit`](crate::edit)):
//!
//! - `layer` l: every tensor of `model.layers.{l}` (both norms and the seven linears).
//! - `head` (key/value head g of layer l, with the n_rep query heads h = g*n_rep..(g+1)*n_rep
//!   that read it): those heads' q_proj rows and o_proj columns, and k_proj and v_proj rows of
//!   g. Removing it is [`LlamaModel::remove_kv_groups`].
//! - `query_head` j of layer l: query head j of every key/value group, h = g*n_rep + j for
//!   each g, so every group keeps the same number of query heads: those heads' q_proj rows and
//!   o_proj columns; the key/value heads stay. Removing it is
//!   [`LlamaModel::remove_query_heads`]. A model with one query head per key/value head in
//!   every layer (no GQA) refuses the kind: there a query head cannot go without its
//!   key/value head (that is `head`).
//! - `channel` c of layer l: row c of gate_proj and up_proj, column c of down_proj.
//!
//! The embeddings and the final norm belong to no unit. Gradients come from
//! [`LlamaModel::loss_and_grads`] (f32), named as [`LlamaModel::named_tensors`].

use candle_core::Tensor;
use prunus_core::structured::{ParamCount, Params, Part, StructuredModel, Unit, UnitKind};

use crate::layout::BlockSlot::{self, DownProj, GateProj, KProj, OProj, QProj, UpProj, VProj};
use crate::llama::LlamaModel;

impl LlamaModel {
    /// Units of `kind` in layer `l`, in index order.
    fn layer_units(&self, kind: UnitKind, l: usize) -> Vec<Unit> {
        let c = &self.config;
        let (d, hd) = (c.hidden_size, c.head_dim());
        let rows = |slot: BlockSlot, start: usize, len: usize| Part { tensor: slot.spec().hf_name(l), dim: 0, start, len };
        let cols = |slot: BlockSlot, start: usize, len: usize| Part { tensor: slot.spec().hf_name(l), dim: 1, start, len };
        let unit = |index: usize, parts: Vec<Part>, params: usize| Unit { kind, layer: l, index, params, parts };
        match kind {
            UnitKind::Layer => {
                let prefix = format!("model.layers.{l}.");
                let tensors: Vec<(String, &Tensor)> =
                    self.named_tensors().into_iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
                let parts = tensors.iter().map(|(n, t)| Part { tensor: n.clone(), dim: 0, start: 0, len: t.dims()[0] }).collect();
                vec![unit(0, parts, tensors.iter().map(|(_, t)| t.elem_count()).sum())]
            }
            UnitKind::Head => {
                let rep = c.layer_n_rep(l);
                (0..c.layer_kv_heads(l))
                    .map(|g| {
                        // Query heads g*rep..(g+1)*rep read key/value head g.
                        let (q0, qn) = (g * rep * hd, rep * hd);
                        let parts = vec![
                            rows(QProj, q0, qn),
                            rows(KProj, g * hd, hd),
                            rows(VProj, g * hd, hd),
                            cols(OProj, q0, qn),
                        ];
                        unit(g, parts, 2 * (qn + hd) * d)
                    })
                    .collect()
            }
            UnitKind::QueryHead => {
                let (kv, rep) = (c.layer_kv_heads(l), c.layer_n_rep(l));
                (0..rep)
                    .map(|j| {
                        let heads = (0..kv).map(|g| g * rep + j);
                        let mut parts: Vec<Part> = heads.clone().map(|h| rows(QProj, h * hd, hd)).collect();
                        parts.extend(heads.map(|h| cols(OProj, h * hd, hd)));
                        unit(j, parts, 2 * kv * hd * d)
                    })
                    .collect()
            }
            UnitKind::Channel => (0..c.layer_intermediate_size(l))
                .map(|ch| {
                    let parts = vec![
                        rows(GateProj, ch, 1),
                        rows(UpProj, ch, 1),
                        cols(DownProj, ch, 1),
                    ];
                    unit(ch, parts, 3 * d)
                })
                .collect(),
        }
    }
}

impl StructuredModel for LlamaModel {
    fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    fn units(&self, kind: UnitKind) -> prunus_core::Result<Vec<Unit>> {
        if kind == UnitKind::QueryHead {
            let c = &self.config;
            if (0..self.blocks.len()).all(|l| c.layer_n_rep(l) == 1) {
                return Err(prunus_core::Error::UnsupportedUnit {
                    unit: kind.to_string(),
                    reason: format!(
                        "every layer has one query head per key/value head ({} and {} in layer 0; no grouped-query \
                         attention), so a query head cannot go without its key/value head; use unit `head`",
                        c.layer_heads(0),
                        c.layer_kv_heads(0)
                    ),
                });
            }
        }
        Ok((0..self.blocks.len()).flat_map(|l| self.layer_units(kind, l)).collect())
    }

    fn param_count(&self) -> ParamCount {
        let p = self.param_counts();
        ParamCount { total: p.total, excluding_embeddings: p.excluding_embeddings() }
    }

    fn weights(&self) -> prunus_core::Result<Params> {
        Ok(Params::new(self.named_tensors().into_iter().map(|(n, t)| (n, t.clone())).collect()))
    }

    fn loss_and_grads(&self, tokens: &Tensor) -> prunus_core::Result<(f64, Params)> {
        let (loss, grads) = LlamaModel::loss_and_grads(self, tokens)?;
        Ok((loss, Params::new(grads.iter().map(|(n, g)| (n.to_string(), g.clone())).collect())))
    }

    fn remove_units(&mut self, units: &[Unit]) -> prunus_core::Result<()> {
        let Some(kind) = units.first().map(|u| u.kind) else { return Ok(()) };
        if let Some(u) = units.iter().find(|u| u.kind != kind) {
            return Err(prunus_core::Error::Invalid(format!("cannot remove {} together with {kind} units", u.describe())));
        }
        if kind == UnitKind::QueryHead {
            self.units(kind)?; // refuses models without GQA
        }
        // Edits are checked one layer at a time, so they run on a copy (tensors are shared,
        // not copied) that replaces the model only when all succeeded.
        let mut edited = self.clone();
        if kind == UnitKind::Layer {
            edited.remove_layers(&units.iter().map(|u| u.layer).collect::<Vec<_>>())?;
        } else {
            let mut layers: Vec<usize> = units.iter().map(|u| u.layer).collect();
            layers.sort_unstable();
            layers.dedup();
            for l in layers {
                let idx: Vec<usize> = units.iter().filter(|u| u.layer == l).map(|u| u.index).collect();
                match kind {
                    UnitKind::Head => edited.remove_kv_groups(l, &idx)?,
                    UnitKind::QueryHead => {
                        let (kv, rep) = (edited.config.layer_kv_heads(l), edited.config.layer_n_rep(l));
                        let heads: Vec<usize> = (0..kv).flat_map(|g| idx.iter().map(move |&j| g * rep + j)).collect();
                        edited.remove_query_heads(l, &heads)?
                    }
                    UnitKind::Channel => edited.remove_mlp_channels(l, &idx)?,
                    UnitKind::Layer => unreachable!("handled above"),
                }
            }
        }
        *self = edited;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LlamaConfig;

    fn model(layers: usize, heads: usize, kv: usize) -> LlamaModel {
        LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, layers, heads, kv, true), 7).unwrap()
    }

    fn numel(m: &LlamaModel, p: &Part) -> usize {
        let w = m.weights().unwrap();
        let t = w.get(&p.tensor).unwrap();
        t.elem_count() / t.dims()[p.dim] * p.len
    }

    #[test]
    fn units_count_their_parts_and_removal_takes_exactly_that() {
        for kind in [UnitKind::Layer, UnitKind::Head, UnitKind::Channel] {
            let m = model(3, 4, 2);
            let units = m.units(kind).unwrap();
            let per_layer = match kind {
                UnitKind::Layer => 1,
                UnitKind::Head => 2,
                _ => 48,
            };
            assert_eq!(units.len(), 3 * per_layer, "{kind}");
            for u in &units {
                assert_eq!(u.parts.iter().map(|p| numel(&m, p)).sum::<usize>(), u.params, "{}", u.describe());
            }
            // Remove the second unit of layer 1 (for layers: layer 1).
            let u = units.iter().find(|u| u.layer == 1 && u.index == if kind == UnitKind::Layer { 0 } else { 1 }).unwrap();
            let mut edited = m.clone();
            edited.remove_units(std::slice::from_ref(u)).unwrap();
            let (a, b) = (m.param_count(), edited.param_count());
            assert_eq!(a.excluding_embeddings - b.excluding_embeddings, u.params, "{kind}");
            assert_eq!(a.total - b.total, u.params, "{kind}");
            assert_eq!(edited.units(kind).unwrap().len(), units.len() - 1, "{kind}");
        }
    }

    #[test]
    fn a_removed_head_is_its_zeroed_output_columns() {
        let m = model(2, 4, 2);
        let unit = m.units(UnitKind::Head).unwrap().into_iter().find(|u| u.layer == 1 && u.index == 0).unwrap();
        let o = unit.parts.iter().find(|p| p.dim == 1).unwrap();
        let w = m.weights().unwrap().get(&o.tensor).unwrap().clone();
        let keep = Tensor::from_vec((0..w.dims()[1]).map(|c| if c >= o.start && c < o.start + o.len { 0f32 } else { 1.0 }).collect::<Vec<_>>(), w.dims()[1], w.device()).unwrap();
        let mut zeroed = m.clone();
        zeroed.set_tensor(&o.tensor, &w.broadcast_mul(&keep).unwrap()).unwrap();
        let mut removed = m.clone();
        removed.remove_units(&[unit]).unwrap();
        let tokens = Tensor::new(&[[1u32, 5, 9, 3, 7, 2]], &candle_core::Device::Cpu).unwrap();
        let diff = (zeroed.forward(&tokens).unwrap() - removed.forward(&tokens).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "{diff}");
    }

    #[test]
    fn query_heads_go_one_per_group_and_are_refused_without_gqa() {
        let mha = model(2, 4, 4);
        let e = mha.units(UnitKind::QueryHead).unwrap_err();
        assert!(matches!(e, prunus_core::Error::UnsupportedUnit { .. }), "{e}");
        assert!(e.to_string().contains("one query head per key/value head (4 and 4 in layer 0"), "{e}");
        // 6 query heads in 2 groups of 3: slot 1 is heads 1 and 4.
        let gqa = LlamaModel::synthetic(LlamaConfig::new(64, 48, 48, 2, 6, 2, true), 7).unwrap();
        let units = gqa.units(UnitKind::QueryHead).unwrap();
        assert_eq!(units.len(), 2 * 3);
        let slot = units[1].clone();
        assert_eq!(slot.parts.iter().filter(|p| p.dim == 0).map(|p| p.start / 8).collect::<Vec<_>>(), [1, 4]);
        for kind in [UnitKind::QueryHead, UnitKind::Head] {
            for u in gqa.units(kind).unwrap() {
                assert_eq!(u.parts.iter().map(|p| numel(&gqa, p)).sum::<usize>(), u.params, "{}", u.describe());
            }
        }
        let mut by_slot = gqa.clone();
        by_slot.remove_units(std::slice::from_ref(&slot)).unwrap();
        let mut by_heads = gqa.clone();
        by_heads.remove_query_heads(0, &[1, 4]).unwrap();
        assert_eq!(by_slot.config(), by_heads.config());
        assert_eq!(by_slot.config().layer_heads(0), 4);
        assert_eq!(gqa.param_count().total - by_slot.param_count().total, slot.params);
        let tokens = Tensor::new(&[[1u32, 5, 9, 3]], &candle_core::Device::Cpu).unwrap();
        let diff = (by_slot.forward(&tokens).unwrap() - by_heads.forward(&tokens).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
        // Removing every slot of a layer is refused and changes nothing.
        let mut all = gqa.clone();
        assert!(all.remove_units(&units[..3]).is_err());
        assert_eq!(all.param_count(), gqa.param_count());
    }

    #[test]
    fn a_failing_removal_changes_nothing() {
        let m = model(3, 4, 2);
        let units = m.units(UnitKind::Channel).unwrap();
        // All of layer 2's channels plus one of layer 0's: layer 0 would be edited first, then
        // layer 2 refuses.
        let mut batch: Vec<Unit> = units.iter().filter(|u| u.layer == 2).cloned().collect();
        batch.push(units[0].clone());
        let mut edited = m.clone();
        assert!(edited.remove_units(&batch).is_err());
        assert_eq!(edited.param_count(), m.param_count());
        assert_eq!(edited.config(), m.config());
        let mixed = [units[0].clone(), m.units(UnitKind::Layer).unwrap()[1].clone()];
        assert!(edited.remove_units(&mixed).unwrap_err().to_string().contains("together with channel units"));
    }

    #[test]
    fn gradients_cover_every_unit_part_with_its_shape() {
        let m = model(2, 4, 2);
        let tokens = Tensor::new(&[[1u32, 5, 9, 3], [7, 2, 8, 8]], &candle_core::Device::Cpu).unwrap();
        let (loss, g) = StructuredModel::loss_and_grads(&m, &tokens).unwrap();
        assert!(loss.is_finite() && loss > 0.0);
        let w = m.weights().unwrap();
        assert_eq!(g.len(), w.len());
        for u in m.units(UnitKind::Layer).unwrap() {
            for p in &u.parts {
                assert_eq!(g.get(&p.tensor).unwrap().dims(), w.get(&p.tensor).unwrap().dims());
            }
        }
    }
}
