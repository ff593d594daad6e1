//! `POST /psychotherapy-records/$import`: a clinic's records as a stream of NDJSON, one v1 record
//! a line, each filed exactly as `POST /psychotherapy-records` files one (`write.rs`), answered as
//! a stream of NDJSON, one line per input line, in input order:
//!
//! ```text
//! {"line":1,"record_id":"EMR-1","status":"created"}
//! {"line":2,"record_id":"EMR-2","status":"refused","outcome":{"resourceType":"OperationOutcome",…}}
//! {"done":true,"lines":2,"created":1,"new version":0,"unchanged":0,"refused":1}
//! ```
//!
//! A line is read, checked and filed on the import threads (`import_pool.rs`), a window of lines at once,
//! so the group-commit writer sees many records together; the answers wait for one another to
//! keep the input's order. The lines of one record are filed one after another, in order. What is in flight is bounded (the window, each line at most
//! `max_body_bytes`), and the answer is written only as fast as the client reads it: memory stays
//! flat however long the stream. A refused line does not stop the stream. A failure that is not
//! the record's (the database went away) ends it with a `failed` line: every line before it has
//! its final answer, and sending the rest again resumes the import (filing is idempotent by
//! `record_id`). The last line, `done`, says the stream was read to its end.
//!
//! With `dryRun=true` every line is read, translated and checked by the profiles, and nothing is
//! stored: the statuses are `valid` and `refused`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use audit_log::{Action, Outcome};
use fhir_profiles::record::{parse_record, RecordLimits};
use futures_util::StreamExt;
use serde_json::{json, Value};
use store::audit::AuditRecord;
use tokio::sync::mpsc;

use crate::api::request::Work;
use crate::audit;
use crate::caller::Caller;
use crate::error::{printable, GatewayError};
use crate::http;
use crate::state::AppState;
use crate::write::{self, Filing};

/// The media types of a stream of records.
const NDJSON: [&str; 2] = ["application/x-ndjson", "application/ndjson"];

/// `POST /psychotherapy-records/$import`
pub async fn import(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    write::submitter(&principal)?;
    let params = http::query_pairs(&request);
    http::only_params(&params, &["dryRun"])?;
    let dry_run = match params.iter().find(|(name, _)| name == "dryRun").map(|(_, value)| value.as_str()) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(GatewayError::BadRequest("dryRun is true or false".into())),
    };
    if !http::has_media_type(&request, &NDJSON) {
        return Err(GatewayError::UnsupportedMediaType(
            "application/x-ndjson in UTF-8, one record (a JSON object) a line",
        ));
    }
    let mut lines = Lines::new(payload, state.config.max_body_bytes);
    // The first record is read before the answer starts: a body that is not NDJSON at all is
    // refused with a status, not as a stream of refused lines.
    let first = loop {
        match lines.next().await? {
            None => return Err(GatewayError::BadRequest("the body holds no records".into())),
            Some(Line { bytes: Ok(bytes), .. }) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Some(line) => break line,
        }
    };
    if !first.bytes.as_ref().is_ok_and(|bytes| looks_like_object(bytes)) {
        return Err(GatewayError::BadRequest(
            "the body is not NDJSON: each line must be one record, a JSON object".into(),
        ));
    }
    let work = Work::new(principal, agent, &state);
    if dry_run {
        // A dry run reads nothing stored, but it is a use of the service, audited as `$validate` is.
        let store = work.store().clone();
        let event = audit::event(Action::Validate, Outcome::Success, &work.agent, None, Vec::new(), audit::now());
        web::block(move || store.record(vec![AuditRecord::new(&event)])).await??;
    }
    let (answers, receiver) = mpsc::channel(ANSWERS_BUFFERED);
    let run = Run {
        work: std::sync::Arc::new(work),
        max_note_bytes: state.config.max_note_bytes,
        dry_run,
        // Enough lines in flight to keep the import threads busy while some wait for their
        // group to commit.
        window: 2 * state.imports.threads(),
        state: state.clone(),
    };
    actix_web::rt::spawn(run.go(first, lines, answers));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/x-ndjson"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(Answers(receiver)))
}

/// Answer lines written ahead of the client's reading (each is small).
const ANSWERS_BUFFERED: usize = 64;

fn looks_like_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// One line of the body: its number (from 1) and its bytes, or why they were not kept.
struct Line {
    number: u64,
    bytes: Result<Bytes, GatewayError>,
}

/// The body split into lines as it arrives; a line longer than the limit is answered as too
/// large, and skipped without being held.
struct Lines {
    payload: web::Payload,
    buffer: BytesMut,
    limit: usize,
    number: u64,
    /// Skipping the rest of a line over the limit.
    skipping: bool,
    ended: bool,
}

impl Lines {
    fn new(payload: web::Payload, limit: usize) -> Self {
        Lines { payload, buffer: BytesMut::new(), limit, number: 0, skipping: false, ended: false }
    }

    /// The next line, or `None` at the end of the body. An error is the body's own (it could not
    /// be read), not a line's.
    async fn next(&mut self) -> Result<Option<Line>, GatewayError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let mut line = self.buffer.split_to(end + 1);
                line.truncate(end);
                if line.last() == Some(&b'\r') {
                    line.truncate(end - 1);
                }
                self.number += 1;
                if std::mem::take(&mut self.skipping) || line.len() > self.limit {
                    return Ok(Some(self.too_large()));
                }
                return Ok(Some(Line { number: self.number, bytes: Ok(line.freeze()) }));
            }
            if self.buffer.len() > self.limit {
                // Over the limit and no end in sight: drop what is held, remember to answer it.
                self.buffer.clear();
                self.skipping = true;
            }
            if self.ended {
                if self.buffer.is_empty() && !self.skipping {
                    return Ok(None);
                }
                // The last line, without a line feed.
                self.number += 1;
                if std::mem::take(&mut self.skipping) {
                    self.buffer.clear();
                    return Ok(Some(self.too_large()));
                }
                if self.buffer.len() > self.limit {
                    self.buffer.clear();
                    return Ok(Some(self.too_large()));
                }
                let line = self.buffer.split().freeze();
                return Ok(Some(Line { number: self.number, bytes: Ok(line) }));
            }
            match self.payload.next().await {
                Some(Ok(chunk)) => {
                    if self.skipping {
                        // Only what follows the line's end is kept.
                        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                            self.buffer.extend_from_slice(b"\n");
                            self.buffer.extend_from_slice(&chunk[end + 1..]);
                        }
                    } else {
                        self.buffer.extend_from_slice(&chunk);
                    }
                }
                Some(Err(_)) => return Err(GatewayError::BadRequest("the request body could not be read".into())),
                None => self.ended = true,
            }
        }
    }

    fn too_large(&self) -> Line {
        Line { number: self.number, bytes: Err(GatewayError::PayloadTooLarge { limit: self.limit }) }
    }
}

/// What each line's answer is made from.
struct Run {
    state: web::Data<AppState>,
    work: std::sync::Arc<Work>,
    max_note_bytes: usize,
    dry_run: bool,
    window: usize,
}

/// A line's answer to come, from the import threads.
type Pending = tokio::sync::oneshot::Receiver<Answer>;

/// The lines being filed, in input order, each with its record id where it could be read; and a
/// line held back until the line of the same record before it is answered (reading waits
/// meanwhile).
struct InFlight {
    lines: VecDeque<(u64, Option<String>, Pending)>,
    held: Option<(Line, Option<String>)>,
}

impl InFlight {
    fn new() -> Self {
        InFlight { lines: VecDeque::new(), held: None }
    }
}

/// A line's result: what was done, or why not; with the record's id where it could be read.
struct Answer {
    number: u64,
    record_id: Option<String>,
    result: Result<Option<Filing>, GatewayError>,
}

impl Run {
    async fn go(self, first: Line, mut lines: Lines, answers: mpsc::Sender<Bytes>) {
        let mut in_flight = InFlight::new();
        let mut counts = Counts::default();
        let (mut reading, mut read_error) = (true, None);
        self.take(first, &mut in_flight);
        loop {
            let may_read = reading && in_flight.held.is_none() && in_flight.lines.len() < self.window;
            // The oldest line's answer goes out as soon as it is ready, while more lines are read:
            // a client that waits for answers before it sends more is not kept waiting.
            tokio::select! {
                biased;
                joined = async { (&mut in_flight.lines.front_mut().expect("guarded").2).await }, if !in_flight.lines.is_empty() => {
                    let (number, _, _) = in_flight.lines.pop_front().expect("polled");
                    let answer = joined.unwrap_or_else(|_| Answer {
                        number,
                        record_id: None,
                        result: Err(GatewayError::Internal("a line's work was lost".into())),
                    });
                    let fatal = matches!(&answer.result, Err(error) if error.status_code().is_server_error());
                    if answers.send(counts.answer(&answer)).await.is_err() || fatal {
                        // The client has gone, or the import cannot go on: what is in flight
                        // finishes, nothing more is read.
                        return;
                    }
                    if let Some((line, id)) = in_flight.held.take() {
                        self.start(line, id, &mut in_flight);
                    }
                }
                line = lines.next(), if may_read => match line {
                    Ok(Some(line)) => self.take(line, &mut in_flight),
                    Ok(None) => reading = false,
                    Err(error) => (reading, read_error) = (false, Some(error)),
                },
                else => break,
            }
        }
        let last = match read_error {
            Some(error) => json!({"failed": true, "outcome": error.outcome()}),
            None => counts.done(self.dry_run),
        };
        let _ = answers.send(line_of(&last)).await;
    }

    /// Starts a line's work, unless it is blank.
    fn take(&self, line: Line, in_flight: &mut InFlight) {
        if let Ok(bytes) = &line.bytes {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            let id = record_id(bytes);
            return self.start(line, id, in_flight);
        }
        self.start(line, None, in_flight)
    }

    /// Starts a line's work, or holds it while a line of the same record is in flight: the lines
    /// of one record are filed in the order they come, so that the last is its current version
    /// (filed at once, they met as version conflicts, and any of them could end up current).
    fn start(&self, line: Line, id: Option<String>, in_flight: &mut InFlight) {
        if id.is_some() && in_flight.lines.iter().any(|(_, other, _)| *other == id) {
            in_flight.held = Some((line, id));
        } else {
            in_flight.lines.push_back((line.number, id, self.spawn(line)));
        }
    }

    fn spawn(&self, line: Line) -> Pending {
        let work = self.work.clone();
        let limits = RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: self.max_note_bytes };
        let dry_run = self.dry_run;
        self.state.imports.run(move || {
            let Line { number, bytes } = line;
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(error) => return Answer { number, record_id: None, result: Err(error) },
            };
            let checked = match parse_record(&bytes, &limits) {
                Ok(checked) => checked,
                // Read again for its id only when it was refused: the report names it all the same.
                Err(error) => return Answer { number, record_id: record_id(&bytes), result: Err(error.into()) },
            };
            let result = if dry_run {
                write::check_record(work.store(), &work.principal, &checked).map(|()| None)
            } else {
                write::import_record(&work.enforcement, &work.principal, &work.agent, &checked).map(Some)
            };
            let record_id = Some(printable(&checked.record.record_id));
            Answer { number, record_id, result }
        })
    }
}

/// The record's id, for the clinic's report: read on its own, so a record refused for another
/// field is still named.
fn record_id(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        record_id: Option<std::borrow::Cow<'a, str>>,
    }
    let named: Named = serde_json::from_slice(bytes).ok()?;
    named.record_id.filter(|id| !id.is_empty() && id.len() <= 128).map(|id| printable(&id))
}

#[derive(Default)]
struct Counts {
    lines: u64,
    created: u64,
    new_version: u64,
    unchanged: u64,
    valid: u64,
    refused: u64,
}

impl Counts {
    /// The answer line for one input line, counted.
    fn answer(&mut self, answer: &Answer) -> Bytes {
        let mut line = json!({"line": answer.number});
        if let Some(id) = &answer.record_id {
            line["record_id"] = json!(id);
        }
        match &answer.result {
            Ok(filing) => {
                self.lines += 1;
                let status = match filing {
                    None => {
                        self.valid += 1;
                        "valid"
                    }
                    Some(filing) => {
                        *match filing {
                            Filing::Created => &mut self.created,
                            Filing::NewVersion => &mut self.new_version,
                            Filing::Unchanged => &mut self.unchanged,
                        } += 1;
                        filing.as_str()
                    }
                };
                line["status"] = json!(status);
            }
            Err(error) if error.status_code().is_server_error() => {
                // Not the record's fault: the import stops here, to be resumed.
                error.log_cause();
                line["status"] = json!("failed");
                line["outcome"] = error.outcome();
            }
            Err(error) => {
                self.lines += 1;
                self.refused += 1;
                line["status"] = json!("refused");
                line["outcome"] = error.outcome();
            }
        }
        line_of(&line)
    }

    fn done(&self, dry_run: bool) -> Value {
        if dry_run {
            json!({"done": true, "dry_run": true, "lines": self.lines, "valid": self.valid, "refused": self.refused})
        } else {
            json!({
                "done": true, "lines": self.lines, "created": self.created, "new version": self.new_version,
                "unchanged": self.unchanged, "refused": self.refused,
            })
        }
    }
}

fn line_of(value: &Value) -> Bytes {
    let mut text = value.to_string().into_bytes();
    text.push(b'\n');
    Bytes::from(text)
}

/// The answer's body: the lines the import task sends, as the client reads them.
struct Answers(mpsc::Receiver<Bytes>);

impl MessageBody for Answers {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        self.get_mut().0.poll_recv(cx).map(|line| line.map(Ok))
    }
}
