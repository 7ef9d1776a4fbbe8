//! Connection limits and timeouts, over loopback sockets against the real gateway (in-memory
//! sink). Timeouts use the smallest setting (1 s) and real time: paused time does not mix with
//! real socket I/O (the clock would jump past the timeout while a loopback read is in flight).
//! The admission policy itself is tested with an injected clock in `src/net/limits.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::protocol::teltonika::samples;
use avlgate::sink::memory::MemorySink;
use common::*;

async fn gateway(settings: Settings) -> (TestGateway, MemorySink) {
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(settings, Arc::new(sink.clone()), |_| {}).await;
    (gw, sink)
}

/// Logs a Teltonika device in and checks the `01` answer. Each call is another device (one
/// IMEI has one session: a second login of the same IMEI would replace the first).
async fn logged_in(addr: std::net::SocketAddr) -> Device {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut d = Device::connect(addr).await;
    d.send(&teltonika_login(&format!("35630704244{n:04}")))
        .await;
    assert_eq!(d.read_exact(1, 10).await, Some(vec![1]), "login accepted");
    d
}

/// A connection the gateway closes without reading anything from it.
async fn refused(addr: std::net::SocketAddr) -> bool {
    let mut d = Device::connect(addr).await;
    // Writing may already fail (reset); either way the gateway must close it.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut d.stream, &h(samples::LOGIN)).await;
    d.closed_within(5).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_pod() {
    let (gw, _) = gateway(Settings {
        max_connections: Some(2),
        max_connect_rate_per_ip: Some(0),
        ..Default::default()
    })
    .await;
    let a = logged_in(gw.addr).await;
    let _b = logged_in(gw.addr).await;
    assert!(refused(gw.addr).await, "a third connection is closed");
    assert_eq!(gw.shared.conn_limiter.open(), 2);
    drop(a);
    assert!(
        eventually(5, || async { gw.shared.conn_limiter.open() == 1 }).await,
        "the slot is given back when a device leaves"
    );
    let _c = logged_in(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_source_address() {
    let (gw, _) = gateway(Settings {
        max_connections_per_ip: Some(2),
        max_connect_rate_per_ip: Some(0),
        ..Default::default()
    })
    .await;
    let a = logged_in(gw.addr).await;
    let _b = logged_in(gw.addr).await;
    assert!(refused(gw.addr).await);
    drop(a);
    assert!(eventually(5, || async { gw.shared.conn_limiter.open() == 1 }).await);
    let _c = logged_in(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connection_rate_per_source_address() {
    let (gw, _) = gateway(Settings {
        max_connect_rate_per_ip: Some(3),
        ..Default::default()
    })
    .await;
    // The bucket holds three: three devices get in at once, the fourth is refused even though
    // nothing else limits it.
    let _a = logged_in(gw.addr).await;
    let _b = logged_in(gw.addr).await;
    let _c = logged_in(gw.addr).await;
    assert!(refused(gw.addr).await);
    // A second later the bucket has refilled.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let _d = logged_in(gw.addr).await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_timeout_closes_silent_and_unidentified_connections() {
    let (gw, sink) = gateway(Settings {
        login_timeout_secs: Some(1),
        ..Default::default()
    })
    .await;
    // Says nothing at all.
    let mut silent = Device::connect(gw.addr).await;
    // Half a Teltonika login: detected, never completed.
    let mut partial = Device::connect(gw.addr).await;
    partial.send(&h(samples::LOGIN)[..6]).await;
    // A GT06 heartbeat before any login: the protocol keeps the connection (no ACK), the login
    // timeout does not.
    let mut gt06 = Device::connect(gw.addr).await;
    gt06.send(&h("78780a13440604000201baaf540d0a")).await;
    // A device that logs in in time stays.
    let mut good = logged_in(gw.addr).await;
    for d in [&mut silent, &mut partial, &mut gt06] {
        assert!(d.closed_within(5).await);
    }
    good.send(&h(samples::CODEC8)).await;
    assert_eq!(good.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    assert!(!good.closed_within(1).await, "logged-in device kept");
    let events = memory_events(&sink);
    assert!(events
        .iter()
        .any(|e| e.kind == avlgate::proto::EventKind::Status as i32));
    assert!(events.iter().all(|e| e.imei.starts_with("35630704244")));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_per_protocol() {
    let (gw, _) = gateway(Settings {
        protocol_setting: Some(vec![(
            "teltonika".into(),
            "idle_timeout_secs".into(),
            "1".into(),
        )]),
        idle_timeout_secs: Some(600),
        ..Default::default()
    })
    .await;
    let mut teltonika = logged_in(gw.addr).await;
    let mut wialon = Device::connect(gw.addr).await;
    wialon.send(b"#L#356307042441014;NA\r\n").await;
    assert_eq!(wialon.read_line(10).await.as_deref(), Some("#AL#1\r\n"));
    assert!(teltonika.closed_within(5).await, "Teltonika idle after 1 s");
    assert!(!wialon.closed_within(2).await, "Wialon keeps the default");
    gw.stop().await;
}

/// A silent session lets go of its read buffer after 2 s. That is no activity: the idle
/// deadline stays where the device's last frame put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_an_idle_sessions_buffer_does_not_postpone_its_idle_timeout() {
    let (gw, _) = gateway(Settings {
        protocol_setting: Some(vec![(
            "teltonika".into(),
            "idle_timeout_secs".into(),
            "3".into(),
        )]),
        ..Default::default()
    })
    .await;
    let mut d = logged_in(gw.addr).await;
    let since = std::time::Instant::now();
    assert!(d.closed_within(10).await, "closed for idleness");
    let took = since.elapsed();
    // 3 s after the login; a deadline restarted by the release at 2 s would give 5 s.
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(4500),
        "closed after {took:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_field_closes_before_anything_is_buffered() {
    let (gw, sink) = gateway(Settings::default()).await;
    let mut d = logged_in(gw.addr).await;
    // Preamble, then a data length of 2 GiB: refused from the 8-byte header.
    d.send(&h("000000007fffffff08")).await;
    assert!(d.closed_within(5).await);
    assert!(memory_events(&sink)
        .iter()
        .all(|e| e.kind != avlgate::proto::EventKind::Status as i32));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_is_refused_cheaply_and_devices_still_get_in() {
    const STORM: usize = 1000;
    // 1000 connections at once against a pod that takes 50: the rest are closed at accept,
    // and a device arriving after it is served at once.
    let (gw, _) = gateway(Settings {
        max_connections: Some(50),
        max_connect_rate_per_ip: Some(0),
        max_connections_per_ip: Some(0),
        login_timeout_secs: Some(2),
        ..Default::default()
    })
    .await;
    let addr = gw.addr;
    let storm: Vec<_> = (0..STORM)
        .map(|_| {
            tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return "connect failed";
                };
                let mut b = [0u8; 1];
                // Closed by the gateway: at once when refused, at the login timeout otherwise.
                match tokio::time::timeout(
                    std::time::Duration::from_secs(30),
                    tokio::io::AsyncReadExt::read(&mut s, &mut b),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => "closed",
                    Ok(Ok(_)) => "answered",
                    Err(_) => "hung",
                }
            })
        })
        .collect();
    let mut outcomes = std::collections::BTreeMap::new();
    for t in storm {
        *outcomes.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        outcomes.get("closed"),
        Some(&STORM),
        "every storm connection was closed, none hung: {outcomes:?}"
    );
    assert!(
        eventually(5, || async { gw.shared.conn_limiter.open() == 0 }).await,
        "every slot was given back"
    );
    let mut d = logged_in(gw.addr).await;
    d.send(&h(samples::CODEC8)).await;
    assert_eq!(d.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    gw.stop().await;
}
