//! The writer's side: what is stored for each entry, and the state the gateway appends from.

use std::fmt;

use crate::checkpoint::Checkpoint;
use crate::hash::{chain_hash, leaf_hash, Sha256Hash, GENESIS};
use crate::merkle::MerkleTree;
use crate::time::UnixMillis;
use crate::AuditError;

/// One entry as stored, and as a verifier reads it back.
///
/// The gateway stores all four values; none is derived on reading, because a verifier must see
/// what an attacker may have changed. `prev` is what lets a verifier name a single rewritten entry
/// even when its leaf hash was rewritten with it: that entry's hashes are checked by a value
/// stored in the *next* row, which rewriting one row does not touch (see the crate documentation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    /// The entry's sequence number: its 0-based position in the log, which is also its leaf
    /// index in the Merkle tree.
    pub seq: u64,
    /// The event's canonical bytes ([`AuditEvent::canonical_bytes`](crate::AuditEvent::canonical_bytes)).
    pub event: &'a [u8],
    /// [`leaf_hash`] of `event`.
    pub leaf: Sha256Hash,
    /// The chain value of every entry before this one: [`GENESIS`] for the first, then
    /// `chain_hash(prev, leaf)` of the entry before.
    pub prev: Sha256Hash,
}

impl fmt::Debug for StoredEntry<'_> {
    // The event as text (it is JSON of identifiers), not as a list of byte values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEntry")
            .field("seq", &self.seq)
            .field("event", &String::from_utf8_lossy(self.event))
            .field("leaf", &self.leaf)
            .field("prev", &self.prev)
            .finish()
    }
}

/// The head of the log as its writer sees it: the Merkle tree's frontier and the chain value
/// after the last entry. O(log n) memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogHead {
    tree: MerkleTree,
    chain: Sha256Hash,
}

impl Default for LogHead {
    fn default() -> Self {
        LogHead { tree: MerkleTree::new(), chain: GENESIS }
    }
}

impl LogHead {
    /// The head of an empty log.
    pub fn new() -> Self {
        LogHead::default()
    }

    /// Resumes after a restart without rehashing the log: `tree` is the frontier stored at the
    /// size the log has now, and `last` the log's last stored entry (`None` for an empty log).
    /// Refuses a tree whose size is not one past `last`.
    ///
    /// Nothing here is trusted more than the stored entries it comes from: a frontier or entry
    /// altered in storage yields roots and chain values that a verifier finds wrong.
    pub fn resume(tree: MerkleTree, last: Option<&StoredEntry<'_>>) -> Result<Self, AuditError> {
        let (size, chain) = match last {
            None => (0, GENESIS),
            Some(entry) => (entry.seq + 1, chain_hash(&entry.prev, &entry.leaf)),
        };
        if tree.size() != size {
            return Err(AuditError::Resume { tree: tree.size(), entries: size });
        }
        Ok(LogHead { tree, chain })
    }

    /// The number of entries.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The Merkle Tree Hash of all entries.
    pub fn root(&self) -> Sha256Hash {
        self.tree.root()
    }

    /// The tree, whose [`frontier`](MerkleTree::frontier) the gateway may store to resume from.
    pub fn tree(&self) -> &MerkleTree {
        &self.tree
    }

    /// Appends an event's canonical bytes, returning the entry to store. The entry must be
    /// stored, in the same transaction as the action it records, before the next append.
    pub fn append<'a>(&mut self, event: &'a [u8]) -> StoredEntry<'a> {
        let entry = StoredEntry { seq: self.tree.size(), event, leaf: leaf_hash(event), prev: self.chain };
        self.chain = chain_hash(&entry.prev, &entry.leaf);
        self.tree.push(entry.leaf);
        entry
    }

    /// The checkpoint of the log as it is now, to be signed with the log's key.
    pub fn checkpoint(&self, origin: &str, time: UnixMillis) -> Result<Checkpoint, AuditError> {
        Checkpoint::new(origin, self.size(), self.root(), time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_chain_and_number_from_zero() {
        let mut head = LogHead::new();
        let first = head.append(b"{\"a\":1}");
        let second = head.append(b"{\"b\":2}");
        assert_eq!((first.seq, second.seq), (0, 1));
        assert_eq!(first.prev, GENESIS);
        assert_eq!(first.leaf, leaf_hash(b"{\"a\":1}"));
        assert_eq!(second.prev, chain_hash(&first.prev, &first.leaf));
        assert_eq!(head.size(), 2);
    }

    #[test]
    fn a_resumed_head_appends_what_the_original_would() {
        let events: Vec<Vec<u8>> = (0..20).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let mut original = LogHead::new();
        let stored: Vec<StoredEntry<'_>> = events.iter().map(|event| original.append(event)).collect();

        let mut prefix = LogHead::new();
        stored[..13].iter().for_each(|entry| {
            prefix.append(entry.event);
        });
        let tree = MerkleTree::from_frontier(13, prefix.tree().frontier().to_vec()).unwrap();
        let mut resumed = LogHead::resume(tree, Some(&stored[12])).unwrap();
        for entry in &stored[13..] {
            assert_eq!(resumed.append(entry.event), *entry);
        }
        assert_eq!(resumed, original);

        assert_eq!(LogHead::resume(MerkleTree::new(), None).unwrap(), LogHead::new());
        assert!(matches!(
            LogHead::resume(MerkleTree::new(), Some(&stored[0])),
            Err(AuditError::Resume { tree: 0, entries: 1 })
        ));
    }
}
