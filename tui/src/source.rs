//! Where snapshots come from: the live server (implemented by the CLI, which owns the
//! connection), a replay file, and a recorder that tees a source into a file.
//!
//! Sources hand out the document's **text**, exactly as `pg_tviews_snapshot()::text` returns it:
//! the recorder writes it unchanged (one document per line, so a recording can be replayed,
//! diffed, or attached to a bug report, and keeps fields this console does not read), and the
//! event loop parses it.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::snapshot;

/// Why a fetch gave no document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The connection is gone (server restarted or unreachable). The event loop keeps the last
    /// snapshot on screen and fetches again after a backoff; the source reconnects then.
    #[error("{0}")]
    Disconnected(String),
    /// The server answered with an error (the extension missing, a permission); tried again at
    /// the next interval.
    #[error("{0}")]
    Failed(String),
    /// A replay has no more snapshots.
    #[error("end of replay after {0} snapshots")]
    End(usize),
}

/// Something the poller can ask for the next snapshot, and for a TVIEW's explain.
///
/// The live implementation is in the CLI (tokio-postgres); keeping database types out of this
/// trait lets the whole console be tested from files and scripted fakes.
///
/// The event loop polls the source's futures on its own task, beside the UI, so they need not
/// be `Send` (tokio-postgres connection set-up with a password prompt callback is not).
pub trait SnapshotSource {
    /// The next `pg_tviews_snapshot()` document, as text.
    fn fetch(&mut self) -> impl Future<Output = Result<String, FetchError>>;

    /// `pg_tviews_explain(tview, 'text', verbose)`.
    fn explain(
        &mut self,
        tview: String,
        verbose: bool,
    ) -> impl Future<Output = Result<String, String>> {
        let _ = (tview, verbose);
        async { Err("explain needs a live server: this is a replay".to_string()) }
    }
}

/// Reads JSON lines, one snapshot per non-blank line, checking that each parses; errors name
/// the line. Returns the lines' text.
pub fn read_jsonl(reader: impl BufRead) -> anyhow::Result<Vec<String>> {
    let mut documents = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", index + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        snapshot::parse(&line).with_context(|| format!("line {}", index + 1))?;
        documents.push(line);
    }
    Ok(documents)
}

/// Plays a recording back, one snapshot per poll (`tviews top --replay FILE`).
///
/// The whole file is read and checked up front, so a bad line is reported before the screen
/// takes over.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    documents: Vec<String>,
    next: usize,
}

impl ReplaySource {
    pub fn new(documents: Vec<String>) -> Self {
        Self { documents, next: 0 }
    }

    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let documents =
            read_jsonl(BufReader::new(file)).with_context(|| format!("in {}", path.display()))?;
        if documents.is_empty() {
            anyhow::bail!("{} holds no snapshot", path.display());
        }
        Ok(Self::new(documents))
    }

    /// The recording's own pace: the median gap between its snapshots' server times, which is
    /// the interval it was recorded at (a gap of a restart does not move the median).
    pub fn recorded_interval(&self) -> Option<Duration> {
        let times: Vec<f64> = self
            .documents
            .iter()
            .filter_map(|d| snapshot::parse(d).ok())
            .map(|s| s.server_time)
            .collect();
        let mut gaps: Vec<f64> = times
            .windows(2)
            .map(|w| (w[1] - w[0]) / 1e6)
            .filter(|g| *g > 0.0)
            .collect();
        if gaps.is_empty() {
            return None;
        }
        gaps.sort_by(f64::total_cmp);
        Duration::try_from_secs_f64(gaps[gaps.len() / 2]).ok()
    }

    pub fn len(&self) -> usize {
        self.documents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }
}

impl SnapshotSource for ReplaySource {
    async fn fetch(&mut self) -> Result<String, FetchError> {
        // At the end we report it rather than repeating the last snapshot: a repeat would show
        // rates that never happened, while the end keeps the last real frame on screen.
        let document = self
            .documents
            .get(self.next)
            .cloned()
            .ok_or(FetchError::End(self.documents.len()))?;
        self.next += 1;
        Ok(document)
    }
}

/// Wraps a source and appends every document it yields to `writer`, one per line
/// (`tviews top --record FILE`).
pub struct Recorder<S, W> {
    inner: S,
    writer: W,
}

impl<S, W> Recorder<S, W> {
    pub fn new(inner: S, writer: W) -> Self {
        Self { inner, writer }
    }

    pub fn into_parts(self) -> (S, W) {
        (self.inner, self.writer)
    }
}

impl<S: SnapshotSource> Recorder<S, File> {
    pub fn create(inner: S, path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self::new(inner, file))
    }
}

impl<S: SnapshotSource, W: Write> SnapshotSource for Recorder<S, W> {
    async fn fetch(&mut self) -> Result<String, FetchError> {
        let document = self.inner.fetch().await?;
        // One line per document whatever the source gave (jsonb's text has no newlines, but a
        // pretty-printed replay file could).
        let line = document.replace(['\n', '\r'], " ");
        // Flushed every line: a recording is most wanted after a crash or a kill.
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| self.writer.flush())
            .map_err(|e| FetchError::Failed(format!("writing the recording: {e}")))?;
        Ok(document)
    }

    fn explain(
        &mut self,
        tview: String,
        verbose: bool,
    ) -> impl Future<Output = Result<String, String>> {
        self.inner.explain(tview, verbose)
    }
}

/// How long to wait before fetching again after the `attempt`-th failure in a row to reach
/// the server: 0.5 s, 1 s, 2 s, 4 s, then every 8 s (or every interval, if that is longer).
/// Quick at first, because a restart takes a second or two; then slow enough not to flood the
/// server log with refused connections.
pub fn backoff(attempt: u32, interval: Duration) -> Duration {
    let step = Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1).min(4));
    step.min(Duration::from_secs(8))
        .max(interval.min(Duration::from_secs(8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"schema_version":1,"server_time":2000000.0,"stats_since":0.0}"#;
    const LATER: &str = r#"{"schema_version":1,"server_time":4000000.0,"stats_since":0.0}"#;

    #[tokio::test]
    async fn replay_yields_lines_then_reports_the_end() {
        let input = format!("{LINE}\n\n{LATER}\n");
        let mut source = ReplaySource::new(read_jsonl(input.as_bytes()).expect("valid lines"));
        assert_eq!(source.fetch().await.as_deref(), Ok(LINE));
        assert_eq!(source.fetch().await.as_deref(), Ok(LATER));
        let end = source.fetch().await.unwrap_err();
        assert_eq!(end, FetchError::End(2));
        assert_eq!(end.to_string(), "end of replay after 2 snapshots");
        assert_eq!(source.recorded_interval(), Some(Duration::from_secs(2)));
        let explain = source.explain("tv_x".into(), false).await.unwrap_err();
        assert!(explain.contains("replay"), "{explain}");
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let input = format!("{LINE}\n{{\"schema_version\":9}}\n");
        let err = read_jsonl(input.as_bytes()).unwrap_err();
        assert!(
            format!("{err:#}")
                .starts_with("line 2: pg_tviews_snapshot() returned schema_version 9"),
            "{err:#}"
        );
    }

    #[tokio::test]
    async fn the_recording_is_the_documents_text_one_per_line() {
        let pretty = "{\"schema_version\": 1,\n \"server_time\": 2000000.0, \"stats_since\": 0}";
        let mut recorder = Recorder::new(
            ReplaySource::new(vec![LINE.to_string(), pretty.to_string()]),
            Vec::new(),
        );
        for _ in 0..2 {
            recorder.fetch().await.expect("replayed snapshot");
        }
        assert_eq!(recorder.fetch().await, Err(FetchError::End(2)));
        let (_, written) = recorder.into_parts();
        let text = String::from_utf8(written).expect("utf-8");
        assert!(text.starts_with(&format!("{LINE}\n")), "{text}");
        let replayed = read_jsonl(text.as_bytes()).expect("recording parses");
        assert_eq!(replayed.len(), 2);
    }

    #[test]
    fn backoff_grows_then_stays() {
        let second = Duration::from_secs(1);
        let waits: Vec<u128> = (1..=7).map(|a| backoff(a, second).as_millis()).collect();
        assert_eq!(waits, [1000, 1000, 2000, 4000, 8000, 8000, 8000]);
        let quick = Duration::from_millis(250);
        assert_eq!(backoff(1, quick), Duration::from_millis(500));
        assert_eq!(backoff(1, Duration::from_secs(30)), Duration::from_secs(8));
    }
}
