//! The tokenizer readers under prunus-fuzz (see its docs): a Hugging Face `tokenizer.json`
//! and the tokenizer rebuilt from GGUF metadata. Regression inputs live in
//! `tests/fuzz/<target>/`; `PRUNUS_FUZZ_SECONDS=600 cargo test --release -p prunus-data
//! --test fuzz -- <target>` is a campaign.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};

fn corpus(target: &str) -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("tests/fuzz").join(target)
}

/// A small byte-level BPE vocabulary in GPT-2's alphabet: the 256 byte symbols and a few
/// merges, with two control tokens.
fn small_vocab() -> (Vec<String>, Vec<String>) {
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
    let bytes: Vec<char> = (b'!'..=b'~').map(char::from).chain(('\u{a1}'..='\u{ac}').chain('\u{ae}'..='\u{ff}')).chain((0u32..68).map(|i| char::from_u32(256 + i).unwrap())).collect();
    tokens.extend(bytes.iter().map(|c| c.to_string()));
    let merges = vec!["t h".to_string(), "th e".to_string(), "Ġ t".to_string(), "a n".to_string()];
    tokens.extend(["th", "the", "Ġt", "an"].iter().map(|s| s.to_string()));
    (tokens, merges)
}

fn gguf_seed(path: &Path) -> Vec<u8> {
    let (tokens, merges) = small_vocab();
    let types: Vec<Value> = (0..tokens.len()).map(|i| Value::I32(if i < 2 { 3 } else { 1 })).collect();
    let md = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect())),
        ("tokenizer.ggml.merges", Value::Array(merges.iter().map(|m| Value::String(m.clone())).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
    ];
    let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut std::fs::File::create(path).unwrap(), &refs, &[]).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn fuzz_gguf_tokenizer() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("tok.gguf");
    let seeds = vec![gguf_seed(&path)];
    prunus_fuzz::run("gguf-tokenizer", &corpus("gguf-tokenizer"), &seeds, |data| {
        std::fs::write(&path, data).unwrap();
        let tok = prunus_data::tokenizer::from_gguf(&path)?;
        prunus_data::tokenizer::encode(&tok, "the tan thin man\n\nthe end")
    });
}

#[test]
fn fuzz_tokenizer_json() {
    let scratch = tempfile::tempdir().unwrap();
    let gguf = scratch.path().join("tok.gguf");
    gguf_seed(&gguf);
    let json = prunus_data::tokenizer::from_gguf(&gguf).unwrap().to_string(true).unwrap();
    let seeds = vec![json.into_bytes()];
    let path = scratch.path().join("tokenizer.json");
    prunus_fuzz::run("tokenizer-json", &corpus("tokenizer-json"), &seeds, |data| {
        std::fs::write(&path, data).unwrap();
        let tok = prunus_data::tokenizer::from_file(&path)?;
        prunus_data::tokenizer::encode(&tok, "the tan thin man\n\nthe end")
    });
}
