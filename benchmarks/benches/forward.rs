//! Evaluation throughput of the default model next to candle's own matmul at the same shapes.
//!
//! Group `matmul`: one (tokens x d_in) x (d_in x d_out) product per linear shape of
//! SmolLM2-135M and the tied LM head, with tokens = 4 x 512 (one evaluation batch); throughput
//! is reported in FLOP ("elements" = floating-point operations, so criterion's elem/s is FLOP/s).
//! Group `forward`: the model's summed next-token NLL over a batch of 4 x 512 tokens, the
//! work of perplexity evaluation; throughput in tokens. The FLOPs per token of that forward are
//! printed once so that the implied GFLOP/s can be compared with the matmul group.
//!
//! Run: `cargo bench -p prunus-benches --bench forward` (fetches the default model if needed).

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 4;
const SEQ: usize = 512;

fn matmul(c: &mut Criterion) {
    let dev = Device::Cpu;
    let tokens = BATCH * SEQ;
    // (d_out, d_in) of q, k/v, o, gate/up, down and the LM head of SmolLM2-135M.
    let shapes = [("q_o 576x576", 576, 576), ("k_v 192x576", 192, 576), ("gate_up 1536x576", 1536, 576), ("down 576x1536", 576, 1536), ("lm_head 49152x576", 49152, 576)];
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10);
    for (name, d_out, d_in) in shapes {
        let x = Tensor::randn(0f32, 1.0, (tokens, d_in), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (d_out, d_in), &dev).unwrap();
        g.throughput(Throughput::Elements((2 * tokens * d_in * d_out) as u64));
        g.bench_function(name, |b| b.iter(|| x.matmul(&w.t().unwrap()).unwrap()));
    }
    g.finish();
}

fn forward(c: &mut Criterion) {
    let path = prunus_data::assets::default_model_path().expect("default model");
    let model = prunus_model::LlamaModel::load(&path, &Device::Cpu).expect("load");
    let cfg = model.config().clone();
    let ids: Vec<u32> = (0..BATCH * SEQ).map(|i| ((i * 7919) % cfg.vocab_size) as u32).collect();
    let tokens = Tensor::from_vec(ids, (BATCH, SEQ), &Device::Cpu).unwrap().to_dtype(DType::U32).unwrap();
    // Matmul FLOPs per token: 2 * (block linears + LM head) + attention as computed (QK^T and
    // AV over all SEQ keys, the causal mask applied afterwards): 2 * 2 * d_model * SEQ per layer.
    let d = cfg.hidden_size;
    let kv = cfg.n_kv_heads() * cfg.head_dim();
    let per_layer = 2 * (d * d * 2 + 2 * kv * d + 3 * d * cfg.intermediate_size) + 4 * d * SEQ;
    let flops = cfg.num_hidden_layers * per_layer + 2 * d * cfg.vocab_size;
    eprintln!("forward: {:.3} GFLOP per token (matmuls and attention) at seq_len {SEQ}", flops as f64 / 1e9);
    let mut g = c.benchmark_group("forward");
    g.sample_size(10);
    g.throughput(Throughput::Elements((BATCH * SEQ) as u64));
    g.bench_function("smollm2_nll_4x512", |b| b.iter(|| model.nll(&tokens).unwrap()));
    g.finish();
}

criterion_group!(benches, matmul, forward);
criterion_main!(benches);
