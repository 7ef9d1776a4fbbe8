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

/// An MQTT broker keeps nothing for a topic nobody subscribed to: a pod is ready only once
/// its command subscriptions are acknowledged, so a command a backend publishes the moment
/// the only pod reports ready (no sleep) is kept, and reaches the device that connects later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_command_published_as_soon_as_the_pod_is_ready_is_not_lost() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let backend = Subscriber::connect(mosq.addr, "avlgate/nothing").await;
    let mut results = Subscriber::connect(mosq.addr, "avlgate/command-results/#").await;
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{}", mosq.addr)),
        ..Default::default()
    })
    .await;
    assert!(gw.ready().await, "ready: {:?}", gw.readiness.check());
    let imei = "356307042441062";
    backend
        .publish(
            &format!("avlgate/commands/{imei}"),
            command("early-1", imei, Some("getinfo"), 120).encode_to_vec(),
        )
        .await;
    let mut dev = command_device(gw.addr, imei).await;
    teltonika_answer(&mut dev, "getinfo", "ok").await;
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

async fn subscriber(
    broker: std::net::SocketAddr,
    filter: &str,
    login: Option<(&str, &str)>,
) -> Subscriber {
    match login {
        Some((u, p)) => Subscriber::connect_as(broker, filter, u, p).await,
        None => Subscriber::connect(broker, filter).await,
    }
}

/// Malformed commands, each REJECTED exactly once on a short topic, nothing retained, nothing
/// written to the device; then a valid command still goes through.
async fn malformed_commands_are_rejected_once(
    gw: TestGateway,
    broker: std::net::SocketAddr,
    login: Option<(&str, &str)>,
) {
    let dev_imei = "862000000000031";
    let mut everything = subscriber(broker, "#", login).await;
    let backend = subscriber(broker, "avlgate/nothing", login).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(format!("#L#{dev_imei};NA\r\n").as_bytes()).await;
    assert_eq!(dev.read_line(15).await.as_deref(), Some("#AL#1\r\n"));
    // The command bus connects on its own schedule, and MQTT drops what is published before it
    // subscribed: probe (a command without a body, under a new id each second) until one is
    // answered, then let the stragglers pass.
    let mut up = false;
    for i in 0..15 {
        let id = format!("bus-probe-{i}");
        let probe = serde_json::json!({"commandId": id, "imei": dev_imei});
        backend
            .publish(
                &format!("avlgate/commands/{dev_imei}"),
                probe.to_string().into_bytes(),
            )
            .await;
        while let Some((topic, p)) = everything.next(1).await {
            if topic.starts_with("avlgate/command-results/")
                && CommandResult::decode(&p[..]).is_ok_and(|r| r.command_id == id)
            {
                up = true;
            }
        }
        if up {
            break;
        }
    }
    assert!(up, "the gateway's command bus never read a command");

    let to_dev = format!("avlgate/commands/{dev_imei}");
    let long_imei = "1".repeat(20_000);
    let json = |id: &str, imei: &str, text: &str| {
        serde_json::to_vec(&serde_json::json!({"commandId": id, "imei": imei, "text": text}))
            .unwrap()
    };
    // (command id, topic, payload, where its rejection must be published)
    let invalid = format!(
        "avlgate/command-results/{}",
        avlgate::device_id::INVALID_KEY
    );
    let own = format!("avlgate/command-results/{dev_imei}");
    let bad: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "slash",
            to_dev.clone(),
            json("slash", "a/b/c", "getinfo"),
            &own,
        ),
        ("plus", to_dev.clone(), json("plus", "86+", "getinfo"), &own),
        ("hash", to_dev.clone(), json("hash", "86#", "getinfo"), &own),
        (
            "nul",
            to_dev.clone(),
            json("nul", "86200000000003\0", "getinfo"),
            &own,
        ),
        (
            "other-device",
            to_dev.clone(),
            json("other-device", "356307042441013", "getinfo"),
            &own,
        ),
        (
            "text-nul",
            to_dev.clone(),
            json("text-nul", dev_imei, "get\0info"),
            &own,
        ),
        (
            "text-2028",
            to_dev.clone(),
            json("text-2028", dev_imei, "a\u{2028}#M#b"),
            &own,
        ),
        (
            "text-0085",
            to_dev.clone(),
            json("text-0085", dev_imei, "a\u{0085}b"),
            &own,
        ),
        (
            "text-crlf",
            to_dev.clone(),
            json("text-crlf", "", "a\r\n#M#b"),
            &own,
        ),
        (
            "long-topic",
            format!("avlgate/commands/{long_imei}"),
            json("long-topic", "", "getinfo"),
            &invalid,
        ),
        (
            "long-body",
            to_dev.clone(),
            json("long-body", &long_imei, "getinfo"),
            &own,
        ),
        (
            "unicode-topic",
            "avlgate/commands/ünit".into(),
            json("unicode-topic", "", "getinfo"),
            &invalid,
        ),
    ];
    for (_, topic, payload, _) in &bad {
        backend.publish(topic, payload.clone()).await;
    }
    backend
        .publish(&to_dev, json("good-1", "", "hello driver"))
        .await;
    assert_eq!(
        dev.read_line(20).await.as_deref(),
        Some("#M#hello driver\r\n"),
        "the valid command after the malformed ones is written"
    );
    assert_eq!(
        dev.read_line(2).await,
        None,
        "nothing else reached the device"
    );

    // Every message on the broker, until it is quiet for 3 s.
    let mut results: BTreeMap<String, Vec<(String, CommandResult)>> = BTreeMap::new();
    let mut topics = Vec::new();
    while let Some((topic, p)) = everything.next(3).await {
        if topic.starts_with("avlgate/command-results/") {
            let r = CommandResult::decode(&p[..]).unwrap();
            results
                .entry(r.command_id.clone())
                .or_default()
                .push((topic.clone(), r));
        }
        topics.push(topic);
    }
    for (id, _, _, expected_topic) in &bad {
        let rs = results
            .get(*id)
            .unwrap_or_else(|| panic!("{id}: no result; got {results:?}"));
        assert_eq!(rs.len(), 1, "{id}: exactly one result: {rs:?}");
        let (topic, r) = &rs[0];
        assert_eq!(r.status, CommandStatus::Rejected as i32, "{id}: {r:?}");
        assert!(r.terminal);
        assert_eq!(topic, expected_topic, "{id}");
        assert!(r.reason.len() < 300, "{id}: bounded reason");
    }
    let good: Vec<i32> = results["good-1"].iter().map(|(_, r)| r.status).collect();
    assert_eq!(good, vec![CommandStatus::Sent as i32]);
    // Only the backend's own 20 kB command topic was long; nothing the gateway published is.
    let long: Vec<_> = topics
        .iter()
        .filter(|t| t.len() > 200 && !t.starts_with("avlgate/commands/"))
        .map(|t| t.len())
        .collect();
    assert!(long.is_empty(), "long topics published: {long:?}");
    // Nothing stays retained under pending/ (a new subscriber gets retained messages).
    let mut pending = subscriber(broker, "avlgate/pending/#", login).await;
    while let Some((t, p)) = pending.next(2).await {
        assert!(p.is_empty(), "still retained on {t}");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_are_rejected_once_with_mosquitto() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let gw = TestGateway::mqtt(mosq.addr).await;
    malformed_commands_are_rejected_once(gw, mosq.addr, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commands_are_rejected_once_with_the_embedded_broker() {
    let broker: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Embedded),
        embedded_mqtt_listen: Some(broker),
        embedded_mqtt_password: Some("s3cret".into()),
        ..Default::default()
    })
    .await;
    // The broker starts on its own thread: wait until a client gets in.
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(broker).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "embedded broker listening");
    malformed_commands_are_rejected_once(gw, broker, Some(("avlgate", "s3cret"))).await;
}

/// Publishes a canonical JSON command on the device's command topic.
async fn publish_json(backend: &Subscriber, imei: &str, json: serde_json::Value) {
    backend
        .publish(
            &format!("avlgate/commands/{imei}"),
            json.to_string().into_bytes(),
        )
        .await;
}

/// One typed command per protocol, end to end: each device gets its protocol's own text (a
/// GT06 model through its profile's command template), Wialon IPS refuses with a reason and
/// gets nothing, and each command gets its one terminal result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_commands_reach_each_protocol_as_its_own_text() {
    let broker = embedded_broker();
    let dir = std::env::temp_dir().join(format!("avlgate-typed-{}", free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let profiles = dir.join("profiles.toml");
    let dyd_imei = "864717003283599";
    std::fs::write(
        &profiles,
        format!(
            "[profiles.gt06-dyd]\nextends = \"gt06\"\n[profiles.gt06-dyd.commands]\n\
             engine_stop = \"DYD,000000#\"\n[[devices]]\nprofile = \"gt06-dyd\"\nimeis = [\"{dyd_imei}\"]\n"
        ),
    )
    .unwrap();
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{broker}")),
        device_profiles: Some(profiles),
        ..Default::default()
    })
    .await;
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let backend = Subscriber::connect(broker, "avlgate/nothing").await;
    let tel_imei = "356307042441088";
    let gt_imei = "864717003283581";
    let wia_imei = "862000000000044";
    let mut tel = command_device(gw.addr, tel_imei).await;
    let mut gt = gt06_device(gw.addr, gt_imei).await;
    let mut dyd = gt06_device(gw.addr, dyd_imei).await;
    let mut wia = Device::connect(gw.addr).await;
    wia.send(format!("#L#{wia_imei};NA\r\n").as_bytes()).await;
    assert_eq!(wia.read_line(15).await.as_deref(), Some("#AL#1\r\n"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    use serde_json::json;
    publish_json(
        &backend,
        tel_imei,
        json!({"commandId": "tel-stop", "type": "COMMAND_TYPE_ENGINE_STOP"}),
    )
    .await;
    publish_json(
        &backend,
        tel_imei,
        json!({"commandId": "tel-out", "type": "COMMAND_TYPE_OUTPUT_SET", "outputIndex": 2, "outputOn": true}),
    )
    .await;
    publish_json(
        &backend,
        gt_imei,
        json!({"commandId": "gt-where", "type": "COMMAND_TYPE_POSITION_REQUEST"}),
    )
    .await;
    publish_json(
        &backend,
        dyd_imei,
        json!({"commandId": "gt-dyd", "type": "COMMAND_TYPE_ENGINE_STOP"}),
    )
    .await;
    publish_json(
        &backend,
        wia_imei,
        json!({"commandId": "wia-stop", "type": "COMMAND_TYPE_ENGINE_STOP"}),
    )
    .await;

    // Teltonika: one command at a time, in order.
    let first = teltonika_read_command(&mut tel, 20)
        .await
        .expect("a command");
    assert_eq!(String::from_utf8_lossy(&first), "setdigout 1");
    teltonika_reply(&mut tel, "DOUT1:1").await;
    let second = teltonika_read_command(&mut tel, 20)
        .await
        .expect("a command");
    assert_eq!(String::from_utf8_lossy(&second), "setdigout ?1");
    teltonika_reply(&mut tel, "DOUT2:1").await;
    assert_eq!(gt06_answer(&mut gt, "Current position!").await, "WHERE#");
    assert_eq!(gt06_answer(&mut dyd, "DYD=Success!").await, "DYD,000000#");
    assert_eq!(
        wia.read_line(3).await,
        None,
        "nothing written to the Wialon device"
    );

    let mut got = BTreeMap::new();
    for id in ["tel-stop", "tel-out", "gt-where", "gt-dyd", "wia-stop"] {
        until_terminal(&mut results, &mut got, id, 20).await;
    }
    for (id, rs) in mqtt_results(&mut results, 2).await {
        got.entry(id).or_default().extend(rs);
    }
    for id in ["tel-stop", "tel-out", "gt-where", "gt-dyd"] {
        assert_eq!(
            statuses(&got[id]),
            vec![CommandStatus::Sent, CommandStatus::Responded],
            "{id}"
        );
    }
    assert_eq!(
        terminal(&got["gt-dyd"])[0].response,
        Some(avlgate::proto::command_result::Response::ResponseText(
            "DYD=Success!".into()
        ))
    );
    assert_eq!(statuses(&got["wia-stop"]), vec![CommandStatus::Rejected]);
    let why = &got["wia-stop"][0].reason;
    assert!(why.contains("ENGINE_STOP") && why.contains("#M#"), "{why}");
    gw.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// A Teltonika device over UDP: the command goes to the address of its latest datagram in the
/// UDP channel form, and its Codec 12 answer, a datagram too, is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_device_receives_a_command_and_its_answer_is_reported() {
    use avlgate::protocol::teltonika::{command as tcmd, frame as tframe, samples};
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let imei = "356307042441096";
    let dev = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let avl = h(samples::CODEC8);
    let data = &avl[8..avl.len() - 4];
    dev.send_to(&tframe::encode_udp(1, 1, imei, data), gw.addr)
        .await
        .unwrap();
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(10), dev.recv(&mut buf))
        .await
        .expect("the AVL ACK")
        .unwrap();
    assert_eq!(&buf[..n], &[0x00, 0x05, 0x00, 0x01, 0x01, 0x01, 0x01]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    results
        .publish(
            &format!("avlgate/commands/{imei}"),
            command("udp-1", imei, Some("getinfo"), 60).encode_to_vec(),
        )
        .await;
    let n = tokio::time::timeout(Duration::from_secs(20), dev.recv(&mut buf))
        .await
        .expect("a command datagram")
        .unwrap();
    let d = tframe::parse_udp(&buf[..n]).expect("the UDP channel form");
    assert_eq!(d.imei, imei);
    assert_eq!(
        tcmd::parse(d.data),
        Ok(tcmd::Message::Command {
            text: b"getinfo".to_vec()
        })
    );
    dev.send_to(
        &tframe::encode_udp(2, 2, imei, &tcmd::encode_codec12(0x06, b"RTC:ok")),
        gw.addr,
    )
    .await
    .unwrap();
    let mut got = BTreeMap::new();
    let done = until_terminal(&mut results, &mut got, "udp-1", 20).await;
    assert_eq!(done.status, CommandStatus::Responded as i32);
    assert_eq!(
        done.response,
        Some(avlgate::proto::command_result::Response::ResponseText(
            "RTC:ok".into()
        ))
    );
    assert_eq!(
        statuses(&got["udp-1"]),
        vec![CommandStatus::Sent, CommandStatus::Responded]
    );
    gw.stop().await;
}

/// SIGTERM while commands are in hand: the one written and answered during the drain is
/// RESPONDED, the one written and never answered is EXPIRED with the drain as its reason, the
/// one queued behind it is released and delivered by the pod's next instance. None is left
/// with only SENT, and nothing the sessions reported was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_settles_the_commands_it_holds() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let prometheus = avlgate::ops::install_prometheus().unwrap();
    let settings = || Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{}", mosq.addr)),
        gateway_name: Some("pod-a".into()),
        drain_timeout_secs: Some(8),
        ..Default::default()
    };
    let a = TestGateway::start(settings()).await;
    let mut results = Subscriber::connect(mosq.addr, "avlgate/command-results/#").await;
    let backend = Subscriber::connect(mosq.addr, "avlgate/nothing").await;
    let (answers, silent) = ("356307042441104", "356307042441112");
    let mut dev1 = command_device(a.addr, answers).await;
    let mut dev2 = command_device(a.addr, silent).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (id, imei, text) in [
        ("d-answered", answers, "getinfo"),
        ("d-queued", answers, "getver"),
        ("d-silent", silent, "getgps"),
    ] {
        backend
            .publish(
                &format!("avlgate/commands/{imei}"),
                command(id, imei, Some(text), 120).encode_to_vec(),
            )
            .await;
        // In this order on the log.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        teltonika_read_command(&mut dev1, 20).await.as_deref(),
        Some(&b"getinfo"[..])
    );
    assert_eq!(
        teltonika_read_command(&mut dev2, 20).await.as_deref(),
        Some(&b"getgps"[..])
    );
    let mut got = BTreeMap::new();
    // Both written (SENT) before the drain starts.
    while got
        .values()
        .flatten()
        .filter(|r: &&CommandResult| r.status == CommandStatus::Sent as i32)
        .count()
        < 2
    {
        let (_, p) = results.next(10).await.expect("SENT results");
        let r = CommandResult::decode(&p[..]).unwrap();
        got.entry(r.command_id.clone())
            .or_insert_with(Vec::new)
            .push(r);
    }
    let stopping = tokio::spawn(a.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // dev1 answers while the pod drains; dev2 never does.
    teltonika_reply(&mut dev1, "INFO").await;
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("drained in time")
        .unwrap();
    assert!(
        dev2.closed_within(5).await,
        "the drain closed the silent device's session"
    );

    // The next instance of the pod delivers the released command when the device is back.
    let a2 = TestGateway::start(settings()).await;
    let mut dev1 = command_device(a2.addr, answers).await;
    assert_eq!(
        teltonika_read_command(&mut dev1, 20).await.as_deref(),
        Some(&b"getver"[..])
    );
    teltonika_reply(&mut dev1, "VER").await;
    for id in ["d-answered", "d-queued", "d-silent"] {
        until_terminal(&mut results, &mut got, id, 20).await;
    }
    for (id, rs) in mqtt_results(&mut results, 2).await {
        got.entry(id).or_default().extend(rs);
    }
    for (id, rs) in &got {
        assert_eq!(terminal(rs).len(), 1, "{id}: one terminal result: {rs:?}");
    }
    assert_eq!(
        statuses(&got["d-answered"]),
        vec![CommandStatus::Sent, CommandStatus::Responded]
    );
    assert_eq!(
        statuses(&got["d-silent"]),
        vec![CommandStatus::Sent, CommandStatus::Expired]
    );
    assert!(
        got["d-silent"][1].reason.contains("gateway drained"),
        "{}",
        got["d-silent"][1].reason
    );
    assert_eq!(
        statuses(&got["d-queued"]),
        vec![CommandStatus::Sent, CommandStatus::Responded]
    );
    let drops: f64 = prometheus
        .render()
        .lines()
        .filter(|l| l.starts_with("avlgate_command_messages_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(drops, 0.0, "nothing dropped");
    a2.stop().await;
}
