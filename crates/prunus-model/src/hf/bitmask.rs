//! Sparse checkpoints in compressed-tensors' sparse-bitmask layout.
//!
//! A pruned linear `<prefix>.weight` (rows x cols) is stored as four tensors instead:
//! `<prefix>.compressed` (its non-zero values in row-major order, 1-D, the weight's dtype),
//! `<prefix>.bitmask` (u8, rows x ceil(cols / 8): bit j % 8 of byte j / 8 of a row set where
//! weight j is non-zero, numpy's `packbits(..., bitorder="little")`), `<prefix>.shape` (i64,
//! `[rows, cols]`) and `<prefix>.row_offsets` (i64, rows: where each row's values start). That
//! is the layout of neuralmagic's compressed-tensors (`sparse-bitmask`), which llm-compressor
//! wrote and vLLM read until both dropped sparse paths in 2026; `config.json` says so under
//! `quantization_config.sparsity_config`. A weight counts as non-zero when its bits are not all
//! zero, so a `-0.0` is kept and the matrix comes back bit for bit (compressed-tensors'
//! own reader, which only places values where the bits say, reads it the same way).
//!
//! Reading checks everything the layout implies and names the tensor and the fault when
//! something does not hold: the shape against the config, the bitmask's size and its padding
//! bits, the number of values against the bits set, every row offset.

use safetensors::Dtype;
use safetensors::tensor::TensorView;

use super::shards::RawTensor;

/// The suffixes of the four tensors that replace `<prefix>.weight`.
pub(crate) const PARTS: [&str; 4] = ["compressed", "bitmask", "shape", "row_offsets"];

/// The layout's name in `config.json`.
pub const FORMAT: &str = "sparse-bitmask";

/// `name` without `.weight`: the prefix of its four tensors.
pub(crate) fn prefix(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
}

/// The four tensors for the row-major f32 matrix `w` (rows x cols), by full name.
pub(crate) fn compress(prefix: &str, w: &[f32], rows: usize, cols: usize) -> Vec<(String, RawTensor)> {
    let bytes_per_row = cols.div_ceil(8);
    let mut mask = vec![0u8; rows * bytes_per_row];
    let (mut values, mut offsets) = (Vec::new(), Vec::with_capacity(rows * 8));
    let mut count = 0i64;
    for (r, row) in w.chunks_exact(cols.max(1)).take(rows).enumerate() {
        offsets.extend(count.to_le_bytes());
        for (j, v) in row.iter().enumerate() {
            if v.to_bits() != 0 {
                mask[r * bytes_per_row + j / 8] |= 1 << (j % 8);
                values.extend(v.to_le_bytes());
                count += 1;
            }
        }
    }
    if cols == 0 {
        offsets = vec![0; rows * 8];
    }
    let shape: Vec<u8> = [rows as i64, cols as i64].iter().flat_map(|d| d.to_le_bytes()).collect();
    vec![
        (format!("{prefix}.compressed"), RawTensor { dtype: Dtype::F32, shape: vec![count as usize], bytes: values }),
        (format!("{prefix}.bitmask"), RawTensor { dtype: Dtype::U8, shape: vec![rows, bytes_per_row], bytes: mask }),
        (format!("{prefix}.shape"), RawTensor { dtype: Dtype::I64, shape: vec![2], bytes: shape }),
        (format!("{prefix}.row_offsets"), RawTensor { dtype: Dtype::I64, shape: vec![rows], bytes: offsets }),
    ]
}

/// Integers of a 1-D i64 or i32 tensor.
fn ints(view: &TensorView<'_>) -> Result<Vec<i64>, String> {
    match view.dtype() {
        Dtype::I64 => Ok(view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()),
        Dtype::I32 => Ok(view.data().chunks_exact(4).map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes")))).collect()),
        other => Err(format!("is {other:?}, not an integer type")),
    }
}

/// Floats of a 1-D f32, f16 or bf16 tensor, as f32 (exact).
fn floats(view: &TensorView<'_>) -> Result<Vec<f32>, String> {
    let d = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()),
        Dtype::F16 => Ok(d.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        Dtype::BF16 => Ok(d.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        other => Err(format!("is {other:?}, not a float type")),
    }
}

/// The dense row-major f32 matrix of `prefix`'s four tensors (`part` finds each by suffix),
/// which must be `expected` = `[rows, cols]`. The error says which tensor is wrong and how.
pub(crate) fn decompress<'a>(expected: &[usize], mut part: impl FnMut(&str) -> Option<TensorView<'a>>) -> Result<Vec<f32>, String> {
    let mut get = |suffix: &str| part(suffix).ok_or_else(|| format!("`.{suffix}` is missing"));
    let (shape, mask, values, offsets) = (get("shape")?, get("bitmask")?, get("compressed")?, get("row_offsets")?);
    let dims = ints(&shape).map_err(|e| format!("`.shape` {e}"))?;
    if dims.len() != 2 || dims.iter().zip(expected).any(|(&d, &e)| d != e as i64) || expected.len() != 2 {
        return Err(format!("`.shape` is {dims:?} where the config implies {expected:?}"));
    }
    let (rows, cols) = (expected[0], expected[1]);
    let per_row = cols.div_ceil(8);
    if !matches!(mask.dtype(), Dtype::U8 | Dtype::I8) || mask.shape() != [rows, per_row] {
        return Err(format!("`.bitmask` is {:?} {:?} where a {rows} x {cols} matrix needs u8 [{rows}, {per_row}]", mask.dtype(), mask.shape()));
    }
    let values = floats(&values).map_err(|e| format!("`.compressed` {e}"))?;
    let offsets = ints(&offsets).map_err(|e| format!("`.row_offsets` {e}"))?;
    if offsets.len() != rows {
        return Err(format!("`.row_offsets` holds {} offsets for {rows} rows", offsets.len()));
    }
    let bits = mask.data();
    let spare = (per_row * 8 - cols) as u32;
    let mut w = vec![0f32; rows * cols];
    let mut k = 0usize;
    for r in 0..rows {
        if offsets[r] != k as i64 {
            return Err(format!("`.row_offsets` says row {r} starts at value {} but the bits before it count {k}", offsets[r]));
        }
        let row = &bits[r * per_row..(r + 1) * per_row];
        if spare > 0 && row[per_row - 1] >> (8 - spare) != 0 {
            return Err(format!("`.bitmask` row {r} has bits set past column {cols}"));
        }
        for (b, &byte) in row.iter().enumerate() {
            let mut m = byte;
            while m != 0 {
                let j = b * 8 + m.trailing_zeros() as usize;
                let v = *values.get(k).ok_or_else(|| format!("`.compressed` holds {} values but the bitmask sets more", values.len()))?;
                w[r * cols + j] = v;
                k += 1;
                m &= m - 1;
            }
        }
    }
    if k != values.len() {
        return Err(format!("`.compressed` holds {} values but the bitmask sets {k}", values.len()));
    }
    Ok(w)
}
