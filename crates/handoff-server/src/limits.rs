//! Rate limits: wrong credentials per client address and per OwnTracks user, wrong handoff
//! codes per relay, and ingest requests per device. Each is a count of strikes in a fixed window; over the limit,
//! the key is refused (429 with `Retry-After`) until its window ends. In memory, per server.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// At most `max` strikes per key in each `window`.
pub struct Strikes<K> {
    /// 0: no limit.
    max: AtomicU32,
    window: Duration,
    keys: Mutex<Keys<K>>,
}

/// Each key's window start and strikes, and when windows that are over were last let go.
struct Keys<K> {
    by_key: HashMap<K, (Instant, u32)>,
    pruned: Option<Instant>,
}

/// Keys kept before windows that are over are let go.
const PRUNE_AT: usize = 10_000;

impl<K: Eq + Hash + Clone> Strikes<K> {
    #[must_use]
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: AtomicU32::new(max),
            window,
            keys: Mutex::new(Keys {
                by_key: HashMap::new(),
                pruned: None,
            }),
        }
    }

    /// Sets the number of strikes allowed per window (0: no limit).
    pub fn set_max(&self, max: u32) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// When `key` is over the limit: how long until its window ends.
    pub fn refused(&self, key: &K, now: Instant) -> Option<Duration> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return None;
        }
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (start, n) = keys.by_key.get(key)?;
        let end = *start + self.window;
        (*n >= max && now < end).then(|| end - now)
    }

    /// One request of `key` (every request counts, not only failures): refused with how long
    /// to wait when over the limit, else counted. One look at the map.
    pub fn take(&self, key: &K, now: Instant) -> Option<Duration> {
        let max = self.max.load(Ordering::Relaxed);
        if max == 0 {
            return None;
        }
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((start, n)) = keys.by_key.get_mut(key) {
            let end = *start + self.window;
            if now >= end {
                (*start, *n) = (now, 1);
                return None;
            }
            if *n >= max {
                return Some(end - now);
            }
            *n += 1;
            return None;
        }
        self.insert(&mut keys, key.clone(), now);
        None
    }

    /// A new key, with its first strike; windows that are over are let go at most once a
    /// window when there are many keys (a race has 12,000 devices: sweeping them on every
    /// request would cost more than the request).
    fn insert(&self, keys: &mut Keys<K>, key: K, now: Instant) {
        if keys.by_key.len() >= PRUNE_AT && keys.pruned.is_none_or(|p| now >= p + self.window) {
            let window = self.window;
            keys.by_key.retain(|_, (start, _)| now < *start + window);
            keys.pruned = Some(now);
        }
        keys.by_key.insert(key, (now, 1));
    }

    /// Counts a strike against `key`.
    pub fn strike(&self, key: K, now: Instant) {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match keys.by_key.get_mut(&key) {
            Some(e) if now < e.0 + self.window => e.1 += 1,
            Some(e) => *e = (now, 1),
            None => self.insert(&mut keys, key, now),
        }
    }
}

/// Every limit of one server.
pub struct Limiters {
    /// Requests answered 401, per client address.
    pub auth_by_ip: Strikes<IpAddr>,
    /// Requests answered 401, per OwnTracks (HTTP Basic) user name.
    pub auth_by_user: Strikes<String>,
    /// Wrong handoff codes per (event, relay), whichever device enters them.
    pub codes: Strikes<(String, String)>,
    /// Ingest requests per (event, device).
    pub ingest: Strikes<(String, String)>,
}

/// Ingest requests allowed per device each minute (20 a second: a phone reports every few
/// seconds, and one catching up after a tunnel sends its backlog quickly, or in one batch).
pub const INGEST_PER_MINUTE: u32 = 1200;

/// Wrong credentials allowed per address (and per user name) each minute.
pub const AUTH_FAILURES_PER_MINUTE: u32 = 20;
/// Wrong handoff codes allowed per relay each 10 minutes (a code is burnt after 5).
pub const CODE_FAILURES_PER_10_MIN: u32 = 20;

impl Default for Limiters {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            auth_by_ip: Strikes::new(AUTH_FAILURES_PER_MINUTE, minute),
            auth_by_user: Strikes::new(AUTH_FAILURES_PER_MINUTE, minute),
            codes: Strikes::new(CODE_FAILURES_PER_10_MIN, 10 * minute),
            ingest: Strikes::new(INGEST_PER_MINUTE, minute),
        }
    }
}

/// Whole seconds to wait, at least one.
#[must_use]
pub fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_the_limit_is_refused_until_its_window_ends() {
        let s = Strikes::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..3 {
            assert_eq!(s.refused(&"a", t), None, "strike {i}");
            s.strike("a", t);
        }
        let wait = s
            .refused(&"a", t + Duration::from_secs(10))
            .expect("refused");
        assert_eq!(seconds(wait), 50);
        assert_eq!(s.refused(&"b", t), None, "another key is not");
        assert_eq!(
            s.refused(&"a", t + Duration::from_secs(60)),
            None,
            "a new window"
        );
        s.strike("a", t + Duration::from_secs(61));
        assert_eq!(
            s.refused(&"a", t + Duration::from_secs(61)),
            None,
            "counted afresh"
        );
        for _ in 0..5 {
            s.strike("a", t + Duration::from_secs(62));
        }
        assert!(s.refused(&"a", t + Duration::from_secs(62)).is_some());
        s.set_max(0);
        assert_eq!(
            s.refused(&"a", t + Duration::from_secs(62)),
            None,
            "no limit"
        );
    }
}
