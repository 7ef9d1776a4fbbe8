//! Kafka faults only librdkafka's mock cluster can inject: chosen broker answers to produce
//! requests (retriable ones retried, permanent ones not acknowledged). Records are read back
//! with a real consumer and counted by consuming (the mock numbers offsets per batch).
//! Delivery, broker stalls and restarts, and commands across pods run against a real broker
//! process in `kafka_broker.rs`; fatal errors in `kafka_fatal.rs`.

mod common;

use std::time::Duration;

use avlgate::proto::{EventKind, TelemetryEvent};
use avlgate::protocol::teltonika::samples;
use common::kafka::{mock_cluster, read_all};
use common::*;
use prost::Message;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const EVENTS: &str = "avlgate.events";

fn events_of(records: &[common::kafka::Consumed]) -> Vec<TelemetryEvent> {
    records
        .iter()
        .map(|r| TelemetryEvent::decode(&r.payload[..]).expect("protobuf TelemetryEvent"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retriable_produce_errors_are_retried_and_fatal_ones_are_not_acked() {
    let cluster = mock_cluster(1, &[EVENTS], 1);
    let bootstrap = cluster.bootstrap_servers();
    let gw = TestGateway::kafka(&bootstrap, 5).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]));

    // Two transient errors: librdkafka retries (idempotently) and the frame is acked.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    );
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 1]));

    // A permanent error: the record is not delivered, the frame is not acknowledged.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    dev.send(&h(samples::CODEC8E)).await;
    assert_eq!(
        dev.read_exact(4, 10).await,
        None,
        "no ACK for a rejected record"
    );

    let got = tokio::task::spawn_blocking(move || {
        read_all(&bootstrap, EVENTS, 1, Duration::from_secs(3))
    })
    .await
    .unwrap();
    let kinds: Vec<i32> = events_of(&got).iter().map(|e| e.kind).collect();
    // The undelivered frame ends the session (the device reconnects and resends), hence the
    // session-closed event after the one position.
    assert_eq!(
        kinds,
        vec![
            EventKind::SessionOpened as i32,
            EventKind::Status as i32,
            EventKind::SessionClosed as i32
        ],
        "the retried record once, the rejected one not at all"
    );
    gw.stop().await;
}

/// The mock cluster's broker goes down after a command was written and before the device
/// answers; the answer's frame cannot be delivered (the session closes), the result waits in
/// the outbox and its claims are made again, and once the broker is back the command has
/// exactly one terminal result, RESPONDED. Nothing is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_during_a_broker_outage_is_reported_once_the_broker_is_back() {
    use common::commands::*;
    avlgate::ops::install_prometheus().unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("avlgate=debug")
        .try_init();
    let cluster = mock_cluster(1, &[EVENTS, COMMANDS, RESULTS], 1);
    let bootstrap = cluster.bootstrap_servers();
    let gw = TestGateway::kafka(&bootstrap, 5).await;
    let ops = gw.ops().await;
    let backend: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let imei = "356307042441146";
    let mut dev = command_device(gw.addr, imei).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    send_command(&backend, "outage-1", imei, Some("getinfo"), 600).await;
    assert_eq!(
        teltonika_read_command(&mut dev, 20).await.as_deref(),
        Some(&b"getinfo"[..])
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.broker_down(1).unwrap();
    teltonika_reply(&mut dev, "RTC:ok").await;
    // Longer than the delivery deadline and the claims' re-proposal period.
    tokio::time::sleep(Duration::from_secs(15)).await;
    cluster.broker_up(1).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let b = bootstrap.clone();
        let got = tokio::task::spawn_blocking(move || results_in(&b, 1))
            .await
            .unwrap();
        if got
            .get("outage-1")
            .is_some_and(|rs| !terminal(rs).is_empty())
        {
            break got;
        }
        assert!(tokio::time::Instant::now() < deadline, "no result: {got:?}");
    };
    let rs = &got["outage-1"];
    assert_eq!(terminal(rs).len(), 1, "{rs:?}");
    assert_eq!(
        terminal(rs)[0].status,
        avlgate::proto::CommandStatus::Responded as i32
    );
    assert_eq!(
        rs.iter()
            .filter(|r| r.status == avlgate::proto::CommandStatus::Responded as i32)
            .count(),
        1
    );
    assert_eq!(command_drops(ops).await, 0.0);
    gw.stop().await;
}
