//! The Llama model as a training loop sees it: [`TrainableModel`] over
//! [`grad.rs`](crate::grad)'s loss and gradients.
//!
//! Parameters are [`LlamaModel::named_tensors`] in that order (a tied model has no
//! `lm_head.weight`; its embedding's gradient carries the head's share). The prunable
//! candidates are the seven linears of every decoder block (`BLOCK_TENSORS` rows with a
//! capture site); embeddings, norms and an untied head never are.

use candle_core::{DType, Device, Tensor};
use prunus_core::training::{ParamInfo, TrainableModel};

use crate::error::ModelError;
use crate::layout::BLOCK_TENSORS;
use crate::llama::LlamaModel;

fn core(context: &str) -> impl Fn(ModelError) -> prunus_core::Error + '_ {
    move |e| prunus_core::Error::model(context, e)
}

impl TrainableModel for LlamaModel {
    fn params(&self) -> Vec<ParamInfo> {
        let linears: std::collections::HashSet<String> = (0..self.blocks.len())
            .flat_map(|layer| BLOCK_TENSORS.iter().filter(|s| s.is_linear()).map(move |s| s.hf_name(layer)))
            .collect();
        self.named_tensors()
            .into_iter()
            .map(|(name, t)| ParamInfo { prunable: linears.contains(&name), name, shape: t.dims().to_vec() })
            .collect()
    }

    fn read_params(&self) -> prunus_core::Result<Vec<Vec<f32>>> {
        self.named_tensors()
            .into_iter()
            .map(|(_, t)| Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    fn write_params(&mut self, values: &[Vec<f32>]) -> prunus_core::Result<()> {
        let params = TrainableModel::params(self);
        if values.len() != params.len() {
            return Err(prunus_core::Error::Invalid(format!("{} parameter buffers for a model of {}", values.len(), params.len())));
        }
        for (p, v) in params.iter().zip(values) {
            if v.len() != p.numel() {
                return Err(prunus_core::Error::Shape { tensor: p.name.clone(), expected: p.shape.clone(), got: vec![v.len()] });
            }
        }
        let device = self.device().clone();
        for ((_, t), v) in self.named_tensors_mut().into_iter().zip(values) {
            *t = Tensor::from_slice(v, t.dims(), &device)?;
        }
        Ok(())
    }

    fn loss_and_grads(&self, tokens: &[u32], n: usize, seq_len: usize) -> prunus_core::Result<(f64, Vec<Vec<f32>>)> {
        let ids = Tensor::from_slice(tokens, (n, seq_len), &Device::Cpu)?;
        let (loss, grads) = LlamaModel::loss_and_grads(self, &ids).map_err(core("loss and gradients"))?;
        let grads = grads.iter().map(|(_, g)| Ok(g.flatten_all()?.to_vec1::<f32>()?)).collect::<prunus_core::Result<_>>()?;
        Ok((loss, grads))
    }
}
