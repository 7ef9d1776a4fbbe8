//! The Wialon Retranslator frames of Traccar's test suite (`tests/data/traccar-frames-more.json`,
//! 2 of them, `RetranslatorProtocolDecoderTest`), and the protocol's "one connection, many
//! devices" flow against the real gateway.
//!
//! - **Replay:** per test method, in `seq` order, on one session. Every frame whose declared
//!   length matches (`wire.length_ok`) must decode to one event of the unit it names, answered
//!   `0x11`; a frame whose length is wrong must not (none in the data today, the check stays).
//!   `expect: position` entries must carry a position that passes Traccar's `verifyPosition`
//!   (coordinates in range, a fix time); `expect: null` ones none.
//! - **The `wire` facts** computed from the bytes by the data's author (unit id, time, flags,
//!   block names and types) must be what the gateway reports.
//! - **Nothing is lost:** every block is re-parsed here (own reader, spec layout: integers
//!   big-endian, doubles little-endian) and looked up in `raw` with its declared type, in
//!   order; `posinfo` in `position`; the flags as raw `msg_flags`.
//! - **Asserted values:** Traccar's Retranslator test asserts no values (`verifyPosition`
//!   only); the score is printed (0 of 0) and any assert that appears in the data fails until
//!   it is mapped here.
//! - **End to end:** one TCP connection relays several units to the gateway (each answered
//!   `0x11` after delivery, each published under its own id), while one of those units is also
//!   connected directly: the relay neither replaces that session nor is replaced by it, no
//!   relayed unit is registered, a unit the allow-list refuses is answered but not published,
//!   and the relay outlives the login timeout.
//!
//! `cargo test --test conformance_wialon_retranslator -- --nocapture` prints the figures.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::config::Settings;
use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{EventKind, Protocol, TelemetryEvent, Transport};
use avlgate::protocol::wialon_retranslator::WialonRetranslator;
use avlgate::protocol::{
    Action, DecodeError, Frame, ProtocolConfig, ProtocolModule, ProtocolSession,
};
use avlgate::sink::memory::MemorySink;
use bytes::BytesMut;
use common::*;
use serde_json::Value;

/// Traccar asserts (seq, key) we do not match, and why. Empty: every assert matches.
const KNOWN_GAPS: &[(u64, &str, &str)] = &[];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn entries() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|e| e["protocol"] == "wialon_retranslator")
        .collect()
}

fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            Ok(Some(f)) => out.push(Ok(f)),
            Err(e) => {
                let close = e.action == Action::Close;
                out.push(Err(e));
                if close {
                    break;
                }
            }
        }
    }
    out
}

/// One block as this test reads it from the spec's layout.
#[derive(Debug)]
struct Blk {
    name: String,
    data_type: u8,
    value: Vec<u8>,
}

/// The packet's unit, time, flags and blocks: an independent reader (the gateway's is not
/// used here).
fn read_packet(frame: &[u8]) -> (String, u32, u32, Vec<Blk>) {
    let size = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(size + 4, frame.len());
    let body = &frame[4..];
    let nul = body.iter().position(|&b| b == 0).unwrap();
    let unit = String::from_utf8(body[..nul].to_vec()).unwrap();
    let mut at = nul + 1;
    let be32 = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
    let (time, flags) = (be32(at), be32(at + 4));
    at += 8;
    let mut blocks = Vec::new();
    while at < body.len() {
        assert_eq!(&body[at..at + 2], &[0x0B, 0xBB]);
        let len = be32(at + 2) as usize;
        let blk = &body[at + 6..at + 6 + len];
        let data_type = blk[1];
        let end = 2 + blk[2..].iter().position(|&b| b == 0).unwrap();
        blocks.push(Blk {
            name: String::from_utf8(blk[2..end].to_vec()).unwrap(),
            data_type,
            value: blk[end + 1..].to_vec(),
        });
        at += 6 + len;
    }
    (unit, time, flags, blocks)
}

/// The raw value a block must become, by its declared type.
fn expected_raw(b: &Blk) -> RawV {
    match b.data_type {
        1 => {
            assert_eq!(b.value.last(), Some(&0), "{}: text ends with NUL", b.name);
            RawV::StringValue(String::from_utf8(b.value[..b.value.len() - 1].to_vec()).unwrap())
        }
        3 => RawV::IntValue(i32::from_be_bytes(b.value[..].try_into().unwrap()).into()),
        4 => RawV::DoubleValue(f64::from_le_bytes(b.value[..].try_into().unwrap())),
        5 => RawV::IntValue(i64::from_be_bytes(b.value[..].try_into().unwrap())),
        _ => RawV::BytesValue(b.value.clone()),
    }
}

/// Every block of the frame in `raw` (in order, typed), `posinfo` in `position`, the flags
/// as `msg_flags`, the time as `device_time`. Returns how many values were checked.
fn check_nothing_lost(frame: &[u8], e: &TelemetryEvent) -> usize {
    let (_, time, flags, blocks) = read_packet(frame);
    assert_eq!(e.device_time.unwrap().seconds, i64::from(time));
    let mut raw = e.raw.iter();
    let first = raw.next().unwrap();
    assert_eq!(
        (first.name.as_str(), first.value.clone()),
        ("msg_flags", Some(RawV::UintValue(flags.into())))
    );
    let mut checked = 2;
    for b in &blocks {
        if b.name == "posinfo" {
            let v = &b.value;
            let d = |i: usize| f64::from_le_bytes(v[i..i + 8].try_into().unwrap());
            let u = |i: usize| f64::from(u16::from_be_bytes(v[i..i + 2].try_into().unwrap()));
            let p = e.position.as_ref().expect("posinfo is the position");
            assert_eq!(
                (p.longitude, p.latitude, p.altitude),
                (d(0), d(8), Some(d(16)))
            );
            assert_eq!((p.speed, p.course), (Some(u(24)), Some(u(26))));
            assert_eq!(p.satellites, Some(u32::from(v[28])));
            checked += 6;
            continue;
        }
        let r = raw
            .next()
            .unwrap_or_else(|| panic!("{} missing from raw", b.name));
        assert_eq!(r.name, b.name);
        assert_eq!(r.value, Some(expected_raw(b)), "{}", b.name);
        checked += 1;
    }
    assert!(raw.next().is_none(), "raw holds only the frame's values");
    checked
}

/// Traccar's `verifyPosition`: a position whose coordinates are in range, with a fix time.
fn verify_position(e: &TelemetryEvent) {
    let p = e.position.as_ref().expect("a position");
    assert!(
        p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0,
        "{p:?}"
    );
    assert!(e.device_time.is_some());
    assert!(matches!(
        EventKind::try_from(e.kind),
        Ok(EventKind::Position | EventKind::Alarm)
    ));
}

#[test]
fn traccar_frames_decode_with_every_value_and_the_wire_facts() {
    let all = entries();
    assert_eq!(
        all.len(),
        2,
        "the data holds Traccar's two Retranslator frames"
    );
    let mut methods: Vec<&str> = all.iter().map(|e| e["test"].as_str().unwrap()).collect();
    methods.sort();
    methods.dedup();
    let (mut decoded, mut values, mut asserted) = (0, 0, 0usize);
    for method in methods {
        let mut frames: Vec<&Value> = all.iter().filter(|e| e["test"] == method).collect();
        frames.sort_by_key(|e| e["seq"].as_u64());
        let mut s = WialonRetranslator.new_session(Transport::Tcp, &ProtocolConfig::default());
        for entry in frames {
            let seq = entry["seq"].as_u64().unwrap();
            let bytes = hex::decode(entry["frame"].as_str().unwrap()).unwrap();
            let wire = &entry["wire"];
            let out = decode_all(s.as_mut(), &bytes);
            if wire["length_ok"] != true {
                assert!(
                    !matches!(&out[..], [Ok(f)] if f.events.iter().all(|e| e.kind != EventKind::Unknown as i32)),
                    "seq {seq}: a frame with a wrong length decoded"
                );
                continue;
            }
            let [Ok(f)] = &out[..] else {
                panic!("seq {seq}: {out:?}")
            };
            decoded += 1;
            assert_eq!(f.reply.as_deref(), Some(&[0x11][..]), "seq {seq}");
            assert_eq!(f.relayed.as_deref(), wire["uid"].as_str(), "seq {seq}");
            assert!(f.login.is_none());
            let [e] = &f.events[..] else {
                panic!("seq {seq}: {} events", f.events.len())
            };
            assert_eq!(e.protocol, Protocol::WialonRetranslator as i32);
            // The wire facts.
            let time = chrono_free_utc(e.device_time.unwrap().seconds);
            assert_eq!(Some(time.as_str()), wire["time"].as_str(), "seq {seq}");
            let flags = format!(
                "0x{:08x}",
                match e.raw_named("msg_flags") {
                    Some(RawV::UintValue(v)) => *v,
                    other => panic!("msg_flags {other:?}"),
                }
            );
            assert_eq!(Some(flags.as_str()), wire["flags"].as_str());
            let (_, _, _, blocks) = read_packet(&bytes);
            let listed: Vec<String> = blocks
                .iter()
                .map(|b| format!("{}:{}", b.name, b.data_type))
                .collect();
            let want: Vec<&str> = wire["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().unwrap())
                .collect();
            assert_eq!(listed, want, "seq {seq}");
            values += check_nothing_lost(&bytes, e);
            match entry["expect"].as_str() {
                Some("position") => verify_position(e),
                None => assert!(e.position.is_none(), "seq {seq}: expect null"),
                Some(other) => panic!("seq {seq}: unknown expectation {other}"),
            }
            if let Some(a) = entry["asserts"].as_object() {
                for key in a.keys() {
                    asserted += 1;
                    let gap = KNOWN_GAPS.iter().any(|(s, k, _)| *s == seq && k == key);
                    // No Retranslator assert is mapped yet: each one is a gap to list or map.
                    assert!(
                        gap,
                        "seq {seq}: assert `{key}` is neither mapped nor a known gap"
                    );
                }
            }
        }
    }
    println!(
        "wialon_retranslator conformance: {decoded}/2 frames decoded and answered 0x11, \
         {values} values found in raw/position, asserts matched 0/{asserted} \
         (Traccar's test asserts none; known gaps: {})",
        KNOWN_GAPS.len()
    );
    assert_eq!(decoded, 2);
    // Every listed gap is an assert of the data (the list stays true).
    assert_eq!(asserted, KNOWN_GAPS.len());
    // Frame 1: time, flags, 6 posinfo fields, 2 blocks; frame 2: time, flags, 6, 11 blocks.
    assert_eq!(values, 10 + 19);
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (days-from-civil, no date library).
fn chrono_free_utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[test]
fn the_second_frame_maps_its_wialon_names() {
    let all = entries();
    let bytes = hex::decode(all[1]["frame"].as_str().unwrap()).unwrap();
    let mut s = WialonRetranslator.new_session(Transport::Tcp, &ProtocolConfig::default());
    let out = decode_all(s.as_mut(), &bytes);
    let [Ok(f)] = &out[..] else { panic!("{out:?}") };
    let e = &f.events[0];
    // `acc` (Wialon IPS's ignition name) is 0.
    assert_eq!(e.telemetry().ignition, Some(false));
    assert_eq!(e.raw_named("mcc"), Some(&RawV::IntValue(704)));
    assert_eq!(
        e.raw_named("msg_type"),
        Some(&RawV::StringValue("0x22".into()))
    );
    let p = e.position.as_ref().unwrap();
    assert_eq!(
        (p.speed, p.course, p.satellites),
        (Some(0.0), Some(19.0), Some(13))
    );
    assert!(p.valid);
}

// ---------------------------------------------------------------------------------------
// End to end: one connection, many units

/// A Retranslator packet for `unit` at a fixed place, size field included.
fn packet(unit: &str, time: u32) -> Vec<u8> {
    use avlgate::protocol::wialon_retranslator::packet::{self, Block, Packet, PosInfo, Value};
    packet::encode(&Packet {
        unit: unit.as_bytes(),
        time,
        flags: 1,
        blocks: vec![
            Block {
                hidden: 1,
                name: "posinfo",
                value: Value::Position(PosInfo {
                    longitude: 25.28,
                    latitude: 54.69,
                    altitude: 112.0,
                    speed: 40,
                    course: 90,
                    satellites: 10,
                }),
            },
            Block {
                hidden: 0,
                name: "pwr_ext",
                value: Value::Double(12.7),
            },
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_connection_carries_many_units_beside_their_own_connections() {
    let direct = IMEI; // a Teltonika tracker that Wialon also retranslates
    let dir = std::env::temp_dir().join(format!("avlgate-retranslator-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("imeis.txt");
    std::fs::write(&list, format!("unit-a\nunit-b\n{direct}\n")).unwrap();
    let sink = MemorySink::new();
    let gw = TestGateway::with_sink(
        Settings {
            imei_allowlist: Some(list),
            login_timeout_secs: Some(1),
            ..Default::default()
        },
        Arc::new(sink.clone()),
        |_| {},
    )
    .await;

    let mut tracker = Device::connect(gw.addr).await;
    tracker.send(&teltonika_login(direct)).await;
    assert_eq!(tracker.read_exact(1, 10).await, Some(vec![1]));
    let tracker_session = gw.shared.registry.get(direct).unwrap().id;

    let mut relay = Device::connect(gw.addr).await;
    let units = ["unit-a", direct, "unit-c", "bad unit", "unit-b"];
    for (i, u) in units.iter().enumerate() {
        relay.send(&packet(u, 1_750_000_000 + i as u32)).await;
        assert_eq!(
            relay.read_exact(1, 10).await,
            Some(vec![0x11]),
            "{u} answered"
        );
    }
    // A packet that names no unit is answered too (Wialon would resend it forever).
    let mut nameless = 12u32.to_le_bytes().to_vec();
    nameless.extend_from_slice(&[b'x'; 12]);
    relay.send(&nameless).await;
    assert_eq!(relay.read_exact(1, 10).await, Some(vec![0x11]));

    // Past the login timeout the relay is still served: it has no login, and needs none.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    relay.send(&packet("unit-a", 1_750_000_100)).await;
    assert_eq!(relay.read_exact(1, 10).await, Some(vec![0x11]));

    // The directly connected tracker was neither replaced nor disturbed.
    assert_eq!(gw.shared.registry.get(direct).unwrap().id, tracker_session);
    tracker
        .send(&h(avlgate::protocol::teltonika::samples::CODEC8))
        .await;
    assert_eq!(tracker.read_exact(4, 10).await, Some(vec![0, 0, 0, 1]));
    // No relayed unit holds a session (none takes commands through the relay).
    for u in ["unit-a", "unit-b", "unit-c"] {
        assert!(gw.shared.registry.get(u).is_none(), "{u} registered");
    }
    assert_eq!(gw.shared.registry.len(), 1);

    let events = memory_events(&sink);
    let relayed: Vec<&TelemetryEvent> = events
        .iter()
        .filter(|e| e.protocol == Protocol::WialonRetranslator as i32)
        .collect();
    let mut ids: Vec<&str> = relayed.iter().map(|e| e.imei.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [direct, "unit-a", "unit-a", "unit-b"],
        "unit-c and the bad id dropped"
    );
    assert!(relayed.iter().all(|e| e.kind == EventKind::Position as i32
        && e.telemetry().external_power_volts == Some(12.7)));
    // Event ids are per unit and packet: two packets of unit-a, two ids.
    let mut event_ids: Vec<&str> = relayed.iter().map(|e| e.event_id.as_str()).collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 4);
    // Session events are the tracker's only.
    let lifecycle: Vec<&TelemetryEvent> = events
        .iter()
        .filter(|e| e.kind == EventKind::SessionOpened as i32)
        .collect();
    assert_eq!(lifecycle.len(), 1);
    assert_eq!(lifecycle[0].imei, direct);
    assert_eq!(lifecycle[0].protocol, Protocol::Teltonika as i32);

    // The relay leaves: the tracker's session stays, and no session-closed event names a
    // relayed unit.
    drop(relay);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.shared.registry.get(direct).unwrap().id, tracker_session);
    gw.stop().await;
    let closed: Vec<TelemetryEvent> = memory_events(&sink)
        .into_iter()
        .filter(|e| e.kind == EventKind::SessionClosed as i32)
        .collect();
    assert!(
        closed
            .iter()
            .all(|e| e.protocol == Protocol::Teltonika as i32),
        "{closed:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
