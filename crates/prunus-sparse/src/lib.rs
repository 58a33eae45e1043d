//! Packed sparse weights of pruned linears, and their products with dense activations.
//!
//! A pruned linear `W` (`rows` outputs x `cols` inputs, row-major f32, most entries zero) is
//! packed once into the format its pattern and density suit ([`Format`]):
//!
//! - **N:M** ([`Format::NM`]): in every group of `m` consecutive inputs of a row at most
//!   `m - n` weights are non-zero (prunus's `n:m` prunes `n` of each `m`); each group keeps
//!   exactly `m - n` values and their positions in the group (one byte each). Groups with
//!   fewer non-zeros keep explicit zeros.
//! - **Bitmap** ([`Format::Bitmap`]): one bit per weight (which are non-zero) and the non-zero
//!   values of each row in order.
//! - **CSR** ([`Format::Csr`]): the non-zero values of each row with their 16-bit column
//!   indices (rows of at most 65536 inputs).
//! - **Dense** ([`Format::Dense`]): the matrix as it is, multiplied by `gemm` (AVX-512, AVX2 or
//!   portable kernels chosen at run time): the fallback where packing would not pay.
//!
//! Packing never changes a value: [`PackedLinear::to_dense`] gives the input back bit for bit.
//! [`PackedLinear::forward`] computes `y = x W^T` for `t` rows of `x` (`t x cols`):
//!
//! - one row (decoding a token) is a matrix-vector product, bound by the bytes of `W` read, so
//!   fewer bytes is the gain: a bitmap row is expanded 16 weights at a time in registers
//!   (`vexpandps` with AVX-512, a table of permutations with AVX2), N:M and CSR rows gather
//!   their inputs;
//! - many rows (evaluation, prefill) run the sparse kernel where the weights are sparse
//!   enough to beat the dense one (below [`UNPACK_ABOVE`] non-zeros): the stored weights
//!   listed as offsets into a tile of 64 or 128 tokens, the inputs transposed a tile at a
//!   time, each stored weight scaling one tile column into accumulators held in registers, a
//!   block of input columns at a time so the inputs come from the first-level cache; denser
//!   weights are unpacked (in parallel, into a buffer kept between calls) and multiplied by
//!   `gemm`, which then gives the very bits of the dense matrix. For 128 tokens or more gemm
//!   is handed a transposed copy of the weights ([`with_transposed`], [`transposing_pays`]), which
//!   its kernels read as it is where the row-major matrix would be gathered into panels in
//!   every product: faster on SmolLM2's block shapes, the same bits.
//!
//! Work is split over output rows with rayon and each output is one chain of fused
//! multiply-adds in a fixed order, so results do not depend on the thread count; the
//! AVX-512, AVX2 and portable paths are one arithmetic and give the same bits ([`simd`]).

mod format;
mod kernels;
mod lists;
mod nm;
pub mod simd;

pub use format::{Format, PackedLinear};
pub use kernels::{UNPACK_ABOVE, dense_forward, transposing_pays, with_transposed};

/// What can go wrong when packing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The buffer does not hold `rows * cols` values.
    #[error("a {rows} x {cols} matrix needs {} values, got {len}", rows * cols)]
    Shape {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Values given.
        len: usize,
    },
    /// The matrix does not follow the N:M pattern asked for.
    #[error("row {row}, group {group}: {nonzeros} non-zero weights where {n}:{m} allows {}", m - n)]
    NotNM {
        /// Zeros per group.
        n: usize,
        /// Group size.
        m: usize,
        /// The first offending row.
        row: usize,
        /// Its offending group.
        group: usize,
        /// Non-zeros in that group.
        nonzeros: usize,
    },
    /// An N:M pattern that cannot pack this matrix.
    #[error("{n}:{m} cannot pack rows of {cols} inputs (m must divide the row, n < m <= 256)")]
    BadNM {
        /// Zeros per group.
        n: usize,
        /// Group size.
        m: usize,
        /// Inputs per row.
        cols: usize,
    },
    /// CSR keeps 16-bit column indices.
    #[error("CSR keeps 16-bit column indices: rows of {cols} inputs are too wide")]
    TooWide {
        /// Inputs per row.
        cols: usize,
    },
}

/// The result of packing.
pub type Result<T> = std::result::Result<T, Error>;
