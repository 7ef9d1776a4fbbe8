//! Teltonika end to end: a real gateway on loopback, devices over TCP and UDP, events read
//! back from a real MQTT broker (the embedded rumqttd, and Mosquitto when installed).

mod common;

use std::time::Duration;

use avlgate::config::{Settings, SinkKind};
use avlgate::proto::{EventKind, Transport};
use avlgate::protocol::teltonika::{frame, samples};
use common::*;
use tokio::net::UdpSocket;

async fn login(dev: &mut Device) {
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(
        dev.read_exact(1, 10).await,
        Some(vec![0x01]),
        "login accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_device_records_arrive_on_the_embedded_broker_and_are_acked() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    login(&mut dev).await;
    let (topic, opened) = sub.next_event(10).await.expect("session-opened event");
    assert_eq!(topic, format!("avlgate/events/{IMEI}"));
    assert_eq!(opened.kind, EventKind::SessionOpened as i32);

    // Two frames in one write, and a Codec 16 frame with two records.
    dev.send(&[h(samples::CODEC8E), h(samples::CODEC16)].concat())
        .await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 2]));
    let mut positions = Vec::new();
    for _ in 0..3 {
        let (_, e) = sub.next_event(10).await.expect("position event");
        positions.push(e);
    }
    for e in &positions {
        assert_eq!(e.kind, EventKind::Status as i32);
        assert_eq!(e.imei, IMEI);
        assert_eq!(e.transport, Transport::Tcp as i32);
        assert_eq!(e.gateway, "test-gw");
        assert!(e.peer.starts_with("127.0.0.1:"));
        assert!(e.event_id.starts_with(IMEI));
        assert!(e.received_at.is_some() && e.device_time.is_some());
    }
    assert_eq!(
        positions[0].device_time.as_ref().unwrap().seconds,
        1_560_166_592
    );
    assert!(positions[1].raw.iter().any(|r| r.name == "generation_type"));

    // The same frame resent gets the same event ids (consumers drop duplicates by id).
    dev.send(&h(samples::CODEC8E)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let (_, again) = sub.next_event(10).await.unwrap();
    assert_eq!(again.event_id, positions[0].event_id);

    drop(dev);
    let (_, closed) = sub.next_event(10).await.expect("session-closed event");
    assert_eq!(closed.kind, EventKind::SessionClosed as i32);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_until_the_broker_confirmed_then_ack_when_it_is_back() {
    let broker = embedded_broker();
    let proxy = FaultProxy::start(broker, false).await;
    let gw = TestGateway::mqtt(proxy.addr).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(samples::LOGIN)).await;
    // The login's session-opened event cannot be delivered: no reply yet.
    assert_eq!(
        dev.read_exact(1, 2).await,
        None,
        "nothing is acknowledged while the broker is unreachable"
    );
    sub.assert_quiet(200).await;
    proxy.restore();
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]));
    assert_eq!(
        sub.next_event(10).await.unwrap().1.kind,
        EventKind::SessionOpened as i32
    );
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(
        sub.next_event(10).await.unwrap().1.kind,
        EventKind::Status as i32
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_crc_gets_no_ack_and_publishes_nothing() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    login(&mut dev).await;
    sub.next_event(10).await.unwrap();
    let mut bad = h(samples::CODEC8);
    let n = bad.len();
    bad[n - 1] ^= 0x5A;
    dev.send(&bad).await;
    assert_eq!(dev.read_exact(4, 2).await, None, "no ACK for a bad CRC");
    sub.assert_quiet(300).await;
    // The connection survives and the next good frame is handled.
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(
        sub.next_event(10).await.unwrap().1.kind,
        EventKind::Status as i32
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_datagram_is_acked_with_its_ids_and_published() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let data = h(samples::CODEC16);
    let avl = &data[8..data.len() - 4];
    sock.send_to(&frame::encode_udp(0xBEEF, 0x2A, IMEI, avl), gw.addr)
        .await
        .unwrap();
    let mut b = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, gw.addr);
    assert_eq!(&b[..n], &[0x00, 0x05, 0xBE, 0xEF, 0x01, 0x2A, 0x02]);
    for _ in 0..2 {
        let (_, e) = sub.next_event(10).await.unwrap();
        assert_eq!(e.transport, Transport::Udp as i32);
        assert_eq!(e.kind, EventKind::Status as i32);
        assert_eq!(e.imei, IMEI);
    }
    // A truncated datagram is not acknowledged.
    let d = frame::encode_udp(0xBEF0, 0x2B, IMEI, avl);
    sock.send_to(&d[..d.len() - 5], gw.addr).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut b))
            .await
            .is_err()
    );
    sub.assert_quiet(200).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silence_are_closed_and_the_gateway_keeps_serving() {
    let broker = embedded_broker();
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Mqtt),
        mqtt_url: Some(format!("mqtt://{broker}")),
        detect_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    let mut junk = Device::connect(gw.addr).await;
    junk.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(junk.closed_within(5).await, "unknown protocol is closed");
    let mut silent = Device::connect(gw.addr).await;
    assert!(
        silent.closed_within(5).await,
        "silent connection is closed after the detection timeout"
    );
    let mut huge = Device::connect(gw.addr).await;
    huge.send(&h(samples::LOGIN)).await;
    assert_eq!(huge.read_exact(1, 10).await, Some(vec![1]));
    huge.send(&[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).await;
    assert!(
        huge.closed_within(5).await,
        "an absurd length closes the connection"
    );
    let mut ok = Device::connect(gw.addr).await;
    login(&mut ok).await;
    ok.send(&h(samples::CODEC8)).await;
    assert_eq!(ok.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_receives_the_records_with_qos1() {
    let Some(mosq) = Mosquitto::start() else {
        return;
    };
    let gw = TestGateway::mqtt(mosq.addr).await;
    let mut sub = Subscriber::connect(mosq.addr, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    login(&mut dev).await;
    dev.send(&h(samples::CODEC8E)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let kinds: Vec<i32> = [
        sub.next_event(10).await.unwrap().1.kind,
        sub.next_event(10).await.unwrap().1.kind,
    ]
    .into();
    assert_eq!(
        kinds,
        vec![EventKind::SessionOpened as i32, EventKind::Status as i32]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_outage_mid_stream_loses_no_acknowledged_record() {
    let broker = embedded_broker();
    let proxy = FaultProxy::start(broker, true).await;
    let gw = TestGateway::mqtt(proxy.addr).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    login(&mut dev).await;
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    proxy.cut();
    dev.send(&h(samples::CODEC8E)).await;
    assert_eq!(
        dev.read_exact(4, 2).await,
        None,
        "not acknowledged during the outage"
    );
    proxy.restore();
    // Acknowledged once the sink reconnected and the broker confirmed it.
    assert_eq!(dev.read_exact(4, 20).await, Some(vec![0, 0, 0, 1]));
    let mut got = Vec::new();
    while let Some((_, e)) = sub.next_event(3).await {
        got.push(e.kind);
    }
    let positions = got
        .iter()
        .filter(|k| **k == EventKind::Status as i32)
        .count();
    assert!(
        positions >= 2,
        "both acknowledged frames reached the broker: {got:?}"
    );
    gw.stop().await;
}
