//! The integration tests of prunus-model, in one binary (each test file is a module; one link
//! step instead of one per file).

mod common;
mod edit;
mod backprop;
mod forward;
mod fuzz;
mod grad;
mod grad_threads_env;
mod io;
mod layout;
mod real_model;
mod runtime;
mod sparse_checkpoint;
mod stream;
