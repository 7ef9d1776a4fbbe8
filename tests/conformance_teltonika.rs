//! The Teltonika frames of Traccar's test suite (tests/data/traccar-frames.json), replayed per
//! test method in order on one session. Frames with a valid length and CRC must decode to
//! their records (ACK = record count); the others must be refused without an ACK.
//!
//! Two more checks on every decoded frame:
//! - every IO element of every record (read here with the AVL parser, independently of the
//!   mapping) is in the event's `raw`, by id, with the exact value, in order;
//! - asserts that name a normalized value (`driverUniqueId`, ...) match our `telemetry`; the
//!   others (`tag1Voltage`, `eyeTemp1`: BLE sensor readings Traccar decodes from
//!   model-specific variable-length IOs we keep raw) are listed with the reason.

mod common;

use std::time::SystemTime;

use avlgate::proto::{raw_value, TelemetryEvent, Transport};
use avlgate::protocol::teltonika::{avl, MODULE};
use avlgate::protocol::{Action, ProtocolConfig};
use bytes::BytesMut;
use common::conformance as conf;
use common::h;
use serde_json::Value;

/// Traccar keys asserted on values we keep raw only, and why.
const EXCLUDED_KEYS: &[(&str, &str)] = &[
    (
        "tag1Voltage",
        "a BLE tag reading inside a model-specific NX (variable-length) IO; kept raw",
    ),
    (
        "tag1Battery",
        "a BLE tag reading inside a model-specific NX IO; kept raw",
    ),
    (
        "eyeTemp1",
        "a Teltonika EYE sensor reading inside an NX IO (model-specific); kept raw",
    ),
];

/// Every IO element of the AVL data `data` is in the events' `raw`, exactly, in order.
fn raw_survives(id: &str, data: &[u8], events: &[TelemetryEvent]) {
    let Ok((_, records)) = avl::parse(data) else {
        return; // Not AVL data (command codecs).
    };
    assert_eq!(records.len(), events.len(), "{id}");
    for (r, e) in records.iter().zip(events) {
        let ios: Vec<_> = e.raw.iter().filter(|v| v.id.is_some()).collect();
        assert_eq!(ios.len(), r.io.len(), "{id}: one raw value per IO element");
        for ((io_id, v), raw) in r.io.iter().zip(ios) {
            assert_eq!(raw.id, Some(u32::from(*io_id)), "{id}");
            let want = match v {
                avl::IoValue::Bytes(b) => raw_value::Value::BytesValue(b.clone()),
                v => raw_value::Value::UintValue(v.as_u64().unwrap()),
            };
            assert_eq!(raw.value.as_ref(), Some(&want), "{id}: io {io_id}");
        }
        assert_eq!(
            e.raw_named("priority"),
            Some(&raw_value::Value::UintValue(r.priority.into())),
            "{id}"
        );
    }
}

/// The AVL data of a TCP frame or UDP datagram (codec id .. second count).
fn avl_data(frame: &[u8], udp: bool) -> &[u8] {
    let data = if udp {
        // length u16, packet id u16, type u8, avl id u8, imei length u16 + imei, data.
        frame
            .get(6..8)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
            .and_then(|imei_len| frame.get(8 + imei_len..))
    } else {
        frame.get(8..frame.len().saturating_sub(4))
    };
    data.unwrap_or_default()
}

#[test]
fn traccar_teltonika_frames() {
    let all = conf::entries(conf::FRAMES, "teltonika");
    let by_test = conf::groups(
        all.iter().filter(|e| e["test_kind"] == "protocol_decoder"),
        |e| {
            (
                conf::test_of(e),
                e["transport"].as_str().unwrap().to_string(),
            )
        },
    );
    let (mut valid, mut valid_ok, mut invalid, mut invalid_rejected) = (0, 0, 0, 0);
    let (mut asserted, mut matched, mut excluded) = (0, 0, 0);
    let mut notes = Vec::new();
    for ((test, _), entries) in by_test {
        let transport = conf::transport_of(entries[0]);
        let mut s = MODULE.new_session(transport, &ProtocolConfig::default());
        for e in entries {
            let frame = conf::bytes_of(e);
            let wire = &e["wire"];
            let is_login = wire["kind"] == "imei_login";
            let ok_wire = wire["length_ok"] != false
                && wire["crc"] != "mismatch"
                && wire["crc"] != "unverifiable";
            let mut buf = BytesMut::from(&frame[..]);
            let got = s.decode(&mut buf, SystemTime::now());
            let id = format!("{test} seq {}", e["seq"]);
            if is_login {
                assert!(
                    matches!(got, Ok(Some(ref f)) if f.login.is_some()),
                    "{id}: login"
                );
                continue;
            }
            if ok_wire {
                valid += 1;
                match got {
                    Ok(Some(f)) => {
                        raw_survives(
                            &id,
                            avl_data(&frame, transport == Transport::Udp),
                            &f.events,
                        );
                        for (key, want) in conf::asserts(e) {
                            if let Some((_, why)) = EXCLUDED_KEYS.iter().find(|(k, _)| k == key) {
                                excluded += 1;
                                eprintln!("  {id}: {key} not normalized: {why}");
                                continue;
                            }
                            asserted += 1;
                            let got = match key.as_str() {
                                "driverUniqueId" => f
                                    .events
                                    .iter()
                                    .find_map(|e| e.telemetry().driver_id.clone())
                                    .map(Value::from),
                                other => panic!("{id}: assert on `{other}` is not mapped"),
                            };
                            assert_eq!(got.as_ref(), Some(want), "{id}: {key}");
                            matched += 1;
                        }
                        let count1 = wire["count1"].as_u64();
                        if let Some(n) = count1.filter(|_| {
                            wire["codec"] != "0x0c"
                                && wire["codec"] != "0x0d"
                                && wire["codec"] != "0x0e"
                        }) {
                            assert_eq!(f.events.len() as u64, n, "{id}: record count");
                            let ack = f.reply.as_deref().expect("ACK");
                            let expected_ack: Vec<u8> = if transport == Transport::Udp {
                                ack.to_vec()
                            } else {
                                (n as u32).to_be_bytes().to_vec()
                            };
                            assert_eq!(ack, &expected_ack[..], "{id}: ACK is the record count");
                        }
                        valid_ok += 1;
                    }
                    Ok(None) => panic!("{id}: a complete frame was reported incomplete"),
                    Err(err) => {
                        assert!(err.reply.is_none(), "{id}: a refused frame gets no ACK");
                        notes.push(format!("{id}: valid CRC but refused: {err}"));
                    }
                }
            } else {
                invalid += 1;
                match got {
                    Err(err) => {
                        assert!(err.reply.is_none(), "{id}: no ACK");
                        invalid_rejected += 1;
                        if err.action == Action::Close {
                            // The stream is closed; later frames of this test need a new session.
                            s = MODULE.new_session(transport, &ProtocolConfig::default());
                            let mut l =
                                BytesMut::from(&h("000f333536333037303432343431303133")[..]);
                            s.decode(&mut l, SystemTime::now()).unwrap();
                        }
                    }
                    Ok(None) => {
                        // A length field longer than the frame: the strict reading waits for bytes
                        // that never come; the device gets no ACK.
                        invalid_rejected += 1;
                        s = MODULE.new_session(transport, &ProtocolConfig::default());
                        let mut l = BytesMut::from(&h("000f333536333037303432343431303133")[..]);
                        s.decode(&mut l, SystemTime::now()).unwrap();
                    }
                    Ok(Some(_)) => panic!("{id}: a frame with a bad CRC or length was accepted"),
                }
            }
        }
    }
    eprintln!("teltonika conformance: {valid_ok}/{valid} valid frames decoded; {invalid_rejected}/{invalid} bad-CRC/length frames refused; normalized asserts {matched}/{asserted} ({excluded} on values kept raw)");
    assert_eq!(matched, asserted);
    for n in &notes {
        eprintln!("  {n}");
    }
    assert_eq!(invalid_rejected, invalid);
    // Valid-CRC frames the gateway refuses, each for a stated reason: Codec 7 (GH-series, not
    // supported), the camera message type of Codec 12, and two Codec 8 frames carrying an IO
    // group only a per-device setting announces. Everything else must decode.
    assert_eq!(valid_ok + notes.len(), valid);
    assert!(notes.len() <= 5, "{notes:?}");
    for n in &notes {
        assert!(
            n.contains("codec 0x07")
                || n.contains("type 0x0d")
                || n.contains("seq 46")
                || n.contains("seq 47"),
            "unexpected refusal: {n}"
        );
    }
}
