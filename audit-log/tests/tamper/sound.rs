//! Logs nobody touched verify, with the exact count.

use audit_log::{verify, Problem, SignedCheckpoint, Verifier};
use proptest::prelude::*;

use crate::support::{another_key, key, signed_log, TestLog, CHECKPOINTS, ORIGIN, SIZE};

#[test]
fn an_untampered_log_verifies_with_the_exact_count() {
    let log = signed_log();
    let verified = log.verify().unwrap();
    assert_eq!(verified.entries, SIZE);
    assert_eq!(verified.checkpoints, CHECKPOINTS);
    assert_eq!(verified.latest.as_ref().map(|c| c.size()), Some(SIZE));
    assert_eq!(verified.unsigned_tail(), 0);
    assert_eq!(verified.key_id, key().verifying_key().id());
}

#[test]
fn an_empty_log_verifies() {
    let verified = verify([], &[], key().verifying_key()).unwrap();
    assert_eq!((verified.entries, verified.checkpoints, verified.latest), (0, 0, None));

    // Also with a checkpoint of the empty log.
    let empty = audit_log::LogHead::new().checkpoint(ORIGIN, crate::support::time(0)).unwrap();
    let signed = key().sign(empty).unwrap();
    let verified = verify([], [&signed], key().verifying_key()).unwrap();
    assert_eq!((verified.entries, verified.checkpoints), (0, 1));
}

#[test]
fn a_log_checked_against_another_key_fails_at_its_first_checkpoint() {
    let log = signed_log();
    let stranger = another_key();
    let result = verify(log.rows.iter().map(crate::support::Row::stored), &log.checkpoints, stranger.verifying_key());
    assert_eq!(result, Err(Problem::BadSignature { checkpoint: 0 }));
}

#[test]
fn the_streaming_verifier_is_the_batch_one() {
    let log = signed_log();
    let checkpoints: Vec<&SignedCheckpoint> = log.checkpoints.iter().collect();
    let mut verifier = Verifier::new(checkpoints, key().verifying_key()).unwrap();
    for row in &log.rows {
        verifier.push(row.stored()).unwrap();
    }
    assert_eq!(verifier.finish(), log.verify());
}

#[test]
fn problems_read_as_sentences() {
    let cases = [
        (
            Problem::RootMismatch { checkpoint: 3, positions: 75..100 },
            "entries 75..100 modified: they do not hash to the root signed by checkpoint 3; their stored hashes were \
             rewritten to match, so the exact position is unknown",
        ),
        (Problem::Missing { position: 7, found_seq: 9 }, "entries missing at position 7: sequence number 9 follows 7"),
        (
            Problem::Truncated { checkpoint: 2, size: 75, entries: 60 },
            "log truncated after a checkpoint: checkpoint 2 covers 75 entries, only 60 remain",
        ),
        (Problem::BadSignature { checkpoint: 4 }, "checkpoint 4 is not signed by the log's key"),
    ];
    for (problem, text) in cases {
        assert_eq!(problem.to_string(), text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_size_and_interval_verifies(size in 0..160u64, every in 1..40u64) {
        let log = TestLog::build(size, every);
        let verified = log.verify().unwrap();
        prop_assert_eq!(verified.entries, size);
        prop_assert_eq!(verified.checkpoints as u64, size / every);
        prop_assert_eq!(verified.unsigned_tail(), size % every);
    }
}
