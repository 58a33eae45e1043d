//! The integration tests of prunus-data, in one binary (each test file is a module; one link
//! step instead of one per file).

mod fuzz;
mod pyrandom;
mod real_assets;
mod tokenizer;
