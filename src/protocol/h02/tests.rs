//! Session tests: detection at every prefix (and never another protocol's signatures), framing
//! through the session whole / byte by byte / split at every point, exact replies, identity,
//! commands and their confirmations, UDP, and encode→decode round trips.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::mapping::name;
use super::*;
use crate::proto::raw_value::Value;
use crate::proto::{Alarm, CellTower, EventKind};
use crate::protocol::{AnswerOutcome, Probe};

/// 2026-11-20 23:32:30 UTC.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_217_550)
}
const NOW_FULL: &str = "20261120233230";
const NOW_HMS: &str = "233230";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn tcp() -> Session {
    Session::new(Transport::Tcp, &ProtocolConfig::default())
}

fn with(key: &str, value: &str) -> Session {
    Session::new(
        Transport::Tcp,
        &ProtocolConfig::default().with(NAME, key, value),
    )
}

const V1: &str =
    "*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF,712,01,0,0,6#";
const NBR: &str = "*HQ,1600068812,NBR,141335,262,02,255,6,431,17003,26,431,11101,13,431,6353,13,431,22172,13,431,11093,13,431,60861,10,151216,FFFFFBFF#";
const SHORT: &str = "2441060116601245431311165035313006004318210e000000fffffbffff0024";
const LONG: &str =
    "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f";
const LONG_ID: &str =
    "2435248308419329301047591808172627335900074412294e024138feffffffff01120064ba73005ecc";
const X: &str = "5800009814991024031101175540227006012321670c000095fffffbffff0033";

/// Everything `decode` gives for `bytes` fed in chunks of `sizes` (cycled; 0 = the rest).
fn feed(
    s: &mut dyn ProtocolSession,
    bytes: &[u8],
    sizes: &[usize],
) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let n = match sizes[i % sizes.len()] {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(f)),
                Err(e) => out.push(Err(e)),
            }
            if buf.is_empty() {
                break;
            }
        }
    }
    out
}

fn ok(out: Vec<Result<Frame, DecodeError>>) -> Vec<Frame> {
    out.into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn one(s: &mut Session, bytes: &[u8]) -> Frame {
    let mut f = ok(feed(s, bytes, &[0]));
    assert_eq!(f.len(), 1, "{f:?}");
    f.remove(0)
}

fn reply(f: &Frame) -> Option<String> {
    f.reply
        .as_ref()
        .map(|r| String::from_utf8(r.to_vec()).unwrap())
}

fn conformance_frames() -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    all.iter()
        .filter(|e| e["protocol"] == "h02" && e["test_kind"] == "protocol_decoder")
        .map(|e| {
            let f = e["frame"].as_str().unwrap();
            if e["encoding"] == "hex" {
                h(f)
            } else {
                f.as_bytes().to_vec()
            }
        })
        .collect()
}

// ---- Detection

#[test]
fn every_conformance_frame_is_detected_at_every_prefix_and_never_flips() {
    let frames = conformance_frames();
    assert!(frames.len() > 80);
    for f in frames {
        let mut yes_at = None;
        for n in 1..=f.len().min(64) {
            match probe(&f[..n], Transport::Tcp) {
                Probe::Yes => {
                    yes_at.get_or_insert(n);
                }
                Probe::NeedMore => assert!(yes_at.is_none(), "flipped back at {n}: {f:02x?}"),
                Probe::No => panic!("prefix {n} refused: {:?}", String::from_utf8_lossy(&f)),
            }
        }
        // Text at 4 bytes; binary after its id and time (12 bytes, 15 with an 8-byte id).
        let want = if f[0] == b'*' { 4 } else { 15 };
        assert!(yes_at.is_some_and(|n| n <= want), "{yes_at:?}: {f:02x?}");
        assert_eq!(probe(&f, Transport::Udp), Probe::Yes);
    }
}

#[test]
fn other_protocols_signatures_are_never_taken_at_any_prefix() {
    let mut samples: Vec<Vec<u8>> = vec![
        // Meitrack from the device, and the server's form.
        b"$$A25,123456789012345,A10*58\r\n".to_vec(),
        b"$$Q128,353358017784062,AAA,34,22.543176,114.078448,100313093738,A,5,22,2,205,5,-14,0,60,0|0|10133|4110,0000,149|153|173|2707|914,*91\r\n".to_vec(),
        b"$$z27,861451040910625,AAC,1*0B\r\n".to_vec(),
        b"$$A1234,861451040910625,CCC,".to_vec(),
        b"@@z27,861451040910625,AAC,1*0B\r\n".to_vec(),
        // Meiligao: `$$`, u16 length, a 7-byte id padded with F.
        h("2424001113612345678fff500005d80d0a"),
        // GT06, Teltonika, Wialon, GPS103, Queclink, JT/T 808, NMEA.
        h("78780d010352887071911998000479d00d0a"),
        h("000f333536333037303432343431303133"),
        b"#L#2.0;356307042441013;NA;6CF7\r\n".to_vec(),
        b"##,imei:359586015829802,A;".to_vec(),
        b"imei:359586015829802,tracker,0809231929,,F,112909.397,A,2234.4669,N,11354.3287,E,0.11,;".to_vec(),
        b"+RESP:GTFRI,1A0401,135790246811220,,0,0,1,1,4.3,92,70.0,121.354335,31.222073,20090214013254,0460,0000,18d8,6141,00,2000.0,12345:12:34,,,80,210100,,,,20090214093254,11F0$".to_vec(),
        h("7e0100002d014130567872002400000000"),
        b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n".to_vec(),
    ];
    // Every Meitrack identifier byte with every length of up to four digits.
    for flag in b'A'..=b'z' {
        for len in ["7", "25", "128", "1024"] {
            let mut v = b"$$".to_vec();
            v.push(flag);
            v.extend_from_slice(len.as_bytes());
            v.extend_from_slice(b",861451040910625,AAA,35*00\r\n");
            samples.push(v);
        }
    }
    for s in &samples {
        for n in 1..=s.len().min(64) {
            for t in [Transport::Tcp, Transport::Udp] {
                assert_ne!(
                    probe(&s[..n], t),
                    Probe::Yes,
                    "{t:?} prefix {n} of {:?}",
                    String::from_utf8_lossy(s)
                );
            }
        }
        // Final within 16 bytes (Meiligao's id reads as BCD up to its 9th byte).
        assert_eq!(
            probe(&s[..s.len().min(16)], Transport::Tcp),
            Probe::No,
            "{:?}",
            String::from_utf8_lossy(s)
        );
        // Meitrack's `$$<flag><digits>,` within 8 bytes.
        if s.starts_with(b"$$") && s.get(2).is_some_and(u8::is_ascii_alphabetic) {
            assert_eq!(
                probe(&s[..8], Transport::Tcp),
                Probe::No,
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }
}

#[test]
fn an_h02_id_starting_with_24_gives_dollar_dollar_and_is_still_h02() {
    // Id 2441060116: `$$A…` on the wire, BCD throughout, no comma.
    let f = [&h("242441060116")[..], &h(SHORT)[6..]].concat();
    assert_eq!(&f[..3], b"$$A");
    assert_eq!(probe(&f[..11], Transport::Tcp), Probe::NeedMore);
    assert_eq!(probe(&f[..12], Transport::Tcp), Probe::Yes);
    let mut s = tcp();
    let fr = one(&mut s, &f);
    assert_eq!(fr.login.as_deref(), Some("2441060116"));
}

// ---- Framing through the session

/// A stream of every kind: text with CR LF, two short binary frames, an `X` frame, NBR, a
/// heartbeat, and the text of the same device.
fn mixed_stream() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(V1.as_bytes());
    v.extend_from_slice(b"\r\n");
    v.extend(h(SHORT));
    v.extend(h(SHORT));
    v.extend(h(X));
    v.extend_from_slice(NBR.as_bytes());
    v.extend_from_slice(b"*HQ,135790246811220,HTBT,100#\r\n");
    v.extend(h(SHORT));
    v.extend_from_slice(
        b"*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFBFFF#",
    );
    v
}

fn summary(frames: &[Frame]) -> Vec<(Vec<i32>, Option<Bytes>, Option<String>)> {
    frames
        .iter()
        .map(|f| {
            (
                f.events.iter().map(|e| e.kind).collect(),
                f.reply.clone(),
                f.login.clone(),
            )
        })
        .collect()
}

#[test]
fn a_mixed_stream_gives_the_same_frames_whole_byte_by_byte_and_split_anywhere() {
    let stream = mixed_stream();
    let whole = ok(feed(&mut tcp(), &stream, &[0]));
    assert_eq!(whole.len(), 8);
    let kinds: Vec<Vec<i32>> = whole
        .iter()
        .map(|f| f.events.iter().map(|e| e.kind).collect())
        .collect();
    let p = EventKind::Position as i32;
    assert_eq!(
        kinds,
        vec![
            vec![p],
            vec![p],
            vec![p],
            vec![],
            vec![EventKind::Lbs as i32],
            vec![EventKind::Heartbeat as i32],
            vec![p],
            vec![p],
        ]
    );
    let want = summary(&whole);
    assert_eq!(
        summary(&ok(feed(&mut tcp(), &stream, &[1]))),
        want,
        "byte by byte"
    );
    for cut in 1..stream.len() {
        let got = ok(feed(&mut tcp(), &stream, &[cut, 0]));
        assert_eq!(summary(&got), want, "split at {cut}");
    }
}

#[test]
fn long_frames_lock_their_length_and_then_survive_any_split() {
    for (hex, len) in [(LONG, 45), (LONG_ID, 42)] {
        let one_frame = h(hex);
        let mut s = tcp();
        // Two frames at once prove the length.
        let two = [&one_frame[..], &one_frame[..]].concat();
        assert_eq!(ok(feed(&mut s, &two, &[0])).len(), 2);
        assert_eq!(s.binary_length(), Some(len));
        let five = one_frame.repeat(5);
        for size in [1, 7, 13, 31, 44] {
            let got = ok(feed(&mut s, &five, &[size]));
            assert_eq!(got.len(), 5, "{len} in chunks of {size}");
            assert!(got.iter().all(|f| f.events[0].position.is_some()));
        }
        // A configured length needs no proof at all.
        let mut c = with(BINARY_FRAME_BYTES, &len.to_string());
        assert_eq!(ok(feed(&mut c, &five, &[1])).len(), 5);
    }
}

#[test]
fn a_locked_length_is_the_proving_devices_only() {
    let mut s = tcp();
    ok(feed(&mut s, &h(LONG).repeat(2), &[0]));
    assert_eq!(s.binary_length(), Some(45));
    // Another device's lone short frame is not cut at 45.
    let f = one(&mut s, &h(SHORT));
    assert_eq!(f.login.as_deref(), Some("4106011660"));
    // The first device's partial frame still waits for its 45 bytes.
    let mut buf = BytesMut::from(&h(LONG)[..32]);
    assert!(s.decode(&mut buf, now()).unwrap().is_none());
}

#[test]
fn garbage_and_bad_binary_content_resynchronise() {
    let mut s = tcp();
    let mut bad = h(SHORT);
    bad[13] = 0xAA; // latitude nibbles of A
    let stream = [b"junk".to_vec(), bad, V1.as_bytes().to_vec()].concat();
    let out = feed(&mut s, &stream, &[0]);
    let errors = out.iter().filter(|r| r.is_err()).count();
    let frames: Vec<&Frame> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(errors >= 2, "{out:?}");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].login.as_deref(), Some("4210051415"));
    for e in out.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.action, Action::Continue);
        assert!(e.reply.is_none());
    }
}

#[test]
fn an_overlong_text_message_is_refused_and_the_stream_goes_on() {
    let mut s = with(settings::MAX_FRAME_BYTES, "128");
    let mut stream = b"*HQ,1,SMS,".to_vec();
    stream.extend(std::iter::repeat_n(b'a', 300));
    stream.extend_from_slice(b"#");
    stream.extend_from_slice(V1.as_bytes());
    let out = feed(&mut s, &stream, &[64]);
    assert!(out
        .iter()
        .any(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::TooLarge)));
    assert!(out
        .last()
        .unwrap()
        .as_ref()
        .is_ok_and(|f| f.login.is_some()));
}

// ---- Replies

#[test]
fn replies_are_exact() {
    let mut s = tcp();
    let f = one(&mut s, V1.as_bytes());
    assert_eq!(
        reply(&f).as_deref(),
        Some(format!("*HQ,4210051415,V4,V1,{NOW_FULL}#").as_str())
    );
    let f = one(&mut s, NBR.as_bytes());
    assert_eq!(
        reply(&f).as_deref(),
        Some(format!("*HQ,1600068812,V4,NBR,{NOW_FULL}#").as_str())
    );
    let f = one(&mut s, b"*HQ,135790246811220,HTBT,100#");
    assert_eq!(reply(&f).as_deref(), Some("*HQ,135790246811220,HTBT#"));
    let f = one(&mut s, b"*hq,135790246811220,V0,1,2#\r\n");
    assert_eq!(reply(&f).as_deref(), Some("*hq,135790246811220,V0#"));
    // A V1 from a TH device is still answered as Traccar answers it, HQ.
    let f = one(
        &mut s,
        b"*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#\r\n",
    );
    assert_eq!(
        reply(&f).as_deref(),
        Some(format!("*HQ,2020916012,V4,V1,{NOW_FULL}#").as_str())
    );
    // Not answered: other V types, LINK, V3, VP1, XT, SMS, V4, unknown types, binary, X.
    for quiet in [
        &b"*HQ,9180271064,V5,091233,V,2348.8912,N,09021.3302,E,000.00,000,051219,FFFFBBFF,470,01,21019,2033,2921283#"[..],
        b"*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#",
        b"*HQ,356327080425330,XT,1,100#",
        b"*HQ,5226073533,SMS,VOLT:12.9V#",
        b"*HQ,8401016597,BASE,152609,0,0,0,0,211014,FFFFFFFF#",
        b"*TH,2020916012,V4,S20,DONE,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,F7FFFBFF#",
        &h(SHORT)[..],
        &h(X)[..],
    ] {
        let f = one(&mut s, quiet);
        assert_eq!(f.reply, None, "{:?}", String::from_utf8_lossy(quiet));
    }
    // A V1 without an id is the session's device's, but gets no answer (as Traccar).
    let f = one(
        &mut s,
        b"*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#",
    );
    assert_eq!(f.reply, None);
    assert_eq!(f.lenient, vec![text::LENIENT_MISSING_ID]);
    assert_eq!(f.events.len(), 1);
}

#[test]
fn the_ack_setting_answers_r12_to_other_v_messages_and_binary_frames() {
    let mut s = with(ACK, "true");
    let r12 = |id: &str| Some(format!("*HQ,{id},R12,{NOW_HMS}#"));
    let f = one(&mut s, &h(SHORT));
    assert_eq!(reply(&f), r12("4106011660"));
    let f = one(
        &mut s,
        b"*HQ,9180271064,V5,091233,V,2348.8912,N,09021.3302,E,000.00,000,051219,FFFFBBFF#",
    );
    assert_eq!(reply(&f), r12("9180271064"));
    // V1 keeps its own answer; LINK is not a V message.
    let f = one(&mut s, V1.as_bytes());
    assert_eq!(reply(&f), Some(format!("*HQ,4210051415,V4,V1,{NOW_FULL}#")));
    let f = one(
        &mut s,
        b"*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#",
    );
    assert_eq!(f.reply, None);
}

// ---- Identity

#[test]
fn identity_is_announced_once_per_device() {
    let mut s = tcp();
    let f = one(&mut s, V1.as_bytes());
    assert_eq!(f.login.as_deref(), Some("4210051415"));
    assert_eq!(s.imei(), Some("4210051415"));
    let f = one(&mut s, V1.as_bytes());
    assert_eq!(f.login, None);
    let f = one(&mut s, NBR.as_bytes());
    assert_eq!(f.login.as_deref(), Some("1600068812"));
    let f = one(&mut s, &h(LONG_ID));
    assert_eq!(f.login.as_deref(), Some("352483084193293"));
}

#[test]
fn a_message_without_an_id_before_any_is_refused() {
    let mut s = tcp();
    let out = feed(
        &mut s,
        b"*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#",
        &[0],
    );
    let [Err(e)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (e.kind, e.action),
        (ErrorKind::NotLoggedIn, Action::Continue)
    );
    assert_eq!(s.imei(), None);
}

#[test]
fn malformed_text_is_refused_without_reply() {
    let mut s = tcp();
    for bad in [
        &b"*H1,1,V1#"[..],
        b"*HQ,12/34,V1,1#",
        b"*HQ,1,V1,\xff\xfe#",
        b"*HQ#",
    ] {
        let out = feed(&mut s, bad, &[0]);
        assert!(
            matches!(&out[..], [Err(e)] if e.reply.is_none() && e.action == Action::Continue),
            "{:?}: {out:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

// ---- Events

fn raw_str<'a>(e: &'a crate::proto::TelemetryEvent, k: &str) -> Option<&'a str> {
    match e.raw_named(k)? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

#[test]
fn a_v1_position_in_km_h_with_the_knots_kept_raw_and_the_status_mapped() {
    let mut s = tcp();
    let f = one(
        &mut s,
        b"*HQ,4210209006,V1,201812,A,2608.9437,N,08016.2521,W,000.80,000,150317,EFE7F9FF,310,260,0,0,6#",
    );
    let e = &f.events[0];
    let p = e.position.as_ref().unwrap();
    assert!((p.latitude - 26.149062).abs() < 1e-6);
    assert!((p.longitude + 80.270868).abs() < 1e-6);
    assert!((p.speed.unwrap() - 0.8 * 1.852).abs() < 1e-9);
    assert_eq!(
        e.raw_named(name::SPEED_KNOTS),
        Some(&Value::DoubleValue(0.8))
    );
    assert_eq!(
        e.raw_named(name::STATUS),
        Some(&Value::UintValue(0xEFE7_F9FF))
    );
    assert_eq!(raw_str(e, "data1"), Some("310"));
    assert_eq!(raw_str(e, "data5"), Some("6"));
    // EFE7F9FF: bits 9, 10, 19, 20, 28 clear → ignition off, power cut.
    assert_eq!(e.telemetry().ignition, Some(false));
    assert!(e.has_alarm(Alarm::PowerCut));
    assert_eq!(e.kind, EventKind::Alarm as i32);
    assert_eq!(raw_str(e, name::MAKER), Some("HQ"));
    assert_eq!(raw_str(e, name::TYPE), Some("V1"));
}

#[test]
fn a_v1_without_a_readable_fix_is_a_status_with_its_fields_as_sent() {
    let mut s = tcp();
    let f = one(
        &mut s,
        b"*HQ,353588020068342,V1,000000,V,0.0000,0,0.0000,0,0.00,0.00,000000,ffffffff,000106,000002,000203,004c87,16#",
    );
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Status as i32);
    assert!(e.position.is_none() && e.device_time.is_none());
    assert_eq!(raw_str(e, name::LAT_HEMISPHERE), Some("0"));
    assert_eq!(raw_str(e, name::LATITUDE), Some("0.0000"));
    assert_eq!(raw_str(e, name::TIME), Some("000000"));
    assert_eq!(raw_str(e, name::DATE), Some("000000"));
    assert_eq!(e.telemetry().ignition, Some(true));
    // Still confirmed: the device's message was delivered.
    assert!(reply(&f).is_some());
}

#[test]
fn v4_confirmations_answer_the_command_with_its_tag() {
    let mut s = tcp();
    one(
        &mut s,
        b"*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#",
    );
    let cmd = s.encode_command(&CommandRequest::EngineStop).unwrap();
    assert_eq!(
        &cmd[..],
        format!("*HQ,2020916012,S20,{NOW_HMS},1,1#").as_bytes()
    );
    let tag = s.last_command_tag();
    assert!(tag.is_some());
    let answer = format!(
        "*TH,2020916012,V4,S20,DONE,{NOW_HMS},050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,F7FFFBFF#"
    );
    let f = one(&mut s, answer.as_bytes());
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag,
            outcome: AnswerOutcome::Text("S20,DONE".into())
        }]
    );
    let [c, p] = &f.events[..] else {
        panic!("{:?}", f.events)
    };
    assert_eq!(c.kind, EventKind::CommandResponse as i32);
    assert_eq!(c.text.as_deref(), Some("S20,DONE"));
    assert_eq!(raw_str(c, name::COMMAND_TIME), Some(NOW_HMS));
    assert_eq!(p.kind, EventKind::Position as i32);
    assert!(p.position.is_some());
    // The same confirmation again answers nothing more.
    let f = one(&mut s, answer.as_bytes());
    assert!(f.answers.is_empty());
    // An ERROR result is a refusal.
    s.encode_command(&CommandRequest::SetReportInterval { seconds: 30 })
        .unwrap();
    let tag = s.last_command_tag();
    let f = one(
        &mut s,
        format!("*TH,2020916012,V4,S71,ERROR,{NOW_HMS},050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#").as_bytes(),
    );
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag,
            outcome: AnswerOutcome::Refused("S71,ERROR".into())
        }]
    );
}

#[test]
fn commands_need_an_identified_device() {
    let mut s = tcp();
    assert!(matches!(
        s.encode_command(&CommandRequest::EngineStop),
        Err(CommandError::Invalid(_))
    ));
    let mut s = with(REPORT_INTERVAL_COMMAND, "D1");
    one(&mut s, V1.as_bytes());
    let c = s
        .encode_command(&CommandRequest::SetReportInterval { seconds: 60 })
        .unwrap();
    assert_eq!(
        &c[..],
        format!("*HQ,4210051415,D1,{NOW_HMS},60#").as_bytes()
    );
    assert!(s.command_answered());
}

#[test]
fn cell_lists_are_typed() {
    let mut s = tcp();
    let f = one(&mut s, NBR.as_bytes());
    let e = &f.events[0];
    assert_eq!(e.cell_towers.len(), 6);
    assert_eq!(
        e.cell_towers[0],
        CellTower {
            mcc: 262,
            mnc: 2,
            lac: 431,
            cell_id: 17003,
            signal: Some(26)
        }
    );
    let f = one(
        &mut s,
        b"*HQ,355488020882405,V3,095426,74001,04,010278,045142,128,-92,010278,026311,125,,010278,026582,125,,010278,028322,119,,02DD,0,X,090517,FFFFFBFF#",
    );
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Lbs as i32);
    assert_eq!(e.cell_towers.len(), 4);
    assert_eq!(e.cell_towers[0].signal, Some(-92));
    assert_eq!(e.cell_towers[1].signal, None);
    assert_eq!((e.cell_towers[0].mcc, e.cell_towers[0].mnc), (740, 1));
    assert_eq!(
        e.raw_named(name::V3_BATTERY),
        Some(&Value::UintValue(0x02DD))
    );
    let f = one(
        &mut s,
        b"*hq,356327081001239,VP1,V,470,002,92,3565,0Y92,19433,30Y92,1340,29#",
    );
    assert_eq!(f.events[0].cell_towers.len(), 3);
    assert_eq!(f.events[0].cell_towers[2].cell_id, 1340);
    // The 45-byte binary frame's serving cell.
    let f = one(&mut s, &h(LONG));
    assert_eq!(f.events[0].cell_towers[0].mcc, 732);
}

// ---- UDP

#[test]
fn udp_datagrams_are_whole_messages() {
    let mut s = Session::new(Transport::Udp, &ProtocolConfig::default());
    let f = one(&mut s, V1.as_bytes());
    assert!(reply(&f).is_some());
    // Any standard or model size is the datagram's.
    let b46 = h("2421305109380127171003170520046500100286297e003085ffffdfffff03440069129344006400001151415a20");
    let f = one(&mut s, &b46);
    assert!(f.events[0].raw_named(name::TAIL).is_some());
    // A datagram cut short is refused, not held.
    let mut buf = BytesMut::from(&V1.as_bytes()[..30]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadLength);
    assert!(buf.is_empty());
    let mut buf = BytesMut::from(&h(SHORT)[..20]);
    assert!(s.decode(&mut buf, now()).is_err());
    assert!(buf.is_empty());
}

// ---- Round trips

fn arb_fix() -> impl Strategy<Value = crate::protocol::sim::Fix> {
    (
        1_000_000_000_000u64..4_000_000_000_000,
        -89.9f64..89.9,
        -179.9f64..179.9,
        0.0f64..1800.0,
        0.0f64..359.4,
    )
        .prop_map(|(t, lat, lon, kmh, course)| crate::protocol::sim::Fix {
            time_ms: t / 1000 * 1000,
            latitude: lat,
            longitude: lon,
            altitude: 0.0,
            speed_kmh: kmh,
            course,
            satellites: 0,
            hdop: 0.0,
            odometer_m: 0,
            power_mv: 0,
            battery_mv: 0,
            gsm_level: 0,
        })
}

proptest! {
    #[test]
    fn text_and_binary_encodings_decode_to_the_fix(fix in arb_fix(), binary in any::<bool>(), cut in any::<prop::sample::Index>()) {
        use crate::protocol::sim::DeviceCodec;
        let mut d = if binary {
            sim::H02::binary("356307042441013", false)
        } else {
            sim::H02::text("356307042441013", false)
        };
        let unit = d.batch(&[fix]).units.remove(0);
        // Text split anywhere; a lone binary frame split before its end could be cut at a
        // shorter standard size (see `frame::BinaryLength`), so it comes whole.
        let cut = if binary { 0 } else { cut.index(unit.len() + 1) };
        let mut s = tcp();
        let mut frames = ok(feed(&mut s, &unit, &[cut, 0]));
        prop_assert_eq!(frames.len(), 1);
        let f = frames.remove(0);
        let e = &f.events[0];
        let p = e.position.as_ref().unwrap();
        prop_assert!((p.latitude - fix.latitude).abs() < 2e-6);
        prop_assert!((p.longitude - fix.longitude).abs() < 2e-6);
        // Text: knots to 2 decimals; binary: whole knots.
        let tolerance = if binary { 0.5 * 1.852 + 1e-9 } else { 0.006 * 1.852 };
        prop_assert!((p.speed.unwrap() - fix.speed_kmh).abs() <= tolerance, "{:?} vs {}", p.speed, fix.speed_kmh);
        prop_assert_eq!(p.course, Some((fix.course.round() as u32 % 360) as f64));
        prop_assert_eq!(e.device_time.unwrap().seconds, (fix.time_ms / 1000) as i64);
        prop_assert_eq!(f.login.as_deref(), Some("356307042441013"));
    }

    #[test]
    fn arbitrary_text_never_panics_and_always_progresses(body in "[A-Za-z0-9,.\\- #*\r\n]{0,200}") {
        let input = format!("*HQ,4210051415,{body}");
        let mut s = tcp();
        let before = input.len();
        let mut buf = BytesMut::from(input.as_bytes());
        loop {
            let len = buf.len();
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(_)) | Err(_) => prop_assert!(buf.len() < len),
            }
            if buf.is_empty() {
                break;
            }
        }
        prop_assert!(buf.len() <= before);
    }
}
