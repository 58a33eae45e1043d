//! throwaway probe (not committed)
use prunus_sparse::{Format, PackedLinear, simd};
use std::time::Instant;
fn main() {
    rayon::ThreadPoolBuilder::new().build().unwrap().install(main2);
}
fn main2() {
    if std::env::var("ERR").is_ok() { err_check(); return; }
    let args: Vec<String> = std::env::args().collect();
    let only: Option<f32> = args.get(1).map(|a| a.parse().unwrap());
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (rows, cols, t) = (env("R", 576), env("C", 1536), env("T", 512));
    let reps = env("N", 300);
    let mut s = 12345u64;
    let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64 << 24) as f32 };
    let x: Vec<f32> = (0..t * cols).map(|_| rnd() * 2.0 - 1.0).collect();
    let mut y = vec![0f32; t * rows];
    let ds: Vec<f32> = match only { Some(d) => vec![d], None => vec![1.0f32, 0.5, 0.3, 0.2, 0.1, 0.05] };
    for density in ds {
        let w: Vec<f32> = (0..rows * cols).map(|_| if rnd() < density { rnd() * 2.0 - 1.0 } else { 0.0 }).collect();
        let d = PackedLinear::pack(&w, rows, cols, Format::Dense).unwrap();
        let b = PackedLinear::pack(&w, rows, cols, Format::Bitmap).unwrap();
        let mut best = [f64::MAX; 2];
        for _ in 0..(if only.is_some() { reps } else { 15 }) {
            if only.is_none() { let t0 = Instant::now(); d.forward(&x, t, &mut y); best[0] = best[0].min(t0.elapsed().as_secs_f64()); }
            let t0 = Instant::now(); b.forward_sparse_on(if std::env::var("AVX2").is_ok() { simd::Isa::Avx2 } else { simd::detected() }, &x, t, &mut y); best[1] = best[1].min(t0.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (rows * cols * t) as f64;
        println!("density {density:.2}: dense {:.0} us ({:.0} GF/s), sparse {:.0} us ({:.0} GF/s effective on nnz), x{:.2}", best[0]*1e6, flops/best[0]/1e9, best[1]*1e6, flops*density as f64/best[1]/1e9, best[0]/best[1]);
    }
}
#[allow(dead_code)]
/// err
pub fn err_check() {
    let (rows, cols, t) = (576usize, 1536usize, 512usize);
    let mut s = 99u64;
    let mut rnd = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64 << 24) as f32 };
    let x: Vec<f32> = (0..t * cols).map(|_| rnd() * 2.0 - 1.0).collect();
    let mut w: Vec<f32> = (0..rows * cols).map(|_| (rnd() * 2.0 - 1.0) * 0.05).collect();
    for g in w.chunks_exact_mut(4) { let mut i: Vec<usize> = (0..4).collect(); i.sort_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs())); g[i[0]] = 0.0; g[i[1]] = 0.0; }
    let d = PackedLinear::pack(&w, rows, cols, Format::Dense).unwrap();
    let b = PackedLinear::pack(&w, rows, cols, Format::Bitmap).unwrap();
    let (mut yd, mut ys) = (vec![0f32; t * rows], vec![0f32; t * rows]);
    d.forward(&x, t, &mut yd);
    b.forward_sparse_on(simd::detected(), &x, t, &mut ys);
    let (mut ed, mut es, mut m) = (0f64, 0f64, 0f64);
    for i in 0..t { for r in 0..rows {
        let mut e = 0f64; for c in 0..cols { e += w[r * cols + c] as f64 * x[i * cols + c] as f64; }
        ed = ed.max((yd[i * rows + r] as f64 - e).abs()); es = es.max((ys[i * rows + r] as f64 - e).abs()); m = m.max(e.abs());
    }}
    println!("max |y| {m:.4}: gemm err {ed:.3e}, sparse err {es:.3e}");
}
