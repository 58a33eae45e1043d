//! Loading methods from shared libraries: the example plugins (an out-of-tree Rust crate and a
//! C file, built by prunus-testkit) register with their origin, pass the layer-wise
//! conformance suite, reproduce the built-in magnitude bit for bit on the default model's first
//! block, and every failure at the boundary is one error naming the library, with the process
//! still running.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;
use prunus_core::layerwise::{LayerView, Target};
use prunus_core::pipeline::prune_linear;
use prunus_core::registry::{self, MethodRegistration};
use prunus_core::{Built, LayerwiseMethod, Pattern, PrunableModel, StatKind, Stats};
use prunus_magnitude as _;
use prunus_model::LlamaModel;
use prunus_testkit::plugins::{Examples, examples};

/// The examples, built and registered once per process (a name registers once).
fn loaded() -> &'static (Examples, Vec<&'static MethodRegistration>) {
    static LOADED: OnceLock<(Examples, Vec<&'static MethodRegistration>)> = OnceLock::new();
    LOADED.get_or_init(|| {
        let e = examples();
        let regs = prunus_loader::load_all(&[&e.rust, &e.c, &e.faulty]).expect("the examples load");
        // SAFETY-free copy of the paths: Examples is not Clone.
        let e = Examples { rust: e.rust.clone(), faulty: e.faulty.clone(), c: e.c.clone(), c_other_version: e.c_other_version.clone(), c_no_entry: e.c_no_entry.clone() };
        (e, regs)
    })
}

fn build(name: &str, config: serde_json::Value) -> Built<dyn LayerwiseMethod> {
    loaded();
    registry::find(name).unwrap().build_layerwise(&config).unwrap()
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn loaded_methods_are_listed_with_their_library() {
    let (e, regs) = loaded();
    let names: Vec<&str> = regs.iter().map(|r| r.name).collect();
    assert_eq!(names, ["magnitude-rs", "magnitude-c", "faulty"]);
    let listed = registry::list().unwrap();
    for (reg, path) in regs.iter().zip([&e.rust, &e.c, &e.faulty]) {
        let found = listed.iter().find(|r| r.name == reg.name).expect("listed");
        let lib = found.library.expect("a loaded method names its library");
        assert_eq!(Path::new(lib.path), std::fs::canonicalize(path).unwrap());
        assert_eq!(lib.sha256, sha256(path));
        assert_eq!(found.origin, lib.path);
        assert_eq!(found.kind(), "layer-wise");
    }
    assert!(listed.iter().any(|r| r.name == "magnitude" && r.library.is_none()), "built-ins stay listed");
}

#[test]
fn loaded_methods_pass_the_conformance_suite() {
    for (name, config) in [
        ("magnitude-rs", serde_json::Value::Null),
        ("magnitude-rs", serde_json::json!({"unstructured_group": "per_row"})),
        ("magnitude-c", serde_json::Value::Null),
    ] {
        prunus_testkit::conformance::check(&build(name, config));
    }
}

#[test]
fn configurations_are_checked_by_the_plugin_and_recorded_with_defaults() {
    assert_eq!(build("magnitude-rs", serde_json::Value::Null).config, serde_json::json!({"unstructured_group": "per_matrix"}));
    assert_eq!(build("magnitude-c", serde_json::json!({})).config, serde_json::json!({}));
    loaded();
    let e = registry::find("magnitude-rs").unwrap().build_layerwise(&serde_json::json!({"group": 1})).err().expect("refused");
    assert!(e.to_string().contains("unknown field `group`") && e.to_string().contains("libprunus_magnitude_rs"), "{e}");
    let e = registry::find("magnitude-c").unwrap().build_layerwise(&serde_json::json!({"x": 1})).err().expect("refused");
    assert!(e.to_string().contains("takes no configuration"), "{e}");
}

/// Every linear of the default model's first block, pruned by the built-in magnitude and by
/// each example, at unstructured 50% and 2:4 (and per row for the Rust one): equal masks and
/// weights, bit for bit.
#[test]
fn the_examples_reproduce_builtin_magnitude_on_the_default_models_first_block() {
    let path = prunus_data::assets::default_model_path().expect("the default model (run `cargo xtask assets`)");
    let model = LlamaModel::from_gguf(&path, &Device::Cpu).unwrap();
    let linears = model.linears(0);
    let runs = [
        ("magnitude-rs", serde_json::Value::Null, serde_json::Value::Null, Pattern::Unstructured { sparsity: 0.5 }),
        ("magnitude-rs", serde_json::Value::Null, serde_json::Value::Null, Pattern::NM { n: 2, m: 4 }),
        ("magnitude-rs", serde_json::json!({"unstructured_group": "per_row"}), serde_json::json!({"unstructured_group": "per_row"}), Pattern::Unstructured { sparsity: 0.7 }),
        ("magnitude-c", serde_json::Value::Null, serde_json::Value::Null, Pattern::Unstructured { sparsity: 0.5 }),
        ("magnitude-c", serde_json::Value::Null, serde_json::Value::Null, Pattern::NM { n: 2, m: 4 }),
    ];
    for (name, config, builtin_config, pattern) in runs {
        let plugin = build(name, config);
        let builtin = registry::find("magnitude").unwrap().build_layerwise(&builtin_config).unwrap();
        let shapes = || linears.iter().map(|l| (l.name.as_str(), l.d_in));
        let t_plugin = Target::check(name, &*plugin.method, &pattern, shapes()).unwrap();
        let t_builtin = Target::check("magnitude", &*builtin.method, &pattern, shapes()).unwrap();
        assert_eq!(t_plugin.group(), t_builtin.group(), "{name} {pattern}");
        for l in &linears {
            let weight = model.weight(0, &l.name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let stats = Stats::new(StatKind::None, l.d_in);
            let full = format!("blk.0.{}", l.name);
            let view = LayerView { block: 0, name: &full, d_out: l.d_out, d_in: l.d_in, weight: &weight, stats: &stats };
            let a = prune_linear(&plugin, &t_plugin, &view).unwrap();
            let b = prune_linear(&builtin, &t_builtin, &view).unwrap();
            assert_eq!(a.mask, b.mask, "{name} {pattern} {full}: masks differ");
            let bits = |w: &[f32]| w.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.weight), bits(&b.weight), "{name} {pattern} {full}: weights differ");
            assert!(a.mask.n_pruned() > 0);
        }
    }
}

/// One linear of a seeded 6 x 8 weight, pruned at 50% by `method`.
fn prune_small(method: &Built<dyn LayerwiseMethod>) -> prunus_core::Result<prunus_core::pipeline::PrunedLinear> {
    let mut rng = prunus_testkit::SplitMix64::new(3);
    let weight: Vec<f32> = (0..48).map(|_| rng.next_f32() - 0.5).collect();
    let stats = Stats::new(StatKind::None, 8);
    let pattern = Pattern::Unstructured { sparsity: 0.5 };
    let target = Target::check(method.name, &*method.method, &pattern, [("blk.0.up", 8)])?;
    prune_linear(method, &target, &LayerView { block: 0, name: "blk.0.up", d_out: 6, d_in: 8, weight: &weight, stats: &stats })
}

fn assert_one_line_naming(e: &impl std::fmt::Display, library: &Path, needle: &str) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(msg.contains(&library.display().to_string()) || msg.contains(&std::fs::canonicalize(library).unwrap().display().to_string()), "names the library: {msg}");
    assert!(msg.contains(needle), "says `{needle}`: {msg}");
}

#[test]
fn a_failing_panicking_or_misshapen_method_is_one_error_and_the_process_goes_on() {
    let (e, _) = loaded();
    for (fault, needle) in [
        ("error", "failed in decide for blk.0.up: refusing blk.0.up on purpose"),
        ("panic", "panicked: deliberate panic in blk.0.up"),
        ("short_mask", "returned 47 mask entries for blk.0.up (6 x 8 = 48 weights)"),
        ("bad_notes", "notes for blk.0.up that are not a JSON object"),
    ] {
        let method = build("faulty", serde_json::json!({"fault": fault}));
        let err = prune_small(&method).err().unwrap_or_else(|| panic!("fault {fault} went through"));
        assert_one_line_naming(&err, &e.faulty, needle);
    }
    // The same library still works after all of that.
    let ok = prune_small(&build("faulty", serde_json::Value::Null)).unwrap();
    assert_eq!(ok.mask.n_pruned(), 24);
}

#[test]
fn libraries_that_are_not_version_1_plugins_are_refused_in_one_line() {
    let (e, _) = loaded();
    let err = prunus_loader::load(&e.c_other_version).unwrap_err();
    assert_one_line_naming(&err, &e.c_other_version, "plugin ABI version 2, and this prunus speaks version 1");
    let err = prunus_loader::load(&e.c_no_entry).unwrap_err();
    assert_one_line_naming(&err, &e.c_no_entry, "not a prunus plugin: it exports no `prunus_plugin` function");
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libnotes.so");
    std::fs::write(&text, "not a library\n").unwrap();
    let err = prunus_loader::load(&text).unwrap_err();
    assert_one_line_naming(&err, &text, "not a loadable shared library");
    let missing = dir.path().join("libmissing.so");
    let err = prunus_loader::load(&missing).unwrap_err();
    assert_one_line_naming(&err, &missing, "cannot read it");
    // A second library with a name already taken (the same file, loaded again).
    let err = prunus_loader::load(&e.c).unwrap_err();
    assert_one_line_naming(&err, &e.c, "method `magnitude-c` is registered twice");
    assert!(registry::list().is_ok(), "a refused library registers nothing");
}
