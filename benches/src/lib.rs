//! placeholder: benchmarks come with their own issue
