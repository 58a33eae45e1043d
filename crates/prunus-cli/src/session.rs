//! Loading what every command needs: the model, its tokenizer, and the corpus tokens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use prunus_eval::report::ModelInfo;
use prunus_model::LlamaModel;
use tokenizers::Tokenizer;

/// The label of the default model in every table.
pub const DEFAULT_LABEL: &str = "SmolLM2-135M-Instruct (Q4_1, dequantized)";

/// A loaded model with its tokenizer and provenance.
pub struct Session {
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    /// The tokenizer as tokenizer.json text, for saving with a pruned model.
    pub tokenizer_json: String,
    pub info: ModelInfo,
    pub path: PathBuf,
    pub seconds: f64,
}

/// A spinner on stderr for a stage of unknown length (hidden when stderr is not a terminal).
pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("template"));
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A bar on stderr over `len` steps.
pub fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:32}] {pos}/{len} ({elapsed}, eta {eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}

/// A model argument resolved to a path; `sha256` is known when the file was just verified
/// against its pin (the default model), so it is not hashed twice.
pub struct ModelPath {
    pub path: PathBuf,
    pub sha256: Option<String>,
}

/// Resolves `default` to the cached SmolLM2 GGUF (fetching it if needed, hashing it against
/// its pinned sha256 and fetching it again if the cached copy is corrupt).
pub fn resolve(spec: &str) -> Result<ModelPath> {
    if spec == "default" {
        let pb = spinner("preparing the default model (fetched on first use, verified by sha256)");
        let mut say = |m: &str| pb.suspend(|| eprintln!("assets: {m}"));
        let file = prunus_data::assets::default_model(&mut say).context("preparing the default model")?;
        pb.finish_and_clear();
        return Ok(ModelPath { path: file.path, sha256: Some(file.sha256) });
    }
    let path = PathBuf::from(spec);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(_) => bail!("model `{spec}` not found: give `default`, a GGUF file or a Hugging Face directory"),
    };
    // Nothing is opened that could block (a FIFO waits for a writer forever) or never end.
    if meta.is_dir() {
        for name in ["config.json", "tokenizer.json", "model.safetensors", "model.safetensors.index.json"] {
            let p = path.join(name);
            if let Ok(m) = std::fs::metadata(&p)
                && !m.is_file()
            {
                bail!("{} is not a regular file", p.display());
            }
        }
    } else if !meta.is_file() {
        bail!("model `{spec}` is not a regular file or a directory: give `default`, a GGUF file or a Hugging Face directory");
    }
    Ok(ModelPath { path, sha256: None })
}

/// Loads the model that `spec` resolved to (see [`resolve`]).
pub fn load_resolved(spec: &str, resolved: ModelPath) -> Result<Session> {
    let start = Instant::now();
    let path = resolved.path;
    let pb = spinner(&format!("loading {}", path.display()));
    let device = Device::Cpu;
    let (model, tokenizer, tokenizer_json, format, sha_file) = if path.is_dir() {
        let model = LlamaModel::from_hf_dir(&path, &device).with_context(|| format!("loading {}", path.display()))?;
        let (tokenizer, json) = hf_tokenizer(&path)?;
        (model, tokenizer, json, "hf", hf_identity_file(&path))
    } else {
        let model = LlamaModel::from_gguf(&path, &device).with_context(|| format!("loading {}", path.display()))?;
        let tokenizer = prunus_data::tokenizer::from_gguf(&path)?;
        let json = tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
        (model, tokenizer, json, "gguf", path.clone())
    };
    let sha256 = match resolved.sha256 {
        Some(sha) => sha,
        None => {
            pb.set_message("hashing the model file");
            prunus_data::assets::sha256_file(&sha_file)?
        }
    };
    pb.finish_and_clear();
    let info = model_info(spec, &path, format, sha256, model.n_params(), model.config().num_hidden_layers);
    Ok(Session { model, tokenizer, tokenizer_json, info, path, seconds: start.elapsed().as_secs_f64() })
}

/// A Hugging Face directory's tokenizer, parsed and as text.
pub fn hf_tokenizer(dir: &Path) -> Result<(Tokenizer, String)> {
    let tok_path = dir.join("tokenizer.json");
    let tokenizer = prunus_data::tokenizer::from_file(&tok_path)?;
    let json = std::fs::read_to_string(&tok_path).with_context(|| format!("reading {}", tok_path.display()))?;
    Ok((tokenizer, json))
}

/// The file whose sha256 identifies a Hugging Face directory's weights: `model.safetensors`,
/// or the shards' index.
pub fn hf_identity_file(dir: &Path) -> PathBuf {
    let single = dir.join("model.safetensors");
    if single.exists() { single } else { dir.join("model.safetensors.index.json") }
}

/// The report's record of a model: `spec` as given (`default` gets its label), where it is,
/// its format and identity, its size.
pub fn model_info(spec: &str, path: &Path, format: &str, sha256: String, n_params: usize, n_blocks: usize) -> ModelInfo {
    let label = if spec == "default" { DEFAULT_LABEL.to_string() } else { file_label(path) };
    ModelInfo {
        label,
        path: path.display().to_string(),
        sha256,
        format: format.into(),
        architecture: "llama".into(),
        n_params,
        n_blocks,
    }
}

fn file_label(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// The wiki-vital corpus tokenized: (eval split, calibration pool).
pub struct CorpusTokens {
    pub eval: Vec<u32>,
    pub calib: Vec<u32>,
    pub seconds: f64,
}

/// Tokenizes (or reads from the token cache) the wiki-vital splits.
pub fn wiki_vital_tokens(tokenizer: &Tokenizer, need_calib: bool) -> Result<CorpusTokens> {
    let start = Instant::now();
    let pb = spinner("tokenizing wiki-vital (cached after the first run)");
    let mut say = |m: &str| pb.suspend(|| eprintln!("assets: {m}"));
    let path = prunus_data::assets::verified_file(prunus_data::assets::AssetId::WikiVital, prunus_data::assets::WIKI_VITAL_JSON, &mut say)
        .context("preparing the wiki-vital corpus")?
        .path;
    let corpus = prunus_data::corpus::wiki_vital(&path)?;
    let eval = prunus_data::tokenizer::encode_cached(tokenizer, &corpus.eval_text)?;
    let calib = if need_calib { prunus_data::tokenizer::encode_cached(tokenizer, &corpus.calib_text)? } else { Vec::new() };
    pb.finish_and_clear();
    Ok(CorpusTokens { eval, calib, seconds: start.elapsed().as_secs_f64() })
}

/// Windows `first..first + count` of `seq_len` tokens each, cut from `tokens`, as one
/// (count, seq_len) batch.
pub fn window_batch(tokens: &[u32], first: usize, count: usize, seq_len: usize) -> Result<Tensor> {
    Ok(Tensor::from_vec(tokens[first * seq_len..(first + count) * seq_len].to_vec(), (count, seq_len), &Device::Cpu)?)
}

/// Saves the model as a Hugging Face directory with its tokenizer (behind a spinner), the block
/// linears in the sparse-bitmask layout when `sparse`; returns the seconds it took.
pub fn save(session: &Session, out: &Path, sparse: bool) -> Result<f64> {
    let t = Instant::now();
    let pb = spinner(&format!("saving to {}", out.display()));
    let options = prunus_model::SaveOptions { tokenizer_json: Some(session.tokenizer_json.as_bytes()), overwrite: false, sparse };
    session.model.save_hf_dir(out, &options).with_context(|| format!("saving to {}", out.display()))?;
    pb.finish_and_clear();
    Ok(t.elapsed().as_secs_f64())
}
