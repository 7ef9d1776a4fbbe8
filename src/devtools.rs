//! Development and load-test tools of the `avlgate` binary; none of this is part of the gateway.
//!
//! - `avlgate kafka-mock`: librdkafka's in-process **mock** cluster on loopback, with topics
//!   created and brokers taken down / brought up / slowed from stdin commands, so a script can
//!   stage a Kafka outage for a gateway running as a separate process. It speaks the real Kafka
//!   wire protocol but keeps everything in memory, replicates nothing and persists nothing: a
//!   test fixture, never a broker.
//! - `avlgate kafka-produce-bench`: the direct-producer baseline for the end-to-end load run,
//!   librdkafka producing straight to a broker with the gateway's own producer settings.

use std::collections::HashSet;
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use avlgate::sink::kafka::KafkaOptions;
use avlgate::sink::Format;

/// The gateway's default topics, 12 partitions each.
const DEFAULT_TOPICS: [&str; 4] = [
    "avlgate.events:12",
    "avlgate.commands:12",
    "avlgate.command-results:12",
    "avlgate.sessions:12",
];

/// Most brokers a mock cluster may have (each is a listener and a thread in librdkafka).
const MAX_BROKERS: i32 = 32;
/// Most partitions per mock topic.
const MAX_PARTITIONS: i32 = 1024;

/// `avlgate kafka-mock` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaMockArgs {
    /// Brokers in the mock cluster (ids 1..=N).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=MAX_BROKERS as i64))]
    pub brokers: i32,
    /// A topic to create, NAME[:PARTITIONS] (repeatable; default the gateway's four topics with
    /// 12 partitions each). Other topics are auto-created on first use.
    #[arg(long = "topic", value_parser = parse_topic)]
    pub topics: Vec<(String, i32)>,
    /// Also write the `bootstrap=...` line to this file (written whole once the cluster is up).
    #[arg(long)]
    pub listen_file: Option<PathBuf>,
}

/// Parses `NAME[:PARTITIONS]`.
pub fn parse_topic(s: &str) -> Result<(String, i32), String> {
    let (name, partitions) = match s.rsplit_once(':') {
        Some((n, p)) => {
            let p: i32 = p
                .parse()
                .map_err(|_| format!("bad partition count in {s:?}"))?;
            (n, p)
        }
        None => (s, 12),
    };
    if name.is_empty()
        || name.len() > 249
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("invalid topic name {name:?}"));
    }
    if !(1..=MAX_PARTITIONS).contains(&partitions) {
        return Err(format!(
            "partitions must be 1..={MAX_PARTITIONS}, got {partitions}"
        ));
    }
    Ok((name.to_string(), partitions))
}

/// Which brokers a command applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brokers {
    All,
    One(i32),
}

/// A line read from `kafka-mock`'s stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockCommand {
    Down(Brokers),
    Up(Brokers),
    Rtt(Brokers, Duration),
    Quit,
}

/// Parses one command line; `Ok(None)` for a blank line or a `#` comment.
pub fn parse_command(line: &str, brokers: i32) -> Result<Option<MockCommand>, String> {
    let mut words = line.split_whitespace();
    let Some(verb) = words.next() else {
        return Ok(None);
    };
    if verb.starts_with('#') {
        return Ok(None);
    }
    let target = |w: Option<&str>| -> Result<Brokers, String> {
        match w {
            None | Some("all") => Ok(Brokers::All),
            Some(id) => match id.parse::<i32>() {
                Ok(id) if (1..=brokers).contains(&id) => Ok(Brokers::One(id)),
                _ => Err(format!(
                    "broker id must be 1..={brokers} or all, got {id:?}"
                )),
            },
        }
    };
    let cmd = match verb {
        "down" => MockCommand::Down(target(words.next())?),
        "up" => MockCommand::Up(target(words.next())?),
        "rtt" => {
            let who = words
                .next()
                .ok_or_else(|| "usage: rtt <broker_id|all> <ms>".to_string())
                .and_then(|w| target(Some(w)))?;
            let ms: u64 = words
                .next()
                .and_then(|w| w.parse().ok())
                .filter(|ms| *ms <= 600_000)
                .ok_or("usage: rtt <broker_id|all> <ms> (ms at most 600000)")?;
            MockCommand::Rtt(who, Duration::from_millis(ms))
        }
        "quit" | "exit" => MockCommand::Quit,
        other => return Err(format!("unknown command {other:?} (down, up, rtt, quit)")),
    };
    if words.next().is_some() {
        return Err("too many words".into());
    }
    Ok(Some(cmd))
}

type Cluster = MockCluster<'static, DefaultProducerContext>;

fn apply(cluster: &Cluster, brokers: i32, cmd: &MockCommand) -> anyhow::Result<()> {
    let ids = |b: Brokers| match b {
        Brokers::All => 1..=brokers,
        Brokers::One(id) => id..=id,
    };
    match *cmd {
        MockCommand::Down(b) => {
            for id in ids(b) {
                cluster.broker_down(id)?;
            }
        }
        MockCommand::Up(b) => {
            for id in ids(b) {
                cluster.broker_up(id)?;
            }
        }
        MockCommand::Rtt(b, rtt) => {
            for id in ids(b) {
                cluster.broker_round_trip_time(id, rtt)?;
            }
        }
        MockCommand::Quit => {}
    }
    Ok(())
}

/// Runs `avlgate kafka-mock` until `quit` or the end of stdin. Every command is answered on
/// stdout with one line, `ok <command>` or `error <why>`, so a script can wait for it.
pub fn kafka_mock(args: &KafkaMockArgs) -> anyhow::Result<()> {
    let cluster = MockCluster::new(args.brokers).context("starting the mock cluster")?;
    let topics: Vec<(String, i32)> = if args.topics.is_empty() {
        DEFAULT_TOPICS
            .iter()
            .map(|t| parse_topic(t).map_err(anyhow::Error::msg))
            .collect::<Result<_, _>>()?
    } else {
        args.topics.clone()
    };
    for (name, partitions) in &topics {
        cluster
            .create_topic(name, *partitions, 1)
            .with_context(|| format!("creating topic {name}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    // librdkafka binds its mock brokers to 127.0.0.1; refuse to run if that ever changes.
    if !bootstrap.split(',').all(|b| b.starts_with("127.0.0.1:")) {
        bail!("the mock cluster is not on loopback: {bootstrap}");
    }
    let line = format!("bootstrap={bootstrap}\n");
    if let Some(path) = &args.listen_file {
        // Written to a temporary name and renamed, so a script polling for the file never reads
        // half a line.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &line).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()?;
    eprintln!(
        "kafka-mock: librdkafka mock cluster (development tool, in memory, not a broker): {} brokers, topics {}",
        args.brokers,
        topics
            .iter()
            .map(|(n, p)| format!("{n}:{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut buf = String::new();
    loop {
        buf.clear();
        // A line is capped so a stray binary stream cannot grow the buffer without bound.
        let n = (&mut input).take(4096).read_line(&mut buf)?;
        if n == 0 {
            break; // EOF: the controlling script is gone.
        }
        let line = buf.trim();
        match parse_command(line, args.brokers) {
            Ok(None) => continue,
            Ok(Some(MockCommand::Quit)) => {
                writeln!(out, "ok quit")?;
                out.flush()?;
                break;
            }
            Ok(Some(cmd)) => match apply(&cluster, args.brokers, &cmd) {
                Ok(()) => writeln!(out, "ok {line}")?,
                Err(e) => writeln!(out, "error {line}: {e}")?,
            },
            Err(e) => writeln!(out, "error {e}")?,
        }
        out.flush()?;
    }
    drop(cluster);
    Ok(())
}

/// `avlgate kafka-produce-bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceBenchArgs {
    /// Bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// Topic to produce to.
    #[arg(long)]
    pub topic: String,
    /// Messages to produce.
    #[arg(long)]
    pub messages: u64,
    /// Payload size of synthetic messages (ignored with --sample-from).
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Distinct keys (15-digit IMEI-like strings) of synthetic messages.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Instead of synthetic messages, read up to --sample records (key, payload, headers) from
    /// this topic on the same brokers and produce them over and over: the gateway's own
    /// encoded events, so size, keys and compressibility are the same.
    #[arg(long)]
    pub sample_from: Option<String>,
    /// Records to read with --sample-from.
    #[arg(long, default_value_t = 10_000)]
    pub sample: usize,
    /// A librdkafka setting, key=value, applied after the gateway's (repeatable).
    #[arg(long = "kafka-option", value_parser = avlgate::sink::kafka::parse_option)]
    pub kafka_option: Vec<(String, String)>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `avlgate kafka-topics` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaTopicsArgs {
    /// Bootstrap servers, host:port[,host:port].
    #[arg(long)]
    pub brokers: String,
    /// Creates a topic, NAME[:PARTITIONS] (12 by default), replication 1 (repeatable). An
    /// existing topic is left as it is.
    #[arg(long, value_parser = parse_topic)]
    pub create: Vec<(String, i32)>,
    /// Counts the records of a topic by reading every partition from its start to its high
    /// watermark (repeatable). Prints `NAME records=N offsets=M`: records read, and the sum of
    /// the partitions' offset spans (equal on a broker that numbers offsets per record).
    #[arg(long)]
    pub count: Vec<String>,
}

/// Runs `avlgate kafka-topics`: creates topics, then counts records, on a real broker.
pub fn kafka_topics(args: &KafkaTopicsArgs) -> anyhow::Result<()> {
    if !args.create.is_empty() {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &args.brokers)
            .create()?;
        let new: Vec<NewTopic> = args
            .create
            .iter()
            .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for r in rt.block_on(admin.create_topics(&new, &opts))? {
            match r {
                Ok(_) => {}
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => bail!("creating topic {t}: {e}"),
            }
        }
    }
    for topic in &args.count {
        let (records, offsets) = count_records(&args.brokers, topic)?;
        println!("{topic} records={records} offsets={offsets}");
    }
    Ok(())
}

/// A reader of `topic` (no offsets committed) and its number of partitions.
fn reader(brokers: &str, group: &str, topic: &str) -> anyhow::Result<(BaseConsumer, usize)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    Ok((consumer, partitions))
}

/// Records of `topic` read from every partition's start to its high watermark, and the sum
/// of the partitions' offset spans.
fn count_records(brokers: &str, topic: &str) -> anyhow::Result<(u64, i64)> {
    let (consumer, partitions) = reader(brokers, "avlgate-kafka-topics", topic)?;
    let mut tpl = TopicPartitionList::new();
    let mut high = vec![0i64; partitions];
    let mut spans = 0i64;
    for (p, high) in high.iter_mut().enumerate() {
        let (lo, hi) = consumer.fetch_watermarks(topic, p as i32, Duration::from_secs(10))?;
        *high = hi;
        spans += hi - lo;
        if hi > lo {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
        }
    }
    let mut open = tpl.count();
    consumer.assign(&tpl)?;
    let mut records = 0u64;
    let mut last = Instant::now();
    while open > 0 {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                let p = m.partition() as usize;
                if m.offset() < high[p] {
                    records += 1;
                    if m.offset() + 1 == high[p] {
                        open -= 1;
                    }
                }
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            None if last.elapsed() > Duration::from_secs(10) => {
                bail!("reading {topic}: nothing for 10 s with {open} partitions unread")
            }
            None => {}
        }
    }
    Ok((records, spans))
}

/// One message to produce.
struct Sample {
    key: Vec<u8>,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Counts delivery reports from librdkafka's callback.
#[derive(Default)]
struct Reports {
    ok: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

struct BenchContext(std::sync::Arc<Reports>);

impl ClientContext for BenchContext {}

impl ProducerContext for BenchContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Relaxed),
        };
    }
}

/// Reads up to `max` records of `topic` from the beginning; stops after 3 s without a new one.
fn read_sample(brokers: &str, topic: &str, max: usize) -> anyhow::Result<Vec<Sample>> {
    let (consumer, partitions) = reader(brokers, "avlgate-produce-bench", topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    // As many from each partition, so that the sample has the topic's spread of keys (and
    // the baseline its spread over partitions), not the first partition's few devices.
    let per_partition = max.div_ceil(partitions.max(1));
    let mut taken = vec![0usize; partitions];
    let mut out = Vec::new();
    let mut last = Instant::now();
    while out.len() < max && last.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = usize::try_from(m.partition())
                    .unwrap_or(0)
                    .min(partitions.saturating_sub(1));
                last = Instant::now();
                if taken.get(p).copied().unwrap_or(0) >= per_partition {
                    continue;
                }
                if let Some(t) = taken.get_mut(p) {
                    *t += 1;
                }
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Sample {
                    key: m.key().unwrap_or_default().to_vec(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
                last = Instant::now();
            }
            Some(Err(e)) => bail!("reading the sample from {topic}: {e}"),
            None => {}
        }
    }
    if out.is_empty() {
        bail!("no record in {topic} to sample");
    }
    Ok(out)
}

/// Synthetic messages: IMEI-like keys and pseudo-random payloads (xorshift, so they compress
/// about as badly as dense protobuf, never better).
fn synthetic(keys: u64, payload_bytes: usize) -> Vec<Sample> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..keys.clamp(1, 1_000_000))
        .map(|i| {
            let payload = (0..payload_bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            Sample {
                key: format!("{:015}", 350_000_000_000_000u64 + i).into_bytes(),
                payload,
                headers: vec![
                    ("avlgate-protocol".into(), b"teltonika".to_vec()),
                    (
                        "avlgate-schema".into(),
                        b"avlgate.v1.TelemetryEvent".to_vec(),
                    ),
                    ("content-type".into(), b"application/x-protobuf".to_vec()),
                ],
            }
        })
        .collect()
}

/// The measured run, printed at the end.
#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub messages: u64,
    pub delivered: u64,
    pub failed: u64,
    pub distinct_keys: usize,
    pub avg_payload_bytes: f64,
    pub elapsed_secs: f64,
    pub records_per_sec: f64,
}

/// Runs `avlgate kafka-produce-bench`: produces `messages` records as fast as librdkafka
/// takes them, waits for every delivery report, and reports records/s over the whole time.
pub fn produce_bench(args: &ProduceBenchArgs) -> anyhow::Result<BenchResult> {
    use std::sync::atomic::Ordering::Relaxed;
    let samples = match &args.sample_from {
        Some(t) => read_sample(&args.brokers, t, args.sample.max(1))?,
        None => synthetic(args.keys, args.payload_bytes),
    };
    let distinct_keys = samples.iter().map(|s| &s.key).collect::<HashSet<_>>().len();
    let avg_payload_bytes =
        samples.iter().map(|s| s.payload.len()).sum::<usize>() as f64 / samples.len() as f64;
    let options = KafkaOptions {
        brokers: args.brokers.clone(),
        options: args.kafka_option.clone(),
        events_topic: args.topic.clone(),
        command_results_topic: args.topic.clone(),
        client_id: "avlgate-produce-bench".into(),
        message_timeout: Duration::from_secs(30),
        format: Format::Protobuf,
    };
    let reports = std::sync::Arc::new(Reports::default());
    // A ThreadedProducer polls delivery reports on its own thread, as the gateway's events
    // producer does; the gateway's settings exactly (statistics included).
    let producer: ThreadedProducer<BenchContext> = options
        .producer_config()
        .create_with_context(BenchContext(reports.clone()))?;
    // Connect and fetch metadata before the clock starts, as the gateway has by the time
    // devices send.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;
    let headers: Vec<OwnedHeaders> = samples
        .iter()
        .map(|s| {
            s.headers
                .iter()
                .fold(OwnedHeaders::new_with_capacity(3), |h, (k, v)| {
                    h.insert(Header {
                        key: k,
                        value: Some(v),
                    })
                })
        })
        .collect();
    let start = Instant::now();
    for i in 0..args.messages {
        let idx = (i % samples.len() as u64) as usize;
        let s = &samples[idx];
        let mut record = BaseRecord::to(&args.topic)
            .key(&s.key[..])
            .payload(&s.payload[..])
            .headers(headers[idx].clone());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    while reports.ok.load(Relaxed) + reports.failed.load(Relaxed) < args.messages {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = reports.ok.load(Relaxed);
    Ok(BenchResult {
        messages: args.messages,
        delivered,
        failed: reports.failed.load(Relaxed),
        distinct_keys,
        avg_payload_bytes,
        elapsed_secs: elapsed,
        records_per_sec: delivered as f64 / elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_with_and_without_partitions() {
        assert_eq!(parse_topic("a.b-c_d:3"), Ok(("a.b-c_d".into(), 3)));
        assert_eq!(parse_topic("events"), Ok(("events".into(), 12)));
        assert!(parse_topic("x:0").is_err());
        assert!(parse_topic("x:99999").is_err());
        assert!(parse_topic(":3").is_err());
        assert!(parse_topic("bad name:3").is_err());
        assert!(parse_topic("x:y").is_err());
    }

    #[test]
    fn commands_parse_and_broker_ids_are_checked() {
        let p = |s| parse_command(s, 3);
        assert_eq!(p("down"), Ok(Some(MockCommand::Down(Brokers::All))));
        assert_eq!(p(" down all "), Ok(Some(MockCommand::Down(Brokers::All))));
        assert_eq!(p("up 2"), Ok(Some(MockCommand::Up(Brokers::One(2)))));
        assert_eq!(
            p("rtt 1 250"),
            Ok(Some(MockCommand::Rtt(
                Brokers::One(1),
                Duration::from_millis(250)
            )))
        );
        assert_eq!(p("quit"), Ok(Some(MockCommand::Quit)));
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("# comment"), Ok(None));
        assert!(p("down 4").is_err());
        assert!(p("down 0").is_err());
        assert!(p("up -1").is_err());
        assert!(p("rtt 1").is_err());
        assert!(p("rtt 1 x").is_err());
        assert!(p("rtt 1 999999999").is_err());
        assert!(p("down 1 2").is_err());
        assert!(p("reboot").is_err());
    }

    #[test]
    fn synthetic_messages_have_the_asked_size_and_keys() {
        let s = synthetic(5, 123);
        assert_eq!(s.len(), 5);
        assert!(s
            .iter()
            .all(|m| m.payload.len() == 123 && m.key.len() == 15));
        assert_eq!(s.iter().map(|m| &m.key).collect::<HashSet<_>>().len(), 5);
        // Not a constant fill: a payload of one repeated byte would compress to nothing.
        assert!(s[0].payload.iter().collect::<HashSet<_>>().len() > 50);
    }
}
