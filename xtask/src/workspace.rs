//! Where things are: the workspace root, a matrix's run directory and committed results,
//! and paths as the user typed them.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory). `cargo run` sets
/// CARGO_MANIFEST_DIR at run time; the build-time value is only a fallback, because several
/// checkouts sharing one target directory overwrite each other's `target/release/xtask`.
pub fn root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    dir.parent().expect("xtask lives in the workspace").to_path_buf()
}

/// `p` taken from the directory the command was typed in (`cargo xtask` runs there).
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()) }
}

/// The run directory of matrix `name`: where a bench writes unless told otherwise.
pub fn run_dir(name: &str) -> PathBuf {
    root().join("bench-runs").join(name)
}

/// The committed results of matrix `name`.
pub fn results_dir(name: &str) -> PathBuf {
    root().join("results").join(name)
}

/// Whether `a` and `b` are the same directory (compared canonically where they exist).
pub fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}
