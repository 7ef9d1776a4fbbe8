//! Session-level tests: one test per packet family with its exact reply bytes, login rules,
//! split/concatenated input, resynchronisation after garbage and property tests for framing.
//! The replay of Traccar's GT06 frames is the integration test `tests/conformance_gt06.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::mapping::name;
use super::*;
use crate::proto::raw_value::Value;
use crate::proto::{Alarm, CellTower, EventKind, TelemetryEvent};
use crate::protocol::{crc, AnswerOutcome, CommandAnswer};

/// Login of IMEI 352887071911998, serial 4 (Traccar's frame-decoder vector).
const LOGIN_HEX: &str = "78780d010352887071911998000479d00d0a";
const IMEI: &str = "352887071911998";
/// `0x13` status: terminal info 0x44, voltage level 6, GSM 4, no alarm, serial 0x01BA.
const STATUS_HEX: &str = "78780a13440604000201baaf540d0a";
/// `0x12` location, 2015-10-20 14:21:11, 54.94535 N 24.01762 E, serial 0x0003.
const LOCATION_HEX: &str =
    "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a";
/// `0x16` alarm with SOS, serial 0x0203.
const SOS_HEX: &str =
    "787826161709130f3a2dcc02c55f2a089f9af9005c210901360481fe066d9b03413e420102035f92fe0d0a";

/// 2026-11-20 23:32:30 UTC.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_217_550)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn tcp() -> Session {
    Session::new(Transport::Tcp, &ProtocolConfig::default())
}

fn logged_in() -> Session {
    let mut s = tcp();
    let out = decode_all(&mut s, &h(LOGIN_HEX));
    assert!(matches!(&out[..], [Ok(f)] if f.login.as_deref() == Some(IMEI)));
    s
}

/// Decodes everything `input` holds in one go.
fn decode_all(s: &mut Session, input: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    feed(s, input, input.len().max(1))
}

/// Feeds `input` in chunks of `chunk` bytes and collects every outcome.
fn feed(s: &mut Session, input: &[u8], chunk: usize) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(f)),
                Err(e) => {
                    assert_eq!(e.action, Action::Continue, "{e}");
                    out.push(Err(e))
                }
            }
        }
        assert!(buf.len() <= s.max_frame_bytes, "buffer grew past the cap");
    }
    out
}

/// One decoded frame, or a panic naming what came instead.
fn only_frame(out: Vec<Result<Frame, DecodeError>>) -> Frame {
    let mut frames: Vec<Frame> = out
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("unexpected error: {e}")))
        .collect();
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

fn decode_one(s: &mut Session, hex: &str) -> Frame {
    only_frame(decode_all(s, &h(hex)))
}

/// The standard ACK built by hand, independently of `frame::encode`.
fn ack_bytes(start: u8, protocol: u8, serial: u16) -> Vec<u8> {
    let mut v = vec![start, start];
    if start == 0x79 {
        v.extend_from_slice(&[0x00, 0x05]);
    } else {
        v.push(0x05);
    }
    v.push(protocol);
    v.extend_from_slice(&serial.to_be_bytes());
    let crc = crc::x25(&v[2..]);
    v.extend_from_slice(&crc.to_be_bytes());
    v.extend_from_slice(&[0x0D, 0x0A]);
    v
}

fn kind(e: &TelemetryEvent) -> EventKind {
    EventKind::try_from(e.kind).unwrap()
}

/// A raw unsigned value by name.
fn raw_u(e: &TelemetryEvent, k: &str) -> u64 {
    match e.raw_named(k) {
        Some(Value::UintValue(v)) => *v,
        v => panic!("{k}: {v:?} in {:?}", e.raw),
    }
}

/// A raw string by name.
fn raw_s<'a>(e: &'a TelemetryEvent, k: &str) -> &'a str {
    match e.raw_named(k) {
        Some(Value::StringValue(s)) => s,
        v => panic!("{k}: {v:?} in {:?}", e.raw),
    }
}

/// A raw byte string by name.
fn raw_b<'a>(e: &'a TelemetryEvent, k: &str) -> &'a [u8] {
    match e.raw_named(k) {
        Some(Value::BytesValue(b)) => b,
        v => panic!("{k}: {v:?} in {:?}", e.raw),
    }
}

fn alarms(e: &TelemetryEvent) -> Vec<Alarm> {
    e.alarms
        .iter()
        .map(|a| Alarm::try_from(*a).unwrap())
        .collect()
}

fn cell(mcc: u32, mnc: u32, lac: u64, cell_id: u64, signal: Option<i32>) -> CellTower {
    CellTower {
        mcc,
        mnc,
        lac,
        cell_id,
        signal,
    }
}

// ---------------------------------------------------------------------------------------
// Probe, login

#[test]
fn probe() {
    for t in [Transport::Tcp, Transport::Udp] {
        assert_eq!(MODULE.probe(&[], t), Probe::NeedMore);
        assert_eq!(MODULE.probe(&[0x78], t), Probe::NeedMore);
        assert_eq!(MODULE.probe(&[0x79], t), Probe::NeedMore);
        assert_eq!(MODULE.probe(&[0x78, 0x78], t), Probe::Yes);
        assert_eq!(MODULE.probe(&[0x79, 0x79, 0x00], t), Probe::Yes);
        assert_eq!(MODULE.probe(&[0x78, 0x79], t), Probe::No);
        assert_eq!(MODULE.probe(b"#L#", t), Probe::No);
        assert_eq!(MODULE.probe(&[0, 0x0F], t), Probe::No);
    }
}

#[test]
fn login_ack_matches_the_spec_example() {
    // The Concox document's login reply for serial 0x0005.
    assert_eq!(
        &frame::ack(false, LOGIN, 5)[..],
        &h("7878050100059ff80d0a")[..]
    );
    let mut s = tcp();
    let f = decode_one(&mut s, LOGIN_HEX);
    assert_eq!(f.login.as_deref(), Some(IMEI));
    assert_eq!(s.imei(), Some(IMEI));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x01, 4)[..]));
    assert!(f.events.is_empty());
}

#[test]
fn login_with_type_and_timezone_and_relogin() {
    let mut s = tcp();
    // 0x01 with type identification 0x2200 and time zone 0x0012 (Traccar seq 155 layout).
    let f = decode_one(&mut s, "787811010864717003664467100f190a0002c6d20d0a");
    assert_eq!(f.login.as_deref(), Some("864717003664467"));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x01, 2)[..]));
    // A relogin on the same connection updates the identity.
    let f = decode_one(&mut s, LOGIN_HEX);
    assert_eq!(f.login.as_deref(), Some(IMEI));
    assert_eq!(s.imei(), Some(IMEI));
}

#[test]
fn login_with_non_bcd_imei_is_refused_and_closes() {
    let mut s = tcp();
    let bad = frame::encode(false, 0x01, &h("0a5288707191199800"), 1);
    let mut buf = BytesMut::from(&bad[..]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!(
        (e.kind, e.action),
        (ErrorKind::LoginRejected, Action::Close)
    );
    assert!(e.reply.is_none());
}

#[test]
fn nothing_but_login_before_login() {
    let mut s = tcp();
    let out = decode_all(&mut s, &h(STATUS_HEX));
    match &out[..] {
        [Err(e)] => {
            assert_eq!(e.kind, ErrorKind::NotLoggedIn);
            assert_eq!(e.action, Action::Continue);
            assert!(e.reply.is_none());
        }
        o => panic!("{o:?}"),
    }
    // The connection goes on: the login then works, and so does the next status.
    decode_one(&mut s, LOGIN_HEX);
    assert!(decode_one(&mut s, STATUS_HEX).reply.is_some());
}

// ---------------------------------------------------------------------------------------
// Packet families

#[test]
fn status_0x13() {
    let mut s = logged_in();
    let f = decode_one(&mut s, STATUS_HEX);
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x13, 0x01BA)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Heartbeat);
    let t = e.telemetry();
    assert_eq!(t.ignition, Some(false));
    assert_eq!(t.charging, Some(true));
    assert_eq!(t.gnss_tracking, Some(true));
    assert_eq!(t.armed, Some(false));
    assert_eq!(t.engine_blocked, Some(false));
    assert_eq!(t.battery_percent, Some(100.0));
    assert_eq!(t.gsm_signal_percent, Some(100.0));
    assert!(e.alarms.is_empty());
    assert_eq!(e.protocol, Protocol::Gt06 as i32);
    // Raw: every field of the packet by name, in order, exactly as sent.
    let names: Vec<(&str, u64)> = e
        .raw
        .iter()
        .map(|r| match r.value {
            Some(Value::UintValue(v)) => (r.name.as_str(), v),
            ref v => panic!("{v:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            (name::PROTOCOL_NUMBER, 0x13),
            (name::TERMINAL_INFO, 0x44),
            (name::VOLTAGE_LEVEL, 6),
            (name::GSM_SIGNAL, 4),
            (name::ALARM, 0),
            (name::LANGUAGE, 2),
            (name::SERIAL, 0x01BA),
        ]
    );
    assert!(e.attributes.is_empty());
}

#[test]
fn heartbeat_0x23() {
    let mut s = logged_in();
    let f = decode_one(&mut s, "78780b23c00122040001000818720d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x23, 0x0008)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Heartbeat);
    assert_eq!(raw_u(e, name::BATTERY_CENTIVOLTS), 290);
    assert_eq!(raw_u(e, name::LANGUAGE), 1);
    let t = e.telemetry();
    assert!((t.battery_volts.unwrap() - 2.90).abs() < 1e-9);
    assert_eq!(t.gsm_signal_percent, Some(100.0));
    assert_eq!(t.engine_blocked, Some(true));
    assert_eq!(t.gnss_tracking, Some(true));
}

#[test]
fn location_0x12() {
    let mut s = logged_in();
    let f = decode_one(&mut s, LOCATION_HEX);
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x12, 0x0003)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    let p = e.position.as_ref().unwrap();
    assert!((p.latitude - 54.94535).abs() < 1e-5);
    assert!((p.longitude - 24.01762).abs() < 1e-5);
    assert!(p.valid);
    assert_eq!(p.satellites, Some(5));
    assert_eq!(p.speed, Some(0.0));
    assert_eq!(p.course, Some(0.0));
    assert_eq!(e.device_time.as_ref().unwrap().seconds, 1_445_350_871);
    assert_eq!(e.cell_towers, vec![cell(246, 1, 0x006E, 0x0055DA, None)]);
    // Course word 0x5400: fixed, north, course 0, and bit 14: bit 15 is ACC (off).
    assert_eq!(raw_u(e, name::COURSE_STATUS), 0x5400);
    assert_eq!(e.telemetry().ignition, Some(false));
    assert!(e.attributes.is_empty());
}

#[test]
fn hemisphere_bits() {
    // South (bit 10 clear) and west (bit 11 set), not fixed (bit 12 clear), course 0x123.
    let mut content = h("0f0a140e150bc505e51e780293a9e864");
    content.extend_from_slice(&(0x0800u16 | 0x0123).to_be_bytes());
    let mut s = logged_in();
    let f = only_frame(decode_all(&mut s, &frame::encode(false, 0x10, &content, 9)));
    let p = f.events[0].position.unwrap();
    assert!(p.latitude < 0.0 && p.longitude < 0.0 && !p.valid);
    assert_eq!(p.course, Some(291.0));
    assert_eq!(p.speed, Some(100.0));
}

#[test]
fn location_0x22_with_acc() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "787822220e0914160f07c9021a362805090a7800d8b802d402c30e00a98a0105010213f4bb0d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x22, 0x0213)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert_eq!(e.telemetry().ignition, Some(true));
    assert_eq!(raw_u(e, name::ACC), 1);
    assert_eq!(raw_u(e, name::UPLOAD_MODE), 5);
    assert_eq!(raw_u(e, name::GPS_REUPLOAD), 1);
    assert_eq!(e.cell_towers[0].mcc, 724);
}

#[test]
fn alarm_0x16_sos() {
    let mut s = logged_in();
    let f = decode_one(&mut s, SOS_HEX);
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x16, 0x035F)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Alarm);
    assert_eq!(alarms(e), [Alarm::Sos]);
    // This model's 6-byte status block: battery u16 0x413E, too large for a percentage:
    // raw only.
    assert_eq!(raw_u(e, name::BATTERY_LEVEL), 0x413E);
    assert_eq!(e.telemetry().battery_percent, None);
    assert!(e.position.is_some());
    assert_eq!(e.cell_towers[0].mcc, 310);
}

#[test]
fn alarm_byte_codes_and_terminal_bits() {
    let mut s = logged_in();
    let gps = "0f0a140e150bc505e51e780293a9e8005400";
    let cell = "0901cc00287d001f71";
    for (info, code, want) in [
        ("00", "02", vec![Alarm::PowerCut]),
        ("00", "04", vec![Alarm::GeofenceEnter]),
        ("00", "05", vec![Alarm::GeofenceExit]),
        ("00", "06", vec![Alarm::Overspeed]),
        ("00", "0e", vec![Alarm::LowBattery]),
        ("00", "09", vec![Alarm::Vibration]),
        ("00", "2c", vec![Alarm::Accident]),
        ("08", "00", vec![Alarm::Vibration]), // bits 3-5 = 001
        ("20", "00", vec![Alarm::Sos]),       // bits 3-5 = 100
        // Both report: both kept.
        ("10", "13", vec![Alarm::PowerCut, Alarm::Tampering]),
        ("00", "00", vec![]),
        ("00", "ea", vec![]), // not in the table: raw only
    ] {
        let content = h(&format!("{gps}{cell}{info}0403{code}02"));
        let f = only_frame(decode_all(&mut s, &frame::encode(false, 0x26, &content, 7)));
        let e = &f.events[0];
        assert_eq!(alarms(e), want, "{info} {code}");
        assert_eq!(
            raw_u(e, name::ALARM),
            u64::from_str_radix(code, 16).unwrap()
        );
        if want.is_empty() {
            assert_eq!(kind(e), EventKind::Position);
        } else {
            assert_eq!(kind(e), EventKind::Alarm);
        }
        assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x26, 7)[..]));
    }
}

#[test]
fn lbs_multi_cell_0x28() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "78783b2810010d02020201cc00287d001f713e287d001f7231287d001e232d287d001f4018000000000000000000000000000000000000ff00020005b14b0d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x28, 0x0005)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Lbs);
    // Four cells, the serving one first; the three empty slots are left out.
    assert_eq!(e.cell_towers.len(), 4);
    assert_eq!(e.cell_towers[0], cell(460, 0, 0x287d, 0x001f71, Some(0x3e)));
    assert_eq!(e.cell_towers[3], cell(460, 0, 0x287d, 0x001f40, Some(0x18)));
    assert_eq!(raw_u(e, name::TIMING_ADVANCE), 0xff);
    assert_eq!(raw_u(e, name::LANGUAGE), 2);
}

#[test]
fn lbs_with_wifi_0x18() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "78783b18100c0f1201010195271784005ab63617840002fa47178400ff8f4817840019f3491784005ab54b178400ff8e4c17840019f24cff0002012287c80d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x18, 0x0122)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Lbs);
    assert_eq!(e.cell_towers.len(), 7);
    assert!(e.cell_towers.iter().all(|c| (c.mcc, c.mnc) == (405, 39)));
    assert_eq!(
        e.cell_towers[0],
        cell(405, 39, 0x1784, 0x005ab6, Some(0x36))
    );
    assert!(e.wifi_access_points.is_empty());
}

#[test]
fn wifi_crc_less_form_0x69() {
    let mut s = logged_in();
    let raw = h("787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a");
    // Byte by byte gives the same frame as whole.
    for chunk in [1, 3, raw.len()] {
        let f = only_frame(feed(&mut s, &raw, chunk));
        assert_eq!(
            f.reply.as_deref(),
            Some(&h("78780069171023110850" /* time echoed */)[..])
                .map(|r| [r, &[0x0D, 0x0A][..]].concat())
                .as_deref()
        );
        let e = &f.events[0];
        assert_eq!(kind(e), EventKind::Lbs);
        assert_eq!(
            e.cell_towers,
            vec![
                cell(204, 8, 3150, 12197, Some(100)),
                cell(204, 8, 3150, 12198, Some(110))
            ]
        );
        assert!(e.wifi_access_points.is_empty());
        // This form has no serial.
        assert!(e.raw_named(name::SERIAL).is_none());
        assert_eq!(raw_u(e, name::PROTOCOL_NUMBER), 0x69);
    }
}

#[test]
fn time_request_0x8a_answers_current_utc() {
    let mut s = logged_in();
    let f = decode_one(&mut s, "7878058a000688290d0a");
    let want = frame::encode(false, 0x8A, &[26, 11, 20, 23, 32, 30], 0x0006);
    assert_eq!(f.reply.as_deref(), Some(&want[..]));
    assert_eq!(&want[..4], &[0x78, 0x78, 0x0B, 0x8A]);
    assert!(f.events.is_empty());
}

#[test]
fn address_request_0x2a_gets_neutral_reply() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "78782e2a0f0c1d071139ca027ac8000c4658000014d83132353230313335333231373730373900000000000001002a6ece0d0a",
    );
    // Length 0x15 = protocol 1 + content (1 + 4 + 11) + serial 2 + CRC 2.
    let mut want = h("79790015970b00000000");
    want.extend_from_slice(b"NA&&NA&&0##");
    want.extend_from_slice(&[0x00, 0x2A]); // the request's serial
    let crc = crc::x25(&want[2..]);
    want.extend_from_slice(&crc.to_be_bytes());
    want.extend_from_slice(&[0x0D, 0x0A]);
    assert_eq!(f.reply.as_deref(), Some(&want[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert_eq!(raw_s(e, name::PHONE), "1252013532177079");
    assert_eq!(raw_u(e, name::PROTOCOL_NUMBER), 0x2A);
    assert!(e.alarms.is_empty());
}

#[test]
fn information_0x94_external_voltage_no_ack() {
    let mut s = logged_in();
    let f = decode_one(&mut s, "79790008940000ed0289d6860d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Status);
    assert_eq!(raw_u(e, name::INFO_TYPE), 0);
    assert_eq!(raw_u(e, name::POWER_CENTIVOLTS), 237);
    assert!((e.telemetry().external_power_volts.unwrap() - 2.37).abs() < 1e-9);
    // ICCID sub-type.
    let f = decode_one(
        &mut s,
        "79790020940a035985708236675805200502187214018966051912408052452f000355560d0a",
    );
    let e = &f.events[0];
    assert_eq!(e.telemetry().iccid.as_deref(), Some("8966051912408052452"));
    assert_eq!(raw_s(e, name::IMEI), "359857082366758");
    assert_eq!(raw_s(e, name::IMSI), "520050218721401");
    assert!(f.reply.is_none());
}

#[test]
fn command_response_0x15_ascii() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "7878281520000000003c49434349443a38393838323339303030303039373330323635303e00020d446f260d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x15, 0x0D44)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::CommandResponse);
    assert_eq!(raw_u(e, name::SERVER_FLAG), 0);
    assert_eq!(e.text.as_deref(), Some("<ICCID:89882390000097302650>"));
    assert_eq!(e.telemetry().iccid.as_deref(), Some("89882390000097302650"));
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag: Some(0),
            outcome: AnswerOutcome::Text("<ICCID:89882390000097302650>".into())
        }]
    );
}

#[test]
fn command_response_0x21_utf16_and_ascii() {
    let mut s = logged_in();
    let f = decode_one(
        &mut s,
        "797900262100000000020043006f006d006d0061006e00640020006500720072006f0072002100236e850d0a",
    );
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::CommandResponse);
    assert_eq!(e.text.as_deref(), Some("Command error!"));
    assert_eq!(raw_u(e, name::ENCODING), 2);
    assert_eq!(f.answers[0].tag, Some(0));
    let mut content = 0x0102_0304u32.to_be_bytes().to_vec();
    content.push(1);
    content.extend_from_slice(b"OK!");
    let f = only_frame(decode_all(&mut s, &frame::encode(true, 0x21, &content, 3)));
    assert_eq!(raw_u(&f.events[0], name::SERVER_FLAG), 0x0102_0304);
    assert_eq!(f.events[0].text.as_deref(), Some("OK!"));
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag: Some(0x0102_0304),
            outcome: AnswerOutcome::Text("OK!".into())
        }]
    );
    assert!(f.events[0].attributes.is_empty());
}

#[test]
fn unknown_type_is_published_and_acked_in_its_framing() {
    let mut s = logged_in();
    let raw = frame::encode(true, 0xEE, &h("0380d600"), 0x046F);
    let f = only_frame(decode_all(&mut s, &raw));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x79, 0xEE, 0x046F)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Unknown);
    assert_eq!(raw_u(e, name::PROTOCOL_NUMBER), 0xEE);
    assert_eq!(raw_b(e, name::CONTENT), h("0380d600"));
    assert_eq!(raw_u(e, name::SERIAL), 0x046F);
    assert!(e.attributes.is_empty());
    assert_eq!(e.telemetry, None);
    // A known type whose content is too short: still published raw and acknowledged, with
    // the gateway's diagnosis as the one attribute.
    let f = only_frame(decode_all(&mut s, &frame::encode(false, 0x12, &[1, 2], 5)));
    assert_eq!(kind(&f.events[0]), EventKind::Unknown);
    assert_eq!(raw_b(&f.events[0], name::CONTENT), [1, 2]);
    assert!(f.events[0].attr("decode_error").is_some());
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x12, 5)[..]));
    // 0x17 with a length and a CRC: models disagree on its layout, so it is published as
    // it came.
    let f = only_frame(decode_all(
        &mut s,
        &frame::encode(false, 0x17, &h("0f0c1d0711390102"), 6),
    ));
    assert_eq!(kind(&f.events[0]), EventKind::Unknown);
    assert_eq!(raw_b(&f.events[0], name::CONTENT), h("0f0c1d0711390102"));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x17, 6)[..]));
}

#[test]
fn digest_ignores_the_serial_and_depends_on_the_imei() {
    let mut s = logged_in();
    let content = h("0f0a140e150bc505e51e780293a9e800540000f601006e0055da");
    let a = only_frame(decode_all(&mut s, &frame::encode(false, 0x12, &content, 1)));
    let b = only_frame(decode_all(&mut s, &frame::encode(false, 0x12, &content, 2)));
    assert_eq!(a.digest, b.digest);
    assert_eq!(
        a.digest,
        crate::protocol::digest(
            Protocol::Gt06,
            &[IMEI.as_bytes(), &[&[0x12], &content[..]].concat()]
        )
    );
    let mut other = tcp();
    decode_one(&mut other, "78780d0103534190360660610003c3df0d0a");
    let c = only_frame(decode_all(
        &mut other,
        &frame::encode(false, 0x12, &content, 1),
    ));
    assert_ne!(a.digest, c.digest);
}

/// The session maps with the profile its IMEI is assigned in the operator's file, and
/// follows the file when it is reloaded.
#[test]
fn the_device_profile_follows_the_imei_and_the_profile_file() {
    let dir = std::env::temp_dir().join(format!("avlgate-gt06-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profiles.toml");
    let write = |text: &str, version: u64| {
        crate::net::watch::write_versioned(&path, text, version);
    };
    write(
        &format!("[[devices]]\nprofile = \"gt06-lw\"\nimeis = [\"{IMEI}\"]\n"),
        1,
    );
    let profiles = crate::vocab::Profiles::load(&path).unwrap();
    let limits = ProtocolConfig::default().with_profiles(profiles.clone());
    let mut s = Session::new(Transport::Tcp, &limits);
    decode_one(&mut s, LOGIN_HEX);
    // 0x26 with alarm byte 0x19: harsh acceleration on the LW series, low battery elsewhere.
    let content = h("0f0a140e150bc505e51e780293a9e80054000901cc00287d001f710004031902");
    let packet = frame::encode(false, 0x26, &content, 7);
    let alarm = |s: &mut Session| alarms(&only_frame(decode_all(s, &packet)).events[0]);
    assert_eq!(alarm(&mut s), [Alarm::HarshAcceleration]);
    // Another device on the same port: the default profile.
    let mut other = Session::new(Transport::Tcp, &limits);
    decode_one(&mut other, "78780d0103534190360660610003c3df0d0a");
    assert_eq!(alarm(&mut other), [Alarm::LowBattery]);
    // The file no longer assigns the device: the family meaning from the next frame on.
    write("[[devices]]\nprofile = \"gt06-lw\"\nimeis = [\"1\"]\n", 2);
    assert!(!profiles.reload_if_changed().unwrap(), "seen, settling");
    assert!(profiles.reload_if_changed().unwrap());
    assert_eq!(alarm(&mut s), [Alarm::LowBattery]);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Commands

#[test]
fn online_command_0x80() {
    let mut s = logged_in();
    let out = s
        .encode_command(&CommandRequest::Text("Relay,1#".into()))
        .unwrap();
    assert_eq!(s.last_server_flag(), Some(1));
    let mut want = h("78781480");
    want.push(12);
    want.extend_from_slice(&1u32.to_be_bytes());
    want.extend_from_slice(b"Relay,1#");
    want.extend_from_slice(&[0x00, 0x02, 0x00, 0x01]); // language, serial 1
    let crc = crc::x25(&want[2..]);
    want.extend_from_slice(&crc.to_be_bytes());
    want.extend_from_slice(&[0x0D, 0x0A]);
    assert_eq!(&out[..], &want[..]);
    // The next one gets a new flag and serial.
    let out = s
        .encode_command(&CommandRequest::Text("WHERE#".into()))
        .unwrap();
    assert_eq!(s.last_server_flag(), Some(2));
    assert_eq!(&out[out.len() - 8..out.len() - 6], &[0x00, 0x02]);
    assert_eq!(&out[out.len() - 6..out.len() - 4], &[0x00, 0x02]);
    // Refused: non-ASCII, too long, empty, raw payloads.
    for bad in ["Relé,1#".to_string(), "x".repeat(244), String::new()] {
        assert!(matches!(
            s.encode_command(&CommandRequest::Text(bad)),
            Err(CommandError::Invalid(_))
        ));
    }
    assert!(s
        .encode_command(&CommandRequest::Text("x".repeat(243)))
        .is_ok());
    assert!(matches!(
        s.encode_command(&CommandRequest::Payload(bytes::Bytes::from_static(b"x"))),
        Err(CommandError::UnsupportedType(r)) if r.contains("text")
    ));
}

/// The bytes of a `0x80` online command with `text`, server flag and serial, CRC-ITU over the
/// whole frame (the spec's layout, spelled out here rather than through the encoder).
fn online(text: &str, flag: u32, serial: u16) -> Vec<u8> {
    let mut f = vec![0x78, 0x78, (1 + 1 + 4 + text.len() + 2 + 2 + 2) as u8, 0x80];
    f.push((4 + text.len()) as u8);
    f.extend_from_slice(&flag.to_be_bytes());
    f.extend_from_slice(text.as_bytes());
    f.extend_from_slice(&[0x00, 0x02]);
    f.extend_from_slice(&serial.to_be_bytes());
    let crc = crc::x25(&f[2..]);
    f.extend_from_slice(&crc.to_be_bytes());
    f.extend_from_slice(&[0x0D, 0x0A]);
    f
}

#[test]
fn typed_commands_are_concox_online_commands() {
    let mut s = logged_in();
    let cases = [
        (CommandRequest::EngineStop, "Relay,1#"),
        (CommandRequest::EngineResume, "Relay,0#"),
        (CommandRequest::PositionRequest, "WHERE#"),
        (CommandRequest::Reboot, "RESET#"),
        (
            CommandRequest::SetReportInterval { seconds: 60 },
            "TIMER,60#",
        ),
    ];
    for (i, (request, text)) in cases.into_iter().enumerate() {
        let n = i as u16 + 1;
        let out = s.encode_command(&request).unwrap();
        assert_eq!(&out[..], &online(text, u32::from(n), n)[..], "{request:?}");
        assert_eq!(s.last_command_tag(), Some(u32::from(n)));
    }
    for refused in [
        CommandRequest::OutputSet { index: 1, on: true },
        CommandRequest::SetReportInterval { seconds: 18_001 },
    ] {
        let e = s.encode_command(&refused).unwrap_err();
        assert!(
            matches!(
                e,
                CommandError::UnsupportedType(_) | CommandError::Invalid(_)
            ),
            "{refused:?}: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Framing: splits, concatenation, resync, caps

fn stream() -> Vec<u8> {
    [
        LOGIN_HEX,
        STATUS_HEX,
        LOCATION_HEX,
        SOS_HEX,
        "79790008940000ed0289d6860d0a",
    ]
    .iter()
    .flat_map(|x| h(x))
    .collect()
}

/// A comparable summary of an outcome.
fn summary(r: &Result<Frame, DecodeError>) -> String {
    match r {
        Ok(f) => {
            // Attributes are a hash map: compare them sorted.
            let events: Vec<String> = f
                .events
                .iter()
                .map(|e| {
                    let attrs: BTreeMap<_, _> = e.attributes.iter().collect();
                    format!(
                        "{} {:?} {:?} {attrs:?} {:?} {:?} {:?} {:?}",
                        e.kind,
                        e.position,
                        e.device_time,
                        e.raw,
                        e.telemetry,
                        e.alarms,
                        e.cell_towers
                    )
                })
                .collect();
            format!("{events:?} {:?} {:x} {:?}", f.reply, f.digest, f.login)
        }
        Err(e) => format!("err {:?}", e.kind),
    }
}

#[test]
fn split_at_every_point_and_byte_by_byte_give_the_same_frames() {
    let input = stream();
    let whole: Vec<String> = decode_all(&mut tcp(), &input).iter().map(summary).collect();
    assert_eq!(whole.len(), 5);
    assert!(whole.iter().all(|s| !s.starts_with("err")));
    for chunk in 1..input.len() {
        let got: Vec<String> = feed(&mut tcp(), &input, chunk)
            .iter()
            .map(summary)
            .collect();
        assert_eq!(got, whole, "chunk {chunk}");
    }
    for cut in 1..input.len() {
        let mut s = tcp();
        let mut buf = BytesMut::from(&input[..cut]);
        let mut got = Vec::new();
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            got.push(summary(&Ok(f)));
        }
        buf.extend_from_slice(&input[cut..]);
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            got.push(summary(&Ok(f)));
        }
        assert_eq!(got, whole, "cut {cut}");
    }
}

fn frames_only(out: &[Result<Frame, DecodeError>]) -> Vec<String> {
    out.iter().filter(|r| r.is_ok()).map(summary).collect()
}

#[test]
fn resync_after_garbage_before_between_and_inside() {
    let clean = frames_only(&decode_all(&mut tcp(), &stream()));
    let login = h(LOGIN_HEX);
    let status = h(STATUS_HEX);
    let location = h(LOCATION_HEX);
    let mut input = b"GET / HTTP/1.1\r\n\x78\x00".to_vec(); // before
    input.extend_from_slice(&login);
    input.extend_from_slice(&[0x00, 0x79, 0x78, 0xFF]); // between
    input.extend_from_slice(&status);
    // inside: a frame cut off by garbage, then a frame whose stop bits are gone.
    input.extend_from_slice(&location[..10]);
    input.extend_from_slice(b"\x01\x02\x03");
    input.extend_from_slice(&location);
    input.extend_from_slice(&h(SOS_HEX));
    input.extend_from_slice(&h("79790008940000ed0289d6860d0a"));
    for chunk in [1, 2, 7, input.len()] {
        let out = feed(&mut tcp(), &input, chunk);
        assert_eq!(frames_only(&out), clean, "chunk {chunk}");
        assert!(out.iter().any(|r| r.is_err()));
    }
}

#[test]
fn bad_crc_is_rejected_without_reply_and_the_next_frame_decodes() {
    let mut s = logged_in();
    let mut bad = h(STATUS_HEX);
    let n = bad.len();
    bad[n - 3] ^= 0xFF;
    let mut input = bad.clone();
    input.extend_from_slice(&h(STATUS_HEX));
    let out = decode_all(&mut s, &input);
    match &out[..] {
        [Err(e), Ok(f)] => {
            assert_eq!(
                (e.kind, e.action),
                (ErrorKind::BadChecksum, Action::Continue)
            );
            assert!(e.reply.is_none());
            assert!(f.reply.is_some());
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn bad_length_is_rejected_and_resynchronised() {
    let mut s = logged_in();
    // Length byte says 0x0b but the frame has 0x0a: stop bits are not where it says.
    let mut bad = h(STATUS_HEX);
    bad[2] = 0x0b;
    let mut input = bad;
    input.extend_from_slice(&h(STATUS_HEX));
    let out = decode_all(&mut s, &input);
    assert!(matches!(&out[0], Err(e) if e.kind == ErrorKind::BadLength && e.reply.is_none()));
    let frames: Vec<_> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].reply.as_deref(),
        Some(&ack_bytes(0x78, 0x13, 0x01BA)[..])
    );
}

#[test]
fn length_over_the_cap_is_refused_from_the_header() {
    let limits = ProtocolConfig::default().with("gt06", "max_frame_bytes", "64");
    let mut s = Session::new(Transport::Tcp, &limits);
    let mut buf = BytesMut::from(&[0x79, 0x79, 0xFF, 0xFF][..]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::TooLarge, Action::Continue));
    assert_eq!(buf.len(), 2);
}

#[test]
fn udp_datagram_with_a_partial_frame_is_dropped() {
    let mut s = Session::new(Transport::Udp, &ProtocolConfig::default());
    let mut buf = BytesMut::from(&h(LOGIN_HEX)[..]);
    buf.extend_from_slice(&h(STATUS_HEX)[..5]);
    assert!(s.decode(&mut buf, now()).unwrap().unwrap().login.is_some());
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!(e.action, Action::Continue);
    assert!(buf.is_empty());
}

proptest! {
    #[test]
    fn encoded_frames_survive_any_split(
        protocol in any::<u8>().prop_filter("not login/wifi", |p| !matches!(p, 0x01 | 0x17 | 0x69)),
        content in proptest::collection::vec(any::<u8>(), 0..200),
        serial in any::<u16>(),
        extended in any::<bool>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let f = frame::encode(extended, protocol, &content, serial);
        let cut = cut.index(f.len() + 1);
        let mut buf = BytesMut::from(&f[..cut]);
        let first = frame::split(&buf, 4096);
        if cut < f.len() {
            prop_assert_eq!(first, frame::Split::Incomplete);
        }
        buf.extend_from_slice(&f[cut..]);
        match frame::split(&buf, 4096) {
            frame::Split::Frame(r, n) => {
                prop_assert_eq!(n, f.len());
                prop_assert_eq!(r.protocol, protocol);
                prop_assert_eq!(r.content, content);
                prop_assert_eq!(r.serial, serial);
                prop_assert_eq!(r.extended, extended);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn random_bytes_never_panic_and_the_buffer_stays_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        chunk in 1usize..64,
        login_first in any::<bool>(),
    ) {
        let limits = ProtocolConfig::default().with("gt06", "max_frame_bytes", "256");
        let mut s = Session::new(Transport::Tcp, &limits);
        let mut input = if login_first { h(LOGIN_HEX) } else { Vec::new() };
        input.extend_from_slice(&data);
        let mut buf = BytesMut::new();
        for part in input.chunks(chunk) {
            buf.extend_from_slice(part);
            let mut guard = 0;
            loop {
                guard += 1;
                prop_assert!(guard < 10_000, "decode loops without progress");
                let before = buf.len();
                match s.decode(&mut buf, now()) {
                    Ok(None) => break,
                    Ok(Some(_)) => prop_assert!(buf.len() < before),
                    Err(e) => {
                        prop_assert!(buf.len() < before || e.action == Action::Close);
                        if e.action == Action::Close { buf.clear(); break; }
                    }
                }
            }
            prop_assert!(buf.len() <= 256 + 64);
        }
    }

    #[test]
    fn random_content_in_valid_frames_never_panics(
        protocol in any::<u8>(),
        content in proptest::collection::vec(any::<u8>(), 0..120),
        extended in any::<bool>(),
    ) {
        let mut s = logged_in();
        let f = frame::encode(extended, protocol, &content, 1);
        let mut buf = BytesMut::from(&f[..]);
        let _ = s.decode(&mut buf, now());
    }
}

// ---------------------------------------------------------------------------------------
// Model-specific packets (ext.rs) and alternative layouts, with their exact replies.
// Frames from Traccar's test suite (tests/data/traccar-frames.json, seq in brackets).

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn modular_0x70_is_answered_in_the_basic_framing() {
    // [73] GPS module 0x0033, event 0x16, odometer LE, satellites module.
    let mut s = logged_in();
    let f = decode_one(&mut s, "797900a87000000001020035000100003300125d62bf3a0800e804b5994308814a87001d5d00340006115d62bf29000011000a012e02620000000000000001000803537601000129800002000803102608593397620003000a8901260852293397626600180002017d002b000116002c00045d6278ea0009000108000a00010b002800010b002e00040000f0c1002a00010000290004000000be0030000a000100b4000a00b402d00006c5490d0a");
    assert_eq!(f.reply.as_deref(), Some(&h("78780570000677670d0a")[..]));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x70, 0x0006)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    let p = e.position.as_ref().unwrap();
    assert!(p.valid);
    assert_eq!(p.satellites, Some(8));
    assert_eq!(p.altitude, Some(232.0));
    assert_eq!(e.device_time.as_ref().unwrap().seconds, 0x5d62_bf3a);
    assert_eq!(raw_u(e, name::ODOMETER_METERS), 0xc1f0_0000);
    assert_eq!(raw_u(e, name::EVENT), 0x16);
    assert_eq!(raw_u(e, name::BATTERY_CENTIVOLTS), 381);
    assert_eq!(raw_b(e, name::ICCID), h("89012608522933976266"));
    let t = e.telemetry();
    assert_eq!(t.odometer_meters, Some(f64::from(0xc1f0_0000u32)));
    assert!(close(t.battery_volts, 3.81));
    assert_eq!(t.iccid.as_deref(), Some("89012608522933976266"));
    assert_eq!(t.satellites_visible, Some(11));
    assert_eq!(t.door_open, Some(false));
    assert!(close(p.hdop, 1.1));
    // Event 0x16 is no alarm code of the module table.
    assert!(e.alarms.is_empty());
}

#[test]
fn modular_0x70_event_raises_alarm_and_keeps_unknown_modules() {
    let mut s = logged_in();
    // Module 0x002B = 0x14 (removing), module 0x0099 unknown.
    let content = h("002b000114009900020102");
    let f = only_frame(decode_all(&mut s, &frame::encode(true, 0x70, &content, 9)));
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x70, 9)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Alarm);
    assert_eq!(alarms(e), [Alarm::Removing]);
    assert_eq!(raw_b(e, "module_0099"), [1, 2]);
    // A module length running past the content: published raw, still acknowledged.
    let f = only_frame(decode_all(
        &mut s,
        &frame::encode(true, 0x70, &h("002b0009"), 10),
    ));
    assert_eq!(kind(&f.events[0]), EventKind::Unknown);
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x70, 10)[..]));
}

#[test]
fn dashcam_alarm_0x95_short_and_jc400() {
    let mut s = logged_in();
    // [70] short form: date-time + event 0x01 = general alarm.
    let f = decode_one(&mut s, "78780c95130a071223200100013ad10d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x95, 0x0001)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Alarm);
    assert_eq!(alarms(e), [Alarm::General]);
    assert_eq!(raw_u(e, name::SHORT_ALARM_TYPE), 1);
    assert!(e.position.is_none());
    // [12] JC400: marker, GPS with u16 speed, power, event 0x92, video files.
    let f = decode_one(&mut s, "78789795ffff01180b0d031406da04b5ab0d08813df01ca9002c008a9200004556454e545f3836323739383035323432393038375f30303030303030305f323032345f31315f31325f32325f32305f30365f495f35362e6d70342c4556454e545f3836323739383035323432393038375f30303030303030305f323032345f31315f31325f32325f32305f30365f465f35352e6d70340037d45b0d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x95, 0x0037)[..]));
    let e = &f.events[0];
    assert_eq!(alarms(e), [Alarm::HarshCornering]);
    assert_eq!(raw_u(e, name::ALARM_TYPE), 0x92);
    assert_eq!(raw_u(e, name::POWER_DECIVOLTS), 138);
    assert!(close(e.telemetry().external_power_volts, 13.8));
    assert!(raw_s(e, name::EVENT_FILES).ends_with("_F_55.mp4"));
    assert!(e.position.is_some());
}

#[test]
fn serial_passthrough_0x9b_is_not_answered() {
    let mut s = logged_in();
    // [31] printable: trimmed text.
    let f = decode_one(&mut s, "797900109b0344373532304136320d0a000f87f00d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Status);
    assert_eq!(raw_b(e, name::PASSTHROUGH_DATA), b"D7520A62\r\n");
    assert_eq!(raw_u(e, name::EXTERNAL_DEVICE_TYPE), 3);
    // [58] binary.
    let f = decode_one(&mut s, "797900099b0380d600046f91e90d0a");
    assert!(f.reply.is_none());
    assert_eq!(raw_b(&f.events[0], name::PASSTHROUGH_DATA), h("80d600"));
}

#[test]
fn status_0x36_modules_and_vl103_location() {
    let mut s = logged_in();
    // [18] Jimi 4G heartbeat with modules.
    let f = decode_one(
        &mut s,
        "787817360005040002003201010018020192006a015f0324aeaf0d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x36, 0x0324)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Heartbeat);
    assert_eq!(raw_u(e, name::BATTERY_CENTIVOLTS), 402);
    assert_eq!(raw_u(e, name::BATTERY_PERCENT), 95);
    assert_eq!(raw_u(e, name::STARTUP_STATUS), 1);
    assert_eq!(raw_u(e, name::VOLTAGE_LEVEL), 5);
    assert!(close(e.telemetry().battery_volts, 4.02));
    // The module's percentage comes after the 0–6 level and is the finer of the two.
    assert_eq!(e.telemetry().battery_percent, Some(95.0));
    // [184] VL103 location form.
    let f = decode_one(&mut s, "78783536190c1d0f1724cf026cc9140c367d4000940001cc0025ef0540e88c01000000000064051428000006c3000001453f9201003477560d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x36, 0x0034)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert_eq!(raw_b(e, name::DRIVER_ID), h("c3000001453f9201"));
    assert_eq!(e.telemetry().driver_id.as_deref(), Some("C3000001453F9201"));
    assert_eq!(e.cell_towers[0].cell_id, 0x0540_e88c);
    assert_eq!(e.telemetry().ignition, Some(true));
}

#[test]
fn x1_gps_0x34_is_not_answered() {
    let mut s = logged_in();
    // [81]
    let f = decode_one(&mut s, "78783c3439000000120a0902093a07031f9e690529be2e00155500000016214901a30308b70000b3fb004aa82b059401a3422100000001000000007d9370b90d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert!(e.position.as_ref().unwrap().valid);
    assert_eq!(raw_u(e, name::ODOMETER_METERS), 0x0016_2149);
    assert_eq!(raw_u(e, name::X1_DRIVER_ID), 0x004a_a82b);
    let t = e.telemetry();
    assert_eq!(t.odometer_meters, Some(f64::from(0x0016_2149)));
    assert_eq!(t.driver_id, Some(0x004a_a82b_u32.to_string()));
    assert_eq!(t.analog_inputs_volts.get(&2), Some(&0.0));
    assert_eq!(t.digital_outputs, Some(1));
}

#[test]
fn az735_extended_0x32_0x33_answered_in_79_79() {
    let mut s = logged_in();
    // [117] location with a GPS block and a cell.
    let f = decode_one(&mut s, "7979004a321106170c1b180cc900a875580b7ab4f00010350901fe0a007c0009112424007c000912240081004efe2100c500100f1200000000000000000000000000000000000000000000bc7c900d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x79, 0x32, 0x00bc)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert_eq!(e.cell_towers[0].mcc, 510);
    assert_eq!(e.cell_towers[0].signal, Some(0x24));
    // [113] alarm packet without GPS or cell: status 0xA0 = armed.
    let f = decode_one(
        &mut s,
        "797900143311070609020b00000000a0030046000109e4610d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x79, 0x33, 0x0109)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Status);
    assert_eq!(raw_u(e, name::ALARM_STATUS), 0xA0);
    assert_eq!(e.telemetry().armed, Some(true));
    assert!(e.position.is_none());
}

#[test]
fn gps_lbs_modules_0x38() {
    let mut s = logged_in();
    // [8]
    let f = decode_one(&mut s, "7979003e3819050e0e0c26c5010fd98e0905f53000ccab0e000302c80100000c240000000000048b08001b002e04000015c4003b020000003c0401020001021f60220d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x79, 0x38, 0x021f)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    let p = e.position.as_ref().unwrap();
    // San José, Costa Rica (north, west); this fix is flagged as not valid.
    assert!(!p.valid && p.latitude > 9.0 && p.longitude < -84.0);
    // ACC from the course word (bit 14 set, bit 15 set).
    assert_eq!(raw_u(e, name::COURSE_STATUS) >> 14, 0b11);
    assert_eq!(e.telemetry().ignition, Some(true));
    assert_eq!(e.cell_towers[0].mcc, 712);
    assert_eq!(raw_u(e, name::ODOMETER_METERS), 5572);
    assert_eq!(e.telemetry().odometer_meters, Some(5572.0));
    assert_eq!(raw_b(e, "module_003c"), h("01020001"));
}

#[test]
fn obd_0x8c_is_not_answered() {
    let mut s = logged_in();
    // [79]
    let f = decode_one(&mut s, "797900de8c120b1502121b013137333d302c3232333d312c3238333d30303030303030302c3436333d30303030303035362c3437333d30303030303030662c3438333d30303030303031312c3242333d30303030303030302c3244333d30303030313839632c3335333d30303030313661382c3336333d30303032386163382c3339333d30303030303230612c3330333d30303030303561612c3439333d30303030303030302c3441333d4b4e4146323431434d4b353031343235352c3341333d30303030303338352c3530333d30303030c0041df0940f89c06700000000c800910d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(e.telemetry().ignition, Some(true));
    // The pairs, values read as hex; the VIN as text.
    assert_eq!(raw_u(e, "obd_173"), 0);
    assert_eq!(raw_u(e, "obd_2D3"), 0x189c);
    assert_eq!(raw_s(e, "obd_4A3"), "KNAF241CMK5014255");
    let t = e.telemetry();
    assert!(close(t.coolant_temperature_celsius, 63.0));
    assert!(close(t.obd_speed_kmh, 58.0));
    assert!(close(t.rpm, 1666.0));
    assert_eq!(t.vin.as_deref(), Some("KNAF241CMK5014255"));
    assert_eq!(raw_b(e, name::TAIL).len(), 12);
}

#[test]
fn short_0xa3_lw4g_0xa2_sr411_0x24_qh302r_0x12_rfid_0x17() {
    let mut s = logged_in();
    // [9] short 0xA3 status.
    let f = decode_one(&mut s, "78780ca346000106640c01123d5f5e0d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0xA3, 0x123d)[..]));
    assert_eq!(kind(&f.events[0]), EventKind::Heartbeat);
    assert_eq!(f.events[0].telemetry().gnss_tracking, Some(true));
    // [13] LW4G 0xA2: GPS + 4G cell + status.
    let f = decode_one(&mut s, "787840a2180b0f0f3407cf00602cd208354064001c6a02dc650000698100000000095674c9114100002a04000100004b31000000000863829079286793020001a22a8f0d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0xA2, 0x01a2)[..]));
    let e = &f.events[0];
    assert_eq!((e.cell_towers[0].mcc, e.cell_towers[0].mnc), (732, 101));
    assert_eq!(e.cell_towers[0].cell_id, 0x0956_74c9);
    assert_eq!(raw_u(e, name::ODOMETER_METERS), 0x4b31);
    assert_eq!(e.telemetry().odometer_meters, Some(f64::from(0x4b31)));
    // [45] SR411 mini 0x24.
    let f = decode_one(&mut s, "78782e2416061a103600c80275298404a0a24000184602d4023a49006f060104ed01940000086508004139765000be7d640d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x24, 0x00be)[..]));
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    assert!(close(e.telemetry().external_power_volts, 12.61));
    // [179] QH302R 0x12: the IMEI before the GPS block.
    let f = decode_one(
        &mut s,
        "7878271208667030665022971a020c0a1e32c601727c1c0f89af002c14fa01366e000100010c003c1fdd0d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x12, 0x003c)[..]));
    let e = &f.events[0];
    assert_eq!(
        e.device_time.as_ref().unwrap().seconds,
        block::civil_to_secs(2026, 2, 12, 10, 30, 50).unwrap()
    );
    assert_eq!(e.cell_towers[0].mcc, 310);
    assert_eq!(raw_s(e, name::IMEI), "0866703066502297");
    // [23] 0x17 of RFID models.
    let f = decode_one(&mut s, "7878281718060e021831c6026e8acc0c361b1000140001cc00286d000f4dbf0000012ca7e001000004b2630d0a");
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x17, 0x0004)[..]));
    assert_eq!(
        f.events[0].telemetry().driver_id.as_deref(),
        Some("BF0000012CA7E001")
    );
}

#[test]
fn alternative_status_layouts() {
    let mut s = logged_in();
    // [40] 0xA5 LBS alarm: no length byte before the 4G cell; alarm 0x13 = tampering.
    let f = decode_one(
        &mut s,
        "787819a5012ed0000075df000000000098661502050413000019a12b0d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0xA5, 0x0019)[..]));
    let e = &f.events[0];
    assert_eq!(alarms(e), [Alarm::Tampering]);
    assert_eq!(kind(e), EventKind::Alarm);
    assert_eq!(e.cell_towers[0].cell_id, 0x0098_6615);
    // [47] VXT01 0x12: bare cell, terminal info, voltage u16.
    let f = decode_one(
        &mut s,
        "7878241216040e102c22cf00915ffb04c6016300195a02d402283b00753f400571040001dda4880d0a",
    );
    assert_eq!(f.reply.as_deref(), Some(&ack_bytes(0x78, 0x12, 0x01dd)[..]));
    let e = &f.events[0];
    assert_eq!(e.telemetry().ignition, Some(false));
    assert_eq!(raw_u(e, name::POWER_CENTIVOLTS), 1393);
    assert!(close(e.telemetry().external_power_volts, 13.93));
    // [32] VXT01 0x16: SOS from the terminal bits, the extension byte is not an alarm code.
    let f = decode_one(
        &mut s,
        "7878241617070a150e24ca01fba0040780e177005c0001720253360027db6204e40400004bf1e90d0a",
    );
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Alarm);
    assert_eq!(alarms(e), [Alarm::Sos]);
    // GSM 0xE4 is off the 0–4 scale: raw only.
    assert_eq!(raw_u(e, name::GSM_SIGNAL), 0xE4);
    assert_eq!(e.telemetry().gsm_signal_percent, None);
    assert_eq!(raw_u(e, name::ALARM_EXTENSION), 4);
    assert_eq!(raw_b(e, name::TAIL), [0]);
    // [66] cell length 0 followed by 45 zeroed bytes, then the status block.
    let f = decode_one(&mut s, "78784a1614051c150204ec02777e560c2a2a2a5314af000000000000040000000000000000000000000000000000000000000000000000000000000000000000000000007e061b0982004b24c00d0a");
    let e = &f.events[0];
    assert_eq!(raw_u(e, name::VOLTAGE_LEVEL), 6);
    assert_eq!(e.telemetry().battery_percent, Some(100.0));
    // A GSM byte of 27 is not on the 0–4 scale: raw only.
    assert_eq!(raw_u(e, name::GSM_SIGNAL), 0x1b);
    assert_eq!(e.telemetry().gsm_signal_percent, None);
    // [186] VL103 0x16: driver card id after the language byte.
    let f = decode_one(&mut s, "78782d16190c1d0e3b03cf026cc8d40c367d800014000801cc0025ef40e88c450604e801c3000001453f920100271e590d0a");
    let e = &f.events[0];
    assert_eq!(raw_b(e, name::DRIVER_ID), h("c3000001453f9201"));
    assert_eq!(e.telemetry().driver_id.as_deref(), Some("C3000001453F9201"));
    assert_eq!(raw_u(e, name::ALARM), 0xe8);
}

#[test]
fn text_position_in_0x21_reply() {
    let mut s = logged_in();
    // [129]
    let f = decode_one(&mut s, "7979007121000000000143757272656e7420706f736974696f6e214c61743a4e35342e3733393333322c4c6f6e3a4532352e3237333237302c436f757273653a3132362e35332c53706565643a302e303030302c4461746554696d653a323031372d30352d3236202031303a32373a3437000bbee30d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(kind(e), EventKind::Position);
    let p = e.position.as_ref().unwrap();
    assert_eq!(
        (p.latitude, p.longitude, p.course),
        (54.739332, 25.27327, Some(126.53))
    );
    assert_eq!(
        e.device_time.as_ref().unwrap().seconds,
        block::civil_to_secs(2017, 5, 26, 10, 27, 47).unwrap()
    );
}

#[test]
fn information_0x94_door_with_time_and_rfid() {
    let mut s = logged_in();
    // [43] sub-type 0x05 with a date-time before the flags; no reply.
    let f = decode_one(&mut s, "7979000d940516090908081c030defbd2d0d0a");
    assert!(f.reply.is_none());
    let e = &f.events[0];
    assert_eq!(raw_u(e, name::DOOR_STATUS), 0x03);
    assert_eq!(e.telemetry().door_open, Some(true));
    // Bit 2 (input 1) is clear.
    assert_eq!(e.telemetry().digital_inputs, Some(0));
    assert_eq!(
        e.device_time.as_ref().unwrap().seconds,
        block::civil_to_secs(2022, 9, 9, 8, 8, 28).unwrap()
    );
    // [67] sub-type 0x1B framed card read.
    let f = decode_one(&mut s, "7979000e941b02084277efef350303eadaed0d0a");
    assert_eq!(
        f.events[0].telemetry().driver_id.as_deref(),
        Some("4277EFEF")
    );
    // [46] sub-type 0x1B text.
    let f = decode_one(
        &mut s,
        "79790019941b524649443a3030384642324245424133390d0a000c14930d0a",
    );
    assert_eq!(raw_s(&f.events[0], name::RFID_TEXT), "RFID:008FB2BEBA39");
}
