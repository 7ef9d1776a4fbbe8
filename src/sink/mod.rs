//! Where events go. Every sink sits behind one seam: [`Sink::send`] hands encoded messages to
//! a broker and returns a future that resolves only when the broker confirmed **every** one of
//! them (Kafka delivery report, MQTT PUBACK, a flushed write for stdout). The session layer
//! replies to a device only after that future resolved `Ok`.
//!
//! [`Publisher`] wraps a sink with what is common to all: encoding (protobuf or canonical
//! JSON), a bound on records and bytes in flight (when reached, sessions wait — and so stop
//! reading their sockets — instead of buffering), and a delivery deadline.

pub mod embedded;
pub mod kafka;
pub mod memory;
pub mod mqtt;
pub mod stdout;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::metrics as m;
use crate::proto::{Protocol, TelemetryEvent};

/// The future a sink returns for a batch.
pub type Delivery = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'static>>;

/// Which logical stream a message belongs to; each sink maps it to a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `TelemetryEvent`s.
    Events,
    /// `CommandResult`s.
    CommandResults,
}

/// One encoded record on its way to a broker.
#[derive(Debug, Clone)]
pub struct OutMessage {
    pub stream: Stream,
    /// Partitioning key: the device's IMEI (shared by a frame's records).
    pub key: Arc<str>,
    pub payload: Bytes,
    pub protocol: Protocol,
}

/// Why a batch was not confirmed. None of these are acknowledged to the device.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SinkError {
    #[error("the broker did not confirm delivery within {0:?}")]
    Timeout(Duration),
    #[error("the broker connection was lost before delivery was confirmed")]
    Disconnected,
    #[error("the broker rejected the record: {0}")]
    Rejected(String),
    #[error("the sink is shut down")]
    Closed,
}

impl SinkError {
    pub fn label(&self) -> &'static str {
        match self {
            SinkError::Timeout(_) => "timeout",
            SinkError::Disconnected => "disconnected",
            SinkError::Rejected(_) => "rejected",
            SinkError::Closed => "closed",
        }
    }
}

/// A broker connection with ack-after-delivery semantics.
pub trait Sink: Send + Sync + 'static {
    /// Short name for logs and metric labels.
    fn name(&self) -> &'static str;
    /// Hands `messages` to the broker. The future resolves `Ok` once the broker confirmed all.
    /// Shared, not owned: a batch resent after a lost connection is the same batch (no copy
    /// per attempt).
    fn send(&self, messages: Arc<[OutMessage]>) -> Delivery;
    /// Whether the sink reaches its broker now.
    fn is_connected(&self) -> bool;
    /// Whether the sink can deliver now (readiness), else why not. Sinks that know more than
    /// "connected" (a stalled broker, a client being rebuilt) say so.
    fn ready(&self) -> Result<(), &'static str> {
        if self.is_connected() {
            Ok(())
        } else {
            Err("the sink is not connected to its broker")
        }
    }
    /// Pushes out whatever the client still buffers, within `deadline` (on shutdown, after
    /// the sessions drained). Sinks that buffer nothing have nothing to do.
    fn flush(&self, deadline: Duration) -> Delivery {
        let _ = deadline;
        Box::pin(async { Ok(()) })
    }
}

/// Payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Binary protobuf `TelemetryEvent`.
    Protobuf,
    /// Proto3 canonical JSON.
    Json,
}

/// Protobuf bytes of a message, written into a buffer of exactly its length.
///
/// `prost::Message::encode_to_vec` writes into a `Vec`, whose `BufMut` appends every varint
/// byte through `extend_from_slice` (a capacity check and a copy per byte); a slice of the
/// final length takes plain stores. On the whole path (15-record Codec 8E frames) this halved
/// the encoding's instructions (docs/performance.md). `encode_raw` is prost's own
/// length-unchecked entry point; the length was computed just before, so it cannot overflow.
pub fn encode_protobuf<M: prost::Message>(m: &M) -> Vec<u8> {
    let len = m.encoded_len();
    let mut out = vec![0u8; len];
    let mut slice: &mut [u8] = &mut out;
    m.encode_raw(&mut slice);
    debug_assert!(slice.is_empty(), "encoded_len and encode_raw disagree");
    out
}

impl Format {
    pub fn encode_event(self, e: &TelemetryEvent) -> Bytes {
        match self {
            Format::Protobuf => crate::event::encode::encode_event_bytes(e),
            // Serializing a generated message cannot fail: every field is plain data.
            Format::Json => serde_json::to_vec(e).unwrap_or_default().into(),
        }
    }

    pub fn encode_result(self, r: &crate::proto::CommandResult) -> Bytes {
        match self {
            Format::Protobuf => encode_protobuf(r).into(),
            Format::Json => serde_json::to_vec(r).unwrap_or_default().into(),
        }
    }
}

/// Bounds on what may be in flight to the broker at once.
#[derive(Debug, Clone)]
pub struct InFlightLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    /// A batch not confirmed within this is failed (not acknowledged to the device).
    pub delivery_timeout: Duration,
}

/// The sink plus encoding, in-flight bounds and the delivery deadline.
pub struct Publisher {
    sink: Arc<dyn Sink>,
    format: Format,
    records: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    limits: InFlightLimits,
    /// Woken whenever in-flight records are released (see [`Publisher::wait_for_room`]).
    room: tokio::sync::Notify,
}

impl Publisher {
    pub fn new(sink: Arc<dyn Sink>, format: Format, limits: InFlightLimits) -> Self {
        let max_records = limits.max_records.clamp(1, Semaphore::MAX_PERMITS);
        let max_bytes = limits.max_bytes.clamp(1, Semaphore::MAX_PERMITS);
        Publisher {
            sink,
            format,
            records: Arc::new(Semaphore::new(max_records)),
            bytes: Arc::new(Semaphore::new(max_bytes)),
            limits: InFlightLimits {
                max_records,
                max_bytes,
                ..limits
            },
            room: tokio::sync::Notify::new(),
        }
    }

    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.sink
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Records in flight now.
    pub fn in_flight_records(&self) -> usize {
        self.limits.max_records - self.records.available_permits()
    }

    /// True when the in-flight bound is reached (new frames wait).
    pub fn saturated(&self) -> bool {
        self.records.available_permits() == 0
            || self.bytes.available_permits() < self.limits.max_bytes / 64
    }

    /// Waits until the in-flight bound has room. Sessions call this **before decoding** the
    /// next frame they have read, and read nothing more meanwhile: while the broker is slow or
    /// away, the data stays raw (and in the devices and the kernel's socket buffers) instead of
    /// being decoded and encoded into memory.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            if !self.saturated() {
                return;
            }
            // Woken when a batch completes; the timeout re-checks in case room came back
            // another way (a waiter that gave up its partial permits).
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }

    /// Publishes a frame's events and waits until the broker confirmed all of them. Waits
    /// first for room under the in-flight bounds: that wait is the backpressure that stops
    /// sessions from reading their sockets while the broker is slow or away.
    pub async fn publish(&self, events: &[TelemetryEvent]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        // A frame's events are one device's: one key for all of them.
        let mut key: Arc<str> = Arc::from(events[0].imei.as_str());
        let messages: Arc<[OutMessage]> = events
            .iter()
            .map(|e| OutMessage {
                stream: Stream::Events,
                key: if *key == *e.imei {
                    key.clone()
                } else {
                    key = Arc::from(e.imei.as_str());
                    key.clone()
                },
                payload: self.format.encode_event(e),
                protocol: Protocol::try_from(e.protocol).unwrap_or(Protocol::Unspecified),
            })
            .collect();
        self.send(messages).await
    }

    /// Sends already-encoded messages under the same bounds and deadline.
    pub async fn send(&self, messages: Arc<[OutMessage]>) -> Result<(), SinkError> {
        let n = messages.len().clamp(1, self.limits.max_records);
        let size: usize = messages.iter().map(|m| m.payload.len()).sum();
        let size = size.clamp(1, self.limits.max_bytes);
        let deadline = self.limits.delivery_timeout;
        let permits = async {
            let r = self.records.clone().acquire_many_owned(n as u32).await;
            let b = self.bytes.clone().acquire_many_owned(size as u32).await;
            r.ok().zip(b.ok())
        };
        // Waiting for room counts against the delivery deadline too: a device must not wait
        // for its ACK longer than that.
        let started = Instant::now();
        let Ok(Some(permits)) = tokio::time::timeout(deadline, permits).await else {
            self.room.notify_waiters();
            return self.failed(SinkError::Timeout(deadline));
        };
        metrics::gauge!(m::SINK_IN_FLIGHT_RECORDS).increment(n as f64);
        metrics::gauge!(m::SINK_IN_FLIGHT_BYTES).increment(size as f64);
        let result = self.send_with_retry(messages, started, deadline).await;
        drop(permits);
        self.room.notify_waiters();
        metrics::gauge!(m::SINK_IN_FLIGHT_RECORDS).decrement(n as f64);
        metrics::gauge!(m::SINK_IN_FLIGHT_BYTES).decrement(size as f64);
        match result {
            Ok(()) => {
                metrics::histogram!(m::SINK_DELIVERY_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!(m::SINK_DELIVERED, "sink" => self.sink.name())
                    .increment(n as u64);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    /// Sends, and resends after a lost connection until the deadline: a broker blip must not
    /// disconnect every device. A resend may duplicate records the broker had already taken
    /// (at-least-once; consumers drop duplicates by `event_id`).
    async fn send_with_retry(
        &self,
        messages: Arc<[OutMessage]>,
        started: Instant,
        deadline: Duration,
    ) -> Result<(), SinkError> {
        let mut backoff = Duration::from_millis(50);
        loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            let attempt =
                match tokio::time::timeout(remaining, self.sink.send(messages.clone())).await {
                    Ok(r) => r,
                    Err(_) => return Err(SinkError::Timeout(deadline)),
                };
            match attempt {
                Err(SinkError::Disconnected) if started.elapsed() + backoff < deadline => {
                    metrics::counter!(m::SINK_ERRORS, "sink" => self.sink.name(), "reason" => "disconnected_retried").increment(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    fn failed(&self, e: SinkError) -> Result<(), SinkError> {
        metrics::counter!(m::SINK_ERRORS, "sink" => self.sink.name(), "reason" => e.label())
            .increment(1);
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    /// A sink that holds every batch until released.
    struct Gate {
        open: Arc<Notify>,
        sent: AtomicUsize,
    }

    impl Sink for Gate {
        fn name(&self) -> &'static str {
            "gate"
        }
        fn send(&self, messages: Arc<[OutMessage]>) -> Delivery {
            self.sent.fetch_add(messages.len(), Ordering::SeqCst);
            let open = self.open.clone();
            Box::pin(async move {
                open.notified().await;
                Ok(())
            })
        }
        fn is_connected(&self) -> bool {
            true
        }
    }

    fn event() -> TelemetryEvent {
        TelemetryEvent {
            imei: "1".into(),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bound_makes_publishers_wait_and_a_stuck_broker_times_out() {
        let gate = Arc::new(Gate {
            open: Arc::new(Notify::new()),
            sent: AtomicUsize::new(0),
        });
        let p = Arc::new(Publisher::new(
            gate.clone(),
            Format::Protobuf,
            InFlightLimits {
                max_records: 2,
                max_bytes: 1 << 20,
                delivery_timeout: Duration::from_secs(30),
            },
        ));
        let p1 = p.clone();
        let first = tokio::spawn(async move { p1.publish(&[event(), event()]).await });
        tokio::task::yield_now().await;
        assert!(p.saturated());
        assert_eq!(p.in_flight_records(), 2);
        let p2 = p.clone();
        let second = tokio::spawn(async move { p2.publish(&[event()]).await });
        tokio::task::yield_now().await;
        // The second batch is waiting for room: not handed to the sink.
        assert_eq!(gate.sent.load(Ordering::SeqCst), 2);
        gate.open.notify_one();
        assert_eq!(first.await.unwrap(), Ok(()));
        tokio::task::yield_now().await;
        assert_eq!(gate.sent.load(Ordering::SeqCst), 3);
        // Nobody opens the gate again: the deadline fails the batch.
        assert_eq!(
            second.await.unwrap(),
            Err(SinkError::Timeout(Duration::from_secs(30)))
        );
        assert_eq!(p.in_flight_records(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_wait_for_room_before_reading_and_are_woken_when_it_comes() {
        let gate = Arc::new(Gate {
            open: Arc::new(Notify::new()),
            sent: AtomicUsize::new(0),
        });
        let p = Arc::new(Publisher::new(
            gate.clone(),
            Format::Protobuf,
            InFlightLimits {
                max_records: 1,
                max_bytes: 1 << 20,
                delivery_timeout: Duration::from_secs(30),
            },
        ));
        // Room: returns at once.
        p.wait_for_room().await;
        let p1 = p.clone();
        let first = tokio::spawn(async move { p1.publish(&[event()]).await });
        tokio::task::yield_now().await;
        assert!(p.saturated());
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait_for_room().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "no room while the bound is reached");
        gate.open.notify_one();
        assert_eq!(first.await.unwrap(), Ok(()));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken once the batch completed")
            .unwrap();
    }
}
