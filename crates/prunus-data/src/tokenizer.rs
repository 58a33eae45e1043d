//! Tokenizers: rebuilt from GGUF metadata or read from `tokenizer.json`, plus an on-disk token cache.
//!
//! A GGUF file with `tokenizer.ggml.model = "gpt2"` stores a byte-level BPE
//! tokenizer as its token strings (already in GPT-2's byte-to-unicode alphabet)
//! and its merges (`"a b"` strings, in rank order). [`from_gguf`] rebuilds it as
//! the `tokenizers` crate's BPE with the pre-tokenizer Sequence[Digits(individual),
//! ByteLevel(no prefix space)] and a ByteLevel decoder, which is SmolLM2's
//! `tokenizer.json` (the `smollm` pre-tokenizer of llama.cpp). Control tokens
//! (`token_type` 3, e.g. `<|endoftext|>`, `<|im_start|>`) become special added
//! tokens. No BOS is added.
//!
//! [`encode_cached`] stores the ids of a long text under `<home>/tokens/`, keyed by
//! the sha256 of the serialized tokenizer and the text, so that repeated runs skip
//! tokenizing a million-token corpus. A cache file carries that key and the sha256 of
//! its own ids, and is rebuilt when either does not match.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use sha2::{Digest, Sha256};
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// `tokenizer.ggml.token_type` of a control (special) token.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` of a user-defined added token.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Texts longer than this are split into pieces and tokenized on two threads
/// (see [`split_points`] for why that gives the same ids).
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Rebuilds the tokenizer stored in a GGUF file's metadata (byte-level BPE only).
pub fn from_gguf(path: &Path) -> Result<Tokenizer> {
    let file = std::fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut reader = std::io::BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|source| Error::Gguf {
        path: path.to_path_buf(),
        source,
    })?;
    let md = &content.metadata;
    let field_err = |field: &str, reason: String| Error::GgufMetadata {
        path: path.to_path_buf(),
        field: field.into(),
        reason,
    };

    let model = string_field(md, "tokenizer.ggml.model")
        .map_err(|r| field_err("tokenizer.ggml.model", r))?;
    if model != "gpt2" {
        return Err(Error::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "tokenizer.ggml.model = {model:?} (only \"gpt2\", byte-level BPE, is supported)"
            ),
        });
    }
    let tokens = string_array(md, "tokenizer.ggml.tokens")
        .map_err(|r| field_err("tokenizer.ggml.tokens", r))?;
    let merge_strings = string_array(md, "tokenizer.ggml.merges")
        .map_err(|r| field_err("tokenizer.ggml.merges", r))?;
    let token_types = match md.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(v) => int_array(v).map_err(|r| field_err("tokenizer.ggml.token_type", r))?,
    };
    if token_types.len() != tokens.len() {
        return Err(field_err(
            "tokenizer.ggml.token_type",
            format!("{} entries for {} tokens", token_types.len(), tokens.len()),
        ));
    }

    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, tok) in tokens.iter().enumerate() {
        if vocab.insert(tok.clone(), id as u32).is_some() {
            tracing::warn!(token = %tok, id, "duplicate token in gguf vocabulary; the last id wins");
        }
    }
    let merges = merge_strings
        .iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| {
                    field_err(
                        "tokenizer.ggml.merges",
                        format!("merge {i} ({m:?}) has no space"),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(Error::tokenizer(format!(
            "building the bpe model of {}",
            path.display()
        )))?;

    let mut tok = Tokenizer::new(bpe);
    let pre: Vec<PreTokenizerWrapper> = vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ];
    tok.with_pre_tokenizer(Some(Sequence::new(pre)));
    tok.with_decoder(Some(ByteLevel::default()));
    let added = |ty: i32, special: bool| {
        tokens
            .iter()
            .zip(&token_types)
            .filter(move |(_, t)| **t == ty)
            .map(move |(s, _)| AddedToken::from(s.clone(), special))
    };
    tok.add_special_tokens(added(TOKEN_TYPE_CONTROL, true))
        .map_err(Error::tokenizer("adding control tokens"))?;
    tok.add_tokens(added(TOKEN_TYPE_USER_DEFINED, false))
        .map_err(Error::tokenizer("adding user-defined tokens"))?;
    tracing::debug!(path = %path.display(), vocab = tokens.len(), merges = merge_strings.len(), "tokenizer rebuilt from gguf");
    Ok(tok)
}

fn string_field(md: &HashMap<String, Value>, key: &str) -> std::result::Result<String, String> {
    match md.get(key) {
        None => Err("missing".into()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("expected a string, found {:?}", v.value_type())),
    }
}

fn string_array(
    md: &HashMap<String, Value>,
    key: &str,
) -> std::result::Result<Vec<String>, String> {
    let Some(v) = md.get(key) else {
        return Err("missing".into());
    };
    let Value::Array(items) = v else {
        return Err(format!("expected an array, found {:?}", v.value_type()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "entry {i} is {:?}, expected a string",
                other.value_type()
            )),
        })
        .collect()
}

fn int_array(v: &Value) -> std::result::Result<Vec<i32>, String> {
    let Value::Array(items) = v else {
        return Err(format!("expected an array, found {:?}", v.value_type()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::I32(x) => Ok(*x),
            Value::U32(x) => i32::try_from(*x).map_err(|_| format!("entry {i} = {x} out of range")),
            Value::I8(x) => Ok(i32::from(*x)),
            Value::U8(x) => Ok(i32::from(*x)),
            other => Err(format!(
                "entry {i} is {:?}, expected an integer",
                other.value_type()
            )),
        })
        .collect()
}

/// Reads a Hugging Face `tokenizer.json`.
pub fn from_file(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(Error::Io {
            op: "reading",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    // The tokenizers crate panics on some malformed files (a decoder whose JSON does not
    // parse, found by fuzzing) instead of returning an error: a panic here is bad input too.
    match quietly(|| Tokenizer::from_file(path)) {
        Ok(result) => result.map_err(Error::tokenizer(format!("reading {}", path.display()))),
        Err(payload) => Err(Error::Tokenizer {
            context: format!("reading {}", path.display()),
            message: payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the tokenizers library panicked".into()),
        }),
    }
}

thread_local! {
    /// Set while [`quietly`] runs a call on this thread.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic without letting the panic hook print it (the caller turns it
/// into an error). The first call wraps the process's hook once: the wrapper stays silent on
/// a thread inside `quietly` and hands every other panic to the previous hook.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    static WRAP: std::sync::Once = std::sync::Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    result
}

/// Token ids of `text`, adding no BOS and no special tokens.
///
/// Long texts are cut at safe `"\n\n"` boundaries and tokenized on two threads;
/// the ids are identical to tokenizing the whole text at once.
pub fn encode(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    if text.len() < PARALLEL_MIN_BYTES {
        return encode_whole(tok, text);
    }
    let pieces = split_points(text);
    if pieces.len() < 2 {
        return encode_whole(tok, text);
    }
    // Two halves of roughly equal size, each a run of pieces.
    let mid = pieces
        .iter()
        .position(|&p| p >= text.len() / 2)
        .unwrap_or(pieces.len() - 1)
        .max(1);
    let cut = pieces[mid];
    let (left, right) = text.split_at(cut);
    let (a, b) = std::thread::scope(|s| {
        let h = s.spawn(|| encode_whole(tok, right));
        let a = encode_whole(tok, left);
        let b = h.join().unwrap_or_else(|_| {
            Err(Error::Tokenizer {
                context: "encoding".into(),
                message: "worker thread panicked".into(),
            })
        });
        (a, b)
    });
    let mut ids = a?;
    ids.extend(b?);
    Ok(ids)
}

/// Tokenizes `text` in one call.
pub fn encode_whole(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tok
        .encode_fast(text, false)
        .map_err(Error::tokenizer(format!("encoding {} bytes", text.len())))?;
    Ok(enc.get_ids().to_vec())
}

/// Decodes ids back to text (special tokens kept).
pub fn decode(tok: &Tokenizer, ids: &[u32]) -> Result<String> {
    tok.decode(ids, false)
        .map_err(Error::tokenizer(format!("decoding {} ids", ids.len())))
}

/// Byte offsets (ascending, excluding 0) where `text` can be cut without changing its ids.
///
/// The cut points are the starts of `"\n\n"` that follow a non-whitespace character.
/// Why that is safe for the GPT-2 byte-level pattern
/// (`'s|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`):
/// it has no look-behind, so matching from a cut depends only on the text after it;
/// a piece holding the non-whitespace character before the cut cannot contain a
/// newline, so every tokenization of the whole text has a piece boundary at the cut;
/// and the piece before the cut ends in non-whitespace, so the `(?!\S)` look-ahead
/// never sees the cut as end of text. Digit splitting, added tokens (no newlines in
/// them) and BPE (inside a piece) do not cross the cut either. A cut after
/// `"\n\n"`, or after a space, would not be safe (`"\n\n"` at the end of a text is
/// one piece, before a word it is two).
pub fn split_points(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("\n\n") {
        let p = from + rel;
        if p > 0
            && !text[..p]
                .chars()
                .next_back()
                .is_some_and(char::is_whitespace)
        {
            cuts.push(p);
        }
        // skip the whole newline run
        let mut q = p;
        while q < bytes.len() && bytes[q] == b'\n' {
            q += 1;
        }
        from = q;
    }
    cuts
}

/// Like [`encode`], but reads the ids from the token cache under [`crate::assets::home`]
/// when this tokenizer has tokenized this text before (and writes them otherwise).
pub fn encode_cached(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    encode_cached_in(&crate::assets::home(), tok, text)
}

/// Magic bytes at the start of a token cache file (format 2).
const CACHE_MAGIC: &[u8; 8] = b"PRNSTOK2";
/// Header: magic, the source digest (32 bytes), the number of ids (u64 LE), the sha256 of
/// the id bytes (32 bytes).
const CACHE_HEADER: usize = 8 + 32 + 8 + 32;

/// Whether a failure to write the token cache was already reported by this process.
static WRITE_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// [`encode_cached`] with an explicit cache root: the file is
/// `<root>/tokens/<source digest>.bin`, where the source digest is the sha256 of the
/// serialized tokenizer and the text (what the ids were derived from).
///
/// The file carries that digest, the number of ids and the sha256 of the ids themselves,
/// and is read only when all three match; otherwise it is rebuilt (with a warning that
/// names it). A cache that cannot be written (a read-only mount) costs one warning per
/// process, and the ids are used from memory.
pub fn encode_cached_in(root: &Path, tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let source = source_digest(tok, text)?;
    let path = root.join("tokens").join(format!("{}.bin", hex::encode(source)));
    match read_ids(&path, &source) {
        Ok(Some(ids)) => {
            tracing::debug!(path = %path.display(), n = ids.len(), "token cache hit");
            return Ok(ids);
        }
        Ok(None) => {}
        Err(reason) => tracing::warn!(path = %path.display(), %reason, "token cache file does not verify; rebuilding it"),
    }
    let ids = encode(tok, text)?;
    match write_ids(&path, &source, &ids) {
        Ok(()) => tracing::debug!(path = %path.display(), n = ids.len(), "token cache written"),
        Err(e) => {
            if !WRITE_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot write the token cache; keeping token ids in memory for this run");
            }
        }
    }
    Ok(ids)
}

/// The cache file for (`tok`, `text`) under `root`.
pub fn cache_path(root: &Path, tok: &Tokenizer, text: &str) -> Result<PathBuf> {
    let source = source_digest(tok, text)?;
    Ok(root.join("tokens").join(format!("{}.bin", hex::encode(source))))
}

/// sha256 over the serialized tokenizer and the text: what a token cache file derives from.
fn source_digest(tok: &Tokenizer, text: &str) -> Result<[u8; 32]> {
    let json = tok.to_string(false).map_err(Error::tokenizer(
        "serializing the tokenizer for the cache key",
    ))?;
    let mut h = Sha256::new();
    h.update(b"prunus-tokens-v2\0");
    h.update((json.len() as u64).to_le_bytes());
    h.update(json.as_bytes());
    h.update(text.as_bytes());
    Ok(h.finalize().into())
}

/// The ids stored at `path`: `Ok(None)` when there is no file, `Err(reason)` when the file
/// does not verify against `source` and its own content hash.
fn read_ids(path: &Path, source: &[u8; 32]) -> std::result::Result<Option<Vec<u32>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    if bytes.len() < CACHE_HEADER || &bytes[..8] != CACHE_MAGIC {
        return Err("not a token cache file of this format".into());
    }
    if &bytes[8..40] != source {
        return Err("derived from another tokenizer or text".into());
    }
    let n = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    let body = &bytes[CACHE_HEADER..];
    if body.len() as u64 != n.saturating_mul(4) {
        return Err(format!("{} bytes of ids, the header says {n} ids", body.len()));
    }
    if Sha256::digest(body).as_slice() != &bytes[48..80] {
        return Err("the ids do not match their sha256".into());
    }
    Ok(Some(
        body.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

/// Writes header and ids to a temporary file next to `path` and renames it into place.
fn write_ids(path: &Path, source: &[u8; 32], ids: &[u32]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    // Mode 0666 less the umask, as a plain create gives (tempfile's default is 0600).
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(Error::io("creating a temporary file in", dir))?;
    let body: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    let mut bytes = Vec::with_capacity(CACHE_HEADER + body.len());
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(source);
    bytes.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&Sha256::digest(&body));
    bytes.extend_from_slice(&body);
    tmp.write_all(&bytes)
        .map_err(Error::io("writing", tmp.path()))?;
    tmp.persist(path).map_err(|e| Error::Io {
        op: "renaming into place",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_points_only_after_non_whitespace() {
        assert_eq!(split_points("a\n\nb"), vec![1]);
        assert_eq!(split_points("\n\nb"), Vec::<usize>::new());
        assert_eq!(split_points("a \n\nb"), Vec::<usize>::new());
        assert_eq!(split_points("a\n\n\n\nb\n\nc"), vec![1, 6]);
        assert_eq!(split_points("é\n\n"), vec![2]);
        assert_eq!(split_points("no breaks"), Vec::<usize>::new());
    }
}
