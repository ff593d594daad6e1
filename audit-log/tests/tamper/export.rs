//! The auditor's export: written, read back, verified without the gateway, and tampered with as
//! a file.

use audit_log::{verify_export, AuditError, Evidence, ExportLine, Problem, StoredEntry};

use crate::support::{another_key, forged_event, key, signed_log, TestLog, CHECKPOINTS, SIZE};

fn export(log: &TestLog) -> String {
    let mut out = Vec::new();
    ExportLine::Key(key().verifying_key().clone()).write(&mut out).unwrap();
    for checkpoint in &log.checkpoints {
        ExportLine::Checkpoint(checkpoint.clone()).write(&mut out).unwrap();
    }
    for row in &log.rows {
        ExportLine::Entry(row.stored()).write(&mut out).unwrap();
    }
    String::from_utf8(out).unwrap()
}

fn verify_text(text: &str) -> Result<audit_log::Verified, Problem> {
    verify_export(text.lines(), Some(key().verifying_key()))
}

/// The first line of an entry is after the key and the checkpoints (line numbers from 1).
const FIRST_ENTRY_LINE: usize = CHECKPOINTS + 2;

#[test]
fn an_export_verifies_as_the_log_does() {
    let log = signed_log();
    let text = export(&log);
    assert_eq!(text.lines().count(), 1 + CHECKPOINTS + SIZE as usize);
    let verified = verify_text(&text).unwrap();
    assert_eq!(verified, log.verify().unwrap());

    // Without a trusted key, against the key it carries: the auditor compares the id.
    let verified = verify_export(text.lines(), None).unwrap();
    assert_eq!(verified.key_id, key().verifying_key().id());
}

#[test]
fn lines_read_back_as_written() {
    let log = signed_log();
    let text = export(&log);
    let mut lines = text.lines();
    assert_eq!(ExportLine::parse(lines.next().unwrap()).unwrap(), ExportLine::Key(key().verifying_key().clone()));
    assert_eq!(ExportLine::parse(lines.next().unwrap()).unwrap(), ExportLine::Checkpoint(log.checkpoints[0].clone()));
    let entry_line = lines.nth(CHECKPOINTS - 1).unwrap();
    assert_eq!(ExportLine::parse(entry_line).unwrap(), ExportLine::Entry(log.rows[0].stored()));

    // The event is the line's last member, its bytes verbatim.
    let event = std::str::from_utf8(&log.rows[0].event).unwrap();
    assert!(entry_line.starts_with(r#"{"kind":"entry","seq":0,"leaf":""#), "{entry_line}");
    assert!(entry_line.ends_with(&format!(r#","event":{event}}}"#)), "{entry_line}");
    let value: serde_json::Value = serde_json::from_str(entry_line).unwrap();
    assert_eq!(value["leaf"], log.rows[0].leaf.to_hex());
    assert_eq!(value["event"]["action"], "read");
    let event = audit_log::AuditEvent::from_canonical(value["event"].to_string().as_bytes()).unwrap();
    assert_eq!(event.to_fhir()["resourceType"], "AuditEvent");
}

#[test]
fn an_empty_log_exports_and_verifies() {
    let text = export(&TestLog { rows: Vec::new(), checkpoints: Vec::new() });
    assert_eq!(text.lines().count(), 1);
    assert_eq!(verify_text(&text).unwrap().entries, 0);
}

#[test]
fn an_event_edited_in_the_file_is_named() {
    let log = signed_log();
    let position = 123;
    let original = String::from_utf8(log.rows[position].event.clone()).unwrap();
    let forged = String::from_utf8(forged_event(position as u64)).unwrap();
    let text = export(&log).replacen(&original, &forged, 1);
    assert_eq!(verify_text(&text), Err(Problem::Modified { position: position as u64, evidence: Evidence::LeafHash }));
}

#[test]
fn moved_and_removed_lines_are_named() {
    let text = export(&signed_log());
    let lines: Vec<&str> = text.lines().collect();
    let at = |position: usize| FIRST_ENTRY_LINE - 1 + position;

    let mut swapped = lines.clone();
    swapped.swap(at(40), at(41));
    assert_eq!(
        verify_export(swapped, Some(key().verifying_key())),
        Err(Problem::Reordered { position: 40, found_seq: 41 })
    );

    let mut removed = lines.clone();
    removed.remove(at(77));
    assert_eq!(
        verify_export(removed, Some(key().verifying_key())),
        Err(Problem::Missing { position: 77, found_seq: 78 })
    );

    let truncated = lines[..at(290)].to_vec();
    assert_eq!(
        verify_export(truncated, Some(key().verifying_key())),
        Err(Problem::Truncated { checkpoint: CHECKPOINTS - 1, size: SIZE, entries: 290 })
    );
}

#[test]
fn an_export_under_another_key_is_not_trusted() {
    let log = signed_log();
    let forger = another_key();
    let mut out = Vec::new();
    ExportLine::Key(forger.verifying_key().clone()).write(&mut out).unwrap();
    let resigned: Vec<_> = log.checkpoints.iter().map(|c| forger.sign(c.checkpoint().clone()).unwrap()).collect();
    resigned.into_iter().for_each(|c| ExportLine::Checkpoint(c).write(&mut out).unwrap());
    log.rows.iter().for_each(|row| ExportLine::Entry(row.stored()).write(&mut out).unwrap());
    let text = String::from_utf8(out).unwrap();

    assert_eq!(verify_text(&text), Err(Problem::UntrustedKey));
    // Consistent with its own key, which is why an auditor must compare the key id.
    let verified = verify_export(text.lines(), None).unwrap();
    assert_ne!(verified.key_id, key().verifying_key().id());
}

#[test]
fn a_checkpoint_signed_by_another_key_is_found_in_the_file() {
    let mut log = signed_log();
    log.checkpoints[3] = another_key().sign(log.checkpoints[3].checkpoint().clone()).unwrap();
    assert_eq!(verify_text(&export(&log)), Err(Problem::BadSignature { checkpoint: 3 }));
}

#[test]
fn malformed_exports_are_unreadable_at_their_line() {
    let text = export(&signed_log());
    let lines: Vec<&str> = text.lines().collect();
    let unreadable_line = |lines: Vec<&str>| match verify_export(lines, Some(key().verifying_key())) {
        Err(Problem::Unreadable { line, .. }) => line,
        other => panic!("{other:?}"),
    };

    assert_eq!(unreadable_line(Vec::new()), 1, "no key");
    assert_eq!(unreadable_line(lines[1..].to_vec()), 1, "no key first");

    let mut garbage = lines.clone();
    garbage[FIRST_ENTRY_LINE + 4] = "{not json";
    assert_eq!(unreadable_line(garbage), FIRST_ENTRY_LINE as u64 + 5);

    let mut late_checkpoint = lines.clone();
    late_checkpoint.insert(FIRST_ENTRY_LINE + 2, lines[1]);
    assert_eq!(unreadable_line(late_checkpoint), FIRST_ENTRY_LINE as u64 + 3);

    let mut second_key = lines.clone();
    second_key.insert(2, lines[0]);
    assert_eq!(unreadable_line(second_key), 3);

    let extra_member = lines[FIRST_ENTRY_LINE - 1].replacen(r#""kind":"entry","#, r#""kind":"entry","note":"x","#, 1);
    let mut extra = lines.clone();
    extra[FIRST_ENTRY_LINE - 1] = &extra_member;
    assert_eq!(unreadable_line(extra), FIRST_ENTRY_LINE as u64);

    let unknown_member = lines[FIRST_ENTRY_LINE - 1].replacen(r#""kind":"entry","#, r#""kind":"entry","name":"x","#, 1);
    let mut unknown = lines.clone();
    unknown[FIRST_ENTRY_LINE - 1] = &unknown_member;
    assert_eq!(unreadable_line(unknown), FIRST_ENTRY_LINE as u64);

    let bad_key_id = lines[0].replacen(r#""key_id":""#, r#""key_id":"0"#, 1);
    let mut wrong_id = lines.clone();
    wrong_id[0] = &bad_key_id;
    assert_eq!(unreadable_line(wrong_id), 1);
}

#[test]
fn only_compact_json_objects_are_exported_verbatim() {
    for event in [&b"not json"[..], b" {\"a\":1}", b"{\"a\":1}\n", b"[1]", b"\"text\""] {
        let entry = StoredEntry { seq: 0, event, leaf: audit_log::leaf_hash(event), prev: audit_log::GENESIS };
        assert!(matches!(ExportLine::Entry(entry).write(&mut Vec::new()), Err(AuditError::EventNotJson)), "{event:?}");
    }
    // Whitespace inside the object is kept, and so read back byte for byte.
    let event = b"{ \"a\" : [1, 2] }";
    let entry = StoredEntry { seq: 0, event, leaf: audit_log::leaf_hash(event), prev: audit_log::GENESIS };
    let mut line = Vec::new();
    ExportLine::Entry(entry).write(&mut line).unwrap();
    let line = std::str::from_utf8(&line).unwrap().trim_end();
    assert_eq!(ExportLine::parse(line).unwrap(), ExportLine::Entry(entry));
}
