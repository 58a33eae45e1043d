//! prunus-loader: methods from shared libraries, loaded at run time through the C ABI of
//! prunus-abi and registered beside the built-in ones.
//!
//! [`load`] opens a library, finds its one entry point (`prunus_plugin`), reads the table's
//! first field (the ABI version) before anything else, checks every string and function of
//! the table, and registers the method ([`prunus_core::registry::register_loaded`]) under its
//! own name with the library's path and sha256 as its origin. From then on it is built and run
//! exactly as a built-in layer-wise method: the pipeline hands it one linear at a time as plain
//! slices ([`AbiMethod`] converts), and the core builds and applies its mask.
//!
//! Every failure is one [`Error::Plugin`] naming the library: not a loadable library, no entry
//! point, another ABI version, a malformed table, a name already taken, a method that returns
//! an error or panics (a Rust plugin built with the SDK catches its panic at the boundary and
//! returns it as an error), or a decision of the wrong length. A library is never unloaded
//! (its code may still be referenced by a method built from it), so nothing is freed twice.
//! A library that crashes the process (a segmentation fault in C) cannot be caught in-process.

use std::ffi::{CStr, CString, c_char, c_void};
use std::path::Path;

use prunus_abi::{self as abi, PrunusLayer, PrunusOutput, PrunusPattern, PrunusPlugin};
use prunus_core::layerwise::{Decision, LayerView, LayerwiseMethod, Target, unsupported};
use prunus_core::registry::{Factory, Library, MethodRegistration};
use prunus_core::{Built, Error, Group, Mask, Notes, Pattern, Result, StatKind};
use sha2::{Digest, Sha256};

/// Loads the library at `path` and registers its method; returns the registration.
pub fn load(path: &Path) -> Result<&'static MethodRegistration> {
    let shown = path.display().to_string();
    let fail = |reason: String| Error::Plugin { library: shown.clone(), reason };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let absolute = std::fs::canonicalize(path).map_err(|e| fail(format!("cannot resolve its path: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    // SAFETY: loading a library runs its initialisers; that is what --plugin asks for.
    let library = unsafe { libloading::Library::new(&absolute) }
        .map_err(|e| fail(format!("not a loadable shared library ({})", one_line(&e.to_string()))))?;
    // SAFETY: the symbol's type is the ABI's entry point; a library that exports the name with
    // another type breaks the ABI's contract.
    let entry: abi::EntryPoint = unsafe { library.get::<abi::EntryPoint>(abi::ENTRY_POINT.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| fail(format!("not a prunus plugin: it exports no `{}` function (see prunus-abi)", abi::ENTRY_POINT)))?;
    // Never unloaded: methods built from it keep pointers into it.
    std::mem::forget(library);
    // SAFETY: the entry point takes nothing and returns a pointer to a static table.
    let table = unsafe { entry() };
    if table.is_null() {
        return Err(fail(format!("`{}` returned a null table", abi::ENTRY_POINT)));
    }
    // The version first, read alone: a table of another version may have another layout.
    // SAFETY: every version's table starts with the u32 version.
    let version = unsafe { *table.cast::<u32>() };
    if version != abi::ABI_VERSION {
        return Err(fail(format!(
            "built for plugin ABI version {version}, and this prunus speaks version {}; rebuild it against prunus-abi {}",
            abi::ABI_VERSION,
            abi::ABI_VERSION
        )));
    }
    // SAFETY: version 1's table, static for the life of the (never unloaded) library.
    let table: &'static PrunusPlugin = unsafe { &*table };
    let library = Library { path: leak(absolute.display().to_string()), sha256: leak(sha256) };
    let registration = registration(table, library).map_err(|reason| fail(reason))?;
    prunus_core::registry::register_loaded(registration).map_err(|e| fail(e.to_string()))
}

/// Loads every library of `paths` in order; the first failure stops (with nothing else run).
pub fn load_all<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<&'static MethodRegistration>> {
    paths.iter().map(|p| load(p.as_ref())).collect()
}

/// The registration of a checked version-1 `table` from `library` (in-process tables too: the
/// tests register a Rust plugin compiled into the test binary this way).
pub fn registration(table: &'static PrunusPlugin, library: Library) -> std::result::Result<MethodRegistration, String> {
    if table.abi_version != abi::ABI_VERSION {
        return Err(format!("table of ABI version {}, expected {}", table.abi_version, abi::ABI_VERSION));
    }
    let text = |p: *const c_char, what: &str| -> std::result::Result<&'static str, String> {
        if p.is_null() {
            return Err(format!("its table has no {what}"));
        }
        // SAFETY: a non-null, NUL-terminated static string (the ABI's contract).
        unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| format!("its {what} is not UTF-8"))
    };
    let name = text(table.name, "name")?;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(format!("method name `{name}` is not 1-64 lowercase letters, digits and '-'"));
    }
    let version = text(table.version, "version")?;
    let summary = text(table.summary, "summary")?;
    let stats = match table.stats {
        abi::STATS_NONE => StatKind::None,
        abi::STATS_SQ_NORM => StatKind::SqNorm,
        abi::STATS_HESSIAN => StatKind::Hessian,
        other => return Err(format!("method `{name}` asks for statistics {other}, which the ABI does not define")),
    };
    let missing = |f: &str| format!("its table has no `{f}` function");
    let functions = Functions {
        create: table.create.ok_or_else(|| missing("create"))?,
        group: table.group.ok_or_else(|| missing("group"))?,
        decide: table.decide.ok_or_else(|| missing("decide"))?,
        free_output: table.free_output.ok_or_else(|| missing("free_output"))?,
        free_string: table.free_string.ok_or_else(|| missing("free_string"))?,
        destroy: table.destroy.ok_or_else(|| missing("destroy"))?,
    };
    let plugin: &'static Plugin = Box::leak(Box::new(Plugin { library: library.path, name, stats, functions }));
    let factory: &'static (dyn Fn(&serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> + Send + Sync) =
        Box::leak(Box::new(move |config: &serde_json::Value| plugin.build(config)));
    Ok(MethodRegistration { name, summary, version, origin: library.path, factory: Factory::Layerwise(factory), library: Some(library) })
}

/// The checked functions of a table.
struct Functions {
    create: abi::CreateFn,
    group: abi::GroupFn,
    decide: abi::DecideFn,
    free_output: abi::FreeOutputFn,
    free_string: abi::FreeStringFn,
    destroy: abi::DestroyFn,
}

/// A loaded method's table, checked.
struct Plugin {
    library: &'static str,
    name: &'static str,
    stats: StatKind,
    functions: Functions,
}

impl Plugin {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Plugin { library: self.library.to_string(), reason: one_line(&reason.into()) }
    }

    /// Takes a string the plugin handed out (and frees it with its own function).
    fn take_string(&self, s: *mut c_char) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string from the plugin, freed once, by the plugin.
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        // SAFETY: as above.
        unsafe { (self.functions.free_string)(s) };
        Some(text)
    }

    /// The error of a failed call: its message, or a placeholder.
    fn failed(&self, call: &str, error: *mut c_char) -> Error {
        let message = self.take_string(error).unwrap_or_else(|| "no message".into());
        self.error(format!("method `{}` failed in {call}: {message}", self.name))
    }

    fn build(&'static self, config: &serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> {
        let text = CString::new(config.to_string()).map_err(|e| self.error(e.to_string()))?;
        let (mut state, mut effective, mut error) = (std::ptr::null_mut::<c_void>(), std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: valid pointers for the call; the ABI's contract.
        let code = unsafe { (self.functions.create)(text.as_ptr(), &mut state, &mut effective, &mut error) };
        if code != abi::OK {
            let message = self.take_string(error).unwrap_or_else(|| "no message".into());
            return Err(prunus_core::declare::bad_config(self.name, format!("{message} (plugin {})", self.library)));
        }
        let method = AbiMethod { plugin: self, state };
        let effective = match self.take_string(effective) {
            Some(e) => serde_json::from_str(&e).map_err(|err| self.error(format!("method `{}` gave an effective configuration that is not JSON: {err}", self.name)))?,
            None => config.clone(),
        };
        Ok(Built { name: self.name, config: effective, method: Box::new(method) })
    }
}

/// A configured method of a loaded library, as the pipeline runs it.
pub struct AbiMethod {
    plugin: &'static Plugin,
    state: *mut c_void,
}

// SAFETY: the ABI requires a method's state to be usable from any thread, and concurrently in
// group() and decide(), which do not mutate it.
unsafe impl Send for AbiMethod {}
// SAFETY: as above.
unsafe impl Sync for AbiMethod {}

impl Drop for AbiMethod {
    fn drop(&mut self) {
        // SAFETY: the state came from this plugin's create() and is destroyed once.
        unsafe { (self.plugin.functions.destroy)(self.state) };
    }
}

fn c_pattern(pattern: &Pattern) -> PrunusPattern {
    match *pattern {
        Pattern::Unstructured { sparsity } => PrunusPattern { n: 0, m: 0, sparsity },
        Pattern::NM { n, m } => PrunusPattern { n: n as u32, m: m as u32, sparsity: pattern.sparsity() },
    }
}

impl LayerwiseMethod for AbiMethod {
    fn stats(&self) -> StatKind {
        self.plugin.stats
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        let p = self.plugin;
        let (mut group, mut error) = (u32::MAX, std::ptr::null_mut());
        let c = c_pattern(pattern);
        // SAFETY: valid pointers for the call; the ABI's contract.
        let code = unsafe { (p.functions.group)(self.state, &c, &mut group, &mut error) };
        match code {
            abi::OK => {}
            abi::UNSUPPORTED => {
                p.take_string(error);
                return Err(unsupported(p.name, pattern));
            }
            _ => return Err(p.failed("group", error)),
        }
        match (group, *pattern) {
            (abi::GROUP_PER_MATRIX, _) => Ok(Group::PerMatrix),
            (abi::GROUP_PER_ROW, _) => Ok(Group::PerRow),
            (abi::GROUP_NM, Pattern::NM { n, m }) => Ok(Group::NM { n, m }),
            (g, _) => Err(p.error(format!("method `{}` chose comparison group {g} for pattern {pattern}, which the ABI does not define there", p.name))),
        }
    }

    fn decide(&self, layer: &LayerView<'_>, target: &Target, notes: &mut Notes) -> Result<Decision> {
        let p = self.plugin;
        let name = CString::new(layer.name).map_err(|e| p.error(e.to_string()))?;
        let c_layer = PrunusLayer {
            block: layer.block as u64,
            name: name.as_ptr(),
            d_out: layer.d_out as u64,
            d_in: layer.d_in as u64,
            weight: layer.weight.as_ptr(),
            sq_norm: layer.stats.sq_sum.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            hessian: layer.stats.gram.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            n_samples: layer.stats.n_samples as u64,
            n_tokens: layer.stats.n_tokens as u64,
        };
        let group = match target.group() {
            Group::PerMatrix => abi::GROUP_PER_MATRIX,
            Group::PerRow => abi::GROUP_PER_ROW,
            Group::NM { .. } => abi::GROUP_NM,
        };
        let pattern = c_pattern(target.pattern());
        let (mut out, mut error) = (PrunusOutput::empty(), std::ptr::null_mut());
        // SAFETY: every pointer is valid for the call (the layer's slices outlive it).
        let code = unsafe { (p.functions.decide)(self.state, &c_layer, &pattern, group, &mut out, &mut error) };
        if code != abi::OK {
            // SAFETY: whatever the plugin put in `out` is its to free.
            unsafe { (p.functions.free_output)(&mut out) };
            return Err(p.failed(&format!("decide for {}", layer.name), error));
        }
        let decision = self.convert(&out, layer, notes);
        // SAFETY: copied out above; released once, by the plugin.
        unsafe { (p.functions.free_output)(&mut out) };
        decision
    }
}

impl AbiMethod {
    /// Copies a plugin's output into a decision, checking every length against the layer.
    fn convert(&self, out: &PrunusOutput, layer: &LayerView<'_>, notes: &mut Notes) -> Result<Decision> {
        let p = self.plugin;
        let n = layer.d_out * layer.d_in;
        let wrong = |what: &str, len: u64| {
            p.error(format!(
                "method `{}` returned {len} {what} for {} ({} x {} = {n} weights)",
                p.name, layer.name, layer.d_out, layer.d_in
            ))
        };
        let values = || -> Result<Vec<f32>> {
            if out.values.is_null() || out.values_len != n as u64 {
                return Err(wrong("values", if out.values.is_null() { 0 } else { out.values_len }));
            }
            // SAFETY: non-null with the checked length, the plugin's until free_output.
            Ok(unsafe { std::slice::from_raw_parts(out.values, n) }.to_vec())
        };
        let mask = || -> Result<Mask> {
            if out.mask.is_null() || out.mask_len != n as u64 {
                return Err(wrong("mask entries", if out.mask.is_null() { 0 } else { out.mask_len }));
            }
            // SAFETY: as above.
            let flags = unsafe { std::slice::from_raw_parts(out.mask, n) };
            if let Some(bad) = flags.iter().find(|&&f| f > 1) {
                return Err(p.error(format!("method `{}` returned mask flag {bad} for {} (0 = kept, 1 = pruned)", p.name, layer.name)));
            }
            Mask::from_vec(layer.d_out, layer.d_in, flags.iter().map(|&f| f == 1).collect())
        };
        if !out.notes.is_null() {
            // SAFETY: a NUL-terminated string; freed with the output.
            let text = unsafe { CStr::from_ptr(out.notes) }.to_string_lossy();
            let parsed: Notes = serde_json::from_str(&text)
                .map_err(|e| p.error(format!("method `{}` returned notes for {} that are not a JSON object: {e}", p.name, layer.name)))?;
            notes.extend(parsed);
        }
        match out.decision {
            abi::DECISION_SCORES => Ok(Decision::Scores(values()?)),
            abi::DECISION_MASK => Ok(Decision::Mask(mask()?)),
            abi::DECISION_MASK_AND_WEIGHTS => Ok(Decision::MaskAndWeights { mask: mask()?, weight: values()? }),
            other => Err(p.error(format!("method `{}` returned decision {other} for {}, which the ABI does not define", p.name, layer.name))),
        }
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
