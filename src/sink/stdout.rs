//! `--sink stdout`: one canonical-JSON `TelemetryEvent` per line, for debugging and piping.
//! A record counts as delivered once its line is written and flushed.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Delivery, OutMessage, Sink, SinkError};

pub struct StdoutSink {
    out: Arc<Mutex<tokio::io::Stdout>>,
}

impl StdoutSink {
    pub fn new() -> Self {
        StdoutSink {
            out: Arc::new(Mutex::new(tokio::io::stdout())),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn send(&self, messages: Arc<[OutMessage]>) -> Delivery {
        let out = self.out.clone();
        Box::pin(async move {
            let mut buf = Vec::with_capacity(messages.iter().map(|m| m.payload.len() + 1).sum());
            for m in messages.iter() {
                buf.extend_from_slice(&m.payload);
                buf.push(b'\n');
            }
            let mut out = out.lock().await;
            out.write_all(&buf).await.map_err(|_| SinkError::Closed)?;
            out.flush().await.map_err(|_| SinkError::Closed)
        })
    }

    fn is_connected(&self) -> bool {
        true
    }
}
