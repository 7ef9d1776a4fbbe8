//! Session tests: detection at every prefix, answers, identity, clocks, photos, framing fed
//! whole, byte by byte and split at every point, commands, and encode-then-decode properties.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::proto::raw_value::Value as RawV;
use crate::proto::{Alarm, EventKind, TelemetryEvent};
use crate::protocol::sim::{DeviceCodec, Fix};

const IMEI: &str = "359586015829802";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn session(t: Transport) -> Session {
    Session::new(t, &ProtocolConfig::default())
}

fn session_with(t: Transport, key: &str, value: &str) -> Session {
    Session::new(t, &ProtocolConfig::default().with(NAME, key, value))
}

/// Every outcome of feeding `input` at once.
fn feed(s: &mut Session, input: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::from(input);
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

fn one(s: &mut Session, input: &[u8]) -> Frame {
    let mut out = feed(s, input);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0).unwrap()
}

fn only_event(f: &Frame) -> &TelemetryEvent {
    assert_eq!(f.events.len(), 1, "{:?}", f.events);
    &f.events[0]
}

fn reply(f: &Frame) -> Option<&[u8]> {
    f.reply.as_deref()
}

// ---------------------------------------------------------------------------------------------
// Detection

#[test]
fn own_messages_are_detected_at_every_prefix_length() {
    let cases: &[(&[u8], usize)] = &[
        // (message, the prefix length from which it is recognised)
        (b"##,imei:359586015829802,A;", 3),
        (b"imei:359586015829802,tracker,0809231929,,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,;", 5),
        (b"359586015829802;", 16),
        (b"359586015829802\r\n", 16),
        (b"359769031878322imei:359769031878322,tracker,1602160718,2,F", 20),
    ];
    for (msg, from) in cases {
        for t in [Transport::Tcp, Transport::Udp] {
            for n in 1..=msg.len() {
                let got = probe(&msg[..n], t);
                let want = if n >= *from {
                    Probe::Yes
                } else if t == Transport::Udp && msg[..n].iter().all(u8::is_ascii_digit) {
                    // A whole datagram of digits alone is not claimed.
                    Probe::No
                } else {
                    Probe::NeedMore
                };
                assert_eq!(
                    got,
                    want,
                    "{t:?} prefix {n} of {:?}",
                    String::from_utf8_lossy(msg)
                );
            }
        }
    }
}

#[test]
fn other_protocols_are_never_taken_at_any_prefix_length() {
    let others: Vec<(Vec<u8>, Transport)> = vec![
        (
            b"#L#2.0;359586015829802;NA;F2AB\r\n".to_vec(),
            Transport::Tcp,
        ),
        (
            b"#SD#270413;205601;5544.6025;N;03739.6834;E;1;2;3;4\r\n".to_vec(),
            Transport::Tcp,
        ),
        (b"#P#\r\n".to_vec(), Transport::Tcp),
        // Wialon IPS over UDP: the IMEI, then `#`; or `2.0;`, the IMEI, `#`.
        (
            b"359586015829802#D#NA;NA;5544.6025;N;03739.6834;E\r\n".to_vec(),
            Transport::Udp,
        ),
        (
            b"2.0;359586015829802#SD#NA;NA;5544.6025;N\r\n".to_vec(),
            Transport::Udp,
        ),
        (
            hex::decode("000f333536333037303432343431303133").unwrap(),
            Transport::Tcp,
        ),
        (
            hex::decode("78780d010352887071911998000479d00d0a").unwrap(),
            Transport::Tcp,
        ),
        (
            b"*HQ,865205030330012,V1,145452,A,2240.55181,N".to_vec(),
            Transport::Tcp,
        ),
        (
            b"$$A35,359231038939904,AAA,35,-6.0".to_vec(),
            Transport::Tcp,
        ),
        (
            b"+RESP:GTFRI,060228,862894020180553".to_vec(),
            Transport::Tcp,
        ),
        (b"(090411121854BP05000".to_vec(), Transport::Tcp),
        // Wialon Retranslator: a u32 LE size, then the id's ASCII digits and a NUL.
        (
            b"\x3b\x00\x00\x00359586015829802\x00".to_vec(),
            Transport::Tcp,
        ),
        (b"12\x00\x00359586015829802\x00".to_vec(), Transport::Tcp),
        // Digits that are not an IMEI.
        (b"12345;".to_vec(), Transport::Tcp),
        (b"12345".to_vec(), Transport::Udp),
        (b"359586015829802".to_vec(), Transport::Udp),
        (b"123456789012345678901;".to_vec(), Transport::Tcp),
        (b"GET / HTTP/1.1\r\n".to_vec(), Transport::Tcp),
        (b"#imei:1".to_vec(), Transport::Tcp),
        (b"im ei:1".to_vec(), Transport::Tcp),
    ];
    for (bytes, t) in &others {
        let mut decided = false;
        for n in 1..=bytes.len() {
            let got = probe(&bytes[..n], *t);
            assert_ne!(got, Probe::Yes, "{t:?} prefix {n} of {bytes:?}");
            if got == Probe::No {
                decided = true;
            } else {
                assert!(!decided, "{t:?} prefix {n} of {bytes:?}: No then NeedMore");
            }
        }
        assert!(decided, "{t:?} {bytes:?} never refused");
    }
}

// ---------------------------------------------------------------------------------------------
// Answers and events

#[test]
fn login_heartbeat_and_reports_get_exactly_their_answers() {
    for t in [Transport::Tcp, Transport::Udp] {
        let mut s = session(t);
        let f = one(&mut s, b"##,imei:359586015829802,A;");
        assert_eq!(reply(&f), Some(LOAD));
        assert_eq!(f.login.as_deref(), Some(IMEI));
        assert!(f.events.is_empty());
        assert_eq!(s.imei(), Some(IMEI));
        let f = one(&mut s, b"359586015829802;");
        assert_eq!(reply(&f), Some(ON));
        assert_eq!(f.login, None, "the same device");
        assert_eq!(only_event(&f).kind, EventKind::Heartbeat as i32);
        let f = one(
            &mut s,
            b"imei:359586015829802,tracker,0809231929,13554900601,F,112909.397,A,2234.4669,N,11354.3287,E,0.11,321.53,;",
        );
        assert_eq!(reply(&f), None, "reports are not answered");
        let e = only_event(&f);
        assert_eq!(e.kind, EventKind::Position as i32);
        // Local 2008-09-23 19:29 at UTC+8 with a fix at 11:29:09.397 UTC.
        let t = e.device_time.unwrap();
        assert_eq!((t.seconds, t.nanos), (1_222_169_349, 397_000_000));
        let f = one(
            &mut s,
            b"imei:359586015829802,help me,0809231429,13554900601,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,;",
        );
        assert_eq!(reply(&f), Some(&b"**,imei:359586015829802,E;"[..]));
        assert_eq!(only_event(&f).alarms, vec![Alarm::Sos as i32]);
        // The same without a fix.
        let f = one(
            &mut s,
            b"imei:359586015829802,help me,000000000,13554900601,L,;",
        );
        assert_eq!(reply(&f), Some(&b"**,imei:359586015829802,E;"[..]));
        assert_eq!(only_event(&f).kind, EventKind::Alarm as i32);
    }
}

#[test]
fn the_sos_cancel_can_be_switched_off() {
    let mut s = session_with(Transport::Tcp, SOS_CANCEL, "false");
    let f = one(
        &mut s,
        b"imei:359586015829802,help me,000000000,13554900601,L,;",
    );
    assert_eq!(reply(&f), None);
    assert_eq!(only_event(&f).alarms, vec![Alarm::Sos as i32]);
}

#[test]
fn short_imei_messages_are_logins_and_glued_heartbeats_get_on() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, b"imei:123451234512345,L,*");
    assert_eq!(
        (reply(&f), f.login.as_deref()),
        (Some(LOAD), Some("123451234512345"))
    );
    let f = one(
        &mut s,
        b"359769031878322imei:359769031878322,tracker,1602160718,2,F,221811.000,A,1655.2193,S,14546.6722,E,0.00,,\r\n",
    );
    assert_eq!(reply(&f), Some(ON));
    assert_eq!(f.login.as_deref(), Some("359769031878322"));
    assert_eq!(f.lenient, [lenient::GLUED_HEARTBEAT]);
    assert!(only_event(&f).position.as_ref().unwrap().latitude < -16.0);
    let f = one(&mut s, b"359769031878322imei:359769031878322,help me,,,L,;");
    assert_eq!(reply(&f), Some(&b"ON**,imei:359769031878322,E;"[..]));
}

#[test]
fn every_message_identifies_and_another_device_switches_the_session() {
    let mut s = session(Transport::Udp);
    let f = one(&mut s, b"imei:359586015829802,tracker,000000000,,L,;");
    assert_eq!(f.login.as_deref(), Some(IMEI), "a report before any login");
    let f = one(&mut s, b"359586015829802;");
    assert_eq!(f.login, None);
    let f = one(&mut s, b"353451044508750;");
    assert_eq!(f.login.as_deref(), Some("353451044508750"));
    assert_eq!(s.imei(), Some("353451044508750"));
    // A refused message of another device does not switch the session.
    let out = feed(
        &mut s,
        b"imei:359586015829802,tracker,0809231929,,F,055403.000,A,x,N,y,E,0;",
    );
    assert!(matches!(&out[..], [Err(_)]), "{out:?}");
    assert_eq!(s.imei(), Some("353451044508750"));
    let f = one(&mut s, b"359586015829802;");
    assert_eq!(f.login.as_deref(), Some(IMEI));
    for id in ["a", "1234567890123456789012"] {
        let msg = format!("##,imei:{id},A;");
        let out = feed(&mut s, msg.as_bytes());
        assert!(
            matches!(&out[..], [Err(e)] if e.action == Action::Continue),
            "{out:?}"
        );
    }
}

#[test]
fn obd_lines_the_alternative_form_and_refused_messages() {
    let mut s = session(Transport::Tcp);
    let f = one(
        &mut s,
        b"imei:359710049090138,OBD,160629022949,51442,0.00,15.88,5632,122,40.39%,95,0.00%,2101,13.80,,,,;",
    );
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::Status as i32);
    assert_eq!(e.telemetry().rpm, Some(2101.0));
    assert_eq!(e.device_time, None, "local time only, no offset known yet");
    let f = one(
        &mut s,
        b"imei:861359038609986,Equipo 1,---,------,----,214734,241018,26,1,-33.42317,-70.61930,067,229,0674,1.00,08,0,1,---,*",
    );
    assert_eq!(only_event(&f).kind, EventKind::Position as i32);
    // Not GPS103, a broken layout: refused without an answer, the connection goes on.
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"imei:359586015829802,tracker,0809231929,,F,055403.000,A,22x3.1870,N,11354.3067,E,0.00;",
        b"imei:359586015829802,vr,zz;",
        b"imei:359586015829802,vr,0100000000;",
        b"12345;",
    ] {
        let out = feed(&mut s, bad);
        assert!(
            matches!(&out[..], [Err(e)] if e.action == Action::Continue && e.reply.is_none()),
            "{bad:?}: {out:?}"
        );
    }
    // And then a good message is still decoded.
    assert_eq!(reply(&one(&mut s, b"359586015829802;")), Some(ON));
}

#[test]
fn an_unterminated_run_over_the_cap_closes_tcp_and_drops_a_datagram() {
    let config = ProtocolConfig::default().with(NAME, "max_frame_bytes", "64");
    let mut s = Session::new(Transport::Tcp, &config);
    let mut long = b"imei:359586015829802,tracker,".to_vec();
    long.extend(std::iter::repeat_n(b'0', 64));
    let out = feed(&mut s, &long);
    assert!(
        matches!(&out[..], [Err(e)] if e.action == Action::Close && e.kind == ErrorKind::TooLarge),
        "{out:?}"
    );
    let mut s = Session::new(Transport::Udp, &config);
    let mut buf = BytesMut::from(&long[..]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!((e.action, e.kind), (Action::Continue, ErrorKind::TooLarge));
    assert!(buf.is_empty());
}

#[test]
fn unterminated_messages_end_at_the_next_one() {
    let mut s = session(Transport::Tcp);
    let out = feed(
        &mut s,
        b"imei:353451040164707,tracker,1105182344,+36304665439,F,214418.000,A,4804.2222,N,01916.7593,E,0.37,imei:353451040164707,tracker,1105182345,,F,214518.000,A,4804.2222,N,01916.7593,E,0.37,",
    );
    // The second waits for its end.
    let [Ok(f)] = &out[..] else { panic!("{out:?}") };
    assert_eq!(f.lenient, [lenient::UNTERMINATED]);
    assert_eq!(only_event(f).kind, EventKind::Position as i32);
    assert_eq!(
        only_event(f).raw_named("phone"),
        Some(&RawV::StringValue("+36304665439".into()))
    );
}

// ---------------------------------------------------------------------------------------------
// Clocks

#[test]
fn messages_without_utc_use_the_learned_or_configured_offset() {
    let l_report = b"imei:865456055519122,sensor alarm,2208011920,,L,;";
    // Nothing known: no device time.
    let mut s = session(Transport::Tcp);
    assert_eq!(only_event(&one(&mut s, l_report)).device_time, None);
    // A fix shows the clock at UTC+3 (local 22:20, UTC 19:20:07): the L report's 19:20 local
    // is 16:20 UTC.
    one(
        &mut s,
        b"imei:865456055519122,tracker,2208012220,,F,192007.000,A,5443.3834,N,02512.9071,E,0.00,0;",
    );
    let e = only_event(&one(&mut s, l_report)).clone();
    // 2022-08-01 16:20:00 UTC.
    assert_eq!(e.device_time.map(|t| t.seconds), Some(1_659_370_800));
    assert_eq!(
        e.raw_named("local_time"),
        Some(&RawV::StringValue("2208011920".into()))
    );
    // Another device on the same peer does not inherit the offset.
    let f = one(&mut s, b"imei:865456055519123,sensor alarm,2208011920,,L,;");
    assert_eq!(only_event(&f).device_time, None);
    // A configured zone applies from the start (and wins over what a device shows).
    let mut s = session_with(Transport::Tcp, LOCAL_TIME_ZONE, "-03:30");
    let e = only_event(&one(&mut s, l_report)).clone();
    // 19:20 at UTC-3:30 is 22:50 UTC.
    assert_eq!(e.device_time.map(|t| t.seconds), Some(1_659_394_200));
    // With a UTC time the message's own clocks decide, whatever is configured.
    let f = one(
        &mut s,
        b"imei:865456055519122,tracker,2208012220,,F,192007.000,A,5443.3834,N,02512.9071,E,0.00,0;",
    );
    assert_eq!(
        only_event(&f).device_time.map(|t| t.seconds),
        Some(1_659_381_607)
    );
    assert_eq!(parse_zone("+05:45"), Some(345));
    assert_eq!(parse_zone("-09:30"), Some(-570));
    assert_eq!(parse_zone(LEARN), None);
    for z in ZONES.iter().filter(|z| **z != LEARN) {
        let m = parse_zone(z).unwrap();
        assert!((-720..=840).contains(&m) && m % 15 == 0, "{z}");
    }
}

// ---------------------------------------------------------------------------------------------
// Photos

fn chunk(index: u16, data: &[u8]) -> Vec<u8> {
    let mut c = index.to_le_bytes().to_vec();
    c.extend_from_slice(&(data.len() as u16).to_le_bytes());
    c.extend_from_slice(data);
    c.extend_from_slice(&[0x1d, 0x00]);
    format!("imei:{IMEI},vr,{};", hex::encode(c)).into_bytes()
}

const ANNOUNCE: &[u8] = b"imei:359586015829802,vt3,190116192753,,F,172750.000,A,3649.2186,N,00235.8411,W,0.00,0,,0,0,51.93%,,+22;";

#[test]
fn a_photo_is_reassembled_from_its_chunks() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, ANNOUNCE);
    assert_eq!(only_event(&f).kind, EventKind::Position as i32);
    for (i, part) in [
        (2u16, &b"\xff\xd9"[..]),
        (0, b"\xff\xd8ab"),
        (0, b"\xff\xd8ab"),
    ] {
        let f = one(&mut s, &chunk(i, part));
        assert!(f.events.is_empty() && f.reply.is_none());
    }
    let f = one(&mut s, &chunk(1, b"cd"));
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::File as i32);
    let file = e.file.as_ref().unwrap();
    assert_eq!(file.data, b"\xff\xd8abcd\xff\xd9");
    assert_eq!(file.name, "359586015829802_190116192753.jpg");
    assert_eq!(file.r#type, "image");
    assert!(e.device_time.is_some());
    // Done: a further chunk has no photo to go to.
    let out = feed(&mut s, &chunk(1, b"cd"));
    assert!(
        matches!(&out[..], [Err(e)] if e.kind == ErrorKind::BadValue),
        "{out:?}"
    );
}

#[test]
fn photo_chunks_out_of_bounds_or_over_the_cap_are_refused() {
    let config = ProtocolConfig::default().with(NAME, MAX_FILE_BYTES, "1024");
    let mut s = Session::new(Transport::Tcp, &config);
    one(&mut s, ANNOUNCE);
    let out = feed(&mut s, &chunk(3, b"x"));
    assert!(
        matches!(&out[..], [Err(e)] if e.kind == ErrorKind::BadValue),
        "{out:?}"
    );
    one(&mut s, &chunk(0, &[7; 600]));
    let out = feed(&mut s, &chunk(1, &[7; 600]));
    assert!(matches!(&out[..], [Err(_)]), "{out:?}");
    // The photo was dropped: the last chunk finds nothing to complete.
    let out = feed(&mut s, &chunk(2, b"x"));
    assert!(matches!(&out[..], [Err(_)]), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Framing through the session: whole, byte by byte, split at every point

const STREAM: &[u8] = b"##,imei:359586015829802,A;\r\n359586015829802;imei:359586015829802,tracker,0809231929,13554900601,F,112909.397,A,2234.4669,N,11354.3287,E,0.11,321.53,;\nimei:359586015829802,help me,0809231429,13554900601,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,\r\nimei:359586015829802,OBD,160629022949,51442,0.00,15.88,5632,122,40.39%,95,0.00%,2101,13.80,,,,;imei:861359038609986,Equipo 1,---,------,----,214734,241018,26,1,-33.42317,-70.61930,067,229,0674,1.00,08,0,1,---,*";

/// What matters of a frame: its answer, identity and events (heartbeats' ids are per call).
fn summary(out: &[Result<Frame, DecodeError>]) -> Vec<String> {
    out.iter()
        .map(|r| match r {
            Ok(f) => format!("{:?} {:?} {:?} {:?}", f.reply, f.login, f.events, f.lenient),
            Err(e) => format!("error {e}"),
        })
        .collect()
}

#[test]
fn a_stream_gives_the_same_frames_whole_byte_by_byte_and_split_anywhere() {
    let whole = summary(&feed(&mut session(Transport::Tcp), STREAM));
    assert_eq!(whole.len(), 6, "{whole:#?}");
    assert!(whole.iter().all(|f| !f.starts_with("error")), "{whole:#?}");
    let mut s = session(Transport::Tcp);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in STREAM {
        buf.extend_from_slice(&[b]);
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            out.push(Ok(f));
        }
    }
    assert_eq!(summary(&out), whole, "byte by byte");
    for cut in 1..STREAM.len() {
        let mut s = session(Transport::Tcp);
        let mut buf = BytesMut::from(&STREAM[..cut]);
        let mut out = Vec::new();
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            out.push(Ok(f));
        }
        buf.extend_from_slice(&STREAM[cut..]);
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            out.push(Ok(f));
        }
        assert_eq!(summary(&out), whole, "split at {cut}");
    }
}

#[test]
fn a_datagram_may_hold_several_messages_or_one_without_terminator() {
    let mut s = session(Transport::Udp);
    let out = feed(&mut s, b"##,imei:359586015829802,A;359586015829802;");
    let replies: Vec<_> = out
        .iter()
        .map(|r| r.as_ref().unwrap().reply.clone())
        .collect();
    assert_eq!(replies, [Some(LOAD.into()), Some(ON.into())]);
    assert_eq!(reply(&one(&mut s, b"359586015829802")), Some(ON));
    assert_eq!(
        reply(&one(&mut s, b"##,imei:359586015829802,A")),
        Some(LOAD)
    );
}

// ---------------------------------------------------------------------------------------------
// Commands

#[test]
fn commands_need_the_device_and_are_never_answered() {
    let mut s = session(Transport::Tcp);
    assert!(matches!(
        s.encode_command(&CommandRequest::PositionRequest),
        Err(CommandError::Invalid(_))
    ));
    one(&mut s, b"##,imei:359586015829802,A;");
    for (c, want) in [
        (CommandRequest::PositionRequest, "**,imei:359586015829802,B"),
        (
            CommandRequest::SetReportInterval { seconds: 30 },
            "**,imei:359586015829802,C,30s",
        ),
        (CommandRequest::EngineStop, "**,imei:359586015829802,J"),
        (CommandRequest::EngineResume, "**,imei:359586015829802,K"),
        (
            CommandRequest::Text("M".into()),
            "**,imei:359586015829802,M",
        ),
    ] {
        assert_eq!(s.encode_command(&c).unwrap(), want.as_bytes());
    }
    assert!(!s.command_answered());
    assert_eq!(s.last_command_tag(), None);
    assert!(matches!(
        s.encode_command(&CommandRequest::Reboot),
        Err(CommandError::UnsupportedType(_))
    ));
}

#[test]
fn the_module_declares_what_the_gateway_reads() {
    let m: &dyn ProtocolModule = &Gps103;
    assert_eq!((m.name(), m.protocol()), ("gps103", Protocol::Gps103));
    assert_eq!(m.transports(), [Transport::Tcp, Transport::Udp]);
    assert_eq!(m.profiles()[0].name, mapping::PROFILE);
    let d =
        crate::protocol::ProtocolSettings::defaults(crate::protocol::module_named(NAME).unwrap());
    assert_eq!(d.max_frame_bytes(), 4096);
    assert!(d.flag(SOS_CANCEL));
    assert_eq!(d.choice(LOCAL_TIME_ZONE), LEARN);
    assert_eq!(m.login_rejected_reply(Transport::Tcp), None);
}

// ---------------------------------------------------------------------------------------------
// Properties

fn arb_fix() -> impl Strategy<Value = Fix> {
    (
        946_684_800_000u64..4_102_444_800_000,
        -89.99f64..89.99,
        -179.99f64..179.99,
        0f64..300.0,
        0f64..359.99,
        -400f64..9000.0,
    )
        .prop_map(
            |(time_ms, latitude, longitude, speed_kmh, course, altitude)| Fix {
                time_ms,
                latitude,
                longitude,
                altitude,
                speed_kmh,
                course,
                satellites: 8,
                hdop: 1.0,
                odometer_m: 0,
                power_mv: 12_000,
                battery_mv: 4_000,
                gsm_level: 3,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// A report the simulated device writes decodes back to its fix: position to the
    /// resolution of `ddmm.mmmm`, speed to 0.01 knot, the time to the millisecond (through
    /// the local/UTC reconciliation across any date).
    #[test]
    fn reports_round_trip(fix in arb_fix(), udp in any::<bool>()) {
        let t = if udp { Transport::Udp } else { Transport::Tcp };
        let mut s = session(t);
        let mut d = sim::Coban::new(IMEI, udp);
        let unit = d.batch(&[fix]).units.remove(0);
        let f = one(&mut s, &unit);
        let e = only_event(&f);
        let p = e.position.as_ref().unwrap();
        prop_assert!((p.latitude - fix.latitude).abs() < 2e-6);
        prop_assert!((p.longitude - fix.longitude).abs() < 2e-6);
        prop_assert!((p.speed.unwrap() - fix.speed_kmh).abs() < 0.01);
        prop_assert!((p.course.unwrap() - fix.course).abs() < 0.006);
        let ts = e.device_time.unwrap();
        prop_assert_eq!(ts.seconds as u64 * 1000 + ts.nanos as u64 / 1_000_000, fix.time_ms);
    }

    /// Typed commands encode to `**,imei:<IMEI>,…` and intervals say exactly what was asked.
    #[test]
    fn intervals_say_what_was_asked(seconds in 1u32..400_000) {
        match command::interval(seconds) {
            Ok(c) => {
                let (n, unit) = c.strip_prefix("C,").unwrap().split_at(2);
                let size = match unit { "s" => 1, "m" => 60, "h" => 3600, _ => 0 };
                prop_assert_eq!(n.parse::<u32>().unwrap() * size, seconds);
            }
            Err(_) => prop_assert!(
                !(1..=99).any(|k| [1, 60, 3600].contains(&(seconds / k)) && seconds % k == 0)
            ),
        }
    }

    /// Text made of the protocol's own characters, in any chunking: every frame or error
    /// consumes bytes (no stuck connection), and the session never waits with more than a
    /// message's worth buffered.
    #[test]
    fn text_like_bytes_never_stall_or_overfill(
        input in "(##,|imei:|vr|OBD|help me|[0-9]{1,16}|[,;*.\r\nFLAVNSEW%+:-])*",
        chunk in 1usize..64,
        udp in any::<bool>(),
    ) {
        let config = ProtocolConfig::default().with(NAME, "max_frame_bytes", "64");
        let t = if udp { Transport::Udp } else { Transport::Tcp };
        let mut s = Session::new(t, &config);
        let mut buf = BytesMut::new();
        for c in input.as_bytes().chunks(chunk) {
            if udp {
                buf.clear();
            }
            buf.extend_from_slice(c);
            loop {
                let before = buf.len();
                match s.decode(&mut buf, now()) {
                    Ok(None) => {
                        prop_assert!(buf.len() <= 65, "waits with {} bytes", buf.len());
                        break;
                    }
                    Ok(Some(_)) => prop_assert!(buf.len() < before),
                    Err(e) if e.action == Action::Close => return Ok(()),
                    Err(_) => prop_assert!(buf.len() < before),
                }
                if buf.is_empty() {
                    break;
                }
            }
        }
    }

    /// Messages with any mix of terminators, in any chunking, frame to the same texts.
    #[test]
    fn terminators_and_chunking_do_not_change_the_messages(
        picks in prop::collection::vec((0usize..4, 0usize..4), 1..8),
        chunk in 1usize..40,
    ) {
        const MSGS: [&str; 4] = [
            "##,imei:359586015829802,A",
            "359586015829802",
            "imei:359586015829802,tracker,0809231929,,F,112909.397,A,2234.4669,N,11354.3287,E,0.11,321.53,",
            "imei:359586015829802,sensor alarm,2208011920,,L,",
        ];
        const ENDS: [&str; 4] = [";", "\r\n", "\n", ";\r\n"];
        let mut input = Vec::new();
        for (m, e) in &picks {
            input.extend_from_slice(MSGS[*m].as_bytes());
            input.extend_from_slice(ENDS[*e].as_bytes());
        }
        let mut f = frame::Framer::new(false, 4096);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for c in input.chunks(chunk) {
            buf.extend_from_slice(c);
            while let Some(m) = f.next(&mut buf).unwrap() {
                got.push(String::from_utf8(m.text.to_vec()).unwrap());
            }
        }
        let want: Vec<String> = picks.iter().map(|(m, _)| MSGS[*m].to_string()).collect();
        prop_assert_eq!(got, want);
    }
}
