//! Tidy: the invariants ARCHITECTURE.md lists, checked on the source tree (in the spirit of
//! rust-analyzer's `xtask/src/tidy.rs`). Each check names every offending file.
//!
//! - every package opts into `[workspace.lints]`;
//! - every method plugin under `plugins/` is a workspace member, has an entry in
//!   `[workspace.dependencies]`, is a dependency of `plugins/all` and is named in its `lib.rs`,
//!   and has a README.md;
//! - every Rust file opens with a `//!` comment;
//! - library crates do not print (prunus-testkit and prunus-fuzz are test support and may);
//! - no code outside a plugin's own crate matches or compares a method's name: methods are
//!   looked up in the registry;
//! - no source file has more than 600 lines of code outside its test module;
//! - no source file imports a module that imports it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root. `cargo test` sets CARGO_MANIFEST_DIR at run time too; the compile-time
/// value is only a fallback, because checkouts sharing one target directory reuse each other's
/// test binary when its sources are not newer.
fn root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.parent().unwrap().to_path_buf()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn toml_of(p: &Path) -> toml::Table {
    read(p).parse().unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.map(Result::unwrap) {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() && name != "target" && !name.starts_with('.') {
                stack.push(p);
            } else if name.ends_with(".rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's package directories (from `[workspace] members`).
fn members() -> Vec<String> {
    let t = toml_of(&root().join("Cargo.toml"));
    t["workspace"]["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
}

/// The method plugins: every directory under plugins/ except `all`.
fn plugin_dirs() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "all")
        .map(|n| format!("plugins/{n}"))
        .collect();
    out.sort();
    out
}

fn package_name(dir: &str) -> String {
    toml_of(&root().join(dir).join("Cargo.toml"))["package"]["name"].as_str().unwrap().to_string()
}

/// The text before the file's test module (`#[cfg(test)]` at the start of a line), so that
/// tests may print, name methods and import their parent.
fn code_part(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |i| &text[..i])
}

fn fail_if_any(what: &str, offenders: &[String]) {
    assert!(offenders.is_empty(), "{what}:\n  {}", offenders.join("\n  "));
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[test]
fn every_package_opts_into_the_workspace_lints() {
    let offenders: Vec<String> = members()
        .into_iter()
        .filter(|m| {
            let t = toml_of(&root().join(m).join("Cargo.toml"));
            t.get("lints").and_then(|l| l.get("workspace")).and_then(|w| w.as_bool()) != Some(true)
        })
        .collect();
    fail_if_any("packages without `[lints] workspace = true`", &offenders);
}

#[test]
fn every_plugin_is_a_member_a_workspace_dependency_and_linked_by_plugins_all() {
    let root = root();
    let members: BTreeSet<String> = members().into_iter().collect();
    let ws = toml_of(&root.join("Cargo.toml"));
    let ws_deps = ws["workspace"]["dependencies"].as_table().unwrap();
    let all = toml_of(&root.join("plugins/all/Cargo.toml"));
    let all_deps = all["dependencies"].as_table().unwrap();
    let all_lib = read(&root.join("plugins/all/src/lib.rs"));
    let mut offenders = Vec::new();
    for dir in plugin_dirs() {
        let name = package_name(&dir);
        let ident = name.replace('-', "_");
        if !members.contains(&dir) {
            offenders.push(format!("{dir}: not in [workspace] members"));
        }
        match ws_deps.get(&name).and_then(|d| d.get("path")).and_then(|p| p.as_str()) {
            Some(p) if p == dir => {}
            other => offenders.push(format!("{dir}: [workspace.dependencies] {name} path is {other:?}")),
        }
        if !all_deps.contains_key(&name) {
            offenders.push(format!("{dir}: not a dependency of plugins/all"));
        }
        if !all_lib.contains(&format!("use {ident} as _;")) {
            offenders.push(format!("{dir}: plugins/all/src/lib.rs lacks `use {ident} as _;`"));
        }
        if !root.join(&dir).join("README.md").is_file() {
            offenders.push(format!("{dir}: no README.md"));
        }
    }
    fail_if_any("plugins not wired in", &offenders);
}

#[test]
fn every_rust_file_opens_with_a_module_comment() {
    let offenders: Vec<String> = members()
        .iter()
        .flat_map(|m| rust_files(&root().join(m)))
        .filter(|p| !read(p).trim_start().starts_with("//!"))
        .map(|p| rel(&p))
        .collect();
    fail_if_any("files that do not open with `//!`", &offenders);
}

/// Library crates (everything but the CLI, xtask, benchmarks and the test-support crates).
fn library_sources() -> Vec<PathBuf> {
    let binaries = ["crates/prunus-cli", "xtask", "benchmarks", "crates/prunus-testkit", "crates/prunus-fuzz"];
    members().iter().filter(|m| !binaries.contains(&m.as_str())).flat_map(|m| rust_files(&root().join(m).join("src"))).collect()
}

#[test]
fn library_crates_do_not_print() {
    let macros = ["println!", "eprintln!", "print!", "eprint!", "dbg!"];
    let mut offenders = Vec::new();
    for p in library_sources() {
        let text = read(&p);
        for (i, line) in code_part(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(m) = macros.iter().find(|m| code.contains(*m)) {
                offenders.push(format!("{}:{}: {m}", rel(&p), i + 1));
            }
        }
    }
    fail_if_any("printing in a library crate (return the text or use tracing)", &offenders);
}

/// Every registered method's name, from the plugins' declarations.
fn method_names() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in plugin_dirs() {
        let text = read(&root().join(&dir).join("src/lib.rs"));
        let at = text.find("const NAME: &'static str = \"").unwrap_or_else(|| panic!("{dir}: no `const NAME` declaration"));
        let rest = &text[at + "const NAME: &'static str = \"".len()..];
        out.push((dir, rest[..rest.find('"').unwrap()].to_string()));
    }
    out
}

#[test]
fn no_code_matches_on_method_names() {
    let names = method_names();
    assert!(names.len() >= 8, "{names:?}");
    let mut sources: Vec<PathBuf> = ["crates", "xtask/src", "benchmarks"].iter().flat_map(|d| rust_files(&root().join(d))).collect();
    sources.extend(plugin_dirs().iter().flat_map(|d| rust_files(&root().join(d).join("src"))));
    let mut offenders = Vec::new();
    for p in sources.into_iter().filter(|p| !p.components().any(|c| c.as_os_str() == "tests")) {
        let text = read(&p);
        for (dir, name) in &names {
            if p.starts_with(root().join(dir)) {
                continue; // a plugin may name itself
            }
            let lit = format!("\"{name}\"");
            for (i, line) in code_part(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let Some(at) = code.find(&lit) else { continue };
                let after = code[at + lit.len()..].trim_start();
                let before = code[..at].trim_end();
                if after.starts_with("=>") || after.starts_with('|') || after.starts_with("==") || before.ends_with("==") || before.ends_with('|') {
                    offenders.push(format!("{}:{}: {}", rel(&p), i + 1, line.trim()));
                }
            }
        }
    }
    fail_if_any("code that matches on a method's name (look it up in the registry instead)", &offenders);
}

#[test]
fn paths_of_the_checkout_are_looked_up_at_run_time() {
    // Checkouts that share a target directory reuse each other's test binaries when the
    // sources are not newer, so a compile-time CARGO_MANIFEST_DIR can name another checkout
    // (even one that no longer exists): it may only be the fallback of the run-time variable.
    let mut sources: Vec<PathBuf> = ["crates", "xtask", "plugins", "benchmarks"].iter().flat_map(|d| rust_files(&root().join(d))).collect();
    sources.sort();
    let mut offenders = Vec::new();
    for p in sources {
        for (i, line) in read(&p).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("env!(\"CARGO_MANIFEST_DIR\")") && !code.contains("var_os(\"CARGO_MANIFEST_DIR\")") {
                offenders.push(format!("{}:{}: {}", rel(&p), i + 1, line.trim()));
            }
        }
    }
    fail_if_any("compile-time CARGO_MANIFEST_DIR without the run-time variable first", &offenders);
}

#[test]
fn no_source_file_is_longer_than_600_lines_of_code() {
    let mut offenders = Vec::new();
    for m in members() {
        for p in rust_files(&root().join(&m)) {
            let r = rel(&p);
            let is_test = p.components().any(|c| c.as_os_str() == "tests") || p.file_name().is_some_and(|n| n == "tests.rs");
            if is_test || r.contains("/benches/") || r.contains("/examples/") {
                continue;
            }
            let n = code_part(&read(&p)).lines().count();
            if n > 600 {
                offenders.push(format!("{r}: {n} lines"));
            }
        }
    }
    fail_if_any("source files over 600 lines of code (split them by job)", &offenders);
}

/// The module path of a source file under `src` (`lib.rs`/`main.rs` -> [], `a/mod.rs` -> [a],
/// `a/b.rs` -> [a, b]).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_string());
    }
    parts
}

/// The module paths the `use` declarations of the file of module `module` name (`crate::`,
/// `super::`, `self::`), as absolute paths, one level of `{...}` expanded.
fn used_modules(module: &[String], code: &str, is_module: &dyn Fn(&[String]) -> bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(rest) = stmt.strip_prefix("use ").or_else(|| stmt.strip_prefix("pub use ")).or_else(|| {
            stmt.strip_prefix("pub(crate) use ").or_else(|| stmt.strip_prefix("pub(super) use "))
        }) else {
            continue;
        };
        let rest: String = rest.split_whitespace().collect();
        let paths: Vec<String> = match (rest.find('{'), rest.rfind('}')) {
            (Some(a), Some(b)) => rest[a + 1..b].split(',').map(|p| format!("{}{}", &rest[..a], p)).collect(),
            _ => vec![rest],
        };
        for path in paths {
            let segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
            let here: Vec<String> = module.to_vec();
            let mut abs: Vec<String> = match segs.first() {
                Some(&"crate") => Vec::new(),
                Some(&"self") => here.clone(),
                Some(&"super") => {
                    let mut p = here.clone();
                    p.pop();
                    p
                }
                // A path relative to this module (`use child::Thing` in a `mod.rs`); anything
                // else is an external crate.
                Some(first) if is_module(&[here.clone(), vec![first.to_string()]].concat()) => {
                    let mut p = here.clone();
                    p.push(first.to_string());
                    out.push([p, segs[1..].iter().map(|s| s.to_string()).collect()].concat());
                    continue;
                }
                _ => continue,
            };
            for s in &segs[1..] {
                if *s == "super" {
                    abs.pop();
                } else {
                    abs.push(s.to_string());
                }
            }
            out.push(abs);
        }
    }
    out
}

#[test]
fn no_file_imports_a_module_that_imports_it() {
    let mut offenders = Vec::new();
    for m in members() {
        for src in [root().join(&m).join("src")] {
            if !src.is_dir() {
                continue;
            }
            let files = rust_files(&src);
            let modules: BTreeMap<Vec<String>, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
            // For each file, the set of other files it imports from (the longest module prefix
            // of each used path that is a file).
            let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
            for f in &files {
                let module = module_of(&src, f);
                let text = read(f);
                for used in used_modules(&module, code_part(&text), &|p: &[String]| modules.contains_key(p)) {
                    let target = (0..=used.len()).rev().map(|k| used[..k].to_vec()).find(|p| modules.contains_key(p));
                    if let Some(t) = target
                        && t != module
                    {
                        edges.entry(module.clone()).or_default().insert(t);
                    }
                }
            }
            for (a, targets) in &edges {
                for b in targets {
                    if a < b && edges.get(b).is_some_and(|back| back.contains(a)) {
                        offenders.push(format!("{} <-> {}", rel(&modules[a]), rel(&modules[b])));
                    }
                }
            }
        }
    }
    fail_if_any("files that import each other", &offenders);
}

#[test]
fn the_import_check_sees_a_circle() {
    let none = |_: &[String]| false;
    let a = used_modules(&["a".into()], "use crate::b::Thing;\nuse super::c;", &none);
    assert_eq!(a, vec![vec!["b".to_string(), "Thing".into()], vec!["c".into()]]);
    let b = used_modules(&["x".into(), "y".into()], "pub use self::z::{One, two::Three};", &none);
    assert_eq!(b, vec![vec!["x".to_string(), "y".into(), "z".into(), "One".into()], vec!["x".into(), "y".into(), "z".into(), "two".into(), "Three".into()]]);
    let child = |p: &[String]| p == ["x".to_string(), "d".into()];
    let c = used_modules(&["x".into()], "pub use d::{E, F};\nuse serde::Serialize;", &child);
    assert_eq!(c, vec![vec!["x".to_string(), "d".into(), "E".into()], vec!["x".into(), "d".into(), "F".into()]]);
}
