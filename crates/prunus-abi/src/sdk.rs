//! Writing a plugin in Rust: implement [`Plugin`], then `prunus_abi::export_plugin!(MyMethod);`.
//!
//! The SDK turns the C table into safe calls: the layer arrives as slices ([`Layer`]), the
//! decision leaves as owned vectors ([`Decision`]) that the SDK frees when prunus is done with
//! them, and every call runs under `catch_unwind`, so a panic in the method comes back to
//! prunus as an error (`panicked: ...`) instead of unwinding across the boundary (which would
//! abort the process). The default panic message is not printed for a panic caught there.

use std::cell::Cell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::{PrunusLayer, PrunusOutput, PrunusPattern, PrunusPlugin};

/// A layer-wise method exported through the C ABI.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Registry name (lowercase letters, digits and `-`).
    const NAME: &'static CStr;
    /// Bumped whenever the method's numbers can change.
    const VERSION: &'static CStr;
    /// One line for `prunus list`.
    const SUMMARY: &'static CStr;
    /// The statistics it needs: [`crate::STATS_NONE`], [`crate::STATS_SQ_NORM`] or
    /// [`crate::STATS_HESSIAN`].
    const STATS: u32;

    /// The method from its JSON configuration (`null` = defaults), with the effective
    /// configuration (every default filled in) as JSON, or `None` to record the one given.
    fn create(config_json: &str) -> Result<(Self, Option<String>), String>;

    /// The comparison group (`GROUP_*`) for `pattern`, or `Ok(None)` if unsupported.
    fn group(&self, pattern: &PrunusPattern) -> Result<Option<u32>, String>;

    /// The decision for one linear.
    fn decide(&self, layer: &Layer<'_>, pattern: &PrunusPattern, group: u32) -> Result<Output, String>;
}

/// One linear as a Rust plugin sees it.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// Decoder block index.
    pub block: usize,
    /// e.g. `blk.3.q_proj`.
    pub name: &'a str,
    /// Rows.
    pub d_out: usize,
    /// Columns.
    pub d_in: usize,
    /// Row-major `(d_out, d_in)` weights.
    pub weight: &'a [f32],
    /// Per-feature squared norms, if asked for.
    pub sq_norm: Option<&'a [f64]>,
    /// Gram matrix, if asked for.
    pub hessian: Option<&'a [f64]>,
    /// Calibration sequences seen.
    pub n_samples: u64,
    /// Calibration tokens seen.
    pub n_tokens: u64,
}

/// What a method decided for one linear.
#[derive(Debug, Clone)]
pub enum Decision {
    /// One score per weight (low = pruned first).
    Scores(Vec<f32>),
    /// Flags, `true` = pruned.
    Mask(Vec<bool>),
    /// Flags and the rewritten weights.
    MaskAndWeights {
        /// Flags, `true` = pruned.
        mask: Vec<bool>,
        /// The new weights.
        weights: Vec<f32>,
    },
}

/// A decision with optional notes (a JSON object) for the report.
#[derive(Debug, Clone)]
pub struct Output {
    /// The decision.
    pub decision: Decision,
    /// A JSON object, recorded next to the layer in the report.
    pub notes: Option<String>,
}

impl From<Decision> for Output {
    fn from(decision: Decision) -> Self {
        Output { decision, notes: None }
    }
}

/// The table for `P`, as [`export_plugin!`](crate::export_plugin) places it in a static.
pub const fn table<P: Plugin>() -> PrunusPlugin {
    PrunusPlugin {
        abi_version: crate::ABI_VERSION,
        name: P::NAME.as_ptr(),
        version: P::VERSION.as_ptr(),
        summary: P::SUMMARY.as_ptr(),
        stats: P::STATS,
        create: Some(create::<P>),
        group: Some(group::<P>),
        decide: Some(decide::<P>),
        free_output: Some(free_output),
        free_string: Some(free_string),
        destroy: Some(destroy::<P>),
    }
}

/// Exports `$plugin` (a type implementing [`Plugin`]) as this library's `prunus_plugin`.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The entry point prunus looks up.
        #[unsafe(no_mangle)]
        pub extern "C" fn prunus_plugin() -> *const $crate::PrunusPlugin {
            static TABLE: $crate::PrunusPlugin = $crate::sdk::table::<$plugin>();
            &TABLE
        }
    };
}

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into an error; the panic hook stays quiet for such a panic.
fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

fn c_string(s: String) -> *mut c_char {
    CString::new(s.replace('\0', " ")).expect("no NUL left").into_raw()
}

/// Writes `result`'s error into `error` and returns the code.
///
/// # Safety
/// `error` is null or valid for a write.
unsafe fn finish(result: Result<i32, String>, error: *mut *mut c_char) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            if !error.is_null() {
                // SAFETY: the caller's contract.
                unsafe { *error = c_string(e) };
            }
            crate::ERROR
        }
    }
}

unsafe extern "C" fn create<P: Plugin>(
    config: *const c_char,
    state: *mut *mut c_void,
    effective: *mut *mut c_char,
    error: *mut *mut c_char,
) -> i32 {
    let result = guard(|| {
        if config.is_null() || state.is_null() {
            return Err("create: null argument".into());
        }
        // SAFETY: prunus passes a NUL-terminated string.
        let text = unsafe { CStr::from_ptr(config) }.to_str().map_err(|e| format!("configuration is not UTF-8: {e}"))?;
        let (method, eff) = P::create(text)?;
        // SAFETY: checked non-null; prunus passes valid out-pointers.
        unsafe {
            *state = Box::into_raw(Box::new(method)).cast();
            if !effective.is_null() {
                *effective = eff.map_or(std::ptr::null_mut(), c_string);
            }
        }
        Ok(crate::OK)
    });
    // SAFETY: prunus passes a valid out-pointer.
    unsafe { finish(result, error) }
}

unsafe extern "C" fn group<P: Plugin>(state: *const c_void, pattern: *const PrunusPattern, out: *mut u32, error: *mut *mut c_char) -> i32 {
    let result = guard(|| {
        // SAFETY: `state` came from create::<P>; the pointers are prunus's, valid for the call.
        let (method, pattern) = unsafe { (&*state.cast::<P>(), &*pattern) };
        match method.group(pattern)? {
            Some(g) => {
                // SAFETY: as above.
                unsafe { *out = g };
                Ok(crate::OK)
            }
            None => Ok(crate::UNSUPPORTED),
        }
    });
    // SAFETY: prunus passes a valid out-pointer.
    unsafe { finish(result, error) }
}

unsafe extern "C" fn decide<P: Plugin>(
    state: *const c_void,
    layer: *const PrunusLayer,
    pattern: *const PrunusPattern,
    group: u32,
    out: *mut PrunusOutput,
    error: *mut *mut c_char,
) -> i32 {
    let result = guard(|| {
        // SAFETY: `state` came from create::<P>; prunus's pointers and lengths are valid for
        // the call (the header's contract).
        let (method, l, pattern) = unsafe { (&*state.cast::<P>(), &*layer, &*pattern) };
        let (d_out, d_in) = (l.d_out as usize, l.d_in as usize);
        // SAFETY: as above.
        let layer = unsafe {
            Layer {
                block: l.block as usize,
                name: CStr::from_ptr(l.name).to_str().unwrap_or("?"),
                d_out,
                d_in,
                weight: std::slice::from_raw_parts(l.weight, d_out * d_in),
                sq_norm: (!l.sq_norm.is_null()).then(|| std::slice::from_raw_parts(l.sq_norm, d_in)),
                hessian: (!l.hessian.is_null()).then(|| std::slice::from_raw_parts(l.hessian, d_in * d_in)),
                n_samples: l.n_samples,
                n_tokens: l.n_tokens,
            }
        };
        let output = method.decide(&layer, pattern, group)?;
        let mut o = PrunusOutput::empty();
        let flags = |m: Vec<bool>| m.into_iter().map(u8::from).collect::<Vec<u8>>();
        match output.decision {
            Decision::Scores(v) => {
                o.decision = crate::DECISION_SCORES;
                (o.values, o.values_len) = leak(v);
            }
            Decision::Mask(m) => {
                o.decision = crate::DECISION_MASK;
                (o.mask, o.mask_len) = leak(flags(m));
            }
            Decision::MaskAndWeights { mask, weights } => {
                o.decision = crate::DECISION_MASK_AND_WEIGHTS;
                (o.mask, o.mask_len) = leak(flags(mask));
                (o.values, o.values_len) = leak(weights);
            }
        }
        o.notes = output.notes.map_or(std::ptr::null_mut(), c_string);
        // SAFETY: prunus passes a valid out-pointer.
        unsafe { *out = o };
        Ok(crate::OK)
    });
    // SAFETY: prunus passes a valid out-pointer.
    unsafe { finish(result, error) }
}

fn leak<T>(v: Vec<T>) -> (*mut T, u64) {
    let len = v.len() as u64;
    (Box::into_raw(v.into_boxed_slice()).cast::<T>(), len)
}

/// # Safety
/// `ptr`/`len` came from [`leak`] (or ptr is null).
unsafe fn unleak<T>(ptr: *mut T, len: u64) {
    if !ptr.is_null() {
        // SAFETY: the caller's contract: a boxed slice of exactly `len` elements.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len as usize)) });
    }
}

unsafe extern "C" fn free_output(out: *mut PrunusOutput) {
    if out.is_null() {
        return;
    }
    // SAFETY: `out` was filled by decide::<P> above, and is released once.
    unsafe {
        let o = &mut *out;
        unleak(o.values, o.values_len);
        unleak(o.mask, o.mask_len);
        free_string(o.notes);
        *o = PrunusOutput::empty();
    }
}

unsafe extern "C" fn free_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: every string this SDK hands out comes from CString::into_raw.
        drop(unsafe { CString::from_raw(s) });
    }
}

unsafe extern "C" fn destroy<P: Plugin>(state: *mut c_void) {
    if !state.is_null() {
        // SAFETY: `state` came from create::<P> and is destroyed once.
        drop(unsafe { Box::from_raw(state.cast::<P>()) });
    }
}
