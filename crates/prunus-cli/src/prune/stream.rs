//! `prunus prune --stream`: a layer-wise method over a model (a Hugging Face directory or a
//! GGUF file) held one decoder block at a time ([`StreamingLlama`]), written to `--out` as it
//! goes; nothing is evaluated.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use prunus_eval::report::Seconds;
use prunus_model::StreamingLlama;

use crate::plan::{MethodPlan, PrunePlan};
use crate::session::{self, spinner};
use crate::{budget, outputs, report};

/// Runs `plan` (checked by [`PrunePlan::new`]: layer-wise, `out` given, no tasks).
pub(super) fn run(mut plan: PrunePlan, started: Instant) -> Result<()> {
    let resolved = session::resolve(&plan.model)?;
    let path = resolved.path.clone();
    plan.check_outputs(&path)?;
    let (MethodPlan::Layerwise { method, target }, Some(out)) = (&plan.method, plan.out.as_deref()) else {
        bail!("--stream needs a layer-wise method and --out (checked when planning)");
    };

    let t = Instant::now();
    let pb = spinner(&format!("opening {} (headers only)", path.display()));
    let (tokenizer, tokenizer_json, format, identity) = if path.is_dir() {
        let (tokenizer, json) = session::hf_tokenizer(&path)?;
        (tokenizer, json, "hf", session::hf_identity_file(&path))
    } else {
        let tokenizer = prunus_data::tokenizer::from_gguf(&path)?;
        let json = tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
        (tokenizer, json, "gguf", path.clone())
    };
    let mut model = StreamingLlama::open(&path, out, false, Some(tokenizer_json.into_bytes())).with_context(|| format!("opening {}", path.display()))?;
    pb.set_message("hashing the model file");
    let sha256 = match resolved.sha256 {
        Some(sha) => sha,
        None => prunus_data::assets::sha256_file(&identity)?,
    };
    pb.finish_and_clear();
    let n_blocks = model.config().num_hidden_layers;
    let info = session::model_info(&plan.model, &path, format, sha256, model.n_params(), n_blocks);
    if let Some(c) = &plan.calibration {
        budget::check_calibration(model.config(), c.samples, c.seq_len, plan.opts.batch_size)?;
    }
    let load = t.elapsed().as_secs_f64();
    let tokens = session::wiki_vital_tokens(&tokenizer, plan.calibration.is_some())?;
    let mut seconds = Seconds { load, tokenize: tokens.seconds, ..Seconds::default() };

    let pruned = super::layerwise::prune(&mut model, method, target, plan.calibration, &tokens.calib, plan.opts.batch_size, &mut seconds)?;
    let t = Instant::now();
    let pb = spinner(&format!("finishing {}", out.display()));
    model.finish().with_context(|| format!("saving to {}", out.display()))?;
    pb.finish_and_clear();
    seconds.save = t.elapsed().as_secs_f64();
    seconds.total = started.elapsed().as_secs_f64();

    let mut report = report::base("prune", &info, Vec::new(), seconds);
    report.method = Some(report::method_info(plan.registration, method.config.clone()));
    report.sparsity = Some(pruned.sparsity);
    report.calibration = pruned.calibration;
    report.output = Some(out.display().to_string());
    let peak = report.peak_rss_bytes.map(|b| format!("; peak RSS {:.2} GiB", b as f64 / (1u64 << 30) as f64)).unwrap_or_default();
    println!("{} {} {} (streamed): {}{}{peak}", info.label, method.name, pruned.asked, pruned.summary, pruned.tail);
    outputs::write_report(plan.opts.report.as_deref(), &report)
}
