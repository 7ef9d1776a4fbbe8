//! One live session per IMEI per pod. Trackers leave half-dead sockets behind when they lose
//! the network; when the device logs in again on a new connection, the old session is told to
//! end (its token is cancelled, its task stops at the next await and drops its socket) and the
//! new one takes its place.
//!
//! [`SessionHandle`] is what other parts of the gateway hold to reach a live session; it is a
//! plain struct so that new capabilities (a command channel) are one more field.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::proto::{Protocol, Transport};

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
    eviction: Arc<AtomicU8>,
}

impl SessionHandle {
    pub fn new(id: u64, protocol: Protocol, transport: Transport, peer: SocketAddr) -> Self {
        SessionHandle {
            id,
            protocol,
            transport,
            peer,
            cancel: CancellationToken::new(),
            eviction: Arc::new(AtomicU8::new(0)),
        }
    }

    /// Ends the session (it finishes the frame in hand first).
    pub fn evict(&self, why: Eviction) {
        let _ = self
            .eviction
            .compare_exchange(0, why as u8, Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }

    /// Why the session was evicted, if it was.
    pub fn eviction(&self) -> Option<Eviction> {
        match self.eviction.load(Ordering::Acquire) {
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
    /// that is the same session logging in again.
    pub fn register(&self, imei: &str, handle: SessionHandle) -> Option<SessionHandle> {
        let id = handle.id;
        let old = {
            let mut m = self.lock();
            let old = m.insert(imei.to_string(), handle);
            metrics::gauge!(crate::metrics::SESSIONS_REGISTERED).set(m.len() as f64);
            old
        }?;
        if old.id == id {
            return None;
        }
        old.evict(Eviction::Replaced);
        Some(old)
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

    /// Evicts every session whose IMEI `keep` refuses; returns how many.
    pub fn evict_unless(&self, keep: impl Fn(&str) -> bool, why: Eviction) -> usize {
        let m = self.lock();
        let mut n = 0;
        for (imei, h) in m.iter() {
            if !keep(imei) {
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

    #[test]
    fn a_second_login_replaces_and_cancels_the_first() {
        let r = Registry::new();
        let a = handle(&r);
        let b = handle(&r);
        assert!(r.register("1", a.clone()).is_none());
        let old = r.register("1", b.clone()).unwrap();
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
        r.register("1", a.clone());
        assert!(r.register("1", a.clone()).is_none());
        assert!(!a.cancel.is_cancelled());
    }

    #[test]
    fn evict_unless_revokes_only_the_refused() {
        let r = Registry::new();
        let (a, b) = (handle(&r), handle(&r));
        r.register("keep", a.clone());
        r.register("drop", b.clone());
        assert_eq!(r.evict_unless(|i| i == "keep", Eviction::Revoked), 1);
        assert!(!a.cancel.is_cancelled());
        assert_eq!(b.eviction(), Some(Eviction::Revoked));
    }
}
