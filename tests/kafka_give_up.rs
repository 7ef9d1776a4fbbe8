//! A Kafka producer that cannot be rebuilt stops the gateway: it drains and `run` returns an
//! error (the binary exits non-zero), so the orchestrator restarts the pod. Here rebuilding
//! fails for a real reason: the CA file the TLS settings name was removed after start, so
//! librdkafka refuses to create the next producer. (Its own binary: it leaves the
//! `avlgate_kafka_client_failed{client="events"}` gauge at 1, which `kafka_fatal.rs` checks.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use avlgate::abort::Abort;
use avlgate::config::{Settings, SinkKind};
use avlgate::server::Gateway;
use avlgate::sink::kafka::client::{Rebuilds, Role};
use avlgate::sink::kafka::KafkaSink;
use common::kafka::{inject_fatal, mock_cluster};
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_that_cannot_be_rebuilt_stops_the_gateway_with_an_error() {
    let cluster = mock_cluster(1, &["avlgate.events"], 1);
    let dir = std::env::temp_dir().join(format!("avlgate-give-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(&ca, cert.cert.pem()).unwrap();

    let config = Settings {
        listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
        gateway_name: Some("give-up".into()),
        sink: Some(SinkKind::Kafka),
        kafka_brokers: Some(cluster.bootstrap_servers()),
        kafka_option: Some(vec![
            ("security.protocol".into(), "SSL".into()),
            ("ssl.ca.location".into(), ca.display().to_string()),
        ]),
        commands: Some(false),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let abort = Abort::new();
    let o = avlgate::server::kafka_options(&config, "avlgate-give-up".into());
    let rebuilds = Rebuilds::new(Role::Events, abort.clone()).with_backoff(vec![
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(200),
    ]);
    let sink = KafkaSink::with_rebuilds(&o, rebuilds).expect("the CA file is there at start");
    let shutdown = CancellationToken::new();
    let gw = Gateway::bind_with_sink(
        config,
        Arc::new(sink.clone()),
        shutdown.clone(),
        CancellationToken::new(),
        abort.clone(),
    )
    .await
    .unwrap();
    let readiness = gw.readiness();
    let run = tokio::spawn(gw.run());
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::remove_file(&ca).unwrap();
    let (_, producer) = sink.current_producer();
    inject_fatal(producer.client());
    drop(producer);
    let mut said_why = false;
    for _ in 0..40 {
        if readiness.check().is_err_and(|why| why.contains("fatal")) {
            said_why = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(said_why, "/readyz said why while rebuilding");

    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the gateway stopped by itself")
        .unwrap();
    let err = result.expect_err("run ends with an error, so the process exits non-zero");
    assert!(
        err.to_string()
            .contains("could not be rebuilt after 3 attempts"),
        "{err}"
    );
    assert!(sink.health().failed(), "the producer stays dead");
    let _ = std::fs::remove_dir_all(&dir);
}
