//! The device listeners: IPv4 and IPv6 on one port, and IPv4 devices reaching a dual-stack
//! `[::]` listener. Devices connect over loopback only (127.0.0.1, ::1); the IPv6 wildcard is
//! bound because its clash with an IPv4 listener on the same port is what is tested.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::proto::TelemetryEvent;
use avlgate::protocol::teltonika::{frame, samples};
use avlgate::sink::memory::MemorySink;
use common::*;
use prost::Message;
use tokio::net::UdpSocket;

/// A gateway listening on `listen`, publishing to `sink`.
async fn gateway(listen: Vec<SocketAddr>, sink: &MemorySink) -> TestGateway {
    TestGateway::with_sink(Settings::default(), Arc::new(sink.clone()), |c| {
        c.listen = listen
    })
    .await
}

/// The peers named by what was published since the last call.
fn peers_of(sink: &MemorySink) -> Vec<String> {
    sink.take()
        .into_iter()
        .map(|m| TelemetryEvent::decode(&m.payload[..]).unwrap().peer)
        .collect()
}

/// Whether this host has IPv6 loopback (some containers have none).
fn ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// A Teltonika device at `addr` logs in and sends one frame; both are acknowledged. Returns
/// the device's address.
async fn report(addr: SocketAddr) -> SocketAddr {
    let mut dev = Device::connect(addr).await;
    let local = dev.stream.local_addr().unwrap();
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(
        dev.read_exact(1, 10).await,
        Some(vec![0x01]),
        "login at {addr}"
    );
    dev.send(&h(samples::CODEC8E)).await;
    assert_eq!(
        dev.read_exact(4, 10).await,
        Some(vec![0, 0, 0, 1]),
        "frame at {addr}"
    );
    local
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_and_ipv6_listeners_share_a_port() {
    if !ipv6_loopback() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let port = free_port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let v6: SocketAddr = format!("[::]:{port}").parse().unwrap();
    // A dual-stack `[::]` would claim 127.0.0.1 too: this bind failed with "address in use".
    let sink = MemorySink::new();
    let gw = gateway(vec![v4, v6], &sink).await;
    assert_eq!(gw.addr, v4);

    report(v4).await;
    let v6_device = report(format!("[::1]:{port}").parse().unwrap()).await;
    let peers = published_until(&sink, &v6_device.to_string()).await;
    assert!(
        peers.iter().any(|p| p.starts_with("127.0.0.1:"))
            && peers
                .iter()
                .all(|p| p.starts_with("127.0.0.1:") || p.starts_with("[::1]:")),
        "{peers:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv4_device_on_a_dual_stack_listener_is_known_by_its_ipv4_address() {
    if !ipv6_loopback() {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    }
    let sink = MemorySink::new();
    let gw = gateway(vec!["[::]:0".parse().unwrap()], &sink).await;
    let port = gw.addr.port();
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // `[::]` alone serves IPv4 too, whatever the host's net.ipv6.bindv6only.
    report(v4).await;
    // Over UDP as well, and the ACK comes back to the device's IPv4 address.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let data = h(samples::CODEC16);
    let avl = &data[8..data.len() - 4];
    sock.send_to(&frame::encode_udp(0xBEEF, 0x2A, IMEI, avl), v4)
        .await
        .unwrap();
    let mut b = [0u8; 64];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut b))
        .await
        .expect("UDP ACK")
        .unwrap();
    assert_eq!(
        (from, &b[..n]),
        (v4, &[0x00, 0x05, 0xBE, 0xEF, 0x01, 0x2A, 0x02][..])
    );
    let peers = published_until(&sink, &sock.local_addr().unwrap().to_string()).await;
    // Not `[::ffff:127.0.0.1]:…`: limits, logs and events see the same address as on an IPv4
    // listener.
    assert!(
        peers.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{peers:?}"
    );
    gw.stop().await;
}

/// The peers published until one of them is `peer` (the UDP ACK may come before the events
/// are taken).
async fn published_until(sink: &MemorySink, peer: &str) -> Vec<String> {
    let mut peers = Vec::new();
    for _ in 0..100 {
        peers.extend(peers_of(sink));
        if peers.iter().any(|p| p == peer) {
            return peers;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no event from {peer}: {peers:?}");
}
