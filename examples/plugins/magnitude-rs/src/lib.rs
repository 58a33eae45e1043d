//! Magnitude pruning (|W|) as an out-of-tree prunus plugin.
//!
//! The same scores as the built-in `magnitude`: it returns them and prunus builds the mask, so
//! the masks are the built-in's bit for bit (prunus-loader's tests check that on the default
//! model's first block). Configuration: `{"unstructured_group": "per_matrix" | "per_row"}`.

use prunus_abi::sdk::{Decision, Layer, Output, Plugin};
use prunus_abi::{GROUP_NM, GROUP_PER_MATRIX, GROUP_PER_ROW, PrunusPattern, STATS_NONE};

/// The method: which group competes for unstructured sparsity.
pub struct MagnitudeRs {
    per_row: bool,
}

impl Plugin for MagnitudeRs {
    const NAME: &'static std::ffi::CStr = c"magnitude-rs";
    const VERSION: &'static std::ffi::CStr = c"1";
    const SUMMARY: &'static std::ffi::CStr = c"magnitude |W| from an out-of-tree Rust library (example of the plugin ABI)";
    const STATS: u32 = STATS_NONE;

    fn create(config_json: &str) -> Result<(Self, Option<String>), String> {
        let config: serde_json::Value = serde_json::from_str(config_json).map_err(|e| e.to_string())?;
        let group = match &config {
            serde_json::Value::Null => "per_matrix".to_string(),
            serde_json::Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| *k != "unstructured_group") {
                    return Err(format!("unknown field `{key}`, expected `unstructured_group`"));
                }
                match map.get("unstructured_group") {
                    None => "per_matrix".to_string(),
                    Some(serde_json::Value::String(s)) if s == "per_matrix" || s == "per_row" => s.clone(),
                    Some(other) => return Err(format!("unstructured_group must be \"per_matrix\" or \"per_row\", not {other}")),
                }
            }
            other => return Err(format!("the configuration must be an object, not {other}")),
        };
        let effective = serde_json::json!({ "unstructured_group": group }).to_string();
        Ok((MagnitudeRs { per_row: group == "per_row" }, Some(effective)))
    }

    fn group(&self, pattern: &PrunusPattern) -> Result<Option<u32>, String> {
        Ok(Some(match (pattern.m, self.per_row) {
            (0, false) => GROUP_PER_MATRIX,
            (0, true) => GROUP_PER_ROW,
            _ => GROUP_NM,
        }))
    }

    fn decide(&self, layer: &Layer<'_>, _pattern: &PrunusPattern, _group: u32) -> Result<Output, String> {
        Ok(Decision::Scores(layer.weight.iter().map(|w| w.abs()).collect()).into())
    }
}

prunus_abi::export_plugin!(MagnitudeRs);
