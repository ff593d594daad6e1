//! What an attacker with write access to the database, but not the signing key, can do to the
//! log, at random positions: each is found, and named where the crate says it is.

use audit_log::{chain_hash, leaf_hash, Checkpoint, Evidence, Problem, SignedCheckpoint};
use proptest::prelude::*;

use crate::support::{another_key, forged_event, signed_log, Row, CHECKPOINTS, EVERY, SIZE};

fn modified(position: u64, evidence: Evidence) -> Result<audit_log::Verified, Problem> {
    Err(Problem::Modified { position, evidence })
}

/// The checkpoint covering `position`, and the positions it covers beyond the one before it.
fn covering(position: u64) -> (usize, std::ops::Range<u64>) {
    let index = position / EVERY;
    (index as usize, index * EVERY..(index + 1) * EVERY)
}

/// Recomputes the stored hashes from `from` on, as an attacker who rewrites everything after a
/// change would.
fn rehash_from(rows: &mut [Row], from: usize) {
    for i in from..rows.len() {
        let prev = if i == 0 { audit_log::GENESIS } else { chain_hash(&rows[i - 1].prev, &rows[i - 1].leaf) };
        rows[i].leaf = leaf_hash(&rows[i].event);
        rows[i].prev = prev;
    }
}

/// How an attacker alters one row.
#[derive(Clone, Copy, Debug)]
struct Alteration {
    event: EventChange,
    /// A leaf hash that is no hash of anything stored.
    garbage_leaf: bool,
    garbage_prev: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum EventChange {
    Kept,
    Forged,
    ForgedWithLeafHash,
}

fn alteration() -> impl Strategy<Value = Alteration> {
    let event = prop_oneof![Just(EventChange::Kept), Just(EventChange::Forged), Just(EventChange::ForgedWithLeafHash)];
    (event, any::<bool>(), any::<bool>())
        .prop_map(|(event, garbage_leaf, garbage_prev)| Alteration { event, garbage_leaf, garbage_prev })
        .prop_filter("alters something", |a| a.event != EventChange::Kept || a.garbage_leaf || a.garbage_prev)
}

fn alter(row: &mut Row, how: Alteration) {
    match how.event {
        EventChange::Kept => {}
        EventChange::Forged => row.event = forged_event(row.seq),
        EventChange::ForgedWithLeafHash => {
            row.event = forged_event(row.seq);
            row.leaf = leaf_hash(&row.event);
        }
    }
    if how.garbage_leaf {
        row.leaf = leaf_hash(b"garbage");
    }
    if how.garbage_prev {
        row.prev = leaf_hash(b"garbage prev");
    }
}

/// The positions a problem names.
fn named(problem: &Problem) -> std::ops::Range<u64> {
    match problem {
        Problem::Modified { position, evidence: Evidence::BrokenLinkToNext } => *position..position + 2,
        Problem::Modified { position, .. } => *position..position + 1,
        Problem::RootMismatch { positions, .. } => positions.clone(),
        other => panic!("not a modification: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// One row altered in any way is named exactly; only at the end of the log, with nothing
    /// after it to tell, the report names it with its neighbour, or by its checkpoint's range.
    #[test]
    fn any_single_row_altered_is_named(position in 0..SIZE, how in alteration()) {
        let mut log = signed_log();
        alter(&mut log.rows[position as usize], how);
        let problem = log.verify().unwrap_err();
        let named = named(&problem);
        prop_assert!(named.contains(&position), "{how:?} at {position}: {problem:?}");
        if position < SIZE - 2 {
            prop_assert_eq!(named, position..position + 1, "{:?}: {:?}", how, problem);
        }
    }

    /// Whatever rows are altered, however, nothing a checkpoint covers changes undetected.
    #[test]
    fn any_alteration_of_signed_rows_is_found(
        alterations in proptest::collection::vec((0..SIZE, alteration()), 1..6),
        rehash in proptest::option::of(0..SIZE),
    ) {
        let mut log = signed_log();
        for (position, how) in &alterations {
            alter(&mut log.rows[*position as usize], *how);
        }
        if let Some(from) = rehash {
            rehash_from(&mut log.rows, from as usize);
        }
        let untouched = alterations.iter().all(|(position, how)| {
            // Rehashing from before a row whose only change was its hashes puts them back.
            rehash.is_some_and(|from| from <= *position) && how.event == EventChange::Kept
        });
        prop_assume!(!untouched);
        prop_assert!(log.verify().is_err());
    }

    #[test]
    fn an_event_changed_alone_is_named_by_its_leaf_hash(position in 0..SIZE) {
        let mut log = signed_log();
        log.rows[position as usize].event = forged_event(position);
        prop_assert_eq!(log.verify(), modified(position, Evidence::LeafHash));
    }

    #[test]
    fn a_leaf_hash_changed_alone_is_named(position in 0..SIZE) {
        let mut log = signed_log();
        log.rows[position as usize].leaf = leaf_hash(b"forged");
        prop_assert_eq!(log.verify(), modified(position, Evidence::LeafHash));
    }

    #[test]
    fn an_event_rewritten_with_its_leaf_hash_is_named_by_the_next_chain_value(position in 0..SIZE - 2) {
        let mut log = signed_log();
        let row = &mut log.rows[position as usize];
        row.event = forged_event(position);
        row.leaf = leaf_hash(&row.event);
        prop_assert_eq!(log.verify(), modified(position, Evidence::NextChainValue));
    }

    #[test]
    fn a_chain_value_changed_is_named(position in 0..SIZE) {
        let mut log = signed_log();
        log.rows[position as usize].prev = leaf_hash(b"forged");
        prop_assert_eq!(log.verify(), modified(position, Evidence::OwnChainValue));
    }

    /// Event, leaf hash and chain value: everything one row holds.
    #[test]
    fn a_whole_row_rewritten_is_named(position in 0..SIZE - 1) {
        let mut log = signed_log();
        let row = &mut log.rows[position as usize];
        row.event = forged_event(position);
        row.leaf = leaf_hash(&row.event);
        row.prev = leaf_hash(b"forged");
        prop_assert_eq!(log.verify(), modified(position, Evidence::OwnChainValue));
    }

    #[test]
    fn a_removed_entry_is_missing(position in 0..SIZE - 1) {
        let mut log = signed_log();
        log.rows.remove(position as usize);
        prop_assert_eq!(log.verify(), Err(Problem::Missing { position, found_seq: position + 1 }));
    }

    /// Renumbering every later entry is many rows rewritten: the report names the entry before
    /// the gap, or the first renumbered one where a checkpoint vouches for everything before.
    #[test]
    fn a_removed_entry_renumbered_over_is_named_beside_the_gap(position in 1..SIZE - 2) {
        let mut log = signed_log();
        log.rows.remove(position as usize);
        for row in &mut log.rows[position as usize..] {
            row.seq -= 1;
        }
        let expected = if position.is_multiple_of(EVERY) {
            modified(position, Evidence::OwnChainValue)
        } else {
            modified(position - 1, Evidence::NextChainValue)
        };
        prop_assert_eq!(log.verify(), expected);
    }

    #[test]
    fn two_swapped_entries_are_out_of_order(a in 0..SIZE, b in 0..SIZE) {
        prop_assume!(a != b);
        let (first, second) = (a.min(b), a.max(b));
        let mut log = signed_log();
        log.rows.swap(first as usize, second as usize);
        prop_assert_eq!(log.verify(), Err(Problem::Reordered { position: first, found_seq: second }));
    }

    /// The rows' contents exchanged, each keeping its sequence number.
    #[test]
    fn two_rows_exchanged_in_place_are_named(a in 0..SIZE, b in 0..SIZE) {
        prop_assume!(a != b);
        let (first, second) = (a.min(b) as usize, a.max(b) as usize);
        let mut log = signed_log();
        let (x, y) = (log.rows[first].clone(), log.rows[second].clone());
        log.rows[first] = Row { seq: x.seq, ..y };
        log.rows[second] = Row { seq: y.seq, ..x };
        prop_assert_eq!(log.verify(), modified(first as u64, Evidence::OwnChainValue));
    }

    #[test]
    fn truncation_after_a_checkpoint_is_found(kept in 0..SIZE) {
        let mut log = signed_log();
        log.rows.truncate(kept as usize);
        let (checkpoint, covered) = covering(kept);
        prop_assert_eq!(log.verify(), Err(Problem::Truncated { checkpoint, size: covered.end, entries: kept }));
    }

    /// The attacker hides a change by recomputing every hash after it: only the checkpoint
    /// tells, by its range.
    #[test]
    fn a_change_rehashed_to_the_end_is_named_by_its_checkpoint(position in 0..SIZE) {
        let mut log = signed_log();
        log.rows[position as usize].event = forged_event(position);
        rehash_from(&mut log.rows, position as usize);
        let (checkpoint, positions) = covering(position);
        prop_assert_eq!(log.verify(), Err(Problem::RootMismatch { checkpoint, positions }));
    }

    /// A run of rows rewritten consistently, hashes and all, is named by the first checkpoint
    /// it crosses, or by its last row if it ends before one.
    #[test]
    fn a_rewritten_run_is_named_by_its_checkpoint_or_last_row(start in 0..SIZE - 1, length in 1..40u64) {
        let end = (start + length).min(SIZE - 1);
        let mut log = signed_log();
        for position in start..end {
            log.rows[position as usize].event = forged_event(position);
        }
        rehash_from(&mut log.rows[..end as usize], start as usize);
        let (checkpoint, positions) = covering(start);
        let expected = if end > positions.end {
            Err(Problem::RootMismatch { checkpoint, positions })
        } else if end == SIZE - 1 {
            modified(end - 1, Evidence::BrokenLinkToNext)
        } else {
            modified(end - 1, Evidence::NextChainValue)
        };
        prop_assert_eq!(log.verify(), expected);
    }

    #[test]
    fn a_checkpoint_signed_with_another_key_is_forged(index in 0..CHECKPOINTS) {
        let mut log = signed_log();
        let checkpoint = log.checkpoints[index].checkpoint().clone();
        log.checkpoints[index] = another_key().sign(checkpoint).unwrap();
        prop_assert_eq!(log.verify(), Err(Problem::BadSignature { checkpoint: index }));
    }

    /// An attacker who rewrote the entries and signs new checkpoints over them with a key of
    /// their own.
    #[test]
    fn a_rewritten_log_resigned_with_another_key_is_refused(position in 0..SIZE) {
        let mut log = signed_log();
        log.rows[position as usize].event = forged_event(position);
        rehash_from(&mut log.rows, position as usize);
        let forger = another_key();
        let (index, covered) = covering(position);
        let root = {
            let mut head = audit_log::LogHead::new();
            log.rows[..covered.end as usize].iter().for_each(|row| { head.append(&row.event); });
            head.root()
        };
        let old = log.checkpoints[index].checkpoint();
        let checkpoint = Checkpoint::new(old.origin(), old.size(), root, old.time()).unwrap();
        log.checkpoints[index] = forger.sign(checkpoint).unwrap();
        prop_assert_eq!(log.verify(), Err(Problem::BadSignature { checkpoint: index }));
    }

    #[test]
    fn a_checkpoint_whose_root_was_changed_is_forged(index in 0..CHECKPOINTS) {
        let mut log = signed_log();
        let signed = &log.checkpoints[index];
        let note = signed.to_note();
        let root = audit_log::leaf_hash(b"another root");
        let altered = note.replacen(
            &base64(signed.checkpoint().root().as_bytes()),
            &base64(root.as_bytes()),
            1,
        );
        log.checkpoints[index] = SignedCheckpoint::from_note(&altered).unwrap();
        prop_assert_eq!(log.checkpoints[index].checkpoint().root(), root);
        prop_assert_eq!(log.verify(), Err(Problem::BadSignature { checkpoint: index }));
    }

    #[test]
    fn checkpoints_out_of_order_are_found(index in 1..CHECKPOINTS) {
        let mut log = signed_log();
        log.checkpoints.swap(index - 1, index);
        let (size, previous) = (index as u64 * EVERY, (index as u64 + 1) * EVERY);
        prop_assert_eq!(log.verify(), Err(Problem::SizeNotIncreasing { checkpoint: index, size, previous }));
    }
}

#[test]
fn the_last_entry_rewritten_with_its_leaf_hash_is_named_by_the_last_checkpoint() {
    let mut log = signed_log();
    let last = (SIZE - 1) as usize;
    log.rows[last].event = forged_event(SIZE - 1);
    log.rows[last].leaf = leaf_hash(&log.rows[last].event);
    let (checkpoint, positions) = covering(SIZE - 1);
    assert_eq!(log.verify(), Err(Problem::RootMismatch { checkpoint, positions }));
}

/// With nothing after the row beside a broken link, either row may be the altered one: the
/// report names both.
#[test]
fn the_last_two_rows_are_told_apart_by_nothing() {
    let mut log = signed_log();
    let row = &mut log.rows[(SIZE - 2) as usize];
    row.event = forged_event(SIZE - 2);
    row.leaf = leaf_hash(&row.event);
    assert_eq!(log.verify(), modified(SIZE - 2, Evidence::BrokenLinkToNext));
}

/// With nothing after it, an altered last row leaves two candidates: the report names both.
#[test]
fn the_last_row_rewritten_whole_is_named_with_the_one_before() {
    let mut log = signed_log();
    let last = (SIZE - 1) as usize;
    log.rows[last].event = forged_event(SIZE - 1);
    log.rows[last].leaf = leaf_hash(&log.rows[last].event);
    log.rows[last].prev = leaf_hash(b"forged");
    let problem = log.verify().unwrap_err();
    assert_eq!(problem, Problem::Modified { position: SIZE - 2, evidence: Evidence::BrokenLinkToNext });
    assert_eq!(
        problem.to_string(),
        format!(
            "entry {} or {} modified: the chain value stored by the second does not follow from the first",
            SIZE - 2,
            SIZE - 1
        )
    );
}

#[test]
fn a_duplicated_entry_is_out_of_order() {
    let mut log = signed_log();
    let copy = log.rows[10].clone();
    log.rows.insert(11, copy);
    assert_eq!(log.verify(), Err(Problem::Reordered { position: 11, found_seq: 10 }));
}

#[test]
fn a_checkpoint_beyond_the_log_is_a_truncation() {
    let mut log = signed_log();
    log.rows.clear();
    assert_eq!(log.verify(), Err(Problem::Truncated { checkpoint: 0, size: EVERY, entries: 0 }));
}

/// The documented limit: entries after the latest checkpoint are only consistent with each
/// other, so one rewritten with every hash after it passes.
#[test]
fn the_unsigned_tail_is_only_self_consistent() {
    let mut log = crate::support::TestLog::build(SIZE + 10, EVERY);
    let position = SIZE as usize + 3;
    log.rows[position].event = forged_event(position as u64);
    rehash_from(&mut log.rows, position);
    let verified = log.verify().unwrap();
    assert_eq!((verified.entries, verified.unsigned_tail()), (SIZE + 10, 10));

    // Changed without rewriting its hashes, it is still named.
    log.rows[position].event = forged_event(position as u64 + 1);
    assert_eq!(log.verify(), modified(position as u64, Evidence::LeafHash));
}

fn base64(bytes: &[u8; 32]) -> String {
    // The checkpoint body's root line, as the note spells it: found through a checkpoint of
    // the same root rather than a second base64 implementation.
    let checkpoint =
        Checkpoint::new("x", 0, audit_log::Sha256Hash::from_bytes(*bytes), crate::support::time(0)).unwrap();
    checkpoint.body().lines().nth(2).unwrap().to_owned()
}
