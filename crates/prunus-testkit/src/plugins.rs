//! The example plugin libraries of `examples/plugins`, built for the tests of run-time loading
//! (prunus-loader's and the CLI's), once per test process.
//!
//! The Rust example is built by cargo as the out-of-tree crate it is (its own workspace, its
//! own Cargo.lock), into `<target>/plugin-examples`, a build directory of its own so that it
//! never waits on the lock of the build running the tests. The C example is compiled by the
//! `cc` crate's compiler detection into a shared library, three times: as written, and with
//! each of its two test faults (a table of another ABI version; no entry point).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built example libraries.
#[derive(Debug)]
pub struct Examples {
    /// `magnitude-rs`: the out-of-tree Rust crate's cdylib.
    pub rust: PathBuf,
    /// `faulty`: the Rust crate's example cdylib that fails on request.
    pub faulty: PathBuf,
    /// `magnitude-c`: the C plugin.
    pub c: PathBuf,
    /// The C plugin with a table of ABI version 2.
    pub c_other_version: PathBuf,
    /// The C plugin without its entry point.
    pub c_no_entry: PathBuf,
}

/// The workspace root: the nearest ancestor of the running test's package (run-time
/// `CARGO_MANIFEST_DIR`) that holds `examples/plugins`.
pub fn workspace_root() -> PathBuf {
    let start = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()));
    start.ancestors().find(|d| d.join("examples/plugins").is_dir()).unwrap_or_else(|| panic!("no examples/plugins above {}", start.display())).to_path_buf()
}

/// The directory the example libraries are built in.
pub fn build_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    target.join("plugin-examples")
}

/// Builds the examples (once per process) and returns their paths; panics with the
/// compiler's output if a build fails.
pub fn examples() -> &'static Examples {
    static BUILT: OnceLock<Examples> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let dir = build_dir();
        std::fs::create_dir_all(&dir).expect("creating the plugin build directory");
        let (rust, faulty) = build_rust(&root, &dir);
        let source = root.join("examples/plugins/magnitude-c/magnitude.c");
        Examples {
            rust,
            faulty,
            c: compile_c(&root, &source, &dir, "magnitude_c", None),
            c_other_version: compile_c(&root, &source, &dir, "magnitude_c_other_version", Some("1")),
            c_no_entry: compile_c(&root, &source, &dir, "magnitude_c_no_entry", Some("2")),
        }
    })
}

fn dll(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX))
}

fn build_rust(root: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let target = dir.join("cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release", "--lib", "--examples", "--locked", "--manifest-path"])
        .arg(root.join("examples/plugins/magnitude-rs/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("starting cargo for the Rust example plugin");
    assert!(out.status.success(), "building examples/plugins/magnitude-rs failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let release = target.join("release");
    (dll(&release, "prunus_magnitude_rs"), dll(&release.join("examples"), "faulty"))
}

fn compile_c(root: &Path, source: &Path, dir: &Path, stem: &str, fault: Option<&str>) -> PathBuf {
    let mut build = cc::Build::new();
    build
        .target(env!("PRUNUS_TESTKIT_TARGET"))
        .host(env!("PRUNUS_TESTKIT_HOST"))
        .opt_level(2)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .pic(true)
        .include(root.join("crates/prunus-abi/include"));
    if let Some(f) = fault {
        build.define("PRUNUS_TEST_FAULT", f);
    }
    let out = dll(dir, stem);
    let tmp = dir.join(format!(".{stem}.{}.tmp", std::process::id()));
    let mut cmd = build.get_compiler().to_command();
    cmd.args(["-shared", "-Wall", "-Wextra", "-Werror"]).arg("-o").arg(&tmp).arg(source).arg("-lm");
    let result = cmd.output().expect("starting the C compiler");
    assert!(result.status.success(), "compiling {} failed:\n{}", source.display(), String::from_utf8_lossy(&result.stderr));
    std::fs::rename(&tmp, &out).expect("moving the C plugin into place");
    out
}
