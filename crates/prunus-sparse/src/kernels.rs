//! `y = x W^T` with `W` packed.
//!
//! One token (decoding) is a matrix-vector product, bound by the bytes of `W` read: each row
//! is summed in four accumulators of 16 lanes, stored weight i going to lane i mod 16 of
//! accumulator (i / 16) mod 4 (for a bitmap, column j of 16-column chunk c, expanded in
//! registers, to lane j of accumulator c mod 4), then reduced in a fixed order.
//!
//! Many tokens (evaluation, prefill): weights with at least [`UNPACK_ABOVE`] non-zeros are
//! unpacked and multiplied by gemm (the dense format's bits); sparser ones go through a tiled
//! layout: the inputs transposed into tiles of 16, 64 or 128 tokens (a whole tile of one input
//! column contiguous) and, for each output row, the row's stored weights each scaling one tile
//! column into accumulators held in registers; each output is one chain of fused multiply-adds
//! in storage order, which the tile size does not change.
//!
//! Output rows are split over the rayon pool and each is computed alone, so the thread count
//! never changes a bit, and every instruction set gives the same bits ([`crate::simd`]).

use rayon::prelude::*;

use crate::format::{PackedLinear, Storage};
use crate::simd::{self, CHAINS, Isa, LANES, on_isa};

/// Output rows per parallel task, at least (one token).
const ROWS_PER_TASK: usize = 16;

/// Output rows per parallel task with many tokens: the rows of a task share each block of
/// inputs while it is in cache, and the sparser the rows the more of them it takes to use it.
const TILE_ROWS: usize = 64;

/// Inputs of a tile per block of columns in the many-token kernel (16 KiB): they stay in the
/// first-level cache while a chunk of rows passes over them.
const BLOCK_FLOATS: usize = 4096;

impl PackedLinear {
    /// `y (t x rows) = x (t x cols) . W^T`, row-major, on the best instruction set this CPU
    /// has. Panics if the lengths do not match.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        self.forward_on(simd::detected(), x, t, y);
    }

    /// [`forward`](Self::forward) on the instruction set `isa` (the portable path if the CPU
    /// lacks it): the same bits on every one, which the tests check.
    pub fn forward_on(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        assert_eq!(x.len(), t * self.cols, "input of {} values for {t} x {}", x.len(), self.cols);
        assert_eq!(y.len(), t * self.rows, "output of {} values for {t} x {}", y.len(), self.rows);
        if t == 0 || self.rows == 0 {
            return;
        }
        let isa = isa.or_portable();
        match &self.storage {
            Storage::Dense(w) => dense(w, self.cols, x, t, self.rows, self.cols, y),
            _ if t == 1 => {
                let mut xp = x.to_vec();
                xp.resize(self.cols.div_ceil(LANES) * LANES, 0.0);
                // Each output is computed alone, so the split changes no bit: a few tasks per thread.
                let per_task = self.rows.div_ceil(4 * rayon::current_num_threads()).max(ROWS_PER_TASK);
                y.par_chunks_mut(per_task).enumerate().for_each(|(c, ys)| {
                    let r0 = c * per_task;
                    if let Storage::Bitmap { chunks, bits, values, starts } = &self.storage {
                        for (i, yr) in ys.iter_mut().enumerate() {
                            let r = r0 + i;
                            *yr = simd::bitmap_row(isa, &bits[r * chunks..(r + 1) * chunks], &values[starts[r]..], &xp);
                        }
                    } else {
                        on_isa!(isa, rows_dot, (p: &PackedLinear = self, r0: usize = r0, x: &[f32] = &xp, ys: &mut [f32] = ys))
                    }
                });
            }
            _ if self.stored_values() as f64 >= UNPACK_ABOVE * (self.rows * self.cols) as f64 && t >= 16 => self.unpacked(isa, x, t, y),
            _ if t < 64 => self.tiled::<16>(isa, x, t, y),
            _ if isa == Isa::Avx512 => self.tiled::<128>(isa, x, t, y),
            _ => self.tiled::<64>(isa, x, t, y),
        }
    }

    /// Many tokens, denser weights: the rows unpacked (in parallel, into a buffer kept between
    /// calls) and multiplied by the dense kernels, which give the same bits as on the matrix
    /// they were packed from.
    fn unpacked(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let ld = cols.div_ceil(LANES) * LANES;
        let mut w = UNPACKED.with(|s| s.take());
        w.resize(rows * ld, 0.0);
        w.par_chunks_mut(ld * ROWS_PER_TASK).enumerate().for_each(|(c, block)| {
            for (i, row) in block.chunks_exact_mut(ld).enumerate() {
                let r = c * ROWS_PER_TASK + i;
                match &self.storage {
                    Storage::Bitmap { chunks, bits, values, starts } => simd::bitmap_unpack(isa, &bits[r * chunks..(r + 1) * chunks], &values[starts[r]..], row),
                    _ => {
                        row.fill(0.0);
                        self.walk_to(r, &mut self.cursor(r), cols, |c, v| row[c] = v);
                    }
                }
            }
        });
        dense(&w, ld, x, t, rows, cols, y);
        UNPACKED.with(|s| s.set(w));
    }

    /// Many tokens: inputs in tiles of `T` tokens, every row against every tile.
    fn tiled<const T: usize>(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let tiles = t.div_ceil(T);
        // xt[tile][col][token in tile], zero-padded past t; built a block of columns at a time
        // so the lines written stay in cache.
        let mut xt = SCRATCH.with(|s| s.take());
        xt.clear();
        xt.resize(tiles * cols * stride::<T>(), 0.0);
        xt.par_chunks_mut((cols * stride::<T>()).max(1)).enumerate().for_each(|(tile, xs)| {
            for c0 in (0..cols).step_by(64) {
                let c1 = (c0 + 64).min(cols);
                for lane in 0..T.min(t - tile * T) {
                    let row = &x[(tile * T + lane) * cols..][..cols];
                    for c in c0..c1 {
                        xs[c * stride::<T>() + lane] = row[c];
                    }
                }
            }
        });
        let out = Out { y: y.as_mut_ptr(), t, rows };
        (0..rows.div_ceil(TILE_ROWS)).into_par_iter().for_each(|c| {
            let r0 = c * TILE_ROWS;
            match T {
                128 => on_isa!(isa, rows_by_tiles::<128>, (p: &PackedLinear = self, r0: usize = r0, xt: &[f32] = &xt, out: Out = out)),
                64 => on_isa!(isa, rows_by_tiles::<64>, (p: &PackedLinear = self, r0: usize = r0, xt: &[f32] = &xt, out: Out = out)),
                16 => on_isa!(isa, rows_by_tiles::<16>, (p: &PackedLinear = self, r0: usize = r0, xt: &[f32] = &xt, out: Out = out)),
                _ => unreachable!("tiles of 16, 64 or 128 tokens"),
            }
        });
        SCRATCH.with(|s| s.set(xt));
    }

    /// Where the walk over row `r`'s stored weights starts.
    #[inline(always)]
    fn cursor(&self, r: usize) -> Cursor {
        match &self.storage {
            Storage::Dense(_) => unreachable!("dense weights go through gemm"),
            Storage::NM { m, keep, .. } => Cursor { k: r * (self.cols / m) * keep, next: 0 },
            Storage::Bitmap { starts, .. } | Storage::Csr { starts, .. } => Cursor { k: starts[r], next: 0 },
        }
    }

    /// Calls `f(column, value)` for the stored weights of row `r` from `at` on, in storage
    /// order, up to the first one at column `end` or later (N:M groups and bitmap chunks are
    /// whole: they start before `end`), and leaves `at` there.
    #[inline(always)]
    fn walk_to(&self, r: usize, at: &mut Cursor, end: usize, mut f: impl FnMut(usize, f32)) {
        match &self.storage {
            Storage::Dense(_) => unreachable!("dense weights go through gemm"),
            Storage::NM { m, keep, values, positions, .. } => {
                let groups = self.cols / m;
                while at.next < groups && at.next * m < end {
                    let g = at.next;
                    for k in at.k..at.k + keep {
                        f(g * m + positions[k] as usize, values[k]);
                    }
                    at.k += keep;
                    at.next += 1;
                }
            }
            Storage::Bitmap { chunks, bits, values, .. } => {
                while at.next < *chunks && at.next * 16 < end {
                    let mut b = bits[r * chunks + at.next];
                    while b != 0 {
                        f(at.next * 16 + b.trailing_zeros() as usize, values[at.k]);
                        at.k += 1;
                        b &= b - 1;
                    }
                    at.next += 1;
                }
            }
            Storage::Csr { starts, columns, values } => {
                let stop = starts[r + 1];
                while at.k < stop && (columns[at.k] as usize) < end {
                    f(columns[at.k] as usize, values[at.k]);
                    at.k += 1;
                }
            }
        }
    }

    /// Row `r` of an N:M or CSR matrix times the vector `x`: stored weight i of the row goes
    /// to lane i mod 16, then the lanes are summed in order.
    #[inline(always)]
    fn row_dot(&self, r: usize, x: &[f32]) -> f32 {
        match &self.storage {
            Storage::NM { m, keep, values, positions, .. } => {
                let per_row = self.cols / m * keep;
                let (vs, ps) = (&values[r * per_row..(r + 1) * per_row], &positions[r * per_row..(r + 1) * per_row]);
                // The common group sizes by shifts, not divisions.
                match keep {
                    2 => lanes(vs, x, self.cols, |i| (i >> 1) * m + ps[i] as usize),
                    4 => lanes(vs, x, self.cols, |i| (i >> 2) * m + ps[i] as usize),
                    _ => lanes(vs, x, self.cols, |i| i / keep * m + ps[i] as usize),
                }
            }
            Storage::Csr { starts, columns, values } => {
                let cs = &columns[starts[r]..starts[r + 1]];
                lanes(&values[starts[r]..starts[r + 1]], x, self.cols, |i| cs[i] as usize)
            }
            Storage::Dense(_) | Storage::Bitmap { .. } => unreachable!("dense and bitmap rows have their own kernels"),
        }
    }
}

/// Rows `r0..` (as many as `ys` holds) of an N:M or CSR matrix times the vector `x`.
#[inline(always)]
fn rows_dot(p: &PackedLinear, r0: usize, x: &[f32], ys: &mut [f32]) {
    for (i, yr) in ys.iter_mut().enumerate() {
        *yr = p.row_dot(r0 + i, x);
    }
}

/// `sum_i values[i] * x[column(i)]`: value i into lane i mod 16 of accumulator
/// (i / 16) mod `CHAINS`, then [`simd::reduce`].
/// `column` gives columns below `cols` (the storage's invariant), and `x` holds `cols` inputs.
#[inline(always)]
fn lanes(values: &[f32], x: &[f32], cols: usize, column: impl Fn(usize) -> usize) -> f32 {
    let mut acc = [[0f32; LANES]; CHAINS];
    let whole = values.len() / LANES * LANES;
    assert!(x.len() >= cols, "an input per column");
    let at = |i: usize| {
        let c = column(i);
        debug_assert!(c < cols);
        // SAFETY: every stored column is below cols (an invariant of Storage: pack builds it
        // so, and nothing else builds one), and x holds cols values (checked above).
        unsafe { *x.get_unchecked(c) }
    };
    // Whole groups of CHAINS chunks (the accumulators stay in registers), then the rest.
    let groups = values.len() / (LANES * CHAINS);
    for g in 0..groups {
        for (i, a) in acc.iter_mut().enumerate() {
            let at0 = (g * CHAINS + i) * LANES;
            for j in 0..LANES {
                a[j] = values[at0 + j].mul_add(at(at0 + j), a[j]);
            }
        }
    }
    for ch in groups * CHAINS..whole / LANES {
        let a = &mut acc[ch % CHAINS];
        for j in 0..LANES {
            a[j] = values[ch * LANES + j].mul_add(at(ch * LANES + j), a[j]);
        }
    }
    let a = &mut acc[whole / LANES % CHAINS];
    for (j, &v) in values[whole..].iter().enumerate() {
        a[j] = v.mul_add(at(whole + j), a[j]);
    }
    simd::reduce(&acc)
}

/// Rows `r0..r0 + TILE_ROWS` (those that exist) against every tile of `xt`: tile by tile
/// and, within a tile, `BLOCK_FLOATS / T` input columns at a time, so the inputs being read
/// stay in the first-level cache while the rows pass over them; then the tile's outputs are
/// written to `y`, a token's outputs of these rows contiguous. Each output's chain of
/// multiply-adds continues from block to block in storage order, so `T` (16 or 64
/// accumulator lanes, or 128 with AVX-512: enough independent chains to hide the multiply-add
/// latency) changes no bit.
#[inline(always)]
fn rows_by_tiles<const T: usize>(p: &PackedLinear, r0: usize, xt: &[f32], out: Out) {
    let cols = p.cols;
    let s = stride::<T>();
    let n = TILE_ROWS.min(p.rows - r0);
    let mut block = vec![0f32; n * T];
    for (tile, xs) in xt.chunks_exact((cols * s).max(1)).enumerate() {
        let mut at = [Cursor::default(); TILE_ROWS];
        for (i, a) in at[..n].iter_mut().enumerate() {
            *a = p.cursor(r0 + i);
        }
        for c0 in (0..cols).step_by(BLOCK_FLOATS / T) {
            for (i, (a, acc_out)) in at[..n].iter_mut().zip(block.chunks_exact_mut(T)).enumerate() {
                let acc_out: &mut [f32; T] = acc_out.try_into().expect("a tile of outputs");
                let (mut acc, mut here) = (if c0 == 0 { [0.0; T] } else { *acc_out }, *a);
                p.walk_to(r0 + i, &mut here, c0 + BLOCK_FLOATS / T, |c, v| {
                    let col: &[f32; T] = xs[c * s..c * s + T].try_into().expect("a tile column");
                    for l in 0..T {
                        acc[l] = v.mul_add(col[l], acc[l]);
                    }
                });
                (*acc_out, *a) = (acc, here);
            }
        }
        for l in 0..T.min(out.t - tile * T) {
            let token = tile * T + l;
            // SAFETY: `out` points at the t x rows outputs, which outlive the product; this
            // task alone writes rows r0..r0 + n (tasks take disjoint row ranges), and token <
            // t, r0 + n <= rows keep the writes inside.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.y.add(token * out.rows + r0), n) };
            for (i, d) in dst.iter_mut().enumerate() {
                *d = block[i * T + l];
            }
        }
    }
}

/// Where a many-token product writes: `y` (t x rows, row-major), shared by the tasks, each
/// writing its own rows.
#[derive(Clone, Copy)]
struct Out {
    y: *mut f32,
    t: usize,
    rows: usize,
}

// SAFETY: tasks write disjoint elements through `y` (see rows_by_tiles), and the borrow it
// was made from outlives them.
unsafe impl Send for Out {}
// SAFETY: as above.
unsafe impl Sync for Out {}

/// Share of non-zero weights at or above which many-token products unpack the weights and
/// run the dense kernels instead of the sparse ones: on an AMD EPYC (Zen 5) with AVX-512 the
/// sparse kernel beats gemm only below about a fifth to a quarter of the weights
/// (`benchmarks/benches/sparse.rs`, results/sparse-speed/README.md).
pub const UNPACK_ABOVE: f64 = 0.25;

thread_local! {
    /// The weights unpacked for the dense kernels, kept between calls.
    static UNPACKED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The many-token kernel's inputs in tiles, kept between calls: a fresh buffer of a few
    /// MiB per product costs as much in page faults as the product itself.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Floats between the starts of two input columns of a tile: a cache line more than the tile,
/// so that columns a power of two apart do not compete for the same cache sets.
const fn stride<const T: usize>() -> usize {
    T + 16
}

/// A position in the walk over a row's stored weights: the next value and, for N:M and
/// bitmaps, the next group or chunk.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    k: usize,
    next: usize,
}
/// The dense path: `gemm` (its kernels for AVX-512, AVX2 or the baseline, chosen at run time),
/// split over its output only, so the thread count changes no bit. `w` holds `rows` rows of
/// `cols` weights, `ld` apart.
fn dense(w: &[f32], ld: usize, x: &[f32], t: usize, rows: usize, cols: usize, y: &mut [f32]) {
    if cols == 0 {
        y.fill(0.0);
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    assert!(w.len() >= (rows - 1) * ld + cols && ld >= cols, "weights of {rows} x {cols}, {ld} apart");
    // SAFETY: y holds t x rows values (row stride rows), x t x cols (row stride cols), w rows x
    // cols read as its transpose (column stride ld, checked above); the lengths of x and y were
    // checked by the caller and y does not alias x or w (a unique borrow).
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
            ld as isize,
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
