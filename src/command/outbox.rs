//! The results outbox: command results on their way to the broker.
//!
//! Bounded, drained by its own task, retried until delivered, never dropped:
//!
//! - **Room is reserved before a result exists.** The dispatcher reserves a command's results
//!   ([`Outbox::try_reserve`]) when it proposes the claim that would make it their publisher
//!   (DELIVER: the SENT and the terminal result; EXPIRE, REJECT, SETTLE: one). Without room it
//!   does not propose now, which holds back deliveries and expiries (backpressure on whatever
//!   produces results) while the dispatcher goes on routing everything else. So a result, when
//!   it comes, always has its place, whatever the broker does meanwhile.
//! - **One task drains it**, in order (a command's SENT before its RESPONDED), in batches, and
//!   retries a batch the broker did not confirm, with a capped backoff, for as long as it
//!   takes: an outage of any length delays results, it does not lose them. The dispatcher never
//!   waits on the broker.
//! - **What a stopped process did not publish** is not lost either: its terminal results are in
//!   the log (COMPLETE claims), and another pod publishes them ([`super::ledger`], SETTLE).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::metrics as m;
use crate::proto::{CommandResult, CommandStatus, Protocol};
use crate::sink::{OutMessage, Publisher, Stream};

/// Results sent to the broker in one batch at most.
const MAX_BATCH: usize = 256;
/// The longest pause between two attempts while the broker does not confirm.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Room for results, taken before the results exist.
#[derive(Debug)]
pub struct Reservation(OwnedSemaphorePermit);

impl Reservation {
    /// Results it still has room for.
    pub fn len(&self) -> usize {
        self.0.num_permits()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Queued {
    result: CommandResult,
    /// The room it occupies (none when it came without a reservation).
    _room: Option<OwnedSemaphorePermit>,
}

/// A result the broker confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmed {
    pub command_id: String,
    pub terminal: bool,
}

/// The outbox's queue and its bound.
pub struct Outbox {
    queue: Mutex<VecDeque<Queued>>,
    room: Arc<Semaphore>,
    capacity: usize,
    ready: Notify,
}

impl Outbox {
    pub fn new(capacity: usize) -> Arc<Outbox> {
        let capacity = capacity.clamp(2, Semaphore::MAX_PERMITS);
        Arc::new(Outbox {
            queue: Mutex::new(VecDeque::new()),
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            ready: Notify::new(),
        })
    }

    /// Room for `n` results, if there is that much.
    pub fn try_reserve(&self, n: u32) -> Option<Reservation> {
        let r = self
            .room
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(Reservation);
        metrics::gauge!(m::COMMAND_OUTBOX).set(self.used() as f64);
        r
    }

    /// Queues a result in room taken from `reservation`. A result without room (a path that
    /// reserved nothing) is queued all the same, over the bound: a result is never dropped.
    pub fn push(&self, result: CommandResult, reservation: Option<&mut Reservation>) {
        let room = reservation.and_then(|r| r.0.split(1));
        if room.is_none() {
            debug!(command_id = %result.command_id, "command result queued without reserved room");
        }
        self.lock().push_back(Queued {
            result,
            _room: room,
        });
        metrics::gauge!(m::COMMAND_OUTBOX).set(self.used() as f64);
        self.ready.notify_one();
    }

    /// Results queued, not yet confirmed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room taken: queued results and reservations.
    pub fn used(&self) -> usize {
        self.capacity - self.room.available_permits()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn front(&self, n: usize) -> Vec<CommandResult> {
        self.lock()
            .iter()
            .take(n)
            .map(|q| q.result.clone())
            .collect()
    }

    fn pop(&self, n: usize) {
        let mut q = self.lock();
        let n = n.min(q.len());
        q.drain(..n);
        drop(q);
        metrics::gauge!(m::COMMAND_OUTBOX).set(self.used() as f64);
    }
}

/// The outbox's task: publishes queued results in order until `stop`, reporting each
/// confirmed one on `confirmed`.
pub async fn run(
    outbox: Arc<Outbox>,
    publisher: Arc<Publisher>,
    confirmed: mpsc::Sender<Vec<Confirmed>>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    let mut failures = 0u64;
    loop {
        let notified = outbox.ready.notified();
        let batch = outbox.front(MAX_BATCH);
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = notified => continue,
            }
        }
        let messages: std::sync::Arc<[OutMessage]> = batch
            .iter()
            .map(|r| OutMessage {
                stream: Stream::CommandResults,
                key: r.imei.as_str().into(),
                payload: publisher.format().encode_result(r),
                protocol: Protocol::Unspecified,
            })
            .collect();
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = publisher.send(messages) => r,
        };
        match sent {
            Ok(()) => {
                if failures > 0 {
                    debug!(failures, "command results delivered again");
                }
                failures = 0;
                backoff = Duration::from_millis(200);
                outbox.pop(batch.len());
                let done: Vec<Confirmed> = batch
                    .iter()
                    .map(|r| {
                        metrics::counter!(m::COMMANDS, "status" => status_label(r.status))
                            .increment(1);
                        Confirmed {
                            command_id: r.command_id.clone(),
                            terminal: r.terminal,
                        }
                    })
                    .collect();
                if confirmed.send(done).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                failures += 1;
                metrics::counter!(m::COMMAND_OUTBOX_RETRIES).increment(1);
                // Once, then every tenth failure: an outage must not flood the log.
                if failures == 1 || failures % 10 == 0 {
                    warn!(error = %e, results = batch.len(), failures, "command results not delivered; retrying until they are");
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The metric label of a result status: `sent`, `responded`, `expired`, `rejected`.
pub fn status_label(status: i32) -> &'static str {
    match CommandStatus::try_from(status).unwrap_or(CommandStatus::Unspecified) {
        CommandStatus::Sent => "sent",
        CommandStatus::Responded => "responded",
        CommandStatus::Expired => "expired",
        CommandStatus::Rejected => "rejected",
        CommandStatus::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Delivery, Format, InFlightLimits, Sink, SinkError};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A broker that refuses everything while `down`, and records what it took.
    struct Flaky {
        down: AtomicBool,
        took: Mutex<Vec<OutMessage>>,
    }

    impl Sink for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn send(&self, messages: std::sync::Arc<[OutMessage]>) -> Delivery {
            let ok = !self.down.load(Ordering::SeqCst);
            if ok {
                self.took.lock().unwrap().extend(messages.iter().cloned());
            }
            Box::pin(async move {
                if ok {
                    Ok(())
                } else {
                    Err(SinkError::Rejected("down".into()))
                }
            })
        }
        fn is_connected(&self) -> bool {
            true
        }
    }

    fn result(id: &str, terminal: bool) -> CommandResult {
        CommandResult {
            command_id: id.into(),
            imei: "1".into(),
            status: CommandStatus::Responded as i32,
            terminal,
            ..Default::default()
        }
    }

    #[test]
    fn room_is_bounded_and_comes_back_with_what_it_held() {
        let o = Outbox::new(4);
        let mut a = o.try_reserve(2).unwrap();
        let b = o.try_reserve(2).unwrap();
        assert!(o.try_reserve(1).is_none(), "full");
        o.push(result("a", false), Some(&mut a));
        assert_eq!((a.len(), o.len(), o.used()), (1, 1, 4));
        drop(a);
        assert_eq!(o.used(), 3, "unused room goes back");
        drop(b);
        assert_eq!(o.used(), 1, "the queued result keeps its room");
        o.pop(1);
        assert_eq!(o.used(), 0);
        // Without a reservation: queued over the bound, not dropped.
        let _all = o.try_reserve(4).unwrap();
        o.push(result("x", true), None);
        assert_eq!(o.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broker_outage_delays_results_in_order_and_loses_none() {
        let sink = Arc::new(Flaky {
            down: AtomicBool::new(true),
            took: Mutex::new(Vec::new()),
        });
        let publisher = Arc::new(Publisher::new(
            sink.clone(),
            Format::Protobuf,
            InFlightLimits {
                max_records: 100,
                max_bytes: 1 << 20,
                delivery_timeout: Duration::from_secs(30),
            },
        ));
        let o = Outbox::new(16);
        let (tx, mut rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(o.clone(), publisher, tx, stop.clone()));
        let mut r = o.try_reserve(3).unwrap();
        o.push(result("a", false), Some(&mut r));
        o.push(result("a", true), Some(&mut r));
        o.push(result("b", true), Some(&mut r));
        // Ten minutes of outage: retried all along, nothing confirmed, nothing lost.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(o.len(), 3);
        sink.down.store(false, Ordering::SeqCst);
        let done = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            done,
            vec![
                Confirmed {
                    command_id: "a".into(),
                    terminal: false
                },
                Confirmed {
                    command_id: "a".into(),
                    terminal: true
                },
                Confirmed {
                    command_id: "b".into(),
                    terminal: true
                },
            ]
        );
        assert_eq!(sink.took.lock().unwrap().len(), 3, "each delivered once");
        assert!(o.is_empty());
        assert_eq!(o.used(), 0);
        stop.cancel();
        task.await.unwrap();
    }
}
