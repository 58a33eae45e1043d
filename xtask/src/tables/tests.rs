//! Tests of the tables: the long frame and the summary against insta snapshots, duplicates,
//! empty inputs, setting order, the written files, and the structured cells' summary.

use std::collections::HashSet;

use polars::prelude::*;
use prunus_report::{Evaluation, MethodInfo, ModelInfo, RunReport, Seconds, SparsityInfo};

use super::curves::{PLOT_ACC, PLOT_PPL};
use super::groups::strings;
use super::long::{COLUMNS, long_frame};
use super::settings::{cmp_setting, setting_label};
use super::*;
use crate::record::{CalibSpec, CellRecord, CellSpec, EvalSpec, TaskSpec};

const MC: [&str; 2] = ["mc:arc_easy", "mc:piqa"];

fn eval(
    task: &str,
    metric: &str,
    value: f64,
    stderr: Option<f64>,
    docs: Option<usize>,
) -> Evaluation {
    Evaluation { stderr, docs, ..Evaluation::derived(task, metric, value, "") }
}

/// A cell with perplexity `ppl`, accuracies `acc[task] = (acc, acc_norm)`, and (pruned
/// cells) agreement; `drop` names a task/metric left out.
fn cell(
    method: Option<&str>,
    pattern: &str,
    sparsity: f64,
    seed: u64,
    ppl: f64,
    acc: [(f64, f64); 2],
    drop: Option<(&str, &str)>,
) -> CellRecord {
    let tasks: Vec<TaskSpec> = ["ppl:wiki-vital", MC[0], MC[1], "agree:wiki-vital"]
        .iter()
        .map(|t| TaskSpec {
            name: t.to_string(),
            limit: t.starts_with("mc:").then_some(200),
        })
        .collect();
    let mut evaluations = vec![eval("ppl:wiki-vital", "ppl", ppl, None, None)];
    for (t, (a, n)) in MC.iter().zip(acc) {
        let docs = if *t == MC[0] { 200 } else { 150 };
        let se = |p: f64| (p * (1.0 - p) / (docs as f64 - 1.0)).sqrt();
        evaluations.push(eval(t, "acc", a, Some(se(a)), Some(docs)));
        evaluations.push(eval(t, "acc_norm", n, Some(se(n)), Some(docs)));
    }
    if method.is_some() {
        evaluations.push(eval(
            "agree:wiki-vital",
            "kl_dense",
            (ppl / 20.0).ln(),
            None,
            None,
        ));
        evaluations.push(eval(
            "agree:wiki-vital",
            "top1_agree",
            20.0 / ppl,
            None,
            None,
        ));
    }
    evaluations.retain(|e| drop != Some((e.task.as_str(), e.metric.as_str())));
    let pruned = method.is_some();
    let work = match method {
        Some("sparsegpt") => 40.0,
        Some(_) => 2.5,
        None => 0.0,
    } * (1.0 + seed as f64 * 0.1);
    let seconds = Seconds {
        load: 1.25,
        tokenize: 0.0,
        save: 0.0,
        calibration_forward: if pruned { 3.0 } else { 0.0 },
        statistics: if pruned { 0.5 } else { 0.0 },
        score_and_mask: work,
        prune_total: if pruned { work + 3.5 } else { 0.0 },
        evaluation: 30.0,
        total: 31.25 + work,
    };
    let label = method.unwrap_or("dense");
    CellRecord {
        record_version: crate::record::RECORD_VERSION,
        key: format!(
            "{label}-{}-{seed}",
            setting_label(pattern, sparsity).replace(['%', ':'], "_")
        ),
        matrix: "fixture".into(),
        cell: CellSpec {
            model: "default".into(),
            method: method.map(String::from),
            label: label.into(),
            config: serde_json::Value::Null,
            pattern: pattern.into(),
            sparsity,
            tasks,
            calibration: CalibSpec {
                samples: 32,
                seq_len: 512,
                seed,
            },
            eval: EvalSpec {
                seq_len: 512,
                windows: 64,
                // As the matrix writes them: the dense cell compares with nothing.
                agreement_windows: if method.is_some() { 8 } else { 0 },
            },
            structured: false,
            training: None,
            library: None,
            budget_of: None,
            speed: false,
        },
        wall_seconds: seconds.total + 0.75,
        finished_unix: 1_700_000_000,
        report: RunReport {
            report_version: 1,
            command: if pruned { "prune" } else { "eval" }.into(),
            prunus_version: "0.1.0".into(),
            git_commit: "0123456789ab".into(),
            started_unix: 1_700_000_000,
            model: ModelInfo {
                label: "SmolLM2-135M".into(),
                path: String::new(),
                sha256: "ab".repeat(32),
                format: "gguf".into(),
                architecture: "llama".into(),
                n_params: 134_515_008,
                n_blocks: 30,
            },
            method: method.map(|m| MethodInfo {
                name: m.into(),
                version: "1".into(),
                kind: "layer-wise".into(),
                config: serde_json::json!({"alpha": 1}),
                library: None,
            }),
            sparsity: pruned.then(|| SparsityInfo {
                pattern: pattern.into(),
                requested: sparsity,
                realised: sparsity * 0.999,
                pruned: 0,
                numel: 0,
                group: String::new(),
                per_layer: Vec::new(),
                per_block: Vec::new(),
            }),
            calibration: None,
            evaluations,
            seconds,
            peak_rss_bytes: Some(1_610_612_736 + if pruned { 268_435_456 } else { 0 }),
            threads: 2,
            output: None,
            structure: None,
            training: None,
            packed: None,
        },
    }
}

/// Dense, Wanda and SparseGPT at 50%, 70% and 2:4 (Wanda 50% with two calibration
/// seeds), one cell without piqa's acc_norm; given out of table order.
fn records() -> Vec<CellRecord> {
    vec![
        cell(
            None,
            "dense",
            0.0,
            0,
            20.0,
            [(0.62, 0.58), (0.66, 0.65)],
            None,
        ),
        cell(
            Some("wanda"),
            "2:4",
            0.5,
            0,
            41.5,
            [(0.51, 0.47), (0.6, 0.59)],
            Some((MC[1], "acc_norm")),
        ),
        cell(
            Some("wanda"),
            "unstructured",
            0.5,
            0,
            29.0,
            [(0.57, 0.54), (0.63, 0.62)],
            None,
        ),
        cell(
            Some("wanda"),
            "unstructured",
            0.5,
            1,
            29.5,
            [(0.56, 0.55), (0.64, 0.61)],
            None,
        ),
        cell(
            Some("sparsegpt"),
            "unstructured",
            0.5,
            0,
            27.25,
            [(0.58, 0.55), (0.64, 0.63)],
            None,
        ),
        cell(
            Some("sparsegpt"),
            "2:4",
            0.5,
            0,
            36.0,
            [(0.53, 0.5), (0.61, 0.6)],
            None,
        ),
        cell(
            Some("wanda"),
            "unstructured",
            0.7,
            0,
            160.0,
            [(0.38, 0.35), (0.55, 0.54)],
            None,
        ),
        cell(
            Some("sparsegpt"),
            "unstructured",
            0.7,
            0,
            95.5,
            [(0.42, 0.4), (0.57, 0.56)],
            None,
        ),
    ]
}

fn options() -> SummaryOptions {
    SummaryOptions {
        title: "Fixture summary".into(),
        time_reference: Some("sparsegpt".into()),
        notes: vec!["Protocol line from the matrix.".into()],
        training_baseline: None,
    }
}

fn csv(df: &mut DataFrame) -> String {
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf)
        .include_header(true)
        .finish(df)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn long_frame_has_one_row_per_cell_task_metric() {
    let records = records();
    let mut df = long_frame(&records).unwrap();
    assert!(df.get_column_names().iter().map(|c| c.as_str()).eq(COLUMNS));
    let evaluations: usize = records.iter().map(|r| r.report.evaluations.len()).sum();
    assert_eq!(df.height(), evaluations);
    let keys = strings(&df, "key").unwrap();
    let tasks = strings(&df, "task").unwrap();
    let metrics = strings(&df, "metric").unwrap();
    let distinct: HashSet<(&String, &String, &String)> = keys
        .iter()
        .zip(&tasks)
        .zip(&metrics)
        .map(|((k, t), m)| (k, t, m))
        .collect();
    assert_eq!(distinct.len(), df.height(), "(key, task, metric) is unique");
    // The cell without piqa's acc_norm has no such row, and no null row either.
    let wanda_24 = &records[1].key;
    assert!(
        !keys
            .iter()
            .zip(&tasks)
            .zip(&metrics)
            .any(|((k, t), m)| k == wanda_24 && t == MC[1] && m == "acc_norm")
    );
    assert_eq!(df.column("metric").unwrap().null_count(), 0);
    insta::assert_snapshot!("long_frame_csv", csv(&mut df));
}

#[test]
fn a_cell_without_evaluations_keeps_a_row_for_its_timings() {
    let mut records = records();
    records[2].report.evaluations.clear();
    let df = long_frame(&records).unwrap();
    let evaluations: usize = records.iter().map(|r| r.report.evaluations.len()).sum();
    assert_eq!(df.height(), evaluations + 1);
    assert_eq!(df.column("metric").unwrap().null_count(), 1);
    let summary = summary_markdown(&records, &options()).unwrap();
    assert!(summary.contains("## Pruning time"));
}

#[test]
fn duplicates_are_errors() {
    let mut records = records();
    records.push(records[2].clone());
    let err = long_frame(&records).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");

    let mut records = self::records();
    let again = records[0].report.evaluations[0].clone();
    records[0].report.evaluations.push(again);
    let err = long_frame(&records).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn summary_snapshot() {
    let records = records();
    let md = summary_markdown(&records, &options()).unwrap();
    assert_eq!(md, summary_markdown(&records, &options()).unwrap());
    insta::assert_snapshot!("summary_md", md);
}

#[test]
fn sections_without_data_are_left_out() {
    let mut records = records();
    for r in &mut records {
        r.report.evaluations.retain(|e| e.metric == "ppl");
    }
    let opts = SummaryOptions {
        time_reference: Some("not-in-records".into()),
        ..options()
    };
    let md = summary_markdown(&records, &opts).unwrap();
    assert!(md.contains("## Perplexity"));
    assert!(md.contains("## Pruning time"));
    for absent in ["## Zero-shot", "## Agreement", "×", PLOT_ACC] {
        assert!(!md.contains(absent), "{absent} in\n{md}");
    }
    assert!(md.contains(PLOT_PPL));
}

#[test]
fn no_records_give_an_empty_frame_and_a_summary_without_tables() {
    let df = long_frame(&[]).unwrap();
    assert_eq!(df.shape(), (0, COLUMNS.len()));
    let md = summary_markdown(&[], &options()).unwrap();
    assert!(!md.contains("## "), "{md}");
    let dir = tempfile::tempdir().unwrap();
    let written = write_tables(&[], dir.path(), &options()).unwrap();
    assert_eq!(written.len(), 3, "no plots without data: {written:?}");
}

#[test]
fn settings_are_ordered_as_in_the_papers() {
    let mut settings = [
        ("2:4", 0.5),
        ("unstructured", 0.6),
        ("dense", 0.0),
        ("4:8", 0.5),
        ("unstructured", 0.5),
    ];
    settings.sort_by(|a, b| cmp_setting(*a, *b));
    let labels: Vec<String> = settings.iter().map(|(p, s)| setting_label(p, *s)).collect();
    assert_eq!(labels, ["dense", "50%", "60%", "4:8", "2:4"]);
    assert_eq!(setting_label("unstructured", 0.625), "62.5%");
    assert_eq!(setting_label("layer", 0.2), "layer 20%");
    assert_eq!(setting_label("layer of all", 0.2), "layer 20% of all");
}

#[test]
fn write_tables_round_trips_parquet_and_writes_svg() {
    let records = records();
    let dir = tempfile::tempdir().unwrap();
    let written = write_tables(&records, dir.path(), &options()).unwrap();
    let names: Vec<&str> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(names, [PARQUET, CSV, SUMMARY, PLOT_PPL, PLOT_ACC]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        written.len(),
        "no temporary files left: {leftovers:?}"
    );

    let expected = long_frame(&records).unwrap();
    let back = ParquetReader::new(std::fs::File::open(&written[0]).unwrap())
        .finish()
        .unwrap();
    assert_eq!(back.shape(), expected.shape());
    assert_eq!(back.schema(), expected.schema());
    assert!(back.equals_missing(&expected));

    let mut expected = expected;
    assert_eq!(
        std::fs::read_to_string(&written[1]).unwrap(),
        csv(&mut expected)
    );
    assert_eq!(
        std::fs::read_to_string(&written[2]).unwrap(),
        summary_markdown(&records, &options()).unwrap()
    );
    for svg in &written[3..] {
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(
            text.starts_with("<svg") || text.starts_with("<?xml"),
            "{}",
            svg.display()
        );
        assert!(text.trim_end().ends_with("</svg>"));
        for label in ["wanda", "sparsegpt", "dense"] {
            assert!(
                crate::plots::has_text(&text, label),
                "{label} in {}",
                svg.display()
            );
        }
    }
    // Same records, same bytes.
    let again = tempfile::tempdir().unwrap();
    let rewritten = write_tables(&records, again.path(), &options()).unwrap();
    for (a, b) in written.iter().zip(&rewritten).skip(1) {
        assert_eq!(
            std::fs::read(a).unwrap(),
            std::fs::read(b).unwrap(),
            "{}",
            a.display()
        );
    }
}

#[test]
fn the_summary_counts_no_zeros_in_structured_cells_and_says_what_their_seconds_are() {
    let s = model_level::tests::structure_json((0.2, 0.158), None, &[&[7]]);
    let mut pip = model_level::tests::record(Some("pip"), Some(s), &[("mc:arc_easy", 0.4)], 40.0);
    // A structured report's sparsity block holds the removed share, not zeros in linears.
    pip.report.sparsity = Some(serde_json::from_value(serde_json::json!({"pattern": "layer", "requested": 0.2, "realised": 0.2})).unwrap());
    let records = model_level::with_structure_rows(&[model_level::tests::record(None, None, &[("mc:arc_easy", 0.5)], 14.2), pip]);
    let opts = SummaryOptions { title: "t".into(), time_reference: None, notes: vec![], training_baseline: None };
    let md = summary_markdown(&records, &opts).unwrap();
    assert!(!md.contains("Realised sparsity"), "{md}");
    assert!(md.contains("## Pruning time") && md.contains("For structured cells, score+mask is every scoring iteration"), "{md}");
    assert!(md.contains("## Structured pruning"), "{md}");
}

#[test]
fn timed_cells_get_the_packed_section_and_long_rows() {
    let mut timed = cell(Some("wanda"), "2:4", 0.5, 0, 30.0, [(0.5, 0.5), (0.6, 0.6)], None);
    timed.cell.speed = true;
    let pair = |dense: f64, packed: f64| prunus_report::DensePacked { dense, packed };
    timed.report.packed = Some(prunus_report::PackedSpeed {
        isa: "avx512f".into(),
        cpu: "Test CPU".into(),
        formats: "210 bitmap".into(),
        eval_tokens_per_s: pair(800.0, 780.0),
        decode_tokens_per_s: pair(40.0, 60.0),
        first_token_s: pair(0.1, 0.09),
        disk_bytes: pair(538.0 * 1048576.0, 340.0 * 1048576.0),
        linear_bytes: pair(405.0 * 1048576.0, 216.0 * 1048576.0),
        eval_speedup_median: Some(0.99),
        decode_speedup_median: None,
        protocol: "1 window of 512 tokens".into(),
    });
    let records = packed::with_packed_rows(&[cell(None, "dense", 0.0, 0, 14.0, [(0.5, 0.5), (0.6, 0.6)], None), timed]);
    let md = summary_markdown(&records, &options()).unwrap();
    assert!(md.contains("## Packed sparse linears on CPU") && md.contains("`avx512f` on Test CPU"), "{md}");
    // A median the report lacks (one written before medians were measured) shows as a dash.
    assert!(md.contains("| wanda | 2:4 | 210 bitmap | 40.0 | 60.0 | 1.50× | – | 800 | 780 | 0.97× | 0.99× | 538 | 340 |"), "{md}");
    let rows: Vec<&Evaluation> = records[1].report.evaluations.iter().filter(|e| e.task == packed::TASK).collect();
    assert_eq!(rows.len(), 7);
    assert!(rows.iter().any(|e| e.metric == "decode_tokens_per_second_packed" && e.value == 60.0));
    assert!(rows.iter().any(|e| e.metric == "eval_speedup_median" && e.value == 0.99));
    // Cells that were not timed have no such section.
    let plain = summary_markdown(&[cell(None, "dense", 0.0, 0, 14.0, [(0.5, 0.5), (0.6, 0.6)], None)], &options()).unwrap();
    assert!(!plain.contains("Packed sparse"));
}
