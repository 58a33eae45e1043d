//! The seeded generator of the synthetic test models lives in the core.

pub use prunus_core::rng::SplitMix64;
