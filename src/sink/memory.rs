//! An in-process sink that keeps every message and confirms at once. `avlgate decode` runs
//! frames through the real session path into it; tests use it where no broker is the point.

use std::sync::{Arc, Mutex};

use super::{Delivery, OutMessage, Sink};

#[derive(Default, Clone)]
pub struct MemorySink {
    messages: Arc<Mutex<Vec<OutMessage>>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every message received so far.
    pub fn take(&self) -> Vec<OutMessage> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn send(&self, messages: Arc<[OutMessage]>) -> Delivery {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(messages.iter().cloned());
        Box::pin(async { Ok(()) })
    }

    fn is_connected(&self) -> bool {
        true
    }
}
