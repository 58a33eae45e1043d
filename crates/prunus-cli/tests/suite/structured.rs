//! `prunus prune` with structured methods: a PIP-pruned model (layer removal) saved and
//! loaded back evaluates identically and has the parameter counts its report claims; bad
//! input is one clear error line and writes nothing.

use std::path::Path;

use prunus_model::{LlamaConfig, LlamaModel, SaveOptions};

use crate::common;
use common::{fails_with_status_1 as fails_with, prunus};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_pip_pruned_model_saves_loads_and_matches_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("pruned"), dir.path().join("report.json"));
    let run = prunus(&[
        "prune", "--method", "pip", "--reduction", "0.04", "--calib-samples", "2", "--calib-seq-len", "16", "--seq-len", "64",
        "--max-windows", "2", "--agreement-windows", "1", "--speed-windows", "1", "--out", out.to_str().unwrap(), "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let r = json(&report);
    assert_eq!((r["method"]["name"].as_str(), r["method"]["kind"].as_str()), (Some("pip"), Some("structured")));
    assert_eq!((r["sparsity"]["pattern"].as_str(), r["sparsity"]["requested"].as_f64()), (Some("layer"), Some(0.04)));
    let s = &r["structure"];
    // 0.04 of 30 equal layers is 1.2 layers: one goes, never the protected first or last.
    let its = s["iterations"].as_array().unwrap();
    assert_eq!(its.len(), 1);
    let layer = its[0]["removed"][0]["layer"].as_u64().unwrap();
    assert!((1..29).contains(&layer), "{layer}");
    assert!(its[0]["removed"][0]["score"].as_f64().unwrap() > 0.0);
    assert!(its[0]["notes"]["loss_perturbed"].as_f64().unwrap() > its[0]["notes"]["loss_original"].as_f64().unwrap());
    let p = &s["params"];
    let count = |v: &serde_json::Value| v.as_u64().unwrap();
    assert_eq!(count(&p["before"]["total"]), count(&r["model"]["n_params"]));
    let removed = count(&p["before"]["excluding_embeddings"]) - count(&p["after"]["excluding_embeddings"]);
    assert_eq!(removed, count(&its[0]["removed"][0]["params"]));
    assert_eq!(count(&p["before"]["total"]) - count(&p["after"]["total"]), removed, "embeddings are untouched");
    assert_eq!(p["removed_fraction"], r["sparsity"]["realised"]);
    assert!(s["speed"]["dense_tokens_per_second"].as_f64().unwrap() > 0.0 && s["speed"]["speedup"].as_f64().unwrap() > 0.0);
    assert_eq!(r["calibration"]["n_samples"], 2);
    // The saved directory loads back with one layer fewer and the counts of the report.
    let inspect = prunus(&["inspect", out.to_str().unwrap(), "--json"]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let i: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(i["config"]["num_hidden_layers"], 29);
    assert_eq!(count(&i["n_params"]), count(&p["after"]["total"]));
    let embedding = count(&i["config"]["vocab_size"]) * count(&i["config"]["hidden_size"]);
    assert_eq!(i["config"]["tie_word_embeddings"], true);
    assert_eq!(count(&i["n_params"]) - embedding, count(&p["after"]["excluding_embeddings"]));
    // And evaluates to the same perplexity on the same two windows.
    let report2 = dir.path().join("report2.json");
    let eval = prunus(&["eval", "--model", out.to_str().unwrap(), "--seq-len", "64", "--max-windows", "2", "--report", report2.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let (a, b) = (r["evaluations"][0]["value"].as_f64().unwrap(), json(&report2)["evaluations"][0]["value"].as_f64().unwrap());
    assert_eq!(r["evaluations"][0]["task"], "ppl:wiki-vital");
    assert!((a - b).abs() <= 1e-9 * a, "ppl after save/load {b} != {a}");
}

#[test]
fn bad_structured_input_is_refused_before_the_model_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = (dir.path().join("out"), dir.path().join("r.json"));
    let (out_s, report_s) = (out.to_str().unwrap(), report.to_str().unwrap());
    let nowhere = "/nonexistent/prunus-test/model.gguf";
    let prune = |extra: &[&str]| {
        let mut args = vec!["prune", "--model", nowhere, "--eval", "none", "--out", out_s, "--report", report_s];
        args.extend_from_slice(extra);
        prunus(&args)
    };
    let cases: &[(&[&str], &[&str])] = &[
        (&["--method", "pip", "--reduction", "0"], &["target reduction 0 is outside (0, 1)"]),
        (&["--method", "taylor", "--reduction", "1.2"], &["target reduction 1.2 is outside (0, 1)"]),
        (&["--method", "pip"], &["`pip` is a structured method", "--reduction"]),
        (&["--method", "pip", "--reduction", "0.2", "--sparsity", "0.3"], &["--sparsity and --pattern are for layer-wise methods"]),
        (&["--method", "wanda", "--reduction", "0.2"], &["`wanda` is layer-wise"]),
        (&["--method", "pip", "--reduction", "0.2", "--unit", "block"], &["unknown unit `block`", "query_head"]),
        (&["--method", "pip", "--reduction", "0.2", "--calib-samples", "0"], &["method `pip` needs calibration data", "--calib-samples"]),
        (&["--method", "taylor", "--reduction", "0.2", "--calib-seq-len", "1"], &["method `taylor` needs calibration data", "--calib-seq-len"]),
        (&["--method", "pip", "--reduction", "0.2", "--config", r#"{"perturb_fraction": 2}"#], &["invalid config for method `pip`", "perturb_fraction 2"]),
        (&["--method", "pip", "--reduction", "0.2", "--budget-of", "half"], &["unknown budget base `half`", "excluding-embeddings"]),
    ];
    for (args, needles) in cases {
        let o = prune(args);
        fails_with(&o, needles);
        assert!(!String::from_utf8_lossy(&o.stderr).contains("nonexistent"), "{args:?}: the model was looked at first");
        assert!(!out.exists() && !report.exists(), "{args:?} wrote something");
    }
}

#[test]
fn units_the_architecture_cannot_remove_are_refused_and_nothing_is_written() {
    // A tiny model without grouped-query attention (4 query heads, 4 key/value heads) and the
    // default model's tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("mha");
    let tokenizer = prunus_data::tokenizer::from_gguf(&prunus_data::assets::default_model_path().unwrap()).unwrap();
    let config = LlamaConfig::new(tokenizer.get_vocab_size(true), 32, 48, 4, 4, 4, true);
    let tokenizer_json = tokenizer.to_string(false).unwrap();
    LlamaModel::synthetic(config, 1)
        .unwrap()
        .save_hf_dir(&model_dir, &SaveOptions { tokenizer_json: Some(tokenizer_json.as_bytes()), overwrite: false, sparse: false })
        .unwrap();
    let (out, report) = (dir.path().join("out"), dir.path().join("r.json"));
    let prune = |extra: &[&str]| {
        let mut args = vec!["prune", "--model", model_dir.to_str().unwrap(), "--eval", "none", "--out", out.to_str().unwrap(), "--report", report.to_str().unwrap()];
        args.extend_from_slice(extra);
        prunus(&args)
    };
    fails_with(
        &prune(&["--method", "struct-magnitude", "--unit", "query-head", "--reduction", "0.1"]),
        &["unit `query_head` cannot be removed consistently from this model", "one query head per key/value head", "use unit `head`"],
    );
    // Two of four layers protected and one head of each layer kept: 0.6 is out of reach.
    fails_with(&prune(&["--method", "struct-random", "--unit", "head", "--reduction", "0.6"]), &["target reduction 0.6", "at most 0.", "head units"]);
    assert!(!out.exists() && !report.exists());
    // The same model prunes fine by heads.
    let ok = prune(&["--method", "struct-random", "--unit", "head", "--reduction", "0.1", "--agreement-windows", "0", "--speed-windows", "0"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let r = json(&report);
    assert!(r["structure"]["speed"].is_null());
    assert!(r["calibration"].is_null(), "struct-random uses no data");
    assert_eq!(r["structure"]["schedule"], "one-shot");
}

/// `--budget-of all` counts the target against every parameter (LLM-Pruner's convention):
/// 4% of SmolLM2-135M's 134.5M is 1.5 of its 3.5M-parameter layers, so two go, where 4% of
/// the parameters outside the embeddings (106M) is 1.2 layers and one goes.
#[test]
fn a_budget_of_all_parameters_counts_the_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let removed = |extra: &[&str]| {
        let mut args = vec!["prune", "--method", "struct-magnitude", "--reduction", "0.04", "--eval", "none", "--speed-windows", "0"];
        args.extend_from_slice(&["--report", report.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let run = prunus(&args);
        assert!(run.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&run.stderr));
        let r = json(&report);
        std::fs::remove_file(&report).unwrap();
        r
    };
    let all = removed(&["--budget-of", "all"]);
    let s = &all["structure"];
    assert_eq!((s["budget"].as_str(), s["iterations"][0]["removed"].as_array().unwrap().len()), (Some("all"), 2));
    assert_eq!(all["sparsity"]["realised"], s["params"]["removed_fraction_including_embeddings"]);
    assert!(all["sparsity"]["group"].as_str().unwrap().contains("of all parameters"));
    let rest = removed(&[]);
    // The default base is not written (as in reports from before the option).
    assert_eq!((rest["structure"].get("budget"), rest["structure"]["iterations"][0]["removed"].as_array().unwrap().len()), (None, 1));
    assert_eq!(rest["sparsity"]["realised"], rest["structure"]["params"]["removed_fraction"]);
}

#[test]
fn help_and_list_explain_the_structured_kind() {
    let help = String::from_utf8_lossy(&prunus(&["prune", "--help"]).stdout).to_string();
    for needle in ["--reduction", "--budget-of", "--unit", "--protect-first", "Structured methods", "physically smaller", "outside the embeddings"] {
        assert!(help.contains(needle), "prune --help lacks {needle}");
    }
    let list: serde_json::Value = serde_json::from_slice(&prunus(&["list", "--json"]).stdout).unwrap();
    let kinds: Vec<(String, String)> = list["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_string(), m["kind"].as_str().unwrap().to_string()))
        .collect();
    for name in ["pip", "taylor", "struct-magnitude", "struct-random"] {
        assert!(kinds.contains(&(name.to_string(), "structured".to_string())), "{name} not listed as structured: {kinds:?}");
    }
}
