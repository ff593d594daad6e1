//! The verifier: recomputes the log from its first entry and reports the first thing wrong.

use std::fmt;
use std::ops::Range;

use crate::checkpoint::{Checkpoint, KeyId, SignedCheckpoint, VerifyingKey};
use crate::hash::{chain_hash, leaf_hash, Sha256Hash, GENESIS};
use crate::log::StoredEntry;
use crate::merkle::MerkleTree;

/// A log that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The number of entries read.
    pub entries: u64,
    /// The number of checkpoints, every one of them signed by `key_id` and matched.
    pub checkpoints: usize,
    /// The checkpoint with the largest size. Entries beyond its size are only consistent with
    /// each other: nothing signed covers them yet.
    pub latest: Option<Checkpoint>,
    pub key_id: KeyId,
}

impl Verified {
    /// The entries that no checkpoint covers yet.
    pub fn unsigned_tail(&self) -> u64 {
        self.entries - self.latest.as_ref().map_or(0, Checkpoint::size)
    }
}

/// The first thing found wrong with a log. Positions count entries from 0 in the order they
/// were read; a sound log's sequence numbers are its positions. Checkpoints are numbered from 0
/// in the order they were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The entry at `position` was altered; `evidence` says which stored value gives it away.
    Modified { position: u64, evidence: Evidence },
    /// The entries in `positions` no longer hash to the root that `checkpoint` signed, though
    /// every stored hash agrees with them: they were rewritten together with the hashes stored
    /// after them, so only the range is known.
    RootMismatch { checkpoint: usize, positions: Range<u64> },
    /// The entry at `position` carries sequence number `found_seq`, and the ones in between are
    /// nowhere: entries were removed.
    Missing { position: u64, found_seq: u64 },
    /// The entry at `position` carries sequence number `found_seq`, and an entry that should
    /// come before it follows: entries were moved or duplicated.
    Reordered { position: u64, found_seq: u64 },
    /// `checkpoint` covers `size` entries but only `entries` were read.
    Truncated { checkpoint: usize, size: u64, entries: u64 },
    /// `checkpoint` is not signed by the log's key: forged, altered, or of another log.
    BadSignature { checkpoint: usize },
    /// `checkpoint` covers no more entries than the one before it, which covered `previous`.
    SizeNotIncreasing { checkpoint: usize, size: u64, previous: u64 },
    /// An export line that is not a well-formed line of its place (line numbers from 1).
    Unreadable { line: u64, reason: String },
    /// The export's key is not the key the auditor trusts.
    UntrustedKey,
}

/// What shows that an entry was altered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// Its event does not hash to its stored leaf hash.
    LeafHash,
    /// The chain value stored by the next entry does not follow from it, though the one stored
    /// after that follows from the next: its event was rewritten with its leaf hash (or the entry
    /// after it was removed and the rest renumbered).
    NextChainValue,
    /// Its own stored chain value does not follow from the entries before it.
    OwnChainValue,
    /// The chain value stored by the next entry does not follow from it, and nothing after tells
    /// whether this entry or the next was altered: the log ends there, or another problem follows
    /// at once.
    BrokenLinkToNext,
}

impl Problem {
    /// The first position at fault, where the problem is about entries.
    pub fn position(&self) -> Option<u64> {
        match *self {
            Problem::Modified { position, .. }
            | Problem::Missing { position, .. }
            | Problem::Reordered { position, .. } => Some(position),
            Problem::RootMismatch { ref positions, .. } => Some(positions.start),
            Problem::Truncated { entries, .. } => Some(entries),
            Problem::BadSignature { .. }
            | Problem::SizeNotIncreasing { .. }
            | Problem::Unreadable { .. }
            | Problem::UntrustedKey => None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Modified { position, evidence: Evidence::LeafHash } => {
                write!(f, "entry {position} modified: its event does not match its stored leaf hash")
            }
            Problem::Modified { position, evidence: Evidence::NextChainValue } => write!(
                f,
                "entry {position} modified: the chain value stored after it does not follow from it (its event was \
                 rewritten with its leaf hash, or the entry after it removed)"
            ),
            Problem::Modified { position, evidence: Evidence::OwnChainValue } => {
                write!(f, "entry {position} modified: its chain value does not follow from the entries before it")
            }
            Problem::Modified { position, evidence: Evidence::BrokenLinkToNext } => write!(
                f,
                "entry {position} or {} modified: the chain value stored by the second does not follow from the first",
                position + 1
            ),
            Problem::RootMismatch { checkpoint, positions } => write!(
                f,
                "entries {}..{} modified: they do not hash to the root signed by checkpoint {checkpoint}; their stored \
                 hashes were rewritten to match, so the exact position is unknown",
                positions.start, positions.end
            ),
            Problem::Missing { position, found_seq } => {
                write!(f, "entries missing at position {position}: sequence number {found_seq} follows {position}")
            }
            Problem::Reordered { position, found_seq } => {
                write!(f, "entries reordered at position {position}: sequence number {found_seq} found there")
            }
            Problem::Truncated { checkpoint, size, entries } => write!(
                f,
                "log truncated after a checkpoint: checkpoint {checkpoint} covers {size} entries, only {entries} remain"
            ),
            Problem::BadSignature { checkpoint } => {
                write!(f, "checkpoint {checkpoint} is not signed by the log's key")
            }
            Problem::SizeNotIncreasing { checkpoint, size, previous } => write!(
                f,
                "checkpoint {checkpoint} covers {size} entries, not more than the {previous} of the one before it"
            ),
            Problem::Unreadable { line, reason } => write!(f, "export line {line} unreadable: {reason}"),
            Problem::UntrustedKey => write!(f, "the export is signed with a key other than the trusted one"),
        }
    }
}

/// A finding that waits for more entries to be named precisely.
#[derive(Clone, Debug)]
enum Pending {
    /// The entry at `position` carries `found_seq` > `position`: entries are missing, or were
    /// moved if a smaller sequence number follows. Settled by the next entry.
    Gap { position: u64, found_seq: u64 },
    /// The chain value stored by the entry at `position` does not follow from the entry before
    /// it. If the next link breaks too, this entry's chain value was altered, and that settles
    /// it. If the next link holds (`next_link_held`), either the entry before had its event
    /// rewritten with its leaf hash (then the root covering them differs) or chain values were
    /// rewritten in two rows (then it matches): the root of the checkpoint that covers them
    /// settles it, or the end of the log.
    BrokenLink { position: u64, next_link_held: bool },
    /// The root of `checkpoint` differs though every link up to it held. If the link into the
    /// next entry breaks, the last entry the checkpoint covers had its event rewritten with its
    /// leaf hash; if it holds, the rewriting went on past the checkpoint and only the range is
    /// known.
    RootMismatch { checkpoint: usize, positions: Range<u64> },
}

impl Pending {
    /// The problem as the next entry (or none) tells it, without a root to say more.
    fn settle(self, next: Option<&StoredEntry<'_>>) -> Problem {
        match self {
            Pending::Gap { position, found_seq } => match next {
                Some(next) if next.seq < found_seq => Problem::Reordered { position, found_seq },
                _ => Problem::Missing { position, found_seq },
            },
            Pending::BrokenLink { position, next_link_held: true } => {
                Problem::Modified { position: position - 1, evidence: Evidence::NextChainValue }
            }
            Pending::BrokenLink { position, next_link_held: false } => {
                Problem::Modified { position: position - 1, evidence: Evidence::BrokenLinkToNext }
            }
            Pending::RootMismatch { checkpoint, positions } => Problem::RootMismatch { checkpoint, positions },
        }
    }
}

/// Verifies a log streamed entry by entry, in O(log n) memory besides the checkpoints.
///
/// ```text
/// let mut verifier = Verifier::new(&checkpoints, &key)?;
/// for row in rows { verifier.push(StoredEntry { seq, event: &row.event, leaf, prev })?; }
/// let verified = verifier.finish()?;
/// ```
///
/// Checkpoints are checked first (signatures, then sizes), so a forged checkpoint is reported
/// before any entry. Entries are then checked in order: sequence number, leaf hash, chain value,
/// and each checkpoint's root when the count reaches its size. The first problem by position
/// ends verification; a verifier that returned one must not be used further.
#[derive(Debug)]
pub struct Verifier {
    checkpoints: Vec<Checkpoint>,
    /// The index of the next checkpoint to reach.
    next_checkpoint: usize,
    /// The size of the latest checkpoint whose root matched: the events before it are the
    /// signed ones.
    verified_size: u64,
    tree: MerkleTree,
    /// The chain value the next entry must store.
    expected_prev: Sha256Hash,
    pending: Option<Pending>,
    key_id: KeyId,
}

impl Verifier {
    pub fn new<'c>(
        checkpoints: impl IntoIterator<Item = &'c SignedCheckpoint>,
        key: &VerifyingKey,
    ) -> Result<Self, Problem> {
        let mut checked: Vec<Checkpoint> = Vec::new();
        for (index, signed) in checkpoints.into_iter().enumerate() {
            if !key.verify(signed) {
                return Err(Problem::BadSignature { checkpoint: index });
            }
            let size = signed.checkpoint().size();
            if let Some(previous) = checked.last().map(Checkpoint::size).filter(|&previous| size <= previous) {
                return Err(Problem::SizeNotIncreasing { checkpoint: index, size, previous });
            }
            checked.push(signed.checkpoint().clone());
        }
        let mut verifier = Verifier {
            checkpoints: checked,
            next_checkpoint: 0,
            verified_size: 0,
            tree: MerkleTree::new(),
            expected_prev: GENESIS,
            pending: None,
            key_id: key.id(),
        };
        // A checkpoint of the empty log is reached before any entry.
        verifier.reach_checkpoint()?;
        Ok(verifier)
    }

    /// Checks the next entry in storage order.
    pub fn push(&mut self, entry: StoredEntry<'_>) -> Result<(), Problem> {
        let leaf = leaf_hash(entry.event);
        self.push_hashed(entry, leaf)
    }

    /// [`Verifier::push`] with the event's leaf hash, `SHA-256(0x00 ‖ event)`, already computed
    /// by the caller ([`leaf_hash`]): hashing the events is most of the work and needs no
    /// order, so a reader can spread it over threads and keep only the ordered part here.
    pub fn push_hashed(&mut self, entry: StoredEntry<'_>, event_leaf: Sha256Hash) -> Result<(), Problem> {
        let position = self.tree.size();
        let in_sequence = entry.seq == position;
        let link_broken = entry.prev != self.expected_prev;
        // Whether what is pending accounts for a broken link into this entry; or this entry
        // settles it.
        let link_explained = match self.pending.take() {
            None => false,
            Some(gap @ Pending::Gap { .. }) => return Err(gap.settle(Some(&entry))),
            Some(mismatch @ Pending::RootMismatch { .. }) if !in_sequence || !link_broken => {
                return Err(mismatch.settle(None));
            }
            Some(Pending::RootMismatch { .. }) => {
                self.pending = Some(Pending::BrokenLink { position, next_link_held: false });
                true
            }
            Some(Pending::BrokenLink { position: broken, next_link_held: false }) if in_sequence => {
                if link_broken {
                    return Err(Problem::Modified { position: broken, evidence: Evidence::OwnChainValue });
                }
                self.pending = Some(Pending::BrokenLink { position: broken, next_link_held: true });
                false
            }
            Some(pending) => {
                self.pending = Some(pending);
                false
            }
        };
        if !in_sequence {
            if let Some(pending) = self.pending.take() {
                // Whatever is wrong here, the pending problem is earlier.
                return Err(pending.settle(None));
            }
            if entry.seq < position {
                return Err(Problem::Reordered { position, found_seq: entry.seq });
            }
            self.pending = Some(Pending::Gap { position, found_seq: entry.seq });
            return Ok(());
        }
        let leaf = event_leaf;
        if leaf != entry.leaf || (link_broken && !link_explained) {
            match self.pending.take() {
                Some(pending) => return Err(pending.settle(None)),
                None if leaf != entry.leaf => {
                    return Err(Problem::Modified { position, evidence: Evidence::LeafHash });
                }
                // With no entry before it, or with the entry before it covered by a matching
                // root (so its event and leaf hash are the signed ones), only this entry can be
                // at fault.
                None if position == 0 || self.verified_size >= position => {
                    return Err(Problem::Modified { position, evidence: Evidence::OwnChainValue });
                }
                None => self.pending = Some(Pending::BrokenLink { position, next_link_held: false }),
            }
        }
        // Each link is checked against the stored values on both sides, so that one altered row
        // breaks only the links next to it: that is what makes its position exact.
        self.expected_prev = chain_hash(&entry.prev, &leaf);
        self.tree.push(leaf);
        self.reach_checkpoint()
    }

    /// Ends the log: reports what was waiting for more entries, then any checkpoint beyond the
    /// end.
    pub fn finish(mut self) -> Result<Verified, Problem> {
        if let Some(pending) = self.pending.take() {
            return Err(pending.settle(None));
        }
        let entries = self.tree.size();
        if let Some(beyond) = self.checkpoints.get(self.next_checkpoint) {
            return Err(Problem::Truncated { checkpoint: self.next_checkpoint, size: beyond.size(), entries });
        }
        Ok(Verified {
            entries,
            checkpoints: self.checkpoints.len(),
            latest: self.checkpoints.pop(),
            key_id: self.key_id,
        })
    }

    fn reach_checkpoint(&mut self) -> Result<(), Problem> {
        let size = self.tree.size();
        let Some(signed_root) =
            self.checkpoints.get(self.next_checkpoint).filter(|c| c.size() == size).map(Checkpoint::root)
        else {
            return Ok(());
        };
        let index = self.next_checkpoint;
        self.next_checkpoint += 1;
        let matches = self.tree.root() == signed_root;
        if matches {
            self.verified_size = size;
        }
        match self.pending.take() {
            None if matches => Ok(()),
            None => {
                let start = index.checked_sub(1).map_or(0, |previous| self.checkpoints[previous].size());
                self.pending = Some(Pending::RootMismatch { checkpoint: index, positions: start..size });
                Ok(())
            }
            // The events are the signed ones, so the broken link is a stored chain value.
            Some(Pending::BrokenLink { position, .. }) if matches => {
                Err(Problem::Modified { position, evidence: Evidence::OwnChainValue })
            }
            // Either row beside the broken link may hold the rewritten event: the next link tells.
            Some(pending @ Pending::BrokenLink { next_link_held: false, .. }) => {
                self.pending = Some(pending);
                Ok(())
            }
            Some(pending) => Err(pending.settle(None)),
        }
    }
}

/// Verifies a whole log: see [`Verifier`].
pub fn verify<'e, 'c>(
    entries: impl IntoIterator<Item = StoredEntry<'e>>,
    checkpoints: impl IntoIterator<Item = &'c SignedCheckpoint>,
    key: &VerifyingKey,
) -> Result<Verified, Problem> {
    let mut verifier = Verifier::new(checkpoints, key)?;
    for entry in entries {
        verifier.push(entry)?;
    }
    verifier.finish()
}
