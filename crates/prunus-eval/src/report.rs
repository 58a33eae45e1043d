//! The run report: everything needed to trace a number back to what produced it.
//!
//! Written by `prunus prune` / `prunus eval` as JSON, read by `cargo xtask bench`. The schema
//! lives in the serde-only crate `prunus-report` (so that xtask reads it without linking
//! candle); this module re-exports it with the parts that are prunus-core records bound to
//! prunus-core's types, which is what the CLI builds, and adds what needs the running process.

use prunus_core::pipeline::{BlockSeconds, LayerRecord};
use prunus_core::structured::{IterationRecord, ParamCount};

pub use prunus_report::{CalibrationInfo, Evaluation, MethodInfo, ModelInfo, REPORT_VERSION, Seconds, SpeedInfo};

/// One run of the CLI ([`prunus_report::RunReport`] with prunus-core's records).
pub type RunReport = prunus_report::RunReport<LayerRecord, BlockSeconds, IterationRecord, ParamCount>;

/// What a pruning run removed ([`prunus_report::SparsityInfo`] with prunus-core's records).
pub type SparsityInfo = prunus_report::SparsityInfo<LayerRecord, BlockSeconds>;

/// A structured pruning run ([`prunus_report::StructureInfo`] with prunus-core's records).
pub type StructureInfo = prunus_report::StructureInfo<IterationRecord, ParamCount>;

/// Parameter counts before and after ([`prunus_report::ParamAccounting`] with prunus-core's
/// `ParamCount`).
pub type ParamAccounting = prunus_report::ParamAccounting<ParamCount>;

/// Peak resident set size of this process in bytes, from /proc (Linux); `None` elsewhere.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use prunus_core::structured::{IterationRecord, RemovedUnit};

    /// prunus-core's iteration records and parameter counts read as prunus-report's own forms
    /// (what xtask reads) and serialize back to the same JSON.
    #[test]
    fn core_records_and_the_report_forms_agree() {
        let mut notes = prunus_core::Notes::new();
        notes.insert("loss".into(), serde_json::json!(1.5));
        let it = IterationRecord {
            iteration: 2,
            candidates: 28,
            removed: vec![RemovedUnit { layer: 7, index: 0, params: 3_538_944, score: 0.25 }],
            reduction: 0.125,
            score_seconds: 1.5,
            remove_seconds: 0.01,
            notes,
        };
        let json = serde_json::to_string(&it).unwrap();
        let read: prunus_report::Iteration = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
        let count = super::ParamCount { total: 10, excluding_embeddings: 7 };
        let json = serde_json::to_string(&count).unwrap();
        let read: prunus_report::ParamCount = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), json);
    }
}
