//! A plugin that fails on request, for prunus's tests of the boundary:
//! `{"fault": "error" | "panic" | "short_mask" | "bad_notes"}` (or none: magnitude).

use prunus_abi::sdk::{Decision, Layer, Output, Plugin};
use prunus_abi::{GROUP_NM, GROUP_PER_MATRIX, PrunusPattern, STATS_NONE};

/// The method and its fault.
pub struct Faulty {
    fault: String,
}

impl Plugin for Faulty {
    const NAME: &'static std::ffi::CStr = c"faulty";
    const VERSION: &'static std::ffi::CStr = c"1";
    const SUMMARY: &'static std::ffi::CStr = c"fails on request (tests of the plugin boundary)";
    const STATS: u32 = STATS_NONE;

    fn create(config_json: &str) -> Result<(Self, Option<String>), String> {
        let config: serde_json::Value = serde_json::from_str(config_json).map_err(|e| e.to_string())?;
        let fault = config.get("fault").and_then(|f| f.as_str()).unwrap_or("none").to_string();
        Ok((Faulty { fault }, None))
    }

    fn group(&self, pattern: &PrunusPattern) -> Result<Option<u32>, String> {
        Ok(Some(if pattern.m == 0 { GROUP_PER_MATRIX } else { GROUP_NM }))
    }

    fn decide(&self, layer: &Layer<'_>, _pattern: &PrunusPattern, _group: u32) -> Result<Output, String> {
        let n = layer.weight.len();
        match self.fault.as_str() {
            "error" => Err(format!("refusing {} on purpose", layer.name)),
            "panic" => panic!("deliberate panic in {}", layer.name),
            "short_mask" => Ok(Decision::Mask(vec![false; n - 1]).into()),
            "bad_notes" => Ok(Output { decision: Decision::Mask(vec![false; n]), notes: Some("[1, 2]".into()) }),
            _ => Ok(Decision::Scores(layer.weight.iter().map(|w| w.abs()).collect()).into()),
        }
    }
}

prunus_abi::export_plugin!(Faulty);
