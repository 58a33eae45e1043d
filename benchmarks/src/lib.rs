//! Benchmarks live in `benches/`; run `cargo bench -p prunus-benches`. The examples in
//! `examples/` share what this library loads.

use candle_core::Device;
use prunus_data::assets::{self, AssetId};
use prunus_model::LlamaModel;

/// Which part of the wiki-vital corpus to tokenize.
#[derive(Debug, Clone, Copy)]
pub enum Text {
    /// The held-out evaluation text.
    Eval,
    /// The calibration pool.
    Calibration,
}

/// The default model (SmolLM2-135M, f32 on the CPU) and the wiki-vital text `text` in its
/// tokens, fetched, verified and cached as `prunus` does (progress on standard error).
pub fn default_model_and_tokens(text: Text) -> anyhow::Result<(LlamaModel, Vec<u32>)> {
    let mut say = |m: &str| eprintln!("assets: {m}");
    let model_file = assets::default_model(&mut say)?;
    let corpus_file = assets::verified_file(AssetId::WikiVital, assets::WIKI_VITAL_JSON, &mut say)?;
    let model = LlamaModel::from_gguf(&model_file.path, &Device::Cpu)?;
    let tokenizer = prunus_data::tokenizer::from_gguf(&model_file.path)?;
    let corpus = prunus_data::corpus::wiki_vital(&corpus_file.path)?;
    let text = match text {
        Text::Eval => &corpus.eval_text,
        Text::Calibration => &corpus.calib_text,
    };
    Ok((model, prunus_data::tokenizer::encode_cached(&tokenizer, text)?))
}
