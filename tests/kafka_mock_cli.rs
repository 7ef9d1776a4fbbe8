//! `avlgate kafka-mock` as a separate process: the bootstrap line, a record produced and
//! consumed through it, broker commands answered, and `quit` ending the process.

#[allow(dead_code)]
#[path = "common/kafka.rs"]
mod kafka;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The mock process, killed if a test fails before `quit`.
struct Mock {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mock {
    fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_avlgate"))
            .arg("kafka-mock")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start avlgate kafka-mock");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Mock {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read stdout");
        l.trim_end().to_string()
    }

    /// Sends a command and returns the one-line answer.
    fn command(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }
}

#[tokio::test]
async fn kafka_mock_serves_a_real_producer_and_consumer_and_quits_on_command() {
    let dir = std::env::temp_dir().join(format!("avlgate-kafka-mock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listen_file = dir.join("bootstrap");
    let mut mock = Mock::start(&[
        "--brokers",
        "2",
        "--topic",
        "t.one:3",
        "--listen-file",
        listen_file.to_str().unwrap(),
    ]);

    let first = mock.line();
    let bootstrap = first
        .strip_prefix("bootstrap=")
        .unwrap_or_else(|| panic!("expected bootstrap=..., got {first:?}"))
        .to_string();
    let brokers: Vec<&str> = bootstrap.split(',').collect();
    assert_eq!(brokers.len(), 2, "{bootstrap}");
    assert!(brokers.iter().all(|b| b.starts_with("127.0.0.1:")));
    assert_eq!(
        std::fs::read_to_string(&listen_file).unwrap(),
        format!("{first}\n")
    );

    // Commands are answered line by line; bad ones say why and change nothing.
    assert_eq!(mock.command("rtt 1 5"), "ok rtt 1 5");
    assert_eq!(mock.command("rtt all 0"), "ok rtt all 0");
    assert!(mock.command("down 3").starts_with("error "));
    assert!(mock.command("reboot").starts_with("error "));
    assert_eq!(mock.command("down 2"), "ok down 2");
    assert_eq!(mock.command("up 2"), "ok up 2");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let headers = OwnedHeaders::new().insert(Header {
        key: "h",
        value: Some("v"),
    });
    let partition = producer
        .send(
            FutureRecord::to("t.one")
                .key("356307042441013")
                .payload(&b"hello through the mock"[..])
                .headers(headers),
            Duration::from_secs(20),
        )
        .await
        .expect("delivered")
        .partition;
    assert!(
        (0..3).contains(&partition),
        "topic created with 3 partitions"
    );

    let read = {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || kafka::read_all(&b, "t.one", 3, Duration::from_secs(2)))
            .await
            .unwrap()
    };
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].key, "356307042441013");
    assert_eq!(read[0].payload, b"hello through the mock");
    assert_eq!(read[0].partition, partition);
    assert_eq!(read[0].headers.get("h").map(String::as_str), Some("v"));

    // With every broker down nothing is delivered; after `up all` the same producer delivers
    // again by itself.
    assert_eq!(mock.command("down all"), "ok down all");
    let send = tokio::spawn(async move {
        producer
            .send(
                FutureRecord::to("t.one")
                    .key("356307042441013")
                    .payload(&b"second"[..]),
                Duration::from_secs(20),
            )
            .await
            .map(|d| d.partition)
            .map_err(|(e, _)| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !send.is_finished(),
        "a record was reported delivered while every broker was down"
    );
    assert_eq!(mock.command("up all"), "ok up all");
    let second = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .expect("delivery resumed after up all")
        .unwrap();
    assert!(second.is_ok(), "{second:?}");
    let read = tokio::task::spawn_blocking(move || {
        kafka::read_all(&bootstrap, "t.one", 3, Duration::from_secs(2))
    })
    .await
    .unwrap();
    let mut payloads: Vec<&[u8]> = read.iter().map(|r| &r.payload[..]).collect();
    payloads.sort();
    assert_eq!(payloads, [&b"hello through the mock"[..], &b"second"[..]]);

    assert_eq!(mock.command("quit"), "ok quit");
    let status = mock.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(&dir);
}
