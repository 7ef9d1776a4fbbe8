//! librdkafka **fatal** errors, made deterministic: the mock cluster injects the broker answer
//! that makes the idempotent producer fatal (an out-of-order sequence on the head-of-line
//! request), and `rd_kafka_test_fatal_error` (librdkafka's own hook for exactly this) raises
//! a fatal error in the command flow's clients. Each client must be rebuilt in place, with
//! readiness and `avlgate_kafka_client_failed` saying so meanwhile, and nothing unconfirmed
//! acknowledged.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use avlgate::command::bus::{ClaimWriter, Entry, KafkaBus};
use avlgate::config::Settings;
use avlgate::proto::{ClaimPurpose, Command, CommandClaim, TelemetryEvent};
use avlgate::sink::kafka::client::{Rebuilds, Role};
use avlgate::sink::kafka::{KafkaOptions, KafkaSink};
use avlgate::sink::Format;
use common::fleet::{census, run_device};
use common::kafka::{inject_fatal, mock_cluster, read_all};
use common::*;
use prost::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::ClientConfig;

const EVENTS: &str = "avlgate.events";
const COMMANDS: &str = "avlgate.commands";

fn options(bootstrap: &str, delivery_timeout: Duration) -> KafkaOptions {
    KafkaOptions {
        brokers: bootstrap.into(),
        options: vec![],
        events_topic: EVENTS.into(),
        command_results_topic: "avlgate.command-results".into(),
        client_id: "avlgate-fatal-test".into(),
        message_timeout: delivery_timeout,
        format: Format::Protobuf,
    }
}

fn metric(body: &str, name_and_labels: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn events_of(records: &[common::kafka::Consumed]) -> Vec<TelemetryEvent> {
    records
        .iter()
        .map(|r| TelemetryEvent::decode(&r.payload[..]).expect("protobuf TelemetryEvent"))
        .collect()
}

/// The real librdkafka path: the broker answers a produce request with an out-of-order
/// sequence for the head-of-line batch, the idempotent producer can no longer vouch for its
/// records and raises a fatal error. Devices are sending throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_is_rebuilt_in_place_and_nothing_unconfirmed_is_acked() {
    let cluster = mock_cluster(1, &[EVENTS], 2);
    let bootstrap = cluster.bootstrap_servers();
    // The first rebuild waits 1 s so the window in which the producer is dead is observable.
    let rebuilds = Rebuilds::new(Role::Events, avlgate::abort::Abort::new())
        .with_backoff(vec![Duration::from_secs(1); 5]);
    let sink = KafkaSink::with_rebuilds(&options(&bootstrap, Duration::from_secs(10)), rebuilds)
        .expect("producer");
    let gw = TestGateway::with_sink(
        Settings {
            delivery_timeout_secs: Some(10),
            ..Default::default()
        },
        Arc::new(sink.clone()),
        |_| {},
    )
    .await;
    let ops = gw.ops().await;
    assert!(
        eventually(10, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready before the fault"
    );
    let (first_generation, first) = sink.current_producer();

    // Six devices, 20 frames of 3 records each, a frame every 100 ms.
    let devices: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(run_device(
                gw.addr,
                n,
                20,
                3,
                Duration::from_millis(100),
                Duration::from_secs(6),
                Duration::from_secs(60),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );

    // The fatal error is seen, readiness and the metric say so while the producer is dead.
    let mut saw_503 = None;
    let mut saw_gauge = false;
    for _ in 0..100 {
        let (status, body) = http_get(ops, "/readyz").await;
        if status == 503 && body.contains("fatal") {
            saw_503 = Some(body);
            let (_, metrics) = http_get(ops, "/metrics").await;
            saw_gauge =
                metric(&metrics, r#"avlgate_kafka_client_failed{client="events"}"#) == Some(1.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fatal = first.client().fatal_error();
    assert!(
        matches!(fatal, Some((RDKafkaErrorCode::OutOfOrderSequenceNumber, _))),
        "librdkafka raised the fatal error: {fatal:?}"
    );
    assert!(
        saw_503.is_some(),
        "/readyz said 503 while the producer was dead"
    );
    assert!(
        saw_gauge,
        "avlgate_kafka_client_failed{{client=events}} was 1"
    );
    drop(first);

    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    // Rebuilt in place: a new generation, ready again, the gauge back to 0.
    assert!(sink.current_producer().0 > first_generation, "rebuilt");
    assert!(
        eventually(10, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready again with the new producer"
    );
    let (_, metrics) = http_get(ops, "/metrics").await;
    assert_eq!(
        metric(&metrics, r#"avlgate_kafka_client_failed{client="events"}"#),
        Some(0.0)
    );
    assert!(
        metric(
            &metrics,
            r#"avlgate_kafka_client_rebuilds_total{client="events",outcome="ok"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    for r in &reports {
        assert_eq!(r.frames_acked, 20, "{} finished its stream: {r:?}", r.imei);
    }

    // Count by consuming (the mock numbers offsets per batch): every acknowledged record is
    // in the topic; records appear twice only if their frame was resent.
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&b, EVENTS, 2, Duration::from_secs(3)))
        .await
        .unwrap();
    let census = census(&events_of(&got));
    let mut acked = BTreeSet::new();
    let mut resent = BTreeSet::new();
    for r in reports {
        acked.extend(r.acked);
        resent.extend(r.resent);
    }
    assert_eq!(acked.len(), 6 * 20 * 3);
    let missing: Vec<_> = acked.iter().filter(|id| !census.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not published: {missing:?}"
    );
    let dups: Vec<_> = census
        .iter()
        .filter(|(id, n)| **n > 1 && !resent.contains(*id))
        .collect();
    assert!(dups.is_empty(), "duplicates of records sent once: {dups:?}");
    gw.stop().await;
}

fn command(id: &str, imei: &str) -> Command {
    Command {
        command_id: id.into(),
        imei: imei.into(),
        body: Some(avlgate::proto::command::Body::Text("getinfo".into())),
        ttl_secs: 60,
        ..Default::default()
    }
}

async fn next_entry(rx: &mut tokio::sync::mpsc::Receiver<Entry>, secs: u64) -> Option<Entry> {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .ok()
        .flatten()
}

/// The command flow's two clients: after a fatal error each is rebuilt, readiness says so
/// meanwhile, the reader resumes where it was (nothing read twice, nothing skipped) and
/// claims are written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_clients_are_rebuilt_and_the_reader_resumes_where_it_was() {
    let cluster = mock_cluster(1, &[COMMANDS], 2);
    let bootstrap = cluster.bootstrap_servers();
    let o = options(&bootstrap, Duration::from_secs(10));
    let mut consumer = ClientConfig::new();
    consumer
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "avlgate-fatal-test")
        .set("enable.auto.commit", "false");
    let abort = avlgate::abort::Abort::new();
    let pause = || vec![Duration::from_millis(700); 5];
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (bus, mut rx) = KafkaBus::with_rebuilds(
        &o.producer_config(),
        consumer,
        COMMANDS.into(),
        Duration::from_secs(600),
        shutdown.clone(),
        [
            Rebuilds::new(Role::CommandClaims, abort.clone()).with_backoff(pause()),
            Rebuilds::new(Role::CommandReader, abort.clone()).with_backoff(pause()),
        ],
    )
    .unwrap();
    let [claims_health, reader_health] = bus.health();
    let backend: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let send = |id: &'static str| {
        let backend = backend.clone();
        async move {
            let payload = command(id, IMEI).encode_to_vec();
            backend
                .send(
                    FutureRecord::to(COMMANDS).key(IMEI).payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .expect("command produced");
        }
    };
    send("c-1").await;
    match next_entry(&mut rx, 15).await {
        Some(Entry::Command(c)) => assert_eq!(c.command_id, "c-1"),
        other => panic!("expected c-1, got {other:?}"),
    }

    // The reader dies: not ready until its successor is in place, which resumes after c-1.
    inject_fatal(bus.reader().client());
    assert!(
        eventually(5, || async { reader_health.check().is_err() }).await,
        "readiness noticed the dead reader"
    );
    assert!(reader_health.check().unwrap_err().contains("reader"));
    assert!(
        eventually(10, || async { reader_health.check().is_ok() }).await,
        "reader rebuilt"
    );
    assert_eq!(reader_health.generation(), 1);
    send("c-2").await;
    match next_entry(&mut rx, 15).await {
        Some(Entry::Command(c)) => assert_eq!(c.command_id, "c-2", "c-1 was not read twice"),
        other => panic!("expected c-2, got {other:?}"),
    }

    // The claims producer dies: a claim proposed meanwhile is refused (the ledger proposes
    // again), one proposed after the rebuild is written and read back.
    let (_, claims) = bus.claims_producer();
    inject_fatal(claims.client());
    assert!(
        eventually(5, || async { claims_health.check().is_err() }).await,
        "readiness noticed the dead claims producer"
    );
    drop(claims);
    assert!(
        eventually(10, || async { claims_health.check().is_ok() }).await,
        "claims producer rebuilt"
    );
    assert_eq!(bus.claims_producer().0, 1);
    bus.propose(CommandClaim {
        command_id: "c-2".into(),
        imei: IMEI.into(),
        purpose: ClaimPurpose::Deliver as i32,
        ..Default::default()
    });
    match next_entry(&mut rx, 15).await {
        Some(Entry::Claim(c)) => assert_eq!(c.command_id, "c-2"),
        other => panic!("expected the claim, got {other:?}"),
    }
    assert!(next_entry(&mut rx, 2).await.is_none(), "nothing else");
    assert_eq!(abort.reason(), None);
    shutdown.cancel();
}
