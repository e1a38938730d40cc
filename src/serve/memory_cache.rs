//! The in-process cache: what `chronicle dev` uses for a CacheTier whose
//! Redis Secret it was not given. The same contract as the Redis tier
//! (`cache.rs`): answers under a generation, index sets per address and for
//! the tip, and a block written drops the answers in its sets and bumps the
//! generation, so an answer computed before the block is not stored after it.
//!
//! Ingest and serve find one cache by name in the process (`memory://NAME`).
//! It holds at most [`CAPACITY`] answers; when full, expired answers are
//! dropped first and a new answer that still does not fit is not stored
//! (a miss, never an error).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use jsonrpc_core::Value;

/// Answers one in-process cache keeps at most.
pub const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct MemoryCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, (Value, Instant)>,
    sets: HashMap<String, HashSet<String>>,
    generation: u64,
}

impl MemoryCache {
    /// The process's cache called `name`, created on first use.
    pub fn named(name: &str) -> Arc<MemoryCache> {
        static CACHES: OnceLock<Mutex<HashMap<String, Arc<MemoryCache>>>> = OnceLock::new();
        let mut caches = CACHES.get_or_init(Default::default).lock().expect("in-process caches");
        caches.entry(name.to_string()).or_default().clone()
    }

    /// The answer under `key` if it has not expired, and the current generation.
    pub fn get(&self, key: &str) -> (Option<Value>, u64) {
        let state = self.state.lock().expect("in-process cache");
        let answer = state.answers.get(key).filter(|(_, expires)| *expires > Instant::now()).map(|(v, _)| v.clone());
        (answer, state.generation)
    }

    /// Stores `value` under `key` for `ttl`, registered in `sets`, if no
    /// block was written since `generation`. True when stored.
    pub fn put_if_current(&self, key: &str, generation: u64, value: Value, ttl: Duration, sets: &[String]) -> bool {
        let mut state = self.state.lock().expect("in-process cache");
        if state.generation != generation {
            return false;
        }
        let now = Instant::now();
        if state.answers.len() >= CAPACITY && !state.answers.contains_key(key) {
            state.answers.retain(|_, (_, expires)| *expires > now);
            if state.answers.len() >= CAPACITY {
                return false;
            }
        }
        state.answers.insert(key.to_string(), (value, now + ttl));
        for set in sets {
            state.sets.entry(set.clone()).or_default().insert(key.to_string());
        }
        true
    }

    /// Bumps the generation and drops every answer registered in `sets`,
    /// and the sets; returns how many answers were dropped.
    pub fn drop_indexed(&self, sets: &[String]) -> usize {
        let mut state = self.state.lock().expect("in-process cache");
        state.generation += 1;
        let mut dropped = 0;
        for set in sets {
            for key in state.sets.remove(set).unwrap_or_default() {
                dropped += usize::from(state.answers.remove(&key).is_some());
            }
        }
        dropped
    }

    /// Bumps the generation and drops every answer (a retention run removed
    /// blocks, so answers once immutable are not); returns how many.
    pub fn drop_all(&self) -> usize {
        let mut state = self.state.lock().expect("in-process cache");
        state.generation += 1;
        state.sets.clear();
        std::mem::take(&mut state.answers).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_drops_its_answers_and_stale_answers_are_not_stored() {
        let cache = MemoryCache::named("test-drop");
        let (_, generation) = cache.get("a");
        let ttl = Duration::from_secs(60);
        assert!(cache.put_if_current("a", generation, Value::from(1), ttl, &["addr:x".into()]));
        assert!(cache.put_if_current("b", generation, Value::from(2), ttl, &[]));
        assert_eq!(cache.get("a").0, Some(Value::from(1)));
        assert_eq!(cache.drop_indexed(&["addr:x".into(), "tip".into()]), 1);
        assert_eq!(cache.get("a").0, None, "dropped with its address");
        assert_eq!(cache.get("b").0, Some(Value::from(2)), "an immutable answer stays");
        assert!(!cache.put_if_current("a", generation, Value::from(1), ttl, &[]), "computed before the block");
        assert!(Arc::ptr_eq(&cache, &MemoryCache::named("test-drop")), "one cache per name in the process");
    }

    #[test]
    fn expired_answers_are_misses() {
        let cache = MemoryCache::named("test-expiry");
        let (_, generation) = cache.get("a");
        assert!(cache.put_if_current("a", generation, Value::from(1), Duration::ZERO, &[]));
        assert_eq!(cache.get("a").0, None);
    }
}
