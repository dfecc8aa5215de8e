//! Back-off on failed sign-ins (the login form and the API's bearer token), per client
//! address and, for the login form, per user name: the first few failures are free, each
//! later one locks the address (or the name) out for a doubling time (answered 429 with
//! `Retry-After`, without looking at the credentials). Memory is bounded: at most
//! [`MAX_ADDRESSES`] addresses and as many names are remembered, the stalest forgotten
//! first. IPv6 clients are counted by their /64 (one host usually holds a whole /64).

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Duration;

/// Failures an address may make before it is locked out.
pub const FREE_FAILURES: u32 = 5;
/// The longest lock-out.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// An address without a failure for this long starts again from nothing.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: DateTime<Utc>,
    locked_until: DateTime<Utc>,
}

/// Failed sign-ins by client address, and by user name.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    by_address: Counter<IpAddr>,
    by_user: Counter<String>,
}

/// Failures by key, bounded.
#[derive(Debug)]
struct Counter<K> {
    map: Mutex<HashMap<K, Entry>>,
}

impl<K> Default for Counter<K> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// The address failures are counted under.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How long the `failures`-th failure locks the address out (none for the free ones).
pub fn lock_for(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << doublings).min(MAX_LOCK)
}

fn forgotten(e: &Entry, now: DateTime<Utc>) -> bool {
    let forget = chrono::Duration::from_std(FORGET_AFTER).unwrap_or(chrono::Duration::hours(1));
    e.locked_until <= now && e.last + forget <= now
}

impl<K: std::hash::Hash + Eq + Clone> Counter<K> {
    fn locked(&self, k: &K, now: DateTime<Utc>) -> Option<Duration> {
        let map = self.map.lock().expect("throttle lock");
        let e = map.get(k)?;
        (e.locked_until > now).then(|| (e.locked_until - now).to_std().unwrap_or_default())
    }

    fn failed(&self, k: K, now: DateTime<Utc>) -> Option<Duration> {
        let mut map = self.map.lock().expect("throttle lock");
        if !map.contains_key(&k) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, e| !forgotten(e, now));
            if map.len() >= MAX_ADDRESSES {
                if let Some(stalest) = map
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&stalest);
                }
            }
        }
        let e = map.entry(k).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: now,
        });
        if forgotten(e, now) {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        let lock = lock_for(e.failures);
        if lock.is_zero() {
            return None;
        }
        e.locked_until = now + chrono::Duration::from_std(lock).unwrap_or_default();
        Some(lock)
    }

    fn succeeded(&self, k: &K) {
        self.map.lock().expect("throttle lock").remove(k);
    }

    fn len(&self) -> usize {
        self.map.lock().expect("throttle lock").len()
    }
}

/// The key a user name is counted under (case and surrounding space do not make a new one).
fn user_key(name: &str) -> String {
    name.trim().to_lowercase()
}

impl LoginThrottle {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long `ip` must still wait before it may try again (None: it may try now).
    pub fn locked(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<Duration> {
        self.by_address.locked(&key(ip), now)
    }

    /// Counts a failure from `ip`; returns the lock-out it earned, if any.
    pub fn failed(&self, ip: IpAddr, now: DateTime<Utc>) -> Option<Duration> {
        self.by_address.failed(key(ip), now)
    }

    /// A success from `ip` clears its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        self.by_address.succeeded(&key(ip))
    }

    /// How long sign-ins as `name` must still wait (None: they may be tried now).
    pub fn user_locked(&self, name: &str, now: DateTime<Utc>) -> Option<Duration> {
        self.by_user.locked(&user_key(name), now)
    }

    /// Counts a failed sign-in as `name` (from any address); the lock-out it earned.
    pub fn user_failed(&self, name: &str, now: DateTime<Utc>) -> Option<Duration> {
        self.by_user.failed(user_key(name), now)
    }

    /// A successful sign-in as `name` clears its failures.
    pub fn user_succeeded(&self, name: &str) {
        self.by_user.succeeded(&user_key(name))
    }

    /// Addresses remembered (for tests).
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Seconds for a `Retry-After` header: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    #[test]
    fn free_failures_then_a_doubling_lock_capped() {
        assert_eq!(lock_for(1), Duration::ZERO);
        assert_eq!(lock_for(FREE_FAILURES), Duration::ZERO);
        assert_eq!(lock_for(FREE_FAILURES + 1), Duration::from_secs(2));
        assert_eq!(lock_for(FREE_FAILURES + 2), Duration::from_secs(4));
        assert_eq!(lock_for(FREE_FAILURES + 40), MAX_LOCK);
        assert_eq!(lock_for(u32::MAX), MAX_LOCK);
    }

    #[test]
    fn an_address_is_locked_after_its_free_failures_and_cleared_by_a_success() {
        let th = LoginThrottle::new();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let now = t0();
        for _ in 0..FREE_FAILURES {
            assert_eq!(th.failed(ip, now), None);
            assert_eq!(th.locked(ip, now), None);
        }
        assert_eq!(th.failed(ip, now), Some(Duration::from_secs(2)));
        assert_eq!(th.locked(ip, now), Some(Duration::from_secs(2)));
        assert_eq!(th.locked(other, now), None, "only that address");
        let later = now + chrono::Duration::seconds(2);
        assert_eq!(th.locked(ip, later), None);
        assert_eq!(th.failed(ip, later), Some(Duration::from_secs(4)));
        th.succeeded(ip);
        assert_eq!(th.locked(ip, later), None);
        assert_eq!(th.failed(ip, later), None, "counting starts again");
    }

    #[test]
    fn failures_are_forgotten_after_an_hour_and_v6_counts_by_slash_64() {
        let th = LoginThrottle::new();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let now = t0();
        for _ in 0..FREE_FAILURES {
            th.failed(a, now);
        }
        assert!(th.failed(b, now).is_some(), "same /64, same count");
        let much_later = now + chrono::Duration::hours(2);
        assert_eq!(th.failed(a, much_later), None, "forgotten after an hour");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(key(mapped), key(v4));
    }

    #[test]
    fn memory_is_bounded() {
        let th = LoginThrottle::new();
        let now = t0();
        for i in 0..(MAX_ADDRESSES as u32 + 500) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            th.failed(ip, now + chrono::Duration::milliseconds(i.into()));
        }
        assert_eq!(th.len(), MAX_ADDRESSES);
        // The newest are kept, the stalest went first.
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 + MAX_ADDRESSES as u32 + 499,
        ));
        assert!(th.by_address.map.lock().unwrap().contains_key(&newest));
        let first = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000));
        assert!(!th.by_address.map.lock().unwrap().contains_key(&first));
    }

    #[test]
    fn a_user_name_is_locked_from_every_address_and_apart_from_them() {
        let th = LoginThrottle::new();
        let now = t0();
        for _ in 0..FREE_FAILURES {
            assert_eq!(th.user_failed("Mai", now), None);
        }
        assert_eq!(th.user_failed(" mai ", now), Some(Duration::from_secs(2)));
        assert_eq!(th.user_locked("MAI", now), Some(Duration::from_secs(2)));
        assert_eq!(th.user_locked("li", now), None, "only that name");
        assert!(th.is_empty(), "no address was counted");
        th.user_succeeded("mai");
        assert_eq!(th.user_locked("mai", now), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
