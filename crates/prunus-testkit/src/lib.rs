//! Test helpers shared by the core and every plugin.
//!
//! [`ToyModel`] is a tiny deterministic residual MLP stack that implements
//! [`PrunableModel`], small enough for unit tests yet with real activations, so the pipeline
//! and the plugins can be exercised without a checkpoint. [`conformance`] is the suite every
//! layer-wise plugin runs ([`structured_conformance`] and [`training_conformance`] those of the
//! other kinds); [`plugins`] builds the example plugin libraries of
//! `examples/plugins` for the tests of run-time loading; [`child`] reruns a test in a child process with another
//! environment. Unit tests only: nothing a user runs uses these.

use candle_core::{Device, Tensor};
use prunus_core::model::CaptureFn;
use prunus_core::{Error, LinearInfo, PrunableModel, Result};

pub mod child;
pub mod conformance;
pub mod plugins;
pub mod structured_conformance;
pub mod training_conformance;

/// The deterministic generator for test data.
pub use prunus_core::rng::SplitMix64;

/// A residual stack of `n_blocks` blocks `h + down(relu(up(h)))`, with a lookup embedding.
#[derive(Debug, Clone)]
pub struct ToyModel {
    /// Width of the residual stream (the embedding and every block's input and output).
    pub d_model: usize,
    /// Width of each block's hidden layer (`up`'s output, `down`'s input).
    pub d_hidden: usize,
    /// Number of token ids the embedding table holds.
    pub vocab: usize,
    embedding: Tensor,
    /// Per block: (up (d_hidden, d_model), down (d_model, d_hidden)).
    blocks: Vec<(Tensor, Tensor)>,
}

impl ToyModel {
    /// A model with widths divisible by 8 (so 2:4 and 4:8 fit), made from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_dims(seed, 2, 16, 32, 24)
    }

    /// A model of `n_blocks` blocks with the given widths, made from `seed`.
    pub fn with_dims(seed: u64, n_blocks: usize, d_model: usize, d_hidden: usize, vocab: usize) -> Self {
        let mut rng = SplitMix64::new(seed);
        let dev = Device::Cpu;
        let t = |v: Vec<f32>, r: usize, c: usize| Tensor::from_vec(v, (r, c), &dev).expect("shape");
        let embedding = t(rng.vec(vocab * d_model, 1.0), vocab, d_model);
        let blocks = (0..n_blocks)
            .map(|_| {
                let up = t(rng.vec(d_hidden * d_model, 0.5), d_hidden, d_model);
                let down = t(rng.vec(d_model * d_hidden, 0.5), d_model, d_hidden);
                (up, down)
            })
            .collect();
        ToyModel { d_model, d_hidden, vocab, embedding, blocks }
    }

    /// Deterministic calibration tokens (n_samples, seq_len).
    pub fn tokens(&self, seed: u64, n_samples: usize, seq_len: usize) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        let ids: Vec<u32> = (0..n_samples * seq_len).map(|_| (rng.next_u64() % self.vocab as u64) as u32).collect();
        Tensor::from_vec(ids, (n_samples, seq_len), &Device::Cpu).expect("shape")
    }

    /// Sets one entry of the embedding table (e.g. to NaN, to test what bad activations do).
    pub fn set_embedding_entry(&mut self, token: usize, feature: usize, value: f32) {
        let mut e = self.embedding.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 embedding");
        e[token * self.d_model + feature] = value;
        self.embedding = Tensor::from_vec(e, (self.vocab, self.d_model), &Device::Cpu).expect("shape");
    }

    /// Every weight of the model, for comparing two runs bit for bit.
    pub fn all_weights(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for (up, down) in &self.blocks {
            for w in [up, down] {
                out.extend(w.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("f32 weight"));
            }
        }
        out
    }

    fn pick(&self, block: usize, name: &str) -> Result<usize> {
        if block >= self.blocks.len() {
            return Err(Error::Invalid(format!("block {block} out of range")));
        }
        ["up", "down"]
            .iter()
            .position(|n| *n == name)
            .ok_or_else(|| Error::Invalid(format!("no linear `{name}` in the toy model")))
    }
}

impl PrunableModel for ToyModel {
    fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn linears(&self, _block: usize) -> Vec<LinearInfo> {
        vec![
            LinearInfo { name: "up".into(), input_site: "in".into(), d_out: self.d_hidden, d_in: self.d_model },
            LinearInfo { name: "down".into(), input_site: "act".into(), d_out: self.d_model, d_in: self.d_hidden },
        ]
    }

    fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (n, s) = tokens.dims2()?;
        Ok(self.embedding.index_select(&tokens.flatten_all()?, 0)?.reshape((n, s, self.d_model))?)
    }

    fn block_forward(&self, block: usize, hidden: &Tensor, mut capture: Option<&mut CaptureFn<'_>>) -> Result<Tensor> {
        let (n, s, d) = hidden.dims3()?;
        let (up, down) = &self.blocks[block];
        let x = hidden.reshape((n * s, d))?;
        if let Some(c) = capture.as_mut() {
            c("in", &x)?;
        }
        let a = x.matmul(&up.t()?)?.relu()?;
        if let Some(c) = capture.as_mut() {
            c("act", &a)?;
        }
        let y = a.matmul(&down.t()?)?;
        Ok((x + y)?.reshape((n, s, d))?)
    }

    fn weight(&self, block: usize, name: &str) -> Result<Tensor> {
        let i = self.pick(block, name)?;
        let (up, down) = &self.blocks[block];
        Ok(if i == 0 { up.clone() } else { down.clone() })
    }

    fn set_weight(&mut self, block: usize, name: &str, weight: Tensor) -> Result<()> {
        let i = self.pick(block, name)?;
        let slot = if i == 0 { &mut self.blocks[block].0 } else { &mut self.blocks[block].1 };
        if slot.dims() != weight.dims() {
            return Err(Error::Shape { tensor: name.into(), expected: slot.dims().to_vec(), got: weight.dims().to_vec() });
        }
        *slot = weight;
        Ok(())
    }
}

/// The first `rows` rows of a linear's zero pattern as text (`x` = pruned, `.` = kept).
pub fn render_mask(model: &ToyModel, block: usize, name: &str, rows: usize) -> String {
    let w = model.weight(block, name).and_then(|t| Ok(t.to_vec2::<f32>()?)).expect("weight");
    w.iter()
        .take(rows)
        .map(|r| r.iter().map(|v| if *v == 0.0 { 'x' } else { '.' }).collect::<String>() + "\n")
        .collect()
}

/// A method's decision for the one linear `layer` at `pattern` (checked as the pipeline's
/// preflight checks it), with its notes: for tests that look at a single decision.
pub fn decide(
    method: &prunus_core::Built<dyn prunus_core::LayerwiseMethod>,
    layer: &prunus_core::LayerView<'_>,
    pattern: &prunus_core::Pattern,
) -> prunus_core::Result<(prunus_core::Decision, prunus_core::Notes)> {
    let target = prunus_core::Target::check(method.name, &**method, pattern, [(layer.name, layer.d_in)])?;
    let mut notes = prunus_core::Notes::new();
    let decision = method.decide(layer, &target, &mut notes)?;
    Ok((decision, notes))
}
