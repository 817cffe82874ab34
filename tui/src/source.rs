//! Where snapshots come from: the live server (implemented by the CLI), a replay file, and a
//! recorder that tees a source into a file.
//!
//! Files are JSON lines: one snapshot document per line, exactly what `pg_tviews_snapshot()`
//! returns, so a recording can be replayed, diffed, or attached to a bug report.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Context as _;

use crate::snapshot::{self, Snapshot};

/// Something the poller can ask for the next snapshot.
///
/// The live implementation lives in the CLI (it owns the tokio-postgres connection and calls
/// `snapshot::parse` on the text of `pg_tviews_snapshot()`); keeping database types out of this
/// trait lets the console be tested from files alone.
pub trait SnapshotSource: Send + 'static {
    fn poll(&mut self) -> impl Future<Output = anyhow::Result<Snapshot>> + Send;
}

/// Reads JSON lines, one snapshot per non-blank line; errors name the line.
pub fn read_jsonl(reader: impl BufRead) -> anyhow::Result<Vec<Snapshot>> {
    let mut snapshots = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let snap = snapshot::parse(&line).with_context(|| format!("line {}", index + 1))?;
        snapshots.push(snap);
    }
    Ok(snapshots)
}

/// Plays a recording back, one snapshot per poll (`tviews top --replay FILE`).
///
/// The whole file is read up front so that a bad line is reported before the screen takes over.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    snapshots: Vec<Snapshot>,
    next: usize,
}

impl ReplaySource {
    pub fn new(snapshots: Vec<Snapshot>) -> Self {
        Self { snapshots, next: 0 }
    }

    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let snapshots =
            read_jsonl(BufReader::new(file)).with_context(|| format!("in {}", path.display()))?;
        Ok(Self::new(snapshots))
    }
}

impl SnapshotSource for ReplaySource {
    async fn poll(&mut self) -> anyhow::Result<Snapshot> {
        // At the end we report an error rather than repeating the last snapshot: a repeat would
        // show zero rates that never happened, while an error keeps the last real frame on screen.
        let snap = self.snapshots.get(self.next).cloned().ok_or_else(|| {
            anyhow::anyhow!("end of replay after {} snapshots", self.snapshots.len())
        })?;
        self.next += 1;
        Ok(snap)
    }
}

/// Wraps a source and appends every snapshot it yields to `writer` as a JSON line
/// (`tviews top --record FILE`).
pub struct Recorder<S, W> {
    inner: S,
    writer: W,
}

impl<S, W> Recorder<S, W> {
    pub fn new(inner: S, writer: W) -> Self {
        Self { inner, writer }
    }
}

impl<S: SnapshotSource> Recorder<S, File> {
    pub fn create(inner: S, path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self::new(inner, file))
    }
}

impl<S: SnapshotSource, W: Write + Send + 'static> SnapshotSource for Recorder<S, W> {
    async fn poll(&mut self) -> anyhow::Result<Snapshot> {
        let snap = self.inner.poll().await?;
        let mut line = serde_json::to_vec(&snap).context("encoding snapshot for the recording")?;
        line.push(b'\n');
        // Flush every line: a recording is most wanted after a crash or a kill.
        self.writer
            .write_all(&line)
            .and_then(|()| self.writer.flush())
            .context("writing the recording")?;
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"schema_version":1,"server_time":2000000.0,"stats_since":0.0}"#;

    #[tokio::test]
    async fn replay_yields_lines_then_reports_the_end() {
        let input = format!("{LINE}\n\n{LINE}\n");
        let mut source = ReplaySource::new(read_jsonl(input.as_bytes()).expect("valid lines"));
        assert!(source.poll().await.is_ok());
        assert!(source.poll().await.is_ok());
        let end = source.poll().await.unwrap_err();
        assert_eq!(end.to_string(), "end of replay after 2 snapshots");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let input = format!("{LINE}\n{{\"schema_version\":9}}\n");
        let err = read_jsonl(input.as_bytes()).unwrap_err();
        assert!(format!("{err:#}").starts_with("line 2: snapshot schema_version 9"));
    }

    #[tokio::test]
    async fn recorder_output_replays_to_the_same_snapshots() {
        let original = read_jsonl(format!("{LINE}\n{LINE}\n").as_bytes()).expect("valid lines");
        let mut recorder = Recorder::new(ReplaySource::new(original.clone()), Vec::new());
        for _ in 0..2 {
            recorder.poll().await.expect("replayed snapshot");
        }
        let replayed = read_jsonl(recorder.writer.as_slice()).expect("recording parses");
        assert_eq!(replayed, original);
    }
}
