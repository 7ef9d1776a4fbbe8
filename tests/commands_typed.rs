//! One typed command per protocol, end to end, for every protocol in the registry and every
//! transport it takes commands on (UDP included): a simulated device of the protocol
//! (`sim.rs`) logs in over a real loopback socket, a backend publishes a canonical JSON typed
//! command, the device reads its protocol's command and answers it as a device does, and the
//! command gets its one terminal result (RESPONDED, or SENT where the protocol's devices do
//! not answer). A protocol that cannot carry any typed command gets it REJECTED with a reason
//! and nothing is written. A protocol merged later is covered without a line here.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use avlgate::proto::{CommandStatus, Transport};
use avlgate::protocol::sim::{DeviceCodec, Fix, Incoming, Simulator};
use avlgate::protocol::{
    CommandError, CommandRequest, ProtocolConfig, ProtocolModule, ProtocolSession, REGISTRY,
};
use bytes::BytesMut;
use common::commands::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fix() -> Fix {
    Fix {
        time_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        latitude: 54.68,
        longitude: 25.27,
        altitude: 120.0,
        speed_kmh: 40.0,
        course: 90.0,
        satellites: 9,
        hdop: 0.9,
        odometer_m: 1_000,
        power_mv: 12_300,
        battery_mv: 4_000,
        gsm_level: 4,
    }
}

/// The typed requests, in the order a case picks the first its protocol carries.
fn typed() -> Vec<(CommandRequest, serde_json::Value)> {
    use serde_json::json;
    vec![
        (
            CommandRequest::PositionRequest,
            json!({"type": "COMMAND_TYPE_POSITION_REQUEST"}),
        ),
        (
            CommandRequest::EngineStop,
            json!({"type": "COMMAND_TYPE_ENGINE_STOP"}),
        ),
        (
            CommandRequest::SetReportInterval { seconds: 30 },
            json!({"type": "COMMAND_TYPE_SET_REPORT_INTERVAL", "reportIntervalSecs": 30}),
        ),
    ]
}

/// A device's socket.
enum Link {
    Tcp(tokio::net::TcpStream),
    Udp(tokio::net::UdpSocket, SocketAddr),
}

impl Link {
    async fn connect(gw: SocketAddr, transport: Transport) -> Link {
        match transport {
            Transport::Udp => {
                let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                Link::Udp(s, gw)
            }
            _ => Link::Tcp(tokio::net::TcpStream::connect(gw).await.unwrap()),
        }
    }

    async fn send(&mut self, b: &[u8]) {
        match self {
            Link::Tcp(s) => s.write_all(b).await.unwrap(),
            Link::Udp(s, to) => {
                s.send_to(b, *to).await.unwrap();
            }
        }
    }

    /// The next message the device's codec reads, within `secs`.
    async fn next(
        &mut self,
        device: &mut dyn DeviceCodec,
        buf: &mut BytesMut,
        secs: u64,
    ) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(m) = device
                .parse(buf)
                .expect("the server's bytes are the protocol's")
            {
                return Some(m);
            }
            let mut chunk = vec![0u8; 4096];
            let read = async {
                match self {
                    Link::Tcp(s) => s.read(&mut chunk).await.ok(),
                    Link::Udp(s, _) => s.recv(&mut chunk).await.ok(),
                }
            };
            let n = tokio::time::timeout_at(deadline, read).await.ok()??;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One protocol and transport, and what is expected of it.
struct Case {
    module: &'static ProtocolModule,
    sim: &'static Simulator,
    transport: Transport,
    imei: String,
    /// The request and its JSON, or `None` when the protocol carries no typed command (an
    /// ENGINE_STOP is then sent and must be REJECTED).
    request: Option<(CommandRequest, serde_json::Value)>,
    answered: bool,
}

/// A session of the protocol, in process, fed the simulator's first messages: which typed
/// request the protocol carries, and whether its devices answer.
fn plan(
    module: &'static ProtocolModule,
    sim: &'static Simulator,
    transport: Transport,
    imei: String,
) -> Case {
    let session = fresh(module, sim, transport, &imei);
    let request = typed().into_iter().find(|(r, _)| {
        match fresh(module, sim, transport, &imei).encode_command(r) {
            Ok(_) => true,
            Err(CommandError::UnsupportedType(_)) => false,
            Err(e) => panic!("{}: {r:?}: {e}", module.name()),
        }
    });
    Case {
        module,
        sim,
        transport,
        imei,
        request,
        answered: session.command_answered(),
    }
}

fn fresh(
    module: &'static ProtocolModule,
    sim: &Simulator,
    transport: Transport,
    imei: &str,
) -> Box<dyn ProtocolSession> {
    let mut session = module.new_session(transport, &ProtocolConfig::default());
    let mut device = (sim.make)(imei, transport == Transport::Udp);
    let mut units: Vec<Vec<u8>> = device.login().map(|(l, _)| l).into_iter().collect();
    units.extend(device.batch(&[fix()]).units);
    for u in units {
        let mut b = BytesMut::from(&u[..]);
        while let Ok(Some(_)) = session.decode(&mut b, SystemTime::now()) {}
    }
    session
}

/// The device side of one case: logs in, reports, reads its command and answers it. Returns
/// the command text it read, `None` when nothing came.
async fn device(
    gw: SocketAddr,
    case: &Case,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Option<String> {
    let mut dev = (case.sim.make)(&case.imei, case.transport == Transport::Udp);
    let mut link = Link::connect(gw, case.transport).await;
    let mut buf = BytesMut::new();
    let name = case.module.name();
    if let Some((login, _)) = dev.login() {
        link.send(&login).await;
        assert!(
            matches!(
                link.next(dev.as_mut(), &mut buf, 10).await,
                Some(Incoming::Reply(_))
            ),
            "{name} {:?}: login answered",
            case.transport
        );
    }
    let batch = dev.batch(&[fix()]);
    for u in &batch.units {
        link.send(u).await;
    }
    for _ in &batch.expected {
        assert!(
            matches!(
                link.next(dev.as_mut(), &mut buf, 10).await,
                Some(Incoming::Reply(_))
            ),
            "{name} {:?}: report acknowledged",
            case.transport
        );
    }
    let _ = ready.send(());
    let wait = if case.request.is_some() { 20 } else { 3 };
    loop {
        match link.next(dev.as_mut(), &mut buf, wait).await? {
            Incoming::Command { text, answer } => {
                if !answer.is_empty() {
                    link.send(&answer).await;
                }
                // Keep the session up until its answer is taken.
                let _ = link.next(dev.as_mut(), &mut buf, 2).await;
                return Some(text);
            }
            Incoming::Reply(_) | Incoming::AnswerAck { .. } | Incoming::Ignored(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_typed_command_per_protocol_and_command_transport() {
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    assert!(gw.ready().await);
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let backend = Subscriber::connect(broker, "avlgate/nothing").await;

    let mut cases = Vec::new();
    for m in REGISTRY {
        for &transport in m.command_transports() {
            let sim = m
                .simulators()
                .iter()
                .find(|s| s.transports.contains(&transport))
                .expect("a simulated device on each command transport");
            let imei = format!("35630704244{:04}", cases.len() + 1);
            cases.push(std::sync::Arc::new(plan(m, sim, transport, imei)));
        }
    }
    let mut devices = Vec::new();
    for case in &cases {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let c = case.clone();
        let addr = gw.addr;
        devices.push(tokio::spawn(async move { device(addr, &c, tx).await }));
        rx.await.expect("the device logged in and reported");
        let mut json = case.request.as_ref().map_or(
            serde_json::json!({"type": "COMMAND_TYPE_ENGINE_STOP"}),
            |(_, j)| j.clone(),
        );
        json["commandId"] = format!("typed-{}", case.imei).into();
        backend
            .publish(
                &format!("avlgate/commands/{}", case.imei),
                json.to_string().into_bytes(),
            )
            .await;
    }

    let mut got = BTreeMap::new();
    let mut table = Vec::new();
    for (case, d) in cases.iter().zip(devices) {
        let read = d.await.unwrap();
        let id = format!("typed-{}", case.imei);
        let r = until_terminal(&mut results, &mut got, &id, 30).await;
        let name = case.module.name();
        let t = case.transport;
        match &case.request {
            Some((request, _)) => {
                // The exact bytes per type are each protocol's unit tests; here the device
                // read a command of its protocol.
                let want = read.clone().expect("the device got the command");
                assert!(!want.is_empty(), "{name} {t:?}");
                let status = if case.answered {
                    CommandStatus::Responded
                } else {
                    CommandStatus::Sent
                };
                assert_eq!(
                    r.status, status as i32,
                    "{name} {t:?}: {request:?} as {want:?}: {r:?}"
                );
                table.push(format!(
                    "{name} {t:?}: {} -> {want:?} ({status:?})",
                    request.type_name()
                ));
            }
            None => {
                assert_eq!(read, None, "{name} {t:?}: nothing written");
                assert_eq!(r.status, CommandStatus::Rejected as i32, "{name}: {r:?}");
                assert!(r.reason.contains("ENGINE_STOP"), "{name}: {}", r.reason);
                table.push(format!("{name} {t:?}: REJECTED ({})", r.reason));
            }
        }
    }
    for (id, rs) in mqtt_results(&mut results, 2).await {
        got.entry(id).or_default().extend(rs);
    }
    for (id, rs) in &got {
        assert_eq!(terminal(rs).len(), 1, "{id}: one terminal result: {rs:?}");
    }
    eprintln!("{}", table.join("\n"));
    gw.stop().await;
}
