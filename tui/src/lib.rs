//! `tviews top`: a live console for pg_tviews. Data in, frames out (STYLE.md items 9 and 10):
//!
//! - [`snapshot`]: the one document the console reads per tick, `pg_tviews_snapshot()`;
//! - [`source`]: where snapshots come from (live, replay file) and the recorder;
//! - [`app`]: state and the pure `update(&mut App, Action)`, including rates;
//! - [`keys`]: key presses to actions;
//! - [`ui`]: `render(frame, &app)` and its layout functions;
//! - `run`: the terminal event loop ([`run()`] on the real terminal, [`drive`] on any backend).

pub mod app;
pub mod keys;
mod run;
pub mod snapshot;
pub mod source;
pub mod ui;

pub use app::{Action, App, Config, update};
pub use run::{drive, no_color_requested, run};
pub use snapshot::{SUPPORTED_SCHEMA_VERSION, Snapshot, SnapshotError};
pub use source::{Recorder, ReplaySource, SnapshotSource};
