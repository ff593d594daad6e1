//! Moving a clinic in: `vaitio dev generate` and `vaitio import` against a real gateway on both
//! backends. Every good line is stored and every defective one reported with its line number; a
//! second run changes nothing but the audit log; a dry run stores nothing; the client and the
//! gateway killed mid-import, then resumed, leave exactly the good lines stored; and a long
//! stream keeps the gateway's memory flat.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vaitio_import::generate::{GenerateArgs, Generator};

use super::cli::vaitio;
use super::failure::Process;
use super::submission::{record, submit};
use super::support::*;

/// Where `vaitio import` connects, and as whom.
struct Importer {
    base_url: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    token: String,
}

impl Importer {
    fn of(gateway: &TestGateway) -> Importer {
        let (cert, key) = gateway.org_certificate(ORG);
        let token = gateway.token(&gateway.claims("psychotherapist", Some(ORG), THERAPIST, Some(&cert)));
        Importer { base_url: gateway.base_url.clone(), ca: gateway.ca(), cert, key, token }
    }

    fn command(&self, dir: &Path, file: &Path, extra: &[&str]) -> Command {
        let mut command = vaitio(dir);
        command.arg("import").arg(file).arg("--base-url").arg(&self.base_url);
        command.arg("--ca").arg(&self.ca).arg("--cert").arg(&self.cert).arg("--key").arg(&self.key);
        command.arg("--token").arg(&self.token).args(extra);
        command
    }

    fn run(&self, dir: &Path, file: &Path, extra: &[&str]) -> Output {
        self.command(dir, file, extra).output().unwrap()
    }
}

fn generate_args(records: u64, patients: u64, seed: u64, defects: f64, out: &Path) -> GenerateArgs {
    GenerateArgs {
        records,
        patients,
        out: out.to_owned(),
        seed,
        defects,
        org: ORG.into(),
        org_name: "Example Therapy Clinic".into(),
        therapists: 3,
        format: None,
    }
}

/// Writes the file with `vaitio dev generate`, and answers the numbers (from 1) of its
/// defective lines, from the generator itself.
fn generate(dir: &Path, args: &GenerateArgs) -> BTreeSet<u64> {
    let csv = args.out.extension().is_some_and(|e| e == "csv");
    let out = vaitio(dir)
        .args([
            "dev",
            "generate",
            "--format",
            if csv { "csv" } else { "ndjson" },
            "--records",
            &args.records.to_string(),
            "--patients",
            &args.patients.to_string(),
        ])
        .args(["--seed", &args.seed.to_string(), "--defects", &args.defects.to_string(), "--therapists", "3"])
        .arg("--out")
        .arg(&args.out)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let generator = Generator::new(args.clone()).unwrap();
    (0..args.records).filter(|&i| generator.line(i).1.is_some()).map(|i| i + 1).collect()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The refused lines of a report: number and reason.
fn refused_lines(report: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(report)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("line ")?;
            let mut fields = rest.split('\t');
            let number = fields.next()?.parse().ok()?;
            let reason = fields.nth(1)?.to_owned();
            Some((number, reason))
        })
        .collect()
}

on_both_backends! {
    fn an_import_stores_the_good_lines_reports_the_bad_and_a_second_run_changes_nothing(gateway) {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let file = dir.join("export.ndjson");
        let records = 10_000;
        let args = generate_args(records, 1_500, 11, 0.02, &file);
        let defective = generate(dir, &args);
        let good = records as i64 - defective.len() as i64;
        assert!(!defective.is_empty());
        let importer = Importer::of(&gateway);
        let report = dir.join("report.txt");
        let first = importer.run(dir, &file, &["--report", report.to_str().unwrap(), "--checkpoint", "cp.json"]);
        assert_eq!(first.status.code(), Some(2), "{}", stderr(&first));
        assert!(
            stdout(&first).contains(&format!("{records} lines: {good} created, 0 new version, 0 unchanged, {} refused", defective.len())),
            "{}",
            stdout(&first)
        );
        // Every defective line is reported, with its number and a reason; no good one is.
        let refused = refused_lines(&report);
        let numbers: BTreeSet<u64> = refused.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, defective);
        assert!(refused.iter().all(|(_, reason)| reason.len() > 5), "{refused:?}");
        // The report quotes no record's content: none of the file's HETUs is in it.
        let text = std::fs::read_to_string(&report).unwrap();
        let export = std::fs::read_to_string(&file).unwrap();
        for line in export.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
            let hetu = line["patient"]["hetu"].as_str().unwrap();
            assert!(!text.contains(hetu), "the report holds a HETU");
        }
        assert_eq!(gateway.stored("Bundle"), good);
        let checkpoint: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cp.json")).unwrap()).unwrap();
        assert_eq!((checkpoint["line"].as_u64(), checkpoint["complete"].as_bool()), (Some(records), Some(true)));

        // The same record sent alone is the same document: nothing new.
        let generator = Generator::new(args.clone()).unwrap();
        let first_good = (0..records).find(|i| !defective.contains(&(i + 1))).unwrap();
        let (line, _) = generator.line(first_good);
        let alone = submit(&gateway.client, &serde_json::from_str(&line).unwrap());
        assert_eq!(alone.status, 200, "{}", alone.text());

        // A second run: every good line unchanged, nothing written but the audit.
        let audit_before = gateway.verify_audit_log().unwrap().entries;
        let second = importer.run(dir, &file, &[]);
        assert_eq!(second.status.code(), Some(2), "{}", stderr(&second));
        assert!(
            stdout(&second).contains(&format!("{records} lines: 0 created, 0 new version, {good} unchanged, {} refused", defective.len())),
            "{}",
            stdout(&second)
        );
        // The same records exported as CSV, through a column mapping, are the same documents.
        let csv = dir.join("export.csv");
        assert_eq!(generate(dir, &GenerateArgs { out: csv.clone(), ..args.clone() }), defective);
        let mapping = dir.join("export.csv.mapping.toml");
        let csv_report = dir.join("csv-report.txt");
        let from_csv = importer.run(dir, &csv, &["--mapping", mapping.to_str().unwrap(), "--report", csv_report.to_str().unwrap()]);
        assert!(
            stdout(&from_csv).contains(&format!("{records} lines: 0 created, 0 new version, {good} unchanged, {} refused", defective.len())),
            "{}{}",
            stdout(&from_csv),
            stderr(&from_csv)
        );
        // A CSV record's line is one after its NDJSON line (the header row comes first).
        let csv_refused: BTreeSet<u64> = refused_lines(&csv_report).iter().map(|(n, _)| n - 1).collect();
        assert_eq!(csv_refused, defective);
        assert_eq!(gateway.stored("Bundle"), good);
        let audit_after = gateway.verify_audit_log().unwrap().entries;
        assert_eq!(audit_after - audit_before, 2 * good as u64, "one submission record per good line and run");
        // With the checkpoint, the finished import is not sent again.
        let again = importer.run(dir, &file, &["--checkpoint", "cp.json"]);
        assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
        assert!(stderr(&again).contains("nothing to do"), "{}", stderr(&again));

        // A changed record is a new version of its document.
        let mut changed: Value = serde_json::from_str(&line).unwrap();
        changed["note"]["text"] = json!("Reviewed the plan after a difficult week.");
        let one = dir.join("changed.ndjson");
        std::fs::write(&one, format!("{changed}\n")).unwrap();
        let third = importer.run(dir, &one, &[]);
        assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
        assert!(stdout(&third).contains("1 lines: 0 created, 1 new version"), "{}", stdout(&third));

        // A dry run checks and stores nothing, gzip-compressed.
        let other = dir.join("other.ndjson.gz");
        let other_defective = generate(dir, &generate_args(60, 10, 12, 0.2, &other));
        let dry = importer.run(dir, &other, &["--dry-run"]);
        assert_eq!(dry.status.code(), Some(if other_defective.is_empty() { 0 } else { 2 }), "{}", stderr(&dry));
        assert!(
            stdout(&dry).contains(&format!("60 lines: {} valid, {} refused", 60 - other_defective.len(), other_defective.len())),
            "{}",
            stdout(&dry)
        );
        assert_eq!(gateway.stored("Bundle"), good);
        gateway.verify_audit_log().expect("the audit log verifies");
    }

    fn the_import_endpoint_refuses_clearly_and_a_bad_line_does_not_stop_the_stream(gateway) {
        let ndjson = [("Content-Type", "application/x-ndjson")];
        let send = |client: &vaitio_conformance::client::Client, headers: &[(&str, &str)], body: &[u8]| {
            client.send("POST", "/psychotherapy-records/$import", headers, Some(body)).unwrap()
        };
        let mut good = record();
        good["record_id"] = json!("IMPORT-1");
        let good = format!("{good}\n");
        // Not NDJSON at all, empty, the wrong media type, a caller who does not submit.
        for (headers, body, status) in [
            (&ndjson[..], &b"patient,hetu\n1,131052-308T\n"[..], 400),
            (&ndjson[..], &b"\n\n"[..], 400),
            (&[("Content-Type", "application/json")][..], good.as_bytes(), 415),
        ] {
            let answer = send(&gateway.client, headers, body);
            assert_eq!(answer.status, status, "{}", answer.text());
            assert!(answer.is_operation_outcome(), "{}", answer.text());
            assert!(!answer.text().contains("131052-308T"), "the answer echoes the body");
        }
        let me = gateway.patient(HETU);
        assert_eq!(send(&me, &ndjson, good.as_bytes()).status, 403);

        // A line over the size limit, a line that is not JSON and one that holds a HETU where
        // no field is: each refused on its own, and the good line after them is stored.
        let huge = format!("{{\"note\": \"{}\"}}\n", "x".repeat(gateway.config.max_body_bytes + 10));
        let body = format!("{good}{huge}{{not json\n{{\"secret\": \"131052-308T\"}}\n\n{}\n", {
            let mut second = record();
            second["record_id"] = json!("IMPORT-2");
            second
        });
        let answer = send(&gateway.client, &ndjson, body.as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.header("content-type"), Some("application/x-ndjson"));
        assert!(!answer.text().contains("131052-308T"), "an answer echoes a value: {}", answer.text());
        let lines: Vec<Value> = answer.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let statuses: Vec<(u64, &str)> =
            lines.iter().filter_map(|l| Some((l["line"].as_u64()?, l["status"].as_str()?))).collect();
        // Line 5 is blank: not a record, no answer.
        assert_eq!(statuses, [(1, "created"), (2, "refused"), (3, "refused"), (4, "refused"), (6, "created")]);
        assert_eq!(lines[1]["outcome"]["issue"][0]["code"], "too-costly", "{}", lines[1]);
        assert_eq!(lines[0]["record_id"], "IMPORT-1");
        let done = lines.last().unwrap();
        assert_eq!((done["done"].as_bool(), done["created"].as_u64(), done["refused"].as_u64()), (Some(true), Some(2), Some(3)));
        // The same lines again: unchanged.
        let again = send(&gateway.client, &ndjson, good.as_bytes());
        assert!(again.text().contains("\"status\":\"unchanged\""), "{}", again.text());

        // One record's lines, edited between them and mixed with others', are filed in their
        // order: each a new version of the one before, and the last line is the record's current
        // version.
        let mut body = String::new();
        for n in 1..=12 {
            let mut line = record();
            line["record_id"] = json!("EDITED-1");
            line["plan"] = json!(format!("Plan as of edit {n}."));
            body.push_str(&format!("{line}\n"));
            let mut other = record();
            other["record_id"] = json!(format!("BESIDE-{n}"));
            body.push_str(&format!("{other}\n"));
        }
        let answer = send(&gateway.client, &ndjson, body.as_bytes());
        let edits: Vec<String> = answer
            .text()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["record_id"] == "EDITED-1")
            .map(|l| l["status"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<&str> = std::iter::once("created").chain(std::iter::repeat_n("new version", 11)).collect();
        assert_eq!(edits, expected, "{}", answer.text());
        let mut last = record();
        last["record_id"] = json!("EDITED-1");
        last["plan"] = json!("Plan as of edit 12.");
        let current = submit(&gateway.client, &last);
        assert_eq!((current.status, current.header("etag")), (200, Some("W/\"12\"")), "the last line is current");
    }
}

/// Waits until at least `count` documents are stored. The database is watched, not the
/// checkpoint file: that is saved once a second, and a fast import can finish the whole file
/// in the second between two saves, so it would never be caught mid-import.
fn wait_for_documents(pool: &store::db::Pool, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = bundles(pool);
        if stored >= count {
            return;
        }
        assert!(Instant::now() < deadline, "the import did not store {count} documents (it stored {stored})");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the client, then the gateway, mid-import; resumes each time; the stored documents are
/// exactly the good lines.
fn killed_and_resumed(database_url: Option<&str>) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let file = dir.join("export.ndjson");
    let records = 2_400;
    let defective = generate(dir, &generate_args(records, 300, 21, 0.05, &file));
    let (process, _) = Process::start(dir, database_url);
    let client = process.client(dir);
    let importer = |port: u16| Importer {
        base_url: format!("https://localhost:{port}"),
        ca: dir.join("vaitio-data/pki/ca.pem"),
        cert: dir.join("clinic/cert.pem"),
        key: dir.join("clinic/key.pem"),
        token: client.target().token.clone().unwrap(),
    };
    let (checkpoint, report) = (dir.join("cp.json"), dir.join("report.txt"));
    let sqlite = format!("sqlite://{}", dir.join("vaitio-data/vaitio.sqlite3").display());
    let url = database_url.map_or(sqlite, str::to_owned);
    let database = store::db::pool(&store::db::DatabaseUrl::parse(&url).unwrap(), 1).unwrap();
    let flags = ["--checkpoint", checkpoint.to_str().unwrap(), "--report", report.to_str().unwrap()];

    // The client killed mid-import.
    let mut run =
        importer(process.port).command(dir, &file, &flags).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_documents(&database, 300);
    run.kill().unwrap();
    let _ = run.wait();
    // Resumed, and the gateway killed mid-import.
    let mut run =
        importer(process.port).command(dir, &file, &flags).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_documents(&database, 1_200);
    process.kill();
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the client says the import stopped");
    // Restarted, and resumed to the end.
    let (process, _) = Process::start(dir, database_url);
    let last = importer(process.port).run(dir, &file, &flags);
    assert_eq!(last.status.code(), Some(2), "{}", stderr(&last));

    // Every defective line is in the report (one sent twice across a crash may be there twice).
    let reported: BTreeSet<u64> = refused_lines(&report).iter().map(|(n, _)| *n).collect();
    assert_eq!(reported, defective);
    // Exactly the good lines are stored: a run over the whole file finds each of them, and
    // nothing else is there.
    let check = importer(process.port).run(dir, &file, &[]);
    let good = records - defective.len() as u64;
    assert!(
        stdout(&check).contains(&format!("0 created, 0 new version, {good} unchanged, {} refused", defective.len())),
        "{}",
        stdout(&check)
    );
    assert_eq!(bundles(&database), good as i64, "only the good lines are stored");
    process.kill();
    let verified = vaitio(dir).args(["audit", "verify", "--database-url", &url]).output().unwrap();
    assert!(verified.status.success(), "{}", stderr(&verified));
}

/// The documents stored, counted in the database as an operator would.
fn bundles(pool: &store::db::Pool) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = "SELECT COUNT(*) AS n FROM resource_heads WHERE resource_type = 'Bundle'";
    let mut conn = pool.get().unwrap();
    let count: Count = match &mut *conn {
        store::db::DbConnection::Sqlite(c) => diesel::RunQueryDsl::get_result(diesel::sql_query(sql), c),
        store::db::DbConnection::Postgres(c) => diesel::RunQueryDsl::get_result(diesel::sql_query(sql), c),
    }
    .unwrap();
    count.n
}

#[test]
fn an_import_killed_on_either_side_resumes_to_exactly_the_good_lines_sqlite() {
    killed_and_resumed(None);
}

#[test]
fn an_import_killed_on_either_side_resumes_to_exactly_the_good_lines_postgres() {
    let Some(admin) = postgres_or_skip() else { return };
    let (url, _) = fresh_postgres_database(&admin);
    killed_and_resumed(Some(&url));
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A gigabyte of records in one stream (a dry run: each is read, translated and checked, and
/// none stored, so the test measures the stream rather than the disk): the gateway's memory
/// stays flat from the first twentieth of the stream to its end.
#[test]
fn a_gigabyte_stream_keeps_the_gateways_memory_flat() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let file = dir.join("big.ndjson");
    let size: u64 = std::env::var("VAITIO_TEST_IMPORT_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(1 << 30);
    let mut template = record();
    template["note"]["text"] = json!("Worked on sleep and worry. ".repeat(2_300));
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let (mut written, mut n) = (0u64, 0u64);
        while written < size {
            n += 1;
            template["record_id"] = json!(format!("BIG-{n}"));
            let line = format!("{template}\n");
            out.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    let (process, _) = Process::start(dir, None);
    let client = process.client(dir);
    let importer = Importer {
        base_url: format!("https://localhost:{}", process.port),
        ca: dir.join("vaitio-data/pki/ca.pem"),
        cert: dir.join("clinic/cert.pem"),
        key: dir.join("clinic/key.pem"),
        token: client.target().token.clone().unwrap(),
    };
    let pid = process.pid();
    let mut run = importer.command(dir, &file, &["--dry-run"]).stdout(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let mut samples = Vec::new();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        samples.push((started.elapsed(), rss_kib(pid)));
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = run.wait_with_output().unwrap();
    assert!(status.success(), "{}", stdout(&output));
    let lines = std::fs::read_to_string(&file).map(|t| t.lines().count()).unwrap_or(0);
    assert!(stdout(&output).contains(&format!("{lines} lines: {lines} valid, 0 refused")), "{}", stdout(&output));
    // Flat: after the first twentieth, the resident size grows by less than 48 MiB however
    // much more of the stream passes.
    let elapsed = started.elapsed();
    let warm = samples.iter().find(|(at, _)| *at >= elapsed / 20).map_or(0, |(_, rss)| *rss);
    let peak = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    eprintln!(
        "IMPORT-STREAM: {} MiB in {:.1} s, gateway RSS {} MiB after a twentieth, peak {} MiB",
        size >> 20,
        elapsed.as_secs_f64(),
        warm / 1024,
        peak / 1024
    );
    assert!(
        warm > 0 && peak < warm + 48 * 1024,
        "the gateway's memory grew with the stream: {warm} KiB, then {peak} KiB"
    );
    process.kill();
}
