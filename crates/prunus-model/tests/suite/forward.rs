//! The forward pass against a naive per-head, per-position reference, and the
//! `PrunableModel` view against the full forward.

use crate::common;

use std::collections::HashMap;

use candle_core::{D, Device, Tensor};
use common::{max_abs_diff, tokens};
use prunus_core::PrunableModel;
use prunus_model::{LlamaConfig, LlamaModel, ModelError};

/// Row-major weights of a model as f64 vectors, by Hugging Face name.
fn weights(model: &LlamaModel) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    model
        .named_tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, (t.dims().to_vec(), v.into_iter().map(f64::from).collect()))
        })
        .collect()
}

fn matvec(w: &(Vec<usize>, Vec<f64>), x: &[f64]) -> Vec<f64> {
    let (d_out, d_in) = (w.0[0], w.0[1]);
    assert_eq!(x.len(), d_in);
    (0..d_out).map(|o| (0..d_in).map(|i| w.1[o * d_in + i] * x[i]).sum()).collect()
}

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// rotate_half RoPE of one head vector at position `pos`.
fn rope(x: &[f64], pos: usize, theta: f64) -> Vec<f64> {
    let hd = x.len();
    let half = hd / 2;
    let mut out = vec![0.0; hd];
    for i in 0..half {
        let a = pos as f64 / theta.powf(2.0 * i as f64 / hd as f64);
        let (s, c) = a.sin_cos();
        out[i] = x[i] * c - x[i + half] * s;
        out[i + half] = x[i + half] * c + x[i] * s;
    }
    out
}

/// Logits of one sequence, computed position by position and head by head in f64.
fn naive_logits(model: &LlamaModel, toks: &[u32]) -> Vec<Vec<f64>> {
    let c = model.config();
    let w = weights(model);
    let (d, h, kvh, hd) = (c.hidden_size, c.num_attention_heads, c.n_kv_heads(), c.head_dim());
    let rep = h / kvh;
    let emb = &w["model.embed_tokens.weight"].1;
    let mut x: Vec<Vec<f64>> = toks.iter().map(|&t| emb[t as usize * d..(t as usize + 1) * d].to_vec()).collect();
    let seq = toks.len();
    for l in 0..c.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        let hn: Vec<Vec<f64>> = x.iter().map(|r| rmsnorm(r, &w[&p("input_layernorm.weight")].1, c.rms_norm_eps)).collect();
        let q: Vec<Vec<f64>> = hn.iter().map(|r| matvec(&w[&p("self_attn.q_proj.weight")], r)).collect();
        let k: Vec<Vec<f64>> = hn.iter().map(|r| matvec(&w[&p("self_attn.k_proj.weight")], r)).collect();
        let v: Vec<Vec<f64>> = hn.iter().map(|r| matvec(&w[&p("self_attn.v_proj.weight")], r)).collect();
        let mut attn = vec![vec![0.0; h * hd]; seq];
        for head in 0..h {
            let g = head / rep; // the KV head this query head reads (repeat_kv)
            for t in 0..seq {
                let qt = rope(&q[t][head * hd..(head + 1) * hd], t, c.rope_theta);
                // causal: only s <= t
                let scores: Vec<f64> = (0..=t)
                    .map(|s| {
                        let ks = rope(&k[s][g * hd..(g + 1) * hd], s, c.rope_theta);
                        qt.iter().zip(&ks).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (s, es) in e.iter().enumerate() {
                    for i in 0..hd {
                        attn[t][head * hd + i] += es / z * v[s][g * hd + i];
                    }
                }
            }
        }
        for t in 0..seq {
            let o = matvec(&w[&p("self_attn.o_proj.weight")], &attn[t]);
            for i in 0..d {
                x[t][i] += o[i];
            }
            let hn = rmsnorm(&x[t], &w[&p("post_attention_layernorm.weight")].1, c.rms_norm_eps);
            let g = matvec(&w[&p("mlp.gate_proj.weight")], &hn);
            let u = matvec(&w[&p("mlp.up_proj.weight")], &hn);
            let a: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let dn = matvec(&w[&p("mlp.down_proj.weight")], &a);
            for i in 0..d {
                x[t][i] += dn[i];
            }
        }
    }
    let head = if model.is_tied() { &w["model.embed_tokens.weight"] } else { &w["lm_head.weight"] };
    x.iter().map(|r| matvec(head, &rmsnorm(r, &w["model.norm.weight"].1, c.rms_norm_eps))).collect()
}

#[test]
fn forward_matches_naive_gqa_causal_reference() {
    for (config, seed) in [(LlamaConfig::tiny(), 1), (LlamaConfig::new(50, 24, 40, 2, 6, 3, false), 2), (LlamaConfig::new(40, 16, 24, 1, 2, 2, true), 3)] {
        let model = LlamaModel::synthetic(config.clone(), seed).unwrap();
        let toks = tokens(3, 11, config.vocab_size, seed);
        let logits = model.forward(&toks).unwrap();
        assert_eq!(logits.dims(), &[3, 11, config.vocab_size]);
        let rows = toks.to_vec2::<u32>().unwrap();
        let got = logits.to_vec3::<f32>().unwrap();
        for (i, r) in rows.iter().enumerate() {
            let want = naive_logits(&model, r);
            for t in 0..r.len() {
                for j in 0..config.vocab_size {
                    let diff = (got[i][t][j] as f64 - want[t][j]).abs();
                    assert!(diff < 1e-4, "config {config:?} sample {i} pos {t} vocab {j}: {} vs {}", got[i][t][j], want[t][j]);
                }
            }
        }
    }
}

#[test]
fn future_tokens_do_not_change_past_logits() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap();
    let a = tokens(1, 12, 64, 1);
    let mut v = a.to_vec2::<u32>().unwrap();
    for x in &mut v[0][6..12] {
        *x = (*x + 5) % 64;
    }
    let b = Tensor::new(v, &Device::Cpu).unwrap();
    let la = model.forward(&a).unwrap().narrow(1, 0, 6).unwrap();
    let lb = model.forward(&b).unwrap().narrow(1, 0, 6).unwrap();
    assert_eq!(max_abs_diff(&la, &lb), 0.0);
}

#[test]
fn blockwise_run_equals_full_forward() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let toks = tokens(2, 9, 64, 4);
    let full = model.forward(&toks).unwrap();
    let mut h = PrunableModel::embed(&model, &toks).unwrap();
    for b in 0..model.n_blocks() {
        h = PrunableModel::block_forward(&model, b, &h, None).unwrap();
    }
    let logits = model.logits(&model.final_norm(&h).unwrap()).unwrap();
    assert_eq!(max_abs_diff(&full, &logits), 0.0);
}

#[test]
fn capture_sites_get_flattened_inputs() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let (n, seq) = (2, 5);
    let h = PrunableModel::embed(&model, &tokens(n, seq, 64, 5)).unwrap();
    let mut seen: Vec<(String, Vec<usize>)> = Vec::new();
    let mut cap = |site: &str, x: &Tensor| -> prunus_core::Result<()> {
        seen.push((site.to_string(), x.dims().to_vec()));
        Ok(())
    };
    let with = PrunableModel::block_forward(&model, 0, &h, Some(&mut cap)).unwrap();
    let without = PrunableModel::block_forward(&model, 0, &h, None).unwrap();
    assert_eq!(max_abs_diff(&with, &without), 0.0);
    let want: Vec<(String, Vec<usize>)> = vec![
        ("attn_in".into(), vec![n * seq, 32]),
        ("attn_out".into(), vec![n * seq, 32]),
        ("mlp_in".into(), vec![n * seq, 32]),
        ("mlp_act".into(), vec![n * seq, 48]),
    ];
    assert_eq!(seen, want);
    // Every linear's d_in matches its site's width.
    for li in model.linears(0) {
        let (_, dims) = seen.iter().find(|(s, _)| *s == li.input_site).unwrap();
        assert_eq!(dims[1], li.d_in, "{}", li.name);
    }
    let names: Vec<String> = model.linears(1).into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]);
}

#[test]
fn capture_only_pass_hands_every_site_the_same_inputs() {
    let model = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 3, false), 4).unwrap();
    let h = PrunableModel::embed(&model, &tokens(2, 7, 50, 6)).unwrap();
    for b in 0..model.n_blocks() {
        let mut full: Vec<(String, Vec<f32>)> = Vec::new();
        PrunableModel::block_forward(&model, b, &h, Some(&mut |site: &str, x: &Tensor| {
            full.push((site.to_string(), x.flatten_all()?.to_vec1::<f32>()?));
            Ok(())
        }))
        .unwrap();
        let mut part: Vec<(String, Vec<f32>)> = Vec::new();
        PrunableModel::block_capture(&model, b, &h, &mut |site: &str, x: &Tensor| {
            part.push((site.to_string(), x.flatten_all()?.to_vec1::<f32>()?));
            Ok(())
        })
        .unwrap();
        assert_eq!(full.len(), 4);
        // Bit for bit: the statistics of every method come from these.
        let bits = |v: &[(String, Vec<f32>)]| v.iter().map(|(s, x)| (s.clone(), x.iter().map(|f| f.to_bits()).collect::<Vec<_>>())).collect::<Vec<_>>();
        assert_eq!(bits(&full), bits(&part), "block {b}");
    }
    assert!(PrunableModel::block_capture(&model, 9, &h, &mut |_: &str, _: &Tensor| Ok(())).is_err());
}

#[test]
fn capture_errors_propagate() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let h = PrunableModel::embed(&model, &tokens(1, 4, 64, 5)).unwrap();
    let mut cap = |site: &str, _x: &Tensor| -> prunus_core::Result<()> {
        if site == "mlp_in" { Err(prunus_core::Error::Invalid("stop".into())) } else { Ok(()) }
    };
    let err = PrunableModel::block_forward(&model, 0, &h, Some(&mut cap)).unwrap_err();
    assert!(err.to_string().contains("stop"));
}

#[test]
fn weights_can_be_read_and_replaced() {
    let mut model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let w = model.weight(1, "gate_proj").unwrap();
    assert_eq!(w.dims(), &[48, 32]);
    let zeros = w.zeros_like().unwrap();
    model.set_weight(1, "gate_proj", zeros).unwrap();
    let rep = model.sparsity_report().unwrap();
    let g = rep.iter().find(|r| r.block == 1 && r.name == "gate_proj").unwrap();
    assert_eq!((g.zeros, g.numel), (48 * 32, 48 * 32));
    assert_eq!(g.fraction(), 1.0);
    assert!(rep.iter().filter(|r| !(r.block == 1 && r.name == "gate_proj")).all(|r| r.zeros == 0));
    let err = model.set_weight(0, "q_proj", Tensor::zeros((31, 32), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap_err();
    assert!(matches!(err, prunus_core::Error::Shape { .. }), "{err}");
    assert!(model.weight(0, "nope").is_err());
    assert!(model.weight(2, "q_proj").is_err());
    assert!(PrunableModel::block_forward(&model, 9, &Tensor::zeros((1, 2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), None).is_err());
}

#[test]
fn nll_matches_log_softmax_of_logits() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 11).unwrap();
    let toks = tokens(3, 10, 64, 12);
    let logits = model.forward(&toks).unwrap();
    let lp = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec3::<f32>().unwrap();
    let ids = toks.to_vec2::<u32>().unwrap();
    let nll = model.nll(&toks).unwrap();
    let per = model.token_nll(&toks).unwrap();
    assert_eq!(per.dims(), &[3, 9]);
    for i in 0..3 {
        let want: f64 = (0..9).map(|t| -(lp[i][t][ids[i][t + 1] as usize] as f64)).sum();
        assert!((nll[i] - want).abs() < 1e-4, "{} vs {want}", nll[i]);
    }
}

#[test]
fn param_counts_add_up() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 0).unwrap();
    let pc = model.param_counts();
    let per_block = 32 * 32 + 2 * 16 * 32 + 32 * 32 + 3 * 48 * 32;
    assert_eq!(pc.per_block_linears, vec![per_block; 2]);
    assert_eq!(pc.embedding, 64 * 32);
    assert_eq!(pc.lm_head, 0);
    assert_eq!(pc.norms, 32 * 5);
    assert_eq!(pc.total, 64 * 32 + 2 * per_block + 32 * 5);
    assert_eq!(model.n_params(), pc.total);
    let untied = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 2, 4, 2, false), 0).unwrap();
    assert_eq!(untied.n_params(), pc.total + 64 * 32);
}

#[test]
fn synthetic_is_deterministic() {
    let a = LlamaModel::synthetic(LlamaConfig::tiny(), 5).unwrap();
    let b = LlamaModel::synthetic(LlamaConfig::tiny(), 5).unwrap();
    let c = LlamaModel::synthetic(LlamaConfig::tiny(), 6).unwrap();
    let t = tokens(1, 4, 64, 0);
    assert_eq!(max_abs_diff(&a.forward(&t).unwrap(), &b.forward(&t).unwrap()), 0.0);
    assert!(max_abs_diff(&a.forward(&t).unwrap(), &c.forward(&t).unwrap()) > 0.0);
}

#[test]
fn differentiable_mode_matches_fused() {
    let mut model = LlamaModel::synthetic(LlamaConfig::tiny(), 8).unwrap();
    let t = tokens(2, 7, 64, 9);
    let fused = model.forward(&t).unwrap();
    model.set_differentiable(true);
    let slow = model.forward(&t).unwrap();
    assert!(max_abs_diff(&fused, &slow) < 1e-4);
}

#[test]
fn fused_attention_matches_the_composed_ops_over_many_position_blocks() {
    // The fused kernel works in blocks of 64 query positions: windows of 1, 64, 65 and 150
    // tokens (one partial block, one full, one full plus one row, two full plus a partial),
    // grouped-query attention with 3 query heads per key/value head.
    let mut model = LlamaModel::synthetic(LlamaConfig::new(97, 48, 64, 2, 6, 2, false), 4).unwrap();
    for seq in [1, 64, 65, 150] {
        let t = tokens(2, seq, 97, seq as u64);
        model.set_differentiable(false);
        let fused = model.forward(&t).unwrap();
        model.set_differentiable(true);
        let composed = model.forward(&t).unwrap();
        let scale = composed.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max_abs_diff(&fused, &composed) < 1e-5 * scale.max(1.0), "seq {seq}: {}", max_abs_diff(&fused, &composed));
    }
}

#[test]
fn bad_tokens_are_errors() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 8).unwrap();
    let dev = Device::Cpu;
    let cases = [
        Tensor::new(&[[1u32, 64]], &dev).unwrap(),
        Tensor::new(&[1u32, 2], &dev).unwrap(),
        Tensor::new(&[[1f32, 2.]], &dev).unwrap(),
        Tensor::new(&[[1i64, -2]], &dev).unwrap(),
        Tensor::zeros((0, 3), candle_core::DType::U32, &dev).unwrap(),
    ];
    for t in cases {
        let e = model.forward(&t).unwrap_err();
        assert!(matches!(e, ModelError::Tokens { .. }), "{e}");
    }
    assert!(model.nll(&Tensor::new(&[[3u32]], &dev).unwrap()).is_err());
    // i64 ids in range are accepted.
    assert!(model.forward(&Tensor::new(&[[1i64, 2]], &dev).unwrap()).is_ok());
}

#[test]
fn config_validation_names_the_field() {
    let mut c = LlamaConfig::tiny();
    c.num_key_value_heads = Some(3);
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("num_key_value_heads") && e.contains('3'), "{e}");
    let mut c = LlamaConfig::tiny();
    c.model_type = "gemma3".into();
    assert!(c.validate().unwrap_err().to_string().contains("gemma3"));
    let mut c = LlamaConfig::tiny();
    c.hidden_size = 30;
    assert!(c.validate().unwrap_err().to_string().contains("hidden_size"));
    let mut c = LlamaConfig::tiny();
    c.rope_scaling = Some(serde_json::json!({"rope_type": "llama3"}));
    assert!(c.validate().unwrap_err().to_string().contains("rope_scaling"));
    let c: LlamaConfig = serde_json::from_str(
        r#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 4, "num_hidden_layers": 1,
            "num_attention_heads": 2, "eos_token_id": [1, 2], "some_unknown_field": 3}"#,
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!((c.n_kv_heads(), c.head_dim(), c.tie_word_embeddings), (2, 4, false));
}
