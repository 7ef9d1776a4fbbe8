//! Kafka test support: librdkafka's mock cluster (in-process, real Kafka wire protocol on
//! 127.0.0.1) and a real consumer reading a topic back from the beginning.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};

pub type Cluster = MockCluster<'static, DefaultProducerContext>;

/// Raises a fatal error in `client` through librdkafka's own test hook
/// (`rd_kafka_test_fatal_error`): the client behaves exactly as after a real fatal error
/// (error callback, queued records purged, every later produce refused).
pub fn inject_fatal<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>) {
    use rdkafka::bindings::{rd_kafka_resp_err_t, rd_kafka_test_fatal_error};
    let reason = std::ffi::CString::new("injected by the test").unwrap();
    // SAFETY: the pointer is a live client owned by `client`, and the reason a valid C string
    // for the duration of the call (librdkafka copies it).
    let err = unsafe {
        rd_kafka_test_fatal_error(
            client.native_ptr(),
            rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
            reason.as_ptr(),
        )
    };
    assert_eq!(err, rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
}

/// A mock cluster of `brokers` brokers with `topics` created (`partitions` each).
pub fn mock_cluster(brokers: i32, topics: &[&str], partitions: i32) -> Cluster {
    let c = MockCluster::new(brokers).expect("mock cluster");
    for t in topics {
        c.create_topic(t, partitions, 1).expect("create topic");
    }
    assert!(
        c.bootstrap_servers()
            .split(',')
            .all(|b| b.starts_with("127.0.0.1:")),
        "the mock cluster listens on loopback only"
    );
    c
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub partition: i32,
}

/// Reads every record of `topic` (all `partitions`) from the beginning until nothing new
/// arrived for `quiet`.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32, quiet: Duration) -> Vec<Consumed> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "avlgate-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = std::time::Instant::now();
    while last.elapsed() < quiet {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        headers.insert(
                            hd.key.to_string(),
                            String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                        );
                    }
                }
                out.push(Consumed {
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    partition: m.partition(),
                });
                last = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}
