//! swe against the training-time conformance suite on a tiny synthetic Llama (its history is
//! the ring of the checkpoints the suite's loop passes).

use prunus_core::registry;
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_swe as _;

#[test]
fn swe_passes_the_training_conformance_suite() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap();
    let make = || registry::find("swe").unwrap().build_training(&serde_json::Value::Null).unwrap();
    prunus_testkit::training_conformance::check(&make, &model, 61);
}
