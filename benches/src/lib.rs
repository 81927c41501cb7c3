//! Shared helpers for the benchmarks in `benches/`.

pub mod loadgen;
