//! `avlgate simulate` against the real gateway on loopback (every protocol, TCP and UDP), and
//! against small loopback servers that misbehave on purpose (wrong ACKs, a dropped
//! connection) or send commands. Only 127.0.0.0/8 is used.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use avlgate::config::Settings;
use avlgate::proto::{EventKind, Protocol, TelemetryEvent, Transport};
use avlgate::protocol::{self, AnswerOutcome, CommandAnswer, CommandRequest, ProtocolConfig};
use avlgate::server::Gateway;
use avlgate::simulate::{self, DeviceProtocol, Options, SimTransport, Summary};
use avlgate::sink::memory::MemorySink;
use bytes::BytesMut;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A gateway on 127.0.0.1 publishing into memory.
struct MemGateway {
    addr: SocketAddr,
    sink: MemorySink,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl MemGateway {
    async fn start() -> MemGateway {
        let config = Settings {
            listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
            gateway_name: Some("sim-test".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let sink = MemorySink::new();
        let shutdown = CancellationToken::new();
        let gw = Gateway::bind_with_sink(
            config,
            Arc::new(sink.clone()),
            shutdown.clone(),
            CancellationToken::new(),
            avlgate::abort::Abort::new(),
        )
        .await
        .unwrap();
        let addr = gw.local_addrs()[0];
        MemGateway {
            addr,
            sink,
            shutdown,
            handle: tokio::spawn(gw.run()),
        }
    }

    /// Every position event published so far.
    fn positions(&self) -> Vec<TelemetryEvent> {
        self.sink
            .take()
            .into_iter()
            .map(|m| TelemetryEvent::decode(&m.payload[..]).expect("protobuf event"))
            .filter(|e| e.kind == EventKind::Position as i32)
            .collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
    }
}

fn options(target: SocketAddr, protocol: DeviceProtocol, transport: SimTransport) -> Options {
    Options {
        transport,
        devices: 4,
        interval: Duration::from_millis(200),
        records_per_frame: 3,
        duration: Some(Duration::from_millis(1500)),
        ..Options::new(target.to_string(), protocol)
    }
}

fn imeis(o: &Options) -> BTreeSet<String> {
    (0..o.devices)
        .map(|i| simulate::imei(o.imei_base, i).unwrap())
        .collect()
}

/// Every frame acknowledged with the exact ACK, and the gateway published exactly the records
/// the simulator counts as acknowledged, for exactly the simulated IMEIs.
fn assert_delivered(s: &Summary, o: &Options, published: &[TelemetryEvent]) {
    let ctx = format!("{s:#?}");
    assert_eq!(s.devices_connected, o.devices, "{ctx}");
    assert!(s.frames_acked > 0, "{ctx}");
    assert_eq!(s.frames_acked, s.frames_sent, "{ctx}");
    assert_eq!(s.records_acked, s.records_sent, "{ctx}");
    assert_eq!(
        (s.ack_errors, s.ack_timeouts, s.protocol_errors),
        (0, 0, 0),
        "{ctx}"
    );
    assert!(s.clean(), "{ctx}");
    assert!(
        s.ack_latency_ms.samples > 0 && s.ack_latency_ms.samples <= s.frames_acked,
        "{ctx}"
    );
    // Resent frames give the same event ids: count distinct ones.
    let ids: HashSet<&str> = published.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len() as u64, s.records_acked, "{ctx}");
    if s.retransmits == 0 {
        assert_eq!(published.len() as u64, s.records_acked, "{ctx}");
    }
    let seen: BTreeSet<String> = published.iter().map(|e| e.imei.clone()).collect();
    assert_eq!(seen, imeis(o));
    for e in published {
        let p = e.position.as_ref().expect("a position");
        assert!(p.valid && p.latitude > 53.0 && p.latitude < 56.0, "{p:?}");
        assert!(p.speed.unwrap_or_default() > 0.0, "{p:?}");
    }
}

fn sim(name: &str) -> DeviceProtocol {
    DeviceProtocol::named(name).unwrap()
}

async fn run_against_gateway(protocol: DeviceProtocol, transport: SimTransport, k: u16) {
    let gw = MemGateway::start().await;
    let o = Options {
        records_per_frame: k,
        ..options(gw.addr, protocol, transport)
    };
    let s = simulate::run(o.clone(), CancellationToken::new())
        .await
        .unwrap();
    let published = gw.positions();
    assert_delivered(&s, &o, &published);
    let expected_protocol = protocol.module.protocol();
    assert!(published
        .iter()
        .all(|e| e.protocol == expected_protocol as i32));
    gw.stop().await;
}

/// Every simulator variant of every registered protocol, over every transport it speaks,
/// against the real gateway: all records delivered, every ACK exact. A new protocol's
/// simulator is covered by adding it to the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulator_is_delivered_end_to_end() {
    let mut runs = Vec::new();
    for d in DeviceProtocol::all() {
        for t in d.sim.transports {
            let transport = match t {
                Transport::Udp => SimTransport::Udp,
                _ => SimTransport::Tcp,
            };
            // Several records per frame where the protocol batches, one-record frames too.
            for k in [1, 3] {
                runs.push(tokio::spawn(run_against_gateway(d, transport, k)));
            }
        }
    }
    assert!(runs.len() >= 12, "{} runs", runs.len());
    for r in runs {
        r.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_come_from_the_source_addresses() {
    let gw = MemGateway::start().await;
    let o = Options {
        devices: 6,
        source_ips: simulate::parse_source_ips("127.0.0.2-127.0.0.4").unwrap(),
        ..options(gw.addr, sim("teltonika8e"), SimTransport::Tcp)
    };
    let s = simulate::run(o.clone(), CancellationToken::new())
        .await
        .unwrap();
    let published = gw.positions();
    assert_delivered(&s, &o, &published);
    let peers: BTreeSet<String> = published
        .iter()
        .map(|e| e.peer.parse::<SocketAddr>().unwrap().ip().to_string())
        .collect();
    assert_eq!(
        peers,
        ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_reports_when_every_first_frame_was_acknowledged() {
    let gw = MemGateway::start().await;
    let o = Options {
        devices: 50,
        reconnect_storm: true,
        interval: Duration::from_secs(5),
        duration: Some(Duration::from_millis(1500)),
        ..options(gw.addr, sim("gt06"), SimTransport::Tcp)
    };
    let s = simulate::run(o.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(s.first_frames_acked, 50, "{s:#?}");
    let all = s
        .all_first_frames_acked_ms
        .expect("every first frame acked");
    // Acknowledged while the run was on, or during its drain (one ACK timeout).
    let bound = (s.elapsed_secs * 1000.0) as u64 + o.ack_timeout.as_millis() as u64 + 1000;
    assert!(all > 0 && all <= bound, "{s:#?}");
    assert_delivered(&s, &o, &gw.positions());
    gw.stop().await;
}

/// How the fake server treats frames.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Replies as the protocol says.
    Correct,
    /// Teltonika: ACKs one record fewer than the frame held.
    WrongCount,
    /// Closes the first connection after its first data frame (no ACK); correct afterwards.
    DropFirstConnection,
}

/// What the fake server saw.
#[derive(Default)]
struct Seen {
    /// Raw data frames (not logins), in arrival order.
    frames: Vec<Vec<u8>>,
    connections: usize,
    /// Command responses (and driver messages) the protocol decoder made of the device's
    /// answers.
    responses: Vec<TelemetryEvent>,
    /// The typed answers those frames carried (what the session's command tracker matches).
    answers: Vec<CommandAnswer>,
    /// Decode errors: the simulator sent something the gateway's decoder refuses.
    errors: Vec<String>,
}

/// A loopback server that runs the gateway's own protocol session (decoder and command
/// encoder) with no sink: it replies at once, tampers with replies as told, and after the
/// login sends `command` when given.
async fn fake_server(
    protocol: Protocol,
    behaviour: Behaviour,
    command: Option<&'static str>,
) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let nth = {
                let mut s = state.lock().unwrap();
                s.connections += 1;
                s.connections
            };
            let state = state.clone();
            tokio::spawn(async move {
                let module = protocol::module(protocol).unwrap();
                let mut session =
                    module.new_session(avlgate::proto::Transport::Tcp, &ProtocolConfig::default());
                let mut buf = BytesMut::new();
                loop {
                    match sock.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    loop {
                        let before = buf.clone();
                        let frame = match session.decode(&mut buf, SystemTime::now()) {
                            Ok(Some(f)) => f,
                            Ok(None) => break,
                            Err(e) => {
                                state.lock().unwrap().errors.push(format!("{e:?}"));
                                continue;
                            }
                        };
                        let consumed = &before[..before.len() - buf.len()];
                        let mut reply = frame.reply.clone().map(|r| r.to_vec());
                        if frame.login.is_some() {
                            if let Some(r) = reply.take() {
                                sock.write_all(&r).await.unwrap();
                            }
                            if let Some(c) = command {
                                let bytes = session
                                    .encode_command(&CommandRequest::Text(c.into()))
                                    .unwrap();
                                sock.write_all(&bytes).await.unwrap();
                            }
                            continue;
                        }
                        let responses: Vec<_> = frame
                            .events
                            .iter()
                            .filter(|e| {
                                e.kind == EventKind::CommandResponse as i32
                                    || e.kind == EventKind::DriverMessage as i32
                            })
                            .cloned()
                            .collect();
                        if !responses.is_empty() {
                            {
                                let mut st = state.lock().unwrap();
                                st.responses.extend(responses);
                                st.answers.extend(frame.answers.iter().cloned());
                            }
                            if let Some(r) = reply {
                                sock.write_all(&r).await.unwrap();
                            }
                            continue;
                        }
                        state.lock().unwrap().frames.push(consumed.to_vec());
                        match behaviour {
                            Behaviour::Correct => {}
                            Behaviour::WrongCount => {
                                // The frame held n records; claim n - 1.
                                let n = frame.events.len() as u32;
                                reply = Some((n - 1).to_be_bytes().to_vec());
                            }
                            Behaviour::DropFirstConnection if nth == 1 => return,
                            Behaviour::DropFirstConnection => {}
                        }
                        if let Some(r) = reply {
                            sock.write_all(&r).await.unwrap();
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ack_is_counted_and_the_same_bytes_are_resent() {
    let (addr, seen) = fake_server(Protocol::Teltonika, Behaviour::WrongCount, None).await;
    let o = Options {
        devices: 1,
        records_per_frame: 4,
        interval: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(200),
        duration: Some(Duration::from_millis(1000)),
        ..Options::new(addr.to_string(), sim("teltonika8e"))
    };
    let s = simulate::run(o, CancellationToken::new()).await.unwrap();
    assert!(s.ack_errors >= 2, "{s:#?}");
    assert_eq!((s.frames_acked, s.records_acked), (0, 0), "{s:#?}");
    assert!(s.retransmits >= 1, "{s:#?}");
    assert!(!s.clean());
    // A wrong ACK is not a timeout.
    assert_eq!(s.ack_timeouts, 0, "{s:#?}");
    let seen = seen.lock().unwrap();
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    // The device never moved on to a new frame: every transmission is the first frame again.
    assert!(seen.frames.len() >= 2);
    assert!(
        seen.frames.iter().all(|f| *f == seen.frames[0]),
        "resent frames differ from the original"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reopened_and_the_unacknowledged_frame_resent() {
    let (addr, seen) = fake_server(Protocol::Teltonika, Behaviour::DropFirstConnection, None).await;
    let o = Options {
        devices: 1,
        records_per_frame: 2,
        interval: Duration::from_millis(300),
        duration: Some(Duration::from_millis(2500)),
        ..Options::new(addr.to_string(), sim("teltonika8"))
    };
    let s = simulate::run(o, CancellationToken::new()).await.unwrap();
    assert!(s.connections >= 2 && s.disconnects >= 1, "{s:#?}");
    assert!(s.retransmits >= 1, "{s:#?}");
    assert_eq!(s.frames_acked, s.frames_sent, "{s:#?}");
    assert!(s.frames_acked >= 2, "{s:#?}");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.frames[0], seen.frames[1],
        "the frame lost with the first connection is the first sent on the second"
    );
}

async fn command_round_trip(
    protocol: Protocol,
    device: DeviceProtocol,
    command: &'static str,
) -> Vec<TelemetryEvent> {
    command_round_trip_answers(protocol, device, command)
        .await
        .0
}

/// The response events and the typed answers of a command round trip.
async fn command_round_trip_answers(
    protocol: Protocol,
    device: DeviceProtocol,
    command: &'static str,
) -> (Vec<TelemetryEvent>, Vec<CommandAnswer>) {
    let (addr, seen) = fake_server(protocol, Behaviour::Correct, Some(command)).await;
    let o = Options {
        devices: 2,
        interval: Duration::from_millis(200),
        duration: Some(Duration::from_millis(800)),
        ..Options::new(addr.to_string(), device)
    };
    let s = simulate::run(o, CancellationToken::new()).await.unwrap();
    assert_eq!((s.commands_received, s.commands_answered), (2, 2), "{s:#?}");
    assert_eq!(s.frames_acked, s.frames_sent, "{s:#?}");
    assert_eq!(s.ack_errors, 0);
    let seen = seen.lock().unwrap();
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    (seen.responses.clone(), seen.answers.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teltonika_codec12_commands_are_answered() {
    let (r, answers) =
        command_round_trip_answers(Protocol::Teltonika, sim("teltonika8e"), "getver").await;
    assert_eq!(r.len(), 2);
    for e in &r {
        assert!(
            e.raw
                .iter()
                .any(|v| v.name == "codec" && format!("{:?}", v.value).contains("UintValue(12)")),
            "{e:?}"
        );
        assert!(
            e.text.as_deref().is_some_and(|t| t.starts_with("Ver:")),
            "{e:?}"
        );
    }
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a.tag.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gt06_online_commands_are_answered_with_the_server_flag() {
    let (r, answers) = command_round_trip_answers(Protocol::Gt06, sim("gt06"), "Relay,1#").await;
    assert_eq!(r.len(), 2);
    for e in r {
        assert_eq!(
            e.text.as_deref(),
            Some("Cut off the fuel supply: Success!"),
            "{e:?}"
        );
        // The gateway's first command on a session carries server flag 1.
        assert_eq!(
            e.raw_named("server_flag"),
            Some(&avlgate::proto::raw_value::Value::UintValue(1)),
            "{e:?}"
        );
    }
    // The typed answers the command tracker matches: tagged with the server flag.
    assert_eq!(
        answers,
        vec![
            CommandAnswer {
                tag: Some(1),
                outcome: AnswerOutcome::Text("Cut off the fuel supply: Success!".into())
            };
            2
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wialon_messages_are_answered_with_a_driver_message() {
    let r = command_round_trip(Protocol::WialonIps, sim("wialon2"), "hello driver").await;
    assert_eq!(r.len(), 2);
    for e in r {
        assert_eq!(e.kind, EventKind::DriverMessage as i32);
        assert!(
            e.text
                .as_deref()
                .unwrap_or("")
                .contains("Received: hello driver"),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_json_summary() {
    let gw = MemGateway::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_avlgate"))
        .args([
            "simulate",
            "--target",
            &gw.addr.to_string(),
            "--protocol",
            "wialon2",
            "--devices",
            "3",
            "--interval-ms",
            "200",
            "--records-per-frame",
            "5",
            "--duration-secs",
            "2",
            "--source-ips",
            "127.0.0.1,127.0.0.5",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    let s: Summary = serde_json::from_str(&stdout).unwrap();
    let o = Options {
        devices: 3,
        ..options(gw.addr, sim("wialon2"), SimTransport::Tcp)
    };
    assert_eq!((s.protocol.as_str(), s.records_per_frame), ("wialon2", 5));
    assert_delivered(&s, &o, &gw.positions());
    assert!(s.records_per_sec > 0.0);
    // The progress line (every second of a 2 s run) goes to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("records acked"));
    gw.stop().await;
}
