//! The RFC 6962 Merkle tree, built incrementally.

use crate::hash::{node_hash, Sha256Hash, EMPTY_ROOT};
use crate::AuditError;

/// An append-only Merkle tree over leaf hashes, whose root at any size is RFC 6962's Merkle Tree
/// Hash (section 2.1), powers of two or not.
///
/// The tree keeps only its *frontier*: the roots of the perfect subtrees that its size decomposes
/// into, one per set bit of the size, largest (leftmost) first. A tree of 13 = 8 + 4 + 1 leaves
/// keeps three hashes. That is O(log n) memory, and an append costs one node hash on average
/// (merging equal subtrees, like a binary counter carrying). The root folds the frontier from the
/// right: `node(f[0], node(f[1], … node(f[k-2], f[k-1])))`, which is exactly RFC 6962's split at
/// the largest power of two below the size.
///
/// The frontier is also what a gateway stores to resume at size n without rehashing n entries
/// ([`MerkleTree::from_frontier`]). A stored frontier is not trusted: if it was altered, every
/// root computed from it differs from what a verifier recomputes from the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleTree {
    size: u64,
    frontier: Vec<Sha256Hash>,
}

impl MerkleTree {
    pub fn new() -> Self {
        MerkleTree::default()
    }

    /// Resumes a tree of `size` leaves from its frontier (as [`MerkleTree::frontier`] gave it).
    pub fn from_frontier(size: u64, frontier: Vec<Sha256Hash>) -> Result<Self, AuditError> {
        let expected = size.count_ones();
        if frontier.len() != expected as usize {
            return Err(AuditError::Frontier { size, expected, found: frontier.len() });
        }
        Ok(MerkleTree { size, frontier })
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the perfect subtrees, largest first.
    pub fn frontier(&self) -> &[Sha256Hash] {
        &self.frontier
    }

    /// Appends a leaf hash (see [`leaf_hash`](crate::leaf_hash)).
    pub fn push(&mut self, leaf: Sha256Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a perfect subtree as large as the one being
        // built: merge them, as a binary counter carries.
        let mut carries = self.size.trailing_ones();
        while carries > 0 {
            let left = self.frontier.pop().expect("the frontier holds one subtree per set bit of the size");
            node = node_hash(&left, &node);
            carries -= 1;
        }
        self.frontier.push(node);
        self.size += 1;
    }

    /// The Merkle Tree Hash of the leaves so far.
    pub fn root(&self) -> Sha256Hash {
        let mut subtrees = self.frontier.iter().rev();
        match subtrees.next() {
            None => EMPTY_ROOT,
            Some(&smallest) => subtrees.fold(smallest, |right, left| node_hash(left, &right)),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::hash::leaf_hash;

    /// RFC 6962 section 2.1, word for word: MTH({}) = SHA-256(), MTH({d0}) = leaf hash, and
    /// otherwise split at the largest power of two smaller than n.
    fn naive_root(leaves: &[Sha256Hash]) -> Sha256Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Sha256Hash> {
        (0..n).map(|i| leaf_hash(format!("entry {i}").as_bytes())).collect()
    }

    #[test]
    fn empty_tree() {
        let tree = MerkleTree::new();
        assert_eq!(tree.size(), 0);
        assert_eq!(tree.root(), EMPTY_ROOT);
        assert_eq!(tree.root().to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    /// The reference test vector of RFC 6962 implementations (certificate-transparency's
    /// `merkle_tree_test`): eight leaves and the root at each size.
    #[test]
    fn known_vector() {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let mut tree = MerkleTree::new();
        for (input, root) in inputs.iter().zip(roots) {
            tree.push(leaf_hash(input));
            assert_eq!(tree.root().to_hex(), root, "size {}", tree.size());
        }
    }

    #[test]
    fn a_frontier_of_the_wrong_length_is_refused() {
        let mut tree = MerkleTree::new();
        leaves(13).into_iter().for_each(|leaf| tree.push(leaf));
        assert_eq!(tree.frontier().len(), 3);
        let mut short = tree.frontier().to_vec();
        short.pop();
        assert!(matches!(
            MerkleTree::from_frontier(13, short),
            Err(AuditError::Frontier { size: 13, expected: 3, found: 2 })
        ));
    }

    proptest! {
        #[test]
        fn matches_the_recursive_definition_at_every_size(n in 0usize..300) {
            let leaves = leaves(n);
            let mut tree = MerkleTree::new();
            prop_assert_eq!(tree.root(), naive_root(&[]));
            for (i, leaf) in leaves.iter().enumerate() {
                tree.push(*leaf);
                prop_assert_eq!(tree.root(), naive_root(&leaves[..=i]), "size {}", i + 1);
                prop_assert_eq!(tree.frontier().len(), (i + 1).count_ones() as usize);
            }
        }

        #[test]
        fn a_restored_tree_continues_where_it_stopped(n in 0usize..300, stop in 0usize..300) {
            let stop = stop.min(n);
            let leaves = leaves(n);
            let mut first = MerkleTree::new();
            leaves[..stop].iter().for_each(|leaf| first.push(*leaf));
            let mut resumed = MerkleTree::from_frontier(first.size(), first.frontier().to_vec()).unwrap();
            leaves[stop..].iter().for_each(|leaf| resumed.push(*leaf));
            prop_assert_eq!(resumed.size(), n as u64);
            prop_assert_eq!(resumed.root(), naive_root(&leaves));
        }
    }
}
