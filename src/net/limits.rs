//! Admission control for new TCP connections: a pod-wide cap on open connections, a cap per
//! source address, and a token bucket of new connections per source address.
//!
//! Built for a reconnect storm: [`ConnLimiter::admit`] is O(1) amortised, takes one short
//! mutex, allocates nothing for a refused connection, and the per-address table is bounded —
//! entries without open connections are forgotten once their bucket has refilled (they then
//! hold no information), and when the table is full the idle ones go first. The clock is passed
//! in, so the policy is tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The configured limits; 0 disables a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnLimits {
    /// Open TCP connections per pod.
    pub max_connections: usize,
    /// Open TCP connections per source address.
    pub max_connections_per_ip: u32,
    /// New connections per second per source address (the bucket holds as many: a burst of
    /// one second's worth is allowed).
    pub max_connect_rate_per_ip: u32,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: 200_000,
            max_connections_per_ip: 5_000,
            max_connect_rate_per_ip: 200,
        }
    }
}

/// Why a connection was refused; also the `reason` label of
/// [`crate::metrics::CONNECTIONS_REJECTED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MaxConnections,
    MaxConnectionsPerIp,
    ConnectRate,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MaxConnections => "max_connections",
            Rejection::MaxConnectionsPerIp => "max_connections_per_ip",
            Rejection::ConnectRate => "connect_rate",
        }
    }
}

/// Addresses tracked beyond those with open connections (which `max_connections` bounds).
const EXTRA_TRACKED: usize = 65_536;
/// How often idle entries are swept even when the table is not full.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Entry {
    open: u32,
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Table {
    entries: HashMap<IpAddr, Entry>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    limits: ConnLimits,
    open: AtomicUsize,
    table: Mutex<Table>,
    max_tracked: usize,
}

/// Shared by every accept loop of a gateway.
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

/// One admitted connection. Dropping it gives its slots back.
#[derive(Debug)]
pub struct ConnPermit {
    inner: Arc<Inner>,
    ip: Option<IpAddr>,
}

impl ConnLimiter {
    pub fn new(limits: ConnLimits) -> Self {
        let max_tracked = limits.max_connections.max(1024) + EXTRA_TRACKED;
        ConnLimiter {
            inner: Arc::new(Inner {
                limits,
                open: AtomicUsize::new(0),
                table: Mutex::new(Table {
                    entries: HashMap::new(),
                    last_sweep: None,
                }),
                max_tracked,
            }),
        }
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.inner.limits
    }

    /// Open connections admitted and not yet dropped.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Source addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.inner.lock().entries.len()
    }

    /// Admits a connection against the pod-wide cap and, when `ip` is known, the per-address
    /// limits. With PROXY protocol the real address is known only after the header: admit with
    /// `None`, then [`ConnPermit::bind_ip`].
    pub fn admit(&self, ip: Option<IpAddr>, now: Instant) -> Result<ConnPermit, Rejection> {
        let max = self.inner.limits.max_connections;
        let before = self.inner.open.fetch_add(1, Ordering::AcqRel);
        // Built before the checks so that its Drop undoes the increment on every refusal.
        let mut permit = ConnPermit {
            inner: self.inner.clone(),
            ip: None,
        };
        if max != 0 && before >= max {
            return Err(Rejection::MaxConnections);
        }
        if let Some(ip) = ip {
            permit.bind_ip(ip, now)?;
        }
        Ok(permit)
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table holds counters only; a panic elsewhere cannot leave it inconsistent.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rate(&self) -> f64 {
        f64::from(self.limits.max_connect_rate_per_ip)
    }

    /// Nothing is lost by forgetting an entry with no open connection whose bucket is full.
    fn forgettable(&self, e: &Entry, now: Instant) -> bool {
        e.open == 0 && (self.rate() == 0.0 || self.refilled(e, now) >= self.rate())
    }

    fn refilled(&self, e: &Entry, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(e.last).as_secs_f64();
        (e.tokens + elapsed * self.rate()).min(self.rate())
    }

    fn sweep(&self, t: &mut Table, now: Instant) {
        t.entries.retain(|_, e| !self.forgettable(e, now));
        if t.entries.len() >= self.max_tracked {
            // Still full of recently refused or recently closed addresses: their rate
            // history goes (they start again with a full bucket); open counts stay.
            t.entries.retain(|_, e| e.open > 0);
        }
        t.last_sweep = Some(now);
    }
}

impl ConnPermit {
    /// Charges the per-address limits to `ip`. A permit is bound at most once.
    pub fn bind_ip(&mut self, ip: IpAddr, now: Instant) -> Result<(), Rejection> {
        if self.ip.is_some() {
            return Ok(());
        }
        let inner = &self.inner;
        let per_ip = inner.limits.max_connections_per_ip;
        let rate = inner.rate();
        if per_ip == 0 && rate == 0.0 {
            return Ok(());
        }
        let mut t = inner.lock();
        let due = t
            .last_sweep
            .is_none_or(|s| now.saturating_duration_since(s) >= SWEEP_EVERY);
        if due || (t.entries.len() >= inner.max_tracked && !t.entries.contains_key(&ip)) {
            inner.sweep(&mut t, now);
        }
        let e = t.entries.entry(ip).or_insert(Entry {
            open: 0,
            tokens: rate,
            last: now,
        });
        if rate > 0.0 {
            e.tokens = inner.refilled(e, now);
            e.last = now;
            if e.tokens < 1.0 {
                return Err(Rejection::ConnectRate);
            }
        }
        if per_ip != 0 && e.open >= per_ip {
            return Err(Rejection::MaxConnectionsPerIp);
        }
        e.tokens -= 1.0;
        e.open += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut t = self.inner.lock();
            if let Some(e) = t.entries.get_mut(&ip) {
                e.open = e.open.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000u32.wrapping_add(n)))
    }

    fn limiter(max: usize, per_ip: u32, rate: u32) -> ConnLimiter {
        ConnLimiter::new(ConnLimits {
            max_connections: max,
            max_connections_per_ip: per_ip,
            max_connect_rate_per_ip: rate,
        })
    }

    #[test]
    fn pod_cap_refuses_beyond_max_and_frees_on_drop() {
        let l = limiter(3, 0, 0);
        let t = Instant::now();
        let held: Vec<_> = (0..3).map(|i| l.admit(Some(ip(i)), t).unwrap()).collect();
        assert_eq!(
            l.admit(Some(ip(9)), t).unwrap_err(),
            Rejection::MaxConnections
        );
        assert_eq!(l.open(), 3, "a refusal leaves the count unchanged");
        drop(held);
        assert_eq!(l.open(), 0);
        assert!(l.admit(None, t).is_ok());
    }

    #[test]
    fn per_ip_cap_counts_open_connections_of_one_address() {
        let l = limiter(0, 2, 0);
        let t = Instant::now();
        let a = l.admit(Some(ip(1)), t).unwrap();
        let _b = l.admit(Some(ip(1)), t).unwrap();
        assert_eq!(
            l.admit(Some(ip(1)), t).unwrap_err(),
            Rejection::MaxConnectionsPerIp
        );
        // Another address is not affected.
        let _c = l.admit(Some(ip(2)), t).unwrap();
        drop(a);
        assert!(l.admit(Some(ip(1)), t).is_ok());
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let l = limiter(0, 0, 10);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.admit(Some(ip(1)), t0).is_ok(), "burst {i}");
        }
        assert_eq!(
            l.admit(Some(ip(1)), t0).unwrap_err(),
            Rejection::ConnectRate
        );
        // A refused attempt costs nothing: 100 ms later one token is there.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.admit(Some(ip(1)), t1).is_ok());
        assert_eq!(
            l.admit(Some(ip(1)), t1).unwrap_err(),
            Rejection::ConnectRate
        );
        // The bucket never holds more than one second's worth.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(l.admit(Some(ip(1)), t2).is_ok());
        }
        assert!(l.admit(Some(ip(1)), t2).is_err());
        // Other addresses have their own bucket.
        assert!(l.admit(Some(ip(2)), t2).is_ok());
    }

    #[test]
    fn bind_ip_later_applies_the_same_limits() {
        let l = limiter(0, 1, 0);
        let t = Instant::now();
        let mut a = l.admit(None, t).unwrap();
        a.bind_ip(ip(5), t).unwrap();
        let mut b = l.admit(None, t).unwrap();
        assert_eq!(
            b.bind_ip(ip(5), t).unwrap_err(),
            Rejection::MaxConnectionsPerIp
        );
        assert_eq!(l.open(), 2, "b is still a pod-level permit until dropped");
        drop(b);
        drop(a);
        assert_eq!(l.open(), 0);
        assert!(l.admit(Some(ip(5)), t).is_ok());
    }

    #[test]
    fn idle_entries_expire_and_the_table_stays_bounded() {
        let l = limiter(10, 0, 5);
        let t0 = Instant::now();
        // A storm from many addresses, each connecting once and leaving.
        for i in 0..(l.inner.max_tracked as u32 * 2) {
            drop(l.admit(Some(ip(i)), t0).unwrap());
        }
        assert!(l.tracked() <= l.inner.max_tracked, "{}", l.tracked());
        // After the buckets refilled and a sweep ran, nothing idle is remembered.
        let later = t0 + SWEEP_EVERY + Duration::from_secs(1);
        let _held = l.admit(Some(ip(u32::MAX - 1)), later).unwrap();
        assert_eq!(l.tracked(), 1);
    }

    #[test]
    fn a_full_table_keeps_addresses_with_open_connections() {
        let l = limiter(2, 0, 1);
        let t = Instant::now();
        let held = l.admit(Some(ip(0)), t).unwrap();
        for i in 1..(l.inner.max_tracked as u32 + 10) {
            // Pod cap 2: each of these is admitted then dropped, leaving a drained bucket.
            drop(l.admit(Some(ip(i)), t).unwrap());
        }
        let t = l.inner.lock();
        assert!(t.entries.len() <= l.inner.max_tracked);
        assert_eq!(t.entries.get(&ip(0)).map(|e| e.open), Some(1));
        drop(t);
        drop(held);
    }
}
