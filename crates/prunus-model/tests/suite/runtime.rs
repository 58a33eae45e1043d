//! The packed-sparse runtime: its logits equal the candle forward's on the same pruned model
//! (within 1e-5 of the window's largest logit) for every format, pattern and odd shape, in
//! windows shorter and longer than a block of queries and a tile of tokens; a
//! key/value cache fed token by token gives the last logits of the whole window; results are
//! bit-identical with 1 and 2 threads; an N:M format that does not fit is refused by name.

use crate::common;

use candle_core::Tensor;
use common::tokens;
use prunus_model::runtime::{Packing, Runtime, choose_format};
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_sparse::Format;

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<u32>().unwrap()
}

/// `model` with every block linear pruned: the `n` smallest of each group of `m` when `m > 0`,
/// else a seeded `share` of each row's weights zeroed.
fn pruned(model: &LlamaModel, n: usize, m: usize, share: f64, seed: u64) -> LlamaModel {
    let mut out = model.clone();
    let mut rng = prunus_core::rng::SplitMix64::new(seed);
    for (name, t) in model.named_tensors() {
        if !name.contains(".layers.") || t.dims().len() != 2 {
            continue;
        }
        let mut w = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        if m > 0 {
            for g in w.chunks_exact_mut(m) {
                let mut idx: Vec<usize> = (0..m).collect();
                idx.sort_by(|a, b| g[*a].abs().total_cmp(&g[*b].abs()).then(a.cmp(b)));
                idx[..n].iter().for_each(|&i| g[i] = 0.0);
            }
        } else {
            w.iter_mut().for_each(|v| {
                if f64::from(rng.next_f32()) < share {
                    *v = 0.0
                }
            });
        }
        out.set_tensor(&name, &Tensor::from_vec(w, t.dims(), t.device()).unwrap()).unwrap();
    }
    out
}

/// The candle forward's logits of one window, flat.
fn reference(model: &LlamaModel, window: &[u32]) -> Vec<f32> {
    let t = Tensor::from_vec(window.to_vec(), (1, window.len()), &candle_core::Device::Cpu).unwrap();
    model.forward(&t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(scale > 0.0 && diff <= 1e-5 * scale, "{what}: logits differ by {diff:e} (largest {scale:e})");
}

#[test]
fn every_format_gives_the_candle_logits_on_odd_shapes() {
    // Hidden 40 and MLP 56: rows and columns that are not multiples of 16 or 64; grouped
    // queries (4 heads over 2 groups); tied and untied heads.
    for (config, seed) in [(LlamaConfig::new(50, 40, 56, 2, 4, 2, true), 1), (LlamaConfig::new(61, 24, 40, 3, 6, 3, false), 2)] {
        let dense = LlamaModel::synthetic(config, seed).unwrap();
        // 150 tokens: attention in blocks of 64 queries, the sparse kernels in a tile of 128
        // tokens and a part tile.
        for window in [ids(&tokens(1, 23, dense.config().vocab_size, seed)), ids(&tokens(1, 150, dense.config().vocab_size, seed + 10))] {
            for (label, model, formats) in [
                ("70% unstructured", pruned(&dense, 0, 0, 0.7, 3), vec![Format::Dense, Format::Csr, Format::Bitmap]),
                ("2:4", pruned(&dense, 2, 4, 0.0, 0), vec![Format::NM { n: 2, m: 4 }, Format::Csr, Format::Bitmap]),
                ("4:8", pruned(&dense, 4, 8, 0.0, 0), vec![Format::NM { n: 4, m: 8 }, Format::Bitmap]),
            ] {
                let want = reference(&model, &window);
                for packing in formats.into_iter().map(Packing::All).chain([Packing::Dense, Packing::Auto]) {
                    let rt = Runtime::new(&model, packing).unwrap();
                    close(&rt.window_logits(&window).unwrap(), &want, &format!("{label} {packing:?} {} tokens", window.len()));
                }
            }
        }
    }
}

#[test]
fn a_cache_fed_token_by_token_gives_the_windows_last_logits() {
    let model = pruned(&LlamaModel::synthetic(LlamaConfig::new(50, 40, 56, 2, 4, 2, true), 4).unwrap(), 2, 4, 0.0, 0);
    let window = ids(&tokens(1, 19, 50, 5));
    let vocab = 50;
    for packing in [Packing::Dense, Packing::Auto] {
        let rt = Runtime::new(&model, packing).unwrap();
        let full = rt.window_logits(&window).unwrap();
        // A prompt of 7, then one token at a time: each step's logits are the window's row.
        let mut cache = rt.cache();
        let first = rt.extend(&mut cache, &window[..7]).unwrap();
        close(&first, &full[6 * vocab..7 * vocab], "after the prompt");
        for p in 7..window.len() {
            let step = rt.extend(&mut cache, &window[p..=p]).unwrap();
            close(&step, &full[p * vocab..(p + 1) * vocab], &format!("{packing:?} position {p}"));
        }
        assert_eq!(cache.len(), window.len());
        assert!(rt.extend(&mut cache, &[]).is_err());
        assert!(rt.extend(&mut rt.cache(), &[50]).unwrap_err().to_string().contains("token id 50"));
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let model = pruned(&LlamaModel::synthetic(LlamaConfig::new(50, 40, 56, 2, 4, 2, true), 6).unwrap(), 0, 0, 0.6, 7);
    let window = ids(&tokens(1, 150, 50, 8));
    let run = |threads: usize, packing: Packing| {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            let rt = Runtime::new(&model, packing).unwrap();
            let mut cache = rt.cache();
            let mut out = rt.window_logits(&window).unwrap();
            out.extend(rt.extend(&mut cache, &window[..130]).unwrap());
            out.extend(rt.extend(&mut cache, &window[130..131]).unwrap());
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        })
    };
    for packing in [Packing::Dense, Packing::All(Format::Csr), Packing::All(Format::Bitmap)] {
        assert_eq!(run(1, packing), run(2, packing), "{packing:?}");
    }
}

#[test]
fn formats_are_chosen_from_the_zeros_and_misfits_are_refused() {
    let dense = LlamaModel::synthetic(LlamaConfig::new(50, 40, 56, 2, 4, 2, true), 9).unwrap();
    let formats = |m: &LlamaModel| Runtime::new(m, Packing::Auto).unwrap().linears().into_iter().map(|l| l.format).collect::<Vec<_>>();
    assert!(formats(&dense).iter().all(|f| *f == Format::Dense));
    // N:M patterns go to the bitmap (smaller with f32 values), very sparse rows to CSR,
    // barely pruned linears stay dense.
    assert!(formats(&pruned(&dense, 2, 4, 0.0, 0)).iter().all(|f| *f == Format::Bitmap));
    assert!(formats(&pruned(&dense, 4, 8, 0.0, 0)).iter().all(|f| *f == Format::Bitmap));
    assert!(formats(&pruned(&dense, 0, 0, 0.5, 1)).iter().all(|f| *f == Format::Bitmap));
    assert!(formats(&pruned(&dense, 0, 0, 0.97, 1)).iter().all(|f| *f == Format::Csr));
    assert!(formats(&pruned(&dense, 0, 0, 0.1, 1)).iter().all(|f| *f == Format::Dense));
    let rt = Runtime::new(&pruned(&dense, 2, 4, 0.0, 0), Packing::Auto).unwrap();
    for l in rt.linears() {
        assert!(l.bytes < l.dense_bytes, "{l:?}");
    }
    assert_eq!(choose_format(&[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0], 2, 4), Format::Bitmap);
    assert_eq!(choose_format(&[1.0, 1.0, 1.0, 0.0], 1, 4), Format::Dense);
    for l in Runtime::new(&pruned(&dense, 2, 4, 0.0, 0), Packing::All(Format::NM { n: 2, m: 4 })).unwrap().linears() {
        assert_eq!(l.format, Format::NM { n: 2, m: 4 });
    }
    let e = Runtime::new(&dense, Packing::All(Format::NM { n: 2, m: 4 })).err().expect("an error").to_string();
    assert!(e.contains("block 0 q_proj as 2:4") && e.contains("non-zero weights where 2:4 allows 2"), "{e}");
}
