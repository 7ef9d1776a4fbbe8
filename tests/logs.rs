//! What an operator reads: the `avlgate serve` process at the default log level. A clean
//! start prints no warning, and steady traffic prints nothing per second (librdkafka's
//! statistics arrive every second; they are read, never logged).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fleet::run_device;
use common::tansu::Tansu;
use common::*;

/// `avlgate serve` with `args`, stderr to a file, at the default log level.
struct Serve {
    child: Child,
    stderr: PathBuf,
    pub devices: SocketAddr,
    pub ops: SocketAddr,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let devices: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ops: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stderr = std::env::temp_dir().join(format!("avlgate-logs-{}.err", devices.port()));
        let child = Command::new(env!("CARGO_BIN_EXE_avlgate"))
            .arg("serve")
            .args(["--listen", &devices.to_string()])
            .args(["--metrics-listen", &ops.to_string()])
            .args(args)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start avlgate serve");
        Serve {
            child,
            stderr,
            devices,
            ops,
        }
    }

    async fn ready(&self) -> bool {
        eventually(20, || async {
            tokio::net::TcpStream::connect(self.ops).await.is_ok()
                && http_get(self.ops, "/readyz").await.0 == 200
        })
        .await
    }

    /// The log so far, one entry per line, without colour codes.
    fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        text.lines().map(strip_ansi).collect()
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        let _ = std::fs::remove_file(&self.stderr);
        status
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// The README's first command: the embedded broker, a device, its ACK; no WARN or ERROR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_embedded_start_prints_no_warning() {
    let mqtt = format!("127.0.0.1:{}", free_port());
    let gw = Serve::start(&["--embedded-mqtt-listen", &mqtt]);
    assert!(gw.ready().await, "ready: {:#?}", gw.lines());
    let mut dev = Device::connect(gw.devices).await;
    dev.send(&h(avlgate::protocol::teltonika::samples::LOGIN))
        .await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]));
    dev.send(&h(avlgate::protocol::teltonika::samples::CODEC8))
        .await;
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 1]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = gw.lines();
    assert!(!lines.is_empty(), "the gateway logs at all");
    assert!(
        warnings(&lines).is_empty(),
        "a clean start warned: {lines:#?}"
    );
    assert!(gw.stop().success());
}

/// Twelve seconds of Kafka traffic (six devices, a frame every 250 ms) with commands on:
/// statistics come every second, so a per-second line would show ten times over. Nothing is
/// logged in the steady state, and nothing at WARN or above at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_traffic_logs_nothing_per_second() {
    let Some(broker) = Tansu::start() else {
        return;
    };
    broker
        .create_topics(
            &[
                "avlgate.events",
                "avlgate.commands",
                "avlgate.command-results",
            ],
            2,
        )
        .await;
    let gw = Serve::start(&["--sink", "kafka", "--kafka-brokers", &broker.bootstrap()]);
    assert!(gw.ready().await, "ready: {:#?}", gw.lines());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_start = gw.lines().len();
    let devices: Vec<_> = (0..6)
        .map(|n| {
            tokio::spawn(run_device(
                gw.devices,
                n,
                48,
                2,
                Duration::from_millis(250),
                Duration::from_secs(6),
                Duration::from_secs(40),
            ))
        })
        .collect();
    for d in devices {
        let r = d.await.unwrap();
        assert_eq!(r.frames_acked, 48, "{r:?}");
    }
    let lines = gw.lines();
    let steady = &lines[at_start..];
    assert!(
        steady.len() <= 2,
        "{} lines logged during 12 s of traffic: {steady:#?}",
        steady.len()
    );
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    assert!(bytes < 8 * 1024, "{bytes} bytes logged in all: {lines:#?}");
    assert!(warnings(&lines).is_empty(), "warned: {lines:#?}");
    assert!(gw.stop().success());
}

/// Anyone can send malformed frames: 300 of them in a burst (bad CRCs from a logged-in
/// device) give one or two WARN lines, not 300; the metric counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_frames_is_throttled_in_the_log() {
    let mqtt = format!("127.0.0.1:{}", free_port());
    let gw = Serve::start(&["--embedded-mqtt-listen", &mqtt]);
    assert!(gw.ready().await, "ready: {:#?}", gw.lines());
    let mut dev = Device::connect(gw.devices).await;
    dev.send(&h(avlgate::protocol::teltonika::samples::LOGIN))
        .await;
    assert_eq!(dev.read_exact(1, 15).await, Some(vec![1]));
    let mut bad = h(avlgate::protocol::teltonika::samples::CODEC8);
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    for _ in 0..300 {
        dev.send(&bad).await;
    }
    // The good frame after them is still acknowledged.
    dev.send(&h(avlgate::protocol::teltonika::samples::CODEC8))
        .await;
    assert_eq!(dev.read_exact(4, 15).await, Some(vec![0, 0, 0, 1]));
    let metrics = http_get(gw.ops, "/metrics").await.1;
    assert!(
        metrics.contains("kind=\"bad_checksum\"} 300"),
        "every bad frame is counted: {metrics}"
    );
    let lines = gw.lines();
    let bad_lines = lines.iter().filter(|l| l.contains("bad frame")).count();
    assert!(
        (1..=3).contains(&bad_lines),
        "{bad_lines} bad-frame lines: {lines:#?}"
    );
    assert!(gw.stop().success());
}

/// A UDP peer holds no span while it waits; the one made for its next datagram still names
/// the device, so a bad datagram's warning says which device sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_udp_peers_warning_still_names_its_device() {
    use avlgate::protocol::teltonika::{frame, samples};
    let mqtt = format!("127.0.0.1:{}", free_port());
    let gw = Serve::start(&["--embedded-mqtt-listen", &mqtt]);
    assert!(gw.ready().await, "ready: {:#?}", gw.lines());
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let data = h(samples::CODEC8);
    let avl = data[8..data.len() - 4].to_vec();
    let mut b = [0u8; 64];
    sock.send_to(&frame::encode_udp(1, 1, IMEI, &avl), gw.devices)
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(15), sock.recv_from(&mut b))
        .await
        .expect("the first datagram is acknowledged")
        .unwrap();
    assert_eq!(&b[..n], &[0x00, 0x05, 0x00, 0x01, 0x01, 0x01, 0x01]);
    // Identified and waiting; then a datagram whose record counts disagree.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bad = avl.clone();
    *bad.last_mut().unwrap() = 2;
    sock.send_to(&frame::encode_udp(2, 2, IMEI, &bad), gw.devices)
        .await
        .unwrap();
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = gw.lines();
        if lines.iter().any(|l| l.contains("bad frame")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let warning = lines
        .iter()
        .find(|l| l.contains("bad frame"))
        .unwrap_or_else(|| panic!("no bad-frame warning: {lines:#?}"));
    assert!(
        warning.contains("udp_peer") && warning.contains(IMEI),
        "{warning}"
    );
    assert!(gw.stop().success());
}
