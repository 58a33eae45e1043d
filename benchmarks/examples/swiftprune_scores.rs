//! How close each reading of SwiftPrune's contribution score is to plain per-row magnitude on
//! the default model: per linear, the mean over rows of the rank correlation (Spearman) of the
//! score with |w|, and the share of weights whose fate at 50% per-row sparsity (the k smallest
//! of each row) equals per-row magnitude's. Wanda's score |w| * ||x|| is measured beside them
//! for contrast.
//!
//! The activation statistics are the ones the race's default SwiftPrune cell sees: the probe
//! runs the core pipeline with the default config (EWMA, divide, activation_norm) at 50%
//! unstructured on 32 x 512 calibration tokens (seed 0), so block b's statistics come from the
//! inputs of blocks already pruned by it, and scores every reading on the same statistics.
//!
//! Run: `cargo run --release -p prunus-benches --example swiftprune_scores -- results/race`
//! (about three minutes on two cores); writes `scores.csv` and `scores.md` there.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use prunus_core::layerwise::{Decision, LayerView, LayerwiseMethod, Target};
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::{Built, Group, Notes, Pattern, Result, StatKind};
use prunus_swiftprune::{Config, Form, SwiftPrune, XSource};

/// The readings scored, with their labels in the tables.
fn readings() -> Vec<(&'static str, SwiftPrune)> {
    let r = |form, x_source| SwiftPrune { config: Config { form, x_source, ..Config::default() } };
    vec![
        ("divide, x = input RMS (default)", r(Form::Divide, XSource::ActivationNorm)),
        ("half_product, x = input RMS", r(Form::HalfProduct, XSource::ActivationNorm)),
        ("divide, x = weight row (port)", r(Form::Divide, XSource::WeightRow)),
        ("half_product, x = weight row (reviews)", r(Form::HalfProduct, XSource::WeightRow)),
    ]
}

const WANDA: &str = "Wanda, abs(w) times input RMS (contrast)";

/// One linear's numbers for one score.
struct Row {
    block: usize,
    linear: String,
    score: &'static str,
    spearman_mean: f64,
    spearman_min: f64,
    agreement: f64,
}

/// Runs the default SwiftPrune decision and, on the way, measures every reading.
struct Probe {
    inner: Built<dyn LayerwiseMethod>,
    rows: Arc<Mutex<Vec<Row>>>,
}

/// Ordinal ranks (ties by index) of `v`.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]).then(a.cmp(b)));
    let mut r = vec![0.0; v.len()];
    for (rank, i) in idx.into_iter().enumerate() {
        r[i] = rank as f64;
    }
    r
}

/// Spearman's rank correlation (Pearson's on ordinal ranks).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

impl Probe {
    fn measure(&self, layer: &LayerView<'_>, score: &'static str, values: &[f32]) {
        let d_in = layer.d_in;
        let k = d_in / 2;
        let (mut sum, mut min, mut same) = (0.0, f64::INFINITY, 0usize);
        for (w_row, s_row) in layer.weight.chunks_exact(d_in).zip(values.chunks_exact(d_in)) {
            let abs: Vec<f32> = w_row.iter().map(|w| w.abs()).collect();
            let (rw, rs) = (ranks(&abs), ranks(s_row));
            let rho = spearman(&rw, &rs);
            sum += rho;
            min = min.min(rho);
            // Pruned at 50% per row: ordinal rank below k.
            same += rw.iter().zip(&rs).filter(|(a, b)| (**a < k as f64) == (**b < k as f64)).count();
        }
        let name = layer.name.rsplit('.').next().unwrap_or(layer.name).to_string();
        self.rows.lock().unwrap().push(Row {
            block: layer.block,
            linear: name,
            score,
            spearman_mean: sum / layer.d_out as f64,
            spearman_min: min,
            agreement: same as f64 / (layer.d_out * d_in) as f64,
        });
    }
}

impl LayerwiseMethod for Probe {
    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        self.inner.group(pattern)
    }

    fn decide(&self, layer: &LayerView<'_>, target: &Target, notes: &mut Notes) -> Result<Decision> {
        for (label, reading) in readings() {
            self.measure(layer, label, &reading.scores(layer)?);
        }
        let x2 = layer.stats.mean_sq_per_sample().expect("activation statistics");
        let wanda: Vec<f32> = layer
            .weight
            .chunks_exact(layer.d_in)
            .flat_map(|row| row.iter().zip(&x2).map(|(w, x)| (f64::from(w.abs()) * x.sqrt()) as f32))
            .collect();
        self.measure(layer, WANDA, &wanda);
        self.inner.decide(layer, target, notes)
    }
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "results/race".into()));
    let (mut model, pool) = prunus_benches::default_model_and_tokens(prunus_benches::Text::Calibration)?;
    let windows = prunus_data::corpus::calibration_windows(&pool, 32, 512, 0)?;
    let calibration = Tensor::from_vec(windows.ids, (32, 512), &Device::Cpu)?;

    let inner = prunus_core::registry::find("swiftprune").expect("linked").build_layerwise(&serde_json::Value::Null)?;
    let rows = Arc::new(Mutex::new(Vec::new()));
    let probe = Built::unregistered("swiftprune-probe", Box::new(Probe { inner, rows: Arc::clone(&rows) }) as Box<dyn LayerwiseMethod>);
    let mut on_event = |e: prunus_core::pipeline::Event| {
        let prunus_core::pipeline::Event::Block { index, total } = e;
        eprint!("\rblock {}/{total} ", index + 1);
    };
    let pattern = Pattern::Unstructured { sparsity: 0.5 };
    prune_layerwise(&mut model, &probe, &pattern, Some(&calibration), &PipelineOptions::default(), &mut on_event)?;
    eprintln!();
    drop(probe);
    let rows = rows.lock().unwrap();

    let mut csv = String::from("block,linear,score,spearman_mean,spearman_min,agreement_50\n");
    for r in rows.iter() {
        writeln!(csv, "{},{},\"{}\",{:.6},{:.6},{:.6}", r.block, r.linear, r.score, r.spearman_mean, r.spearman_min, r.agreement)?;
    }
    std::fs::write(out.join("scores.csv"), csv)?;

    let mut scores: Vec<&'static str> = readings().into_iter().map(|(l, _)| l).collect();
    scores.push(WANDA);
    let linears = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
    let mean = |score: &str, linear: Option<&str>, f: &dyn Fn(&Row) -> f64| {
        let sel: Vec<f64> = rows.iter().filter(|r| r.score == score && linear.is_none_or(|l| r.linear == l)).map(f).collect();
        sel.iter().sum::<f64>() / sel.len() as f64
    };
    let mut md = String::from(
        "# SwiftPrune's score readings against per-row magnitude\n\n\
         Produced by `cargo run --release -p prunus-benches --example swiftprune_scores -- results/race` \
         (benchmarks/examples/swiftprune_scores.rs): SmolLM2-135M, activation statistics from 32 x 512 \
         calibration tokens (seed 0) as the default SwiftPrune cell at 50% sees them, every linear of every block. \
         Per layer in `scores.csv`.\n\n\
         rho: Spearman's rank correlation of the score with |w| within a row, averaged over rows (and here over the 30 blocks). \
         Same fate: the share of weights pruned or kept alike by the score and by |w| at 50% per row (the k smallest of each row).\n\n",
    );
    md.push_str("| score | rho (all) | same fate at 50% (all) |");
    for l in linears {
        write!(md, " rho {l} |")?;
    }
    md.push_str("\n|---|---:|---:|");
    md.push_str(&"---:|".repeat(linears.len()));
    md.push('\n');
    for s in &scores {
        write!(md, "| {s} | {:.5} | {:.3}% |", mean(s, None, &|r| r.spearman_mean), 100.0 * mean(s, None, &|r| r.agreement))?;
        for l in linears {
            write!(md, " {:.4} |", mean(s, Some(l), &|r| r.spearman_mean))?;
        }
        md.push('\n');
    }
    let worst = |s: &str| rows.iter().filter(|r| r.score == s).map(|r| r.spearman_min).fold(f64::INFINITY, f64::min);
    md.push_str("\nLowest rho of any single row: ");
    let parts: Vec<String> = scores.iter().map(|s| format!("{s} {:.5}", worst(s))).collect();
    md.push_str(&parts.join("; "));
    md.push_str(".\n");
    std::fs::write(out.join("scores.md"), &md)?;
    print!("{md}");
    Ok(())
}
