//! Session-level tests: exact replies (the worked examples of the protocol notes), framing fed
//! whole, byte by byte and split at every point, refused frames, sub-packaged messages and
//! their bounds, the 2019 header, the time-zone setting, identity, text frames, UDP
//! datagrams, detection at every prefix, commands through the session, and property tests
//! (encode then decode) for framing and location bodies. The replay of Traccar's JT/T 808
//! frames is the integration test `tests/conformance_jt808.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::frame::{Terminal, SUBPACKAGED, VERSION_FLAG};
use super::mapping::name;
use super::*;
use crate::proto::raw_value::Value;
use crate::proto::TelemetryEvent;
use crate::protocol::{AnswerOutcome, CommandAnswer};

/// Heartbeat from 043048325465, serial 00b7 (Traccar's fixture, the notes' worked example).
const HEARTBEAT: &str = "7e0002000004304832546500b7ca7e";
const HEARTBEAT_ANSWER: &str = "7e80010005043048325465000000b70002004e7e";
/// Registration from 014130567872, serial 0024, and its answer (the notes' worked example).
const REGISTRATION: &str = "7e0100002d0141305678720024002c012f373031313142534a2d41362d424400000000000000000000003035363738373201d4c14238383838386d7e";
const REGISTRATION_ANSWER: &str = "7e8100000f0141305678720000002400303134313330353637383732887e";
/// Location from 013833501744, serial 0019: 2015-08-18 07:21:21 GMT+8, fixed.
const LOCATION: &str = "7e0200002a013833501744001900000000000000c201597fa806cc01580080000000081508180721210104000002f502020000030200009f7e";

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

fn decode_all(s: &mut Session, input: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    feed(s, input, input.len().max(1), now())
}

/// Feeds `input` in chunks of `chunk` bytes and collects every outcome.
fn feed(
    s: &mut Session,
    input: &[u8],
    chunk: usize,
    at: SystemTime,
) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            let before = buf.len();
            match s.decode(&mut buf, at) {
                Ok(None) => break,
                r => {
                    assert!(buf.len() < before, "progress");
                    out.push(r.map(|f| f.expect("Some")));
                }
            }
        }
    }
    out
}

fn one(s: &mut Session, input: &[u8]) -> Frame {
    let mut out = decode_all(s, input);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0).unwrap()
}

/// A terminal message built here (independently of `frame::encode`): header, body, check
/// byte, escaped.
fn build(
    id: u16,
    attributes_extra: u16,
    terminal: &[u8],
    serial: u16,
    package: Option<(u16, u16)>,
    body: &[u8],
) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let mut attr = body.len() as u16 | attributes_extra;
    if package.is_some() {
        attr |= SUBPACKAGED;
    }
    m.extend_from_slice(&attr.to_be_bytes());
    if attr & VERSION_FLAG != 0 {
        m.push(1);
    }
    m.extend_from_slice(terminal);
    m.extend_from_slice(&serial.to_be_bytes());
    if let Some((total, index)) = package {
        m.extend_from_slice(&total.to_be_bytes());
        m.extend_from_slice(&index.to_be_bytes());
    }
    m.extend_from_slice(body);
    let check = m.iter().fold(0u8, |a, b| a ^ b);
    m.push(check);
    let mut out = vec![0x7E];
    for b in m {
        match b {
            0x7E => out.extend_from_slice(&[0x7D, 0x02]),
            0x7D => out.extend_from_slice(&[0x7D, 0x01]),
            b => out.push(b),
        }
    }
    out.push(0x7E);
    out
}

/// A `0200` body: no alarm, status, position, 2015-08-18 07:21:21, then `items`.
fn location_body(status: u32, items: &[u8]) -> Vec<u8> {
    let mut b = 0u32.to_be_bytes().to_vec();
    b.extend_from_slice(&status.to_be_bytes());
    b.extend_from_slice(&h("01597fa806cc0158008000000008150818072121"));
    b.extend_from_slice(items);
    b
}

const TERM: &str = "013912345678";

#[test]
fn worked_examples_are_answered_byte_for_byte() {
    let mut s = tcp();
    let f = one(&mut s, &h(HEARTBEAT));
    assert_eq!(f.login.as_deref(), Some("043048325465"));
    assert_eq!(f.reply.as_deref(), Some(&h(HEARTBEAT_ANSWER)[..]));
    assert_eq!(f.events.len(), 1);
    assert_eq!(f.events[0].kind, EventKind::Heartbeat as i32);
    let mut s = tcp();
    let f = one(&mut s, &h(REGISTRATION));
    assert_eq!(f.reply.as_deref(), Some(&h(REGISTRATION_ANSWER)[..]));
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Status as i32);
    assert_eq!(
        e.raw_named(name::TERMINAL_MODEL),
        Some(&Value::StringValue("BSJ-A6-BD".into()))
    );
    assert_eq!(e.raw_named(name::PLATE_COLOUR), Some(&Value::UintValue(1)));
    // GBK plate 粤B88888: bytes.
    assert_eq!(
        e.raw_named(name::PLATE),
        Some(&Value::BytesValue(h("d4c1423838383838")))
    );
    assert_eq!(e.raw.first().unwrap().name, name::MESSAGE_ID);
    assert_eq!(e.raw.last().unwrap().value, Some(Value::UintValue(0x24)));
}

#[test]
fn location_report_gets_its_general_answer_and_maps() {
    let mut s = tcp();
    let f = one(&mut s, &h(LOCATION));
    let want = build(0x8001, 0, &h("013833501744"), 0, None, &h("0019020000"));
    // The answer's body: serial 0019, id 0200, result 0.
    assert_eq!(f.reply.as_deref(), Some(&want[..]));
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Position as i32);
    assert_eq!(e.telemetry().odometer_meters, Some(75_700.0));
    assert_eq!(e.telemetry().ignition, Some(false));
    assert_eq!(e.telemetry().gnss_tracking, Some(true));
}

#[test]
fn a_stream_decodes_the_same_whole_byte_by_byte_and_split_anywhere() {
    let mut stream = h(HEARTBEAT);
    stream.extend(h(LOCATION));
    stream.extend(b"(043048325465,1,001,BASE,2,TIME)");
    // A body holding both special bytes: escaped on the wire.
    let body = location_body(2, &h("e1017ee2017d"));
    stream.extend(build(0x0200, 0, &h("043048325465"), 7, None, &body));
    type Summary = Vec<(Option<Vec<u8>>, usize)>;
    let summary = |out: Vec<Result<Frame, DecodeError>>| -> Summary {
        out.into_iter()
            .map(|r| {
                let f = r.unwrap();
                (f.reply.map(|b| b.to_vec()), f.events.len())
            })
            .collect()
    };
    let whole = summary(decode_all(&mut tcp(), &stream));
    assert_eq!(whole.len(), 4);
    assert_eq!(summary(feed(&mut tcp(), &stream, 1, now())), whole);
    for cut in 1..stream.len() {
        let mut s = tcp();
        let mut buf = BytesMut::from(&stream[..cut]);
        let mut got = Vec::new();
        for part in [&[][..], &stream[cut..]] {
            buf.extend_from_slice(part);
            loop {
                match s.decode(&mut buf, now()) {
                    Ok(None) => break,
                    r => got.push(r.map(|f| f.expect("Some"))),
                }
            }
        }
        assert!(buf.is_empty());
        assert_eq!(summary(got), whole, "cut at {cut}");
    }
    // The escaped items came through unescaped.
    let out = decode_all(&mut tcp(), &stream);
    let e = &out[3].as_ref().unwrap().events[0];
    assert_eq!(e.raw_id(0xe1), Some(&Value::BytesValue(vec![0x7e])));
    assert_eq!(e.raw_id(0xe2), Some(&Value::BytesValue(vec![0x7d])));
}

#[test]
fn bad_checks_lengths_and_escapes_are_refused_without_reply_and_the_stream_goes_on() {
    let mut bad = h(LOCATION);
    let n = bad.len();
    bad[n - 2] ^= 0x01;
    let mut input = bad.clone();
    input.extend(h(HEARTBEAT));
    let out = decode_all(&mut tcp(), &input);
    assert_eq!(out.len(), 2);
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadChecksum);
    assert_eq!(e.action, Action::Continue);
    assert!(e.reply.is_none());
    assert!(out[1].is_ok());
    // Body length field one more than the body (check byte right).
    let mut m = h("0002000104304832546500b7");
    m.push(m.iter().fold(0, |a, b| a ^ b));
    let wire = frame::wrap(&m);
    let out = decode_all(&mut tcp(), &wire);
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadLength);
    assert!(e.reply.is_none());
    // 7D 03 is no escape.
    let out = decode_all(&mut tcp(), &h("7e00027d03ca7e"));
    assert_eq!(out[0].as_ref().unwrap_err().kind, ErrorKind::Malformed);
    // Garbage before a frame is skipped, and the frame decodes.
    let out = decode_all(&mut tcp(), &[&b"$$"[..], &h(HEARTBEAT)].concat());
    assert_eq!(out.len(), 2);
    assert!(out[0].is_err() && out[1].is_ok());
}

#[test]
fn an_unterminated_frame_is_dropped_at_the_cap_and_the_next_one_found() {
    let config = ProtocolConfig::default().with("jt808", "max_frame_bytes", "64");
    let mut s = Session::new(Transport::Tcp, &config);
    let mut input = vec![0x7E];
    input.extend(std::iter::repeat_n(0x30, 100));
    input.extend(h(HEARTBEAT));
    let mut buf = BytesMut::new();
    let mut frames = 0;
    let mut too_large = 0;
    for b in input {
        buf.extend_from_slice(&[b]);
        loop {
            assert!(buf.len() <= 64, "held past the cap");
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(_)) => frames += 1,
                Err(e) if e.kind == ErrorKind::TooLarge => too_large += 1,
                Err(_) => {}
            }
        }
    }
    assert_eq!((frames, too_large), (1, 1));
}

#[test]
fn sub_packaged_messages_are_answered_per_package_and_published_whole() {
    let mut s = tcp();
    let t = h(TERM);
    let body = [location_body(3, &[]), location_body(3, &[])].concat();
    let mut batch = 2u16.to_be_bytes().to_vec();
    batch.push(1);
    for b in [&body[..28], &body[28..]] {
        batch.extend_from_slice(&(b.len() as u16).to_be_bytes());
        batch.extend_from_slice(b);
    }
    let (p1, p2) = batch.split_at(20);
    let f = one(&mut s, &build(0x0704, 0, &t, 40, Some((2, 1)), p1));
    assert_eq!(
        f.login.as_deref(),
        Some(TERM),
        "the first package identifies"
    );
    assert!(f.events.is_empty());
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8001, 0, &t, 0, None, &h("0028070400"))[..])
    );
    let f = one(&mut s, &build(0x0704, 0, &t, 41, Some((2, 2)), p2));
    assert_eq!(f.login, None);
    assert_eq!(f.events.len(), 2);
    for e in &f.events {
        assert_eq!(e.kind, EventKind::Position as i32);
        assert_eq!(e.raw_named(name::BATCH_TYPE), Some(&Value::UintValue(1)));
        // The message serial is the first package's.
        assert_eq!(e.raw.last().unwrap().value, Some(Value::UintValue(40)));
    }
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8001, 0, &t, 0, None, &h("0029070400"))[..])
    );
}

#[test]
fn a_missing_package_times_out_and_the_held_bytes_are_bounded() {
    let config = ProtocolConfig::default()
        .with("jt808", "package_timeout_secs", "10")
        .with("jt808", "max_message_bytes", "1024");
    let mut s = Session::new(Transport::Tcp, &config);
    let t = h(TERM);
    let body = location_body(3, &[]);
    let f = feed(
        &mut s,
        &build(0x0200, 0, &t, 1, Some((2, 1)), &body[..10]),
        100,
        now(),
    );
    assert!(f[0].as_ref().unwrap().events.is_empty());
    assert_eq!(s.packets.held(), 10);
    // Package 2 comes too late: the message was dropped; this package starts a new one.
    let later = now() + Duration::from_secs(11);
    let f = feed(
        &mut s,
        &build(0x0200, 0, &t, 2, Some((2, 2)), &body[10..]),
        100,
        later,
    );
    assert!(f[0].as_ref().unwrap().events.is_empty());
    assert_eq!(s.packets.held(), body.len() - 10);
    assert_eq!(s.packets.in_progress(), 1);
    // Over the byte cap: the message is dropped and the package refused.
    let big = vec![0u8; 1000];
    let out = feed(
        &mut s,
        &build(0x0801, 0, &t, 100, Some((3, 1)), &big),
        2000,
        later,
    );
    assert!(out[0].is_ok());
    let out = feed(
        &mut s,
        &build(0x0801, 0, &t, 101, Some((3, 2)), &big),
        2000,
        later,
    );
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadLength);
    assert!(e.reply.is_none());
    assert!(s.packets.held() <= 1024);
}

#[test]
fn the_2019_header_is_echoed_in_replies() {
    let mut s = tcp();
    let t = h("00000356307042441013");
    let f = one(&mut s, &build(0x0002, VERSION_FLAG, &t, 9, None, &[]));
    assert_eq!(f.login.as_deref(), Some("356307042441013"));
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8001, VERSION_FLAG, &t, 0, None, &h("0009000200"))[..])
    );
    // Registration, 2019 form: the code is all 20 digits.
    let mut body = h("002c012f");
    body.extend(b"MANUFACTURE");
    body.extend([0u8; 30]);
    body.extend([0u8; 30]);
    body.push(0);
    let f = one(&mut s, &build(0x0100, VERSION_FLAG, &t, 10, None, &body));
    let mut want = h("000a00");
    want.extend(b"00000356307042441013");
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8100, VERSION_FLAG, &t, 0, None, &want)[..])
    );
    assert_eq!(
        f.events[0].raw_named(name::MANUFACTURER),
        Some(&Value::StringValue("MANUFACTURE".into()))
    );
}

#[test]
fn the_time_zone_is_a_setting() {
    let at = |tz: &str| {
        let config = ProtocolConfig::default().with("jt808", "timezone", tz);
        let mut s = Session::new(Transport::Tcp, &config);
        one(&mut s, &h(LOCATION)).events[0]
            .device_time
            .unwrap()
            .seconds
    };
    let utc = at("+00:00");
    assert_eq!(at("+08:00") + 8 * 3600, utc);
    assert_eq!(at("-03:30") - 3 * 3600 - 1800, utc);
    assert_eq!(
        one(&mut tcp(), &h(LOCATION)).events[0]
            .device_time
            .unwrap()
            .seconds,
        utc - 8 * 3600,
        "GMT+8 by default"
    );
    assert_eq!(offset_minutes("+05:45"), 345);
    assert_eq!(offset_minutes("-09:30"), -570);
    assert!(ProtocolConfig::default()
        .configure([("jt808", "timezone", "+08:15")])
        .is_err());
}

#[test]
fn identity_changes_re_identify_and_unreadable_numbers_close() {
    let mut s = tcp();
    assert_eq!(
        one(&mut s, &h(HEARTBEAT)).login.as_deref(),
        Some("043048325465")
    );
    assert_eq!(one(&mut s, &h(HEARTBEAT)).login, None);
    assert_eq!(
        one(&mut s, &h(LOCATION)).login.as_deref(),
        Some("013833501744")
    );
    assert_eq!(s.imei(), Some("013833501744"));
    // The packed-IMEI convention, counted once.
    let packed = build(0x0002, 0, &h("0b3a73ce2ff2"), 1, None, &[]);
    let f = one(&mut s, &packed);
    assert_eq!(f.login.as_deref(), Some("123456789012347"));
    assert_eq!(f.lenient, vec![LENIENT_PACKED_IMEI]);
    assert!(one(&mut s, &packed).lenient.is_empty());
    // A 2019 number that is not BCD cannot be attributed.
    let out = decode_all(
        &mut s,
        &build(
            0x0002,
            VERSION_FLAG,
            &h("0000000000000000abcd"),
            1,
            None,
            &[],
        ),
    );
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(
        (e.kind, e.action),
        (ErrorKind::LoginRejected, Action::Close)
    );
}

#[test]
fn encrypted_bodies_are_refused_with_not_supported() {
    let t = h(TERM);
    let out = decode_all(&mut tcp(), &build(0x0200, 0x0400, &t, 5, None, &[1, 2, 3]));
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert_eq!(
        e.reply.as_deref(),
        Some(&build(0x8001, 0, &t, 0, None, &h("0005020003"))[..])
    );
}

#[test]
fn text_frames_time_requests_and_results() {
    let mut s = tcp();
    let f = one(&mut s, b"(794104004140,1,001,BASE,2,TIME)");
    assert_eq!(f.login.as_deref(), Some("794104004140"));
    assert!(f.events.is_empty());
    // 2026-11-20 23:32:30 UTC.
    assert_eq!(
        f.reply.as_deref(),
        Some(&b"(794104004140,1,001,BASE,2,261120233230)"[..])
    );
    let f = one(&mut s, b"(794104004140,1,001,ELOCK,3,529439)");
    assert_eq!(f.login, None);
    assert_eq!(f.events[0].kind, EventKind::CommandResponse as i32);
    assert_eq!(
        f.events[0].text.as_deref(),
        Some("(794104004140,1,001,ELOCK,3,529439)")
    );
    assert!(f.reply.is_none());
    // A line break after a text frame is no error.
    let out = decode_all(&mut s, b"(794104004140,1,001,ELOCK,3,1)\r\n");
    assert!(matches!(&out[..], [Ok(_)]), "{out:?}");
    let out = decode_all(&mut tcp(), b"(ABC,1)");
    assert_eq!(out[0].as_ref().unwrap_err().kind, ErrorKind::NotLoggedIn);
}

#[test]
fn udp_datagrams_hold_whole_frames() {
    let mut s = Session::new(Transport::Udp, &ProtocolConfig::default());
    let mut dgram = h(HEARTBEAT);
    dgram.extend(h(LOCATION));
    dgram.extend(&h(HEARTBEAT)[..5]);
    let mut buf = BytesMut::from(&dgram[..]);
    let mut frames = 0;
    let mut errors = 0;
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            Ok(Some(_)) => frames += 1,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::BadLength);
                errors += 1;
            }
        }
    }
    assert_eq!((frames, errors), (2, 1));
    assert!(buf.is_empty());
}

#[test]
fn probe_at_every_prefix() {
    for frame in [HEARTBEAT, REGISTRATION, LOCATION] {
        let b = h(frame);
        let mut yes = false;
        for n in 1..=b.len().min(64) {
            match Jt808.probe(&b[..n], Transport::Tcp) {
                Probe::Yes => yes = true,
                Probe::NeedMore => assert!(!yes, "{frame} prefix {n} went back"),
                Probe::No => panic!("{frame} prefix {n} refused"),
            }
        }
        assert!(yes, "{frame}");
    }
    for other in [
        &h("000f333536333037303432343431303133")[..],
        &h("78780d010352887071911998000479d00d0a")[..],
        b"#L#356307042441013;NA\r\n",
        b"*HQ,4209876543,V1#",
        b"$$A28,864507032323403,AAA",
        b"+RESP:GTFRI,",
        b"##,imei:359586015829802,A;",
        &h("7400000033353339")[..],
        &h("e7000200")[..],
    ] {
        for n in 1..=other.len() {
            assert_ne!(
                Jt808.probe(&other[..n], Transport::Tcp),
                Probe::Yes,
                "{other:02x?} {n}"
            );
        }
        assert_eq!(
            Jt808.probe(other, Transport::Tcp),
            Probe::No,
            "{other:02x?}"
        );
    }
}

#[test]
fn multimedia_uploads_become_files() {
    let t = h(TERM);
    let mut body = h("0000002a00000100");
    body.extend(location_body(3, &[]).get(..28).unwrap());
    body.extend(b"\xff\xd8jpeg\xff\xd9");
    let f = one(&mut tcp(), &build(0x0801, 0, &t, 3, None, &body));
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::File as i32);
    let file = e.file.as_ref().unwrap();
    assert_eq!(
        (file.name.as_str(), file.r#type.as_str()),
        ("42.jpg", "image")
    );
    assert_eq!(file.data, b"\xff\xd8jpeg\xff\xd9");
    assert!(e.position.as_ref().unwrap().valid);
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8800, 0, &t, 0, None, &h("0000002a00"))[..])
    );
}

#[test]
fn time_sync_is_answered_with_utc_now() {
    let t = h(TERM);
    let f = one(&mut tcp(), &build(0x0109, 0, &t, 3, None, &[]));
    assert!(f.events.is_empty());
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8109, 0, &t, 0, None, &h("07ea0b1417201e00"))[..])
    );
}

#[test]
fn commands_need_a_header_and_answers_match_by_id_and_serial() {
    let mut s = tcp();
    assert!(matches!(
        s.encode_command(&CommandRequest::Reboot),
        Err(CommandError::Invalid(_))
    ));
    let t = h(TERM);
    one(&mut s, &build(0x0002, 0, &t, 1, None, &[]));
    let first = s.encode_command(&CommandRequest::Reboot).unwrap();
    assert_eq!(&first[..], &build(0x8105, 0, &t, 0, None, &[4])[..]);
    assert_eq!(s.last_command_tag(), Some(0x8105_0000));
    s.encode_command(&CommandRequest::PositionRequest).unwrap();
    assert_eq!(s.last_command_tag(), Some(0x8201_0001));
    // 0001 answering 8105 serial 0 with "not supported".
    let f = one(&mut s, &build(0x0001, 0, &t, 2, None, &h("0000810503")));
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag: Some(0x8105_0000),
            outcome: AnswerOutcome::Refused("not supported".into())
        }]
    );
    assert_eq!(f.reply, None);
    assert_eq!(
        f.events[0].raw_named(name::ANSWERED_ID),
        Some(&Value::UintValue(0x8105))
    );
    // 1300: a UTF-16 text answering 8300 serial 5.
    let f = one(&mut s, &build(0x1300, 0, &t, 3, None, &h("0005004f004b")));
    assert_eq!(f.answers[0].tag, Some(0x8300_0005));
    assert_eq!(f.events[0].text.as_deref(), Some("OK"));
    // 0104: parameters answering 8104 serial 6.
    let f = one(
        &mut s,
        &build(
            0x0104,
            0,
            &t,
            4,
            None,
            &h("0006010000002904 0000001e".replace(' ', "").as_str()),
        ),
    );
    assert_eq!(f.answers[0].tag, Some(0x8104_0006));
    assert_eq!(f.events[0].text.as_deref(), Some("0029=0000001e"));
    assert_eq!(
        f.events[0].raw_named(&name::param(0x29)),
        Some(&Value::BytesValue(h("0000001e")))
    );
}

#[test]
fn unknown_messages_are_published_raw_and_answered() {
    let t = h(TERM);
    let f = one(&mut tcp(), &build(0x0F0F, 0, &t, 3, None, b"abc"));
    assert_eq!(f.events[0].kind, EventKind::Unknown as i32);
    assert_eq!(
        f.events[0].raw_named(name::BODY),
        Some(&Value::BytesValue(b"abc".to_vec()))
    );
    assert_eq!(
        f.reply.as_deref(),
        Some(&build(0x8001, 0, &t, 0, None, &h("00030f0f00"))[..])
    );
}

#[test]
fn platform_ids_echoed_by_a_device_are_not_answered() {
    let t = h(TERM);
    let f = one(&mut tcp(), &build(0x8001, 0, &t, 3, None, &h("0003020000")));
    assert_eq!(f.events[0].kind, EventKind::Unknown as i32);
    assert_eq!(f.reply, None);
}

#[test]
fn event_ids_keep_the_serial_only_where_the_content_has_no_time() {
    let t = h(TERM);
    let d = |id: u16, serial: u16, body: &[u8]| {
        one(&mut tcp(), &build(id, 0, &t, serial, None, body)).digest
    };
    assert_ne!(d(0x0002, 1, &[]), d(0x0002, 2, &[]), "two heartbeats");
    let body = location_body(3, &[]);
    assert_eq!(d(0x0200, 1, &body), d(0x0200, 2, &body), "a resent report");
}

fn raw_uint(e: &TelemetryEvent, n: &str) -> Option<u64> {
    match e.raw_named(n)? {
        Value::UintValue(v) => Some(*v),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn framing_round_trips_any_body(
        id in any::<u16>(),
        serial in any::<u16>(),
        v2019 in any::<bool>(),
        digits in "[0-9]{12}",
        body in proptest::collection::vec(any::<u8>(), 0..=frame::MAX_BODY),
    ) {
        let terminal = if v2019 {
            Terminal::from_id_2019(&digits).unwrap()
        } else {
            Terminal::from_id(&digits).unwrap()
        };
        let to = frame::Addressee { version: v2019.then_some(1), terminal };
        let wire = frame::encode(id, &to, serial, &body);
        prop_assert!(wire.len() <= 2 * (21 + body.len() + 1) + 2);
        match frame::split(&wire, 4096) {
            Split::Message(m, n) => {
                prop_assert_eq!(n, wire.len());
                prop_assert_eq!(m.header.id, id);
                prop_assert_eq!(m.header.terminal, terminal);
                prop_assert_eq!(m.header.version, v2019.then_some(1));
                prop_assert_eq!(m.body, body);
                if id != frame::LOCATION_JT701 && id != frame::LOCATION_JT701_BLIND {
                    prop_assert_eq!(m.header.serial, serial);
                }
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn location_bodies_round_trip(
        lat in 0u32..90_000_000,
        lon in 0u32..180_000_000,
        status in any::<u32>(),
        alarm in any::<u32>(),
        altitude in any::<i16>(),
        speed in any::<u16>(),
        course in 0u16..360,
        mileage in any::<u32>(),
        secs in 946_684_800i64..4_102_444_800,
    ) {
        let (y, mo, d, hh, mi, ss) = crate::protocol::civil::civil_from_secs(secs + 8 * 3600);
        let time = frame::bcd(&format!("{:02}{mo:02}{d:02}{hh:02}{mi:02}{ss:02}", y % 100));
        let mut body = alarm.to_be_bytes().to_vec();
        body.extend(status.to_be_bytes());
        body.extend(lat.to_be_bytes());
        body.extend(lon.to_be_bytes());
        body.extend(altitude.to_be_bytes());
        body.extend(speed.to_be_bytes());
        body.extend(course.to_be_bytes());
        body.extend(time);
        body.extend([0x01, 4]);
        body.extend(mileage.to_be_bytes());
        let wire = build(0x0200, 0, &h(TERM), 1, None, &body);
        let f = one(&mut tcp(), &wire);
        let e = &f.events[0];
        prop_assert_eq!(raw_uint(e, name::ALARM), Some(u64::from(alarm)));
        prop_assert_eq!(raw_uint(e, name::STATUS), Some(u64::from(status)));
        prop_assert_eq!(e.raw_id(0x01), Some(&Value::UintValue(u64::from(mileage))));
        prop_assert_eq!(e.device_time.unwrap().seconds, secs);
        let located = status & 2 != 0 || lat != 0 || lon != 0;
        prop_assert_eq!(e.position.is_some(), located);
        if let Some(p) = &e.position {
            let sign = |bit: u32| if status & bit != 0 { -1.0 } else { 1.0 };
            prop_assert!((p.latitude - sign(4) * f64::from(lat) / 1e6).abs() < 1e-9);
            prop_assert!((p.longitude - sign(8) * f64::from(lon) / 1e6).abs() < 1e-9);
            prop_assert_eq!(p.altitude, Some(f64::from(altitude)));
            prop_assert_eq!(p.speed, Some(f64::from(speed) / 10.0));
            prop_assert_eq!(p.valid, status & 2 != 0);
        }
        prop_assert_eq!(e.telemetry().ignition, Some(status & 1 != 0));
    }
}
