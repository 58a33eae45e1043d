//! The GGUF tokenizer of the default model, checked against ids from an independent
//! Python build (`fixtures/gen_tokens.py`: PyPI `gguf` + `tokenizers`).

use std::sync::OnceLock;
use std::time::Instant;

use prunus_data::{assets, corpus, tokenizer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;

fn tok() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| tokenizer::from_gguf(&assets::default_model_path().unwrap()).unwrap())
}

fn wiki() -> &'static corpus::Corpus {
    static C: OnceLock<corpus::Corpus> = OnceLock::new();
    C.get_or_init(|| corpus::wiki_vital(&assets::wiki_vital_path().unwrap()).unwrap())
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/tokens.json")).unwrap()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn digest(ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    hex::encode(Sha256::digest(&bytes))
}

#[test]
fn gguf_tokenizer_layout() {
    let t = tok();
    assert_eq!(t.get_vocab_size(true), 49152);
    assert_eq!(t.token_to_id("<|endoftext|>"), Some(0));
    assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
    // no BOS is added
    assert_eq!(
        tokenizer::encode(t, "Hi").unwrap(),
        tokenizer::encode(t, "Hi").unwrap()
    );
    assert!(tokenizer::encode(t, "").unwrap().is_empty());
}

#[test]
fn round_trips_text() {
    let t = tok();
    for text in [
        "Hello, world!",
        "  two leading spaces, trailing ones   ",
        "digits 0123456789 and 3.14159 and 1,000,000",
        "unicode: café naïve 日本語 Ελληνικά 🎉🚀 👩‍💻",
        "newlines\n\n\nand\r\ntabs\t\there\n",
        "<|im_start|>user\nhi<|im_end|>",
    ] {
        let ids = tokenizer::encode(t, text).unwrap();
        assert_eq!(tokenizer::decode(t, &ids).unwrap(), text, "{ids:?}");
    }
}

#[test]
fn matches_python_on_samples_and_wiki_prefix() {
    let fx = fixture();
    for s in fx["samples"].as_array().unwrap() {
        let text = s["text"].as_str().unwrap();
        assert_eq!(
            tokenizer::encode(tok(), text).unwrap(),
            ids_of(&s["ids"]),
            "{text:?}"
        );
    }
    let n = fx["wiki_eval_prefix_chars"].as_u64().unwrap() as usize;
    let prefix: String = wiki().eval_text.chars().take(n).collect();
    assert_eq!(prefix, fx["wiki_eval_prefix"]["text"].as_str().unwrap());
    assert_eq!(
        tokenizer::encode(tok(), &prefix).unwrap(),
        ids_of(&fx["wiki_eval_prefix"]["ids"])
    );
}

#[test]
fn matches_python_on_the_whole_wiki_vital_corpus() {
    let fx = fixture();
    let c = wiki();
    assert_eq!(c.n_eval_articles + c.n_calib_articles, 10_033);
    for (text, want) in [
        (&c.eval_text, &fx["wiki_eval"]),
        (&c.calib_text, &fx["wiki_calib"]),
    ] {
        assert_eq!(text.chars().count() as u64, want["chars"].as_u64().unwrap());
        let start = Instant::now();
        let ids = tokenizer::encode(tok(), text).unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(ids.len() as u64, want["n_ids"].as_u64().unwrap());
        assert_eq!(digest(&ids), want["ids_sha256"].as_str().unwrap());
        assert!(
            secs < 30.0,
            "tokenizing {} chars took {secs:.1} s",
            text.len()
        );
    }
}

#[test]
fn chunked_encoding_equals_whole_encoding() {
    let t = tok();
    // A slice of real text plus the cases where a careless split would differ.
    let mut text: String = wiki().calib_text.chars().take(300_000).collect();
    text.push_str("\n\nword  \n\nNext\n\n\n\n 3 spaces\n\n\n\n");
    let whole = tokenizer::encode_whole(t, &text).unwrap();
    assert_eq!(tokenizer::encode(t, &text).unwrap(), whole);
    // and every piece boundary, piece by piece
    let cuts = tokenizer::split_points(&text);
    assert!(cuts.len() > 100);
    let mut ids = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain(std::iter::once(&text.len())) {
        ids.extend(tokenizer::encode_whole(t, &text[from..c]).unwrap());
        from = c;
    }
    assert_eq!(ids, whole);
}

/// The mode a plain `File::create` gives here (0666 less this process's umask).
fn plain_file_mode(dir: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("plain");
    std::fs::File::create(&p).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    std::fs::remove_file(&p).unwrap();
    mode
}

#[test]
fn token_cache_round_trips_and_rebuilds_what_does_not_verify() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let text: String = wiki().eval_text.chars().take(5_000).collect();
    let ids = tokenizer::encode_cached_in(root.path(), tok(), &text).unwrap();
    assert_eq!(ids, tokenizer::encode(tok(), &text).unwrap());
    let path = tokenizer::cache_path(root.path(), tok(), &text).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert_eq!(written.len() as u64, 80 + 4 * ids.len() as u64, "header + ids");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, plain_file_mode(root.path()), "readable as any file this user creates");

    // A hit leaves the file as it is.
    assert_eq!(tokenizer::encode_cached_in(root.path(), tok(), &text).unwrap(), ids);
    assert_eq!(std::fs::read(&path).unwrap(), written);

    // Every kind of damage is detected and the file rebuilt: an id changed in place (same
    // size), a truncated file, a torn header, the file of another text under this name.
    let mut changed = written.clone();
    changed[80] ^= 0x01;
    let mut truncated = written.clone();
    truncated.truncate(written.len() - 4);
    let other = {
        let other_text = "another text entirely";
        tokenizer::encode_cached_in(root.path(), tok(), other_text).unwrap();
        std::fs::read(tokenizer::cache_path(root.path(), tok(), other_text).unwrap()).unwrap()
    };
    for damaged in [changed, truncated, vec![1u8, 2, 3], other] {
        std::fs::write(&path, &damaged).unwrap();
        assert_eq!(tokenizer::encode_cached_in(root.path(), tok(), &text).unwrap(), ids);
        assert_eq!(std::fs::read(&path).unwrap(), written, "rebuilt");
    }
    // another text gets another file
    assert_ne!(
        tokenizer::cache_path(root.path(), tok(), "other").unwrap(),
        path
    );
}

#[test]
fn an_unwritable_token_cache_keeps_the_ids_in_memory() {
    let root = tempfile::tempdir().unwrap();
    // `tokens` is a file, so the cache directory cannot be created (as on a read-only mount;
    // the tests run as root, for whom permission bits do not stop a write).
    std::fs::write(root.path().join("tokens"), b"not a directory").unwrap();
    let text: String = wiki().eval_text.chars().take(2_000).collect();
    let ids = tokenizer::encode_cached_in(root.path(), tok(), &text).unwrap();
    assert_eq!(ids, tokenizer::encode(tok(), &text).unwrap());
    assert_eq!(tokenizer::encode_cached_in(root.path(), tok(), &text).unwrap(), ids);
}

#[test]
fn unsupported_and_broken_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("not.gguf");
    std::fs::write(&p, b"definitely not gguf").unwrap();
    let e = tokenizer::from_gguf(&p).unwrap_err().to_string();
    assert!(e.contains("not.gguf"), "{e}");
    let e = tokenizer::from_file(&dir.path().join("tokenizer.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
}

#[test]
fn non_gpt2_gguf_tokenizer_is_unsupported() {
    use candle_core::quantized::gguf_file::{Value, write};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("spm.gguf");
    let model = Value::String("llama".into());
    let mut f = std::fs::File::create(&p).unwrap();
    write(&mut f, &[("tokenizer.ggml.model", &model)], &[]).unwrap();
    drop(f);
    let e = tokenizer::from_gguf(&p).unwrap_err().to_string();
    assert!(
        e.contains("unsupported tokenizer") && e.contains("\"llama\"") && e.contains("spm.gguf"),
        "{e}"
    );
}
