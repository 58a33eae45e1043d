//! Report assembly: the parts every run report shares, and the records of a method and of
//! its calibration data.

use std::time::{SystemTime, UNIX_EPOCH};

use prunus_core::registry::MethodRegistration;
use prunus_eval::report::{self, CalibrationInfo, Evaluation, MethodInfo, ModelInfo, RunReport, Seconds};


/// A report of `command` on `model` with `evaluations` and `seconds`; the method-specific
/// sections are left empty.
pub(crate) fn base(command: &str, model: &ModelInfo, evaluations: Vec<Evaluation>, seconds: Seconds) -> RunReport {
    RunReport {
        report_version: report::REPORT_VERSION,
        command: command.into(),
        prunus_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("PRUNUS_GIT_COMMIT").into(),
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(seconds.total as u64),
        model: model.clone(),
        method: None,
        sparsity: None,
        calibration: None,
        evaluations,
        seconds,
        peak_rss_bytes: report::peak_rss_bytes(),
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        output: None,
        structure: None,
        training: None,
        packed: None,
    }
}

/// The report's record of a registered method with its effective configuration.
pub(crate) fn method_info(registration: &MethodRegistration, config: serde_json::Value) -> MethodInfo {
    MethodInfo {
        name: registration.name.into(),
        version: registration.version.into(),
        kind: registration.kind().into(),
        config,
        library: registration.library.map(|l| report::LibraryInfo { path: l.path.into(), sha256: l.sha256.into() }),
    }
}


/// The record of calibration windows drawn from the wiki-vital calibration pool; `seq_len` is
/// what the method sees of each window, `sampler` says how they were drawn.
pub(crate) fn calibration_info(windows: &prunus_data::corpus::CalibrationWindows, seq_len: usize, sampler: String) -> CalibrationInfo {
    CalibrationInfo {
        corpus: "wiki-vital".into(),
        split: "calibration pool".into(),
        n_samples: windows.offsets.len(),
        seq_len,
        seed: windows.seed,
        stream_tokens: windows.stream_tokens,
        offsets: windows.offsets.clone(),
        sampler,
    }
}
