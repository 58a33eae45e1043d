//! Passes the target and host triples to the crate, for the C compiler of `plugins.rs`.

fn main() {
    for var in ["TARGET", "HOST"] {
        println!("cargo:rustc-env=PRUNUS_TESTKIT_{var}={}", std::env::var(var).unwrap_or_default());
    }
}
