//! Weight layouts: Hugging Face tensor names, their GGUF counterparts, and llama.cpp's row
//! permutation of the query and key projections.

use candle_core::Tensor;

use crate::config::LlamaConfig;

/// The Hugging Face names and row-major shapes of every tensor a Llama model stores, in
/// forward order. `lm_head.weight` is listed only for untied models.
pub fn tensor_specs(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let d = config.hidden_size;
    let f = config.intermediate_size;
    let q = config.num_attention_heads * config.head_dim();
    let kv = config.n_kv_heads() * config.head_dim();
    let mut specs = vec![("model.embed_tokens.weight".to_string(), vec![config.vocab_size, d])];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        specs.push((format!("{p}.input_layernorm.weight"), vec![d]));
        specs.push((format!("{p}.self_attn.q_proj.weight"), vec![q, d]));
        specs.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, d]));
        specs.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, d]));
        specs.push((format!("{p}.self_attn.o_proj.weight"), vec![d, q]));
        specs.push((format!("{p}.post_attention_layernorm.weight"), vec![d]));
        specs.push((format!("{p}.mlp.gate_proj.weight"), vec![f, d]));
        specs.push((format!("{p}.mlp.up_proj.weight"), vec![f, d]));
        specs.push((format!("{p}.mlp.down_proj.weight"), vec![d, f]));
    }
    specs.push(("model.norm.weight".to_string(), vec![d]));
    if !config.tie_word_embeddings {
        specs.push(("lm_head.weight".to_string(), vec![config.vocab_size, d]));
    }
    specs
}

/// The GGUF (llama.cpp) name of a Hugging Face tensor name, if it is one of a Llama's.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    match hf_name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let idx: usize = idx.parse().ok()?;
    let short = match tail {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{idx}.{short}.weight"))
}

/// Hugging Face layout -> llama.cpp layout of a q/k projection (d_out, d_in), d_out =
/// n_head * head_dim: within each head, rows (j, j + head_dim/2) become adjacent rows
/// (2j, 2j+1), so that interleaved RoPE on the result equals `rotate_half` RoPE on the input.
/// This is `w.reshape(n_head, 2, head_dim/2, d_in).swapaxes(1, 2)` of llama.cpp's converter.
pub fn permute_qk_to_gguf(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (d_out, d_in) = w.dims2()?;
    let hd = d_out / n_head.max(1);
    if n_head == 0 || d_out % n_head != 0 || !hd.is_multiple_of(2) {
        candle_core::bail!("cannot permute a ({d_out}, {d_in}) projection into {n_head} heads");
    }
    // (d_out, d_in) -> (n_head, 2, hd/2, d_in) -> (n_head, hd/2, 2, d_in) -> (d_out, d_in)
    w.reshape((n_head, 2, hd / 2, d_in))?.transpose(1, 2)?.contiguous()?.reshape((d_out, d_in))
}

/// llama.cpp layout -> Hugging Face layout of a q/k projection (d_out, d_in): the inverse of
/// [`permute_qk_to_gguf`], `w.reshape(n_head, head_dim/2, 2, d_in).swapaxes(1, 2)`.
pub fn unpermute_qk_from_gguf(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (d_out, d_in) = w.dims2()?;
    let hd = d_out / n_head.max(1);
    if n_head == 0 || d_out % n_head != 0 || !hd.is_multiple_of(2) {
        candle_core::bail!("cannot un-permute a ({d_out}, {d_in}) projection into {n_head} heads");
    }
    // (d_out, d_in) -> (n_head, hd/2, 2, d_in) -> (n_head, 2, hd/2, d_in) -> (d_out, d_in)
    w.reshape((n_head, hd / 2, 2, d_in))?.transpose(1, 2)?.contiguous()?.reshape((d_out, d_in))
}
