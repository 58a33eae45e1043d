//! The walk over a packed row's stored weights, and the many-token kernel's lists: the stored
//! weights as offsets into a tile of inputs, with their values, laid out in the order the tile
//! loop of [`crate::kernels`] reads them, so that each parallel task reads one stream instead
//! of one per row.

use rayon::prelude::*;

use crate::format::{PackedLinear, Storage};
use crate::simd::{self, Isa};

/// Output rows per parallel task with many tokens (and per task listing their weights).
pub(crate) const TILE_ROWS: usize = 32;

/// Rows whose accumulators stay in the first-level cache beside a block of inputs.
pub(crate) const GROUP_ROWS: usize = 16;

// A task's rows are whole groups (the lists are laid out group by group).
const _: () = assert!(TILE_ROWS.is_multiple_of(GROUP_ROWS));

/// The many-token kernel's list of stored weights, in the order it reads them: `values[k]`
/// and `offsets[k]`, the offset in a tile of inputs of its column (column times the tile's
/// stride). Row `g * GROUP_ROWS + i`'s weights in block b of input columns are at
/// `bounds[j + i]..bounds[j + i + 1]`, `j = (g * blocks + b) * (GROUP_ROWS + 1)`.
#[derive(Default)]
pub(crate) struct Lists {
    pub(crate) offsets: Vec<u32>,
    pub(crate) values: Vec<f32>,
    pub(crate) bounds: Vec<u32>,
    pub(crate) blocks: usize,
}

impl Lists {
    /// Keeps the buffers for the next product on this thread.
    pub(crate) fn keep(self) {
        LISTS.with(|c| c.set(self));
    }
}

thread_local! {
    /// The many-token kernel's lists (tile offsets, values in reading order and bounds), kept
    /// between calls.
    static LISTS: std::cell::Cell<Lists> = const { std::cell::Cell::new(Lists { offsets: Vec::new(), values: Vec::new(), bounds: Vec::new(), blocks: 0 }) };
}

impl PackedLinear {
    /// Every row's stored weights as offsets into a tile of inputs (column times `stride`),
    /// with their values, in the order the rows phase reads them: group of rows by group, block
    /// of `width` input columns by block, row by row, so that each task reads one stream;
    /// built in parallel over tasks of rows, in buffers kept between calls.
    pub(crate) fn lists(&self, isa: Isa, stride: usize, width: usize) -> Lists {
        let (rows, cols) = (self.rows, self.cols);
        let blocks = cols.div_ceil(width).max(1);
        let mut l = LISTS.with(|c| c.take());
        let all = self.all_values();
        let total = all.len();
        assert!(total < u32::MAX as usize && cols * stride < u32::MAX as usize, "a linear of fewer than 2^32 values");
        l.offsets.resize(total, 0);
        l.values.resize(total, 0.0);
        l.bounds.resize(rows.div_ceil(GROUP_ROWS) * blocks * (GROUP_ROWS + 1), 0);
        l.blocks = blocks;
        // Disjoint spans per task of rows: rows' values are contiguous and in order, and a
        // task's are only reordered within its span.
        let mut spans = Vec::with_capacity(rows.div_ceil(TILE_ROWS));
        let (mut offsets, mut values, mut at) = (&mut l.offsets[..], &mut l.values[..], 0);
        for r0 in (0..rows).step_by(TILE_ROWS) {
            let end = if r0 + TILE_ROWS >= rows { total } else { self.cursor(r0 + TILE_ROWS).k };
            let (o, o_rest) = std::mem::take(&mut offsets).split_at_mut(end - at);
            let (v, v_rest) = std::mem::take(&mut values).split_at_mut(end - at);
            spans.push((r0, at, o, v));
            (offsets, values, at) = (o_rest, v_rest, end);
        }
        let task_bounds = TILE_ROWS / GROUP_ROWS * blocks * (GROUP_ROWS + 1);
        let per_block = width / 16;
        let spans = spans.into_par_iter().zip(l.bounds.par_chunks_mut(task_bounds));
        spans.for_each(|((r0, first, offsets, values), bounds)| {
            let n = TILE_ROWS.min(rows - r0);
            // Written in reading order: position k of the task's span is the next one read.
            let mut k = 0;
            for (g0, group) in (0..n).step_by(GROUP_ROWS).zip(bounds.chunks_mut(blocks * (GROUP_ROWS + 1))) {
                let g1 = (g0 + GROUP_ROWS).min(n);
                // Where each row of the group has got to in its stored weights.
                let mut at = [Cursor::default(); GROUP_ROWS];
                for (i, c) in (g0..g1).zip(&mut at) {
                    *c = self.cursor(r0 + i);
                }
                for (b, bb) in group.chunks_exact_mut(GROUP_ROWS + 1).enumerate() {
                    bb[0] = (first + k) as u32;
                    for ((i, c), end) in (g0..g1).zip(&mut at).zip(&mut bb[1..]) {
                        let r = r0 + i;
                        match &self.storage {
                            Storage::Bitmap { chunks, bits, .. } => {
                                let (c0, c1) = ((b * per_block).min(*chunks), ((b + 1) * per_block).min(*chunks));
                                let m = simd::bitmap_offsets(isa, &bits[r * chunks + c0..r * chunks + c1], c0, stride, &mut offsets[k..]);
                                values[k..k + m].copy_from_slice(&all[c.k..c.k + m]);
                                (c.k, k) = (c.k + m, k + m);
                            }
                            _ => self.walk_to(r, c, (b + 1) * width, |column, v| {
                                (offsets[k], values[k]) = ((column * stride) as u32, v);
                                k += 1;
                            }),
                        }
                        *end = (first + k) as u32;
                    }
                }
            }
        });
        l
    }

    /// Where the walk over row `r`'s stored weights starts.
    #[inline(always)]
    pub(crate) fn cursor(&self, r: usize) -> Cursor {
        match &self.storage {
            Storage::Dense(_) => unreachable!("dense weights go through gemm"),
            Storage::NM { m, keep, .. } => Cursor { k: r * (self.cols / m) * keep, next: 0 },
            Storage::Bitmap { starts, .. } | Storage::Csr { starts, .. } => Cursor { k: starts[r], next: 0 },
        }
    }

    /// Every stored value (a row's contiguous, in storage order).
    #[inline(always)]
    pub(crate) fn all_values(&self) -> &[f32] {
        match &self.storage {
            Storage::Dense(_) => unreachable!("dense weights go through gemm"),
            Storage::NM { values, .. } | Storage::Bitmap { values, .. } | Storage::Csr { values, .. } => values,
        }
    }

    /// Calls `f(column, value)` for the stored weights of row `r` from `at` on, in storage
    /// order, up to the first one at column `end` or later (N:M groups and bitmap chunks are
    /// whole: they start before `end`), and leaves `at` there.
    #[inline(always)]
    pub(crate) fn walk_to(&self, r: usize, at: &mut Cursor, end: usize, mut f: impl FnMut(usize, f32)) {
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
}

/// A position in the walk over a row's stored weights: the next value and, for N:M and
/// bitmaps, the next group or chunk.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cursor {
    pub(crate) k: usize,
    next: usize,
}
