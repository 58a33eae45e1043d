//! Where a command writes, checked before any work starts, and the report written whole.
//!
//! A run can take an hour; a path that cannot be written must fail in the first second, and a
//! path that must not be written (the input model, a symbolic link, a device) must never be.
//!
//! - `--report FILE` goes to a new regular file or replaces an earlier prunus report. It is
//!   refused when it is a directory, a symbolic link, a special file (FIFO, device, socket),
//!   any other existing file, the model file or a path inside the model's directory, or the
//!   `--out` directory itself (a report inside it is fine: it is written after the model is
//!   saved). A missing parent directory is created up front, and the directory is probed for
//!   writing.
//! - The report is written to `.<name>.prunus-tmp-<pid>` beside it and renamed over it; a
//!   leftover of a killed run (its process gone) is removed, with a warning, by the next run
//!   that writes there.
//! - A saved model is built in a temporary directory beside `--out` (prunus-model's
//!   `TEMP_PREFIX`); leftovers of killed runs there are removed, with a warning, when the next
//!   run checks its `--out`.
//! - On SIGINT or SIGTERM, [`install_signal_cleanup`] removes this run's temporary files and
//!   directories before the process exits (SIGKILL cannot be caught: the next run cleans up).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use prunus_eval::report::RunReport;

/// The largest file taken for an earlier report when deciding whether it may be replaced.
const MAX_REPORT_BYTES: u64 = 256 << 20;

fn canon(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `path` made absolute from the current directory, with its parent canonicalized when it
/// exists (so that `a/../b` and symlinked parents compare equal).
fn absolute(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()) };
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) if parent.exists() => canon(parent).join(name),
        _ => abs,
    }
}

/// Whether the file at `path` is a prunus run report (a JSON object with `report_version`,
/// `prunus_version` and `command`).
fn is_prunus_report(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let mut text = String::new();
    if file.take(MAX_REPORT_BYTES).read_to_string(&mut text).is_err() {
        return false;
    }
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|v| ["report_version", "prunus_version", "command"].iter().all(|k| v.get(*k).is_some()))
        .unwrap_or(false)
}

/// Checks `--report FILE` before any work (see the module docs); returns the absolute path to
/// write. `model` is the resolved input model; `out` the `--out` directory, if any.
pub fn check_report(report: &Path, model: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let shown = report.display();
    if report.as_os_str().is_empty() || report.file_name().is_none() || report.to_string_lossy().ends_with('/') {
        bail!("--report {shown}: give a file path");
    }
    let path = absolute(report);
    let model_abs = canon(model);
    let model_dir = if model_abs.is_dir() { Some(model_abs.clone()) } else { None };
    if path == model_abs || model_dir.as_ref().is_some_and(|d| path.starts_with(d)) {
        bail!("--report {shown} is the input model or inside its directory; choose another path");
    }
    if let Some(out) = out {
        let out_abs = absolute(out);
        // A report inside --out is fine: it is written after the model is saved there.
        if path == out_abs {
            bail!("--report {shown} is the --out directory; give a file path");
        }
    }
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => bail!("--report {shown} is a symbolic link; give the path of a new file"),
        Ok(m) if m.is_dir() => bail!("--report {shown} is a directory; give a file path"),
        Ok(m) if !m.is_file() => bail!("--report {shown} is a special file (not a regular file); give the path of a new file"),
        Ok(_) if !is_prunus_report(&path) => bail!("--report {shown} exists and is not a prunus report; choose a new path (prunus replaces only its own reports)"),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("--report {shown}: {e}"),
    }
    let parent = path.parent().context("a file path has a parent")?;
    if !parent.exists() {
        std::fs::create_dir_all(parent).with_context(|| format!("--report {shown}: cannot create the directory {}", parent.display()))?;
    } else if !parent.is_dir() {
        bail!("--report {shown}: {} is not a directory", parent.display());
    }
    remove_stale_temps(&path);
    probe_writable(parent).with_context(|| format!("--report {shown}: the directory {} is not writable", parent.display()))?;
    if let Ok(mut g) = CLEANUP.lock() {
        g.1.push(temp_path(&path));
    }
    Ok(path)
}

/// Checks `--out DIR` before any work: not a symbolic link, not the input model's directory
/// or one containing it, new or an empty directory, its parent created up front and
/// writable. Returns it as an absolute path (so that `.` and `..` name a directory), removes
/// what killed saves left beside it, and registers it for the interrupt cleanup.
pub fn check_out_dir(out: &Path, model: &Path) -> Result<PathBuf> {
    let shown = out.display();
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("--out {shown} is a symbolic link; choose a new directory");
    }
    let abs = if out.exists() { canon(out) } else { absolute(out) };
    let Some(parent) = abs.parent().filter(|_| abs.file_name().is_some()) else {
        bail!("--out {shown}: give a directory path");
    };
    let model_dir = if model.is_dir() { canon(model) } else { canon(model.parent().unwrap_or(Path::new("."))) };
    if abs == canon(model) || model_dir.starts_with(&abs) {
        bail!("--out {shown} is the input model's directory or contains it; choose a new directory");
    }
    match std::fs::metadata(&abs) {
        Ok(m) if !m.is_dir() => bail!("--out {shown} exists and is not a directory; choose a new directory"),
        Ok(_) if std::fs::read_dir(&abs).map(|mut d| d.next().is_some()).unwrap_or(true) => {
            bail!("--out {shown} already exists and is not empty; choose a new directory")
        }
        _ => {}
    }
    if !parent.exists() {
        std::fs::create_dir_all(parent).with_context(|| format!("--out {shown}: cannot create the directory {}", parent.display()))?;
    }
    probe_writable(parent).with_context(|| format!("--out {shown}: the directory {} is not writable", parent.display()))?;
    prunus_model::remove_stale_temps(parent);
    register_temp_dir(parent);
    Ok(abs)
}

/// Creates and removes a file in `dir`: whether this process can write there.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".prunus-write-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create_new(true).open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Directories where this run may create temporary outputs, and temporary files it may write.
static CLEANUP: Mutex<(Vec<PathBuf>, Vec<PathBuf>)> = Mutex::new((Vec::new(), Vec::new()));

/// Removes, on SIGINT or SIGTERM, this process's temporary outputs (model directories being
/// saved, reports being written), then exits with status 130.
pub fn install_signal_cleanup() {
    let result = ctrlc::set_handler(|| {
        let prefix = format!("{}{}-", prunus_model::TEMP_PREFIX, std::process::id());
        if let Ok(guard) = CLEANUP.lock() {
            for dir in &guard.0 {
                for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        // The main thread may still be writing into it: try a few times.
                        for _ in 0..20 {
                            let _ = std::fs::remove_dir_all(entry.path());
                            if !entry.path().exists() {
                                break;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                    }
                }
            }
            for file in &guard.1 {
                let _ = std::fs::remove_file(file);
            }
        }
        eprintln!("interrupted: temporary outputs removed");
        std::process::exit(130);
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot install the interrupt handler; an interrupted save may leave a temporary directory");
    }
}

/// Registers `dir` as a place where this run's temporary model directory may appear.
fn register_temp_dir(dir: &Path) {
    if let Ok(mut g) = CLEANUP.lock() {
        g.0.push(dir.to_path_buf());
    }
}

/// `.<name>.prunus-tmp-<pid>` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.prunus-tmp-{}", std::process::id()))
}

/// Removes the temporary files of earlier runs writing `path` whose process is gone.
fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let prefix = format!(".{}.prunus-tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::warn!(path = %entry.path().display(), "removing the temporary report of an interrupted run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Writes the report to its checked path: a temporary file beside it, then a rename.
pub fn write_report(path: Option<&Path>, report: &RunReport) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let tmp = temp_path(path);
    let text = serde_json::to_string_pretty(report)?;
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing the report {}", path.display()));
    }
    Ok(())
}
