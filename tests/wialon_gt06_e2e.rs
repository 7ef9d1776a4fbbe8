//! Wialon IPS and GT06 end to end on the same port as Teltonika: real sockets on loopback,
//! events read back from the embedded MQTT broker.

mod common;

use std::time::Duration;

use avlgate::proto::{EventKind, Protocol, Transport};
use avlgate::protocol::crc;
use common::*;
use tokio::net::UdpSocket;

const SD: &str = "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;";

fn with_crc(body: &str) -> String {
    format!("{body}{:X}", crc::arc(body.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wialon_v2_over_tcp_checks_crc_and_publishes_only_good_packets() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(format!("#L#{}\r\n", with_crc(&format!("2.0;{IMEI};NA;"))).as_bytes())
        .await;
    assert_eq!(dev.read_line(10).await.as_deref(), Some("#AL#1\r\n"));
    assert_eq!(
        sub.next_event(10).await.unwrap().1.kind,
        EventKind::SessionOpened as i32
    );

    dev.send(format!("#SD#{}\r\n", with_crc(SD)).as_bytes())
        .await;
    assert_eq!(dev.read_line(10).await.as_deref(), Some("#ASD#1\r\n"));
    let (_, e) = sub.next_event(10).await.unwrap();
    assert_eq!(
        (e.kind, e.protocol),
        (EventKind::Position as i32, Protocol::WialonIps as i32)
    );
    let p = e.position.unwrap();
    assert!((p.latitude - 55.743375).abs() < 1e-6 && (p.longitude - 37.66139).abs() < 1e-5);

    // A wrong checksum: the spec's checksum code, nothing published.
    dev.send(format!("#SD#{SD}0\r\n").as_bytes()).await;
    assert_eq!(dev.read_line(10).await.as_deref(), Some("#ASD#13\r\n"));
    sub.assert_quiet(300).await;

    // Ping.
    dev.send(b"#P#\r\n").await;
    assert_eq!(dev.read_line(10).await.as_deref(), Some("#AP#\r\n"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wialon_udp_reply_goes_to_the_sender() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(
        format!("{IMEI}#SD#{}\r\n", SD.trim_end_matches(';')).as_bytes(),
        gw.addr,
    )
    .await
    .unwrap();
    let mut b = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b[..n], b"#ASD#1\r\n");
    let (topic, e) = sub.next_event(10).await.unwrap();
    assert_eq!(topic, format!("avlgate/events/{IMEI}"));
    assert_eq!(e.transport, Transport::Udp as i32);
    gw.stop().await;
}

const GT06_LOGIN: &str = "78780d01086471700328358100093f040d0a";
const GT06_IMEI: &str = "864717003283581";
const GT06_LOCATION: &str =
    "787822220f0c1d023305c9027ac8180c46586000140001cc00287d001f71000001000820860d0a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gt06_over_tcp_login_location_and_garbage_resync() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(GT06_LOGIN)).await;
    assert_eq!(
        dev.read_exact(10, 10).await,
        Some(h("78780501000955940d0a"))
    );
    assert_eq!(
        sub.next_event(10).await.unwrap().1.kind,
        EventKind::SessionOpened as i32
    );
    // Garbage, then a location frame: resynchronised on the start bits.
    dev.send(&[vec![0x00, 0x13, 0x37], h(GT06_LOCATION)].concat())
        .await;
    assert_eq!(
        dev.read_exact(10, 10).await,
        Some(h("787805220008a8420d0a"))
    );
    let (topic, e) = sub.next_event(10).await.unwrap();
    assert_eq!(topic, format!("avlgate/events/{GT06_IMEI}"));
    assert_eq!(
        (e.kind, e.protocol),
        (EventKind::Position as i32, Protocol::Gt06 as i32)
    );
    assert!(e.position.unwrap().valid);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gt06_over_udp() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut sub = Subscriber::connect(broker, "avlgate/events/#").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut b = [0u8; 64];
    sock.send_to(&h(GT06_LOGIN), gw.addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b[..n], &h("78780501000955940d0a")[..]);
    sock.send_to(&h(GT06_LOCATION), gw.addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b[..n], &h("787805220008a8420d0a")[..]);
    let (_, e) = sub.next_event(10).await.unwrap();
    assert_eq!(
        (e.kind, e.transport),
        (EventKind::Position as i32, Transport::Udp as i32)
    );
    gw.stop().await;
}
