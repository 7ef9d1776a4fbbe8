//! Commands over MQTT: two gateway pods sharing a real Mosquitto, and the embedded broker.
//! (Kafka's are in `kafka_broker.rs`, against a real broker process.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use avlgate::config::{Settings, SinkKind};
use avlgate::proto::{CommandResult, CommandStatus};
use common::commands::*;
use common::*;
use prost::Message;

/// The same over MQTT with a real broker: two pods, commands on `avlgate/commands/<imei>`
/// (JSON here, as a backend may send), results on `avlgate/command-results/<imei>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_commands_across_two_pods_with_mosquitto() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let mqtt = |name: &str| Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{}", mosq.addr)),
        gateway_name: Some(name.into()),
        command_reply_timeout_secs: Some(5),
        ..Default::default()
    };
    let a = TestGateway::start(mqtt("pod-a")).await;
    let b = TestGateway::start(mqtt("pod-b")).await;
    let mut results = Subscriber::connect(mosq.addr, "avlgate/command-results/#").await;
    let backend = Subscriber::connect(mosq.addr, "avlgate/nothing").await;
    let imei = "356307042441047";
    let mut dev = command_device(b.addr, imei).await;
    // The pods' command subscriptions are made at connect time.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let json = serde_json::to_vec(&command("m-1", imei, Some("getinfo"), 60)).unwrap();
    assert!(json.starts_with(b"{"));
    backend
        .publish(&format!("avlgate/commands/{imei}"), json)
        .await;
    let offline = command("m-2", "356000000000017", Some("getver"), 1).encode_to_vec();
    backend
        .publish("avlgate/commands/356000000000017", offline)
        .await;
    teltonika_answer(&mut dev, "getinfo", "FW:03.28").await;
    // Written once: nothing more arrives on the device.
    assert_eq!(
        dev.read_exact(1, 2).await,
        None,
        "the command is written once"
    );

    let mut got: BTreeMap<String, Vec<CommandResult>> = BTreeMap::new();
    while let Some((topic, p)) = results.next(5).await {
        let r = CommandResult::decode(&p[..]).unwrap();
        assert_eq!(topic, format!("avlgate/command-results/{}", r.imei));
        got.entry(r.command_id.clone()).or_default().push(r);
    }
    let statuses = |id: &str| got[id].iter().map(|r| r.status).collect::<Vec<_>>();
    assert_eq!(
        statuses("m-1"),
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    assert_eq!(terminal(&got["m-1"])[0].gateway, "pod-b");
    assert_eq!(statuses("m-2"), vec![CommandStatus::Expired as i32]);
    a.stop().await;
    b.stop().await;
}

/// The README's tour: the embedded broker (rumqttd) carries commands too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_through_the_embedded_broker() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let imei = "350000000000006";
    let mut dev = command_device(gw.addr, imei).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    results
        .publish(
            &format!("avlgate/commands/{imei}"),
            br#"{"commandId":"c-1","imei":"350000000000006","text":"getinfo"}"#.to_vec(),
        )
        .await;
    teltonika_answer(&mut dev, "getinfo", "RTC:ok").await;
    assert_sent_then_responded(&mut results).await;
    gw.stop().await;
}

/// MQTT keeps pending commands as retained messages: a pod restarted before the device shows
/// up still delivers, and a delivered command is not retained any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_pending_command_survives_a_pod_restart() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let settings = || Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{}", mosq.addr)),
        gateway_name: Some("pod-a".into()),
        ..Default::default()
    };
    let a = TestGateway::start(settings()).await;
    let backend = Subscriber::connect(mosq.addr, "avlgate/nothing").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let imei = "356307042441054";
    backend
        .publish(
            &format!("avlgate/commands/{imei}"),
            command("r-1", imei, Some("getinfo"), 120).encode_to_vec(),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.stop().await;
    let a2 = TestGateway::start(settings()).await;
    let mut results = Subscriber::connect(mosq.addr, "avlgate/command-results/#").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut dev = command_device(a2.addr, imei).await;
    teltonika_answer(&mut dev, "getinfo", "ok").await;
    assert_sent_then_responded(&mut results).await;
    // Nothing pending is retained any more.
    let mut pending = Subscriber::connect(mosq.addr, "avlgate/pending/#").await;
    if let Some((t, p)) = pending.next(2).await {
        assert!(p.is_empty(), "still retained on {t}");
    }
    a2.stop().await;
}
