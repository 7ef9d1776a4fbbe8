//! The operations listener: `/metrics` after real traffic, `/healthz`, `/readyz` following
//! the sink's broker connection (cut with the fault proxy) and going 503 for the drain.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::Settings;
use avlgate::protocol::teltonika::samples;
use avlgate::sink::memory::MemorySink;
use avlgate::sink::{Delivery, OutMessage, Sink};
use common::*;
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_documented_names_after_traffic() {
    let gw = TestGateway::with_sink(
        Settings {
            max_connections_per_ip: Some(2),
            max_connect_rate_per_ip: Some(0),
            ..Default::default()
        },
        Arc::new(MemorySink::new()),
        |_| {},
    )
    .await;
    let ops = gw.ops().await;
    assert_eq!(http_get(ops, "/healthz").await.0, 200);
    assert_eq!(http_get(ops, "/nope").await.0, 404);

    let mut d = Device::connect(gw.addr).await;
    d.send(&h(samples::LOGIN)).await;
    assert_eq!(d.read_exact(1, 10).await, Some(vec![1]));
    d.send(&h(samples::CODEC8)).await;
    assert_eq!(d.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    // A bad CRC: a decode error, no ACK.
    let mut bad = h(samples::CODEC8);
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    d.send(&bad).await;
    // A second connection is allowed, a third from this address is refused.
    let _second = Device::connect(gw.addr).await;
    let mut third = Device::connect(gw.addr).await;
    assert!(third.closed_within(5).await);

    let expected = [
        "avlgate_connections_accepted_total{transport=\"tcp\"}",
        "avlgate_connections_open{protocol=\"teltonika\",transport=\"tcp\"}",
        "avlgate_connections_rejected_total{transport=\"tcp\",reason=\"max_connections_per_ip\"}",
        "avlgate_detections_total{transport=\"tcp\",outcome=\"teltonika\"}",
        "avlgate_frames_decoded_total{protocol=\"teltonika\"}",
        "avlgate_records_decoded_total{protocol=\"teltonika\"}",
        "avlgate_decode_errors_total{protocol=\"teltonika\",kind=\"bad_checksum\"}",
        "avlgate_replies_sent_total{protocol=\"teltonika\"}",
        "avlgate_acks_sent_total{protocol=\"teltonika\"}",
        "avlgate_sink_in_flight_records",
        "avlgate_sink_in_flight_bytes",
        "avlgate_sink_delivery_seconds_bucket{le=\"0.005\"}",
        "avlgate_sink_delivery_seconds_count",
        "avlgate_sink_delivered_records_total{sink=\"memory\"}",
        "avlgate_sessions_registered",
        "avlgate_ready",
    ];
    // Counters are recorded by the sessions as they go; give them a moment.
    let mut body = String::new();
    let mut all_there = false;
    for _ in 0..100 {
        let (status, text) = http_get(ops, "/metrics").await;
        assert_eq!(status, 200);
        body = text;
        all_there = expected.iter().all(|name| body.contains(name));
        if all_there {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing: Vec<_> = expected.iter().filter(|n| !body.contains(*n)).collect();
    assert!(all_there, "missing {missing:?} in\n{body}");
    assert!(!body.contains(IMEI), "no metric label carries an IMEI");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_broker_connection() {
    let broker = embedded_broker();
    let proxy = FaultProxy::start(broker, true).await;
    let gw = TestGateway::mqtt(proxy.addr).await;
    let ops = gw.ops().await;
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready once the sink is connected"
    );
    // The command ledger's size and its cap, refreshed on the dispatcher's tick.
    assert!(
        eventually(15, || async {
            let body = http_get(ops, "/metrics").await.1;
            body.contains("avlgate_command_ledger_commands ")
                && body.contains("avlgate_command_ledger_devices ")
                && body.contains("avlgate_command_ledger_commands_max 1000000")
        })
        .await,
        "ledger gauges on /metrics"
    );
    proxy.cut();
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 503 }).await,
        "not ready while the broker is unreachable"
    );
    assert_eq!(http_get(ops, "/healthz").await.0, 200, "alive all the same");
    proxy.restore();
    assert!(
        eventually(20, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready again after the sink reconnected"
    );
    gw.stop().await;
}

/// A sink that confirms at once while open and holds batches while closed.
struct Gate {
    held: AtomicBool,
    release: Arc<Semaphore>,
}

impl Sink for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn send(&self, _messages: Arc<[OutMessage]>) -> Delivery {
        let hold = self.held.load(Ordering::SeqCst);
        let release = self.release.clone();
        Box::pin(async move {
            if hold {
                let _ = release.acquire().await;
            }
            Ok(())
        })
    }
    fn is_connected(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_goes_503_when_the_drain_starts_and_the_frame_in_hand_is_still_acked() {
    let gate = Arc::new(Gate {
        held: AtomicBool::new(false),
        release: Arc::new(Semaphore::new(0)),
    });
    let gw = TestGateway::with_sink(Settings::default(), gate.clone(), |_| {}).await;
    let ops = gw.ops().await;
    assert_eq!(http_get(ops, "/readyz").await, (200, "ready\n".to_string()));

    let mut d = Device::connect(gw.addr).await;
    d.send(&h(samples::LOGIN)).await;
    assert_eq!(d.read_exact(1, 10).await, Some(vec![1]));
    gate.held.store(true, Ordering::SeqCst);
    d.send(&h(samples::CODEC8)).await;
    // The frame is with the broker; SIGTERM arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shutdown.cancel();
    assert!(
        eventually(5, || async { http_get(ops, "/readyz").await.0 == 503 }).await,
        "out of the load balancer as soon as the drain starts"
    );
    let (_, why) = http_get(ops, "/readyz").await;
    assert!(why.contains("draining"), "{why}");
    assert!(
        !gw.handle.is_finished(),
        "the drain waits for the frame in hand"
    );
    // New devices are no longer accepted.
    let refused = tokio::net::TcpStream::connect(gw.addr).await;
    if let Ok(s) = refused {
        let mut dev = Device { stream: s };
        assert!(dev.closed_within(5).await);
    }
    // The broker confirms: the device gets its ACK, then the gateway finishes.
    gate.held.store(false, Ordering::SeqCst);
    gate.release.add_permits(100);
    assert_eq!(d.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    gw.stop().await;
}

/// Device input accepted for its one meaning is counted by protocol and kind, once per record
/// (a padded number in one record, 64 minutes in both records of a blackbox packet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_device_quirks_are_counted_by_kind() {
    let gw = TestGateway::with_sink(Settings::default(), Arc::new(MemorySink::new()), |_| {}).await;
    let ops = gw.ops().await;
    let mut d = Device::connect(gw.addr).await;
    d.send(b"#L#356307042441019;NA\r\n").await;
    assert_eq!(d.read_line(10).await.as_deref(), Some("#AL#1\r\n"));
    d.send(b"#SD#270413;205601;5544.6025;N;03739.6834;E; 65;74      ;0 ;4\r\n")
        .await;
    assert_eq!(d.read_line(10).await.as_deref(), Some("#ASD#1\r\n"));
    let rec = "110315;045857;5364.0167;N;06127.8262;E;0;155;965;7";
    d.send(format!("#B#{rec}|{rec}\r\n").as_bytes()).await;
    assert_eq!(d.read_line(10).await.as_deref(), Some("#AB#2\r\n"));
    let expected = [
        "avlgate_lenient_input_total{protocol=\"wialon\",kind=\"padded_number\"} 1",
        "avlgate_lenient_input_total{protocol=\"wialon\",kind=\"coordinate_minutes\"} 2",
    ];
    let mut body = String::new();
    for _ in 0..100 {
        body = http_get(ops, "/metrics").await.1;
        if expected.iter().all(|l| body.lines().any(|b| b == *l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for l in expected {
        assert!(body.lines().any(|b| b == l), "missing {l} in\n{body}");
    }
    gw.stop().await;
}
