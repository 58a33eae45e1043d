//! Packing round-trips bit for bit in every format, refuses what a format cannot hold, and the
//! products equal a float64 reference within f32 rounding, for one token and many, on odd
//! shapes, with the same bits in pools of 1 and 2 threads and on every instruction set.

use prunus_rng::SplitMix64;
use prunus_sparse::simd::{self, Isa};
use prunus_sparse::{Error, Format, PackedLinear};

/// A rows x cols matrix with about `density` of its entries non-zero (uniform in [-1, 1)),
/// a few of the zeros negative zeros.
fn sparse(rng: &mut SplitMix64, rows: usize, cols: usize, density: f64) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            if (rng.next_f32() as f64) < density {
                rng.uniform(1.0)
            } else if i % 7 == 3 {
                -0.0
            } else {
                0.0
            }
        })
        .collect()
}

/// `n` of every `m` entries of `w` zeroed (the ones at the smallest |w|).
fn to_nm(w: &mut [f32], n: usize, m: usize) {
    for g in w.chunks_exact_mut(m) {
        let mut idx: Vec<usize> = (0..m).collect();
        idx.sort_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs()).then(a.cmp(b)));
        idx[..n].iter().for_each(|&i| g[i] = 0.0);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const SHAPES: [(usize, usize); 5] = [(1, 8), (5, 24), (17, 72), (33, 136), (64, 576)];

#[test]
fn every_format_unpacks_to_the_same_bits() {
    let mut rng = SplitMix64::new(1);
    for (rows, cols) in SHAPES {
        for density in [0.0, 0.05, 0.3, 0.5, 1.0] {
            let w = sparse(&mut rng, rows, cols, density);
            for format in [Format::Dense, Format::Bitmap, Format::Csr] {
                let p = PackedLinear::pack(&w, rows, cols, format).unwrap();
                assert_eq!((p.rows(), p.cols(), p.format()), (rows, cols, format));
                assert_eq!(bits(&p.to_dense()), bits(&w), "{format} {rows}x{cols} density {density}");
            }
            for (n, m) in [(2, 4), (4, 8)] {
                let mut nm = w.clone();
                to_nm(&mut nm, n, m);
                let p = PackedLinear::pack(&nm, rows, cols, Format::NM { n, m }).unwrap();
                assert_eq!(bits(&p.to_dense()), bits(&nm), "{n}:{m} {rows}x{cols} density {density}");
                assert_eq!(p.stored_values(), rows * cols / m * (m - n));
            }
        }
    }
}

#[test]
fn sizes_count_values_indices_and_row_starts() {
    let mut rng = SplitMix64::new(2);
    let (rows, cols) = (64, 576);
    let mut w = sparse(&mut rng, rows, cols, 1.0);
    to_nm(&mut w, 2, 4);
    let nnz = w.iter().filter(|v| v.to_bits() != 0).count();
    assert_eq!(nnz, rows * cols / 2);
    let size = |f| PackedLinear::pack(&w, rows, cols, f).unwrap().bytes();
    assert_eq!(size(Format::Dense), rows * cols * 4);
    assert_eq!(size(Format::NM { n: 2, m: 4 }), nnz * 4 + nnz);
    assert_eq!(size(Format::Csr), nnz * 6 + (rows + 1) * 4);
    assert_eq!(size(Format::Bitmap), rows * 9 * 8 + nnz * 4 + (rows + 1) * 4);
}

#[test]
fn what_a_format_cannot_hold_is_refused() {
    let w = vec![1.0f32; 2 * 8];
    assert_eq!(
        PackedLinear::pack(&w, 2, 8, Format::NM { n: 2, m: 4 }).unwrap_err(),
        Error::NotNM { n: 2, m: 4, row: 0, group: 0, nonzeros: 4 }
    );
    let mut late = vec![0.0f32; 2 * 8];
    late[13] = 1.0;
    late[14] = 1.0;
    late[15] = 1.0;
    assert_eq!(PackedLinear::pack(&late, 2, 8, Format::NM { n: 2, m: 4 }).unwrap_err(), Error::NotNM { n: 2, m: 4, row: 1, group: 1, nonzeros: 3 });
    assert!(matches!(PackedLinear::pack(&w, 2, 8, Format::NM { n: 2, m: 3 }), Err(Error::BadNM { .. })));
    assert!(matches!(PackedLinear::pack(&w, 2, 8, Format::NM { n: 4, m: 4 }), Err(Error::BadNM { .. })));
    assert!(matches!(PackedLinear::pack(&w, 3, 8, Format::Csr), Err(Error::Shape { rows: 3, cols: 8, len: 16 })));
    let wide = vec![0.0f32; (1 << 16) + 1];
    assert_eq!(PackedLinear::pack(&wide, 1, (1 << 16) + 1, Format::Csr).unwrap_err(), Error::TooWide { cols: (1 << 16) + 1 });
    assert!(PackedLinear::pack(&wide, 1, (1 << 16) + 1, Format::Bitmap).is_ok());
    let e = PackedLinear::pack(&w, 2, 8, Format::NM { n: 2, m: 4 }).unwrap_err().to_string();
    assert!(e.contains("row 0, group 0: 4 non-zero weights where 2:4 allows 2"), "{e}");
}

/// y = x W^T in f64, and the scale of each output (sum of |w x|) that bounds f32 rounding.
fn reference(w: &[f32], x: &[f32], t: usize, rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut scale) = (vec![0.0; t * rows], vec![0.0; t * rows]);
    for i in 0..t {
        for r in 0..rows {
            for c in 0..cols {
                let p = f64::from(w[r * cols + c]) * f64::from(x[i * cols + c]);
                y[i * rows + r] += p;
                scale[i * rows + r] += p.abs();
            }
        }
    }
    (y, scale)
}

fn forward(p: &PackedLinear, x: &[f32], t: usize, threads: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; t * p.rows()];
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| p.forward(x, t, &mut y));
    y
}

/// The sparse kernel whatever the density (`forward` unpacks denser weights for many tokens).
fn sparse_forward(p: &PackedLinear, isa: Isa, x: &[f32], t: usize, threads: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; t * p.rows()];
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| p.forward_sparse_on(isa, x, t, &mut y));
    y
}

#[test]
fn products_match_the_reference_and_not_the_thread_count() {
    let mut rng = SplitMix64::new(3);
    for (rows, cols) in SHAPES {
        for density in [0.1, 0.5, 0.9] {
            let mut w = sparse(&mut rng, rows, cols, density);
            if cols % 8 == 0 && density < 0.9 {
                to_nm(&mut w, 4, 8);
            }
            let mut formats = vec![Format::Dense, Format::Bitmap, Format::Csr];
            if cols % 8 == 0 && density < 0.9 {
                formats.push(Format::NM { n: 4, m: 8 });
            }
            // 300 tokens: tiles of 128 and a part tile.
            for t in [1, 3, 17, 64, 100, 300] {
                let x = rng.vec(t * cols, 1.0);
                let (want, scale) = reference(&w, &x, t, rows, cols);
                for &format in &formats {
                    let p = PackedLinear::pack(&w, rows, cols, format).unwrap();
                    let y = forward(&p, &x, t, 2);
                    let mut products = vec![("forward", y.clone())];
                    if format != Format::Dense {
                        products.push(("sparse kernel", sparse_forward(&p, simd::detected(), &x, t, 2)));
                    }
                    for (what, y) in &products {
                        for (k, ((got, want), scale)) in y.iter().zip(&want).zip(&scale).enumerate() {
                            let err = (f64::from(*got) - want).abs();
                            // Recursive summation in f32: within cols * eps of the sum of |w x|.
                            assert!(err <= cols as f64 * f64::from(f32::EPSILON) * scale, "{format} {what} {rows}x{cols} t {t} output {k}: {got} vs {want}");
                        }
                    }
                    assert_eq!(bits(&forward(&p, &x, t, 1)), bits(&y), "{format} {rows}x{cols} t {t}: 1 vs 2 threads");
                    // Denser weights with many tokens run the dense kernels on the unpacked
                    // matrix: the very bits of the dense format.
                    if t >= 16 && p.stored_values() as f64 >= prunus_sparse::UNPACK_ABOVE * (rows * cols) as f64 {
                        let d = PackedLinear::pack(&w, rows, cols, Format::Dense).unwrap();
                        assert_eq!(bits(&y), bits(&forward(&d, &x, t, 2)), "{format} {rows}x{cols} t {t}: unpacked vs dense");
                    }
                    for isa in [Isa::Avx2, Isa::Portable] {
                        let mut other = vec![f32::NAN; t * rows];
                        p.forward_on(isa, &x, t, &mut other);
                        assert_eq!(bits(&other), bits(&y), "{format} {rows}x{cols} t {t}: {} vs {}", isa.name(), simd::detected().name());
                        if format != Format::Dense {
                            let (one, sparse) = (sparse_forward(&p, isa, &x, t, 1), &products[1].1);
                            assert_eq!(bits(&one), bits(sparse), "{format} sparse kernel {rows}x{cols} t {t}: {} on 1 thread vs {} on 2", isa.name(), simd::detected().name());
                        }
                    }
                }
            }
        }
    }
}

/// One token through N:M weights that keep half of every group (the permute path on
/// AVX-512): within rounding of the reference and the same bits as the AVX2 and portable
/// loops, for rows whose stored values end in a part chunk of 16 and for whole chunks.
#[test]
fn half_kept_nm_rows_have_the_bits_of_every_path() {
    let mut rng = SplitMix64::new(11);
    for (n, m) in [(1, 2), (2, 4), (4, 8), (8, 16)] {
        for cols in [16, 48, 64, 208, 576] {
            let rows = 9;
            let mut w = sparse(&mut rng, rows, cols, 0.9);
            to_nm(&mut w, n, m);
            let p = PackedLinear::pack(&w, rows, cols, Format::NM { n, m }).unwrap();
            let x = rng.vec(cols, 1.0);
            let (want, scale) = reference(&w, &x, 1, rows, cols);
            let y = forward(&p, &x, 1, 2);
            for (k, ((got, want), scale)) in y.iter().zip(&want).zip(&scale).enumerate() {
                assert!((f64::from(*got) - want).abs() <= cols as f64 * f64::from(f32::EPSILON) * scale, "{n}:{m} x {cols} output {k}: {got} vs {want}");
            }
            for isa in [Isa::Avx2, Isa::Portable] {
                let mut other = vec![f32::NAN; rows];
                p.forward_on(isa, &x, 1, &mut other);
                assert_eq!(bits(&other), bits(&y), "{n}:{m} x {cols}: {} vs {}", isa.name(), simd::detected().name());
            }
        }
    }
}

#[test]
fn empty_products_are_empty() {
    let p = PackedLinear::pack(&[], 0, 4, Format::Csr).unwrap();
    let mut y = vec![];
    p.forward(&[1.0; 8], 2, &mut y);
    let q = PackedLinear::pack(&[1.0, 0.0, 0.0, 2.0], 2, 2, Format::Bitmap).unwrap();
    let mut y = vec![];
    q.forward(&[], 0, &mut y);
    let mut y = vec![0.0; 2];
    q.forward(&[3.0, 5.0], 1, &mut y);
    assert_eq!(y, [3.0, 10.0]);
}

/// gemm on row-major weights read as their transpose, as candle's `x.matmul(&w.t())` calls it.
fn plain_gemm(w: &[f32], x: &[f32], t: usize, rows: usize, cols: usize, threads: usize) -> Vec<f32> {
    let mut y = vec![0f32; t * rows];
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
        // SAFETY: y is t x rows, x t x cols and w rows x cols, all row-major and disjoint.
        unsafe {
            gemm::gemm(t, rows, cols, y.as_mut_ptr(), 1, rows as isize, false, x.as_ptr(), 1, cols as isize, w.as_ptr(), cols as isize, 1, 0.0, 1.0, false, false, false, parallelism);
        }
    });
    y
}

#[test]
fn dense_products_multiplying_a_transposed_copy_keep_gemms_bits() {
    // Many tokens go through the transposed copy of the weights, few through the plain call:
    // both the bits of gemm on the row-major weights, in pools of 1 and 2 threads.
    let mut rng = SplitMix64::new(11);
    for (t, rows, cols) in [(130, 37, 70), (200, 64, 576), (129, 576, 200), (16, 33, 136)] {
        let w = rng.vec(rows * cols, 1.0);
        let x = rng.vec(t * cols, 1.0);
        for threads in [1, 2] {
            let mut y = vec![f32::NAN; t * rows];
            rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| prunus_sparse::dense_forward(&w, rows, cols, &x, t, &mut y));
            assert_eq!(bits(&y), bits(&plain_gemm(&w, &x, t, rows, cols, threads)), "{t} x {rows} x {cols}, {threads} threads");
        }
    }
}
