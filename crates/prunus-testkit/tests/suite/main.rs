//! The integration tests of prunus-testkit, in one binary (each test file is a module; one link
//! step instead of one per file).

mod pipeline;
mod threads_env;
