//! Kafka end to end against a **real broker process**: tansu (a Kafka-compatible broker,
//! memory storage) on a loopback port, started per test (see `common/tansu.rs`). Devices send
//! over real TCP sockets; what was published is read back with a real consumer and counted by
//! consuming, never by offsets.
//!
//! Faults are process faults: the broker stalled (SIGSTOP) and continued (SIGCONT) under
//! traffic with commands active, for 10 s with librdkafka's request timeout shortened (the
//! same path as a long stall: in-flight requests time out, the broker then fences the
//! idempotent producer) and for 90 s with the defaults; and killed and restarted. Faults only
//! librdkafka's mock cluster can inject are in `kafka_e2e.rs` and `kafka_fatal.rs`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use avlgate::config::{Settings, SinkKind};
use avlgate::proto::{command_result, CommandStatus, EventKind, TelemetryEvent};
use avlgate::protocol::gt06::frame as gt06;
use avlgate::protocol::teltonika::samples;
use common::commands::*;
use common::fleet::{census, run_device, DeviceReport};
use common::kafka::read_all;
use common::tansu::Tansu;
use common::*;
use prost::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

const EVENTS: &str = "avlgate.events";

/// A broker with the gateway's topics (2 partitions each), or `None` when tansu is not
/// installed outside CI.
async fn broker() -> Option<Tansu> {
    let t = Tansu::start()?;
    t.create_topics(&[EVENTS, COMMANDS, RESULTS], 2).await;
    Some(t)
}

fn events_of(records: &[common::kafka::Consumed]) -> Vec<TelemetryEvent> {
    records
        .iter()
        .map(|r| TelemetryEvent::decode(&r.payload[..]).expect("protobuf TelemetryEvent"))
        .collect()
}

async fn read_events(bootstrap: &str) -> Vec<TelemetryEvent> {
    let b = bootstrap.to_string();
    let got = tokio::task::spawn_blocking(move || read_all(&b, EVENTS, 2, Duration::from_secs(3)))
        .await
        .unwrap();
    events_of(&got)
}

fn backend(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "300000")
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_keyed_by_imei_with_headers_and_acked_after_delivery() {
    let Some(broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let gw = TestGateway::kafka(&bootstrap, 10).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]), "login acked");
    dev.send(&[h(samples::CODEC8E), h(samples::CODEC16)].concat())
        .await;
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 1]));
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 2]));
    assert!(
        eventually(5, || async { gw.publisher.sink().is_connected() }).await,
        "statistics saw the broker"
    );

    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || read_all(&b, EVENTS, 2, Duration::from_secs(3)))
        .await
        .unwrap();
    let events = events_of(&got);
    let kinds: Vec<i32> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::SessionOpened as i32,
            EventKind::Status as i32,
            EventKind::Status as i32,
            EventKind::Status as i32
        ],
        "one device's records stay in order in one partition"
    );
    let partitions: BTreeSet<i32> = got.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 1, "key = IMEI keeps one partition");
    for (r, e) in got.iter().zip(&events) {
        assert_eq!(r.key, IMEI);
        assert_eq!(e.imei, IMEI);
        assert_eq!(r.headers["avlgate-protocol"], "teltonika");
        assert_eq!(r.headers["avlgate-schema"], "avlgate.v1.TelemetryEvent");
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
    }
    gw.stop().await;
}

/// Every record a device had acknowledged is in the topic (counted by consuming), and records
/// appear more than once only if their frame was resent.
fn assert_acked_records_published(reports: &[DeviceReport], events: &[TelemetryEvent]) {
    let census = census(events);
    let mut acked = BTreeSet::new();
    let mut resent = BTreeSet::new();
    for r in reports {
        acked.extend(r.acked.iter().cloned());
        resent.extend(r.resent.iter().cloned());
    }
    let missing: Vec<_> = acked.iter().filter(|id| !census.contains_key(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not published: {missing:?}"
    );
    let dups: Vec<_> = census
        .iter()
        .filter(|(id, n)| **n > 1 && !resent.contains(*id))
        .collect();
    assert!(dups.is_empty(), "duplicates of records sent once: {dups:?}");
}

/// One stall of the broker process under traffic.
struct Stall {
    secs: u64,
    delivery_timeout_secs: u64,
    kafka_options: Vec<(String, String)>,
}

/// Devices stream through the gateway and a command device is connected; the broker process
/// is frozen (SIGSTOP) for `secs`, a command is produced meanwhile, then the broker goes on
/// (SIGCONT). Checks: `/readyz` 503 throughout the stall once the broker stopped confirming,
/// the producer rebuilt (the broker fenced the old one), devices acknowledged again within
/// seconds of the resume with no gateway restart, the command delivered and answered,
/// nothing acknowledged that is not in the topic.
async fn stall_under_traffic(s: Stall) {
    let Some(broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    avlgate::ops::install_prometheus().unwrap();
    let (gw, sink) = TestGateway::with_kafka_sink(Settings {
        kafka_brokers: Some(bootstrap.clone()),
        delivery_timeout_secs: Some(s.delivery_timeout_secs),
        kafka_option: Some(s.kafka_options.clone()),
        command_reply_timeout_secs: Some(30),
        ..Default::default()
    })
    .await;
    let ops = gw.ops().await;
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready before the stall"
    );
    let backend = backend(&bootstrap);
    let commander = "356307042441070";
    let mut cmd_dev = command_device(gw.addr, commander).await;
    send_command(&backend, "before", commander, Some("getinfo"), 600).await;
    teltonika_answer(&mut cmd_dev, "getinfo", "before the stall").await;
    // A command written before the stall, whose device answers while the broker is frozen.
    let answerer = "356307042441088";
    let mut ans_dev = command_device(gw.addr, answerer).await;
    send_command(&backend, "around", answerer, Some("getio"), 600).await;
    assert_eq!(
        teltonika_read_command(&mut ans_dev, 20).await.as_deref(),
        Some(&b"getio"[..])
    );

    // Six devices, 2 records a frame, a frame every 250 ms: 40 frames each, some before the
    // stall, the rest after it.
    let frames = 40;
    let devices: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(run_device(
                gw.addr,
                n,
                frames,
                2,
                Duration::from_millis(250),
                Duration::from_secs(6),
                Duration::from_secs(s.secs + 90),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.stall();
    let stalled_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    teltonika_reply(&mut ans_dev, "DIN1:1").await;
    // A backend's command while the broker is frozen: produced when it goes on.
    let during = {
        let backend = backend.clone();
        tokio::spawn(async move {
            send_command(&backend, "during", commander, Some("getgps"), 600).await;
        })
    };

    // Not ready once the broker stopped confirming (the stall threshold plus a margin for
    // the first unconfirmed record), until it goes on.
    let stall_after = Duration::from_secs(s.delivery_timeout_secs / 3)
        .clamp(Duration::from_secs(2), Duration::from_secs(10));
    tokio::time::sleep(stall_after + Duration::from_secs(3)).await;
    let mut samples = 0;
    while stalled_at.elapsed() < Duration::from_secs(s.secs) {
        let (status, body) = http_get(ops, "/readyz").await;
        assert_eq!(
            status,
            503,
            "ready at {:?} into the stall: {body}",
            stalled_at.elapsed()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(samples >= 4, "readiness sampled during the stall");
    broker.resume();
    let resumed_at = Instant::now();

    // The command produced during the stall reaches the device once the broker is back.
    teltonika_answer(&mut cmd_dev, "getgps", "after the stall").await;
    during.await.unwrap();

    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    for r in &reports {
        assert_eq!(r.frames_acked as u64, frames, "{} finished: {r:?}", r.imei);
        let first_after = r
            .acked_frames
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t > resumed_at)
            .expect("acknowledged after the resume");
        assert!(
            first_after - resumed_at < Duration::from_secs(15),
            "{} acknowledged again {:?} after the resume",
            r.imei,
            first_after - resumed_at
        );
    }
    assert!(
        reports.iter().map(|r| r.retransmits).sum::<usize>() > 0,
        "the stall left frames unacknowledged"
    );
    assert!(
        sink.current_producer().0 >= 1,
        "the fenced producer was rebuilt in place (generation {})",
        sink.current_producer().0
    );
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready again after the stall"
    );

    let events = read_events(&bootstrap).await;
    assert_acked_records_published(&reports, &events);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || results(&b))
        .await
        .unwrap();
    for id in ["before", "during", "around"] {
        let rs = got
            .get(id)
            .unwrap_or_else(|| panic!("no result for {id}: {got:?}"));
        assert_eq!(terminal(rs).len(), 1, "{id}: one terminal result: {rs:?}");
        assert_eq!(terminal(rs)[0].status, CommandStatus::Responded as i32);
    }
    assert_eq!(
        terminal(&got["around"])[0].response,
        Some(command_result::Response::ResponseText("DIN1:1".into())),
        "the answer that arrived during the stall"
    );
    assert_eq!(
        got["around"]
            .iter()
            .filter(|r| r.status == CommandStatus::Responded as i32)
            .count(),
        1,
        "exactly one RESPONDED: {:?}",
        got["around"]
    );
    assert_eq!(
        command_drops(ops).await,
        0.0,
        "nothing dropped by the command flow"
    );
    gw.stop().await;
}

/// The fast variant: librdkafka's request timeout cut to 2 s, so a 10 s stall takes the same
/// path as the 90 s one (in-flight requests time out, the broker fences the producer when it
/// goes on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_broker_stall_under_traffic() {
    stall_under_traffic(Stall {
        secs: 10,
        delivery_timeout_secs: 5,
        kafka_options: vec![("request.timeout.ms".into(), "2000".into())],
    })
    .await;
}

/// The production case, with librdkafka's defaults and the default 30 s delivery deadline:
/// the broker frozen for 90 s. Slow (about two minutes), and kept in the suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ninety_second_broker_stall_under_traffic() {
    stall_under_traffic(Stall {
        secs: 90,
        delivery_timeout_secs: 30,
        kafka_options: vec![],
    })
    .await;
}

/// The broker process killed mid-stream and started again (empty: memory storage). Nothing
/// is acknowledged while it is gone, `/readyz` says 503, and once it is back the devices
/// finish their streams; every record acknowledged after the restart is in the new broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream() {
    let Some(mut broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let gw = TestGateway::kafka(&bootstrap, 5).await;
    let ops = gw.ops().await;
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready before the kill"
    );
    let frames = 30;
    let devices: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(run_device(
                gw.addr,
                n,
                frames,
                3,
                Duration::from_millis(150),
                Duration::from_secs(6),
                Duration::from_secs(90),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    broker.kill();
    let killed_at = Instant::now();
    assert!(
        eventually(10, || async { http_get(ops, "/readyz").await.0 == 503 }).await,
        "not ready while the broker is gone"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    broker.restart();
    broker.create_topics(&[EVENTS, COMMANDS, RESULTS], 2).await;
    let restarted_at = Instant::now();

    let mut reports = Vec::new();
    for d in devices {
        reports.push(d.await.unwrap());
    }
    let census = census(&read_events(&bootstrap).await);
    let mut after_restart = 0;
    for r in &reports {
        assert_eq!(r.frames_acked as u64, frames, "{} finished: {r:?}", r.imei);
        for (t, ids) in &r.acked_frames {
            assert!(
                !(*t > killed_at + Duration::from_millis(500) && *t < restarted_at),
                "{} had a frame acknowledged while the broker was gone",
                r.imei
            );
            if *t > restarted_at {
                after_restart += ids.len();
                for id in ids {
                    assert!(
                        census.contains_key(id),
                        "acknowledged after the restart but not published: {id:?}"
                    );
                }
            }
        }
    }
    assert!(
        after_restart > 0,
        "frames were acknowledged after the restart"
    );
    assert!(
        eventually(15, || async { http_get(ops, "/readyz").await.0 == 200 }).await,
        "ready again"
    );
    gw.stop().await;
}

async fn pod(bootstrap: &str, name: &str) -> TestGateway {
    TestGateway::start(Settings {
        sink: Some(SinkKind::Kafka),
        kafka_brokers: Some(bootstrap.into()),
        gateway_name: Some(name.into()),
        delivery_timeout_secs: Some(10),
        command_reply_timeout_secs: Some(5),
        ..Default::default()
    })
    .await
}

/// Commands across two pods sharing one broker: devices of each protocol on either pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_right_device_once_across_two_pods() {
    let Some(broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let a = pod(&bootstrap, "pod-a").await;
    let b = pod(&bootstrap, "pod-b").await;
    let backend: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();

    // Teltonika on pod A answers "getinfo".
    let tel_imei = "356307042441013";
    let mut tel = command_device(a.addr, tel_imei).await;
    // GT06 on pod B.
    let gt_imei = "864717003283581";
    let mut gt = Device::connect(b.addr).await;
    gt.send(&gt06::encode(false, 0x01, &gt06_imei_bcd(gt_imei), 1))
        .await;
    assert_eq!(
        gt.read_exact(10, 15).await.map(|v| v[3]),
        Some(0x01),
        "GT06 login acked"
    );
    // Wialon 1.1 on pod B.
    let wia_imei = "862000000000001";
    let mut wia = Device::connect(b.addr).await;
    wia.send(format!("#L#{wia_imei};NA\r\n").as_bytes()).await;
    assert_eq!(wia.read_line(15).await.as_deref(), Some("#AL#1\r\n"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    send_command(&backend, "tel-1", tel_imei, Some("getinfo"), 60).await;
    send_command(&backend, "gt-1", gt_imei, Some("Relay,1#"), 60).await;
    send_command(&backend, "wia-1", wia_imei, Some("hello driver"), 60).await;
    send_command(&backend, "offline-1", "356000000000009", Some("getver"), 2).await;
    send_command(&backend, "bad-1", "35630704244101X", None, 60).await;
    // A device that connects later, to pod B, within the TTL.
    let late_imei = "356307042441021";
    send_command(&backend, "late-1", late_imei, Some("getgps"), 60).await;

    teltonika_answer(&mut tel, "getinfo", "RTC:2026/11/21 Init:2026/11/20").await;

    // GT06: the 0x80 command, answered with 0x15 echoing the server flag.
    let head = gt.read_exact(3, 20).await.expect("GT06 command");
    assert_eq!(&head[..2], &[0x78, 0x78]);
    let rest = gt.read_exact(head[2] as usize + 2, 5).await.unwrap();
    assert_eq!(rest[0], 0x80);
    let flag = &rest[2..6];
    let text = &rest[6..6 + rest[1] as usize - 4];
    assert_eq!(text, b"Relay,1#");
    let mut content = vec![(4 + 9) as u8];
    content.extend_from_slice(flag);
    content.extend_from_slice(b"Relay OK!");
    content.extend_from_slice(&[0, 2]);
    gt.send(&gt06::encode(false, 0x15, &content, 7)).await;

    assert_eq!(
        wia.read_line(20).await.as_deref(),
        Some("#M#hello driver\r\n")
    );

    let mut late = command_device(b.addr, late_imei).await;
    teltonika_answer(&mut late, "getgps", "GPS:1 Sat:9").await;

    // Let expiry (2 s TTL + up to 2 s jitter) and the results land.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let b2 = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || results(&b2))
        .await
        .unwrap();

    let status = |id: &str| -> Vec<i32> { got[id].iter().map(|r| r.status).collect() };
    for (id, rs) in &got {
        assert_eq!(
            terminal(rs).len(),
            1,
            "{id}: exactly one terminal result: {rs:?}"
        );
    }
    assert_eq!(
        status("tel-1"),
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    let tel_done = terminal(&got["tel-1"])[0];
    assert_eq!(tel_done.gateway, "pod-a");
    assert_eq!(
        tel_done.response,
        Some(command_result::Response::ResponseText(
            "RTC:2026/11/21 Init:2026/11/20".into()
        ))
    );
    assert!(tel_done.sent_at.is_some() && tel_done.completed_at.is_some());
    assert_eq!(
        status("gt-1"),
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    assert_eq!(terminal(&got["gt-1"])[0].gateway, "pod-b");
    assert_eq!(
        terminal(&got["gt-1"])[0].response,
        Some(command_result::Response::ResponseText("Relay OK!".into()))
    );
    assert_eq!(
        status("wia-1"),
        vec![CommandStatus::Sent as i32],
        "Wialon: SENT is final"
    );
    assert_eq!(status("offline-1"), vec![CommandStatus::Expired as i32]);
    assert_eq!(status("bad-1"), vec![CommandStatus::Rejected as i32]);
    assert!(got["bad-1"][0].reason.contains("imei") || got["bad-1"][0].reason.contains("text"));
    assert_eq!(
        status("late-1"),
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    assert_eq!(terminal(&got["late-1"])[0].gateway, "pod-b");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_command_survives_a_pod_restart() {
    let Some(broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let a = pod(&bootstrap, "pod-a").await;
    let backend: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let imei = "356307042441039";
    send_command(&backend, "restart-1", imei, Some("getinfo"), 120).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The only pod restarts (same name, new instance) before the device shows up.
    a.stop().await;
    let a2 = pod(&bootstrap, "pod-a").await;
    let mut dev = command_device(a2.addr, imei).await;
    teltonika_answer(&mut dev, "getinfo", "ok").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b2 = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || results(&b2))
        .await
        .unwrap();
    let rs = &got["restart-1"];
    assert_eq!(terminal(rs).len(), 1, "{rs:?}");
    assert_eq!(terminal(rs)[0].status, CommandStatus::Responded as i32);
    a2.stop().await;
}

/// One device, two live sessions on two pods (the older socket half-dead on pod A, a new login
/// on pod B): the command goes to the newer session, and nothing is written to the older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newer_of_two_sessions_on_two_pods_gets_the_command() {
    let Some(broker) = broker().await else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let a = pod(&bootstrap, "pod-a").await;
    let b = pod(&bootstrap, "pod-b").await;
    let backend = backend(&bootstrap);
    let imei = "356307042441120";
    let mut old = command_device(a.addr, imei).await;
    // Let pod A's announcement of the session reach the log first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut new = command_device(b.addr, imei).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Three commands (without the rule, each would go to whichever pod's claim landed first).
    for (id, text) in [
        ("newest-1", "getinfo"),
        ("newest-2", "getver"),
        ("newest-3", "getgps"),
    ] {
        send_command(&backend, id, imei, Some(text), 60).await;
        teltonika_answer(&mut new, text, "from the new socket").await;
    }
    assert_eq!(
        old.read_exact(1, 3).await,
        None,
        "nothing written to the older session"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b2 = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || results(&b2))
        .await
        .unwrap();
    for id in ["newest-1", "newest-2", "newest-3"] {
        let rs = &got[id];
        assert_eq!(terminal(rs).len(), 1, "{rs:?}");
        assert_eq!(terminal(rs)[0].status, CommandStatus::Responded as i32);
        assert_eq!(terminal(rs)[0].gateway, "pod-b");
    }
    a.stop().await;
    b.stop().await;
}
