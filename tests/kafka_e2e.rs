//! Kafka end to end, against librdkafka's mock cluster (real Kafka protocol over loopback):
//! records read back with a real consumer, and broker faults in the middle of a stream.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use avlgate::proto::{EventKind, TelemetryEvent};
use avlgate::protocol::teltonika::samples;
use common::fleet::{assert_nothing_acknowledged_was_lost, census, noticed, start_fleet};
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
async fn records_are_keyed_by_imei_with_headers_and_acked_after_delivery() {
    let cluster = mock_cluster(3, &[EVENTS], 4);
    let bootstrap = cluster.bootstrap_servers();
    let gw = TestGateway::kafka(&bootstrap, 10).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]), "login acked");
    dev.send(&[h(samples::CODEC8E), h(samples::CODEC16)].concat())
        .await;
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 2]));
    assert!(
        gw.publisher.sink().is_connected(),
        "statistics saw the brokers"
    );

    let got = tokio::task::spawn_blocking(move || {
        read_all(&bootstrap, EVENTS, 4, Duration::from_secs(3))
    })
    .await
    .unwrap();
    let events = events_of(&got);
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::SessionOpened as i32,
            EventKind::Status as i32,
            EventKind::Status as i32,
            EventKind::Status as i32
        ],
        "one device's records stay in order in one partition"
    );
    let partitions: BTreeSet<i32> = got.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 1, "key = IMEI keeps one partition");
    for (r, e) in got.iter().zip(&events) {
        assert_eq!(r.key, IMEI);
        assert_eq!(e.imei, IMEI);
        assert_eq!(r.headers["avlgate-protocol"], "teltonika");
        assert_eq!(r.headers["avlgate-schema"], "avlgate.v1.TelemetryEvent");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_no_acknowledged_record() {
    let cluster = mock_cluster(1, &[EVENTS], 3);
    let bootstrap = cluster.bootstrap_servers();
    // A short delivery deadline so frames caught by the outage fail (no ACK) and get resent.
    let gw = TestGateway::kafka(&bootstrap, 3).await;
    let devices = start_fleet(gw.addr, 6, 25, 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cluster.broker_down(1).unwrap();
    // The sink notices (statistics / all-brokers-down) and readiness drops.
    let saw_down = noticed(|| !gw.publisher.sink().is_connected()).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.broker_up(1).unwrap();
    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    assert!(saw_down, "the sink reported the broker outage");
    assert!(gw.publisher.sink().is_connected(), "and the recovery");
    assert_eq!(
        reports.iter().map(|r| r.acked.len()).sum::<usize>(),
        6 * 25 * 3
    );
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&b, EVENTS, 3, Duration::from_secs(3)))
        .await
        .unwrap();
    assert_nothing_acknowledged_was_lost(reports, 25, &census(&events_of(&got)));
    gw.stop().await;
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
