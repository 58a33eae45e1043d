//! `y = x W^T` with `W` packed: a matrix-vector product per row for one token, and for many
//! tokens a transposed layout in which every stored weight scales one contiguous row of
//! activations. Output rows are split over the rayon pool in fixed chunks; each output is one
//! sum in storage order, so the thread count never changes a bit.

use rayon::prelude::*;

use crate::format::{PackedLinear, Storage};
use crate::simd;

/// Output rows per parallel task.
const ROWS_PER_TASK: usize = 16;

impl PackedLinear {
    /// `y (t x rows) = x (t x cols) . W^T`, row-major. Panics if the lengths do not match.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        assert_eq!(x.len(), t * self.cols, "input of {} values for {t} x {}", x.len(), self.cols);
        assert_eq!(y.len(), t * self.rows, "output of {} values for {t} x {}", y.len(), self.rows);
        if t == 0 || self.rows == 0 {
            return;
        }
        match &self.storage {
            Storage::Dense(w) => dense(w, x, t, self.rows, self.cols, y),
            _ if t == 1 => {
                y.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(c, ys)| {
                    for (i, yr) in ys.iter_mut().enumerate() {
                        *yr = self.row_dot(c * ROWS_PER_TASK + i, x);
                    }
                });
            }
            _ => {
                let xt = transpose(x, t, self.cols);
                let mut yt = vec![0.0f32; self.rows * t];
                yt.par_chunks_mut(ROWS_PER_TASK * t).enumerate().for_each(|(c, block)| {
                    for (i, acc) in block.chunks_exact_mut(t).enumerate() {
                        self.row_axpys(c * ROWS_PER_TASK + i, &xt, t, acc);
                    }
                });
                y.copy_from_slice(&transpose(&yt, self.rows, t));
            }
        }
    }

    /// Calls `f(column, value)` for every stored weight of row `r`, in storage order (the order
    /// every sum below follows).
    #[inline(always)]
    fn for_each_in_row(&self, r: usize, mut f: impl FnMut(usize, f32)) {
        match &self.storage {
            Storage::Dense(_) => unreachable!("dense weights go through gemm"),
            Storage::NM { m, keep, values, positions, .. } => {
                let groups = self.cols / m;
                let at = r * groups * keep;
                for g in 0..groups {
                    for k in at + g * keep..at + (g + 1) * keep {
                        f(g * m + positions[k] as usize, values[k]);
                    }
                }
            }
            Storage::Bitmap { words, bits, values, starts } => {
                let mut k = starts[r];
                for word in 0..*words {
                    let mut b = bits[r * words + word];
                    while b != 0 {
                        f(word * 64 + b.trailing_zeros() as usize, values[k]);
                        k += 1;
                        b &= b - 1;
                    }
                }
            }
            Storage::Csr { starts, columns, values } => {
                for k in starts[r]..starts[r + 1] {
                    f(columns[k] as usize, values[k]);
                }
            }
        }
    }

    /// Row `r` of `W` times the vector `x`.
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        let mut s = 0.0f32;
        self.for_each_in_row(r, |c, v| s += v * x[c]);
        s
    }

    /// `acc (t) += sum over the stored weights (c, v) of row r of v * xt[c]`, `xt` the inputs
    /// transposed (cols x t).
    fn row_axpys(&self, r: usize, xt: &[f32], t: usize, acc: &mut [f32]) {
        self.for_each_in_row(r, |c, v| simd::axpy(v, &xt[c * t..(c + 1) * t], acc));
    }
}

/// `a` (rows x cols) transposed, row-major.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    for (i, row) in a.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

/// The dense path: `gemm` (its kernels for AVX-512, AVX2 or the baseline, chosen at run time),
/// split over its output only, so the thread count changes no bit.
fn dense(w: &[f32], x: &[f32], t: usize, rows: usize, cols: usize, y: &mut [f32]) {
    if cols == 0 {
        y.fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: y holds t x rows values (row stride rows), x t x cols (row stride cols), w rows x
    // cols read as its transpose (column stride cols); the lengths were checked by the caller
    // and y does not alias x or w (a unique borrow).
    unsafe {
        gemm::gemm(
            t,
            rows,
            cols,
            y.as_mut_ptr(),
            1,
            rows as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            w.as_ptr(),
            cols as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
