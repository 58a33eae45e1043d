//! The real default model (SmolLM2-135M-Instruct, Q4_1 GGUF), when it is on disk: config,
//! parameter count, a sane perplexity on English text, and throughput.

use crate::common;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use prunus_model::{LlamaModel, inspect_gguf};

const TEXT: &str = "The history of the city begins in the early medieval period, when a small settlement grew up \
around a river crossing. Merchants travelled along the road from the coast, and by the twelfth century the town \
had a market, a church and a bridge built of stone. The population grew slowly over the following centuries. \
During the industrial revolution, factories were built along the river, and the railway arrived in the middle of \
the nineteenth century. Many of the old houses in the centre were replaced by new buildings, but the church and \
the market square survived. Today the city is known for its university, its museums and its parks. The river is \
still an important part of life in the city: people walk along its banks, and boats carry visitors past the old \
warehouses, which have been turned into shops, restaurants and apartments. The climate is mild, with warm summers \
and cool winters, and rain falls throughout the year. The economy depends on education, research, tourism and \
services, and the city is connected to the capital by a fast train that takes less than two hours. In the summer, \
a music festival attracts thousands of visitors from around the world, and the streets are filled with people \
listening to concerts, eating in the open air and enjoying the long evenings.";

/// A minimal byte-level BPE with the GGUF's vocabulary and merges (GPT-2 style), enough
/// for plain ASCII English text. The real tokenizer lives in prunus-data.
struct Bpe {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_char: Vec<char>,
}

impl Bpe {
    fn from_gguf(md: &HashMap<String, Value>) -> Bpe {
        let strings = |k: &str| match &md[k] {
            Value::Array(a) => a.iter().map(|v| v.to_string().unwrap().clone()).collect::<Vec<_>>(),
            _ => panic!("{k}"),
        };
        let vocab = strings("tokenizer.ggml.tokens").into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        let ranks = strings("tokenizer.ggml.merges")
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let (a, b) = m.split_once(' ').unwrap();
                ((a.to_string(), b.to_string()), i)
            })
            .collect();
        let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        let mut byte_char = vec![' '; 256];
        for (b, c) in bs.iter().zip(&cs) {
            byte_char[*b as usize] = char::from_u32(*c).unwrap();
        }
        Bpe { vocab, ranks, byte_char }
    }

    fn pieces(text: &str) -> Vec<String> {
        let c: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        let run = |mut j: usize, f: &dyn Fn(char) -> bool| {
            while j < c.len() && f(c[j]) {
                j += 1;
            }
            j
        };
        let punct = |x: char| !x.is_whitespace() && !x.is_alphabetic() && !x.is_numeric();
        while i < c.len() {
            let start = i;
            let body = if c[i] == ' ' && i + 1 < c.len() && !c[i + 1].is_whitespace() && !c[i + 1].is_numeric() { i + 1 } else { i };
            let x = c[body];
            i = if x.is_alphabetic() {
                run(body, &|y| y.is_alphabetic())
            } else if x.is_numeric() {
                body + 1
            } else if x.is_whitespace() {
                let e = run(body, &|y| y.is_whitespace());
                if e < c.len() && e - body > 1 { e - 1 } else { e }
            } else {
                run(body, &punct)
            };
            out.push(c[start..i].iter().collect());
        }
        out
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        for piece in Self::pieces(text) {
            let mut syms: Vec<String> = piece.bytes().map(|b| self.byte_char[b as usize].to_string()).collect();
            loop {
                let best = (0..syms.len().saturating_sub(1))
                    .filter_map(|k| self.ranks.get(&(syms[k].clone(), syms[k + 1].clone())).map(|r| (*r, k)))
                    .min();
                let Some((_, k)) = best else { break };
                let merged = format!("{}{}", syms[k], syms[k + 1]);
                syms.splice(k..k + 2, [merged]);
            }
            ids.extend(syms.iter().map(|s| self.vocab[s]));
        }
        ids
    }
}

#[test]
fn smollm2_loads_and_predicts_english() {
    let path = common::real_model_path();
    let summary = inspect_gguf(&path).unwrap();
    assert_eq!(summary.architecture, "llama");
    assert_eq!(summary.n_params, 134_515_008);
    assert!(summary.dtype_counts.contains(&("Q4_1".to_string(), 210)));

    let t0 = Instant::now();
    let model = LlamaModel::from_gguf(&path, &Device::Cpu).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    let c = model.config();
    assert_eq!(
        (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.n_kv_heads(), c.head_dim(), c.vocab_size),
        (30, 576, 1536, 9, 3, 64, 49152)
    );
    assert_eq!(c.rope_theta, 100_000.0);
    assert!(model.is_tied());
    assert_eq!(model.n_params(), 134_515_008);
    assert_eq!(summary.config.as_ref(), Some(c));

    let md = Content::read(&mut BufReader::new(File::open(&path).unwrap())).unwrap().metadata;
    let ids = Bpe::from_gguf(&md).encode(TEXT);
    assert!(ids.len() > 200, "{}", ids.len());
    let n = ids.len();
    let toks = Tensor::from_vec(ids.clone(), (1, n), &Device::Cpu).unwrap();
    let nll = model.nll(&toks).unwrap()[0];
    let ppl = (nll / (n - 1) as f64).exp();
    eprintln!("smollm2: loaded in {load_s:.2} s; {n} tokens of English, perplexity {ppl:.2}");
    assert!((5.0..50.0).contains(&ppl), "perplexity {ppl}");
    // The same text with its tokens shuffled is far less likely.
    let mut shuffled = ids.clone();
    let mut rng = prunus_core::rng::SplitMix64::new(3);
    for i in (1..n).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let sh = Tensor::from_vec(shuffled, (1, n), &Device::Cpu).unwrap();
    let ppl_sh = (model.nll(&sh).unwrap()[0] / (n - 1) as f64).exp();
    assert!(ppl_sh > 5.0 * ppl, "{ppl_sh} vs {ppl}");

    // Throughput on a batch of 4 windows of 512 tokens.
    let batch: Vec<u32> = ids.iter().cycle().take(4 * 512).copied().collect();
    let batch = Tensor::from_vec(batch, (4, 512), &Device::Cpu).unwrap();
    let t0 = Instant::now();
    let nll4 = model.nll(&batch).unwrap();
    let s = t0.elapsed().as_secs_f64();
    eprintln!("smollm2: nll on 4 x 512 tokens in {s:.2} s = {:.0} tokens/s", 2048.0 / s);
    assert!(nll4.iter().all(|v| v.is_finite()));
}
