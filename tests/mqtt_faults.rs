//! MQTT delivery under faults with a real broker (Mosquitto): the broker is stopped and
//! started again in the middle of a steady stream of devices.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use avlgate::proto::{EventKind, TelemetryEvent};
use common::fleet::{run_device, RecordId};
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
    let addr = gw.addr;
    let devices: Vec<_> = (0..5)
        .map(|n| {
            tokio::spawn(run_device(
                addr,
                n,
                20,
                2,
                Duration::from_millis(100),
                Duration::from_secs(6),
                Duration::from_secs(90),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    mosq.stop();
    let mut saw_down = false;
    for _ in 0..50 {
        if !gw.publisher.sink().is_connected() {
            saw_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    mosq.start_again();
    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    assert!(saw_down, "the sink noticed the broker was gone");
    for r in &reports {
        assert_eq!(r.frames_acked, 20, "{} finished its stream: {r:?}", r.imei);
    }
    assert!(reports.iter().map(|r| r.retransmits).sum::<usize>() > 0);

    let mut census: BTreeMap<RecordId, usize> = BTreeMap::new();
    while let Some((_, p)) = sub.next(4).await {
        let e = <TelemetryEvent as prost::Message>::decode(&p[..]).unwrap();
        if e.kind == EventKind::Position as i32 {
            let t = e.device_time.unwrap();
            *census
                .entry((e.imei, t.seconds * 1000 + i64::from(t.nanos) / 1_000_000))
                .or_insert(0) += 1;
        }
    }
    let mut acked = BTreeSet::new();
    let mut resent = BTreeSet::new();
    for r in reports {
        acked.extend(r.acked);
        resent.extend(r.resent);
    }
    assert_eq!(acked.len(), 5 * 20 * 2);
    let missing: Vec<_> = acked.iter().filter(|id| !census.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but never published: {missing:?}"
    );
    let dups: Vec<_> = census
        .iter()
        .filter(|(id, n)| **n > 1 && !resent.contains(*id))
        .collect();
    assert!(dups.is_empty(), "duplicates of records sent once: {dups:?}");
    gw.stop().await;
}
