//! Session-level tests: every packet type and reply code with exact bytes, the spec's examples,
//! compressed and split input, uploads, UDP, the device quirks tolerated (and what stays
//! refused), and property tests. The Traccar replay is `tests/conformance_wialon.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::packet::{quirk, ParamValue, Record};
use super::*;
use crate::proto::attribute_value::Value;
use crate::proto::raw_value::Value as RawV;
use crate::proto::{Alarm, EventKind};

const IMEI: &str = "356307042441013";
const NOW_SECS: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn tcp() -> Session {
    Session::new(Transport::Tcp, &ProtocolConfig::default())
}

fn udp() -> Session {
    Session::new(Transport::Udp, &ProtocolConfig::default())
}

type Outcome = Result<Frame, DecodeError>;

/// Feeds `input` in chunks of `chunk` bytes, collecting every outcome until a Close.
fn feed(s: &mut dyn ProtocolSession, input: &[u8], chunk: usize) -> (Vec<Outcome>, usize) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(f)),
                Err(e) => {
                    let close = e.action == Action::Close;
                    out.push(Err(e));
                    if close {
                        return (out, buf.len());
                    }
                }
            }
        }
    }
    (out, buf.len())
}

/// Feeds whole input to a fresh logged-in TCP session (1.1 unless `v2`), returning outcomes
/// after the login.
fn after_login(v2: bool, input: &str) -> Vec<Outcome> {
    let mut s = tcp();
    let login = if v2 {
        format!("#L#{}\r\n", packet::with_crc(&format!("2.0;{IMEI};NA")))
    } else {
        format!("#L#{IMEI};NA\r\n")
    };
    let (mut out, left) = feed(&mut s, format!("{login}{input}").as_bytes(), usize::MAX);
    assert_eq!(left, 0);
    assert_eq!(reply_of(&out[0]), "#AL#1\r\n");
    out.split_off(1)
}

fn reply_of(o: &Outcome) -> String {
    let r = match o {
        Ok(f) => f.reply.clone(),
        Err(e) => e.reply.clone(),
    };
    String::from_utf8(r.map(|b| b.to_vec()).unwrap_or_default()).unwrap()
}

fn one(v2: bool, input: &str) -> Outcome {
    let mut out = after_login(v2, input);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0)
}

fn frame(o: &Outcome) -> &Frame {
    o.as_ref().expect("frame decodes")
}

fn v2(ty: &str, body: &str) -> String {
    format!("#{ty}#{}\r\n", packet::with_crc(body))
}

fn raw_of<'a>(e: &'a TelemetryEvent, k: &str) -> &'a RawV {
    e.raw_named(k)
        .unwrap_or_else(|| panic!("raw {k} missing in {e:?}"))
}

fn file_of(e: &TelemetryEvent) -> &crate::proto::File {
    e.file
        .as_ref()
        .unwrap_or_else(|| panic!("no file in {e:?}"))
}

const D_BODY: &str = "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;0.8;5;6;14.77,NA,3.6;AB45DF01145;count1:1:564,fuel:2:45.8,hw:3:V4.5";

// ---------------------------------------------------------------- login

#[test]
fn login_v1_and_v2_and_their_error_codes() {
    let mut s = tcp();
    let (out, _) = feed(&mut s, b"#L#123456789012345;pass\r\n", usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AL#1\r\n");
    assert_eq!(frame(&out[0]).login.as_deref(), Some("123456789012345"));
    assert_eq!(s.version(), Version::V1);

    let mut s = tcp();
    let login = format!("#L#{}\r\n", packet::with_crc(&format!("2.0;{IMEI};NA")));
    let (out, _) = feed(&mut s, login.as_bytes(), usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AL#1\r\n");
    assert_eq!(s.imei(), Some(IMEI));
    assert_eq!(s.version(), Version::V2);

    // Checksum: answered, connection kept for the retry.
    let mut s = tcp();
    let (out, _) = feed(&mut s, format!("#L#2.0;{IMEI};NA;1234\r\n").as_bytes(), 99);
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(reply_of(&out[0]), "#AL#10\r\n");
    assert_eq!(
        (e.kind, e.action),
        (ErrorKind::BadChecksum, Action::Continue)
    );
    assert_eq!(s.imei(), None);

    // Structure: rejected and closed.
    for bad in ["#L#onlyimei\r\n", "#L#2.0;imei;pw\r\n", "#L#bad id;pw\r\n"] {
        let (out, _) = feed(&mut tcp(), bad.as_bytes(), usize::MAX);
        assert_eq!(reply_of(&out[0]), "#AL#0\r\n", "{bad}");
        assert_eq!(out[0].as_ref().unwrap_err().action, Action::Close);
    }

    // Password hook.
    fn only_secret(_: &str, pw: Option<&[u8]>) -> LoginVerdict {
        match pw {
            Some(b"secret") => LoginVerdict::Accept,
            Some(_) => LoginVerdict::BadPassword,
            None => LoginVerdict::Reject,
        }
    }
    let mut s = tcp().with_login_check(only_secret);
    let (out, _) = feed(&mut s, b"#L#1234;wrong\r\n", usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AL#01\r\n");
    let mut s = tcp().with_login_check(only_secret);
    let (out, _) = feed(&mut s, b"#L#1234;NA\r\n", usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AL#0\r\n");
    let mut s = tcp().with_login_check(only_secret);
    let (out, _) = feed(&mut s, b"#L#1234;secret\r\n", usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AL#1\r\n");
}

#[test]
fn data_before_login_closes_without_an_answer() {
    let (out, _) = feed(
        &mut tcp(),
        format!("#D#{D_BODY}\r\n").as_bytes(),
        usize::MAX,
    );
    let e = out[0].as_ref().unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::NotLoggedIn, Action::Close));
    assert!(e.reply.is_none());
}

// ---------------------------------------------------------------- SD and D

#[test]
fn short_data_v1_and_v2() {
    let o = one(
        false,
        "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n",
    );
    assert_eq!(reply_of(&o), "#ASD#1\r\n");
    let e = &frame(&o).events[0];
    assert_eq!(e.kind, EventKind::Position as i32);
    assert_eq!(e.protocol, Protocol::WialonIps as i32);
    let p = e.position.as_ref().unwrap();
    assert!((p.latitude - 55.74337500).abs() < 1e-6);
    assert!((p.longitude - 37.66139).abs() < 1e-5);
    assert_eq!(
        (p.speed, p.course, p.altitude, p.satellites),
        (Some(1.0), Some(2.0), Some(3.0), Some(4))
    );
    assert_eq!(p.hdop, None);
    assert!(p.valid);
    assert_eq!(e.device_time.as_ref().unwrap().seconds, 1_367_096_161);

    let body = "270413;205601;5544.6025;S;03739.6834;W;NA;NA;NA;0";
    let o = one(true, &v2("SD", body));
    assert_eq!(reply_of(&o), "#ASD#1\r\n");
    let p = frame(&o).events[0].position.unwrap();
    assert!(p.latitude < 0.0 && p.longitude < 0.0);
    assert_eq!((p.speed, p.satellites, p.valid), (None, Some(0), false));
}

#[test]
fn short_data_error_codes() {
    let cases = [
        ("270413;205601;5544.6025;N;03739.6834;E;1;2;3", "-1"),
        ("320413;205601;5544.6025;N;03739.6834;E;1;2;3;4", "0"),
        ("270413;NA;5544.6025;N;03739.6834;E;1;2;3;4", "0"),
        ("270413;205601;9130.6025;N;03739.6834;E;1;2;3;4", "10"),
        ("270413;205601;5544.6025;N;18030.6834;E;1;2;3;4", "10"),
        ("270413;205601;5544.6025;X;03739.6834;E;1;2;3;4", "10"),
        ("270413;205601;5544.6025;N;NA;NA;1;2;3;4", "10"),
        ("270413;205601;5544.6025;N;03739.6834;E;fast;2;3;4", "11"),
        ("270413;205601;5544.6025;N;03739.6834;E;1;400;3;4", "11"),
        ("270413;205601;5544.6025;N;03739.6834;E;1;2;3;many", "12"),
    ];
    for (body, code) in cases {
        let o = one(false, &format!("#SD#{body}\r\n"));
        assert_eq!(reply_of(&o), format!("#ASD#{code}\r\n"), "{body}");
        assert_eq!(o.as_ref().unwrap_err().action, Action::Continue);
    }
    let o = one(
        true,
        "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;BEEF\r\n",
    );
    assert_eq!(reply_of(&o), "#ASD#13\r\n");
    assert_eq!(o.as_ref().unwrap_err().kind, ErrorKind::BadChecksum);
    // 2.0 sessions must send the CRC.
    let o = one(
        true,
        "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n",
    );
    assert_eq!(reply_of(&o), "#ASD#-1\r\n");
}

#[test]
fn data_packet_fields_raw_and_normalized() {
    let o = one(true, &v2("D", D_BODY));
    assert_eq!(reply_of(&o), "#AD#1\r\n");
    let f = frame(&o);
    assert!(f.lenient.is_empty());
    let e = &f.events[0];
    let p = e.position.as_ref().unwrap();
    assert_eq!(p.hdop, Some(0.8));
    assert_eq!(raw_of(e, "inputs"), &RawV::UintValue(5));
    assert_eq!(raw_of(e, "outputs"), &RawV::UintValue(6));
    assert_eq!(raw_of(e, "adc1"), &RawV::DoubleValue(14.77));
    assert!(e.raw_named("adc2").is_none());
    assert_eq!(raw_of(e, "adc3"), &RawV::DoubleValue(3.6));
    assert_eq!(
        raw_of(e, "ibutton"),
        &RawV::StringValue("AB45DF01145".into())
    );
    assert_eq!(raw_of(e, "count1"), &RawV::IntValue(564));
    assert_eq!(raw_of(e, "fuel"), &RawV::DoubleValue(45.8));
    assert_eq!(raw_of(e, "hw"), &RawV::StringValue("V4.5".into()));
    let t = e.telemetry();
    assert_eq!((t.digital_inputs, t.digital_outputs), (Some(5), Some(6)));
    assert_eq!(t.analog_inputs_volts.len(), 2);
    assert_eq!(t.driver_id.as_deref(), Some("AB45DF01145"));
    assert!(e.attributes.is_empty());
}

#[test]
fn na_is_absent_and_na_time_is_now() {
    let o = one(
        false,
        "#D#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;;NA;SOS:1:1,text:3:help me\r\n",
    );
    let e = &frame(&o).events[0];
    assert!(e.position.is_none());
    // The device did not say when: no device time (received_at is the server's).
    assert!(e.device_time.is_none());
    let names: Vec<&str> = e.raw.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["SOS", "text"]);
    assert_eq!(e.kind, EventKind::Alarm as i32);
    assert!(e.has_alarm(Alarm::Sos));
    assert_eq!(raw_of(e, "SOS"), &RawV::IntValue(1));
    assert_eq!(e.text.as_deref(), Some("help me"));
    // Motion fields without coordinates are kept raw; the record is a status.
    let o = one(false, "#SD#NA;NA;NA;NA;NA;NA;12.5;NA;NA;3\r\n");
    let e = &frame(&o).events[0];
    assert_eq!(e.kind, EventKind::Status as i32);
    assert_eq!(raw_of(e, "speed"), &RawV::DoubleValue(12.5));
    assert_eq!(raw_of(e, "sats"), &RawV::UintValue(3));
}

#[test]
fn data_error_codes() {
    let base: Vec<&str> = D_BODY.split(';').collect();
    let with = |i: usize, v: &str| {
        let mut f = base.clone();
        f[i] = v;
        f.join(";")
    };
    let cases = [
        (base[..15].join(";"), "-1"),
        (with(0, "999999"), "0"),
        (with(2, "9999.0"), "10"),
        (with(8, "high"), "11"),
        (with(10, "x"), "12"),
        (with(11, "-1"), "13"),
        (with(12, "0x5"), "13"),
        (with(13, "1,2,x"), "14"),
        (with(15, "a:9:1"), "15"),
        (with(15, "a:1:1.5"), "15"),
        (with(15, "novalue"), "15"),
    ];
    for (body, code) in cases {
        let o = one(true, &v2("D", &body));
        assert_eq!(reply_of(&o), format!("#AD#{code}\r\n"), "{body}");
    }
    let o = one(true, &format!("#D#{D_BODY};0x0\r\n"));
    assert_eq!(reply_of(&o), "#AD#16\r\n");
    // The CRC is accepted in either case, with 0x, and with the spec table's variant.
    let good = crc::compute(format!("{D_BODY};").as_bytes());
    for f in [
        format!("{good:x}"),
        format!("0x{good:X}"),
        format!("{good:04X}"),
    ] {
        let o = one(true, &format!("#D#{D_BODY};{f}\r\n"));
        assert_eq!(reply_of(&o), "#AD#1\r\n", "{f}");
    }
}

// ---------------------------------------------------------------- P, B, M

#[test]
fn ping_is_answered_and_published_as_a_heartbeat_of_its_own() {
    let o = one(false, "#P#\r\n");
    assert_eq!(reply_of(&o), "#AP#\r\n");
    let f = frame(&o);
    assert_eq!(f.events.len(), 1);
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Heartbeat as i32);
    assert!(e.position.is_none() && e.raw.is_empty() && e.device_time.is_none());
    // Two pings are two events: their digests (hence event ids) differ with the arrival time.
    let mut s = tcp();
    feed(&mut s, b"#L#1;NA\r\n", usize::MAX);
    let mut digests = Vec::new();
    for secs in [0, 30] {
        let mut buf = BytesMut::from(&b"#P#\r\n"[..]);
        let f = s
            .decode(&mut buf, now() + Duration::from_secs(secs))
            .unwrap()
            .unwrap();
        digests.push(f.digest);
    }
    assert_ne!(digests[0], digests[1]);
}

#[test]
fn blackbox_counts_records_and_checks_crc() {
    let sd = "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4";
    let body = format!("{sd}|{D_BODY}|{sd}|");
    let crc = crc::render(body.as_bytes());
    let o = one(true, &format!("#B#{body}{crc}\r\n"));
    assert_eq!(reply_of(&o), "#AB#3\r\n");
    let f = frame(&o);
    assert_eq!(f.events.len(), 3);
    assert!(f
        .events
        .iter()
        .all(|e| e.attr("blackbox") == Some(&Value::BoolValue(true))));
    let o = one(true, &format!("#B#{body}1\r\n"));
    assert_eq!(reply_of(&o), "#AB#\r\n");
    assert_eq!(o.as_ref().unwrap_err().kind, ErrorKind::BadChecksum);
    // 1.1: no CRC; a bad record is not counted.
    let o = one(false, &format!("#B#{sd}|{sd};x|{sd}\r\n"));
    assert_eq!(reply_of(&o), "#AB#2\r\n");
    let o = one(false, "#B#garbage|more\r\n");
    assert_eq!(reply_of(&o), "#AB#0\r\n");
    let o = one(false, &format!("#B#{sd}|{sd}|\r\n"));
    assert_eq!(reply_of(&o), "#AB#2\r\n");
}

#[test]
fn driver_messages() {
    let o = one(false, "#M#hello; world\r\n");
    assert_eq!(reply_of(&o), "#AM#1\r\n");
    let e = &frame(&o).events[0];
    assert_eq!(e.kind, EventKind::DriverMessage as i32);
    assert_eq!(e.text.as_deref(), Some("hello; world"));
    let o = one(true, &v2("M", "привет"));
    assert_eq!(reply_of(&o), "#AM#1\r\n");
    assert_eq!(frame(&o).events[0].text.as_deref(), Some("привет"));
    let o = one(true, "#M#hello;FFFF\r\n");
    assert_eq!(reply_of(&o), "#AM#01\r\n");
    let o = one(true, "#M#hello\r\n");
    assert_eq!(reply_of(&o), "#AM#0\r\n");
    // Non-UTF-8 text (a single-byte code page) is kept byte for byte in raw.
    let mut s = tcp();
    let (out, _) = feed(&mut s, b"#L#1;NA\r\n#M#\xcf\xf0\xe8\r\n", usize::MAX);
    let e = &frame(&out[1]).events[0];
    assert_eq!(raw_of(e, "text"), &RawV::BytesValue(vec![0xcf, 0xf0, 0xe8]));
    assert_eq!(e.text.as_deref(), Some("\u{fffd}\u{fffd}\u{fffd}"));
}

// ---------------------------------------------------------------- device quirks

/// The quirks a frame reported, as the session would count them.
fn lenient(o: &Outcome) -> Vec<&'static str> {
    frame(o).lenient.clone()
}

#[test]
fn numbers_padded_with_spaces_are_trimmed_and_counted() {
    // As logged from production devices: ` 65`, `74      `, `0 `. The CRC covers the bytes as
    // sent, spaces included.
    let body =
        "270413;205601;5544.6025;N;03739.6834;E; 65;74      ;0 ; 7;0.9 ; 1;0 ;12.5 , 3.1;NA;\
                temp:2: 21.5 ,ign: 1: 1,hw:3: V4.5 ";
    let o = one(true, &v2("D", body));
    assert_eq!(reply_of(&o), "#AD#1\r\n");
    assert_eq!(lenient(&o), [quirk::PADDED_NUMBER]);
    let e = &frame(&o).events[0];
    let p = e.position.unwrap();
    assert_eq!(
        (p.speed, p.course, p.altitude, p.satellites, p.hdop),
        (Some(65.0), Some(74.0), Some(0.0), Some(7), Some(0.9))
    );
    assert_eq!(raw_of(e, "inputs"), &RawV::UintValue(1));
    assert_eq!(raw_of(e, "adc2"), &RawV::DoubleValue(3.1));
    assert_eq!(raw_of(e, "temp"), &RawV::DoubleValue(21.5));
    assert_eq!(raw_of(e, "ign"), &RawV::IntValue(1));
    // A string value is the device's own: its spaces stay.
    assert_eq!(raw_of(e, "hw"), &RawV::StringValue(" V4.5 ".into()));
    assert_eq!(e.telemetry().ignition, Some(true));
    // Padded date and time, and a field of spaces only (= NA), in a short record.
    let o = one(
        false,
        "#SD# 270413;205601 ;5544.6025;N;03739.6834;E;   ;2;3;4\r\n",
    );
    assert_eq!(reply_of(&o), "#ASD#1\r\n");
    assert_eq!(lenient(&o), [quirk::PADDED_NUMBER]);
    let e = &frame(&o).events[0];
    assert_eq!(e.device_time.as_ref().unwrap().seconds, 1_367_096_161);
    assert_eq!(e.position.unwrap().speed, None);
}

#[test]
fn an_empty_numeric_value_is_an_absent_value() {
    let o = one(
        false,
        "#D#270413;205601;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;;NA;ign:1:,pwr_ext:2: ,SOS:1:0,note:3:\r\n",
    );
    assert_eq!(reply_of(&o), "#AD#1\r\n");
    assert_eq!(lenient(&o), [quirk::EMPTY_VALUE, quirk::PADDED_NUMBER]);
    let e = &frame(&o).events[0];
    let names: Vec<&str> = e.raw.iter().map(|r| r.name.as_str()).collect();
    // An empty string is a string (type 3); an empty integer or double is no value.
    assert_eq!(names, ["SOS", "note"]);
    assert_eq!(raw_of(e, "note"), &RawV::StringValue(String::new()));
    assert_eq!(e.telemetry().ignition, None);
    assert_eq!(e.telemetry().external_power_volts, None);
}

#[test]
fn empty_trailing_fields_and_parameter_entries_are_nothing() {
    // Every field after the satellites left empty: already NA by the spec's reading.
    let o = one(
        true,
        &v2("D", "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;;;;;;"),
    );
    assert_eq!(reply_of(&o), "#AD#1\r\n");
    assert!(lenient(&o).is_empty());
    assert!(frame(&o).events[0].raw.is_empty());
    // A trailing comma (and a doubled one) in the parameter list.
    let o = one(
        false,
        "#D#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;;NA;a:1:1,,b:1:2,\r\n",
    );
    assert_eq!(reply_of(&o), "#AD#1\r\n");
    assert_eq!(lenient(&o), [quirk::EMPTY_PARAM]);
    let names: Vec<&str> = frame(&o).events[0]
        .raw
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn minutes_of_60_or_more_are_carried_into_the_degrees() {
    // Traccar's frame: 5364.0167 = 53° 64.0167′ = 54° 4.0167′.
    let o = one(
        false,
        "#B#110315;045857;5364.0167;N;06127.8262;E;0;155;965;7;2.40;4;0;;NA;Uext:2:13.2\r\n",
    );
    assert_eq!(reply_of(&o), "#AB#1\r\n");
    assert_eq!(lenient(&o), [quirk::COORDINATE_MINUTES]);
    let p = frame(&o).events[0].position.unwrap();
    assert!((p.latitude - (54.0 + 4.0167 / 60.0)).abs() < 1e-9, "{p:?}");
    assert!((p.longitude - (61.0 + 27.8262 / 60.0)).abs() < 1e-9);
    // Longitude too, southern and western, counted once per record; two records, twice.
    let rec = "270413;205601;5575.5;S;03799.0;W;1;2;3;4";
    let body = format!("{rec}|{rec}|");
    let o = one(
        true,
        &format!("#B#{body}{}\r\n", crc::render(body.as_bytes())),
    );
    assert_eq!(reply_of(&o), "#AB#2\r\n");
    assert_eq!(
        lenient(&o),
        [quirk::COORDINATE_MINUTES, quirk::COORDINATE_MINUTES]
    );
    let p = frame(&o).events[0].position.unwrap();
    assert!((p.latitude + (56.0 + 15.5 / 60.0)).abs() < 1e-9);
    assert!((p.longitude + (38.0 + 39.0 / 60.0)).abs() < 1e-9);
}

#[test]
fn what_is_really_malformed_stays_refused() {
    let d = |params: &str| {
        format!("270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;;NA;{params}")
    };
    let cases = [
        // Numbers that are not numbers, padded or not.
        (
            "270413;205601;5544.6025;N;03739.6834;E;6 5;2;3;4;NA;NA;NA;;NA;NA".to_string(),
            "11",
        ),
        (
            "270413;205601;5544.6025;N;03739.6834;E; x ;2;3;4;NA;NA;NA;;NA;NA".to_string(),
            "11",
        ),
        // Out of range after normalizing: 91° 30′, and 180° 30′.
        (
            "270413;205601;9130.0;N;03739.6834;E;1;2;3;4;NA;NA;NA;;NA;NA".to_string(),
            "10",
        ),
        (
            "270413;205601;5544.6025;N;18030.0;E;1;2;3;4;NA;NA;NA;;NA;NA".to_string(),
            "10",
        ),
        (
            "270413;205601;-5544.6;N;03739.6834;E;1;2;3;4;NA;NA;NA;;NA;NA".to_string(),
            "10",
        ),
        // Parameters: no value type, an unknown type, a bad number, no name.
        (d("ign:1:x"), "15"),
        (d("ign:1:1.5"), "15"),
        (d("ign:9:1"), "15"),
        (d("ign:1"), "15"),
        (d(":1:1"), "15"),
        // A field missing: structure.
        (
            "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4;NA;NA;NA;;NA".to_string(),
            "-1",
        ),
    ];
    for (body, code) in cases {
        let o = one(true, &v2("D", &body));
        assert_eq!(reply_of(&o), format!("#AD#{code}\r\n"), "{body}");
    }
    // The checksum covers the padded bytes: one computed over the trimmed text is wrong, and a
    // padded CRC field is no CRC.
    let padded = "270413;205601;5544.6025;N;03739.6834;E; 65;2;3;4";
    let trimmed_crc = crc::render(b"270413;205601;5544.6025;N;03739.6834;E;65;2;3;4;");
    let o = one(true, &format!("#SD#{padded};{trimmed_crc}\r\n"));
    assert_eq!(reply_of(&o), "#ASD#13\r\n");
    let good = crc::render(format!("{padded};").as_bytes());
    let o = one(true, &format!("#SD#{padded}; {good}\r\n"));
    assert_eq!(reply_of(&o), "#ASD#13\r\n");
    let o = one(true, &format!("#SD#{padded};{good}\r\n"));
    assert_eq!(reply_of(&o), "#ASD#1\r\n");
}

// ---------------------------------------------------------------- compression

#[test]
fn spec_compressed_example_is_a_login() {
    let c = hex::decode("FF180078DA53F651CECC4DCDB42E482C2E2ECF2F4A01002D1C05E5").unwrap();
    assert_eq!(
        compress::inflate(&c[3..], 1024).unwrap(),
        b"#L#imei;password"
    );
    for chunk in [1, 2, 3, c.len()] {
        let mut s = tcp();
        let (out, left) = feed(&mut s, &c, chunk);
        assert_eq!(left, 0);
        assert_eq!(reply_of(&out[0]), "#AL#1\r\n");
        assert_eq!(s.imei(), Some("imei"));
    }
}

#[test]
fn compressed_and_plain_alternate() {
    let sd = "#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4";
    let mut input = compress::compress(b"#L#123;NA");
    input.extend_from_slice(format!("{sd}\r\n").as_bytes());
    input.extend(compress::compress(format!("{sd}\r\n").as_bytes()));
    input.extend_from_slice(b"#P#\r\n");
    input.extend(compress::compress(format!("#D#{D_BODY}").as_bytes()));
    let (out, left) = feed(&mut tcp(), &input, usize::MAX);
    assert_eq!(left, 0);
    let replies: Vec<String> = out.iter().map(reply_of).collect();
    assert_eq!(
        replies,
        [
            "#AL#1\r\n",
            "#ASD#1\r\n",
            "#ASD#1\r\n",
            "#AP#\r\n",
            "#AD#1\r\n"
        ]
    );
    // The same packet plain or compressed has the same digest.
    assert_eq!(frame(&out[1]).digest, frame(&out[2]).digest);
}

#[test]
fn compression_bombs_and_bad_containers_are_bounded() {
    let limits = ProtocolConfig::default().with("wialon", "max_frame_bytes", "1024");
    let bomb = compress::compress(&vec![b'#'; 1_000_000]);
    assert!(bomb.len() < 2000);
    let mut s = Session::new(Transport::Tcp, &limits);
    let (out, left) = feed(&mut s, &[&bomb[..], b"#L#1;NA\r\n"].concat(), usize::MAX);
    // The container itself is framed, so only it is dropped and the stream goes on.
    let e = out[0].as_ref().unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::TooLarge, Action::Continue));
    assert_eq!((reply_of(&out[1]).as_str(), left), ("#AL#1\r\n", 0));
    // A container declaring more than the cap cannot be skipped cheaply: close.
    let mut s = Session::new(Transport::Tcp, &limits);
    let (out, _) = feed(&mut s, b"\xff\x00\x10", usize::MAX);
    assert_eq!(out[0].as_ref().unwrap_err().action, Action::Close);
    let small = ProtocolConfig::default();
    let mut s = Session::new(Transport::Tcp, &small);
    let (out, _) = feed(&mut s, b"\xff\x04\x00abcd#L#1;NA\r\n", usize::MAX);
    assert_eq!(out[0].as_ref().unwrap_err().kind, ErrorKind::Malformed);
    assert_eq!(reply_of(&out[1]), "#AL#1\r\n");
    // Two packets in one container: refused, stream goes on.
    let two = compress::compress(b"#L#1;NA\r\n#P#\r\n");
    let (out, _) = feed(&mut tcp(), &two, usize::MAX);
    assert_eq!(out[0].as_ref().unwrap_err().action, Action::Continue);
}

// ---------------------------------------------------------------- splitting

/// A deterministic rendering of outcomes (attribute maps are hash maps: sort them).
fn summary(v: &[Outcome]) -> String {
    let mut s = String::new();
    for o in v {
        match o {
            Ok(f) => {
                s += &format!(
                    "ok {:?} {:x} {:?} {:?}\n",
                    f.reply, f.digest, f.login, f.lenient
                );
                for e in &f.events {
                    let attrs: std::collections::BTreeMap<_, _> = e.attributes.iter().collect();
                    s += &format!(
                        "  {} {:?} {:?} {attrs:?} {:?} {:?} {:?} {:?} {:?}\n",
                        e.kind,
                        e.device_time,
                        e.position,
                        e.raw,
                        e.telemetry,
                        e.alarms,
                        e.text,
                        e.file
                    );
                }
            }
            Err(e) => s += &format!("err {:?} {:?} {:?}\n", e.kind, e.reply, e.action),
        }
    }
    s
}

#[test]
fn every_split_point_and_byte_by_byte_give_the_same_result() {
    let photo = b"\x00\x01\r\n\xff\xfe";
    let mut input = format!("#L#{}\r\n", packet::with_crc(&format!("2.0;{IMEI};NA"))).into_bytes();
    input.extend(v2("D", D_BODY).bytes());
    input.extend(b"#P#\n");
    input.extend(compress::compress(
        v2("SD", "NA;NA;NA;NA;NA;NA;NA;NA;NA;NA").as_bytes(),
    ));
    input.extend(
        format!(
            "#I#{};0;0;070512;124010;a.jpg;{:X}\r\n",
            photo.len(),
            crc::compute(photo)
        )
        .bytes(),
    );
    input.extend(photo);
    let bb = format!("{D_BODY}|{D_BODY}|");
    input.extend(format!("#B#{bb}{}\r\n", crc::render(bb.as_bytes())).bytes());
    let show = |v: Vec<Outcome>| summary(&v);
    let (whole, left) = feed(&mut tcp(), &input, usize::MAX);
    assert_eq!(left, 0);
    assert_eq!(whole.len(), 6);
    assert!(whole.iter().all(Result::is_ok), "{whole:?}");
    let whole = show(whole);
    let bytewise = show(feed(&mut tcp(), &input, 1).0);
    let at = whole
        .bytes()
        .zip(bytewise.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    assert_eq!(
        bytewise,
        whole,
        "differs at {}",
        &whole[at.saturating_sub(200)..(at + 100).min(whole.len())]
    );
    for cut in 1..input.len() {
        let mut s = tcp();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in [&input[..cut], &input[cut..]] {
            buf.extend_from_slice(part);
            while let Some(f) = s.decode(&mut buf, now()).transpose() {
                out.push(f);
            }
        }
        assert_eq!(show(out), whole, "cut at {cut}");
    }
}

#[test]
fn lines_are_capped_before_buffering() {
    let limits = ProtocolConfig::default().with("wialon", "max_frame_bytes", "100");
    let mut s = Session::new(Transport::Tcp, &limits);
    let mut buf = BytesMut::from(&b"#D#"[..]);
    buf.extend_from_slice(&[b'1'; 98]);
    assert!(s.decode(&mut buf, now()).unwrap().is_none());
    buf.extend_from_slice(b"1");
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::TooLarge, Action::Close));
    // Exactly at the cap (with \r\n) is fine.
    let mut s = Session::new(Transport::Tcp, &limits);
    let mut line = b"#M#".to_vec();
    line.extend_from_slice(&[b'x'; 97]);
    let (out, _) = feed(&mut s, &[&b"#L#1;NA\r\n"[..], &line, b"\r\n"].concat(), 7);
    assert_eq!(reply_of(&out[1]), "#AM#1\r\n");
}

// ---------------------------------------------------------------- files

fn photo_block(ind: u32, last: u32, bin: &[u8], crc_ok: bool) -> Vec<u8> {
    let crc = crc::compute(bin) ^ u16::from(!crc_ok);
    let mut v = format!(
        "#I#{};{ind};{last};070512;124010;sample.jpg;{crc:X}\r\n",
        bin.len()
    )
    .into_bytes();
    v.extend_from_slice(bin);
    v
}

#[test]
fn photo_reassembly_with_split_binary() {
    let image: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut input = format!("#L#{}\r\n", packet::with_crc(&format!("2.0;{IMEI};NA"))).into_bytes();
    input.extend(photo_block(0, 2, &image[..1000], true));
    input.extend(photo_block(1, 2, &image[1000..2000], true));
    input.extend(photo_block(1, 2, &image[1000..2000], true)); // a resend
    input.extend(photo_block(2, 2, &image[2000..], true));
    for chunk in [7, 333, input.len()] {
        let (out, left) = feed(&mut tcp(), &input, chunk);
        assert_eq!(left, 0);
        let replies: Vec<String> = out.iter().map(reply_of).collect();
        assert_eq!(
            replies,
            [
                "#AL#1\r\n",
                "#AI#0;1\r\n",
                "#AI#1;1\r\n",
                "#AI#1;1\r\n",
                "#AI#2;1\r\n#AI#1\r\n"
            ]
        );
        let f = frame(&out[4]);
        assert_eq!(f.events.len(), 1);
        let e = &f.events[0];
        assert_eq!(e.kind, EventKind::File as i32);
        let file = file_of(e);
        assert_eq!(file.data, image);
        assert_eq!(
            (file.name.as_str(), file.r#type.as_str()),
            ("sample.jpg", "image")
        );
        assert!(e.attributes.is_empty() && e.raw.is_empty());
        assert_eq!(e.device_time.as_ref().unwrap().seconds, 1_336_394_410);
        assert!(out[1..4].iter().all(|o| frame(o).events.is_empty()));
    }
}

#[test]
fn compressed_photo_blocks_over_tcp_and_udp() {
    let a = b"\r\n\x00";
    let b = b"\xff";
    let mut input = b"#L#1;NA\r\n".to_vec();
    input.extend(compress::compress(&photo_block(0, 1, a, true)));
    input.extend(photo_block(1, 1, b, true));
    let (out, left) = feed(&mut tcp(), &input, 3);
    assert_eq!(left, 0);
    assert_eq!(reply_of(&out[1]), "#AI#0;1\r\n");
    assert_eq!(reply_of(&out[2]), "#AI#1;1\r\n#AI#1\r\n");
    assert_eq!(file_of(&frame(&out[2]).events[0]).data, b"\r\n\x00\xff");
    let mut s = udp();
    let dg = [&b"77#"[..], &photo_block(0, 0, a, true)[1..]].concat();
    let (out, _) = feed(&mut s, &compress::compress(&dg), usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AI#0;1\r\n#AI#1\r\n");
    assert_eq!(frame(&out[0]).login.as_deref(), Some("77"));
    // A block shorter than announced in a datagram is refused, not awaited.
    let mut short = dg.clone();
    short.pop();
    let (out, left) = feed(&mut udp(), &short, usize::MAX);
    assert_eq!(out[0].as_ref().unwrap_err().kind, ErrorKind::BadLength);
    assert_eq!(left, 0);
}

#[test]
fn photo_errors() {
    let bin = b"abc";
    let mut input = b"#L#1;NA\r\n".to_vec();
    input.extend(photo_block(0, 1, bin, false));
    input.extend(photo_block(1, 1, bin, true)); // out of order: block 0 never stored
    input.extend(b"#I#3;x;1;070512;124010;a.jpg\r\nabc");
    input.extend(b"#I#3;0;1;070512;124010;a.jpg\r\nabc"); // 1.1 form, no CRC
    let (out, _) = feed(&mut tcp(), &input, usize::MAX);
    let replies: Vec<String> = out.iter().map(reply_of).collect();
    assert_eq!(
        replies,
        [
            "#AL#1\r\n",
            "#AI#0;01\r\n",
            "#AI#1;0\r\n",
            "#AI#NA;0\r\n",
            "#AI#0;1\r\n"
        ]
    );
    // Unreadable size: the block cannot be skipped, so the connection closes.
    let (out, _) = feed(
        &mut tcp(),
        b"#L#1;NA\r\n#I#big;0;0;NA;NA;a;1\r\nxx",
        usize::MAX,
    );
    assert_eq!(reply_of(&out[1]), "#AI#NA;0\r\n");
    assert_eq!(out[1].as_ref().unwrap_err().action, Action::Close);
    // The file cap.
    let limits = ProtocolConfig::default().with("wialon", "max_file_bytes", "4");
    let mut s = Session::new(Transport::Tcp, &limits);
    let mut input = b"#L#1;NA\r\n".to_vec();
    input.extend(photo_block(0, 1, bin, true));
    input.extend(photo_block(1, 1, bin, true));
    let (out, _) = feed(&mut s, &input, usize::MAX);
    assert_eq!(reply_of(&out[2]), "#AI#1;0\r\n");
}

#[test]
fn tachograph_file() {
    let part1 = b"DDD\x00\x01";
    let part2 = b"\r\n\xff";
    let t = |code: &str, ind: u32, bin: &[u8]| {
        let mut v =
            format!("#T#{code};{};{ind};{:X}\r\n", bin.len(), crc::compute(bin)).into_bytes();
        v.extend_from_slice(bin);
        v
    };
    let mut input = format!("#L#{}\r\n", packet::with_crc("2.0;1;NA")).into_bytes();
    input.extend(t("", 0, part1)); // before #IT#
    input.extend(v2("IT", "070512;124010;DRV42;;2").bytes());
    input.extend(t("", 0, part1));
    input.extend(t("", 1, part2));
    input.extend(b"#IT#070512;124010;DRV42;;2;1\r\n");
    input.extend(v2("IT", "070512;124010;DRV42;E7;1").bytes());
    let (out, left) = feed(&mut tcp(), &input, 5);
    assert_eq!(left, 0);
    let replies: Vec<String> = out.iter().map(reply_of).collect();
    assert_eq!(
        replies,
        [
            "#AL#1\r\n",
            "#AT#0;0\r\n",
            "#AIT#1\r\n",
            "#AT#0;1\r\n",
            "#AT#1;1\r\n#AT#1\r\n",
            "#AIT#01\r\n",
            "#AIT#1\r\n"
        ]
    );
    let e = &frame(&out[4]).events[0];
    assert_eq!(e.kind, EventKind::File as i32);
    let file = file_of(e);
    assert_eq!(file.data, [&part1[..], part2].concat());
    assert_eq!(
        (file.name.as_str(), file.r#type.as_str()),
        ("DRV42_20120507_124010.ddd", "tachograph")
    );
    assert_eq!(raw_of(e, "driverid"), &RawV::StringValue("DRV42".into()));
    assert_eq!(e.telemetry().driver_id.as_deref(), Some("DRV42"));
    let e = &frame(&out[6]).events[0];
    assert_eq!(e.kind, EventKind::Status as i32);
    assert_eq!(raw_of(e, "code"), &RawV::StringValue("E7".into()));
    assert_eq!(e.telemetry().driver_id.as_deref(), Some("DRV42"));
}

// ---------------------------------------------------------------- UDP

#[test]
fn udp_forms_identify_the_device() {
    let mut s = udp();
    let dg = format!(
        "2.0;{IMEI}{}",
        v2("SD", "270413;205601;5544.6025;N;03739.6834;E;1;2;3;4")
    );
    let (out, left) = feed(&mut s, dg.as_bytes(), usize::MAX);
    assert_eq!(left, 0);
    assert_eq!(reply_of(&out[0]), "#ASD#1\r\n");
    assert_eq!(frame(&out[0]).login.as_deref(), Some(IMEI));
    let (out, _) = feed(&mut s, dg.as_bytes(), usize::MAX);
    assert_eq!(frame(&out[0]).login, None);

    // 1.1 form without terminator, a compressed datagram, and garbage.
    let mut s = udp();
    let (out, _) = feed(
        &mut s,
        b"12345#SD#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA",
        usize::MAX,
    );
    assert_eq!(reply_of(&out[0]), "#ASD#1\r\n");
    assert_eq!(s.imei(), Some("12345"));
    let (out, _) = feed(&mut s, &compress::compress(b"12345#P#"), usize::MAX);
    assert_eq!(reply_of(&out[0]), "#AP#\r\n");
    let (out, left) = feed(&mut s, b"12345#SD#1;2\r\nrest", usize::MAX);
    assert_eq!(reply_of(&out[0]), "#ASD#-1\r\n");
    assert_eq!(out[0].as_ref().unwrap_err().action, Action::Continue);
    let _ = left;
    // Without an id and without a login: nothing to attribute it to.
    let (out, left) = feed(
        &mut udp(),
        b"#SD#NA;NA;NA;NA;NA;NA;NA;NA;NA;NA\r\n",
        usize::MAX,
    );
    assert_eq!(out[0].as_ref().unwrap_err().kind, ErrorKind::NotLoggedIn);
    assert_eq!(left, 0);
    // 2.0 datagram with a bad CRC.
    let (out, _) = feed(
        &mut udp(),
        format!("2.0;{IMEI}#D#{D_BODY};1\r\n").as_bytes(),
        usize::MAX,
    );
    assert_eq!(reply_of(&out[0]), "#AD#16\r\n");
}

#[test]
fn probe_claims_wialon_only() {
    let t = Transport::Tcp;
    let u = Transport::Udp;
    assert_eq!(probe(b"#L#", t), Probe::Yes);
    assert_eq!(probe(b"\xff", t), Probe::NeedMore);
    assert_eq!(probe(b"\xff\x18", t), Probe::NeedMore);
    assert_eq!(probe(b"\xff\x18\x00", t), Probe::Yes);
    assert_eq!(probe(b"\xff\x00\x00", t), Probe::No);
    assert_eq!(probe(b"\xff\x18\x00x", u), Probe::No);
    let spec = hex::decode("FF180078DA53F651CECC4DCDB42E482C2E2ECF2F4A01002D1C05E5").unwrap();
    assert_eq!(probe(&spec, u), Probe::Yes);
    assert_eq!(probe(b"2.0;123456789012345#SD#1", u), Probe::Yes);
    assert_eq!(probe(b"123456789012345#SD#1", u), Probe::Yes);
    assert_eq!(probe(b"#P#\r\n", u), Probe::Yes);
    assert_eq!(probe(b"123456789012345#SD#1", t), Probe::No);
    for other in [
        &b"\x00\x0f356307042441013"[..],
        b"\x78\x78\x0d\x01",
        b"\x79\x79\x00\x0d",
        b"\x16\x03\x01\x02",
        b"PROXY TCP4 1.2.3.4",
        b"\x00\x3c\x00\x01\x01",
        b"GET / HTTP/1.1",
    ] {
        assert_eq!(probe(other, t), Probe::No, "{other:?}");
        assert_eq!(probe(other, u), Probe::No, "{other:?}");
    }
    assert!(matches!(
        crate::protocol::detect::detect(b"#L#1;NA\r\n", t),
        crate::protocol::detect::Detection::Found(m) if m.name() == "wialon"
    ));
}

// ---------------------------------------------------------------- commands

#[test]
fn driver_message_commands() {
    let mut s = tcp();
    let cmd = CommandRequest::Text("hello driver".into());
    assert_eq!(&s.encode_command(&cmd).unwrap()[..], b"#M#hello driver\r\n");
    feed(
        &mut s,
        format!("#L#{}\r\n", packet::with_crc("2.0;1;NA")).as_bytes(),
        usize::MAX,
    );
    let want = format!("#M#hello driver;{:X}\r\n", crc::compute(b"hello driver;"));
    assert_eq!(&s.encode_command(&cmd).unwrap()[..], want.as_bytes());
    for bad in ["a\r\nb", "a\nb", ""] {
        assert!(matches!(
            s.encode_command(&CommandRequest::Text(bad.into())),
            Err(CommandError::Invalid(_))
        ));
    }
    // Typed commands: Wialon IPS has no command for them; refused with a reason, nothing sent.
    for typed in [
        CommandRequest::EngineStop,
        CommandRequest::EngineResume,
        CommandRequest::PositionRequest,
        CommandRequest::Reboot,
        CommandRequest::SetReportInterval { seconds: 30 },
        CommandRequest::OutputSet { index: 1, on: true },
    ] {
        match s.encode_command(&typed) {
            Err(CommandError::UnsupportedType(r)) => {
                assert!(r.contains(typed.type_name()) && r.contains("#M#"), "{r}")
            }
            other => panic!("{typed:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- properties

fn arb_record(full: bool) -> impl Strategy<Value = Record> {
    let opt_f = |lo: f64, hi: f64| {
        proptest::option::of((lo..hi).prop_map(|v| (v * 1000.0).round() / 1000.0))
    };
    let name = "[a-zA-Z][a-zA-Z0-9_]{0,8}";
    let param = prop_oneof![
        (name, any::<i64>()).prop_map(|(n, v)| (n, ParamValue::Int(v))),
        (name, -1e6..1e6f64).prop_map(|(n, v)| (n, ParamValue::Double(v))),
        (name, "[a-zA-Z0-9 .%]{0,10}").prop_map(|(n, v)| (n, ParamValue::Text(v.into_bytes()))),
    ];
    (
        proptest::option::of(946_684_800i64..4_102_444_799),
        proptest::option::of((-89.9..89.9f64, -179.9..179.9f64)),
        (opt_f(0.0, 500.0), opt_f(0.0, 359.0), opt_f(-500.0, 9000.0)),
        proptest::option::of(0u32..40),
        (
            opt_f(0.0, 50.0),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
        ),
        proptest::collection::vec(opt_f(-100.0, 100.0), 0..4),
        proptest::option::of("[A-F0-9]{1,12}"),
        proptest::collection::vec(param, 0..4),
    )
        .prop_map(
            move |(
                time,
                pos,
                (speed, course, height),
                satellites,
                (hdop, inputs, outputs),
                adc,
                ibutton,
                params,
            )| {
                let mut r = Record {
                    time,
                    latitude: pos.map(|p| p.0),
                    longitude: pos.map(|p| p.1),
                    speed,
                    course,
                    height,
                    satellites,
                    ..Default::default()
                };
                if full {
                    r.hdop = hdop;
                    r.inputs = inputs;
                    r.outputs = outputs;
                    // A single NA adc renders like "no adc at all"; keep lists unambiguous.
                    r.adc = if adc.iter().all(Option::is_none) {
                        Vec::new()
                    } else {
                        adc
                    };
                    r.ibutton = ibutton.map(String::into_bytes);
                    let mut seen = std::collections::HashSet::new();
                    r.params = params
                        .into_iter()
                        .filter(|(n, _)| seen.insert(n.clone()))
                        .collect();
                }
                r
            },
        )
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-7,
        (None, None) => true,
        _ => false,
    }
}

proptest! {
    #[test]
    fn render_then_parse_round_trips(r in arb_record(true)) {
        let short = Record {
            hdop: None, inputs: None, outputs: None, adc: Vec::new(), ibutton: None,
            params: Vec::new(), ..r.clone()
        };
        for (want, full) in [(&r, true), (&short, false)] {
            let body = packet::render_record(want, full);
            let fields: Vec<&[u8]> = body.as_bytes().split(|&b| b == b';').collect();
            let back = packet::parse_record(&fields).unwrap();
            prop_assert!(close(want.latitude, back.latitude) && close(want.longitude, back.longitude));
            let mut back = back;
            back.latitude = want.latitude;
            back.longitude = want.longitude;
            prop_assert_eq!(&back, want);
        }
    }

    /// Spaces around any structural field (everything but the iButton and the parameters)
    /// change nothing but the padding count.
    #[test]
    fn padding_fields_with_spaces_changes_nothing_but_the_count(
        r in arb_record(true),
        pads in proptest::collection::vec((0usize..3, 0usize..3), 14),
    ) {
        let body = packet::render_record(&r, true);
        let fields: Vec<&[u8]> = body.as_bytes().split(|&b| b == b';').collect();
        let padded: Vec<Vec<u8>> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| match pads.get(i) {
                Some((a, b)) => [&vec![b' '; *a][..], f, &vec![b' '; *b][..]].concat(),
                None => f.to_vec(),
            })
            .collect();
        let padded: Vec<&[u8]> = padded.iter().map(Vec::as_slice).collect();
        let (mut qa, mut qb) = (packet::Quirks::default(), packet::Quirks::default());
        let a = packet::parse_record_noting(&fields, &mut qa).unwrap();
        let b = packet::parse_record_noting(&padded, &mut qb)
            .unwrap_or_else(|e| panic!("{e:?}: {:?}", padded.iter().map(|f| String::from_utf8_lossy(f)).collect::<Vec<_>>()));
        prop_assert_eq!(&a, &b);
        let any_pad = pads.iter().any(|(x, y)| x + y > 0);
        prop_assert!(!qa.labels().contains(&quirk::PADDED_NUMBER));
        prop_assert_eq!(qb.labels().contains(&quirk::PADDED_NUMBER), any_pad);
        let others = |q: &packet::Quirks| {
            q.labels().iter().filter(|l| **l != quirk::PADDED_NUMBER).copied().collect::<Vec<_>>()
        };
        prop_assert_eq!(others(&qa), others(&qb));
    }

    #[test]
    fn rendered_packets_decode_in_a_session(r in arb_record(true), v2_session in any::<bool>()) {
        let body = packet::render_record(&r, true);
        let line = if v2_session { v2("D", &body) } else { format!("#D#{body}\r\n") };
        let o = one(v2_session, &line);
        prop_assert_eq!(reply_of(&o), "#AD#1\r\n");
        let e = &frame(&o).events[0];
        prop_assert_eq!(e.position.is_some(), r.latitude.is_some());
        let sd = packet::render_record(&r, false);
        let o = one(v2_session, &if v2_session { v2("SD", &sd) } else { format!("#SD#{sd}\r\n") });
        prop_assert_eq!(reply_of(&o), "#ASD#1\r\n");
    }

    #[test]
    fn random_bytes_never_panic_and_the_buffer_stays_bounded(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        prefix in prop_oneof![Just(b"#L#1;NA\r\n".to_vec()), Just(Vec::new()), Just(b"#".to_vec()), Just(vec![0xff])],
        is_udp in any::<bool>(),
    ) {
        let limits = ProtocolConfig::default().with("wialon", "max_frame_bytes", "256").with("wialon", "max_file_bytes", "1024");
        let transport = if is_udp { Transport::Udp } else { Transport::Tcp };
        let mut s = Session::new(transport, &limits);
        let mut buf = BytesMut::new();
        for (i, c) in chunks.iter().enumerate() {
            if i == 0 { buf.extend_from_slice(&prefix); }
            buf.extend_from_slice(c);
            loop {
                match s.decode(&mut buf, now()) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) if e.action == Action::Close => return Ok(()),
                    Err(_) => continue,
                }
            }
            if is_udp { buf.clear(); }
            // A line or container waiting for more is never longer than the cap plus a header
            // and one binary block.
            prop_assert!(buf.len() <= 2 * 256 + 8, "{} bytes buffered", buf.len());
        }
    }
}
