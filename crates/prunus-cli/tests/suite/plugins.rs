//! Methods loaded at run time (`--plugin`, `PRUNUS_PLUGINS`): listed with their library, run
//! like the built-in method they reimplement (the same pruned weights, bit for bit, and the
//! library recorded in the report), and every failure at the boundary is one line naming the
//! library, with nothing written.

use std::path::Path;
use std::process::{Command, Output};

use prunus_testkit::plugins::examples;

use crate::common::{fails_with_status_1, prunus};

fn prunus_env(args: &[&str], plugins: &[&Path]) -> Output {
    let list = std::env::join_paths(plugins).unwrap();
    Command::new(env!("CARGO_BIN_EXE_prunus")).args(args).env("PRUNUS_PLUGINS", list).output().expect("run prunus")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn loaded_methods_are_listed_with_their_library() {
    let e = examples();
    let out = ok(prunus(&["--plugin", s(&e.rust), "list"]));
    let text = String::from_utf8_lossy(&out.stdout);
    let canonical = std::fs::canonicalize(&e.rust).unwrap();
    let line = text.lines().find(|l| l.trim_start().starts_with("magnitude-rs")).unwrap_or_else(|| panic!("not listed:\n{text}"));
    assert!(line.contains(&format!("[loaded from {}]", canonical.display())), "{line}");
    assert!(line.contains("layer-wise"), "{line}");
    // The environment variable, a flag naming a library already in it (loaded once), JSON.
    let out = ok(prunus_env(&["--plugin", s(&e.c), "list", "--json"], &[&e.rust, &e.c]));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let methods = json["methods"].as_array().unwrap();
    let find = |name: &str| methods.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} not listed"));
    assert_eq!(find("magnitude-c")["library"]["sha256"], sha256(&e.c));
    assert_eq!(find("magnitude-rs")["library"]["path"], canonical.display().to_string());
    assert_eq!(find("magnitude")["library"], serde_json::Value::Null);
    assert_eq!(find("magnitude")["origin"], "prunus-magnitude");
}

#[test]
fn a_loaded_method_prunes_like_the_builtin_and_the_report_names_its_library() {
    let e = examples();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ok(prunus(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]));
    let model = p("syn");
    let run = |method: &str, pattern: &str, out: &str| {
        let mut args = vec!["--plugin", s(&e.rust), "--plugin", s(&e.c), "prune", "--model", &model, "--method", method];
        args.extend(["--pattern", pattern, "--eval", "none", "--calib-samples", "1", "--calib-seq-len", "32"]);
        let (o, r) = (p(out), p(&format!("{out}.json")));
        args.extend(["--out", &o, "--report", &r]);
        ok(prunus(&args));
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        (std::fs::read(dir.path().join(out).join("model.safetensors")).unwrap(), report)
    };
    for (pattern, plugin) in [("unstructured", "magnitude-rs"), ("2:4", "magnitude-c")] {
        let (builtin, builtin_report) = run("magnitude", pattern, &format!("builtin-{plugin}"));
        let (loaded, report) = run(plugin, pattern, plugin);
        assert!(builtin == loaded, "{plugin} {pattern}: the pruned weights differ from the built-in magnitude's");
        assert_eq!(report["method"]["name"], plugin);
        let library = if plugin == "magnitude-rs" { &e.rust } else { &e.c };
        assert_eq!(report["method"]["library"]["sha256"], sha256(library));
        assert!(builtin_report["method"].get("library").is_none(), "a built-in method records no library");
        assert_eq!(report["sparsity"]["overall"], builtin_report["sparsity"]["overall"]);
    }
}

#[test]
fn every_failure_at_the_boundary_is_one_line_naming_the_library_and_writes_nothing() {
    let e = examples();
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    fails_with_status_1(&prunus(&["--plugin", s(&e.c_other_version), "list"]), &[s(&e.c_other_version), "ABI version 2"]);
    fails_with_status_1(&prunus(&["--plugin", s(&e.c_no_entry), "list"]), &[s(&e.c_no_entry), "not a prunus plugin"]);
    std::fs::write(p("libtext.so"), "text").unwrap();
    fails_with_status_1(&prunus(&["--plugin", &p("libtext.so"), "list"]), &["libtext.so", "not a loadable shared library"]);
    fails_with_status_1(&prunus_env(&["list"], &[Path::new(&p("libnone.so"))]), &["libnone.so", "cannot read it"]);
    ok(prunus(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]));
    for (fault, needle) in [
        ("panic", "panicked: deliberate panic in blk.0.q_proj"),
        ("error", "refusing blk.0.q_proj on purpose"),
        ("short_mask", "mask entries for blk.0.q_proj"),
    ] {
        let config = format!("{{\"fault\": \"{fault}\"}}");
        let args = ["--plugin", s(&e.faulty), "prune", "--model", &p("syn"), "--method", "faulty", "--config", &config];
        let (o, r) = (p(&format!("out-{fault}")), p(&format!("{fault}.json")));
        let out = prunus(&[&args[..], &["--eval", "none", "--calib-samples", "1", "--calib-seq-len", "32", "--out", &o, "--report", &r]].concat());
        fails_with_status_1(&out, &[s(&e.faulty), needle]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked at"), "the plugin's panic message is not printed: {stderr}");
        assert!(!Path::new(&o).exists() && !Path::new(&r).exists(), "{fault}: nothing written");
    }
}
