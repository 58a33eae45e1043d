//! The integration tests of prunus-sparsegpt, in one binary (each test file is a module; one link
//! step instead of one per file).

mod conformance;
mod fidelity;
