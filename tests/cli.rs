//! The `avlgate` binary itself: `serve --sink stdout` end to end with a graceful SIGTERM, and
//! `decode`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use avlgate::protocol::teltonika::samples;
use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_avlgate"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_to_stdout_then_sigterm_exits_zero() {
    let port = free_port();
    let mut child = bin()
        .args([
            "serve",
            "--sink",
            "stdout",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env_remove("AVLGATE_SINK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut dev = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            dev = Some(Device { stream: s });
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut dev = dev.expect("gateway listening");
    dev.send(&h(samples::LOGIN)).await;
    assert_eq!(dev.read_exact(1, 10).await, Some(vec![1]));
    dev.send(&h(samples::CODEC8)).await;
    assert_eq!(dev.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));

    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut r = BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l);
        }
        (lines, r)
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&lines.0[1]).expect("canonical JSON line");
    // Teltonika's documented Codec 8 sample has no fix yet (zero coordinates): a STATUS record.
    assert_eq!(v["kind"], "EVENT_KIND_STATUS");
    assert_eq!(v["imei"], IMEI);
    assert_eq!(v["protocol"], "PROTOCOL_TELTONIKA");
    let io66 = v["raw"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["id"] == 66))
        .expect("IO 66 in raw");
    assert_eq!(
        io66["uintValue"], "24079",
        "64-bit integers are strings in canonical JSON"
    );
    assert_eq!(v["telemetry"]["externalPowerVolts"], 24.079);
    assert_eq!(
        v["deviceTime"]
            .as_str()
            .map(|s| s.starts_with("2019-06-10T10:04:46")),
        Some(true)
    );

    // SIGTERM: drain and exit 0.
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn decode_prints_events_and_replies_and_fails_on_bad_frames() {
    let out = bin()
        .args(["decode", samples::LOGIN, samples::CODEC8E])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].contains("EVENT_KIND_SESSION_OPENED"));
    assert_eq!(lines[1], "reply: 01");
    assert!(lines[2].contains("EVENT_KIND_STATUS"));
    assert_eq!(lines[3], "reply: 00000001");

    let mut bad = samples::CODEC8.to_string();
    bad.replace_range(bad.len() - 2.., "00");
    let out = bin()
        .args(["decode", samples::LOGIN, &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("error: checksum mismatch"));
}

/// An anonymous embedded broker off loopback: `serve` refuses to start, says why and what to
/// set, and binds nothing (the check runs before any listener).
#[test]
fn serve_refuses_an_anonymous_embedded_broker_off_loopback() {
    let out = bin()
        .args([
            "serve",
            "--sink",
            "embedded",
            "--embedded-mqtt-listen",
            "0.0.0.0:1883",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .env_remove("AVLGATE_EMBEDDED_MQTT_PASSWORD")
        .env_remove("AVLGATE_EMBEDDED_MQTT_PASSWORD_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:1883, which is not loopback, without credentials"),
        "{err}"
    );
    assert!(err.contains("--embedded-mqtt-password-file"), "{err}");
}

/// The README's protocol tables are exactly what the registry says (`avlgate protocols`).
#[test]
fn the_readme_lists_the_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = avlgate::protocol::catalog::readme_section();
    assert!(
        readme.contains(&section),
        "README.md's protocol section is out of date; replace it with the output of `avlgate protocols`:\n{section}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_avlgate"))
        .arg("protocols")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        avlgate::protocol::catalog::markdown()
    );
}

/// docs/schema.md's tables are exactly what the protocols' mapping files say
/// (`avlgate vocabulary`).
#[test]
fn the_schema_doc_tables_the_mapping_files() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schema.md")).unwrap();
    let section = avlgate::vocab::doc::section();
    assert!(
        doc.contains(&section),
        "docs/schema.md's tables are out of date; replace them with the output of `avlgate vocabulary`"
    );
}
