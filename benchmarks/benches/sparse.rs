//! Packed sparse linears against the dense path (`gemm`), per format and density, for one
//! token (decoding: a matrix-vector product, memory-bound) and for 512 tokens (evaluation and
//! prefill). One token cycles through enough copies of the matrix (96 MiB of dense weights) that
//! every product reads its weights from memory, as decoding a model larger than the caches
//! does; with one matrix the weights would stay in cache and the bytes saved would not show.
//! What is timed is `PackedLinear::forward`, `y = x W^T`, on the current rayon pool; the dense
//! rows run `Format::Dense` on the same matrix with its zeros (for one token a row loop, for
//! many gemm with its AVX-512, AVX2 or portable kernels, chosen at run time), and for 512
//! tokens `bitmap-kernel` times the sparse kernel at every density (`forward_sparse_on`:
//! `forward` unpacks weights with at least `UNPACK_ABOVE` non-zeros for gemm). Weights uniform in [-1, 1) with a seeded
//! random share of zeros (unstructured), or the two smallest of every four (2:4) and the four
//! smallest of every eight (4:8) zeroed; inputs uniform in [-1, 1). Throughput is in weights of
//! the dense matrix times tokens, so dense and packed rows compare directly.
//!
//! Run: `cargo bench -p prunus-benches --bench sparse` (the kernels print the instruction set
//! they chose); `-- 'sparse_decode/.*576x1536'` for one shape.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prunus_sparse::{Format, PackedLinear};
use prunus_testkit::SplitMix64;

/// (label, rows, cols): SmolLM2-135M's q/o, gate/up and down projections.
const SHAPES: [(&str, usize, usize); 3] = [("q_o", 576, 576), ("gate_up", 1536, 576), ("down", 576, 1536)];
/// Shares of zeros, unstructured.
const SPARSITIES: [f64; 8] = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

fn weights(rows: usize, cols: usize, sparsity: f64, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..rows * cols).map(|_| if f64::from(rng.next_f32()) < sparsity { 0.0 } else { rng.uniform(1.0) }).collect()
}

fn nm(mut w: Vec<f32>, n: usize, m: usize) -> Vec<f32> {
    for g in w.chunks_exact_mut(m) {
        let mut idx: Vec<usize> = (0..m).collect();
        idx.sort_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs()).then(a.cmp(b)));
        idx[..n].iter().for_each(|&i| g[i] = 0.0);
    }
    w
}

fn bench(c: &mut Criterion, group: &str, tokens: usize) {
    eprintln!("{group}: kernels on {}", prunus_sparse::simd::detected().name());
    let mut g = c.benchmark_group(group);
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(1));
    for (i, &(label, rows, cols)) in SHAPES.iter().enumerate() {
        let x = SplitMix64::new(7 + i as u64).vec(tokens * cols, 1.0);
        let mut y = vec![0.0f32; tokens * rows];
        g.throughput(Throughput::Elements((rows * cols * tokens) as u64));
        let mut cases: Vec<(String, Vec<f32>, Vec<Format>)> = SPARSITIES
            .iter()
            .map(|&s| (format!("{:.0}%", s * 100.0), weights(rows, cols, s, 100 + i as u64), vec![Format::Dense, Format::Bitmap, Format::Csr]))
            .collect();
        let dense = weights(rows, cols, 0.0, 200 + i as u64);
        cases.push(("2:4".into(), nm(dense.clone(), 2, 4), vec![Format::Dense, Format::NM { n: 2, m: 4 }, Format::Bitmap]));
        cases.push(("4:8".into(), nm(dense, 4, 8), vec![Format::Dense, Format::NM { n: 4, m: 8 }, Format::Bitmap]));
        let copies = if tokens == 1 { (96 << 20) / (rows * cols * 4) + 1 } else { 1 };
        for (setting, w, formats) in &cases {
            for &format in formats {
                let ps: Vec<PackedLinear> = (0..copies).map(|_| PackedLinear::pack(w, rows, cols, format).unwrap()).collect();
                let id = BenchmarkId::new(format!("{format}/{setting}"), format!("{label} {rows}x{cols}"));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        on_pool(|| {
                            let t = Instant::now();
                            for i in 0..iters as usize {
                                ps[i % copies].forward(black_box(&x), tokens, black_box(&mut y));
                            }
                            t.elapsed()
                        })
                    })
                });
                // Many tokens: the sparse kernel itself at every density too (`forward` unpacks
                // denser weights for gemm), which shows where it breaks even.
                if tokens > 1 && format == Format::Bitmap {
                    let id = BenchmarkId::new(format!("bitmap-kernel/{setting}"), format!("{label} {rows}x{cols}"));
                    let isa = prunus_sparse::simd::detected();
                    g.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            on_pool(|| {
                                let t = Instant::now();
                                for _ in 0..iters {
                                    ps[0].forward_sparse_on(isa, black_box(&x), tokens, black_box(&mut y));
                                }
                                t.elapsed()
                            })
                        })
                    });
                }
            }
        }
    }
    g.finish();
}

/// Runs `f` on a thread of the rayon pool, as the runtime runs its forward: each product's
/// parallel loops are then forks inside the pool, not hand-overs from outside it (which cost a
/// one-token product as much as its weights).
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

fn sparse_decode(c: &mut Criterion) {
    bench(c, "sparse_decode", 1);
}

fn sparse_eval(c: &mut Criterion) {
    bench(c, "sparse_eval", 512);
}

criterion_group!(benches, sparse_decode, sparse_eval);
criterion_main!(benches);
