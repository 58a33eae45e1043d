//! Checkpoints: everything a run needs to continue bit for bit, written atomically.
//!
//! A checkpoint is a directory `step-NNNNNNNN` (the number of steps taken) inside the run's
//! checkpoint directory, holding `state.json` (the run's identity, the step, the log so far,
//! the optimizer's step count, the method's scalars, and a table of blobs with their lengths
//! and sha256) and `blobs.bin` (the blobs one after the other: weights, the optimizer's
//! moments, the method's buffers, as little-endian f32; the frozen mask as bits). It is
//! written into a hidden temporary sibling, synced and renamed into place, so a run killed at
//! any moment leaves either the whole checkpoint or none; older checkpoints are removed only
//! after the new one is in place. Reading checks every blob's length and digest and the run's
//! identity: a checkpoint of another model or another configuration is refused, naming the
//! first field that differs.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prunus_core::training::MethodState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TrainError};
use prunus_report::{TrainEval, TrainStep};

/// A blob's contents.
#[derive(Debug, Clone, PartialEq)]
pub enum Blob {
    /// f32 values.
    F32(Vec<f32>),
    /// Booleans, packed 8 to a byte.
    Bits(Vec<bool>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BlobEntry {
    name: String,
    kind: String,
    len: usize,
    sha256: String,
}

/// The small part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// What the run is (model, data, method and its configuration, training configuration);
    /// must equal the resuming run's.
    pub identity: serde_json::Value,
    /// Steps taken.
    pub steps_done: u64,
    /// The optimizer's step count.
    pub optimizer_steps: u64,
    /// The method's scalar state.
    pub method_scalars: serde_json::Value,
    /// The per-step log so far.
    pub log: Vec<TrainStep>,
    /// The evaluations so far.
    pub evals: Vec<TrainEval>,
    /// Seconds of training so far (for tokens/s over a resumed run).
    pub seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    format: u32,
    meta: CheckpointMeta,
    blobs: Vec<BlobEntry>,
}

const FORMAT: u32 = 1;

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The small part.
    pub meta: CheckpointMeta,
    /// Named blobs.
    pub blobs: Vec<(String, Blob)>,
}

fn ckpt_err(path: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

fn bytes_of(blob: &Blob) -> Vec<u8> {
    match blob {
        Blob::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Blob::Bits(b) => b.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |acc, (i, &x)| acc | (u8::from(x) << i))).collect(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint as `dir/step-NNNNNNNN` atomically and removes the older ones;
    /// returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| ckpt_err(dir, format!("cannot create the directory: {e}")))?;
        let name = format!("step-{:08}", self.meta.steps_done);
        let final_path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        // What killed runs left half-written (one run writes into a directory at a time).
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".step-") {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let write = || -> std::io::Result<Vec<BlobEntry>> {
            fs::create_dir(&tmp)?;
            let file = fs::File::create(tmp.join("blobs.bin"))?;
            let mut out = BufWriter::with_capacity(1 << 22, file);
            let mut entries = Vec::new();
            for (name, blob) in &self.blobs {
                let bytes = bytes_of(blob);
                out.write_all(&bytes)?;
                let (kind, len) = match blob {
                    Blob::F32(v) => ("f32", v.len()),
                    Blob::Bits(b) => ("bits", b.len()),
                };
                entries.push(BlobEntry { name: name.clone(), kind: kind.into(), len, sha256: hex(&Sha256::digest(&bytes)) });
            }
            out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            let state = StateFile { format: FORMAT, meta: self.meta.clone(), blobs: entries.clone() };
            let mut f = fs::File::create(tmp.join("state.json"))?;
            f.write_all(serde_json::to_string(&state).map_err(std::io::Error::other)?.as_bytes())?;
            f.sync_all()?;
            Ok(entries)
        };
        if let Err(e) = write() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(ckpt_err(&final_path, format!("cannot write: {e}")));
        }
        let _ = fs::remove_dir_all(&final_path);
        fs::rename(&tmp, &final_path).map_err(|e| ckpt_err(&final_path, format!("cannot rename into place: {e}")))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        for old in list(dir)?.into_iter().filter(|(_, p)| *p != final_path) {
            let _ = fs::remove_dir_all(old.1);
        }
        Ok(final_path)
    }

    /// The newest complete checkpoint in `dir`, if any (temporary leftovers of killed runs are
    /// ignored).
    pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
        if !dir.exists() {
            return Ok(None);
        }
        Ok(list(dir)?.into_iter().next_back().map(|(_, p)| p))
    }

    /// Reads and verifies a checkpoint directory.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let text = fs::read_to_string(path.join("state.json")).map_err(|e| ckpt_err(path, format!("cannot read state.json: {e}")))?;
        let state: StateFile = serde_json::from_str(&text).map_err(|e| ckpt_err(path, format!("state.json is not a prunus checkpoint: {e}")))?;
        if state.format != FORMAT {
            return Err(ckpt_err(path, format!("format {} (this prunus reads format {FORMAT})", state.format)));
        }
        let mut file = fs::File::open(path.join("blobs.bin")).map_err(|e| ckpt_err(path, format!("cannot read blobs.bin: {e}")))?;
        let mut blobs = Vec::with_capacity(state.blobs.len());
        for e in &state.blobs {
            let n_bytes = match e.kind.as_str() {
                "f32" => e.len * 4,
                "bits" => e.len.div_ceil(8),
                other => return Err(ckpt_err(path, format!("blob {} has unknown kind {other}", e.name))),
            };
            let mut bytes = vec![0u8; n_bytes];
            file.read_exact(&mut bytes).map_err(|_| ckpt_err(path, format!("blobs.bin is truncated (at blob {})", e.name)))?;
            if hex(&Sha256::digest(&bytes)) != e.sha256 {
                return Err(ckpt_err(path, format!("blob {} does not match its sha256: the checkpoint is corrupt", e.name)));
            }
            let blob = if e.kind == "f32" {
                Blob::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            } else {
                Blob::Bits((0..e.len).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect())
            };
            blobs.push((e.name.clone(), blob));
        }
        if file.read(&mut [0u8; 1]).map_err(|e| ckpt_err(path, e))? != 0 {
            return Err(ckpt_err(path, "blobs.bin is longer than its table: the checkpoint is corrupt"));
        }
        Ok(Checkpoint { meta: state.meta, blobs })
    }

    /// Refuses a checkpoint of another run: names the first field of the identity that differs.
    pub fn check_identity(&self, path: &Path, identity: &serde_json::Value) -> Result<()> {
        match first_difference("", &self.meta.identity, identity) {
            None => Ok(()),
            Some(field) => Err(ckpt_err(
                path,
                format!("it belongs to another run ({field} differs: the checkpoint has {}); resume with the same model and options, or use another checkpoint directory", describe(&self.meta.identity, &field)),
            )),
        }
    }

    /// Takes the blob `name` out.
    pub fn take(&mut self, path: &Path, name: &str) -> Result<Blob> {
        let i = self.blobs.iter().position(|(n, _)| n == name).ok_or_else(|| ckpt_err(path, format!("it has no blob {name}")))?;
        Ok(self.blobs.remove(i).1)
    }

    /// Removes and returns the f32 blob `name`, which must have `len` values.
    pub fn take_f32(&mut self, path: &Path, name: &str, len: usize) -> Result<Vec<f32>> {
        match self.take(path, name)? {
            Blob::F32(v) if v.len() == len => Ok(v),
            _ => Err(TrainError::Checkpoint { path: path.into(), reason: format!("blob {name} has the wrong kind or length") }),
        }
    }

    /// Removes and returns the training-time method's saved state (scalars and buffers).
    pub fn take_method_state(&mut self, path: &Path) -> Result<MethodState> {
        let scalars = self.meta.method_scalars.get("scalars").cloned().unwrap_or_default();
        let names: Vec<String> = serde_json::from_value(self.meta.method_scalars.get("buffers").cloned().unwrap_or_default()).unwrap_or_default();
        let mut buffers = Vec::new();
        for name in names {
            match self.take(path, &format!("method/{name}"))? {
                Blob::F32(b) => buffers.push((name, b)),
                Blob::Bits(_) => return Err(TrainError::Checkpoint { path: path.into(), reason: format!("method buffer {name} is not f32") }),
            }
        }
        Ok(MethodState { scalars, buffers })
    }
}

fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|e| ckpt_err(dir, format!("cannot list: {e}")))?;
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix("step-")?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn first_difference(prefix: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(&path, u, v),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(if prefix.is_empty() { "the run".into() } else { prefix.into() }),
    }
}

fn describe(identity: &serde_json::Value, field: &str) -> String {
    let value = field.split('.').try_fold(identity, |v, k| v.get(k));
    match value {
        Some(v) => v.to_string(),
        None => "no such field".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(steps: u64) -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                identity: serde_json::json!({"model": "m", "train": {"lr": 1e-4}}),
                steps_done: steps,
                optimizer_steps: steps,
                method_scalars: serde_json::Value::Null,
                log: vec![],
                evals: vec![],
                seconds: 1.5,
            },
            blobs: vec![("w".into(), Blob::F32(vec![1.0, -2.5, f32::MIN_POSITIVE])), ("mask".into(), Blob::Bits(vec![true, false, true, true, false, false, true, false, true]))],
        }
    }

    #[test]
    fn round_trips_and_keeps_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let a = sample(3).write(dir.path()).unwrap();
        let b = sample(7).write(dir.path()).unwrap();
        assert!(!a.exists() && b.ends_with("step-00000007"));
        assert_eq!(Checkpoint::latest(dir.path()).unwrap(), Some(b.clone()));
        let back = Checkpoint::read(&b).unwrap();
        assert_eq!(back.blobs, sample(7).blobs);
        assert_eq!(back.meta.steps_done, 7);
    }

    #[test]
    fn corruption_truncation_and_another_run_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(1).write(dir.path()).unwrap();
        let ck = Checkpoint::read(&p).unwrap();
        let e = ck.check_identity(&p, &serde_json::json!({"model": "m", "train": {"lr": 2e-4}})).unwrap_err().to_string();
        assert!(e.contains("train.lr differs") && e.contains("0.0001"), "{e}");
        let blobs = p.join("blobs.bin");
        let mut bytes = fs::read(&blobs).unwrap();
        bytes[0] ^= 1;
        fs::write(&blobs, &bytes).unwrap();
        assert!(Checkpoint::read(&p).unwrap_err().to_string().contains("corrupt"));
        fs::write(&blobs, &bytes[..5]).unwrap();
        assert!(Checkpoint::read(&p).unwrap_err().to_string().contains("truncated"));
    }
}
