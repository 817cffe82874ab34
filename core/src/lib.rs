//! `tviews-core`: the pure part of pg_tviews. No pgrx, no I/O.
//!
//! The refresh path, by module: [`node`] reads the server's analysed
//! definition, [`analyze`] finds how each source maps to TVIEW keys,
//! [`plan`] renders the capture, derive and apply statements, [`graph`]
//! orders cascades. `ext` runs what these produce.

pub mod analyze;
pub mod catalog;
pub mod error;
pub mod explain;
pub mod graph;
pub mod locks;
pub mod node;
pub mod plan;
pub mod sql;

pub use error::{Result, TviewError};

/// The version of this library, reported by `pg_tviews_version()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
