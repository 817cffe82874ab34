//! `tviews top`: the live console of pg_tviews. Data in, frames out (STYLE.md items 9 and 10):
//!
//! - [`snapshot`]: the one document the console reads per tick, `pg_tviews_snapshot()`;
//! - [`source`]: where documents come from (the live server, implemented by the CLI; a replay
//!   file) and the recorder;
//! - [`rates`]: counters of two snapshots in, rates out (deltas over server time, resets);
//! - [`graph`]: the dependency graph in layers;
//! - [`app`]: state and the pure `update(&mut App, Action)`;
//! - [`keys`]: key presses to actions;
//! - [`ui`]: `render(frame, &app)` and its layout functions;
//! - `run`: the terminal event loop ([`run()`] on the real terminal, [`drive`] on any backend
//!   and event stream, which is how the tests drive it).
//!
//! The crate knows nothing of PostgreSQL connections: the CLI passes in a [`SnapshotSource`].

pub mod app;
#[cfg(test)]
mod fixtures;
pub mod graph;
pub mod keys;
pub mod rates;
mod run;
pub mod snapshot;
pub mod source;
pub mod ui;

pub use app::{Action, App, Config, update};
pub use run::{drive, no_color_requested, restore_terminal, run};
pub use snapshot::{SUPPORTED_SCHEMA_VERSION, Snapshot, SnapshotError};
pub use source::{FetchError, Recorder, ReplaySource, SnapshotSource};
