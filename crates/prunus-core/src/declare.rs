//! Declaring a method once.
//!
//! A plugin implements [`Method`] (its name, version, one-line summary, configuration type and
//! a constructor that checks the configuration) and the trait of its kind
//! ([`LayerwiseMethod`](crate::layerwise::LayerwiseMethod),
//! [`StructuredMethod`](crate::structured::StructuredMethod) or
//! [`TrainingMethod`](crate::training::TrainingMethod)), then registers with one line:
//!
//! ```text
//! prunus_core::register!(layerwise Magnitude);   // or structured, or training
//! ```
//!
//! The registry builds a method from JSON (`null` = all defaults) into a [`Built`]: the method
//! with its name and its *effective* configuration (every default filled in), which is what
//! every report records.

use std::ops::{Deref, DerefMut};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// What the registry and the reports know about a method; everything else is its kind's trait.
pub trait Method: Sized + Send + Sync + 'static {
    /// Unique name used on the command line and in matrices, e.g. `wanda`.
    const NAME: &'static str;
    /// Bumped whenever the method's numbers can change; recorded in every report.
    const VERSION: &'static str;
    /// One line for `prunus list`.
    const SUMMARY: &'static str;
    /// The configuration (JSON/TOML; every field optional, `#[serde(default)]`).
    type Config: Serialize + DeserializeOwned + Default;

    /// The configured method; an error ([`Error::BadConfig`], see [`bad_config`]) for values
    /// serde accepts but the method cannot use.
    fn new(config: Self::Config) -> Result<Self>;
}

/// A configured method of some kind, with its registry name and effective configuration.
pub struct Built<M: ?Sized> {
    /// Registry name.
    pub name: &'static str,
    /// The configuration with every default filled in, as recorded in reports.
    pub config: serde_json::Value,
    /// The method itself.
    pub method: Box<M>,
}

impl<M: ?Sized> Built<M> {
    /// A method built outside the registry (tests, benchmarks), with an empty configuration.
    pub fn unregistered(name: &'static str, method: Box<M>) -> Self {
        Built { name, config: serde_json::Value::Null, method }
    }
}

impl<M: ?Sized> Deref for Built<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.method
    }
}

impl<M: ?Sized> DerefMut for Built<M> {
    fn deref_mut(&mut self) -> &mut M {
        &mut self.method
    }
}

impl<M: ?Sized> std::fmt::Debug for Built<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built").field("name", &self.name).field("config", &self.config).finish()
    }
}

/// Parses `value` (`null` = defaults) into `M::Config`, builds `M` and returns it with the
/// effective configuration.
pub fn build<M: Method>(value: &serde_json::Value) -> Result<(M, serde_json::Value)> {
    let config: M::Config = parse_config(M::NAME, value)?;
    let effective = serde_json::to_value(&config).map_err(|e| bad_config(M::NAME, e.to_string()))?;
    Ok((M::new(config)?, effective))
}

/// Parses a method's serde config from JSON (`null` means all defaults); unknown fields are
/// errors if the config type says `#[serde(deny_unknown_fields)]`.
pub fn parse_config<C: DeserializeOwned + Default>(method: &str, value: &serde_json::Value) -> Result<C> {
    if value.is_null() {
        return Ok(C::default());
    }
    serde_json::from_value(value.clone()).map_err(|e| bad_config(method, e.to_string()))
}

/// The error for a configuration value a method cannot use.
pub fn bad_config(method: &str, reason: impl Into<String>) -> Error {
    Error::BadConfig { method: method.to_string(), reason: reason.into() }
}

/// Free-form remarks of a method, recorded in the report next to what they describe; the core
/// never reads them.
pub use prunus_report::Notes;

/// Registers a method type (which implements [`Method`] and its kind's trait) with the
/// registry: `register!(layerwise T)` or `register!(structured T)`.
#[macro_export]
macro_rules! register {
    (layerwise $method:ty) => {
        $crate::inventory::submit! {
            $crate::registry::MethodRegistration::layerwise::<$method>(env!("CARGO_PKG_NAME"))
        }
    };
    (structured $method:ty) => {
        $crate::inventory::submit! {
            $crate::registry::MethodRegistration::structured::<$method>(env!("CARGO_PKG_NAME"))
        }
    };
    (training $method:ty) => {
        $crate::inventory::submit! {
            $crate::registry::MethodRegistration::training::<$method>(env!("CARGO_PKG_NAME"))
        }
    };
}
