//! Links every method plugin into the binary that depends on this crate.
//!
//! `inventory` only sees registrations of crates the final binary actually links; naming each
//! plugin crate here (and calling [`link`] from the binary) guarantees that. A new plugin adds
//! one dependency line in Cargo.toml and one `use` line below.

use prunus_gmp as _;
use prunus_magnitude as _;
use prunus_mgpp as _;
use prunus_pip as _;
use prunus_platon as _;
use prunus_sparsegpt as _;
use prunus_struct_magnitude as _;
use prunus_struct_random as _;
use prunus_swe as _;
use prunus_swiftprune as _;
use prunus_taylor as _;
use prunus_wanda as _;

/// Call once from a binary (or test) to make sure every plugin is linked.
pub fn link() {}
