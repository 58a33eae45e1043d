//! prunus-abi: the C ABI through which prunus loads a pruning method from a shared library at
//! run time, and a small SDK for writing such a library in Rust.
//!
//! A plugin exports one function, `prunus_plugin`, returning a [`PrunusPlugin`] table whose
//! first field is [`ABI_VERSION`]. Only plain data crosses the boundary (f32 weights, f64
//! statistics, shapes, NUL-terminated strings): two builds of candle, or of any Rust crate, do
//! not share state, so nothing of prunus's own types goes through. The types here mirror
//! `include/prunus_plugin.h` field for field; that header is the contract for plugins written
//! in C or any other language with a C FFI, and its comments say who owns what.
//!
//! Only layer-wise methods (those that decide one linear at a time from its weights and the
//! statistics of its inputs) go through this ABI: structured and training-time methods work on
//! the whole model (gradients, unit removal, optimiser steps), which has no plain-data shape
//! this narrow.
//!
//! In Rust, implement [`sdk::Plugin`] and call [`export_plugin!`] once: the SDK writes the
//! table, converts between the C types and slices, catches panics at the boundary (a panic
//! becomes an error string, never an unwind into prunus) and frees what it handed out. The
//! host side (opening libraries, checking the table, registering the method) is
//! `prunus-loader`'s.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

pub mod sdk;

/// The version of this ABI; a library whose table says another is refused.
pub const ABI_VERSION: u32 = 1;

/// The name of the one exported symbol.
pub const ENTRY_POINT: &str = "prunus_plugin";

/// The signature of the entry point.
pub type EntryPoint = unsafe extern "C" fn() -> *const PrunusPlugin;

/// Return code: success.
pub const OK: i32 = 0;
/// Return code: failure, the reason in `*error`.
pub const ERROR: i32 = 1;
/// Return code of `group`: the method does not support the pattern.
pub const UNSUPPORTED: i32 = 2;

/// Statistics: the weights alone.
pub const STATS_NONE: u32 = 0;
/// Statistics: per input feature, the sum over tokens of x_j^2.
pub const STATS_SQ_NORM: u32 = 1;
/// Statistics: the squared norms and the d_in x d_in Gram matrix.
pub const STATS_HESSIAN: u32 = 2;

/// Group: the whole linear.
pub const GROUP_PER_MATRIX: u32 = 0;
/// Group: each output row.
pub const GROUP_PER_ROW: u32 = 1;
/// Group: each M consecutive input columns of a row.
pub const GROUP_NM: u32 = 2;

/// Decision: one score per weight (low = pruned first); prunus builds the mask.
pub const DECISION_SCORES: u32 = 1;
/// Decision: the method's own mask.
pub const DECISION_MASK: u32 = 2;
/// Decision: the method's mask and its rewritten weights.
pub const DECISION_MASK_AND_WEIGHTS: u32 = 3;

/// The pattern asked for: N:M, or unstructured (`n = m = 0`) at `sparsity`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrunusPattern {
    /// Weights removed per group of `m` (0 for unstructured).
    pub n: u32,
    /// Consecutive input columns per group (0 for unstructured).
    pub m: u32,
    /// The fraction removed (`n / m` for N:M).
    pub sparsity: f64,
}

/// One linear layer and the statistics of its inputs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PrunusLayer {
    /// Decoder block index.
    pub block: u64,
    /// NUL-terminated name, e.g. `blk.3.q_proj`.
    pub name: *const c_char,
    /// Rows (output features).
    pub d_out: u64,
    /// Columns (input features).
    pub d_in: u64,
    /// `d_out * d_in` weights, row-major.
    pub weight: *const f32,
    /// `d_in` per-feature squared norms, or null.
    pub sq_norm: *const f64,
    /// `d_in * d_in` Gram matrix, row-major, or null.
    pub hessian: *const f64,
    /// Calibration sequences seen.
    pub n_samples: u64,
    /// Calibration tokens seen.
    pub n_tokens: u64,
}

/// A decision, filled in by `decide` and released by `free_output`.
#[repr(C)]
#[derive(Debug)]
pub struct PrunusOutput {
    /// One of the `DECISION_*` constants.
    pub decision: u32,
    /// Scores, or the rewritten weights.
    pub values: *mut f32,
    /// Length of `values`.
    pub values_len: u64,
    /// Flags, 1 = pruned.
    pub mask: *mut u8,
    /// Length of `mask`.
    pub mask_len: u64,
    /// Optional JSON object for the report.
    pub notes: *mut c_char,
}

impl PrunusOutput {
    /// An output with nothing in it, as the host hands it to `decide`.
    pub const fn empty() -> Self {
        PrunusOutput {
            decision: 0,
            values: std::ptr::null_mut(),
            values_len: 0,
            mask: std::ptr::null_mut(),
            mask_len: 0,
            notes: std::ptr::null_mut(),
        }
    }
}

/// `create(config_json, state, effective_config, error)`.
pub type CreateFn = unsafe extern "C" fn(*const c_char, *mut *mut c_void, *mut *mut c_char, *mut *mut c_char) -> i32;
/// `group(state, pattern, group, error)`.
pub type GroupFn = unsafe extern "C" fn(*const c_void, *const PrunusPattern, *mut u32, *mut *mut c_char) -> i32;
/// `decide(state, layer, pattern, group, out, error)`.
pub type DecideFn =
    unsafe extern "C" fn(*const c_void, *const PrunusLayer, *const PrunusPattern, u32, *mut PrunusOutput, *mut *mut c_char) -> i32;
/// `free_output(out)`.
pub type FreeOutputFn = unsafe extern "C" fn(*mut PrunusOutput);
/// `free_string(s)`.
pub type FreeStringFn = unsafe extern "C" fn(*mut c_char);
/// `destroy(state)`.
pub type DestroyFn = unsafe extern "C" fn(*mut c_void);

/// The table a plugin's entry point returns. The function pointers are `Option`s so that a
/// null in a C table is seen as `None` rather than being undefined behaviour.
#[repr(C)]
#[derive(Debug)]
pub struct PrunusPlugin {
    /// [`ABI_VERSION`]; always the first field.
    pub abi_version: u32,
    /// Registry name.
    pub name: *const c_char,
    /// Bumped whenever the method's numbers can change.
    pub version: *const c_char,
    /// One line for `prunus list`.
    pub summary: *const c_char,
    /// One of the `STATS_*` constants.
    pub stats: u32,
    /// Makes the method's state from its JSON configuration.
    pub create: Option<CreateFn>,
    /// The comparison group for a pattern.
    pub group: Option<GroupFn>,
    /// The decision for one linear.
    pub decide: Option<DecideFn>,
    /// Releases an output's buffers.
    pub free_output: Option<FreeOutputFn>,
    /// Releases a string the plugin handed out.
    pub free_string: Option<FreeStringFn>,
    /// Releases the state.
    pub destroy: Option<DestroyFn>,
}

// SAFETY: the table is immutable after the entry point returns it; its pointers are to static
// strings and functions.
unsafe impl Sync for PrunusPlugin {}
// SAFETY: as above.
unsafe impl Send for PrunusPlugin {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header and the Rust types must agree; the C example plugins check the layout end to
    /// end (prunus-loader's tests), this checks the constants.
    #[test]
    fn the_header_states_the_same_constants() {
        let header = include_str!("../include/prunus_plugin.h");
        let define = |name: &str| -> i64 {
            let line = header.lines().find(|l| l.starts_with(&format!("#define {name} "))).unwrap_or_else(|| panic!("{name} not in the header"));
            let value = line.split_whitespace().nth(2).unwrap().trim_end_matches('u');
            value.parse().unwrap()
        };
        assert_eq!(define("PRUNUS_ABI_VERSION"), i64::from(ABI_VERSION));
        for (name, value) in [("PRUNUS_OK", OK), ("PRUNUS_ERROR", ERROR), ("PRUNUS_UNSUPPORTED", UNSUPPORTED)] {
            assert_eq!(define(name), i64::from(value), "{name}");
        }
        for (name, value) in [
            ("PRUNUS_STATS_NONE", STATS_NONE),
            ("PRUNUS_STATS_SQ_NORM", STATS_SQ_NORM),
            ("PRUNUS_STATS_HESSIAN", STATS_HESSIAN),
            ("PRUNUS_GROUP_PER_MATRIX", GROUP_PER_MATRIX),
            ("PRUNUS_GROUP_PER_ROW", GROUP_PER_ROW),
            ("PRUNUS_GROUP_NM", GROUP_NM),
            ("PRUNUS_DECISION_SCORES", DECISION_SCORES),
            ("PRUNUS_DECISION_MASK", DECISION_MASK),
            ("PRUNUS_DECISION_MASK_AND_WEIGHTS", DECISION_MASK_AND_WEIGHTS),
        ] {
            assert_eq!(define(name), i64::from(value), "{name}");
        }
        assert!(header.contains(&format!("{ENTRY_POINT}(void)")));
    }

    #[test]
    fn the_version_is_the_first_field() {
        assert_eq!(std::mem::offset_of!(PrunusPlugin, abi_version), 0);
        // Option<fn> is one pointer, null for None, as a C table's NULL.
        assert_eq!(std::mem::size_of::<Option<CreateFn>>(), std::mem::size_of::<*const c_void>());
    }
}
