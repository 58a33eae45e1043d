//! Checking an installed entry: the cheap check of its manifest against the pins and the file
//! sizes ([`is_valid_in`]), and hashing its files against the manifest ([`verify_in`]).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path};

use sha2::{Digest, Sha256};

use super::spec::{AssetSpec, MANIFEST, MANIFEST_FORMAT, Manifest, ManifestFile, asset_dir};
use crate::error::{Error, Result};

/// Hashes `rel` of the installed entry `dir` and compares it with the (pinned) manifest.
pub(super) fn hash_member(dir: &Path, spec: &AssetSpec, rel: &str) -> Result<String> {
    let manifest = checked_manifest(dir, spec)?;
    let entry = manifest.files.iter().find(|f| f.path == rel).ok_or_else(|| Error::NotInAsset {
        asset: spec.name.clone(),
        file: rel.into(),
    })?;
    hash_file(dir, entry)
}

/// The manifest of the entry `dir`, checked against `spec` (a failure is an error).
pub(super) fn checked_manifest(dir: &Path, spec: &AssetSpec) -> Result<Manifest> {
    check(dir, spec).map_err(|reason| Error::Io {
        op: "checking",
        path: dir.to_path_buf(),
        source: std::io::Error::other(reason),
    })
}

/// Hashes the manifest file `f` of the entry `dir`; its sha256, or a mismatch naming it.
pub(super) fn hash_file(dir: &Path, f: &ManifestFile) -> Result<String> {
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


/// Re-hashes every file of an asset installed under `root`; returns how many were hashed.
pub fn verify_in(root: &Path, spec: &AssetSpec) -> Result<usize> {
    let dir = asset_dir(root, &spec.name);
    let manifest = checked_manifest(&dir, spec)?;
    for f in &manifest.files {
        hash_file(&dir, f)?;
    }
    Ok(manifest.files.len())
}


/// Whether the asset described by `spec` is validly installed under `root` (cheap: no hashing).
pub fn is_valid_in(root: &Path, spec: &AssetSpec) -> bool {
    check(&asset_dir(root, &spec.name), spec).is_ok()
}


/// Reads the manifest of `dir` and checks it against `spec` and the file sizes on disk.
/// The error is a human-readable reason, for logs.
pub(super) fn check(dir: &Path, spec: &AssetSpec) -> std::result::Result<Manifest, String> {
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

