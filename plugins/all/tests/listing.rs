//! Every plugin crate this crate links registers at least one method, and the registry lists
//! them all once: what `prunus list` shows. The listing is printed (`--nocapture`) for the
//! test of `cargo xtask new-plugin`, which checks that a scaffolded method appears in it.

use prunus_core::registry;

#[test]
fn every_linked_plugin_registers_and_is_listed() {
    prunus_all::link();
    let listed = registry::list().expect("no name registered twice");
    for r in &listed {
        println!("listed: {} {} {}", r.name, r.kind(), r.origin);
    }
    let manifest = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    let source = std::fs::read_to_string(manifest.join("src/lib.rs")).unwrap();
    let linked: Vec<String> = source
        .lines()
        .filter_map(|l| l.strip_prefix("use ")?.strip_suffix(" as _;"))
        .map(|c| c.replace('_', "-"))
        .collect();
    assert!(!linked.is_empty());
    for krate in linked {
        assert!(listed.iter().any(|r| r.origin == krate), "{krate} is linked but registers no method");
    }
}
