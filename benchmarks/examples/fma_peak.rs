//! The f32 arithmetic limit of this machine: fused multiply-adds on registers only (no memory
//! traffic), twelve independent chains per thread so that the units never wait on a result, on
//! every thread at once, with each instruction set the CPU has (AVX-512F, AVX2 with FMA, chosen
//! at run time; the portable path multiplies and adds separately). The best of five rounds per
//! instruction set; the peak is the best of them. No real kernel reaches it: it is the ceiling
//! against which benchmarks/speed/pytorch_side_by_side.py states the share of it each side ran at.
//! On the 2-core AMD EPYC (Zen 4) it read the same 234 GFLOP/s with AVX-512 as with AVX2 (Zen 4
//! runs a 512-bit operation as two 256-bit halves).
//!
//! Run: `cargo run --release -p prunus-benches --example fma_peak -- [THREADS] [--json]`
//! (threads: all the CPU's by default; `--json` prints one JSON object instead of lines).

use std::time::Instant;

/// Multiply-adds per chain and round: a third of a second or less per round on a 3.6 GHz core.
const STEPS: usize = 100_000_000;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;

/// Lanes of each instruction set's vectors, and its name.
const PATHS: [(&str, usize); 3] = [("avx512f", 16), ("avx2+fma", 8), ("portable", 1)];

fn available(path: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match path {
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx2+fma" => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            _ => true,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        path == "portable"
    }
}

/// `STEPS` rounds of `a = a * b + c` on every chain; returns a sum of the chains so that the
/// work is not optimized away.
fn chains(path: &str) -> f32 {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (checked by `available` before any thread runs this).
        "avx512f" => unsafe { x86::fma512() },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA (checked as above).
        "avx2+fma" => unsafe { x86::fma256() },
        _ => {
            let (mut a, b, c) = ([1.0f32; CHAINS], 0.999_999f32, 1e-7f32);
            for _ in 0..STEPS {
                for x in a.iter_mut() {
                    *x = *x * b + c;
                }
            }
            a.iter().sum()
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CHAINS, STEPS};

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn fma512() -> f32 {
        let (mut a, b, c) = ([_mm512_set1_ps(1.0); CHAINS], _mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..STEPS {
            for x in a.iter_mut() {
                *x = _mm512_fmadd_ps(*x, b, c);
            }
        }
        a.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256() -> f32 {
        let (mut a, b, c) = ([_mm256_set1_ps(1.0); CHAINS], _mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..STEPS {
            for x in a.iter_mut() {
                *x = _mm256_fmadd_ps(*x, b, c);
            }
        }
        let mut lanes = [0f32; 8];
        a.iter().map(|&x| {
            // SAFETY: lanes holds the 8 floats stored.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), x) };
            lanes.iter().sum::<f32>()
        }).sum()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let threads = args.iter().find_map(|a| a.parse::<usize>().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut results = Vec::new();
    for (path, lanes) in PATHS.into_iter().filter(|(p, _)| available(p)) {
        let mut best = 0f64;
        for _ in 0..5 {
            let t = Instant::now();
            let sum: f32 = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| chains(path))).collect();
                hs.into_iter().map(|h| h.join().expect("a thread of the measurement")).sum()
            });
            std::hint::black_box(sum);
            let flops = 2.0 * (lanes * CHAINS * STEPS * threads) as f64;
            best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
        }
        results.push((path, best));
    }
    let (isa, peak) = results.iter().copied().fold(("none", 0.0), |b, r| if r.1 > b.1 { r } else { b });
    if json {
        let per: Vec<String> = results.iter().map(|(p, g)| format!("\"{p}\": {g:.1}")).collect();
        println!("{{\"threads\": {threads}, \"isa\": \"{isa}\", \"gflops\": {peak:.1}, \"per_isa\": {{{}}}}}", per.join(", "));
    } else {
        for (p, g) in &results {
            println!("{p}: {g:.1} GFLOP/s on {threads} threads (best of 5 rounds)");
        }
        println!("peak: {peak:.1} GFLOP/s ({isa})");
    }
}
