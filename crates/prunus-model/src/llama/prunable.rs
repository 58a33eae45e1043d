//! The [`PrunableModel`] view the layer-wise pruning pipeline drives: blocks one at a time,
//! each linear's input handed to the capture callback at its site, weights read and replaced
//! by block and short linear name.

use candle_core::{DType, Tensor};
use prunus_core::{LinearInfo, PrunableModel};

use super::model::LlamaModel;
use crate::error::ModelError;
use crate::layout::LINEARS;

impl LlamaModel {
    /// The pass context for `hidden` (n_samples, seq_len, d_model) entering block `block`,
    /// which must exist.
    fn block_ctx(&self, block: usize, hidden: &Tensor) -> prunus_core::Result<super::forward::PassCtx> {
        self.block(block)?;
        let seq = hidden
            .dims3()
            .map_err(|_| ModelError::ShapeMismatch {
                tensor: format!("hidden states entering block {block}"),
                expected: vec![0, 0, self.config.hidden_size],
                found: hidden.dims().to_vec(),
            })?
            .1;
        Ok(self.pass_ctx(seq)?)
    }
}

impl PrunableModel for LlamaModel {
    fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn linears(&self, block: usize) -> Vec<LinearInfo> {
        let Some(b) = self.blocks.get(block) else { return Vec::new() };
        LINEARS
            .iter()
            .map(|(name, site)| {
                let w = b.linear(name).expect("every block has every linear");
                let (d_out, d_in) = w.dims2().unwrap_or((0, 0));
                LinearInfo { name: name.to_string(), input_site: site.to_string(), d_out, d_in }
            })
            .collect()
    }

    fn embed(&self, tokens: &Tensor) -> prunus_core::Result<Tensor> {
        Ok(LlamaModel::embed(self, tokens)?)
    }

    fn block_forward(
        &self,
        block: usize,
        hidden: &Tensor,
        capture: Option<&mut prunus_core::model::CaptureFn<'_>>,
    ) -> prunus_core::Result<Tensor> {
        let ctx = self.block_ctx(block, hidden)?;
        match capture {
            Some(f) => self.run_block::<prunus_core::Error>(block, hidden, &ctx, Some(f)),
            None => self.run_block::<prunus_core::Error>(block, hidden, &ctx, None),
        }
    }

    fn block_capture(&self, block: usize, hidden: &Tensor, capture: &mut prunus_core::model::CaptureFn<'_>) -> prunus_core::Result<()> {
        let ctx = self.block_ctx(block, hidden)?;
        self.block_pass::<prunus_core::Error>(block, hidden, &ctx, Some(capture), false).map(|_| ())
    }

    fn weight(&self, block: usize, name: &str) -> prunus_core::Result<Tensor> {
        let b = self.block(block)?;
        Ok(b.linear(name).ok_or_else(|| ModelError::UnknownLinear { name: name.to_string() })?.clone())
    }

    fn set_weight(&mut self, block: usize, name: &str, weight: Tensor) -> prunus_core::Result<()> {
        let n_blocks = self.blocks.len();
        let device = self.device.clone();
        let b = self.blocks.get_mut(block).ok_or(ModelError::BlockOutOfRange { block, n_blocks })?;
        let slot = b.linear_mut(name).ok_or_else(|| ModelError::UnknownLinear { name: name.to_string() })?;
        if weight.dims() != slot.dims() {
            return Err(prunus_core::Error::Shape {
                tensor: format!("block {block} {name}"),
                expected: slot.dims().to_vec(),
                got: weight.dims().to_vec(),
            });
        }
        *slot = weight.to_dtype(DType::F32)?.to_device(&device)?.contiguous()?;
        Ok(())
    }
}
