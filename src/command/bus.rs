//! Where commands and claims travel: the Kafka commands topic, or MQTT topics on one broker.
//!
//! A bus delivers every log entry (backend commands and pods' claims) to every pod, per device
//! in the broker's order, and lets a pod append a claim. Proposals are fire-and-forget: the
//! ledger acts only on what it reads back, and proposes again if nothing came back.

use std::time::{Duration, SystemTime};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::proto::{Command, CommandClaim};

/// One entry of the command log.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A command that passed [`super::check`].
    Command(Command),
    /// A command [`super::check`] refused: the sanitized command and why.
    Rejected(Command, String),
    Claim(CommandClaim),
    /// An unreadable payload (counted and logged; nothing to report it under).
    Invalid(String),
}

/// Appends claims to the log.
pub trait ClaimWriter: Send + Sync + 'static {
    fn propose(&self, claim: CommandClaim);
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
pub struct KafkaBus {
    producer: FutureProducer,
    topic: String,
}

impl KafkaBus {
    /// Starts the reader thread; entries arrive on the returned channel.
    pub fn start(
        producer_config: rdkafka::ClientConfig,
        consumer_config: rdkafka::ClientConfig,
        topic: String,
        lookback: Duration,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(KafkaBus, mpsc::Receiver<Entry>)> {
        let producer: FutureProducer = producer_config.create()?;
        let consumer: BaseConsumer = consumer_config.create()?;
        let (tx, rx) = mpsc::channel(4096);
        let t = topic.clone();
        std::thread::Builder::new()
            .name("avlgate-commands".into())
            .spawn(move || read_commands(consumer, t, lookback, tx, shutdown))?;
        Ok((KafkaBus { producer, topic }, rx))
    }
}

fn assign_all(consumer: &BaseConsumer, topic: &str, lookback: Duration) -> anyhow::Result<usize> {
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
        let offset = found
            .as_ref()
            .and_then(|f| f.find_partition(topic, p))
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)))
            .unwrap_or(Offset::Beginning);
        tpl.add_partition_offset(topic, p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(partitions)
}

fn read_commands(
    consumer: BaseConsumer,
    topic: String,
    lookback: Duration,
    tx: mpsc::Sender<Entry>,
    shutdown: CancellationToken,
) {
    // The topic may not exist yet when the pod starts: retry.
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match assign_all(&consumer, &topic, lookback) {
            Ok(n) => {
                info!(topic = %topic, partitions = n, "reading commands");
                break;
            }
            Err(e) => {
                warn!(error = %e, topic = %topic, "cannot read the commands topic yet; retrying");
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => debug!(error = %e, "commands consumer"),
            Some(Ok(m)) => {
                let is_claim = m
                    .headers()
                    .is_some_and(|h| h.iter().any(|h| h.key == CONTROL_HEADER));
                let entry = decode_entry(m.payload().unwrap_or_default(), is_claim, m.key());
                if tx.blocking_send(entry).is_err() {
                    return;
                }
            }
        }
    }
}

impl ClaimWriter for KafkaBus {
    fn propose(&self, claim: CommandClaim) {
        let payload = prost::Message::encode_to_vec(&claim);
        let record = FutureRecord::to(&self.topic)
            .key(claim.imei.as_str())
            .payload(&payload)
            .headers(OwnedHeaders::new().insert(Header {
                key: CONTROL_HEADER,
                value: Some("claim"),
            }));
        if let Err((e, _)) = self.producer.send_result(record) {
            warn!(error = %e, "claim not queued; it will be proposed again");
        }
    }
}

/// MQTT: backends publish commands to `<prefix>/commands/<imei>` (QoS 1); pods publish claims
/// to `<prefix>/command-claims/<imei>`. Every pod subscribes to both. One broker delivers a
/// topic's messages to every subscriber in the same order, which is what the ledger needs.
///
/// An MQTT broker does not replay old messages to a new subscriber, so pending commands are
/// also kept as **retained** messages on `<prefix>/pending/<imei>/<command_id>`: every pod that
/// reads a command retains it there, a claim that settles it (deliver, expire, reject) clears
/// it, a release retains it again. A pod that starts reads the retained ones and so knows every
/// pending command, like a Kafka pod reading the topic from its lookback (with a persistent
/// broker, this survives a broker restart too).
pub struct MqttBus {
    client: rumqttc::AsyncClient,
    prefix: String,
}

/// Payloads of commands seen, for re-retaining on a release; bounded, oldest dropped.
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
        let claims_prefix = format!("{prefix}/command-claims/");
        let pending_prefix = format!("{prefix}/pending/");
        let commands_prefix = format!("{prefix}/commands/");
        let sub = client.clone();
        let p = prefix.clone();
        tokio::spawn(async move {
            use rumqttc::{Event, Packet, QoS};
            let mut seen = Seen {
                payloads: Default::default(),
                order: Default::default(),
            };
            let retain = |topic: String, payload: bytes::Bytes| {
                if let Err(e) = sub.try_publish(topic, QoS::AtLeastOnce, true, payload) {
                    debug!(error = %e, "pending command not retained");
                }
            };
            loop {
                let polled = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = el.poll() => p,
                };
                match polled {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        // Subscribe on every (re)connection: sessions are clean.
                        for f in [&commands, &claims, &pending] {
                            let _ = sub.try_subscribe(f.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(m))) => {
                        let topic: &str = &m.topic;
                        let is_claim = topic.starts_with(&claims_prefix);
                        let is_pending = topic.starts_with(&pending_prefix);
                        if is_pending && m.payload.is_empty() {
                            continue;
                        }
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
                                    retain(
                                        format!("{p}/pending/{}/{}", c.imei, c.command_id),
                                        m.payload.clone(),
                                    );
                                }
                                seen.insert(
                                    c.command_id.clone(),
                                    c.imei.clone(),
                                    m.payload.clone(),
                                );
                            }
                            Entry::Rejected(..) | Entry::Invalid(_) if is_pending => {
                                // Not a command this gateway retained: clear it (the topic came
                                // from the broker, so it is a valid topic) and do not report
                                // it again.
                                retain(topic.to_string(), bytes::Bytes::new());
                                continue;
                            }
                            Entry::Claim(c) if pending_topic_safe(&c.imei, &c.command_id) => {
                                let topic = format!("{p}/pending/{}/{}", c.imei, c.command_id);
                                if c.purpose == crate::proto::ClaimPurpose::Release as i32 {
                                    if let Some((_, payload)) = seen.payloads.get(&c.command_id) {
                                        retain(topic, payload.clone());
                                    }
                                } else {
                                    retain(topic, bytes::Bytes::new());
                                }
                            }
                            _ => {}
                        }
                        if tx.send(entry).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "command bus connection lost; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        (MqttBus { client, prefix }, rx)
    }
}

impl ClaimWriter for MqttBus {
    fn propose(&self, claim: CommandClaim) {
        let topic = format!("{}/command-claims/{}", self.prefix, claim.imei);
        let payload = prost::Message::encode_to_vec(&claim);
        if let Err(e) = self
            .client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        {
            warn!(error = %e, "claim not queued; it will be proposed again");
        }
    }
}
