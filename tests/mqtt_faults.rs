//! MQTT delivery under faults with a real broker (Mosquitto): the broker is stopped and
//! started again in the middle of a steady stream of devices.

mod common;

use std::time::Duration;

use avlgate::proto::TelemetryEvent;
use common::fleet::{assert_nothing_acknowledged_was_lost, census, noticed, start_fleet};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_no_acknowledged_record() {
    let Some(mut mosq) = Mosquitto::start_with(true) else {
        return;
    };
    // A durable consumer: the broker keeps its subscription and queue across the restart.
    let mut sub =
        Subscriber::connect_with(mosq.addr, "avlgate/events/#", "durable-reader", false).await;
    let gw = TestGateway::start(avlgate::config::Settings {
        sink: Some(avlgate::config::SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{}", mosq.addr)),
        delivery_timeout_secs: Some(3),
        ..Default::default()
    })
    .await;
    let devices = start_fleet(gw.addr, 5, 20, 2);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    mosq.stop();
    let saw_down = noticed(|| !gw.publisher.sink().is_connected()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    mosq.start_again();
    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    assert!(saw_down, "the sink noticed the broker was gone");
    assert_eq!(
        reports.iter().map(|r| r.acked.len()).sum::<usize>(),
        5 * 20 * 2
    );
    let mut events = Vec::new();
    while let Some((_, p)) = sub.next(4).await {
        events.push(<TelemetryEvent as prost::Message>::decode(&p[..]).unwrap());
    }
    assert_nothing_acknowledged_was_lost(reports, 20, &census(&events));
    gw.stop().await;
}
