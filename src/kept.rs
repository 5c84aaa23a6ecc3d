//! A bounded map of what was worked out from part of a request (its query text, its access token), so
//! the next request that carries the same part reuses it. Two generations of at most `entries` each:
//! when the newer is full it becomes the older and the older is dropped, so what is in use stays (a hit
//! in the older moves up) and a flood of distinct keys costs only its own work.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// See the module documentation.
pub struct Kept<K, V> {
    entries: usize,
    generations: Mutex<Generations<K, V>>,
}

struct Generations<K, V> {
    newer: HashMap<K, V>,
    older: HashMap<K, V>,
}

impl<K: Hash + Eq, V: Clone> Kept<K, V> {
    /// A map keeping at most `entries` keys per generation.
    pub fn new(entries: usize) -> Self {
        Self {
            entries,
            generations: Mutex::new(Generations {
                newer: HashMap::new(),
                older: HashMap::new(),
            }),
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut generations = self.lock();
        if let Some(value) = generations.newer.get(key) {
            return Some(value.clone());
        }
        let (key, value) = generations.older.remove_entry(key)?;
        generations.insert(self.entries, key, value.clone());
        Some(value)
    }

    pub fn insert(&self, key: K, value: V) {
        self.lock().insert(self.entries, key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<K, V>> {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn insert(&mut self, entries: usize, key: K, value: V) {
        if self.newer.len() >= entries {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_use_stay_and_a_flood_of_others_is_bounded() {
        const ENTRIES: usize = 64;
        let kept: Kept<String, usize> = Kept::new(ENTRIES);
        kept.insert("in use".to_owned(), 7);
        for i in 0..ENTRIES * 3 {
            kept.insert(format!("flood {i}"), i);
            if i % 10 == 0 {
                assert_eq!(kept.get("in use"), Some(7), "in use, so kept at {i}");
            }
        }
        let generations = kept.lock();
        assert!(generations.newer.len() <= ENTRIES && generations.older.len() <= ENTRIES);
        drop(generations);
        assert_eq!(kept.get("flood 0"), None, "an old key, unused, is gone");
        assert_eq!(
            kept.get(&format!("flood {}", ENTRIES * 3 - 1)),
            Some(ENTRIES * 3 - 1)
        );
    }
}
