//! A decoder block's storage: its nine tensors in [`BLOCK_TENSORS`] order, indexed by
//! [`BlockSlot`], so that the table in [`layout`](crate::layout) is the only list of them.

use std::ops::{Index, IndexMut};

use candle_core::Tensor;

use crate::error::Result;
use crate::layout::{BLOCK_TENSORS, BlockSlot, BlockTensor, linear_slot};

/// One decoder block. Linear weights are (d_out, d_in) f32, `y = x W^T`; q/k rows are in the
/// Hugging Face layout (`rotate_half` RoPE). Head h owns rows h*head_dim..(h+1)*head_dim of
/// q_proj (and columns of o_proj); key/value head g the same rows of k_proj and v_proj.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    /// One tensor per row of [`BLOCK_TENSORS`], in its order.
    tensors: [Tensor; BLOCK_TENSORS.len()],
}

impl Block {
    /// Builds a block by asking `make` for each table row's tensor, in table order; stops at
    /// the first error.
    pub(crate) fn try_from_table(mut make: impl FnMut(BlockTensor) -> Result<Tensor>) -> Result<Self> {
        let mut tensors = Vec::with_capacity(BLOCK_TENSORS.len());
        for spec in BLOCK_TENSORS {
            tensors.push(make(spec)?);
        }
        let tensors = tensors.try_into().unwrap_or_else(|_| unreachable!("one tensor per table row"));
        Ok(Block { tensors })
    }

    /// A block holding no weights (every tensor empty): the stand-in for a block that a
    /// streaming model has not read yet or has written out ([`stream`](crate::stream)).
    pub(crate) fn placeholder() -> Result<Self> {
        Self::try_from_table(|_| Ok(Tensor::zeros(0, candle_core::DType::F32, &candle_core::Device::Cpu)?))
    }

    /// Whether this is a [`placeholder`](Self::placeholder).
    pub(crate) fn is_placeholder(&self) -> bool {
        self.tensors.iter().all(|t| t.elem_count() == 0)
    }

    /// The prunable linear with short name `name` (`q_proj`, ...).
    pub(crate) fn linear(&self, name: &str) -> Option<&Tensor> {
        linear_slot(name).map(|s| &self[s])
    }

    /// [`linear`](Self::linear), mutable.
    pub(crate) fn linear_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        linear_slot(name).map(|s| &mut self[s])
    }

    /// (table row, tensor) pairs, in table order.
    pub(crate) fn named(&self) -> impl Iterator<Item = (BlockTensor, &Tensor)> {
        BLOCK_TENSORS.into_iter().zip(&self.tensors)
    }

    /// [`named`](Self::named), mutable.
    pub(crate) fn named_mut(&mut self) -> impl Iterator<Item = (BlockTensor, &mut Tensor)> {
        BLOCK_TENSORS.into_iter().zip(&mut self.tensors)
    }
}

impl Index<BlockSlot> for Block {
    type Output = Tensor;

    fn index(&self, slot: BlockSlot) -> &Tensor {
        &self.tensors[slot as usize]
    }
}

impl IndexMut<BlockSlot> for Block {
    fn index_mut(&mut self, slot: BlockSlot) -> &mut Tensor {
        &mut self.tensors[slot as usize]
    }
}
