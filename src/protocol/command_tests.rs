//! Every registered protocol against the one command seam ([`ProtocolSession::encode_command`]
//! with a [`CommandRequest`]): a logged-in session of each protocol, on each transport it takes
//! commands on, encodes every typed request or refuses it with
//! [`CommandError::UnsupportedType`] naming the type, and what it encodes its own simulated
//! device (`sim.rs`, written from the protocol's documents, not from the encoder) reads as a
//! command. A protocol added to [`REGISTRY`] is checked here without a line more; its exact
//! bytes per type are in its own folder's tests.

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use super::sim::{Fix, Incoming};
use super::*;

const IMEI: &str = "356307042441013";

/// Every typed request, and CUSTOM as text and as bytes.
fn requests() -> Vec<CommandRequest> {
    vec![
        CommandRequest::EngineStop,
        CommandRequest::EngineResume,
        CommandRequest::PositionRequest,
        CommandRequest::Reboot,
        CommandRequest::SetReportInterval { seconds: 60 },
        CommandRequest::OutputSet { index: 1, on: true },
        CommandRequest::Text("status".into()),
        CommandRequest::Payload(Bytes::from_static(b"status")),
    ]
}

fn fix() -> Fix {
    Fix {
        time_ms: 1_700_000_000_000,
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

/// A session of `m` on `transport` that knows its device, and the simulated device.
fn identified(
    m: &'static ProtocolModule,
    sim: &Simulator,
    transport: Transport,
) -> (Box<dyn ProtocolSession>, Box<dyn sim::DeviceCodec>) {
    let config = ProtocolConfig::default();
    let mut session = m.new_session(transport, &config);
    let mut device = (sim.make)(IMEI, transport == Transport::Udp);
    let mut units: Vec<Vec<u8>> = device.login().map(|(l, _)| l).into_iter().collect();
    units.extend(device.batch(&[fix()]).units);
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(fix().time_ms);
    for u in units {
        if session.imei().is_some() {
            break;
        }
        let mut b = BytesMut::from(&u[..]);
        while !b.is_empty() {
            match session.decode(&mut b, now) {
                // The device reads the gateway's replies, as it would on the wire.
                Ok(Some(frame)) => {
                    if let Some(reply) = frame.reply {
                        let mut r = BytesMut::from(&reply[..]);
                        while let Ok(Some(_)) = device.parse(&mut r) {}
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    assert!(
        session.imei().is_some(),
        "{} ({}): the simulator's first messages identify the device",
        m.name(),
        sim.name
    );
    (session, device)
}

#[test]
fn every_protocol_encodes_each_command_type_or_refuses_it_by_name() {
    let mut table = Vec::new();
    for m in REGISTRY {
        for &transport in m.command_transports() {
            let Some(sim) = m
                .simulators()
                .iter()
                .find(|s| s.transports.contains(&transport))
            else {
                panic!(
                    "{} takes commands on {transport:?} but simulates no device there",
                    m.name()
                );
            };
            let mut carried = Vec::new();
            for request in requests() {
                // A fresh session each time: an unanswered command must not hold the next.
                let (mut session, mut device) = identified(m, sim, transport);
                match session.encode_command(&request) {
                    Ok(bytes) => {
                        assert!(!bytes.is_empty(), "{}: {request:?} encoded empty", m.name());
                        let mut b = BytesMut::from(&bytes[..]);
                        let got = device.parse(&mut b);
                        assert!(
                            matches!(got, Ok(Some(Incoming::Command { .. }))),
                            "{} ({transport:?}): its device reads {request:?} ({bytes:02x?}) as a command: {got:?}",
                            m.name()
                        );
                        carried.push(request.type_name());
                    }
                    Err(CommandError::UnsupportedType(why)) => {
                        assert!(
                            why.contains(request.type_name()),
                            "{}: the refusal of {request:?} names the type: {why}",
                            m.name()
                        );
                    }
                    // A custom text is the protocol's own syntax, which it may refuse.
                    Err(CommandError::Invalid(_))
                        if matches!(
                            request,
                            CommandRequest::Text(_) | CommandRequest::Payload(_)
                        ) => {}
                    Err(CommandError::Invalid(why)) => {
                        panic!("{}: {request:?} is a valid request: {why}", m.name())
                    }
                }
            }
            carried.dedup();
            table.push(format!("{} {transport:?}: {}", m.name(), carried.join(" ")));
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// A protocol that takes no commands (the default encoder) refuses every type by name.
#[test]
fn the_default_encoder_refuses_every_type_by_name() {
    struct Mute;
    impl ProtocolSession for Mute {
        fn decode(
            &mut self,
            _: &mut BytesMut,
            _: SystemTime,
        ) -> Result<Option<Frame>, DecodeError> {
            Ok(None)
        }
        fn imei(&self) -> Option<&str> {
            None
        }
    }
    for r in requests() {
        match Mute.encode_command(&r) {
            Err(CommandError::UnsupportedType(why)) => assert!(why.contains(r.type_name())),
            other => panic!("{other:?}"),
        }
    }
}
