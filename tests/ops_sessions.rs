//! One session per IMEI, the IMEI allow-list (with reload), and the PROXY protocol through a
//! real socket. In-memory sink; everything on loopback.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::proto::EventKind;
use avlgate::protocol::teltonika::samples;
use avlgate::sink::memory::MemorySink;
use common::*;

async fn gateway(settings: Settings) -> (TestGateway, MemorySink) {
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(settings, Arc::new(sink.clone()), |c| {
        c.reload_interval = Duration::from_millis(100);
    })
    .await;
    (gw, sink)
}

fn temp_file(tag: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("avlgate-ops-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("imeis.txt");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_of_an_imei_replaces_the_first_session() {
    let (gw, sink) = gateway(Settings::default()).await;
    let mut first = Device::connect(gw.addr).await;
    first.send(&h(samples::LOGIN)).await;
    assert_eq!(first.read_exact(1, 10).await, Some(vec![1]));
    let first_id = gw.shared.registry.get(IMEI).expect("registered").id;

    let mut second = Device::connect(gw.addr).await;
    second.send(&h(samples::LOGIN)).await;
    assert_eq!(second.read_exact(1, 10).await, Some(vec![1]));
    assert!(first.closed_within(5).await, "the old socket is closed");
    let now = gw.shared.registry.get(IMEI).expect("still registered");
    assert_ne!(now.id, first_id);
    assert_eq!(now.peer, second.stream.local_addr().unwrap());

    // The new session works, and the old one's end did not unregister it.
    second.send(&h(samples::CODEC8)).await;
    assert_eq!(second.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(gw.shared.registry.get(IMEI).map(|h| h.id), Some(now.id));
    // The old session publishes its session-closed event after letting go of its socket:
    // collect until it is in (under load it may trail the new session's first ACK).
    let mut closed = Vec::new();
    for _ in 0..50 {
        closed.extend(
            memory_events(&sink)
                .into_iter()
                .filter(|e| e.kind == EventKind::SessionClosed as i32),
        );
        if !closed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed.len(), 1);
    assert_eq!(
        closed[0].attributes.get("reason"),
        Some(&avlgate::event::attr::string("replaced"))
    );
    drop(second);
    assert!(eventually(5, || async { gw.shared.registry.get(IMEI).is_none() }).await);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_off_the_allow_list_get_their_protocols_refusal() {
    let path = temp_file("refuse", &format!("# test fleet\n{IMEI}\n"));
    let (gw, sink) = gateway(Settings {
        imei_allowlist: Some(path.clone()),
        ..Default::default()
    })
    .await;

    // Teltonika: 0x00, closed.
    let mut t = Device::connect(gw.addr).await;
    t.send(&teltonika_login("356307042441099")).await;
    assert_eq!(t.read_exact(1, 10).await, Some(vec![0]));
    assert!(t.closed_within(5).await);

    // Wialon IPS: #AL#0, closed.
    let mut w = Device::connect(gw.addr).await;
    w.send(b"#L#356307042441099;NA\r\n").await;
    assert_eq!(w.read_line(10).await.as_deref(), Some("#AL#0\r\n"));
    assert!(w.closed_within(5).await);

    // GT06: no ACK, closed.
    let mut g = Device::connect(gw.addr).await;
    g.send(&h("78780d01086471700328358100093f040d0a")).await;
    assert!(g.closed_within(5).await);

    // A listed device gets in.
    let mut ok = Device::connect(gw.addr).await;
    ok.send(&h(samples::LOGIN)).await;
    assert_eq!(ok.read_exact(1, 10).await, Some(vec![1]));
    ok.send(&h(samples::CODEC8)).await;
    assert_eq!(ok.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let events = memory_events(&sink);
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e.imei == IMEI),
        "nothing of refused devices"
    );
    gw.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_is_reloaded_and_revokes_removed_devices() {
    let other = "356307042441099";
    let path = temp_file("reload", &format!("{IMEI}\n"));
    let (gw, _sink) = gateway(Settings {
        imei_allowlist: Some(path.clone()),
        ..Default::default()
    })
    .await;
    let mut listed = Device::connect(gw.addr).await;
    listed.send(&h(samples::LOGIN)).await;
    assert_eq!(listed.read_exact(1, 10).await, Some(vec![1]));
    let mut refused = Device::connect(gw.addr).await;
    refused.send(&teltonika_login(other)).await;
    assert_eq!(refused.read_exact(1, 10).await, Some(vec![0]));

    // Swap the list: `other` in, IMEI out. (A different length: the change is seen even
    // within one mtime tick.)
    std::fs::write(&path, format!("# swapped\n{other}\n")).unwrap();
    assert!(
        listed.closed_within(5).await,
        "a device taken off the list is disconnected"
    );
    let mut now_listed = Device::connect(gw.addr).await;
    now_listed.send(&teltonika_login(other)).await;
    assert_eq!(now_listed.read_exact(1, 10).await, Some(vec![1]));
    let mut now_refused = Device::connect(gw.addr).await;
    now_refused.send(&h(samples::LOGIN)).await;
    assert_eq!(now_refused.read_exact(1, 10).await, Some(vec![0]));

    // A broken file keeps the list in force.
    std::fs::write(&path, "not an imei line\n").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut still = Device::connect(gw.addr).await;
    still.send(&teltonika_login(other)).await;
    assert_eq!(still.read_exact(1, 10).await, Some(vec![1]));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

fn proxy_v2_tcp4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut v = avlgate::net::proxy::V2_SIGNATURE.to_vec();
    v.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[127, 0, 0, 1]);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&5027u16.to_be_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_give_events_the_device_address() {
    let (gw, sink) = gateway(Settings {
        proxy_protocol: Some(true),
        ..Default::default()
    })
    .await;
    // v1, header and login in one write.
    let mut d1 = Device::connect(gw.addr).await;
    d1.send(
        &[
            &b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 5027\r\n"[..],
            &h(samples::LOGIN),
        ]
        .concat(),
    )
    .await;
    assert_eq!(d1.read_exact(1, 10).await, Some(vec![1]));
    d1.send(&h(samples::CODEC8)).await;
    assert_eq!(d1.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    let events = memory_events(&sink);
    assert!(events.len() >= 2);
    assert!(
        events.iter().all(|e| e.peer == "203.0.113.7:40001"),
        "{:?}",
        events.iter().map(|e| &e.peer).collect::<Vec<_>>()
    );

    // v2 (IPv6 is covered by the parser's unit tests), the header split across writes.
    let mut d2 = Device::connect(gw.addr).await;
    let header = proxy_v2_tcp4([198, 51, 100, 9], 40002);
    d2.send(&header[..7]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    d2.send(&header[7..]).await;
    d2.send(b"#L#356307042441014;NA\r\n").await;
    assert_eq!(d2.read_line(10).await.as_deref(), Some("#AL#1\r\n"));
    d2.send(b"#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n")
        .await;
    assert_eq!(d2.read_line(10).await.as_deref(), Some("#ASD#1\r\n"));
    let events = memory_events(&sink);
    assert!(events.iter().any(|e| e.kind == EventKind::Position as i32));
    assert!(events.iter().all(|e| e.peer == "198.51.100.9:40002"));

    // LOCAL (a balancer health check): the socket address stands.
    let mut local = Device::connect(gw.addr).await;
    let mut l = avlgate::net::proxy::V2_SIGNATURE.to_vec();
    l.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    local
        .send(&[l, teltonika_login("356307042441077")].concat())
        .await;
    assert_eq!(local.read_exact(1, 10).await, Some(vec![1]));
    let socket_addr = local.stream.local_addr().unwrap();
    let opened = memory_events(&sink);
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].peer, socket_addr.to_string());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_refuses_missing_or_malformed_headers_and_limits_the_real_address() {
    let (gw, _sink) = gateway(Settings {
        proxy_protocol: Some(true),
        max_connections_per_ip: Some(1),
        max_connect_rate_per_ip: Some(0),
        login_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    // A device straight at the port, no header.
    let mut bare = Device::connect(gw.addr).await;
    bare.send(&h(samples::LOGIN)).await;
    assert!(bare.closed_within(5).await);
    // Malformed v1 and v2.
    let mut bad1 = Device::connect(gw.addr).await;
    bad1.send(b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n").await;
    assert!(bad1.closed_within(5).await);
    let mut bad2 = Device::connect(gw.addr).await;
    let mut v2 = proxy_v2_tcp4([1, 2, 3, 4], 1);
    v2[12] = 0x2F;
    bad2.send(&v2).await;
    assert!(bad2.closed_within(5).await);
    // A truncated header: closed at the login timeout.
    let mut cut = Device::connect(gw.addr).await;
    cut.send(&proxy_v2_tcp4([1, 2, 3, 4], 1)[..20]).await;
    assert!(cut.closed_within(5).await);

    // Per-address limits apply to the address in the header, not the balancer's: two devices
    // behind the one loopback "balancer" address get in, a second connection from the same
    // device address does not.
    let mut a = Device::connect(gw.addr).await;
    a.send(
        &[
            proxy_v2_tcp4([10, 0, 0, 1], 1000),
            teltonika_login("356307042441001"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(a.read_exact(1, 10).await, Some(vec![1]));
    let mut b = Device::connect(gw.addr).await;
    b.send(
        &[
            proxy_v2_tcp4([10, 0, 0, 2], 1000),
            teltonika_login("356307042441002"),
        ]
        .concat(),
    )
    .await;
    assert_eq!(b.read_exact(1, 10).await, Some(vec![1]));
    let mut a2 = Device::connect(gw.addr).await;
    a2.send(
        &[
            proxy_v2_tcp4([10, 0, 0, 1], 1001),
            teltonika_login("356307042441003"),
        ]
        .concat(),
    )
    .await;
    assert!(a2.closed_within(5).await);
    assert_eq!(a2.read_exact(1, 1).await, None, "no login answer");
    gw.stop().await;
}
