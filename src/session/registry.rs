//! One live session per IMEI per pod. Trackers leave half-dead sockets behind when they lose
//! the network; when the device logs in again on a new connection, the old session is told to
//! end (its token is cancelled, its task stops at the next await and drops its socket) and the
//! new one takes its place.
//!
//! Whoever knows an IMEI can log in with it, so replacing the live session is a policy
//! ([`Takeover`]): always (devices behind carrier NAT reconnect from new addresses and leave
//! dead sockets behind), only when the live session has been silent for a while, or never
//! while it lives.
//!
//! [`SessionHandle`] is what other parts of the gateway hold to reach a live session; it is a
//! plain struct so that new capabilities (a command channel) are one more field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::proto::{Protocol, Transport};

/// When a new login of an IMEI may replace the IMEI's live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TakeoverPolicy {
    /// Always: the newest login wins (the old socket is usually dead already).
    #[default]
    Always,
    /// Only when the live session received nothing for the takeover idle time.
    Idle,
    /// Never while the live session lasts (it ends by closing or by its idle timeout).
    Never,
}

/// The configured policy and its idle time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    pub policy: TakeoverPolicy,
    /// For [`TakeoverPolicy::Idle`]: how long the live session must have been silent.
    pub idle: Duration,
}

impl Default for Takeover {
    fn default() -> Self {
        Takeover {
            policy: TakeoverPolicy::Always,
            idle: Duration::from_secs(120),
        }
    }
}

/// A login refused because the IMEI's live session may not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// The live session's address, and how long it has been silent.
    pub peer: SocketAddr,
    pub idle: Duration,
}

/// Milliseconds since the first call: activity stamps fit an atomic.
fn millis_since_start(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

/// Why a session was told to end from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Eviction {
    /// The same IMEI logged in on another connection.
    Replaced = 1,
    /// The IMEI was removed from the allow-list.
    Revoked = 2,
}

/// A live session, as the registry knows it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique per gateway process; tells two sessions of one IMEI apart.
    pub id: u64,
    pub protocol: Protocol,
    pub transport: Transport,
    pub peer: SocketAddr,
    /// Cancelled to end the session.
    pub cancel: CancellationToken,
    /// Why it was evicted and when it was last active: one allocation shared by the session
    /// and the registry.
    state: Arc<HandleState>,
}

#[derive(Debug)]
struct HandleState {
    /// [`Eviction`] as `u8`, 0 while not evicted.
    eviction: AtomicU8,
    /// When the session last received a frame ([`millis_since_start`]).
    active_at: AtomicU64,
}

impl SessionHandle {
    pub fn new(id: u64, protocol: Protocol, transport: Transport, peer: SocketAddr) -> Self {
        SessionHandle {
            id,
            protocol,
            transport,
            peer,
            cancel: CancellationToken::new(),
            state: Arc::new(HandleState {
                eviction: AtomicU8::new(0),
                active_at: AtomicU64::new(millis_since_start(Instant::now())),
            }),
        }
    }

    /// The session received a frame at `now`.
    pub fn touch(&self, now: Instant) {
        self.state
            .active_at
            .store(millis_since_start(now), Ordering::Relaxed);
    }

    /// How long the session has received nothing, at `now`.
    pub fn idle_for(&self, now: Instant) -> Duration {
        let last = self.state.active_at.load(Ordering::Relaxed);
        Duration::from_millis(millis_since_start(now).saturating_sub(last))
    }

    /// Ends the session (it finishes the frame in hand first).
    pub fn evict(&self, why: Eviction) {
        let _ =
            self.state
                .eviction
                .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }

    /// Why the session was evicted, if it was.
    pub fn eviction(&self) -> Option<Eviction> {
        match self.state.eviction.load(Ordering::Acquire) {
            1 => Some(Eviction::Replaced),
            2 => Some(Eviction::Revoked),
            _ => None,
        }
    }
}

/// IMEI → the live session.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, SessionHandle>>,
    next_id: AtomicU64,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh session id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `handle` the session of `imei` and evicts the one it replaces (returned), unless
    /// that is the same session logging in again. The policy may refuse: the live session
    /// stays and `Err` says why.
    pub fn register(
        &self,
        imei: &str,
        handle: SessionHandle,
        takeover: Takeover,
        now: Instant,
    ) -> Result<Option<SessionHandle>, Active> {
        let id = handle.id;
        let old = {
            let mut m = self.lock();
            if let Some(live) = m.get(imei).filter(|l| l.id != id) {
                // A session already told to end holds nothing worth protecting.
                let ending = live.cancel.is_cancelled();
                let idle = live.idle_for(now);
                let allowed = ending
                    || match takeover.policy {
                        TakeoverPolicy::Always => true,
                        TakeoverPolicy::Idle => idle >= takeover.idle,
                        TakeoverPolicy::Never => false,
                    };
                if !allowed {
                    return Err(Active {
                        peer: live.peer,
                        idle,
                    });
                }
            }
            let old = m.insert(imei.to_string(), handle);
            metrics::gauge!(crate::metrics::SESSIONS_REGISTERED).set(m.len() as f64);
            old
        };
        let Some(old) = old else {
            return Ok(None);
        };
        if old.id == id {
            return Ok(None);
        }
        old.evict(Eviction::Replaced);
        Ok(Some(old))
    }

    /// Forgets `imei` if its session is still `id` (a replaced session must not remove its
    /// successor).
    pub fn remove(&self, imei: &str, id: u64) {
        let mut m = self.lock();
        if m.get(imei).is_some_and(|h| h.id == id) {
            m.remove(imei);
            metrics::gauge!(crate::metrics::SESSIONS_REGISTERED).set(m.len() as f64);
        }
    }

    /// The live session of `imei`.
    pub fn get(&self, imei: &str) -> Option<SessionHandle> {
        self.lock().get(imei).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Evicts every session that `keep` refuses (given its IMEI and handle); returns how many.
    pub fn evict_unless(
        &self,
        keep: impl Fn(&str, &SessionHandle) -> bool,
        why: Eviction,
    ) -> usize {
        let m = self.lock();
        let mut n = 0;
        for (imei, h) in m.iter() {
            if !keep(imei, h) {
                h.evict(why);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(r: &Registry) -> SessionHandle {
        SessionHandle::new(
            r.next_id(),
            Protocol::Teltonika,
            Transport::Tcp,
            "127.0.0.1:1".parse().unwrap(),
        )
    }

    fn always() -> Takeover {
        Takeover::default()
    }

    #[test]
    fn a_second_login_replaces_and_cancels_the_first() {
        let r = Registry::new();
        let a = handle(&r);
        let b = handle(&r);
        let now = Instant::now();
        assert!(r.register("1", a.clone(), always(), now).unwrap().is_none());
        let old = r.register("1", b.clone(), always(), now).unwrap().unwrap();
        assert_eq!(old.id, a.id);
        assert!(a.cancel.is_cancelled());
        assert_eq!(a.eviction(), Some(Eviction::Replaced));
        assert!(!b.cancel.is_cancelled());
        assert_eq!(r.get("1").unwrap().id, b.id);
        // The replaced session ending does not remove its successor.
        r.remove("1", a.id);
        assert_eq!(r.get("1").unwrap().id, b.id);
        r.remove("1", b.id);
        assert!(r.get("1").is_none());
    }

    #[test]
    fn the_same_session_logging_in_again_is_not_evicted() {
        let r = Registry::new();
        let a = handle(&r);
        let now = Instant::now();
        for policy in [
            TakeoverPolicy::Always,
            TakeoverPolicy::Idle,
            TakeoverPolicy::Never,
        ] {
            let t = Takeover {
                policy,
                ..Default::default()
            };
            assert_eq!(
                r.register("1", a.clone(), t, now).map(|o| o.is_none()),
                Ok(true)
            );
        }
        assert!(!a.cancel.is_cancelled());
    }

    #[test]
    fn the_idle_policy_replaces_only_a_silent_session() {
        let r = Registry::new();
        let t = Takeover {
            policy: TakeoverPolicy::Idle,
            idle: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let a = handle(&r);
        a.touch(t0);
        r.register("1", a.clone(), t, t0).unwrap();
        // 59 s of silence: the live session stays, the newcomer is refused.
        let refused = r
            .register("1", handle(&r), t, t0 + Duration::from_secs(59))
            .unwrap_err();
        assert_eq!(refused.idle, Duration::from_secs(59));
        assert!(!a.cancel.is_cancelled());
        assert_eq!(r.get("1").unwrap().id, a.id);
        // A frame at 59 s restarts the clock; at 120 s it has been silent for 61 s.
        a.touch(t0 + Duration::from_secs(59));
        assert!(r
            .register("1", handle(&r), t, t0 + Duration::from_secs(100))
            .is_err());
        let b = handle(&r);
        let old = r
            .register("1", b.clone(), t, t0 + Duration::from_secs(120))
            .unwrap()
            .unwrap();
        assert_eq!(old.id, a.id);
        assert_eq!(a.eviction(), Some(Eviction::Replaced));
    }

    #[test]
    fn the_never_policy_waits_for_the_live_session_to_end() {
        let r = Registry::new();
        let t = Takeover {
            policy: TakeoverPolicy::Never,
            idle: Duration::ZERO,
        };
        let now = Instant::now();
        let a = handle(&r);
        r.register("1", a.clone(), t, now).unwrap();
        let later = now + Duration::from_secs(86_400);
        assert!(r.register("1", handle(&r), t, later).is_err());
        // Once it ends (or is being evicted, e.g. revoked), the next login gets the IMEI.
        a.evict(Eviction::Revoked);
        let b = handle(&r);
        assert!(r.register("1", b.clone(), t, later).is_ok());
        assert_eq!(r.get("1").unwrap().id, b.id);
        r.remove("1", b.id);
        assert!(r.register("1", handle(&r), t, later).unwrap().is_none());
    }

    #[test]
    fn evict_unless_revokes_only_the_refused() {
        let r = Registry::new();
        let (a, b) = (handle(&r), handle(&r));
        let now = Instant::now();
        r.register("keep", a.clone(), always(), now).unwrap();
        r.register("drop", b.clone(), always(), now).unwrap();
        assert_eq!(r.evict_unless(|i, _| i == "keep", Eviction::Revoked), 1);
        assert!(!a.cancel.is_cancelled());
        assert_eq!(b.eviction(), Some(Eviction::Revoked));
    }
}
