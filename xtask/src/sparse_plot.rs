//! `cargo xtask sparse-plot DIR`: the plot of `DIR/speed.csv` (written by
//! `cargo run --release -p prunus-benches --example sparse_speed -- DIR`) as `DIR/plot.svg`:
//! packed over dense tokens per second against the sparsity of the block linears, for decoding
//! and for evaluation, unstructured settings joined by lines and N:M patterns as marks at their
//! nominal sparsity, the dense model's speed as the reference at 1.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::plots::{LinePlot, Reference, Series, render_svg};

/// The fields of one CSV line (double quotes protect commas; no escaped quotes occur).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// The sparsity in percent of a setting (`dense`, `70%`, `2:4`) and whether it is N:M.
fn sparsity(setting: &str) -> Option<(f64, bool)> {
    if setting == "dense" {
        return Some((0.0, false));
    }
    if let Some(p) = setting.strip_suffix('%') {
        return p.parse().ok().map(|p| (p, false));
    }
    let (n, m) = setting.split_once(':')?;
    Some((n.parse::<f64>().ok()? / m.parse::<f64>().ok()? * 100.0, true))
}

/// The plot of the CSV text.
fn plot(csv: &str) -> Result<LinePlot> {
    let mut lines = csv.lines();
    let header = fields(lines.next().context("an empty file")?);
    let col = |name: &str| header.iter().position(|h| h == name).with_context(|| format!("no column `{name}`"));
    let (setting, ed, ep, dd, dp) = (col("setting")?, col("eval_tps_dense")?, col("eval_tps_packed")?, col("decode_tps_dense")?, col("decode_tps_packed")?);
    let mut decode = Series { label: "decode (one token at a time)".into(), line: vec![], marks: vec![] };
    let mut eval = Series { label: "evaluation (512-token windows)".into(), line: vec![], marks: vec![] };
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f = fields(line);
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).with_context(|| format!("a number in column {i} of `{line}`"));
        let Some((x, nm)) = sparsity(&f[setting]) else { bail!("unknown setting `{}`", f[setting]) };
        for (series, ratio) in [(&mut decode, num(dp)? / num(dd)?), (&mut eval, num(ep)? / num(ed)?)] {
            if nm { series.marks.push((x, ratio)) } else { series.line.push((x, ratio)) }
        }
    }
    for s in [&mut decode, &mut eval] {
        s.line.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(LinePlot {
        title: "Packed sparse linears against dense, SmolLM2-135M".into(),
        x_label: "zeros in the block linears (%); triangles: 2:4 and 4:8".into(),
        y_label: "packed / dense tokens per second".into(),
        log_y: false,
        legend_upper: true,
        series: vec![decode, eval],
        references: vec![Reference { label: "dense".into(), y: 1.0 }],
    })
}

/// Writes `dir/plot.svg` from `dir/speed.csv`.
pub fn run(dir: &Path) -> Result<()> {
    let csv = std::fs::read_to_string(dir.join("speed.csv")).with_context(|| format!("reading {}/speed.csv (run the sparse_speed example first)", dir.display()))?;
    let svg = render_svg(&plot(&csv)?)?;
    crate::atomic::write(&dir.join("plot.svg"), svg.as_bytes())?;
    println!("wrote {}", dir.join("plot.svg").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_per_setting_with_quoted_formats() {
        let csv = "setting,formats,eval_tps_dense,eval_tps_packed,decode_tps_dense,decode_tps_packed\n\
                   dense,\"210 dense\",800,800,40,40\n70%,\"200 bitmap, 10 csr\",800,400,40,80\n2:4,\"210 bitmap\",800,800,40,60\n";
        let p = plot(csv).unwrap();
        assert_eq!(p.series[0].line, vec![(0.0, 1.0), (70.0, 2.0)]);
        assert_eq!(p.series[0].marks, vec![(50.0, 1.5)]);
        assert_eq!(p.series[1].line, vec![(0.0, 1.0), (70.0, 0.5)]);
        assert!(render_svg(&p).unwrap().starts_with("<svg"));
        assert!(plot("setting,x\n").is_err());
    }
}
