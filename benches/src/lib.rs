//! Benchmarks of pg_tviews against plain DML, hand-written triggers (row and statement level),
//! `REFRESH MATERIALIZED VIEW [CONCURRENTLY]` and pg_ivm, on the demo's e-commerce read model.
//!
//! `cargo run --release -p tviews-benches -- --help`; see docs/PERFORMANCE.md. The pure parts
//! (data generation, key schedules, statistics, ratio tables, the report) are unit-tested; the
//! runner needs a scratch cluster (the `tviews-tests` harness).

pub mod approach;
pub mod chart;
pub mod data;
pub mod machine;
pub mod report;
pub mod results;
pub mod runner;
pub mod scale;
pub mod stats;
pub mod workload;
