//! Where commands and claims travel: the Kafka commands topic, or MQTT topics on one broker.
//!
//! A bus delivers every log entry (backend commands, pods' claims, beats and session
//! announcements) to every pod, per device in the broker's order, and lets a pod append a
//! claim. Proposals are fire-and-forget: the ledger acts only on what it reads back, and
//! proposes again if nothing came back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::ledger::Retained;
use crate::abort::Abort;
use crate::proto::{ClaimPurpose, Command, CommandClaim};
use crate::sink::kafka::client::{self, Health, Rebuilds, Role};

/// One entry of the command log.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A command that passed [`super::check`].
    Command(Command),
    /// A command [`super::check`] refused: the sanitized command and why.
    Rejected(Command, String),
    Claim(CommandClaim),
    /// The claim in force on a command, from the broker's retained state (MQTT: a starting pod
    /// learns what it did not see happen).
    State(CommandClaim),
    /// An unreadable payload (counted and logged; nothing to report it under).
    Invalid(String),
}

/// Appends claims to the log.
pub trait ClaimWriter: Send + Sync + 'static {
    fn propose(&self, claim: CommandClaim);

    /// Keeps the broker's retained view of a command (MQTT). A log that a starting pod replays
    /// (Kafka) needs none.
    fn retain(&self, _imei: &str, _command_id: &str, _state: &Retained) {}
}

/// Header marking a claim on the Kafka commands topic.
pub const CONTROL_HEADER: &str = "avlgate-control";

/// Decodes a log entry. `addressed_to`: for a command, the device its topic or key names
/// (see [`super::check`]).
fn decode_entry(payload: &[u8], is_claim: bool, addressed_to: Option<&[u8]>) -> Entry {
    if is_claim {
        match prost::Message::decode(payload) {
            Ok(c) => Entry::Claim(c),
            Err(e) => Entry::Invalid(format!("invalid claim: {e}")),
        }
    } else {
        match super::parse(payload).map(|c| super::check(c, addressed_to)) {
            Ok(super::Checked::Valid(c)) => Entry::Command(c),
            Ok(super::Checked::Rejected(c, why)) => Entry::Rejected(c, why),
            Ok(super::Checked::Unreportable(why)) | Err(why) => Entry::Invalid(why),
        }
    }
}

/// Whether a pending command's retained topic `<prefix>/pending/<imei>/<id>` may be built
/// from these ids (claims are read from the broker: never trust them into a topic).
fn pending_topic_safe(imei: &str, command_id: &str) -> bool {
    crate::device_id::is_valid(imei) && super::valid_command_id(command_id)
}

/// Kafka: backends produce commands to the commands topic (key = IMEI); pods append claims to
/// the same topic with the same key (so a device's commands and claims share one partition
/// and one order), marked with the `avlgate-control: claim` header. Every pod reads every
/// partition, starting `lookback` before now so a restarted pod sees the commands still
/// within their TTL.
///
/// Both clients are rebuilt in place after a librdkafka fatal error, like the events producer
/// ([`crate::sink::kafka::client`]): the reader resumes where it was (no entry read twice,
/// none skipped), and a claim refused meanwhile is proposed again by the ledger.
pub struct KafkaBus {
    producer: client::Producer,
    topic: String,
    reader: Arc<RwLock<Arc<Reader>>>,
    reader_health: Arc<Health>,
}

/// The commands consumer.
pub type Reader = BaseConsumer<client::Context>;

impl KafkaBus {
    /// Starts the reader thread; entries arrive on the returned channel. A client that cannot
    /// be rebuilt after a fatal error requests `abort`.
    pub fn start(
        producer_config: rdkafka::ClientConfig,
        consumer_config: rdkafka::ClientConfig,
        topic: String,
        lookback: Duration,
        shutdown: CancellationToken,
        abort: &Abort,
    ) -> anyhow::Result<(KafkaBus, mpsc::Receiver<Entry>)> {
        Self::with_rebuilds(
            &producer_config,
            consumer_config,
            topic,
            lookback,
            shutdown,
            [
                Rebuilds::new(Role::CommandClaims, abort.clone()),
                Rebuilds::new(Role::CommandReader, abort.clone()),
            ],
        )
    }

    /// Same, with given rebuild policies (claims producer, reader): tests shorten the pauses.
    pub fn with_rebuilds(
        producer_config: &rdkafka::ClientConfig,
        consumer_config: rdkafka::ClientConfig,
        topic: String,
        lookback: Duration,
        shutdown: CancellationToken,
        [claims, reading]: [Rebuilds; 2],
    ) -> anyhow::Result<(KafkaBus, mpsc::Receiver<Entry>)> {
        // The claims producer has the events producer's settings, statistics included: its
        // context reads them (to see a producer the broker keeps refusing) and never logs them.
        let message_timeout = producer_config
            .get("message.timeout.ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(30));
        let stall_after = client::stall_after(message_timeout);
        let claims_health = Health::new(Role::CommandClaims, stall_after);
        let producer = client::Producer::with_rebuilds(
            producer_config.clone(),
            claims_health,
            message_timeout,
            claims,
        )?;
        let reader_health = Health::new(Role::CommandReader, stall_after);
        let consumer: Reader =
            consumer_config.create_with_context(Rebuilds::first_context(&reader_health))?;
        let reader = Arc::new(RwLock::new(Arc::new(consumer)));
        let (tx, rx) = mpsc::channel(4096);
        let r = ReadLoop {
            slot: reader.clone(),
            config: consumer_config,
            health: reader_health.clone(),
            rebuilds: reading,
            topic: topic.clone(),
            lookback,
            tx,
            shutdown,
            abandoned: 0,
        };
        std::thread::Builder::new()
            .name("avlgate-commands".into())
            .spawn(move || r.run())?;
        Ok((
            KafkaBus {
                producer,
                topic,
                reader,
                reader_health,
            },
            rx,
        ))
    }

    /// The health of both clients (readiness requires them).
    pub fn health(&self) -> [Arc<Health>; 2] {
        [self.producer.health().clone(), self.reader_health.clone()]
    }

    /// The claims producer in use (generation, client): tests inject faults into it.
    pub fn claims_producer(&self) -> (u64, FutureProducer<client::Context>) {
        self.producer.current()
    }

    /// The reader in use: tests inject faults into it.
    pub fn reader(&self) -> Arc<Reader> {
        self.reader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Assigns every partition of `topic`: where this reader was (`resume`: partition → next
/// offset), else at the first offset of `lookback` ago.
fn assign_all(
    consumer: &Reader,
    topic: &str,
    lookback: Duration,
    resume: &HashMap<i32, i64>,
) -> anyhow::Result<usize> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        anyhow::bail!("topic {topic} has no partitions (does it exist?)");
    }
    let since = SystemTime::now()
        .checked_sub(lookback)
        .unwrap_or(SystemTime::UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut by_time = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        by_time.add_partition_offset(topic, p, Offset::Offset(since))?;
    }
    // Offsets at `since`; partitions where that fails start at the beginning.
    let mut tpl = TopicPartitionList::new();
    let found = consumer
        .offsets_for_times(by_time, Duration::from_secs(10))
        .ok();
    for p in 0..partitions as i32 {
        let offset = match resume.get(&p) {
            Some(next) => Offset::Offset(*next),
            None => found
                .as_ref()
                .and_then(|f| f.find_partition(topic, p))
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::Beginning),
        };
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(partitions)
}

/// The reader thread: assigns, reads, and replaces the consumer after a fatal error.
struct ReadLoop {
    slot: Arc<RwLock<Arc<Reader>>>,
    config: rdkafka::ClientConfig,
    health: Arc<Health>,
    rebuilds: Rebuilds,
    topic: String,
    lookback: Duration,
    tx: mpsc::Sender<Entry>,
    shutdown: CancellationToken,
    /// Dead readers left behind (see [`ReadLoop::run`]).
    abandoned: u32,
}

/// Dead readers a process may leave behind before it asks to be restarted.
const MAX_ABANDONED_READERS: u32 = 3;

/// Why reading stopped.
enum Stopped {
    Shutdown,
    Fatal,
}

impl ReadLoop {
    fn run(mut self) {
        // Partition → the offset after the last entry handed to the ledger.
        let mut resume = HashMap::new();
        loop {
            let consumer = self.slot.read().unwrap_or_else(|p| p.into_inner()).clone();
            match self.read(&consumer, &mut resume) {
                Stopped::Shutdown => return,
                Stopped::Fatal => {}
            }
            let generation = self.health.generation();
            self.health.fatal(generation);
            error!(
                generation,
                error = %client::death_reason(consumer.client(), &self.health).unwrap_or_default(),
                "rebuilding the commands reader after a fatal error"
            );
            let config = self.config.clone();
            let Some((next, c)) = self
                .rebuilds
                .rebuild(&self.health, |context| config.create_with_context(context))
            else {
                return;
            };
            let old = std::mem::replace(
                &mut *self.slot.write().unwrap_or_else(|p| p.into_inner()),
                Arc::new(c),
            );
            self.health.replaced_by(next);
            // A consumer in a fatal state cannot be destroyed: librdkafka's destroy waits for
            // a group close that the fatal error forbids, and rdkafka offers no way to skip it
            // (`RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE`). It stops fetching and is left behind;
            // a process that would leave too many behind asks to be restarted instead.
            if let Err(e) = consumer.unassign() {
                debug!(error = %e, "retired commands reader not unassigned");
            }
            std::mem::forget(old);
            std::mem::forget(consumer);
            self.abandoned += 1;
            if self.abandoned >= MAX_ABANDONED_READERS {
                self.rebuilds.give_up(
                    &self.health,
                    format!(
                        "{} commands readers died of fatal errors and could not be destroyed",
                        self.abandoned
                    ),
                );
                return;
            }
        }
    }

    fn read(&self, consumer: &Reader, resume: &mut HashMap<i32, i64>) -> Stopped {
        let dead = || consumer.client().fatal_error().is_some();
        // The topic may not exist yet when the pod starts: retry.
        loop {
            if self.shutdown.is_cancelled() {
                return Stopped::Shutdown;
            }
            match assign_all(consumer, &self.topic, self.lookback, resume) {
                Ok(n) => {
                    info!(topic = %self.topic, partitions = n, "reading commands");
                    break;
                }
                Err(_) if dead() => return Stopped::Fatal,
                Err(e) => {
                    warn!(error = %e, topic = %self.topic, "cannot read the commands topic yet; retrying");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
        while !self.shutdown.is_cancelled() {
            // The fatal error may come as a poll error, or only through the error callback.
            if dead() {
                return Stopped::Fatal;
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(_)) if dead() => return Stopped::Fatal,
                Some(Err(e)) => debug!(error = %e, "commands consumer"),
                Some(Ok(m)) => {
                    resume.insert(m.partition(), m.offset() + 1);
                    let is_claim = m
                        .headers()
                        .is_some_and(|h| h.iter().any(|h| h.key == CONTROL_HEADER));
                    let entry = decode_entry(m.payload().unwrap_or_default(), is_claim, m.key());
                    if self.tx.blocking_send(entry).is_err() {
                        return Stopped::Shutdown;
                    }
                }
            }
        }
        Stopped::Shutdown
    }
}

impl ClaimWriter for KafkaBus {
    fn propose(&self, claim: CommandClaim) {
        let payload = prost::Message::encode_to_vec(&claim);
        // A device's claims and announcements share its commands' key (one partition, one
        // order); beats, which concern no device, are keyed by the pod.
        let key = if claim.purpose == ClaimPurpose::Beat as i32 {
            claim.gateway.as_str()
        } else {
            claim.imei.as_str()
        };
        let record = FutureRecord::to(&self.topic)
            .key(key)
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header {
                key: CONTROL_HEADER,
                value: Some("claim"),
            }));
        let (generation, producer) = self.producer.current();
        match producer.send_result(record) {
            Ok(report) => {
                // Nothing waits for a claim (the ledger acts on what it reads back), but its
                // report tells the producer's health whether the broker still takes it.
                let health = self.producer.health().clone();
                let mut outstanding = health.deliveries().begin(1);
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        match report.await {
                            Ok(Ok(_)) => outstanding.confirmed(),
                            Ok(Err((e, _))) => {
                                debug!(error = %e, "claim not written; it will be proposed again");
                                let code = e.rdkafka_error_code();
                                outstanding.failed(code == Some(RDKafkaErrorCode::MessageTimedOut));
                                if code.is_some_and(client::unrecoverable) {
                                    health.unusable(generation, &e);
                                }
                            }
                            Err(_) => outstanding.failed(false),
                        }
                    });
                }
            }
            Err((e, _)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) => {
                // The supervisor replaces the producer; the ledger proposes again.
                self.producer.health().fatal(generation);
                debug!("claim not queued: the claims producer is being rebuilt");
            }
            Err((e, _)) => warn!(error = %e, "claim not queued; it will be proposed again"),
        }
    }
}

/// MQTT: backends publish commands to `<prefix>/commands/<imei>` (QoS 1); pods publish claims
/// to `<prefix>/command-claims/<imei>` (beats to `<prefix>/command-claims/@beats`). Every pod
/// subscribes to both. One broker delivers a topic's messages to every subscriber in the same
/// order, which is what the ledger needs.
///
/// An MQTT broker does not replay old messages to a new subscriber, so what a starting pod
/// must know is kept as **retained** messages, which it receives when it subscribes:
///
/// - every pending command on `<prefix>/pending/<imei>/<command_id>` (retained by every pod
///   that reads it; cleared when a claim takes it; retained again when it is reopened);
/// - the claim in force on a command that is held or decided on
///   `<prefix>/command-state/<imei>/<command_id>` (cleared once its result is published), so a
///   starting pod can settle a lost pod's commands too;
/// - each device's latest session announcement (LOGIN or LOGOUT, retained on its claims topic).
///
/// Each retained update is made by the pod whose claim caused it ([`ClaimWriter::retain`]).
/// With a persistent broker this survives a broker restart too.
pub struct MqttBus {
    client: rumqttc::AsyncClient,
    prefix: String,
    seen: Arc<std::sync::Mutex<Seen>>,
    subscribed: Arc<Subscribed>,
}

/// Whether the bus's subscriptions are in place on the current connection. An MQTT broker
/// keeps nothing for a topic nobody subscribed to, so a command published before the pod
/// subscribed would be lost: the pod is not ready until the broker acknowledged its
/// subscriptions ([`MqttBus::subscribed`] is one of `/readyz`'s checks), and it is not ready
/// again from a lost connection until it subscribed anew. Rolling restarts thus keep one
/// subscribed pod at all times; commands a pod missed while it was away are replayed from
/// the retained pending topics when it subscribes.
#[derive(Debug, Default)]
pub struct Subscribed(std::sync::atomic::AtomicBool);

impl Subscribed {
    fn set(&self, v: bool) {
        self.0.store(v, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl crate::ops::Check for Subscribed {
    fn check(&self) -> Result<(), &'static str> {
        if self.is_set() {
            Ok(())
        } else {
            Err("command bus not subscribed")
        }
    }
}

/// Payloads of commands seen, for re-retaining on a release; bounded, oldest dropped.
#[derive(Default)]
struct Seen {
    payloads: std::collections::HashMap<String, (String, bytes::Bytes)>,
    order: std::collections::VecDeque<String>,
}

const MAX_SEEN: usize = 100_000;

impl Seen {
    fn insert(&mut self, id: String, imei: String, payload: bytes::Bytes) {
        if self.payloads.insert(id.clone(), (imei, payload)).is_none() {
            self.order.push_back(id);
            while self.order.len() > MAX_SEEN {
                if let Some(old) = self.order.pop_front() {
                    self.payloads.remove(&old);
                }
            }
        }
    }
}

impl MqttBus {
    pub fn start(
        mut options: rumqttc::MqttOptions,
        prefix: String,
        shutdown: CancellationToken,
    ) -> (MqttBus, mpsc::Receiver<Entry>) {
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut el) = rumqttc::AsyncClient::new(options, 1024);
        let (tx, rx) = mpsc::channel(4096);
        let commands = format!("{prefix}/commands/+");
        let claims = format!("{prefix}/command-claims/+");
        let pending = format!("{prefix}/pending/+/+");
        let states = format!("{prefix}/command-state/+/+");
        let claims_prefix = format!("{prefix}/command-claims/");
        let pending_prefix = format!("{prefix}/pending/");
        let states_prefix = format!("{prefix}/command-state/");
        let commands_prefix = format!("{prefix}/commands/");
        let sub = client.clone();
        let p = prefix.clone();
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let seen_reader = seen.clone();
        let subscribed = Arc::new(Subscribed::default());
        let subscribed_reader = subscribed.clone();
        tokio::spawn(async move {
            use rumqttc::{Event, Packet, QoS, SubscribeFilter, SubscribeReasonCode};
            loop {
                let polled = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = el.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Subscribe on every (re)connection: sessions are clean.
                        subscribed_reader.set(false);
                        let filters = [&commands, &claims, &pending, &states]
                            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                        if let Err(e) = sub.try_subscribe_many(filters) {
                            warn!(error = %e, "command bus subscription not queued; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            let _ = sub.try_disconnect();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let granted = ack
                            .return_codes
                            .iter()
                            .all(|c| !matches!(c, SubscribeReasonCode::Failure));
                        if granted {
                            debug!("command bus subscribed");
                        } else {
                            error!("the MQTT broker refused the command bus's subscriptions (ACL?); commands cannot be received");
                        }
                        subscribed_reader.set(granted);
                    }
                    Ok(Event::Incoming(Packet::Publish(m))) => {
                        let topic: &str = &m.topic;
                        if m.payload.is_empty() {
                            // A cleared retained message.
                            continue;
                        }
                        let entry = if topic.starts_with(&states_prefix) {
                            match prost::Message::decode(&m.payload[..]) {
                                Ok(c) => Entry::State(c),
                                Err(e) => Entry::Invalid(format!("invalid command state: {e}")),
                            }
                        } else {
                            let is_claim = topic.starts_with(&claims_prefix);
                            let is_pending = topic.starts_with(&pending_prefix);
                            // The device the topic addresses: `commands/<imei>`,
                            // `pending/<imei>/<id>`.
                            let addressed = if is_pending {
                                topic[pending_prefix.len()..].split('/').next()
                            } else {
                                topic.strip_prefix(&commands_prefix)
                            };
                            let entry =
                                decode_entry(&m.payload, is_claim, addressed.map(str::as_bytes));
                            match &entry {
                                Entry::Command(c) => {
                                    // Checked: both ids are safe in a topic.
                                    if !is_pending {
                                        let topic =
                                            format!("{p}/pending/{}/{}", c.imei, c.command_id);
                                        if let Err(e) = sub.try_publish(
                                            topic,
                                            QoS::AtLeastOnce,
                                            true,
                                            m.payload.clone(),
                                        ) {
                                            debug!(error = %e, "pending command not retained");
                                        }
                                    }
                                    seen_reader
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .insert(
                                            c.command_id.clone(),
                                            c.imei.clone(),
                                            m.payload.clone(),
                                        );
                                }
                                Entry::Rejected(..) | Entry::Invalid(_) if is_pending => {
                                    // Not a command this gateway retained: clear it (the topic
                                    // came from the broker, so it is a valid topic) and do not
                                    // report it again.
                                    let _ = sub.try_publish(
                                        topic.to_string(),
                                        QoS::AtLeastOnce,
                                        true,
                                        bytes::Bytes::new(),
                                    );
                                    continue;
                                }
                                _ => {}
                            }
                            entry
                        };
                        if tx.send(entry).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        subscribed_reader.set(false);
                        debug!(error = %e, "command bus connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        (
            MqttBus {
                client,
                prefix,
                seen,
                subscribed,
            },
            rx,
        )
    }

    /// The readiness check: true once the broker acknowledged the bus's subscriptions on the
    /// current connection.
    pub fn subscribed(&self) -> Arc<Subscribed> {
        self.subscribed.clone()
    }

    fn publish(&self, topic: String, retain: bool, payload: bytes::Bytes) {
        if let Err(e) = self
            .client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
        {
            warn!(error = %e, "claim not queued; it will be proposed again");
        }
    }
}

impl ClaimWriter for MqttBus {
    fn propose(&self, claim: CommandClaim) {
        let purpose = ClaimPurpose::try_from(claim.purpose).unwrap_or(ClaimPurpose::Unspecified);
        let topic = match purpose {
            ClaimPurpose::Beat => format!("{}/command-claims/@beats", self.prefix),
            _ if crate::device_id::is_valid(&claim.imei)
                || claim.imei == crate::device_id::INVALID_KEY =>
            {
                format!("{}/command-claims/{}", self.prefix, claim.imei)
            }
            // Never a topic built from an id that is not one.
            _ => return,
        };
        // A device's latest session announcement stays retained for pods that start later.
        let retain = matches!(purpose, ClaimPurpose::Login | ClaimPurpose::Logout);
        self.publish(topic, retain, prost::Message::encode_to_vec(&claim).into());
    }

    fn retain(&self, imei: &str, command_id: &str, state: &Retained) {
        if !pending_topic_safe(imei, command_id) {
            return;
        }
        let pending = format!("{}/pending/{imei}/{command_id}", self.prefix);
        let current = format!("{}/command-state/{imei}/{command_id}", self.prefix);
        match state {
            Retained::Open => {
                let payload = self
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .payloads
                    .get(command_id)
                    .map(|(_, p)| p.clone());
                if let Some(p) = payload {
                    self.publish(pending, true, p);
                }
                self.publish(current, true, bytes::Bytes::new());
            }
            Retained::InForce(claim) => {
                self.publish(pending, true, bytes::Bytes::new());
                self.publish(current, true, prost::Message::encode_to_vec(claim).into());
            }
            Retained::Finished => {
                self.publish(pending, true, bytes::Bytes::new());
                self.publish(current, true, bytes::Bytes::new());
            }
        }
    }
}
