//! A pod SIGKILLed while it holds commands: real `avlgate serve` processes on a real Kafka
//! broker process (tansu), a device on a real socket. The pods beat every sixth of a short
//! lease; when the killed pod stops beating, the other settles what it held through the
//! claims log: the command that was written gets one EXPIRED `holder lost`, the one that was
//! not is delivered again when the device reconnects.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use avlgate::proto::CommandStatus;
use common::commands::*;
use common::tansu::Tansu;
use common::*;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;

/// An `avlgate serve` process publishing to Kafka.
struct Pod {
    child: Option<Child>,
    stderr: PathBuf,
    devices: SocketAddr,
    ops: SocketAddr,
}

impl Pod {
    fn start(bootstrap: &str, name: &str, lease_secs: u64) -> Pod {
        let devices: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stderr = std::env::temp_dir().join(format!("avlgate-failover-{}.err", devices.port()));
        let child = Command::new(env!("CARGO_BIN_EXE_avlgate"))
            .arg("serve")
            .args(["--sink", "kafka", "--kafka-brokers", bootstrap])
            .args(["--listen", &devices.to_string()])
            .args(["--metrics-listen", &ops.to_string()])
            .args(["--gateway-name", name])
            .args(["--command-lease-secs", &lease_secs.to_string()])
            .args(["--delivery-timeout-secs", "10"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start avlgate serve");
        Pod {
            child: Some(child),
            stderr,
            devices,
            ops,
        }
    }

    async fn ready(&self) -> bool {
        eventually(30, || async {
            tokio::net::TcpStream::connect(self.ops).await.is_ok()
                && http_get(self.ops, "/readyz").await.0 == 200
        })
        .await
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL: no drain, no last word.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_killed_while_holding_commands_is_settled_by_another_within_the_lease() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    broker
        .create_topics(&["avlgate.events", COMMANDS, RESULTS], 2)
        .await;
    let bootstrap = broker.bootstrap();
    let lease = 6;
    let mut a = Pod::start(&bootstrap, "pod-a", lease);
    let b = Pod::start(&bootstrap, "pod-b", lease);
    assert!(a.ready().await, "pod-a ready: {}", a.log());
    assert!(b.ready().await, "pod-b ready: {}", b.log());
    let backend: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();

    let imei = "356307042441138";
    let mut dev = command_device(a.devices, imei).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Written and awaiting its answer when the pod dies...
    send_command(&backend, "held-written", imei, Some("getinfo"), 120).await;
    // ...and queued behind it (Teltonika takes one command at a time): never written.
    send_command(&backend, "held-queued", imei, Some("getver"), 120).await;
    assert_eq!(
        teltonika_read_command(&mut dev, 20).await.as_deref(),
        Some(&b"getinfo"[..])
    );
    // Pod A's SENT for the written one is out, so its claims are in the log.
    let b2 = bootstrap.clone();
    let sent = eventually(20, || {
        let b2 = b2.clone();
        async move {
            tokio::task::spawn_blocking(move || results(&b2))
                .await
                .unwrap()
                .get("held-written")
                .is_some_and(|rs| rs.iter().any(|r| r.status == CommandStatus::Sent as i32))
        }
    })
    .await;
    assert!(sent, "SENT reported by pod-a: {}", a.log());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed_at = SystemTime::now();
    a.kill();
    assert!(
        dev.closed_within(5).await,
        "the killed pod's socket is gone"
    );
    // The device reconnects, to the pod that is left.
    let mut dev = command_device(b.devices, imei).await;
    // The queued command was never written: once pod A is taken for lost it is delivered
    // again, here.
    assert_eq!(
        teltonika_read_command(&mut dev, lease + 15)
            .await
            .as_deref(),
        Some(&b"getver"[..]),
        "re-delivered: {}",
        b.log()
    );
    teltonika_reply(&mut dev, "FW:03.28").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let b2 = bootstrap.clone();
        let got = tokio::task::spawn_blocking(move || results(&b2))
            .await
            .unwrap();
        let done = ["held-written", "held-queued"]
            .iter()
            .all(|id| got.get(*id).is_some_and(|rs| !terminal(rs).is_empty()));
        if done {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both settled: {got:?}\n{}",
            b.log()
        );
    };
    for (id, rs) in &got {
        assert_eq!(
            terminal(rs).len(),
            1,
            "{id}: exactly one terminal result: {rs:?}"
        );
    }
    let written = terminal(&got["held-written"])[0];
    assert_eq!(written.status, CommandStatus::Expired as i32);
    assert!(
        written.reason.starts_with("holder lost"),
        "{}",
        written.reason
    );
    assert!(written.reason.contains("pod-a"), "{}", written.reason);
    assert_eq!(written.gateway, "pod-b");
    assert!(written.sent_at.is_some(), "it was written: {written:?}");
    let settled_at = avlgate::event::system_time(written.completed_at.as_ref().unwrap()).unwrap();
    let after = settled_at.duration_since(killed_at).unwrap_or_default();
    eprintln!("held-written settled {after:?} after the kill (lease {lease} s)");
    assert!(
        after <= Duration::from_secs(lease),
        "settled {after:?} after the kill, lease {lease} s"
    );
    let queued = terminal(&got["held-queued"])[0];
    assert_eq!(queued.status, CommandStatus::Responded as i32);
    assert_eq!(queued.gateway, "pod-b");
    assert_eq!(
        statuses(&got["held-queued"]),
        vec![CommandStatus::Sent, CommandStatus::Responded],
        "written once, by pod-b"
    );
}
