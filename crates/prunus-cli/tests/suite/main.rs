//! The integration tests of prunus-cli, in one binary (each test file is a module; one link
//! step instead of one per file).

mod common;
mod bad_input;
mod bad_input_methods;
mod finetune;
mod generate;
mod scratch;
mod cli;
mod fidelity;
mod mc_fidelity;
mod plugins;
mod stream;
mod structured;
