//! One batch (a device frame's records) on its way through the producer, with one shared
//! account of its delivery reports.
//!
//! Every record handed to librdkafka carries the batch (an `Arc`, no allocation) as its
//! delivery opaque. The producer's callback thread settles each report into the batch, and the
//! batch's future is woken once, when the last report is in: no future, channel or wake-up per
//! record (docs/load-runs.md, fleet scale).
//!
//! A report names its record only by content, so the rare reports that send a record again
//! (purged from a dead producer's queue, or refused for the producer's identity) find it among
//! the batch's records still in flight with that producer by key and payload. Two records of a
//! batch with the same key and payload are the same bytes to the broker, so resending either
//! is the same.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::DeliveryResult;
use tokio::sync::Notify;
use tracing::debug;

use super::client::{self, Health, Outstanding};
use crate::sink::{OutMessage, SinkError};

/// A batch and the account of its reports. Shared by the sending future and every record of
/// it that is in a producer.
pub struct Batch {
    messages: Arc<[OutMessage]>,
    state: Mutex<State>,
    /// Woken when no record is in flight any more.
    settled: Notify,
}

struct State {
    /// Per record, what is known of it.
    records: Vec<Record>,
    /// Records handed to a producer whose report is not in.
    in_flight: usize,
    /// The batch's share of the producer's stall accounting.
    outstanding: Outstanding,
    /// The first failure: the batch is not confirmed.
    failed: Option<SinkError>,
    /// A producer generation found dead: its unsent records go to its successor.
    dead: Option<u64>,
}

/// One delivery report: `Err` with the error and the record's key and payload.
type Report<'a> = Result<(), (&'a KafkaError, Option<&'a [u8]>, Option<&'a [u8]>)>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Record {
    /// Not handed to a producer (yet, or again).
    Unsent,
    /// Handed to the producer of this generation (and maybe reported on since: a report
    /// that confirms or fails a record does not need to say which).
    InFlight(u64),
    /// Never written by a dead producer: to be sent again by its successor.
    Resend,
}

impl Batch {
    pub fn new(messages: Arc<[OutMessage]>, outstanding: Outstanding) -> Arc<Batch> {
        Arc::new(Batch {
            state: Mutex::new(State {
                records: vec![Record::Unsent; messages.len()],
                in_flight: 0,
                outstanding,
                failed: None,
                dead: None,
            }),
            messages,
            settled: Notify::new(),
        })
    }

    pub fn messages(&self) -> &[OutMessage] {
        &self.messages
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record `i` is about to be handed to the producer of `generation` (before the call: its
    /// report may come before the call returns).
    pub fn handing(&self, i: usize, generation: u64) {
        let mut s = self.lock();
        s.records[i] = Record::InFlight(generation);
        s.in_flight += 1;
    }

    /// The producer refused record `i`: it is not in flight.
    pub fn refused(&self, i: usize) {
        let mut s = self.lock();
        s.records[i] = Record::Unsent;
        s.in_flight -= 1;
    }

    /// Waits until every record handed over has its report. Then: `Err` if one failed, else
    /// the dead generation and the records to send again with its successor (in order), if
    /// any; `None` when the batch is confirmed.
    pub async fn reports(&self) -> Result<Option<(u64, VecDeque<usize>)>, SinkError> {
        loop {
            // Registered before the check: a report settling the batch in between stores a
            // permit that this wait then takes.
            let settled = self.settled.notified();
            {
                let mut s = self.lock();
                if s.in_flight == 0 {
                    if let Some(e) = s.failed.take() {
                        return Err(e);
                    }
                    let Some(generation) = s.dead.take() else {
                        return Ok(None);
                    };
                    let again = s
                        .records
                        .iter_mut()
                        .enumerate()
                        .filter(|(_, r)| **r == Record::Resend)
                        .map(|(i, r)| {
                            *r = Record::Unsent;
                            i
                        })
                        .collect();
                    return Ok(Some((generation, again)));
                }
            }
            settled.await;
        }
    }

    /// A delivery report from the producer of `generation` (its callback thread).
    pub fn report(&self, generation: u64, health: &Health, result: &DeliveryResult<'_>) {
        match result {
            Ok(_) => self.settle(generation, health, Ok(())),
            Err((e, m)) => self.settle(generation, health, Err((e, m.key(), m.payload()))),
        }
    }

    /// Settles one report: confirmed, or failed with the error and the record's key and
    /// payload.
    fn settle(&self, generation: u64, health: &Health, result: Report<'_>) {
        let mut s = self.lock();
        match result {
            Ok(_) => s.outstanding.confirmed(),
            Err((e, key, payload)) => {
                let code = e.rdkafka_error_code();
                let resend = match code {
                    // Purged from a dead producer's queue: never sent, so its successor may
                    // send it without any risk of a duplicate.
                    Some(RDKafkaErrorCode::PurgeQueue) => {
                        health.generation() != generation || health.failed()
                    }
                    // Refused by the broker because of the producer's identity: not written,
                    // and no retry by this producer will be accepted.
                    Some(code) if client::unrecoverable(code) => {
                        debug!(error = %e, "kafka producer refused; resending with its successor");
                        health.unusable(generation, e);
                        true
                    }
                    _ => false,
                };
                if resend {
                    s.dead = Some(generation);
                    match self.find(&s, generation, key, payload) {
                        Some(i) => s.records[i] = Record::Resend,
                        None => {
                            s.outstanding.failed(false);
                            s.failed.get_or_insert_with(|| {
                                SinkError::Rejected("a record to resend was not found".into())
                            });
                        }
                    }
                } else {
                    debug!(error = %e, "kafka delivery failed");
                    if code == Some(RDKafkaErrorCode::Fatal) {
                        health.fatal(generation);
                    }
                    s.outstanding
                        .failed(code == Some(RDKafkaErrorCode::MessageTimedOut));
                    s.failed.get_or_insert_with(|| super::delivery_error(e));
                }
            }
        }
        s.in_flight -= 1;
        if s.in_flight == 0 {
            drop(s);
            self.settled.notify_one();
        }
    }

    /// The record in flight with `generation` that has this key and payload.
    fn find(
        &self,
        s: &State,
        generation: u64,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> Option<usize> {
        s.records.iter().enumerate().position(|(i, r)| {
            *r == Record::InFlight(generation)
                && key == Some(self.messages[i].key.as_bytes())
                && payload == Some(&self.messages[i].payload[..])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Protocol;
    use crate::sink::Stream;
    use client::Role;
    use std::time::Duration;

    fn batch(n: usize, health: &Health) -> Arc<Batch> {
        let messages: Arc<[OutMessage]> = (0..n)
            .map(|i| OutMessage {
                stream: Stream::Events,
                key: "356307042441013".into(),
                payload: bytes::Bytes::from(format!("record {i}")),
                protocol: Protocol::Teltonika,
            })
            .collect();
        Batch::new(messages, health.deliveries().begin(n))
    }

    fn failed(b: &Batch, generation: u64, health: &Health, i: usize, code: RDKafkaErrorCode) {
        let m = &b.messages()[i];
        let e = KafkaError::MessageProduction(code);
        b.settle(
            generation,
            health,
            Err((&e, Some(m.key.as_bytes()), Some(&m.payload[..]))),
        );
    }

    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { tokio::time::timeout(Duration::from_secs(5), f).await })
            .expect("the batch settled")
    }

    #[test]
    fn a_batch_is_confirmed_when_every_record_is() {
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(3, &health);
        for i in 0..3 {
            b.handing(i, 0);
        }
        // Reports in any order; the batch waits for all three.
        b.settle(0, &health, Ok(()));
        b.settle(0, &health, Ok(()));
        b.settle(0, &health, Ok(()));
        assert_eq!(now(b.reports()), Ok(None));
        assert!(!health.stalled());
    }

    #[test]
    fn one_failed_record_fails_the_batch_after_every_report_is_in() {
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(2, &health);
        b.handing(0, 0);
        b.handing(1, 0);
        b.settle(0, &health, Ok(()));
        failed(&b, 0, &health, 1, RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(now(b.reports()), Err(SinkError::Timeout(Duration::ZERO)));
        assert!(health.stalled(), "a timed-out record counts for readiness");

        let b = batch(2, &health);
        b.handing(0, 0);
        b.handing(1, 0);
        failed(&b, 0, &health, 0, RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(b.lock().in_flight, 1, "the other record is still awaited");
        b.settle(0, &health, Ok(()));
        assert!(matches!(now(b.reports()), Err(SinkError::Rejected(_))));
    }

    #[test]
    fn records_purged_from_a_dead_producer_are_found_and_sent_again_in_order() {
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(4, &health);
        for i in 0..4 {
            b.handing(i, 0);
        }
        health.fatal(0);
        b.settle(0, &health, Ok(()));
        // Purged in any order: found by content.
        failed(&b, 0, &health, 3, RDKafkaErrorCode::PurgeQueue);
        failed(&b, 0, &health, 1, RDKafkaErrorCode::PurgeQueue);
        b.settle(0, &health, Ok(()));
        let (dead, again) = now(b.reports()).unwrap().expect("records to resend");
        assert_eq!(dead, 0);
        assert_eq!(Vec::from(again), vec![1, 3]);
        // The successor takes them; then the batch is confirmed.
        b.handing(1, 1);
        b.handing(3, 1);
        b.settle(1, &health, Ok(()));
        b.settle(1, &health, Ok(()));
        assert_eq!(now(b.reports()), Ok(None));
    }

    #[test]
    fn a_producer_refused_for_its_identity_is_condemned_and_its_record_resent() {
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(2, &health);
        b.handing(0, 0);
        b.handing(1, 0);
        failed(&b, 0, &health, 0, RDKafkaErrorCode::ProducerFenced);
        b.settle(0, &health, Ok(()));
        assert!(health.failed(), "the fenced producer is to be replaced");
        let (dead, again) = now(b.reports()).unwrap().expect("records to resend");
        assert_eq!((dead, Vec::from(again)), (0, vec![0]));
    }

    #[test]
    fn a_purge_by_a_live_producer_is_a_failure() {
        // librdkafka purges on its own only when the client dies: a purge by the producer in
        // use, which is not failed, is not a licence to send again.
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(1, &health);
        b.handing(0, 0);
        failed(&b, 0, &health, 0, RDKafkaErrorCode::PurgeQueue);
        assert!(matches!(now(b.reports()), Err(SinkError::Rejected(_))));
    }

    #[test]
    fn a_refused_hand_over_is_not_awaited() {
        let health = Health::new(Role::Events, Duration::from_secs(5));
        let b = batch(2, &health);
        b.handing(0, 0);
        b.handing(1, 0);
        b.refused(1);
        b.settle(0, &health, Ok(()));
        assert_eq!(now(b.reports()), Ok(None));
    }
}
