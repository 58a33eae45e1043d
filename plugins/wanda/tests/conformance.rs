use prunus_core::registry;
use prunus_wanda as _;

#[test]
fn wanda_passes_the_conformance_suite() {
    for config in [serde_json::json!(null), serde_json::json!({"unstructured_group": "per_matrix"})] {
        let method = registry::find("wanda").unwrap().build_layerwise(&config).unwrap();
        prunus_testkit::conformance::check(method.as_ref());
    }
}

#[test]
fn unknown_config_fields_are_errors() {
    let e = registry::find("wanda").unwrap().build_layerwise(&serde_json::json!({"group": "x"})).err().expect("an error");
    assert!(e.to_string().contains("unknown field `group`"), "{e}");
}

#[test]
fn small_masks_snapshot() {
    use prunus_core::Pattern;
    let method = registry::find("wanda").unwrap().build_layerwise(&serde_json::Value::Null).unwrap();
    let mut out = String::new();
    for pattern in [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }] {
        let (model, outcome) = prunus_testkit::conformance::run(method.as_ref(), &pattern);
        out += &format!("{pattern} group={} sparsity={:.4}\n", method.group(&pattern).unwrap(), outcome.sparsity());
        out += &prunus_testkit::render_mask(&model, 0, "up", 8);
    }
    insta::assert_snapshot!(out);
}
