//! Who may speak for an IMEI: the session takeover policies (`always` is covered in
//! ops_sessions.rs), allow-list lines pinned to source networks over TCP, UDP and behind a
//! PROXY-protocol balancer, and device ids that are not ids. Real sockets on loopback
//! addresses (127.0.0.1, 127.0.0.2, …), in-memory sink.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::protocol::teltonika::{frame, samples};
use avlgate::session::registry::TakeoverPolicy;
use avlgate::sink::memory::MemorySink;
use common::*;
use tokio::net::{TcpSocket, UdpSocket};

async fn gateway(settings: Settings) -> (TestGateway, MemorySink) {
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(settings, Arc::new(sink.clone()), |c| {
        c.reload_interval = Duration::from_millis(100);
    })
    .await;
    (gw, sink)
}

fn allowlist(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avlgate-identity-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("imeis.txt");
    std::fs::write(&p, text).unwrap();
    p
}

/// A TCP device connecting from the loopback address `src`.
async fn connect_from(src: &str, to: SocketAddr) -> Device {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    Device {
        stream: s.connect(to).await.unwrap(),
    }
}

/// Logs in as `imei`; the login answer (Teltonika: 1 accepted, 0 refused).
async fn login(dev: &mut Device, imei: &str) -> Option<Vec<u8>> {
    dev.send(&teltonika_login(imei)).await;
    dev.read_exact(1, 10).await
}

async fn record_acked(dev: &mut Device) -> bool {
    dev.send(&h(samples::CODEC8)).await;
    dev.read_exact(4, 10).await == Some(vec![0, 0, 0, 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_policy_keeps_a_reporting_session_and_yields_a_silent_one() {
    let (gw, _sink) = gateway(Settings {
        session_takeover: Some(TakeoverPolicy::Idle),
        session_takeover_idle_secs: Some(2),
        ..Default::default()
    })
    .await;
    let mut owner = Device::connect(gw.addr).await;
    assert_eq!(login(&mut owner, IMEI).await, Some(vec![1]));
    let owner_id = gw.shared.registry.get(IMEI).unwrap().id;
    // While the owner reports, an intruder with the same IMEI is refused and closed.
    for _ in 0..3 {
        assert!(record_acked(&mut owner).await);
        let mut intruder = Device::connect(gw.addr).await;
        assert_eq!(login(&mut intruder, IMEI).await, Some(vec![0]));
        assert!(intruder.closed_within(5).await);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(gw.shared.registry.get(IMEI).unwrap().id, owner_id);
    assert!(
        record_acked(&mut owner).await,
        "the owner was not disturbed"
    );
    // Silent past the takeover idle time (a dead socket after a NAT change): the device's
    // new connection takes over.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    let mut back = Device::connect(gw.addr).await;
    assert_eq!(login(&mut back, IMEI).await, Some(vec![1]));
    assert!(
        owner.closed_within(5).await,
        "the silent session was replaced"
    );
    assert!(record_acked(&mut back).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_never_policy_refuses_until_the_live_session_ends() {
    let (gw, _sink) = gateway(Settings {
        session_takeover: Some(TakeoverPolicy::Never),
        ..Default::default()
    })
    .await;
    let mut owner = Device::connect(gw.addr).await;
    assert_eq!(login(&mut owner, IMEI).await, Some(vec![1]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut other = Device::connect(gw.addr).await;
    assert_eq!(
        login(&mut other, IMEI).await,
        Some(vec![0]),
        "silent, yet kept"
    );
    assert!(record_acked(&mut owner).await);
    // The owner leaves: the IMEI is free again.
    drop(owner);
    assert!(eventually(5, || async { gw.shared.registry.get(IMEI).is_none() }).await);
    let mut next = Device::connect(gw.addr).await;
    assert_eq!(login(&mut next, IMEI).await, Some(vec![1]));
    assert!(record_acked(&mut next).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_imeis_log_in_only_from_their_networks_over_tcp_and_a_reload_revokes() {
    let other = "356307042441099";
    let path = allowlist(
        "tcp",
        &format!("{IMEI} 127.0.0.2/32\n{other} 127.0.0.0/8\n"),
    );
    let (gw, sink) = gateway(Settings {
        imei_allowlist: Some(path.clone()),
        ..Default::default()
    })
    .await;
    let mut wrong = connect_from("127.0.0.1", gw.addr).await;
    assert_eq!(login(&mut wrong, IMEI).await, Some(vec![0]));
    assert!(wrong.closed_within(5).await);
    let mut right = connect_from("127.0.0.2", gw.addr).await;
    assert_eq!(login(&mut right, IMEI).await, Some(vec![1]));
    assert!(record_acked(&mut right).await);
    let mut anywhere = connect_from("127.0.0.3", gw.addr).await;
    assert_eq!(login(&mut anywhere, other).await, Some(vec![1]));
    assert!(memory_events(&sink)
        .iter()
        .all(|e| e.peer.starts_with("127.0.0.2:") || e.imei == other));

    // The pin moves to another network: the live session from the old one is revoked.
    std::fs::write(
        &path,
        format!("{IMEI} 127.0.0.5\n{other} 127.0.0.0/8\n# moved\n"),
    )
    .unwrap();
    assert!(right.closed_within(5).await);
    let mut moved = connect_from("127.0.0.5", gw.addr).await;
    assert_eq!(login(&mut moved, IMEI).await, Some(vec![1]));
    assert!(
        record_acked(&mut anywhere).await,
        "other devices are untouched"
    );
    gw.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_protocol_balancer_the_header_address_is_pinned() {
    let path = allowlist("proxy", &format!("{IMEI} 203.0.113.0/24\n"));
    let (gw, _sink) = gateway(Settings {
        imei_allowlist: Some(path.clone()),
        proxy_protocol: Some(true),
        ..Default::default()
    })
    .await;
    let header = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 40001 5027\r\n").into_bytes();
    let mut outside = Device::connect(gw.addr).await;
    outside
        .send(&[header("198.51.100.7"), teltonika_login(IMEI)].concat())
        .await;
    assert_eq!(outside.read_exact(1, 10).await, Some(vec![0]));
    let mut inside = Device::connect(gw.addr).await;
    inside
        .send(&[header("203.0.113.77"), teltonika_login(IMEI)].concat())
        .await;
    assert_eq!(inside.read_exact(1, 10).await, Some(vec![1]));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_imeis_publish_over_udp_only_from_their_networks() {
    let path = allowlist("udp", &format!("{IMEI} 127.0.0.2\n"));
    let (gw, sink) = gateway(Settings {
        imei_allowlist: Some(path.clone()),
        ..Default::default()
    })
    .await;
    let data = h(samples::CODEC16);
    let d = frame::encode_udp(0x0101, 1, IMEI, &data[8..data.len() - 4]);
    let mut b = [0u8; 64];
    let spoofed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    spoofed.send_to(&d, gw.addr).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), spoofed.recv_from(&mut b))
            .await
            .is_err(),
        "no ACK outside the pinned network"
    );
    assert!(memory_events(&sink).is_empty(), "nothing published");
    let device = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    device.send_to(&d, gw.addr).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(10), device.recv_from(&mut b))
        .await
        .expect("ACK from the pinned network")
        .unwrap();
    assert_eq!(&b[..n], &[0x00, 0x05, 0x01, 0x01, 0x01, 0x01, 0x02]);
    let events = memory_events(&sink);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.peer.starts_with("127.0.0.2:")));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_ids_that_are_not_ids_are_refused_at_login() {
    let (gw, sink) = gateway(Settings::default()).await;
    // Wialon ids are free text in the protocol; topic-unsafe ones are refused with #AL#0.
    for id in ["a/b", "+", "35630704244101.x#", "ünit", &"7".repeat(33)] {
        let mut w = Device::connect(gw.addr).await;
        w.send(format!("#L#{id};NA\r\n").as_bytes()).await;
        assert_eq!(
            w.read_line(10).await.as_deref(),
            Some("#AL#0\r\n"),
            "{id:?}"
        );
        assert!(w.closed_within(5).await);
    }
    let mut ok = Device::connect(gw.addr).await;
    ok.send(b"#L#SN-0042.a;NA\r\n").await;
    assert_eq!(ok.read_line(10).await.as_deref(), Some("#AL#1\r\n"));
    let events = memory_events(&sink);
    assert_eq!(events.len(), 1, "only the valid login's SESSION_OPENED");
    assert_eq!(events[0].imei, "SN-0042.a");
    gw.stop().await;
}
