//! One-token products (decoding's matrix-vector products) on SmolLM2-135M's shapes, each case
//! timed in rounds that alternate between the cases, and the median and best of the rounds
//! printed: dense rows, 2:4 weights packed as N:M and as a bitmap, and 50% and 70% of the
//! weights zero at random as bitmaps, plus the dense output head. By default every product
//! reads its weights from memory (it cycles through 96 MiB of copies, as decoding a model
//! larger than the caches does); `cache` keeps one copy, in cache. `avx2` forces the AVX2
//! kernels (`forward_on(Isa::Avx2)`) where the CPU has more. `eval` times 512-token products
//! (evaluation's shapes) instead: dense (gemm), and 50% and 70% bitmaps on the sparse kernel
//! (`forward_sparse_on`), on q/o, gate/up and down.
//!
//! Built at two commits and run alternately, it is how the one-token kernel changes in
//! results/sparse-speed/README.md were compared; criterion's `sparse_decode` bench times the
//! same products one case after another, which a shared machine's drifting memory bandwidth
//! blurs more.
//!
//! Run: `cargo run --release -p prunus-benches --example decode_rows -- [cache] [avx2] [eval] [ROUNDS]`
//! (40 rounds by default; about ten seconds, a minute with `eval`).

use std::time::Instant;

use prunus_sparse::simd::{self, Isa};
use prunus_sparse::{Format, PackedLinear};
use prunus_testkit::SplitMix64;

/// (label, rows, cols): q/o, down, and the tied output head.
const SHAPES: [(&str, usize, usize); 3] = [("q_o", 576, 576), ("down", 576, 1536), ("head", 49152, 576)];

/// With `eval`: q/o, gate/up and down.
const EVAL_SHAPES: [(&str, usize, usize); 3] = [("q_o", 576, 576), ("gate_up", 1536, 576), ("down", 576, 1536)];

/// Tokens per product with `eval`.
const EVAL_TOKENS: usize = 512;

fn weights(rows: usize, cols: usize, sparsity: f64, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..rows * cols).map(|_| if f64::from(rng.next_f32()) < sparsity { 0.0 } else { rng.uniform(1.0) }).collect()
}

/// The two smallest of every four zeroed.
fn two_of_four(mut w: Vec<f32>) -> Vec<f32> {
    for g in w.chunks_exact_mut(4) {
        let mut idx = [0, 1, 2, 3];
        idx.sort_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs()).then(a.cmp(b)));
        idx[..2].iter().for_each(|&i| g[i] = 0.0);
    }
    w
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let eval = args.iter().any(|a| a == "eval");
    // Many-token products read each weight once per 16-128 tokens: one copy, in cache.
    let in_cache = eval || args.iter().any(|a| a == "cache");
    let isa = if args.iter().any(|a| a == "avx2") && Isa::Avx2.available() { Isa::Avx2 } else { simd::detected() };
    let rounds: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(40);
    let (tokens, shapes) = if eval { (EVAL_TOKENS, &EVAL_SHAPES[..]) } else { (1, &SHAPES[..]) };
    let weights_from = if in_cache { "in cache" } else { "from memory" };
    println!("{} ({} threads), kernels {}, {tokens} token(s), weights {weights_from}, {rounds} rounds", simd::cpu_name(), rayon::current_num_threads(), isa.name());
    for &(label, rows, cols) in shapes {
        let copies = if in_cache { 1 } else { (96 << 20) / (rows * cols * 4) + 1 };
        let pack = |w: &[f32], f: Format| (0..copies).map(|_| PackedLinear::pack(w, rows, cols, f).unwrap()).collect::<Vec<_>>();
        let mut cases = vec![("dense", pack(&weights(rows, cols, 0.0, 200), Format::Dense))];
        if eval {
            cases.push(("50% bitmap", pack(&weights(rows, cols, 0.5, 100), Format::Bitmap)));
            cases.push(("70% bitmap", pack(&weights(rows, cols, 0.7, 100), Format::Bitmap)));
        } else if label != "head" {
            let w24 = two_of_four(weights(rows, cols, 0.0, 300));
            cases.push(("2:4 as N:M", pack(&w24, Format::NM { n: 2, m: 4 })));
            cases.push(("2:4 as bitmap", pack(&w24, Format::Bitmap)));
            cases.push(("50% bitmap", pack(&weights(rows, cols, 0.5, 100), Format::Bitmap)));
            cases.push(("70% bitmap", pack(&weights(rows, cols, 0.7, 100), Format::Bitmap)));
        }
        let x = SplitMix64::new(7).vec(tokens * cols, 1.0);
        let mut y = vec![0.0f32; tokens * rows];
        let reps = if eval { 4 } else if label == "head" { 5 } else { 200 };
        let mut times = vec![Vec::new(); cases.len()];
        // On a pool thread, as the runtime runs its forward (forks inside the pool).
        rayon::scope(|_| {
            for _ in 0..rounds {
                for (case, (_, ps)) in cases.iter().enumerate() {
                    let start = Instant::now();
                    for i in 0..reps {
                        let p = &ps[i % copies];
                        // Many tokens: the sparse kernel whatever the density (dense is gemm).
                        if tokens > 1 && p.format() != Format::Dense { p.forward_sparse_on(isa, &x, tokens, &mut y) } else { p.forward_on(isa, &x, tokens, &mut y) }
                    }
                    times[case].push(start.elapsed().as_secs_f64() / reps as f64 * 1e6);
                }
            }
        });
        for ((name, _), t) in cases.iter().zip(&mut times) {
            t.sort_by(f64::total_cmp);
            println!("{label} {rows}x{cols} {name}: median {:.1} us, best {:.1} us", t[t.len() / 2], t[0]);
        }
    }
}
