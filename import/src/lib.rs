//! Moving a clinic in: `vaitio import` streams the records a clinic exported from its old system
//! to the gateway's `POST /psychotherapy-records/$import`, with the clinic's certificate and a
//! practitioner's token, and `vaitio dev generate` writes realistic records to try it with.
//!
//! The client reads the file on a thread of its own (`source.rs`), sends it up one HTTP/2 stream
//! while the gateway's answers come down the same stream (`transport.rs`), and for each answer
//! counts it, shows it on the progress bar, writes a refused line to the report (`report.rs`),
//! and moves the checkpoint (`checkpoint.rs`). Memory stays flat: what is held is one chunk being
//! sent and the numbers of the lines sent but not yet answered.

pub mod checkpoint;
pub mod generate;
pub mod mapping;
pub mod report;
pub mod source;
pub mod transport;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::mapping::Mapping;
use crate::report::{reasons, Report};
use crate::source::{Format, Rows, Source};
use crate::transport::{connection_error, send_all, Target};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {cause}")]
    File { path: String, cause: String },
    #[error("{0}")]
    Usage(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Connection(String),
    /// The gateway refused the import as a whole (its status and reasons).
    #[error("the gateway refused the import (HTTP {status}): {reasons}")]
    Refused { status: u16, reasons: String },
    /// The gateway could not go on (its database, say); the lines before `line` are answered.
    #[error("the gateway stopped the import at line {line}: {reasons}")]
    Stopped { line: u64, reasons: String },
    #[error("the gateway answered something that is not an import answer: {0}")]
    Protocol(String),
}

impl ImportError {
    pub fn file(path: &Path, cause: impl std::fmt::Display) -> Self {
        ImportError::File { path: path.display().to_string(), cause: cause.to_string() }
    }
}

/// `vaitio import`
#[derive(clap::Args, Clone, Debug)]
pub struct ImportArgs {
    /// The export to import: NDJSON (one v1 record a line) or CSV with --mapping; plain, gzip or
    /// zstd.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub target: Target,
    /// Append the refused lines, with their reasons, and a summary to this file.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Keep the last line answered in this file, and start after it when it exists: the same
    /// command run again after a failure or a crash resumes the import.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Check every record (translation, profiles) and store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The export's format [default: csv for a .csv file (also .csv.gz, .csv.zst), else ndjson].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// How the CSV export's columns become the record's fields (TOML; see docs/import.md).
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
}

/// What an import's answers said, by status.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub created: u64,
    pub new_version: u64,
    pub unchanged: u64,
    pub valid: u64,
    pub refused: u64,
}

impl Counts {
    pub fn describe(&self) -> String {
        if self.valid > 0 {
            format!("{} lines: {} valid, {} refused", self.lines, self.valid, self.refused)
        } else {
            format!(
                "{} lines: {} created, {} new version, {} unchanged, {} refused",
                self.lines, self.created, self.new_version, self.unchanged, self.refused
            )
        }
    }
}

/// Runs an import to the file's end; answers the counts of this run.
pub fn run(args: &ImportArgs) -> Result<Counts, ImportError> {
    let source = Source::open(&args.file)?;
    let size = source.size;
    let format = args.format.unwrap_or_else(|| Format::of(&args.file));
    let mapping = args.mapping.as_deref().map(Mapping::load).transpose()?;
    let rows = Rows::open(source, format, mapping.as_ref())?;
    let checkpoint = match (&args.checkpoint, args.dry_run) {
        (Some(path), false) => Some((path.clone(), Checkpoint::load(path, &args.file, size)?)),
        _ => None,
    };
    if let Some((path, saved)) = &checkpoint {
        if saved.complete {
            eprintln!(
                "vaitio import: {} was imported to its end (checkpoint {}); nothing to do",
                args.file.display(),
                path.display()
            );
            return Ok(Counts::default());
        }
    }
    let from = checkpoint.as_ref().map_or(0, |(_, saved)| saved.line);
    let report = Report::open(args.report.as_deref(), &args.file, from, args.dry_run)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImportError::Connection(format!("cannot start: {e}")))?;
    let mut import = Import { counts: Counts::default(), report, checkpoint, saved_at: Instant::now() };
    let result = runtime.block_on(import.stream(args, rows, size, from));
    let ended = match &result {
        Ok(()) => "complete".to_owned(),
        Err(error) => format!("stopped: {error}"),
    };
    import.report.summary(&import.counts, &ended)?;
    if let Some((path, checkpoint)) = &import.checkpoint {
        checkpoint.save(path)?;
    }
    result.map(|()| import.counts)
}

/// A chunk of lines to send, or why the file could not be read on.
type Chunk = Result<Bytes, ImportError>;

/// Lines are sent in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;

struct Import {
    counts: Counts,
    report: Report,
    checkpoint: Option<(PathBuf, Checkpoint)>,
    saved_at: Instant,
}

impl Import {
    async fn stream(&mut self, args: &ImportArgs, rows: Rows, size: u64, from: u64) -> Result<(), ImportError> {
        let path =
            if args.dry_run { "/psychotherapy-records/$import?dryRun=true" } else { "/psychotherapy-records/$import" };
        let transport::Exchange { mut send, response } = transport::start(&args.target, path).await?;
        let bar = progress_bar(size);
        let read = rows.progress();
        // The records read and not yet answered (or reported), oldest first.
        let pending: Arc<Mutex<VecDeque<Entry>>> = Arc::default();
        let (chunks, mut to_send) = tokio::sync::mpsc::channel::<Chunk>(4);
        let reader = {
            let pending = pending.clone();
            std::thread::spawn(move || read_chunks(rows, from, &pending, &chunks))
        };
        let sending = async move {
            while let Some(chunk) = to_send.recv().await {
                match chunk {
                    Ok(chunk) => send_all(&mut send, chunk).await?,
                    Err(error) => {
                        // The file could not be read on: the gateway must not take the stream
                        // for the whole file.
                        send.send_reset(h2::Reason::CANCEL);
                        return Err(error);
                    }
                }
            }
            send.send_data(Bytes::new(), true).map_err(connection_error)
        };
        let (sent, received) = {
            let receiving = self.receive(response, &pending, &bar, &read);
            tokio::pin!(sending, receiving);
            let mut sent = None;
            // The answers decide: they end when the gateway has read the stream to its end, or
            // cannot go on; the sending is dropped then (which ends the reader thread too).
            let received = loop {
                tokio::select! {
                    result = &mut sending, if sent.is_none() => sent = Some(result),
                    result = &mut receiving => break result,
                }
            };
            (sent, received)
        };
        bar.finish_and_clear();
        // A file that could not be read on is the cause, whatever the stream then said.
        let last_line = reader.join().map_err(|_| ImportError::Connection("the file reader failed".into()))??;
        received?;
        if let Some(Err(error)) = sent {
            return Err(error);
        }
        if let Some((_, checkpoint)) = &mut self.checkpoint {
            checkpoint.line = last_line;
            checkpoint.complete = true;
        }
        Ok(())
    }

    /// Reads the answers to their end, line by line.
    async fn receive(
        &mut self,
        response: h2::client::ResponseFuture,
        pending: &Mutex<VecDeque<Entry>>,
        bar: &indicatif::ProgressBar,
        read: &std::sync::atomic::AtomicU64,
    ) -> Result<(), ImportError> {
        let response = response.await.map_err(connection_error)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        if status != http::StatusCode::OK {
            // The gateway answers a refusal before it has read the body, then ends the stream
            // (RST_STREAM, NO_ERROR): what was read of the answer is its answer.
            while let Some(Ok(chunk)) = body.data().await {
                buffer.extend_from_slice(&chunk);
                if buffer.len() > 64 * 1024 {
                    break;
                }
            }
            let outcome: Value = serde_json::from_slice(&buffer).unwrap_or(Value::Null);
            return Err(ImportError::Refused { status: status.as_u16(), reasons: reasons(&outcome) });
        }
        let (mut done, started) = (false, Instant::now());
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(connection_error)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            buffer.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = buffer[start..].iter().position(|&b| b == b'\n') {
                let answer: Value = serde_json::from_slice(&buffer[start..start + end])
                    .map_err(|_| ImportError::Protocol("a line that is not JSON".into()))?;
                start += end + 1;
                done |= self.answered(&answer, pending)?;
            }
            buffer.drain(..start);
            bar.set_position(read.load(Ordering::Relaxed));
            let rate = self.counts.lines as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{} · {rate:.0} lines/s", self.counts.describe()));
        }
        if !done {
            let line = self.checkpoint.as_ref().map_or(self.counts.lines, |(_, c)| c.line);
            return Err(ImportError::Connection(format!(
                "the connection ended before the import did (every line up to {line} is answered)"
            )));
        }
        Ok(())
    }

    /// Takes one answer; `true` for the last.
    fn answered(&mut self, answer: &Value, pending: &Mutex<VecDeque<Entry>>) -> Result<bool, ImportError> {
        if answer["done"] == true {
            // Rows refused here after the last one sent.
            while let Some(entry) = self.next_entry(pending)? {
                let Entry::Refused(line, reason) = entry else {
                    return Err(ImportError::Protocol("the import ended before every line was answered".into()));
                };
                self.refused_here(line, &reason)?;
            }
            return Ok(true);
        }
        if answer["failed"] == true {
            return Err(ImportError::Stopped { line: self.counts.lines + 1, reasons: reasons(&answer["outcome"]) });
        }
        let line = loop {
            match self.next_entry(pending)? {
                Some(Entry::Sent(line)) => break line,
                Some(Entry::Refused(line, reason)) => self.refused_here(line, &reason)?,
                None => return Err(ImportError::Protocol("an answer to a line not sent".into())),
            }
        };
        let record_id = answer["record_id"].as_str();
        let counts = &mut self.counts;
        match answer["status"].as_str() {
            Some("created") => counts.created += 1,
            Some("new version") => counts.new_version += 1,
            Some("unchanged") => counts.unchanged += 1,
            Some("valid") => counts.valid += 1,
            Some("refused") => {
                counts.refused += 1;
                self.report.refused(line, record_id, &answer["outcome"])?;
            }
            Some("failed") => {
                return Err(ImportError::Stopped { line, reasons: reasons(&answer["outcome"]) });
            }
            _ => return Err(ImportError::Protocol("an answer without a known status".into())),
        }
        self.answered_line(line)?;
        Ok(false)
    }

    fn next_entry(&self, pending: &Mutex<VecDeque<Entry>>) -> Result<Option<Entry>, ImportError> {
        Ok(pending.lock().map_err(|_| ImportError::Protocol("lost track of the lines".into()))?.pop_front())
    }

    /// A row the client could not read: refused without being sent.
    fn refused_here(&mut self, line: u64, reason: &str) -> Result<(), ImportError> {
        self.counts.refused += 1;
        let outcome = serde_json::json!({"issue": [{"diagnostics": reason}]});
        self.report.refused(line, None, &outcome)?;
        self.answered_line(line)
    }

    /// Counts a line as answered, and moves the checkpoint to it.
    fn answered_line(&mut self, line: u64) -> Result<(), ImportError> {
        self.counts.lines += 1;
        if let Some((path, checkpoint)) = &mut self.checkpoint {
            checkpoint.line = line;
            if self.saved_at.elapsed() >= Duration::from_secs(1) {
                // The report first: a line the checkpoint passes is never sent again, so its
                // refusal must be on the disk before the checkpoint is.
                self.report.flush()?;
                checkpoint.save(path)?;
                self.saved_at = Instant::now();
            }
        }
        Ok(())
    }
}

/// A record read: sent to the gateway, or refused here (a CSV row that cannot be read).
enum Entry {
    Sent(u64),
    Refused(u64, String),
}

/// The reader thread: records from line `from + 1` on, in chunks, each record's entry queued
/// before it is sent. Answers the number of the file's last line.
fn read_chunks(
    mut rows: Rows,
    from: u64,
    pending: &Mutex<VecDeque<Entry>>,
    chunks: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<u64, ImportError> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES * 2);
    let mut entries = Vec::new();
    loop {
        let row = match rows.next_row() {
            Ok(row) => row,
            Err(error) => {
                let _ = chunks.blocking_send(Err(ImportError::Usage(error.to_string())));
                return Err(error);
            }
        };
        let more = row.is_some();
        // Records already answered are not sent again.
        if let Some(row) = row.filter(|row| row.line > from) {
            match row.record {
                Ok(record) => {
                    chunk.extend_from_slice(&record);
                    chunk.push(b'\n');
                    entries.push(Entry::Sent(row.line));
                }
                Err(reason) => entries.push(Entry::Refused(row.line, reason)),
            }
        }
        if (chunk.len() >= CHUNK_BYTES || !more) && !entries.is_empty() {
            pending
                .lock()
                .map_err(|_| ImportError::Protocol("lost track of the lines".into()))?
                .extend(entries.drain(..));
            if !chunk.is_empty() {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES * 2));
                if chunks.blocking_send(Ok(Bytes::from(full))).is_err() {
                    // The stream ended early; the caller knows why.
                    return Ok(rows.line());
                }
            }
        }
        if !more {
            return Ok(rows.line());
        }
    }
}

fn progress_bar(size: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(size);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta})\n  {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
