//! Benchmarks live in `benches/`; run `cargo bench -p prunus-benches`.
