//! `y = x W^T` with `W` packed.
//!
//! One token (decoding) is a matrix-vector product, bound by the bytes of `W` read: each row
//! is summed in four accumulators of 16 lanes, stored weight i going to lane i mod 16 of
//! accumulator (i / 16) mod 4 (for a bitmap, column j of 16-column chunk c, expanded in
//! registers, to lane j of accumulator c mod 4), then reduced in a fixed order.
//!
//! Many tokens (evaluation, prefill): weights with at least [`UNPACK_ABOVE`] non-zeros are
//! unpacked and multiplied by gemm (the dense format's bits); sparser ones go through a tiled
//! layout: the stored weights listed once per product as offsets into a tile, copied beside
//! their values in the order the loop reads them ([`crate::lists`]), then tile after tile of 16,
//! 64 or 128 tokens, the tile's inputs transposed (a whole tile of one input column
//! contiguous, on whole cache lines) into a buffer that stays in the second-level caches, and
//! for each output row, the row's stored weights each scaling one tile column into
//! accumulators held in registers, a block of input columns at a time; each output is one
//! chain of fused multiply-adds in storage order, which the tile size does not change.
//!
//! Output rows are split over the rayon pool and each is computed alone, so the thread count
//! never changes a bit, and every instruction set gives the same bits ([`crate::simd`]).

use rayon::prelude::*;

use crate::format::{PackedLinear, Storage};
use crate::lists::{GROUP_ROWS, Lists, TILE_ROWS};
use crate::simd::{self, CHAINS, Isa, LANES, PREFETCH, on_isa};

/// Output rows per parallel task, at least (one token).
const ROWS_PER_TASK: usize = 16;

/// Inputs of a tile per block of columns in the many-token kernel (32 KiB, 64 columns of 128
/// tokens): read from the first-level cache while a group of rows passes over them.
const BLOCK_FLOATS: usize = 8192;

/// Input columns per parallel task when transposing a tile.
const TRANSPOSE_COLUMNS: usize = 64;

impl PackedLinear {
    /// `y (t x rows) = x (t x cols) . W^T`, row-major, on the best instruction set this CPU
    /// has. Panics if the lengths do not match.
    pub fn forward(&self, x: &[f32], t: usize, y: &mut [f32]) {
        self.forward_on(simd::detected(), x, t, y);
    }

    /// [`forward`](Self::forward) on the instruction set `isa` (the portable path if the CPU
    /// lacks it): the same bits on every one, which the tests check.
    pub fn forward_on(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        self.product(isa, x, t, y, true);
    }

    /// [`forward_on`](Self::forward_on) without unpacking: many tokens always run the sparse
    /// kernel, whatever the density (for tests and for benchmarks that find the break-even).
    pub fn forward_sparse_on(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        self.product(isa, x, t, y, false);
    }

    fn product(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32], unpack: bool) {
        assert_eq!(x.len(), t * self.cols, "input of {} values for {t} x {}", x.len(), self.cols);
        assert_eq!(y.len(), t * self.rows, "output of {} values for {t} x {}", y.len(), self.rows);
        if t == 0 || self.rows == 0 {
            return;
        }
        let isa = isa.or_portable();
        match &self.storage {
            Storage::Dense(w) => dense_product(isa, w, self.rows, self.cols, x, t, y),
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
                    } else if let Storage::NM { m, keep, values, positions, .. } = &self.storage
                        && crate::nm::nm_half_vector(isa, *m, *keep)
                    {
                        let per_row = self.cols / m * keep;
                        for (i, yr) in ys.iter_mut().enumerate() {
                            let at = (r0 + i) * per_row..(r0 + i + 1) * per_row;
                            *yr = crate::nm::nm_half_row(isa, *m, *keep, &values[at.clone()], &positions[at], &xp);
                        }
                    } else {
                        on_isa!(isa, rows_dot, (p: &PackedLinear = self, r0: usize = r0, x: &[f32] = &xp, ys: &mut [f32] = ys))
                    }
                });
            }
            _ if unpack && self.stored_values() as f64 >= UNPACK_ABOVE * (self.rows * self.cols) as f64 && t >= 16 => self.unpacked(isa, x, t, y),
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

    /// Many tokens: inputs in tiles of `T` tokens. The stored weights are first listed as
    /// offsets into a tile ([`Lists`]); then tile after tile, the tile's inputs transposed
    /// into one buffer (a token's inputs along each column, which stays in the cores'
    /// second-level caches while every row passes over it) and the rows, split over the pool,
    /// multiplied against it ([`rows_by_tile`]).
    fn tiled<const T: usize>(&self, isa: Isa, x: &[f32], t: usize, y: &mut [f32]) {
        let (rows, cols, s) = (self.rows, self.cols, stride::<T>());
        let lists = self.lists(isa, s, BLOCK_FLOATS / T);
        let mut buf = SCRATCH.with(|c| c.take());
        buf.resize(cols * s + LANES, 0.0);
        // Tile columns start on cache lines (the stride is a whole number of them), so no
        // vector load splits one.
        let skew = buf.as_ptr().align_offset(64).min(LANES);
        let out = Out { y: y.as_mut_ptr(), t, rows };
        for tile in 0..t.div_ceil(T) {
            let tokens = T.min(t - tile * T);
            let xt = &mut buf[skew..skew + cols * s];
            xt.par_chunks_mut(TRANSPOSE_COLUMNS * s).enumerate().for_each(|(c, xs)| {
                let (c0, c1) = (c * TRANSPOSE_COLUMNS, ((c + 1) * TRANSPOSE_COLUMNS).min(cols));
                simd::transpose(isa, &x[tile * T * cols + c0..], cols, tokens, c1 - c0, xs, s);
                // Lanes past the last token: zeros (their outputs are never written).
                if tokens < T {
                    for col in xs.chunks_mut(s) {
                        col[tokens..T].fill(0.0);
                    }
                }
            });
            let xt = &*xt;
            (0..rows.div_ceil(TILE_ROWS)).into_par_iter().for_each(|c| {
                let r0 = c * TILE_ROWS;
                let l = &lists;
                match T {
                    128 => on_isa!(isa, rows_by_tile::<128>, (isa: Isa = isa, p: &PackedLinear = self, l: &Lists = l, r0: usize = r0, xt: &[f32] = xt, tile: usize = tile, out: Out = out)),
                    64 => on_isa!(isa, rows_by_tile::<64>, (isa: Isa = isa, p: &PackedLinear = self, l: &Lists = l, r0: usize = r0, xt: &[f32] = xt, tile: usize = tile, out: Out = out)),
                    16 => on_isa!(isa, rows_by_tile::<16>, (isa: Isa = isa, p: &PackedLinear = self, l: &Lists = l, r0: usize = r0, xt: &[f32] = xt, tile: usize = tile, out: Out = out)),
                    _ => unreachable!("tiles of 16, 64 or 128 tokens"),
                }
            });
        }
        SCRATCH.with(|c| c.set(buf));
        lists.keep();
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

/// `y (t x rows) = x (t x cols) . W^T` for a dense row-major `w` (rows x cols) that is not
/// packed (a model's output head, say), as [`PackedLinear::forward`] multiplies one in the
/// dense format: one token by a row loop ([`dense_rows`]; gemm's one-row product read its
/// weights at about three quarters of the bitmap loop's speed), more by gemm. Panics if the lengths do not match.
pub fn dense_forward(w: &[f32], rows: usize, cols: usize, x: &[f32], t: usize, y: &mut [f32]) {
    assert_eq!(w.len(), rows * cols, "weights of {} values for {rows} x {cols}", w.len());
    assert_eq!(x.len(), t * cols, "input of {} values for {t} x {cols}", x.len());
    assert_eq!(y.len(), t * rows, "output of {} values for {t} x {rows}", y.len());
    if t > 0 && rows > 0 {
        dense_product(simd::detected(), w, rows, cols, x, t, y);
    }
}

/// The dense format's product (lengths checked by the callers).
fn dense_product(isa: Isa, w: &[f32], rows: usize, cols: usize, x: &[f32], t: usize, y: &mut [f32]) {
    if t == 1 {
        let per_task = rows.div_ceil(4 * rayon::current_num_threads()).max(ROWS_PER_TASK);
        y.par_chunks_mut(per_task).enumerate().for_each(|(c, ys)| {
            let r0 = c * per_task;
            on_isa!(isa, dense_rows, (w: &[f32] = w, cols: usize = cols, r0: usize = r0, x: &[f32] = x, ys: &mut [f32] = ys))
        });
    } else {
        dense(w, cols, x, t, rows, cols, y);
    }
}

/// Rows `r0..` (as many as `ys` holds) of a dense matrix (`cols` per row) times the vector
/// `x`, each as [`lanes`] sums a row: weight i into lane i mod 16 of accumulator
/// (i / 16) mod [`CHAINS`], then [`simd::reduce`].
#[inline(always)]
fn dense_rows(w: &[f32], cols: usize, r0: usize, x: &[f32], ys: &mut [f32]) {
    const GROUP: usize = LANES * CHAINS;
    let x = &x[..cols];
    for (i, yr) in ys.iter_mut().enumerate() {
        let row = &w[(r0 + i) * cols..(r0 + i + 1) * cols];
        let mut acc = [[0f32; LANES]; CHAINS];
        // Whole groups of CHAINS chunks (the accumulators stay in registers), then the rest.
        let (wg, xg) = (row.chunks_exact(GROUP), x.chunks_exact(GROUP));
        let (wr, xr) = (wg.remainder(), xg.remainder());
        for (g, (w, x)) in wg.zip(xg).enumerate() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch only hints at an address; it never faults.
            // Every cache line of the group: once per group (one line in four) was slower.
            unsafe {
                for c in 0..CHAINS {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(row.as_ptr().wrapping_add(g * GROUP + c * LANES + PREFETCH).cast());
                }
            }
            for (c, a) in acc.iter_mut().enumerate() {
                for j in 0..LANES {
                    a[j] = w[c * LANES + j].mul_add(x[c * LANES + j], a[j]);
                }
            }
        }
        for (c, (w, x)) in wr.chunks(LANES).zip(xr.chunks(LANES)).enumerate() {
            let a = &mut acc[c % CHAINS];
            for j in 0..w.len() {
                a[j] = w[j].mul_add(x[j], a[j]);
            }
        }
        *yr = simd::reduce(&acc);
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
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch only hints at an address; it never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(values.as_ptr().wrapping_add(g * LANES * CHAINS + PREFETCH).cast());
        }
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

/// Rows `r0..r0 + TILE_ROWS` (those that exist) against the tile `xt` of inputs (tile
/// number `tile`): block by block of `BLOCK_FLOATS / T` input columns (the block's inputs
/// stay in the first-level cache while [`GROUP_ROWS`] rows pass over them), each row's
/// weights in the block scale their tile columns into `T` accumulators held in registers
/// ([`simd::tile_segment`]); then the tile's outputs are transposed (8 x 8 blocks, as the
/// inputs were) straight into `y`'s rows of these tokens. Each output's
/// chain of multiply-adds continues from block to block in storage order, so `T` (16, 64, or
/// 128 with AVX-512: enough independent chains to hide the multiply-add latency) changes no
/// bit.
#[inline(always)]
fn rows_by_tile<const T: usize>(isa: Isa, p: &PackedLinear, l: &Lists, r0: usize, xt: &[f32], tile: usize, out: Out) {
    let n = TILE_ROWS.min(p.rows - r0);
    let blocks = l.blocks;
    let mut acc = ACC.with(|c| c.take());
    acc.clear();
    // The accumulators, a row's T outputs contiguous.
    acc.resize(n * T, 0.0);
    for g0 in (0..n).step_by(GROUP_ROWS) {
        let g1 = (g0 + GROUP_ROWS).min(n);
        let group = (r0 + g0) / GROUP_ROWS;
        for b in 0..blocks {
            let bb = &l.bounds[(group * blocks + b) * (GROUP_ROWS + 1)..][..=g1 - g0];
            for (ks, acc) in bb.windows(2).zip(acc[g0 * T..g1 * T].chunks_exact_mut(T)) {
                let (k0, k1) = (ks[0] as usize, ks[1] as usize);
                if k0 < k1 {
                    let acc: &mut [f32; T] = acc.try_into().expect("a tile of outputs");
                    simd::tile_segment(isa, &l.values[k0..k1], &l.offsets[k0..k1], xt, acc);
                }
            }
        }
    }
    let tokens = T.min(out.t - tile * T);
    // SAFETY: `out` points at the t x rows outputs, which outlive the product; the positions
    // written are rows r0..r0 + n (r0 + n <= rows) of tokens tile * T.. (fewer than t), and
    // this task alone writes those rows (tasks take disjoint row ranges).
    unsafe { simd::transpose_to(isa, &acc, T, n, tokens, out.y.add(tile * T * out.rows + r0), out.rows) };
    ACC.with(|c| c.set(acc));
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
/// run the dense kernels instead of the sparse ones. On a 2-core Intel Xeon with AVX-512, for
/// SmolLM2's down projection (576 x 1536) and 512 tokens, the sparse kernel took 1.35x
/// gemm's time with no zeros, 1.06x at 30% zeros, 0.84x at 50% and 0.61x at 70%
/// (`cargo bench -p prunus-benches --bench sparse -- down`, benchmarks/README.md); it breaks
/// even at about 60% non-zeros, where linears stay dense anyway ([`Format`] choice in the
/// runtime keeps them dense from 75%).
///
/// [`Format`]: crate::Format
pub const UNPACK_ABOVE: f64 = 0.6;

thread_local! {
    /// The weights unpacked for the dense kernels, kept between calls.
    static UNPACKED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// The many-token kernel's inputs in tiles, kept between calls: a fresh buffer of a few
    /// MiB per product costs as much in page faults as the product itself.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// A task's accumulators in the many-token kernel.
    static ACC: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Transposed copies of weights ([`with_transposed`]), kept between calls.
    static TRANSPOSED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// `f` of `w` (`rows` rows of `cols` values, `ld` apart) transposed (`cols` rows of `rows`),
/// in a buffer kept per thread between calls: the dense kernels' and training's transposed
/// copies of weights ([`transposing_pays`]). Panics if `w` is too short.
pub fn with_transposed<R>(w: &[f32], ld: usize, rows: usize, cols: usize, f: impl FnOnce(&[f32]) -> R) -> R {
    let mut wt = TRANSPOSED.with(|c| c.take());
    wt.resize(rows * cols, 0.0);
    transpose(w, ld, rows, cols, &mut wt);
    let r = f(&wt);
    TRANSPOSED.with(|c| c.set(wt));
    r
}

/// `w` (`rows` rows of `cols` values, `ld` apart) transposed into `out` (`cols` rows of
/// `rows`): 8 x 8 blocks through AVX2 where the CPU has it, blocks of columns split over the
/// rayon pool. Panics if `w` or `out` is too short.
fn transpose(w: &[f32], ld: usize, rows: usize, cols: usize, out: &mut [f32]) {
    assert!(out.len() >= rows * cols, "room for {cols} x {rows} values");
    if rows == 0 || cols == 0 {
        return;
    }
    let isa = simd::detected();
    out[..rows * cols].par_chunks_mut(TRANSPOSE_COLUMNS * rows).enumerate().for_each(|(c, out)| {
        let c0 = c * TRANSPOSE_COLUMNS;
        simd::transpose(isa, &w[c0..], ld, rows, out.len() / rows, out, rows);
    });
}

/// Whether the dense kernels multiply by a transposed copy of the weights. gemm's kernels
/// read the weights of `y = x W^T` down columns of `W`: from row-major `W` it gathers them
/// into panels inside every product, which on SmolLM2's block shapes at 512 tokens cost more
/// than transposing `W` once (8 x 8 blocks, in parallel) and handing gemm the transpose, which
/// it reads as it is (`decode_rows -- eval`, benchmarks/README.md). Same kernels, same order
/// of operations: the same bits. The output head (49152 x 576) gained nothing and its
/// transpose would be 108 MiB, so matrices above 4M weights and products of few tokens keep
/// the plain call.
pub fn transposing_pays(t: usize, rows: usize, cols: usize) -> bool {
    t >= 128 && rows * cols <= 1 << 22
}

/// Floats between the starts of two input columns of a tile: a cache line more than the tile,
/// so that columns a power of two apart do not compete for the same cache sets.
const fn stride<const T: usize>() -> usize {
    T + 16
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
    let mut product = |rhs: &[f32], cs: usize, rs: usize| {
        // SAFETY: y holds t x rows values (row stride rows), x t x cols (row stride cols), and
        // rhs is the weights read as their transpose: w with column stride ld (checked above)
        // or its transposed copy (cols rows of rows values); the lengths of x and y were
        // checked by the caller and y does not alias x or the weights (a unique borrow).
        unsafe {
            gemm::gemm(t, rows, cols, y.as_mut_ptr(), 1, rows as isize, false, x.as_ptr(), 1, cols as isize, rhs.as_ptr(), cs as isize, rs as isize, 1.0, 1.0, false, false, false, parallelism);
        }
    };
    if transposing_pays(t, rows, cols) {
        with_transposed(w, ld, rows, cols, |wt| product(wt, 1, rows));
    } else {
        product(w, ld, 1);
    }
}
