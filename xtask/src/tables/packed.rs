//! Cells timed with packed sparse linears (`prunus prune --speed`, a matrix's `speed = true`):
//! their decode and evaluation speed and their size, dense against packed, read from the
//! `packed` section of their run report ([`PackedSpeed`]), as rows of the long table (task
//! `packed`) and as one summary table.

use std::fmt::Write;

use prunus_report::{Evaluation, PackedSpeed};

use super::settings::{method_label, setting_label};
use crate::record::CellRecord;

/// The task name of the synthesized rows.
pub const TASK: &str = "packed";

/// The records with one evaluation row per packed-speed number appended.
pub fn with_packed_rows(records: &[CellRecord]) -> Vec<CellRecord> {
    let mut out = records.to_vec();
    for r in &mut out {
        let Some(p) = r.report.packed.clone() else { continue };
        let rows = [
            ("decode_tokens_per_second_dense", p.decode_tokens_per_s.dense, "decode tokens/s, every linear dense (gemm)"),
            ("decode_tokens_per_second_packed", p.decode_tokens_per_s.packed, "decode tokens/s, block linears packed, same process, timed alternately"),
            ("eval_tokens_per_second_dense", p.eval_tokens_per_s.dense, "evaluation tokens/s, every linear dense (gemm)"),
            ("eval_tokens_per_second_packed", p.eval_tokens_per_s.packed, "evaluation tokens/s, block linears packed, same process, timed alternately"),
            ("disk_bytes_dense", p.disk_bytes.dense, "tensor bytes on disk as dense f32 safetensors"),
            ("disk_bytes_sparse_bitmask", p.disk_bytes.packed, "tensor bytes on disk in the sparse-bitmask layout"),
        ];
        let medians = [
            ("decode_speedup_median", p.decode_speedup_median, "decode, median over paired rounds of dense time over packed time"),
            ("eval_speedup_median", p.eval_speedup_median, "evaluation, median over paired rounds of dense time over packed time"),
        ];
        let medians = medians.into_iter().filter_map(|(m, v, what)| v.map(|v| (m, v, what)));
        for (metric, value, protocol) in rows.into_iter().chain(medians) {
            r.report.evaluations.push(Evaluation::derived(TASK, metric, value, &format!("{protocol}; {}", p.protocol)));
        }
    }
    out
}

/// `a / b` as `1.23×`.
fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

/// The summary section: one row per timed cell.
pub fn section(records: &[CellRecord]) -> String {
    let timed: Vec<(&CellRecord, &PackedSpeed)> = records.iter().filter_map(|r| r.report.packed.as_ref().map(|p| (r, p))).collect();
    let Some((_, first)) = timed.first() else { return String::new() };
    let mut out = String::from("## Packed sparse linears on CPU\n\n");
    writeln!(
        out,
        "Each pruned model timed in its own cell's process with its block linears packed (each in the format its zeros suit) against \
         the same model with every linear dense, on the same runtime, alternately: {}. Kernels: `{}` on {}. Disk: the tensors as dense \
         f32 safetensors against compressed-tensors' sparse-bitmask layout (`prune --out-format sparse-bitmask`). The tied \
         embedding/output head stays dense in both. ×: packed over dense, the ratio of the best times, then the median over the \
         paired rounds of dense time over packed time (– where the report predates it). Speeds are of this machine at the time (not \
         compared between runs).\n",
        first.protocol, first.isa, first.cpu
    )
    .unwrap();
    out.push_str("| Method | Setting | Formats | decode tok/s dense | packed | × | median × | eval tok/s dense | packed | × | median × | disk MiB dense | sparse-bitmask |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let median = |m: Option<f64>| m.map_or("–".to_string(), |m| format!("{m:.2}×"));
    let mib = |b: f64| format!("{:.0}", b / (1u64 << 20) as f64);
    for (r, p) in timed {
        let (d, e) = (p.decode_tokens_per_s, p.eval_tokens_per_s);
        writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} |",
            method_label(r),
            setting_label(&r.cell.setting_pattern(), r.cell.sparsity),
            p.formats,
            d.dense,
            d.packed,
            ratio(d.packed, d.dense),
            median(p.decode_speedup_median),
            e.dense,
            e.packed,
            ratio(e.packed, e.dense),
            median(p.eval_speedup_median),
            mib(p.disk_bytes.dense),
            mib(p.disk_bytes.packed)
        )
        .unwrap();
    }
    out.push('\n');
    out
}
