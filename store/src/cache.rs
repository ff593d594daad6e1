//! A bounded in-memory map for caches whose misses only cost a query or an unwrap.

use std::collections::HashMap;
use std::sync::Mutex;

/// A map that forgets everything when it reaches its capacity: simpler than an LRU, and a
/// forgotten entry is only fetched again.
pub struct BoundedMap<V> {
    entries: Mutex<HashMap<String, V>>,
    capacity: usize,
}

impl<V: Clone> BoundedMap<V> {
    pub fn new(capacity: usize) -> Self {
        BoundedMap { entries: Mutex::new(HashMap::new()), capacity }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    pub fn put(&self, key: &str, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.capacity {
                entries.clear();
            }
            entries.insert(key.to_owned(), value);
        }
    }

    /// Keeps only the entries `keep` holds to; the rest are dropped.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, value| keep(value));
        }
    }
}
