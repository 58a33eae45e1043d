//! The run report: everything needed to trace a number back to what produced it.
//!
//! Written by `prunus prune` / `prunus eval` as JSON, read by `cargo xtask bench`. The schema
//! lives in the serde-only crate `prunus-report` (so that xtask reads it without linking
//! candle); this module re-exports it with the parts that are prunus-core records bound to
//! prunus-core's types, which is what the CLI builds, and adds what needs the running process.

use prunus_core::pipeline::LayerRecord;

pub use prunus_report::{CalibrationInfo, Evaluation, LibraryInfo, MethodInfo, ModelInfo, DensePacked, PackedSpeed, ParamAccounting, REPORT_VERSION, Seconds, SpeedInfo, StructureInfo, TrainEval, TrainStep, TrainingInfo};

/// One run of the CLI ([`prunus_report::RunReport`] with prunus-core's per-layer records).
pub type RunReport = prunus_report::RunReport<LayerRecord>;

/// What a pruning run removed ([`prunus_report::SparsityInfo`] with prunus-core's per-layer
/// records).
pub type SparsityInfo = prunus_report::SparsityInfo<LayerRecord>;

/// Peak resident set size of this process in bytes, from /proc (Linux); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
