//! The method registry: the only way anything names a method.
//!
//! A plugin crate declares its method once ([`Method`]) and registers it with
//! [`register!`](crate::register) at the bottom of its `lib.rs`; a binary that links the crate
//! (see `prunus-all`) sees it here. Building a registered method yields a [`Built`] carrying
//! the effective configuration that reports record. The listing is sorted by
//! name, an unknown name gets a "did you mean", and a name registered twice is an error that
//! names both registrations.

use crate::declare::{Built, Method, build};
use crate::layerwise::LayerwiseMethod;
use crate::structured::StructuredMethod;
use crate::training::TrainingMethod;
use crate::error::{Error, Result};

/// Builds a configured layer-wise method from its JSON config (`null` = defaults). A closure,
/// so that a method loaded at run time can carry its library.
pub type LayerwiseFactory = &'static (dyn Fn(&serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> + Send + Sync);

/// Builds a configured structured method from its JSON config (`null` = defaults).
pub type StructuredFactory = &'static (dyn Fn(&serde_json::Value) -> Result<Built<dyn StructuredMethod>> + Send + Sync);

/// Builds a registered training-time method from its JSON configuration.
pub type TrainingFactory = &'static (dyn Fn(&serde_json::Value) -> Result<Built<dyn TrainingMethod>> + Send + Sync);

/// How a registered method is run: its kind and the factory that builds it.
#[derive(Clone, Copy)]
pub enum Factory {
    /// Driven by the core's block-sequential calibration pipeline.
    Layerwise(LayerwiseFactory),
    /// Model-level: scores whole units, driven by the core's greedy removal
    /// ([`prune_structured`](crate::structured::prune_structured)).
    Structured(StructuredFactory),
    /// A training-time method (prunes while the model trains).
    Training(TrainingFactory),
}

/// One registered method.
pub struct MethodRegistration {
    /// Unique name used on the command line and in matrices, e.g. `wanda`.
    pub name: &'static str,
    /// One line for `prunus list`.
    pub summary: &'static str,
    /// Bumped whenever the method's numbers can change; recorded in every report.
    pub version: &'static str,
    /// The crate that registered it (for duplicate errors): `env!("CARGO_PKG_NAME")`; for a
    /// method loaded at run time, its library's path.
    pub origin: &'static str,
    /// How it is built and run.
    pub factory: Factory,
    /// For a method loaded from a shared library at run time (`prunus --plugin`), the
    /// library's path and sha256; `None` for a method linked into the binary.
    pub library: Option<Library>,
}

/// The shared library a method was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Library {
    /// Its absolute path.
    pub path: &'static str,
    /// The sha256 of its bytes when it was loaded.
    pub sha256: &'static str,
}

fn layerwise_factory<M: Method + LayerwiseMethod>(config: &serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> {
    let (method, config) = build::<M>(config)?;
    Ok(Built { name: M::NAME, config, method: Box::new(method) })
}

fn training_factory<M: Method + TrainingMethod>(config: &serde_json::Value) -> Result<Built<dyn TrainingMethod>> {
    let (method, config) = build::<M>(config)?;
    Ok(Built { name: M::NAME, config, method: Box::new(method) })
}

fn structured_factory<M: Method + StructuredMethod>(config: &serde_json::Value) -> Result<Built<dyn StructuredMethod>> {
    let (method, config) = build::<M>(config)?;
    Ok(Built { name: M::NAME, config, method: Box::new(method) })
}

impl std::fmt::Debug for MethodRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRegistration")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("origin", &self.origin)
            .field("kind", &self.kind())
            .field("library", &self.library)
            .finish()
    }
}

inventory::collect!(MethodRegistration);

impl MethodRegistration {
    /// The registration of layer-wise method `M`, declared by crate `origin`
    /// (what [`register!`](crate::register) submits).
    pub const fn layerwise<M: Method + LayerwiseMethod>(origin: &'static str) -> Self {
        MethodRegistration { name: M::NAME, summary: M::SUMMARY, version: M::VERSION, origin, factory: Factory::Layerwise(&layerwise_factory::<M>), library: None }
    }

    /// The registration of structured method `M`, declared by crate `origin`.
    pub const fn structured<M: Method + StructuredMethod>(origin: &'static str) -> Self {
        MethodRegistration { name: M::NAME, summary: M::SUMMARY, version: M::VERSION, origin, factory: Factory::Structured(&structured_factory::<M>), library: None }
    }

    /// The registration of training-time method `M`, made by `register!(training M)`.
    pub const fn training<M: Method + TrainingMethod>(origin: &'static str) -> Self {
        MethodRegistration { name: M::NAME, summary: M::SUMMARY, version: M::VERSION, origin, factory: Factory::Training(&training_factory::<M>), library: None }
    }

    /// A short label of the method kind.
    pub fn kind(&self) -> &'static str {
        match self.factory {
            Factory::Layerwise(_) => "layer-wise",
            Factory::Structured(_) => "structured",
            Factory::Training(_) => "training",
        }
    }

    /// Builds the method as a layer-wise one, with `config` (`null` = defaults); an error
    /// for a method of another kind.
    pub fn build_layerwise(&self, config: &serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> {
        match self.factory {
            Factory::Layerwise(f) => f(config),
            _ => Err(self.wrong_kind("layer-wise")),
        }
    }

    /// Builds the method as a structured one, with `config` (`null` = defaults); an error
    /// for a method of another kind.
    pub fn build_structured(&self, config: &serde_json::Value) -> Result<Built<dyn StructuredMethod>> {
        match self.factory {
            Factory::Structured(f) => f(config),
            _ => Err(self.wrong_kind("structured")),
        }
    }

    /// Builds the method as a training-time one, or says it is another kind.
    pub fn build_training(&self, config: &serde_json::Value) -> Result<Built<dyn TrainingMethod>> {
        match self.factory {
            Factory::Training(f) => f(config),
            _ => Err(self.wrong_kind("training-time")),
        }
    }

    fn wrong_kind(&self, wanted: &str) -> Error {
        Error::Unsupported { method: self.name.to_string(), what: format!("{wanted} pruning (it is a {} method)", self.kind()) }
    }
}

/// Methods registered at run time ([`register_loaded`]), in the order they came.
static LOADED: std::sync::Mutex<Vec<&'static MethodRegistration>> = std::sync::Mutex::new(Vec::new());

/// Every registered method, linked in or loaded at run time, sorted by name; an error if a
/// name is registered twice.
pub fn list() -> Result<Vec<&'static MethodRegistration>> {
    let loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    checked(inventory::iter::<MethodRegistration>.into_iter().chain(loaded).collect())
}

/// Registers a method at run time (one loaded from a shared library); it then lives as long as
/// the process. A name already taken is [`Error::DuplicateMethod`] naming both origins, and
/// nothing is registered.
pub fn register_loaded(registration: MethodRegistration) -> Result<&'static MethodRegistration> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let taken = inventory::iter::<MethodRegistration>.into_iter().chain(loaded.iter().copied()).find(|r| r.name == registration.name);
    if let Some(r) = taken {
        return Err(Error::DuplicateMethod {
            name: registration.name.to_string(),
            first: r.origin.to_string(),
            second: registration.origin.to_string(),
        });
    }
    let leaked: &'static MethodRegistration = Box::leak(Box::new(registration));
    loaded.push(leaked);
    Ok(leaked)
}

/// The method called `name`, or [`Error::UnknownMethod`] with the closest registered name.
pub fn find(name: &str) -> Result<&'static MethodRegistration> {
    lookup(&list()?, name)
}

fn checked(mut regs: Vec<&'static MethodRegistration>) -> Result<Vec<&'static MethodRegistration>> {
    regs.sort_by(|a, b| a.name.cmp(b.name).then(a.origin.cmp(b.origin)));
    if let Some(w) = regs.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Error::DuplicateMethod {
            name: w[0].name.to_string(),
            first: w[0].origin.to_string(),
            second: w[1].origin.to_string(),
        });
    }
    Ok(regs)
}

fn lookup(regs: &[&'static MethodRegistration], name: &str) -> Result<&'static MethodRegistration> {
    if let Some(r) = regs.iter().find(|r| r.name == name) {
        return Ok(r);
    }
    Err(Error::UnknownMethod {
        name: name.to_string(),
        suggestion: closest(name, regs.iter().map(|r| r.name)).map(str::to_string),
    })
}

/// The candidate closest to `name` by edit distance, if it is plausibly a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(1))
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &serde_json::Value) -> Result<Built<dyn LayerwiseMethod>> {
        Err(Error::Invalid("test factory".into()))
    }

    fn leak(name: &'static str, origin: &'static str) -> &'static MethodRegistration {
        Box::leak(Box::new(MethodRegistration {
            name,
            summary: "test",
            version: "0",
            origin,
            factory: Factory::Layerwise(&never),
            library: None,
        }))
    }

    #[test]
    fn building_as_the_wrong_kind_is_an_error() {
        let r = leak("magnitude", "a");
        let e = r.build_structured(&serde_json::Value::Null).err().expect("an error");
        assert_eq!(e.to_string(), "method `magnitude` does not support structured pruning (it is a layer-wise method)");
    }

    #[test]
    fn listing_is_sorted() {
        let regs = checked(vec![leak("wanda", "a"), leak("magnitude", "b"), leak("sparsegpt", "c")]).unwrap();
        let names: Vec<_> = regs.iter().map(|r| r.name).collect();
        assert_eq!(names, ["magnitude", "sparsegpt", "wanda"]);
    }

    #[test]
    fn duplicates_name_both_origins() {
        let e = checked(vec![leak("wanda", "prunus-wanda"), leak("wanda", "my-fork")]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("`wanda`") && msg.contains("prunus-wanda") && msg.contains("my-fork"), "{msg}");
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let regs = checked(vec![leak("wanda", "a"), leak("magnitude", "b")]).unwrap();
        let e = lookup(&regs, "wandda").unwrap_err();
        assert_eq!(e.to_string(), "unknown method `wandda` (did you mean `wanda`?)");
        let e = lookup(&regs, "Magnitud").unwrap_err();
        assert!(e.to_string().contains("did you mean `magnitude`"), "{e}");
        let e = lookup(&regs, "zzzzzzzzzzzz").unwrap_err();
        assert!(e.to_string().contains("prunus list"), "{e}");
    }
}
