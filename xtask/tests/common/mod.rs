//! Helpers of xtask's integration tests that start the `prunus` binary or read the checkout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The workspace root (run-time CARGO_MANIFEST_DIR first: see the tidy test).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    manifest.parent().unwrap().to_path_buf()
}

/// The `prunus` binary `cargo test --workspace --release` builds next to this test
/// (target/release/prunus), or `PRUNUS_BIN`.
pub fn prunus() -> PathBuf {
    if let Some(p) = std::env::var_os("PRUNUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("prunus")
}
