//! A way for a part of the gateway that can no longer work (a Kafka client that cannot be
//! rebuilt after a fatal error) to ask the process to stop: the gateway drains as on SIGTERM
//! and then exits non-zero, so the orchestrator restarts the pod and shows why.
//!
//! The first reason given wins; later requests only add a log line at the requester.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Cloned into every part that may give up; the gateway waits on it.
#[derive(Clone, Default)]
pub struct Abort {
    requested: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl Abort {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the process to drain and exit non-zero because of `reason`.
    pub fn request(&self, reason: impl Into<String>) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        drop(slot);
        self.requested.cancel();
    }

    /// Resolves once [`Abort::request`] was called.
    pub async fn requested(&self) {
        self.requested.cancelled().await
    }

    /// Why the process was asked to stop, if it was.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_waiters_wake() {
        let a = Abort::new();
        assert_eq!(a.reason(), None);
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.requested().await })
        };
        a.request("first");
        a.request("second");
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(a.reason().as_deref(), Some("first"));
    }
}
