//! Wanda against the layer-wise conformance suite, its config checks and a small-mask snapshot.

use prunus_core::registry;
use prunus_wanda as _;

#[test]
fn wanda_passes_the_conformance_suite() {
    for config in [serde_json::json!(null), serde_json::json!({"unstructured_group": "per_matrix"})] {
        let method = registry::find("wanda").unwrap().build_layerwise(&config).unwrap();
        prunus_testkit::conformance::check(&method);
    }
}

#[test]
fn unknown_config_fields_are_errors() {
    let e = registry::find("wanda").unwrap().build_layerwise(&serde_json::json!({"group": "x"})).err().expect("an error");
    assert!(e.to_string().contains("unknown field `group`"), "{e}");
}

#[test]
fn small_masks_snapshot() {
    let method = registry::find("wanda").unwrap().build_layerwise(&serde_json::Value::Null).unwrap();
    insta::assert_snapshot!(prunus_testkit::conformance::mask_snapshot(&method));
}
