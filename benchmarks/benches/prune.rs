//! Per-linear pruning cost of the four layer-wise methods, and SparseGPT's factorization alone.
//!
//! What is timed per matrix is the pipeline's own per-linear step,
//! `prunus_core::pipeline::prune_linear`: the method's decision, then the mask built from its
//! scores (or taken from it) and applied to a copy of the weight (SparseGPT's rewritten weight
//! replaces the copy). Inputs are synthetic and deterministic (SplitMix64): weights uniform in
//! [-0.05, 0.05), statistics of a random X with n_tokens = 2 * d_in rows over n_samples = 8
//! (per-feature sum of x^2 and the Gram matrix X^T X, accumulated by `Stats::add`), built once
//! outside the timed closures. Throughput is in weights (elements = d_out * d_in).
//!
//! Group `prune_smollm2`: the linear shapes of SmolLM2-135M. Group `prune_llama7b`: those of
//! LLaMA-7B; it runs only with `PRUNUS_BENCH_LLAMA7B=1` (SparseGPT at d_in = 11008 takes tens
//! of seconds per iteration). Group `sparsegpt_hessian_inverse`: `inverse_cholesky_upper`
//! (Cholesky of H + damping, inverse, upper Cholesky of the inverse, in f64 with faer, then the
//! cast to f32) for d_in 576, 1536, 4096, and 11008 with the switch.
//!
//! Run: `cargo bench -p prunus-benches --bench prune`, or
//! `PRUNUS_BENCH_LLAMA7B=1 cargo bench -p prunus-benches --bench prune -- 'llama7b/.*unstructured'`.

use std::hint::black_box;
use std::time::Duration;

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prunus_core::pipeline::prune_linear;
use prunus_core::{Built, LayerView, LayerwiseMethod, Pattern, StatKind, Stats, Target};
use prunus_testkit::SplitMix64;
use {prunus_magnitude as _, prunus_sparsegpt as _, prunus_swiftprune as _, prunus_wanda as _};

const METHODS: [&str; 4] = ["magnitude", "wanda", "sparsegpt", "swiftprune"];
const N_SAMPLES: usize = 8;
const SMOLLM2: [(&str, usize, usize); 4] = [("q_o", 576, 576), ("k_v", 192, 576), ("gate_up", 1536, 576), ("down", 576, 1536)];
const LLAMA7B: [(&str, usize, usize); 3] = [("qkvo", 4096, 4096), ("gate_up", 11008, 4096), ("down", 4096, 11008)];

fn llama7b_enabled() -> bool {
    std::env::var("PRUNUS_BENCH_LLAMA7B").is_ok_and(|v| v == "1")
}

fn patterns() -> [Pattern; 2] {
    [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }]
}

fn methods() -> Vec<Built<dyn LayerwiseMethod>> {
    METHODS
        .iter()
        .map(|name| prunus_core::registry::find(name).unwrap().build_layerwise(&serde_json::Value::Null).unwrap())
        .collect()
}

/// Statistics of a random (2 * d_in, d_in) input, uniform in [-1, 1), over `N_SAMPLES`
/// sequences; the Gram matrix only if `hessian` (candle's matmul, inside `Stats::add`).
fn stats(d_in: usize, hessian: bool, seed: u64) -> Stats {
    let n_tokens = 2 * d_in;
    let x = SplitMix64::new(seed).vec(n_tokens * d_in, 1.0);
    let x = Tensor::from_vec(x, (n_tokens, d_in), &Device::Cpu).unwrap();
    let mut s = Stats::new(if hessian { StatKind::Hessian } else { StatKind::SqNorm }, d_in);
    s.add(&x, N_SAMPLES).unwrap();
    s
}

/// What the pipeline does for one linear (its public per-linear step); returns the pruned
/// (and possibly updated) weight.
fn prune_one(method: &Built<dyn LayerwiseMethod>, target: &Target, view: &LayerView<'_>) -> Vec<f32> {
    prune_linear(method, target, view).unwrap().weight
}

fn bench_shapes(c: &mut Criterion, group_name: &str, shapes: &[(&str, usize, usize)], warm_up: Duration, measure: Duration) {
    let methods = methods();
    let mut g = c.benchmark_group(group_name);
    g.sample_size(10).warm_up_time(warm_up).measurement_time(measure);
    for (i, &(label, d_out, d_in)) in shapes.iter().enumerate() {
        let weight = SplitMix64::new(1000 + i as u64).vec(d_out * d_in, 0.05);
        let sq_stats = stats(d_in, false, 2000 + i as u64);
        let h_stats = stats(d_in, true, 2000 + i as u64);
        g.throughput(Throughput::Elements((d_out * d_in) as u64));
        for method in &methods {
            let st = if method.stats() >= StatKind::Hessian { &h_stats } else { &sq_stats };
            let view = LayerView { block: 0, name: label, d_out, d_in, weight: &weight, stats: st };
            for pattern in patterns() {
                let id = BenchmarkId::new(format!("{}/{}", method.name, pattern.label()), format!("{label} {d_out}x{d_in}"));
                let target = Target::check(method.name, &**method, &pattern, [(label, d_in)]).unwrap();
                g.bench_function(id, |b| b.iter(|| black_box(prune_one(method, &target, &view))));
            }
        }
    }
    g.finish();
}

fn prune_smollm2(c: &mut Criterion) {
    bench_shapes(c, "prune_smollm2", &SMOLLM2, Duration::from_secs(1), Duration::from_secs(2));
}

fn prune_llama7b(c: &mut Criterion) {
    if !llama7b_enabled() {
        eprintln!("prune_llama7b: skipped (set PRUNUS_BENCH_LLAMA7B=1 to run the LLaMA-7B shapes)");
        return;
    }
    bench_shapes(c, "prune_llama7b", &LLAMA7B, Duration::from_secs(1), Duration::from_secs(1));
}

fn sparsegpt_hessian_inverse(c: &mut Criterion) {
    let mut dims = vec![576, 1536, 4096];
    if llama7b_enabled() {
        dims.push(11008);
    } else {
        eprintln!("sparsegpt_hessian_inverse: d_in = 11008 skipped (set PRUNUS_BENCH_LLAMA7B=1)");
    }
    let config = prunus_sparsegpt::Config::default();
    let mut g = c.benchmark_group("sparsegpt_hessian_inverse");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for d in dims {
        let st = stats(d, true, 3000 + d as u64);
        let weight = vec![0f32; d];
        let view = LayerView { block: 0, name: "h", d_out: 1, d_in: d, weight: &weight, stats: &st };
        let (h, _dead) = prunus_sparsegpt::hessian(&view).unwrap();
        // Elements: d^3 / 3 is the Cholesky's multiply-adds; here simply d (columns).
        g.throughput(Throughput::Elements(d as u64));
        g.bench_function(BenchmarkId::from_parameter(d), |b| {
            b.iter(|| black_box(prunus_sparsegpt::inverse_cholesky_upper(&h, d, &config, "h").unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, prune_smollm2, prune_llama7b, sparsegpt_hessian_inverse);
criterion_main!(benches);
