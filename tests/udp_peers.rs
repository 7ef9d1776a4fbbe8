//! UDP peers under a flood from many source ports: peers that name no allowed device are
//! retired with their last datagram, identified peers obey the per-address and pod-wide caps
//! and leave after the idle timeout. Peer counts are read from the gateway's UDP limiter (the
//! state `avlgate_udp_peers` reports). In-memory sink; everything on loopback.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::proto::Transport;
use avlgate::protocol::detect::{detect, Detection};
use avlgate::protocol::teltonika::{frame, samples};
use avlgate::sink::memory::MemorySink;
use common::*;
use tokio::net::UdpSocket;

async fn gateway(settings: Settings) -> (TestGateway, MemorySink) {
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(settings, Arc::new(sink.clone()), |_| {}).await;
    (gw, sink)
}

/// A Teltonika UDP datagram of `imei` with one Codec 16 record pair.
fn datagram(imei: &str, packet_id: u16) -> Vec<u8> {
    let data = h(samples::CODEC16);
    frame::encode_udp(packet_id, 1, imei, &data[8..data.len() - 4])
}

/// Sends `d` from a fresh source port on `ip`; the socket is kept to read the answer.
async fn send_from(ip: &str, d: &[u8], to: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
    s.send_to(d, to).await.unwrap();
    s
}

/// How many of `socks` got an answer within `secs` (all waited for at once).
async fn answered(socks: &[UdpSocket], secs: u64) -> usize {
    let waits = socks.iter().map(|s| async move {
        let mut b = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(secs), s.recv_from(&mut b))
            .await
            .is_ok_and(|r| r.is_ok())
    });
    futures_util::future::join_all(waits)
        .await
        .into_iter()
        .filter(|&ok| ok)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_name_no_allowed_device_leave_with_their_last_datagram() {
    let dir = std::env::temp_dir().join(format!("avlgate-udp-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("imeis.txt");
    std::fs::write(&list, format!("{IMEI}\n")).unwrap();
    let (gw, sink) = gateway(Settings {
        imei_allowlist: Some(list),
        udp_idle_timeout_secs: Some(300),
        ..Default::default()
    })
    .await;
    let limiter = &gw.shared.udp_limiter;

    // Detected as Teltonika, but cut short: it never identifies a device.
    let garbage = &frame::encode_udp(1, 1, "1", &[0x08, 0x01, 0x00])[..];
    assert_eq!(garbage.len(), 12);
    assert!(
        matches!(detect(garbage, Transport::Udp), Detection::Found(_)),
        "the flood datagram passes detection, so each one makes a peer"
    );
    let not_listed = datagram("356307042441099", 2);
    let mut high = 0;
    for i in 0..2_000 {
        let d = if i % 2 == 0 { garbage } else { &not_listed[..] };
        // Each socket is a new source port; dropped at once, as a spoofed flood would be.
        drop(send_from("127.0.0.1", d, gw.addr).await);
        high = high.max(limiter.open());
    }
    assert!(
        eventually(5, || async { limiter.open() == 0 }).await,
        "no peer is kept for the idle timeout: {} left",
        limiter.open()
    );
    assert!(
        high < 2_000,
        "peers did not accumulate (at most {high} at once)"
    );
    assert!(memory_events(&sink).is_empty(), "nothing was published");

    // An allowed device is identified and kept until it goes idle.
    let dev = send_from("127.0.0.1", &datagram(IMEI, 3), gw.addr).await;
    assert_eq!(answered(std::slice::from_ref(&dev), 10).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(limiter.open(), 1, "the identified peer stays");
    gw.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identified_peers_obey_the_per_address_and_pod_caps_then_expire() {
    let (gw, _sink) = gateway(Settings {
        max_udp_peers: Some(80),
        max_udp_peers_per_ip: Some(50),
        // Long enough for both batches below to be answered (2 s each) before the first
        // one's peers expire.
        udp_idle_timeout_secs: Some(10),
        ..Default::default()
    })
    .await;
    let limiter = &gw.shared.udp_limiter;
    // 70 devices behind one address: 50 are taken, 20 dropped.
    let mut a = Vec::new();
    for i in 0..70u16 {
        let imei = format!("3563070424{:05}", i);
        a.push(send_from("127.0.0.1", &datagram(&imei, i), gw.addr).await);
    }
    assert_eq!(answered(&a, 2).await, 50, "the per-address cap");
    assert_eq!(limiter.open(), 50);
    // 40 more behind another address: only 30 fit under the pod-wide cap of 80.
    let mut b = Vec::new();
    for i in 0..40u16 {
        let imei = format!("3563070425{:05}", i);
        b.push(send_from("127.0.0.2", &datagram(&imei, i), gw.addr).await);
    }
    assert_eq!(answered(&b, 2).await, 30, "the pod-wide cap");
    assert_eq!(limiter.open(), 80);
    // A known peer keeps being served while the caps refuse newcomers.
    a[0].send_to(&datagram("356307042400000", 99), gw.addr)
        .await
        .unwrap();
    assert_eq!(answered(&a[..1], 10).await, 1);
    // Silent for the idle timeout: every peer is forgotten, and new ones fit again.
    assert!(
        eventually(20, || async { limiter.open() == 0 }).await,
        "{} peers left after the idle timeout",
        limiter.open()
    );
    let late = send_from("127.0.0.1", &datagram(IMEI, 7), gw.addr).await;
    assert_eq!(answered(std::slice::from_ref(&late), 10).await, 1);
    gw.stop().await;
}
