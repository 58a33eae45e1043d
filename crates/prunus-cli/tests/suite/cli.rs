//! The `prunus` binary on bad input: one clear line on stderr naming the offending flag,
//! file or value, a nonzero exit, and no partial output.

use std::path::Path;
use std::process::Command;

use crate::common;
use common::{fails_with, prunus};

#[test]
fn list_shows_the_registered_methods_sorted() {
    let out = prunus(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let m = text.find("magnitude").expect("magnitude listed");
    let w = text.find("wanda").expect("wanda listed");
    assert!(m < w, "{text}");
    assert!(text.contains("ppl:wiki-vital"));
}

#[test]
fn help_explains_flags_with_defaults() {
    let out = prunus(&["prune", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--sparsity", "--pattern", "--calib-samples", "--seq-len", "--seed", "--out", "--report"] {
        assert!(text.contains(flag), "prune --help lacks {flag}");
    }
    assert!(text.contains("[default: 0.5]") && text.contains("[default: 32 for layer-wise methods, 10 for structured ones]"), "{text}");
}

#[test]
fn unknown_method_gets_a_suggestion() {
    fails_with(&prunus(&["prune", "--method", "wandaa"]), &["unknown method `wandaa`", "did you mean `wanda`"]);
}

#[test]
fn sparsity_outside_the_unit_interval_is_refused() {
    for s in ["1", "1.5", "-0.1", "NaN"] {
        fails_with(&prunus(&["prune", "--method", "magnitude", "--sparsity", s]), &["sparsity", "outside [0, 1)"]);
    }
}

#[test]
fn bad_n_m_patterns_are_refused() {
    fails_with(&prunus(&["prune", "--method", "magnitude", "--pattern", "4:4"]), &["4:4", "0 < N < M"]);
    fails_with(&prunus(&["prune", "--method", "magnitude", "--pattern", "2-4"]), &["2-4"]);
    // 576 is not a multiple of 5: refused before any weight changes, naming the linear.
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let out = prunus(&["prune", "--method", "magnitude", "--pattern", "2:5", "--eval", "none", "--report", report.to_str().unwrap()]);
    fails_with(&out, &["2:5", "blk.0.q_proj", "d_in = 576", "does not divide"]);
    assert!(!report.exists(), "no report on failure");
}

#[test]
fn unknown_tasks_and_windows_past_the_context_are_refused() {
    fails_with(&prunus(&["eval", "--task", "ppl:wikitext2"]), &["unknown task `ppl:wikitext2`"]);
    // Windows longer than the model's context are refused before anything is allocated (the
    // eval split, 107,872 tokens, is longer than SmolLM2's 8192-token context, so the corpus's
    // own length check is a unit test of prunus-eval).
    fails_with(&prunus(&["eval", "--seq-len", "1000000"]), &["--seq-len 1000000 exceeds the model's context of 8192 tokens"]);
    fails_with(
        &prunus(&["prune", "--method", "wanda", "--calib-seq-len", "2000000", "--eval", "none"]),
        &["calibration window of 2000000 tokens exceeds the model's context of 8192 tokens"],
    );
}

#[test]
fn output_directory_must_be_new_and_writable() {
    let model = prunus_data::assets::default_model_path().unwrap();
    let model_dir = model.parent().unwrap().to_str().unwrap().to_string();
    fails_with(&prunus(&["prune", "--method", "magnitude", "--out", &model_dir]), &["--out", "input model"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let below_file = file.join("out");
    fails_with(&prunus(&["prune", "--method", "magnitude", "--out", below_file.to_str().unwrap()]), &["--out", "not writable"]);
    assert!(!below_file.exists());
}

#[test]
fn corrupt_and_missing_models_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.gguf");
    fails_with(&prunus(&["eval", "--model", missing.to_str().unwrap()]), &["nope.gguf", "not found"]);
    // The first 1 MB of the real file: a valid header whose tensor data is cut off.
    let model = prunus_data::assets::default_model_path().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..1 << 20]).unwrap();
    fails_with(&prunus(&["inspect", truncated.to_str().unwrap()]), &["truncated.gguf"]);
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"GGUF but not really a gguf file at all").unwrap();
    fails_with(&prunus(&["eval", "--model", garbage.to_str().unwrap()]), &["garbage.gguf"]);
}

#[test]
fn prune_writes_a_loadable_model_and_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pruned");
    let report = dir.path().join("report.json");
    let run = prunus(&[
        "prune", "--method", "wanda", "--pattern", "2:4", "--calib-samples", "2", "--calib-seq-len", "64",
        "--seq-len", "128", "--max-windows", "2", "--out", out.to_str().unwrap(), "--report", report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["method"]["name"], "wanda");
    assert_eq!(r["sparsity"]["realised"], 0.5);
    assert_eq!(r["sparsity"]["per_layer"].as_array().unwrap().len(), 30 * 7);
    assert_eq!(r["calibration"]["offsets"].as_array().unwrap().len(), 2);
    assert_eq!(r["model"]["sha256"], "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    assert_eq!(r["evaluations"][0]["seq_len"], 128);
    // The saved model loads back (as a Hugging Face directory), keeps its 2:4 sparsity and evaluates
    // to the same perplexity.
    let inspect = prunus(&["inspect", out.to_str().unwrap()]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("sparsity 0.5000"));
    let report2 = dir.path().join("report2.json");
    let eval = prunus(&["eval", "--model", out.to_str().unwrap(), "--seq-len", "128", "--max-windows", "2", "--report", report2.to_str().unwrap()]);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let r2: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report2).unwrap()).unwrap();
    let (a, b) = (r["evaluations"][0]["value"].as_f64().unwrap(), r2["evaluations"][0]["value"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-9 * a, "ppl after save/load {b} != {a}");
    assert!(!Path::new(&format!("{}.tmp", report.display())).exists());
}

fn report_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The evaluation row of `task` / `metric` in a report.
fn row<'a>(r: &'a serde_json::Value, task: &str, metric: &str) -> &'a serde_json::Value {
    r["evaluations"].as_array().unwrap().iter().find(|e| e["task"] == task && e["metric"] == metric).unwrap_or_else(|| panic!("no {task} {metric} in {r}"))
}

#[test]
fn list_shows_every_task_with_version_file_and_docs() {
    let out = prunus(&["list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for t in prunus_eval::tasks::TASKS {
        let line = text.lines().find(|l| l.split_whitespace().next() == Some(t.name)).unwrap_or_else(|| panic!("{} not listed:\n{text}", t.name));
        assert!(line.contains(&format!("v{}", t.version)), "{line}");
        if let Some(d) = t.docs {
            assert!(line.contains(&format!("{d} docs")), "{line}");
        }
    }
    assert!(text.contains("arc_easy/rc_0shot (validation, 570 docs)"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&prunus(&["list", "--json"]).stdout).unwrap();
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), prunus_eval::tasks::TASKS.len());
    let piqa = tasks.iter().find(|t| t["name"] == "mc:piqa").unwrap();
    assert!(piqa["file"].as_str().unwrap().ends_with("piqa/rc_0shot/requests.jsonl.gz"), "{piqa}");
    assert_eq!((piqa["available"].as_bool(), piqa["docs"].as_u64()), (Some(true), Some(1838)));
    assert!(json["methods"].as_array().unwrap().iter().any(|m| m["name"] == "wanda"));
}

#[test]
fn task_lists_are_checked_before_the_model_loads() {
    fails_with(&prunus(&["eval", "--task", "ppl:wiki-vital,mc:arc-easy"]), &["unknown task `mc:arc-easy`", "did you mean `mc:arc_easy`"]);
    fails_with(&prunus(&["eval", "--task", "mc:piqa=0"]), &["mc:piqa=0", "at least 1"]);
    fails_with(&prunus(&["eval", "--task", "mc:piqa", "--limit", "0"]), &["--limit"]);
    fails_with(&prunus(&["eval", "--task", "none"]), &["nothing to evaluate"]);
    fails_with(&prunus(&["prune", "--method", "magnitude", "--eval", "none,mc:piqa"]), &["`none` cannot be combined"]);
    fails_with(&prunus(&["prune", "--method", "magnitude", "--eval", "agree:wiki-vital"]), &["--agreement-windows"]);
}

#[test]
fn eval_scores_several_multiple_choice_tasks_into_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let run = prunus(&["eval", "--task", "mc:arc_easy=3,mc:rte,mc:winogrande", "--limit", "2", "--report", report.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let r = report_json(&report);
    assert_eq!(r["evaluations"].as_array().unwrap().len(), 6);
    for (task, docs, file) in [("mc:arc_easy", 3, "arc_easy/rc_0shot"), ("mc:rte", 2, "glue/rte"), ("mc:winogrande", 2, "winogrande/rc_0shot")] {
        for metric in ["acc", "acc_norm"] {
            let e = row(&r, task, metric);
            assert_eq!(e["docs"], docs, "{e}");
            assert_eq!(e["task_version"], 1);
            let v = e["value"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v) && (v * docs as f64).fract() == 0.0, "{e}");
            let p = v;
            let se = (p * (1.0 - p) / (docs as f64 - 1.0)).sqrt();
            assert!((e["stderr"].as_f64().unwrap() - se).abs() < 1e-12, "{e}");
            let protocol = e["protocol"].as_str().unwrap();
            assert!(protocol.contains(file) && protocol.contains(&format!("first {docs} docs")), "{protocol}");
        }
    }
    // WinoGrande's choices share their continuation, so the length normalisation changes nothing.
    assert_eq!(row(&r, "mc:winogrande", "acc")["value"], row(&r, "mc:winogrande", "acc_norm")["value"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("mc:rte v1: acc = ") && stdout.contains("docs/s"), "{stdout}");
}

#[test]
fn dense_agreement_is_perfect_unpruned_and_the_same_with_or_without_perplexity() {
    let dir = tempfile::tempdir().unwrap();
    let run = |sparsity: &str, eval: &str, k: &str, name: &str| {
        let report = dir.path().join(name);
        let out = prunus(&[
            "prune", "--method", "magnitude", "--sparsity", sparsity, "--eval", eval, "--seq-len", "64", "--max-windows", "1",
            "--agreement-windows", k, "--batch-size", "1", "--report", report.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        report_json(&report)
    };
    let dense = run("0", "ppl:wiki-vital", "2", "dense.json");
    let kl = row(&dense, "agree:wiki-vital", "kl_dense");
    assert_eq!((kl["windows"].as_u64(), kl["predictions"].as_u64(), kl["seq_len"].as_u64()), (Some(2), Some(2 * 63), Some(64)));
    assert!(kl["value"].as_f64().unwrap().abs() < 1e-9, "{kl}");
    assert_eq!(row(&dense, "agree:wiki-vital", "top1_agree")["value"], 1.0);
    // Window 0 is compared inside the perplexity pass, window 1 after it; without the
    // perplexity task both come from the agreement's own pass. Same numbers either way.
    let a = run("0.5", "ppl:wiki-vital", "2", "a.json");
    let b = run("0.5", "none", "2", "b.json");
    let (ka, kb) = (row(&a, "agree:wiki-vital", "kl_dense")["value"].as_f64().unwrap(), row(&b, "agree:wiki-vital", "kl_dense")["value"].as_f64().unwrap());
    assert!(ka > 1e-3 && (ka - kb).abs() <= 1e-9 * ka, "kl {ka} vs {kb}");
    let (ta, tb) = (row(&a, "agree:wiki-vital", "top1_agree")["value"].as_f64().unwrap(), row(&b, "agree:wiki-vital", "top1_agree")["value"].as_f64().unwrap());
    assert!(ta < 1.0 && ta == tb, "top1 {ta} vs {tb}");
    assert_eq!(b["evaluations"].as_array().unwrap().len(), 2, "only the agreement rows");
    // 0 disables it.
    let c = run("0.5", "ppl:wiki-vital", "0", "c.json");
    assert!(!c["evaluations"].as_array().unwrap().iter().any(|e| e["task"] == "agree:wiki-vital"), "{c}");
    assert_eq!(row(&c, "ppl:wiki-vital", "ppl")["value"], row(&a, "ppl:wiki-vital", "ppl")["value"]);
    // `--eval none` asks for no evaluation: no dense reference pass unless K is given.
    let none = dir.path().join("none.json");
    let out = prunus(&["prune", "--method", "magnitude", "--eval", "none", "--seq-len", "64", "--report", none.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let none = report_json(&none);
    assert_eq!(none["evaluations"], serde_json::json!([]));
    let eval_seconds = none["seconds"]["evaluation"].as_f64().unwrap();
    assert!(eval_seconds < 0.05, "a dense reference pass ran: {eval_seconds} s");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A complete asset cache on a read-only mount (bind-mounted read-only in a private mount
/// namespace, `unshare --mount`; the suite runs as root): pruning and evaluation work, the
/// token cache that cannot be written costs one warning, and nothing is written there.
#[test]
fn a_complete_cache_on_a_read_only_mount_is_used_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    copy_dir(&prunus_data::assets::home().join("assets"), &home.join("assets"));
    let h = home.display().to_string();
    let script = format!("mount --bind '{h}' '{h}' && mount -o remount,ro,bind '{h}' '{h}' && touch '{h}/probe' 2>/dev/null && exit 9; exec \"$0\" \"$@\"");
    let report = dir.path().join("r.json");
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script, env!("CARGO_BIN_EXE_prunus")])
        .args(["prune", "--method", "wanda", "--calib-samples", "1", "--seq-len", "64", "--max-windows", "1", "--agreement-windows", "0"])
        .arg("--report")
        .arg(&report)
        .env("PRUNUS_HOME", &home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(9), "the mount was not read-only");
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("cannot write the token cache").count(), 1, "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!home.join("tokens").exists(), "wrote into the read-only cache");
    let ppl = row(&report_json(&report), "ppl:wiki-vital", "ppl")["value"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0);
}

/// The entries of `dir` that are temporary outputs of a save.
fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prunus_model::TEMP_PREFIX))
        .collect()
}

fn prune_out(out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prunus"));
    cmd.args(["prune", "--method", "magnitude", "--eval", "none", "--out"]).arg(out);
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    cmd
}

/// `prunus prune --out` killed with SIGKILL at spread-out moments (loading, pruning, in the
/// middle of the save, after it): the output directory is then absent or complete and
/// loadable, and the next run removes every temporary directory a kill left. SIGTERM removes
/// the run's own temporary directory before the process exits.
#[test]
fn prune_out_killed_at_any_moment_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut absent, mut complete) = (0, 0);
    for trial in 0..12 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay_ms = 200 + (state >> 33) % 4300;
        let out = dir.path().join(format!("out-{trial}"));
        let mut child = prune_out(&out).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        if out.exists() {
            for f in ["config.json", "model.safetensors", "tokenizer.json"] {
                assert!(out.join(f).is_file(), "trial {trial} ({delay_ms} ms): {f} missing from a visible output");
            }
            let inspect = prunus(&["inspect", out.to_str().unwrap(), "--json"]);
            assert!(inspect.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&inspect.stderr));
            std::fs::remove_dir_all(&out).unwrap();
            complete += 1;
        } else {
            absent += 1;
        }
    }
    eprintln!("kill trials: {absent} absent, {complete} complete");
    // The next run cleans up whatever the kills left behind.
    let last = dir.path().join("last");
    let status = prune_out(&last).status().unwrap();
    assert!(status.success());
    assert!(temps(dir.path()).is_empty(), "left behind: {:?}", temps(dir.path()));

    // SIGTERM in the middle of the save: the run removes its own temporary directory.
    let out = dir.path().join("terminated");
    let mut child = prune_out(&out).spawn().unwrap();
    let start = std::time::Instant::now();
    while temps(dir.path()).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its save started");
        assert!(start.elapsed().as_secs() < 120, "no save started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        // The save finished between the poll and the signal: then the output is complete.
        assert!(out.join("model.safetensors").is_file());
    } else {
        assert_eq!(status.code(), Some(130), "{status}");
        assert!(!out.exists());
    }
    assert!(temps(dir.path()).is_empty(), "left behind: {:?}", temps(dir.path()));
}
