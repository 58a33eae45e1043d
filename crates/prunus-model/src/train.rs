//! The Llama model as a training loop sees it: [`TrainableModel`] over the hand-written
//! backward of [`backprop`](crate::backprop) (checked against [`grad.rs`](crate::grad)'s
//! autograd path).
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

    /// The hand-written backward ([`backprop`](crate::backprop)); the autograd path
    /// ([`LlamaModel::loss_and_grads`]) gives the same gradients to f32 rounding, slower.
    fn loss_and_grads(&self, tokens: &[u32], n: usize, seq_len: usize) -> prunus_core::Result<(f64, Vec<Vec<f32>>)> {
        self.manual_loss_and_grads(tokens, n, seq_len).map_err(core("loss and gradients"))
    }

    /// Adds into the accumulated buffers directly (no buffers per micro-batch).
    fn add_loss_and_grads(&self, tokens: &[u32], n: usize, seq_len: usize, acc: &mut Vec<Vec<f32>>) -> prunus_core::Result<f64> {
        if acc.is_empty() {
            let (loss, grads) = self.manual_loss_and_grads(tokens, n, seq_len).map_err(core("loss and gradients"))?;
            *acc = grads;
            return Ok(loss);
        }
        self.manual_add_loss_and_grads(tokens, n, seq_len, acc).map_err(core("loss and gradients"))
    }
}

impl LlamaModel {
    /// A model to train from scratch (on the CPU), GPT-2's initialisation: every linear and
    /// the embedding drawn from N(0, `std`^2), the residual outputs (`o_proj`, `down_proj`)
    /// from N(0, (`std` / sqrt(2 x layers))^2), norm weights 1. Normals come from `seed`'s
    /// SplitMix64 stream by Box-Muller in f64, tensor after tensor in
    /// [`LlamaConfig::tensor_shapes`](crate::LlamaConfig::tensor_shapes) order, so a seed gives
    /// the same weights on every machine.
    pub fn init(config: crate::LlamaConfig, seed: u64, std: f32) -> crate::Result<Self> {
        config.validate()?;
        let mut rng = prunus_core::rng::SplitMix64::new(seed);
        let mut normal = move || {
            // u1 in (0, 1], u2 in [0, 1): 53-bit uniforms.
            let u1 = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        };
        let residual = f64::from(std) / (2.0 * config.num_hidden_layers as f64).sqrt();
        let mut tensors = std::collections::HashMap::new();
        for (name, shape) in config.tensor_shapes() {
            let numel: usize = shape.iter().product();
            let data: Vec<f32> = if shape.len() == 1 {
                vec![1.0; numel]
            } else {
                let s = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") { residual } else { f64::from(std) };
                (0..numel).map(|_| (normal() * s) as f32).collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Self::from_tensors(config, tensors, &Device::Cpu, std::path::Path::new("<initialised>"))
    }
}

#[cfg(test)]
mod init_tests {
    use super::*;

    #[test]
    fn init_is_seeded_normal_with_scaled_residuals() {
        let mut c = crate::LlamaConfig::new(64, 64, 128, 2, 4, 4, true);
        c.max_position_embeddings = 64;
        let a = LlamaModel::init(c.clone(), 7, 0.02).unwrap();
        let b = LlamaModel::init(c.clone(), 7, 0.02).unwrap();
        let other = LlamaModel::init(c, 8, 0.02).unwrap();
        let (pa, pb, po) = (a.read_params().unwrap(), b.read_params().unwrap(), other.read_params().unwrap());
        assert_eq!(pa, pb);
        assert_ne!(pa, po);
        let names: Vec<String> = a.named_tensors().into_iter().map(|(n, _)| n).collect();
        let sd = |v: &[f32]| (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        for (n, v) in names.iter().zip(&pa) {
            if n.ends_with("norm.weight") {
                assert!(v.iter().all(|x| *x == 1.0), "{n}");
            } else if n.ends_with("o_proj.weight") || n.ends_with("down_proj.weight") {
                assert!((sd(v) - 0.01).abs() < 0.001, "{n}: {}", sd(v));
            } else {
                assert!((sd(v) - 0.02).abs() < 0.002, "{n}: {}", sd(v));
            }
        }
    }
}
