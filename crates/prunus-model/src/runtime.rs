//! Inference with packed sparse linears: the Llama forward on flat f32 buffers, each block
//! linear multiplied in the format its zeros suit ([`prunus_sparse`]), with a key/value cache
//! for generation.
//!
//! [`Runtime::new`] copies the model's weights once and packs every block linear as
//! [`Packing`] says; the embedding, the norms and the output head stay dense (the tied
//! embedding/head is never pruned). [`Runtime::window_logits`] runs one window from position 0
//! (evaluation), [`Runtime::extend`] feeds tokens after those already in a [`KvCache`]
//! (prefill, then one token at a time) and returns the logits of the last one. RMSNorm and
//! RoPE are the hand-written training path's kernels ([`crate::backprop`]); attention over a
//! window is done here for inference: per (head, block of 64 queries), scores only against
//! the keys up to the block's last query, a softmax through a polynomial `exp` the compiler
//! vectorizes (as the SwiGLU's sigmoid), and a block's buffers reused from block to block.
//! Attention against a cache (queries after position 0) is a plain loop per query head.
//! Results do not depend on the thread count. With [`Packing::Dense`] every
//! linear goes through gemm, the dense reference the packed formats are timed against.

use prunus_sparse::{Format, PackedLinear};
use rayon::prelude::*;

use crate::backprop::ops::{self, Operand};
use crate::error::{ModelError, Result};
use crate::layout::BlockSlot;
use crate::llama::LlamaModel;

/// How the block linears are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// Every linear dense (gemm): the reference path.
    Dense,
    /// Each linear in the format [`choose_format`] picks from its zeros.
    Auto,
    /// Every linear in one format (an N:M format must fit every linear).
    All(Format),
}

/// Share of non-zero weights at or above which a linear stays dense. Below it the packed
/// linear is smaller, one token reads fewer bytes (decoding is bound by them), and many tokens
/// unpack it for the dense kernels unless it is sparse enough for the sparse ones
/// ([`prunus_sparse::UNPACK_ABOVE`]); see results/sparse-speed/README.md for the measurements.
pub const DENSE_ABOVE: f64 = 0.75;

/// The format for a linear: dense at [`DENSE_ABOVE`] non-zeros or more; otherwise CSR where it
/// takes fewer bytes than the bitmap (very sparse rows of at most 65536 inputs), else the
/// bitmap. N:M patterns are packed as bitmaps too: with f32 values a bit per weight costs less
/// than a byte per kept weight (2.1 against 2.5 bytes per weight at 2:4), and the bitmap
/// kernels were the faster on every shape measured; `Packing::All(Format::NM { .. })` still
/// packs them as N:M.
pub fn choose_format(weight: &[f32], rows: usize, cols: usize) -> Format {
    let nnz = weight.iter().filter(|v| v.to_bits() != 0).count();
    let density = nnz as f64 / (rows * cols).max(1) as f64;
    if density >= DENSE_ABOVE {
        return Format::Dense;
    }
    let csr = nnz * 6 + (rows + 1) * 4;
    let bitmap = rows * cols.div_ceil(16) * 2 + nnz * 4 + (rows + 1) * 4;
    if cols <= 1 << 16 && csr < bitmap { Format::Csr } else { Format::Bitmap }
}

/// The linears of a block, in forward order.
const LINEARS: [(BlockSlot, &str); 7] = [
    (BlockSlot::QProj, "q_proj"),
    (BlockSlot::KProj, "k_proj"),
    (BlockSlot::VProj, "v_proj"),
    (BlockSlot::OProj, "o_proj"),
    (BlockSlot::GateProj, "gate_proj"),
    (BlockSlot::UpProj, "up_proj"),
    (BlockSlot::DownProj, "down_proj"),
];

struct Block {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// q, k, v, o, gate, up, down.
    linears: Vec<PackedLinear>,
    heads: usize,
    kv_heads: usize,
}

/// A model ready for inference with packed linears.
pub struct Runtime {
    d: usize,
    vocab: usize,
    hd: usize,
    eps: f64,
    theta: f64,
    embed: Vec<f32>,
    head: Option<Vec<f32>>,
    final_norm: Vec<f32>,
    blocks: Vec<Block>,
}

/// Keys and values of the positions seen so far, per block (rotated keys).
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One linear of the runtime: where it is, its format and its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearInfo {
    /// Its decoder block.
    pub block: usize,
    /// `q_proj` ... `down_proj`.
    pub name: &'static str,
    /// The format it is stored in.
    pub format: Format,
    /// Bytes of its packed arrays.
    pub bytes: usize,
    /// Bytes as a dense f32 matrix.
    pub dense_bytes: usize,
}

fn flat(t: &candle_core::Tensor, name: &str) -> Result<Vec<f32>> {
    if t.dtype() != candle_core::DType::F32 {
        return Err(ModelError::Backprop { reason: format!("the runtime needs f32 weights; {name} is {:?}", t.dtype()) });
    }
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

impl Runtime {
    /// Copies `model`'s weights and packs its block linears as `packing` says. An N:M format
    /// that does not fit a linear is an error naming it.
    pub fn new(model: &LlamaModel, packing: Packing) -> Result<Self> {
        let c = model.config();
        let tensors = model.named_tensors();
        let n_blocks = c.num_hidden_layers;
        let d = c.hidden_size;
        let mut blocks = Vec::with_capacity(n_blocks);
        for b in 0..n_blocks {
            let slot = |s: BlockSlot| &tensors[1 + 9 * b + s as usize];
            let mut linears = Vec::with_capacity(7);
            for (s, name) in LINEARS {
                let (tname, t) = slot(s);
                let (rows, cols) = t.dims2()?;
                let w = flat(t, tname)?;
                let format = match packing {
                    Packing::Dense => Format::Dense,
                    Packing::Auto => choose_format(&w, rows, cols),
                    Packing::All(f) => f,
                };
                let packed = PackedLinear::pack(&w, rows, cols, format)
                    .map_err(|e| ModelError::Backprop { reason: format!("block {b} {name} as {format}: {e}") })?;
                linears.push(packed);
            }
            let (heads, kv_heads) = (c.layer_heads(b), c.layer_kv_heads(b));
            if kv_heads == 0 || heads % kv_heads != 0 || linears[0].rows() != heads * c.head_dim() || linears[1].rows() != kv_heads * c.head_dim() {
                return Err(ModelError::Backprop { reason: format!("block {b}: projections do not fit {heads} heads over {kv_heads} groups") });
            }
            blocks.push(Block {
                attn_norm: flat(slot(BlockSlot::AttnNorm).1, &slot(BlockSlot::AttnNorm).0)?,
                ffn_norm: flat(slot(BlockSlot::FfnNorm).1, &slot(BlockSlot::FfnNorm).0)?,
                linears,
                heads,
                kv_heads,
            });
        }
        let embed = flat(tensors[0].1, &tensors[0].0)?;
        let final_norm = flat(tensors[1 + 9 * n_blocks].1, &tensors[1 + 9 * n_blocks].0)?;
        let head = if model.is_tied() { None } else { Some(flat(tensors[2 + 9 * n_blocks].1, &tensors[2 + 9 * n_blocks].0)?) };
        Ok(Runtime { d, vocab: c.vocab_size, hd: c.head_dim(), eps: c.rms_norm_eps, theta: c.rope_theta, embed, head, final_norm, blocks })
    }

    /// Every block linear: its format and sizes.
    pub fn linears(&self) -> Vec<LinearInfo> {
        let mut out = Vec::new();
        for (b, block) in self.blocks.iter().enumerate() {
            for (p, (_, name)) in block.linears.iter().zip(LINEARS) {
                out.push(LinearInfo { block: b, name, format: p.format(), bytes: p.bytes(), dense_bytes: p.rows() * p.cols() * 4 });
            }
        }
        out
    }

    /// How many block linears are in each format, formats in order of first appearance.
    pub fn format_counts(&self) -> Vec<(Format, usize)> {
        let mut counts: Vec<(Format, usize)> = Vec::new();
        for p in self.blocks.iter().flat_map(|b| &b.linears) {
            match counts.iter_mut().find(|(f, _)| *f == p.format()) {
                Some((_, n)) => *n += 1,
                None => counts.push((p.format(), 1)),
            }
        }
        counts
    }

    /// The vocabulary size (the width of a logits row).
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// An empty cache.
    pub fn cache(&self) -> KvCache {
        KvCache { k: vec![Vec::new(); self.blocks.len()], v: vec![Vec::new(); self.blocks.len()], len: 0 }
    }

    /// Logits (seq x vocab) of one window of token ids from position 0.
    pub fn window_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        on_pool(|| {
            let mut cache = self.cache();
            let x = self.run(&mut cache, tokens)?;
            Ok(self.head_rows(&x, tokens.len()))
        })
    }

    /// Feeds `tokens` after the positions in `cache` (which grows by them) and returns the
    /// logits of the last one (vocab values).
    pub fn extend(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(ModelError::Tokens { reason: "no tokens to feed".into() });
        }
        on_pool(|| {
            let x = self.run(cache, tokens)?;
            let t = tokens.len();
            Ok(self.head_rows(&x[(t - 1) * self.d..], 1))
        })
    }

    /// The final norm and the output head on `rows` hidden rows.
    fn head_rows(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (mut xf, mut r) = (vec![0f32; rows * self.d], vec![0f32; rows]);
        ops::rms_norm(&x[..rows * self.d], &self.final_norm, self.eps, &mut xf, &mut r);
        let mut logits = vec![0f32; rows * self.vocab];
        prunus_sparse::dense_forward(self.head.as_deref().unwrap_or(&self.embed), self.vocab, self.d, &xf, rows, &mut logits);
        logits
    }

    /// The hidden states (t x d) after the last block for `tokens` at positions
    /// `cache.len()..`, appending their keys and values to the cache.
    fn run(&self, cache: &mut KvCache, tokens: &[u32]) -> Result<Vec<f32>> {
        let (d, t, start) = (self.d, tokens.len(), cache.len);
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(ModelError::Tokens { reason: format!("token id {bad} is out of range for vocab_size {}", self.vocab) });
        }
        let (cos, sin) = ops::rope_tables(start + t, self.hd, self.theta);
        let half = self.hd / 2;
        let (cos, sin) = (&cos[start * half..], &sin[start * half..]);
        let mut x = vec![0f32; t * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(tokens) {
            row.copy_from_slice(&self.embed[id as usize * d..(id as usize + 1) * d]);
        }
        let mut scratch = Scratch::default();
        for (b, block) in self.blocks.iter().enumerate() {
            self.block(block, &mut x, t, start, cos, sin, &mut cache.k[b], &mut cache.v[b], &mut scratch);
        }
        cache.len += t;
        Ok(x)
    }

    /// One block on `x` (t x d) in place, at positions `start..start + t`; `s` holds the
    /// buffers of the previous block, reused (every one is overwritten before it is read).
    #[allow(clippy::too_many_arguments)]
    fn block(&self, w: &Block, x: &mut [f32], t: usize, start: usize, cos: &[f32], sin: &[f32], kc: &mut Vec<f32>, vc: &mut Vec<f32>, s: &mut Scratch) {
        let (d, hd) = (self.d, self.hd);
        let l = &w.linears;
        let (qw, kw, ff) = (w.heads * hd, w.kv_heads * hd, l[4].rows());
        let size = |b: &mut Vec<f32>, n: usize| b.resize(n, 0.0);
        size(&mut s.h, t * d);
        size(&mut s.r, t);
        size(&mut s.q, t * qw);
        size(&mut s.k, t * kw);
        size(&mut s.v, t * kw);
        size(&mut s.o, t * qw);
        size(&mut s.y, t * d);
        size(&mut s.g, t * ff);
        size(&mut s.u, t * ff);
        size(&mut s.a, t * ff);
        ops::rms_norm(x, &w.attn_norm, self.eps, &mut s.h, &mut s.r);
        l[0].forward(&s.h, t, &mut s.q);
        l[1].forward(&s.h, t, &mut s.k);
        l[2].forward(&s.h, t, &mut s.v);
        ops::rope(&mut s.q, w.heads, hd, t, cos, sin, false);
        ops::rope(&mut s.k, w.kv_heads, hd, t, cos, sin, false);
        kc.extend_from_slice(&s.k);
        vc.extend_from_slice(&s.v);
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        if start == 0 {
            attend_window(&s.q, &s.k, &s.v, t, w.heads, w.kv_heads, hd, scale, &mut s.o);
        } else {
            attend_cached(&s.q, kc, vc, start, t, w.heads, w.kv_heads, hd, scale, &mut s.o);
        }
        l[3].forward(&s.o, t, &mut s.y);
        x.iter_mut().zip(&s.y).for_each(|(a, b)| *a += b);
        ops::rms_norm(x, &w.ffn_norm, self.eps, &mut s.h, &mut s.r);
        l[4].forward(&s.h, t, &mut s.g);
        l[5].forward(&s.h, t, &mut s.u);
        swiglu(&s.g, &s.u, &mut s.a);
        l[6].forward(&s.a, t, &mut s.y);
        x.iter_mut().zip(&s.y).for_each(|(a, b)| *a += b);
    }
}

/// A block's buffers, kept from block to block of one forward.
#[derive(Default)]
struct Scratch {
    h: Vec<f32>,
    r: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    y: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
}

/// Best wall seconds of the same work on two runtimes, timed alternately ([`side_by_side`]),
/// and the median ratios of their rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SideBySide {
    /// Evaluating all the windows once.
    pub eval: [f64; 2],
    /// The prompt's prefill, to the first token's logits.
    pub first_token: [f64; 2],
    /// The greedy tokens decoded one at a time after it.
    pub decode: [f64; 2],
    /// The median over the rounds of the first side's evaluation time over the second's (a
    /// round times both back to back, so a load that drifts over minutes slows both alike).
    pub eval_speedup: f64,
    /// The same for decoding.
    pub decode_speedup: f64,
}

/// Times `sides` alternately on the same work and keeps the best time of each (a shared
/// machine's load only ever slows a run down): every window evaluated from position 0, the
/// best of `eval_repeats`; then `prompt` prefilled and `decode` tokens decoded greedily with
/// the key/value cache, the best of `decode_repeats`; and the median of the rounds' ratios.
pub fn side_by_side(sides: [&Runtime; 2], windows: &[&[u32]], prompt: &[u32], decode: usize, eval_repeats: usize, decode_repeats: usize) -> Result<SideBySide> {
    let inf = [f64::INFINITY; 2];
    let mut best = SideBySide { eval: inf, first_token: inf, decode: inf, eval_speedup: f64::NAN, decode_speedup: f64::NAN };
    let (mut eval_ratios, mut decode_ratios) = (Vec::new(), Vec::new());
    for _ in 0..eval_repeats {
        let mut round = [0.0; 2];
        for (i, rt) in sides.iter().enumerate() {
            let t = std::time::Instant::now();
            for w in windows {
                rt.window_logits(w)?;
            }
            round[i] = t.elapsed().as_secs_f64();
            best.eval[i] = best.eval[i].min(round[i]);
        }
        eval_ratios.push(round[0] / round[1]);
    }
    let argmax = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b }) as u32;
    for _ in 0..decode_repeats {
        let mut round = [0.0; 2];
        for (i, rt) in sides.iter().enumerate() {
            let mut cache = rt.cache();
            let t = std::time::Instant::now();
            let mut logits = rt.extend(&mut cache, prompt)?;
            best.first_token[i] = best.first_token[i].min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            for _ in 0..decode {
                logits = rt.extend(&mut cache, &[argmax(&logits)])?;
            }
            round[i] = t.elapsed().as_secs_f64();
            best.decode[i] = best.decode[i].min(round[i]);
        }
        decode_ratios.push(round[0] / round[1]);
    }
    (best.eval_speedup, best.decode_speedup) = (median(eval_ratios), median(decode_ratios));
    Ok(best)
}

/// The median of `v` (the mean of the middle two for an even count; NaN when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `f` on a thread of the current rayon pool: the forward's many parallel loops are
/// then cheap forks inside the pool, not one blocking hand-over from outside it each (which
/// cost about as much as a decoded token's weights to read).
fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Query rows per task of [`attend_window`].
const QUERY_BLOCK: usize = 64;

/// Causal attention of one window of `t` positions from 0: one task per (query head, block of
/// [`QUERY_BLOCK`] queries), largest blocks first; the block's scores against the keys up to
/// its last query and then its outputs are two products by gemm (on the task's thread, so the
/// thread count changes no bit), and each score row is a softmax over the keys up to its
/// query ([`softmax_prefix`]). Keys past a block's last query are never computed, which
/// halves the work of scoring every query against every key.
#[allow(clippy::too_many_arguments)]
fn attend_window(q: &[f32], k: &[f32], v: &[f32], t: usize, heads: usize, kv_heads: usize, hd: usize, scale: f32, o: &mut [f32]) {
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let per_group = heads / kv_heads;
    let blocks = t.div_ceil(QUERY_BLOCK);
    let out = ops::Shared::new(o);
    (0..heads * blocks).into_par_iter().for_each_init(Vec::new, |s: &mut Vec<f32>, task| {
        let (j, qb) = (task % heads, blocks - 1 - task / heads);
        let g = j / per_group;
        let (r0, r1) = (qb * QUERY_BLOCK, ((qb + 1) * QUERY_BLOCK).min(t));
        let (n, keys) = (r1 - r0, r1);
        s.resize(n * keys, 0.0);
        ops::matmul(n, keys, hd, s, keys, false, Operand::rows(&q[r0 * qw + j * hd..], qw), Operand::transposed(&k[g * hd..], kw), scale, false);
        for (i, row) in s.chunks_exact_mut(keys).enumerate() {
            let p = r0 + i;
            softmax_prefix(&mut row[..=p]);
            row[p + 1..].fill(0.0);
        }
        // SAFETY: this task writes rows r0..r1 of head j's columns only (tasks own distinct
        // (head, block) pairs), and `o` outlives the loop.
        let o = unsafe { out.get() };
        ops::matmul(n, hd, keys, &mut o[r0 * qw + j * hd..], qw, false, Operand::rows(s, keys), Operand::rows(&v[g * hd..], kw), 1.0, false);
    });
}

/// `row` replaced by its softmax: the largest value subtracted, [`exp`], the sum in eight
/// interleaved partial sums added in a fixed order, then each value multiplied by its inverse.
/// Compiled for AVX2 too where the CPU has it: the same operations, wider (no fused
/// multiply-adds), so the same bits.
fn softmax_prefix(row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        fn wide(row: &mut [f32]) {
            softmax_body(row)
        }
        // SAFETY: the CPU has AVX2 (just checked).
        return unsafe { wide(row) };
    }
    softmax_body(row)
}

#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let mut m = [f32::NEG_INFINITY; 8];
    for c in row.chunks(8) {
        for (m, &x) in m.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let m = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sums = [0f32; 8];
    for c in row.chunks_mut(8) {
        for (s, x) in sums.iter_mut().zip(c) {
            *x = exp(*x - m);
            *s += *x;
        }
    }
    let inv = 1.0 / sums.iter().sum::<f32>();
    row.iter_mut().for_each(|x| *x *= inv);
}

/// `e^x` in f32 to a few units in the last place, in plain arithmetic the compiler
/// vectorizes (the library's `expf` is a call per value): `x = n ln 2 + r` with `|r| <= ln 2 /
/// 2`, the degree-6 Taylor polynomial of `e^r` (remainder below 1.3e-7 relative) times `2^n`
/// built from its bits. Inputs are clamped to [-87, 88], where `2^n` is a normal float: below,
/// it returns about 1.6e-38 instead of less (nothing in a softmax or a sigmoid that matters).
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that n * LN2_HI is exact for |n| < 2^8.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n as an integer from the bits of `shifted` (1.5 * 2^23 + n): no float-to-int conversion,
    // which the compiler does not vectorize.
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    p * f32::from_bits(n.wrapping_add(127) << 23)
}

/// `act = gate * sigmoid(gate) * up`, the sigmoid through [`exp`] (with AVX2 where the CPU
/// has it, the same bits as in [`softmax_prefix`]).
fn swiglu(gate: &[f32], up: &[f32], act: &mut [f32]) {
    #[inline(always)]
    fn body(a: &mut [f32], g: &[f32], u: &[f32]) {
        for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
            *a = g / (1.0 + exp(-g)) * u;
        }
    }
    act.par_chunks_mut(4096).zip(gate.par_chunks(4096)).zip(up.par_chunks(4096)).for_each(|((a, g), u)| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn wide(a: &mut [f32], g: &[f32], u: &[f32]) {
                body(a, g, u)
            }
            // SAFETY: the CPU has AVX2 (just checked).
            return unsafe { wide(a, g, u) };
        }
        body(a, g, u)
    });
}

/// Causal attention of `t` queries at positions `start..start + t` against the cached keys
/// and values of positions `0..start + t` (rows of `kv_heads * hd`), one task per query head:
/// each score a [`dot`] product, each row of scores a [`softmax_prefix`] (as in
/// [`attend_window`]), and the output the values added in position order, scaled by their
/// weights. Compiled for AVX2 too where the CPU has it: the same operations, wider (no fused
/// multiply-adds), so the same bits.
#[allow(clippy::too_many_arguments)]
fn attend_cached(q: &[f32], kc: &[f32], vc: &[f32], start: usize, t: usize, heads: usize, kv_heads: usize, hd: usize, scale: f32, o: &mut [f32]) {
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let per_group = heads / kv_heads;
    #[inline(always)]
    fn head(q: &[f32], kc: &[f32], vc: &[f32], start: usize, t: usize, (qw, kw, hd, g, j): (usize, usize, usize, usize, usize), scale: f32) -> Vec<f32> {
        let mut out = vec![0f32; t * hd];
        let mut s = vec![0f32; start + t];
        for i in 0..t {
            let n = start + i + 1;
            let qi = &q[i * qw + j * hd..i * qw + (j + 1) * hd];
            for (p, sp) in s[..n].iter_mut().enumerate() {
                *sp = dot(qi, &kc[p * kw + g * hd..p * kw + (g + 1) * hd]) * scale;
            }
            softmax_prefix(&mut s[..n]);
            let oi = &mut out[i * hd..(i + 1) * hd];
            for (p, &w) in s[..n].iter().enumerate() {
                for (a, b) in oi.iter_mut().zip(&vc[p * kw + g * hd..p * kw + (g + 1) * hd]) {
                    *a += w * b;
                }
            }
        }
        out
    }
    let outs: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|j| {
            let shape = (qw, kw, hd, j / per_group, j);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                fn wide(q: &[f32], kc: &[f32], vc: &[f32], start: usize, t: usize, shape: (usize, usize, usize, usize, usize), scale: f32) -> Vec<f32> {
                    head(q, kc, vc, start, t, shape, scale)
                }
                // SAFETY: the CPU has AVX2 (just checked).
                return unsafe { wide(q, kc, vc, start, t, shape, scale) };
            }
            head(q, kc, vc, start, t, shape, scale)
        })
        .collect();
    for (j, out) in outs.iter().enumerate() {
        for i in 0..t {
            o[i * qw + j * hd..i * qw + (j + 1) * hd].copy_from_slice(&out[i * hd..(i + 1) * hd]);
        }
    }
}

/// `sum_i a[i] * b[i]` in eight interleaved partial sums (lane l takes the products of i = l
/// mod 8, in order), then the lanes halved three times (l plus l + 4, then l + 2, l + 1): a
/// fixed order the compiler vectorizes, instead of one chain of dependent adds.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let (x, y): (&[f32; 8], &[f32; 8]) = (x.try_into().expect("8"), y.try_into().expect("8"));
        for l in 0..8 {
            sums[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        sums[l] += x * y;
    }
    let half = [sums[0] + sums[4], sums[1] + sums[5], sums[2] + sums[6], sums[3] + sums[7]];
    (half[0] + half[2]) + (half[1] + half[3])
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_rounds_odd_even_and_none() {
        assert_eq!(median(vec![1.3, 0.9, 1.1]), 1.1);
        assert_eq!(median(vec![2.0, 1.0, 4.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
