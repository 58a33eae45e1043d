//! The packed formats: packing a row-major matrix, unpacking it, and what it costs in bytes.
//!
//! A weight counts as non-zero when its bits are not all zero, so a `-0.0` is kept as a value
//! and unpacking gives every input back bit for bit.

use crate::{Error, Result};

/// A way to store a pruned linear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Every weight, row-major.
    Dense,
    /// `n` zeros in every group of `m` consecutive inputs of a row: the `m - n` others kept with
    /// their positions in the group.
    NM {
        /// Zeros per group (prunus's `n` in `n:m`).
        n: usize,
        /// Group size.
        m: usize,
    },
    /// A bit per weight and the non-zero values.
    Bitmap,
    /// The non-zero values with 16-bit column indices.
    Csr,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Format::Dense => f.write_str("dense"),
            Format::NM { n, m } => write!(f, "{n}:{m}"),
            Format::Bitmap => f.write_str("bitmap"),
            Format::Csr => f.write_str("csr"),
        }
    }
}

/// The packed values of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Storage {
    Dense(Vec<f32>),
    /// Row after row, `cols / m` groups of `keep` values and their positions in the group.
    NM { n: usize, m: usize, keep: usize, values: Vec<f32>, positions: Vec<u8> },
    /// `chunks` u16 per row (bit `j % 16` of chunk `j / 16` set where weight j is non-zero);
    /// the non-zero values row after row, those of row r at `starts[r]..starts[r + 1]`, then
    /// [`PAD`] zeros (the vector kernels load a whole chunk of values at a time).
    Bitmap { chunks: usize, bits: Vec<u16>, values: Vec<f32>, starts: Vec<usize> },
    /// The non-zero values and their columns row after row, row r at `starts[r]..starts[r + 1]`.
    Csr { starts: Vec<usize>, columns: Vec<u16>, values: Vec<f32> },
}

/// A linear's weight (`rows` outputs x `cols` inputs) in one of the [`Format`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedLinear {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) storage: Storage,
}

/// Zeros after a bitmap's values.
pub(crate) const PAD: usize = crate::simd::LANES;

fn nonzero(v: f32) -> bool {
    v.to_bits() != 0
}

impl PackedLinear {
    /// Packs the row-major `weight` (`rows` x `cols`) as `format`. N:M fails unless every group
    /// has at most `m - n` non-zeros ([`Error::NotNM`], naming the first group that does not);
    /// CSR fails for rows of more than 65536 inputs.
    pub fn pack(weight: &[f32], rows: usize, cols: usize, format: Format) -> Result<Self> {
        if weight.len() != rows * cols {
            return Err(Error::Shape { rows, cols, len: weight.len() });
        }
        let storage = match format {
            Format::Dense => Storage::Dense(weight.to_vec()),
            Format::NM { n, m } => pack_nm(weight, rows, cols, n, m)?,
            Format::Bitmap => {
                let chunks = cols.div_ceil(16);
                let mut bits = vec![0u16; rows * chunks];
                let (mut values, mut starts) = (Vec::new(), Vec::with_capacity(rows + 1));
                for (r, row) in weight.chunks_exact(cols.max(1)).take(rows).enumerate() {
                    starts.push(values.len());
                    for (j, &v) in row.iter().enumerate() {
                        if nonzero(v) {
                            bits[r * chunks + j / 16] |= 1u16 << (j % 16);
                            values.push(v);
                        }
                    }
                }
                starts.resize(rows, values.len());
                starts.push(values.len());
                values.extend([0.0; PAD]);
                Storage::Bitmap { chunks, bits, values, starts }
            }
            Format::Csr => {
                if cols > 1 << 16 {
                    return Err(Error::TooWide { cols });
                }
                let (mut values, mut columns, mut starts) = (Vec::new(), Vec::new(), Vec::with_capacity(rows + 1));
                for row in weight.chunks_exact(cols.max(1)).take(rows) {
                    starts.push(values.len());
                    for (j, &v) in row.iter().enumerate() {
                        if nonzero(v) {
                            values.push(v);
                            columns.push(j as u16);
                        }
                    }
                }
                starts.resize(rows, values.len());
                starts.push(values.len());
                Storage::Csr { starts, columns, values }
            }
        };
        Ok(PackedLinear { rows, cols, storage })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The format it is in.
    pub fn format(&self) -> Format {
        match &self.storage {
            Storage::Dense(_) => Format::Dense,
            Storage::NM { n, m, .. } => Format::NM { n: *n, m: *m },
            Storage::Bitmap { .. } => Format::Bitmap,
            Storage::Csr { .. } => Format::Csr,
        }
    }

    /// Values stored (the non-zeros; for N:M, `m - n` per group, explicit zeros included).
    pub fn stored_values(&self) -> usize {
        match &self.storage {
            Storage::Dense(w) => w.len(),
            Storage::NM { values, .. } | Storage::Csr { values, .. } => values.len(),
            Storage::Bitmap { values, .. } => values.len() - PAD,
        }
    }

    /// Bytes of the packed arrays (values, indices, bitmaps, row starts as 4-byte offsets).
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<f32>();
        match &self.storage {
            Storage::Dense(w) => w.len() * f,
            Storage::NM { values, positions, .. } => values.len() * f + positions.len(),
            Storage::Bitmap { bits, values, starts, .. } => bits.len() * 2 + (values.len() - PAD) * f + starts.len() * 4,
            Storage::Csr { starts, columns, values } => values.len() * f + columns.len() * 2 + starts.len() * 4,
        }
    }

    /// The row-major matrix again, bit for bit as it was packed.
    pub fn to_dense(&self) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let mut w = vec![0.0f32; rows * cols];
        match &self.storage {
            Storage::Dense(d) => w.copy_from_slice(d),
            Storage::NM { m, keep, values, positions, .. } => {
                for (k, (&v, &p)) in values.iter().zip(positions).enumerate() {
                    let group = k / keep; // over all rows: groups are row-major
                    w[group * m + p as usize] = v;
                }
            }
            Storage::Bitmap { chunks, bits, values, starts } => {
                for r in 0..rows {
                    let mut k = starts[r];
                    for chunk in 0..*chunks {
                        let mut b = bits[r * chunks + chunk];
                        while b != 0 {
                            w[r * cols + chunk * 16 + b.trailing_zeros() as usize] = values[k];
                            k += 1;
                            b &= b - 1;
                        }
                    }
                }
            }
            Storage::Csr { starts, columns, values } => {
                for r in 0..rows {
                    for k in starts[r]..starts[r + 1] {
                        w[r * cols + columns[k] as usize] = values[k];
                    }
                }
            }
        }
        w
    }
}

/// Packs N:M: per group, its non-zeros in order, then explicit zeros at the first unused
/// positions until `m - n` are kept.
fn pack_nm(weight: &[f32], rows: usize, cols: usize, n: usize, m: usize) -> Result<Storage> {
    if !(n < m && m <= 256 && m > 0 && cols.is_multiple_of(m)) {
        return Err(Error::BadNM { n, m, cols });
    }
    let keep = m - n;
    let groups = rows * cols / m;
    let (mut values, mut positions) = (Vec::with_capacity(groups * keep), Vec::with_capacity(groups * keep));
    for (g, group) in weight.chunks_exact(m).enumerate() {
        let nonzeros = group.iter().filter(|v| nonzero(**v)).count();
        if nonzeros > keep {
            return Err(Error::NotNM { n, m, row: g * m / cols, group: g % (cols / m), nonzeros });
        }
        let mut kept = 0;
        for (p, &v) in group.iter().enumerate() {
            if nonzero(v) {
                values.push(v);
                positions.push(p as u8);
                kept += 1;
            }
        }
        for (p, &v) in group.iter().enumerate() {
            if kept == keep {
                break;
            }
            if !nonzero(v) {
                values.push(0.0);
                positions.push(p as u8);
                kept += 1;
            }
        }
    }
    Ok(Storage::NM { n, m, keep, values, positions })
}
