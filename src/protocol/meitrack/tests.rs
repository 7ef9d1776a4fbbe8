//! Session tests: detection at every prefix, framing whole / byte by byte / split anywhere,
//! exact replies, refusals, photos, commands' exact bytes, and property tests.

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::proto::{EventKind, TelemetryEvent};

const IMEI: &str = "356307042441013";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn session(t: Transport) -> Session {
    Session::new(t, &ProtocolConfig::default())
}

fn tcp() -> Session {
    session(Transport::Tcp)
}

/// Decodes everything in `bytes`: frames and errors, in order.
fn decode_all(s: &mut Session, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            r => out.push(r.map(|f| f.expect("a frame"))),
        }
    }
    out
}

fn frames(s: &mut Session, bytes: &[u8]) -> Vec<Frame> {
    decode_all(s, bytes)
        .into_iter()
        .map(|r| r.expect("no refusal"))
        .collect()
}

fn dev(flag: u8, content: &str) -> Vec<u8> {
    frame::encode_device(flag, IMEI, content.as_bytes()).to_vec()
}

const AAA: &str = "AAA,35,-33.866423,151.190060,121208020649,A,7,27,0,32,4,13,6150,49517,505|2|0B67|5A6C,0000,0000|0000|0000|0977|0000,,";

fn ccc(records: usize) -> Vec<u8> {
    let mut d = b"CCC,".to_vec();
    d.extend_from_slice(&[0x02, 0x01, 52, 0]);
    d.extend_from_slice(&(records as u32 + 5).to_le_bytes());
    for i in 0..records {
        let mut r = vec![35u8];
        r.extend_from_slice(&(54_682_000i32 + i as i32).to_le_bytes());
        r.extend_from_slice(&25_391_000i32.to_le_bytes());
        r.extend_from_slice(&(800_000_000u32 + i as u32).to_le_bytes());
        r.extend_from_slice(&[1, 9, 20]);
        r.resize(52, 0);
        d.extend_from_slice(&r);
    }
    d
}

fn ccc_frame(flag: u8, records: usize) -> Vec<u8> {
    frame::encode_device(flag, IMEI, &ccc(records)).to_vec()
}

// ---- detection ---------------------------------------------------------------------------

#[test]
fn detection_at_every_prefix_length() {
    for f in [
        dev(b'A', AAA),
        ccc_frame(b'z', 2),
        b"$$D28,353358017784062,D03,OK*F3\r\n".to_vec(),
        b"$$E1095,867951078010564,CCE,".to_vec(),
    ] {
        let comma = f.iter().position(|&b| b == b',').unwrap();
        for n in 1..=f.len().min(32) {
            let want = if n > comma {
                Probe::Yes
            } else {
                Probe::NeedMore
            };
            assert_eq!(probe(&f[..n], Transport::Tcp), want, "{:?}", &f[..n]);
        }
        assert_eq!(probe(&f, Transport::Udp), Probe::Yes);
        assert_eq!(probe(&f[..comma], Transport::Udp), Probe::No);
    }
}

#[test]
fn h02_binary_frames_and_other_protocols_are_never_taken() {
    // H02 binary frames (`$` + BCD), including ids that start with BCD 24, whose next bytes
    // are valid BCD that looks like a flag and digits: no comma ever comes.
    let h02: Vec<Vec<u8>> = [
        "2441060116601245431311165035313006004318",
        "2424413132333435363738393031323334353637",
        "2424493939393939393939393939393939393939",
        "2442061191301024031101175540227006012321",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect();
    let others: Vec<Vec<u8>> = vec![
        hex::decode("78780d01").unwrap(),
        hex::decode("000f333536").unwrap(),
        b"#L#356307042441013;NA\r\n".to_vec(),
        b"*HQ,355488020119695,V1,".to_vec(),
        b"+RESP:GTFRI,".to_vec(),
        b"##,imei:359586015829802,A;".to_vec(),
        b"imei:359586015829802,tracker".to_vec(),
        // Meiligao: `$$`, then a binary length.
        hex::decode("2424001112345678901234").unwrap(),
        b"$$A12345,".to_vec(),
        b"$$a,".to_vec(),
    ];
    for f in h02.iter().chain(&others) {
        for n in 1..=f.len() {
            for t in [Transport::Tcp, Transport::Udp] {
                assert_ne!(probe(&f[..n], t), Probe::Yes, "{:02x?} over {t:?}", &f[..n]);
            }
        }
        assert_eq!(probe(f, Transport::Tcp), Probe::No, "{f:02x?} decided");
    }
}

// ---- framing and replies ----------------------------------------------------------------

/// What a frame must produce: its number of events and its reply.
type Want = (usize, Option<Vec<u8>>);

/// A stream of every kind of frame and what each must produce.
fn stream() -> (Vec<u8>, Vec<Want>) {
    let parts = vec![
        (dev(b'A', AAA), 1, None),
        (
            ccc_frame(b'B', 3),
            3,
            Some(frame::encode(b'B', IMEI, b"CCC,3").to_vec()),
        ),
        (
            dev(b'z', "AAC,1"),
            1,
            Some(frame::encode(b'z', IMEI, b"AAC,1").to_vec()),
        ),
        (dev(b'C', "A12,OK"), 1, None),
    ];
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for (f, n, r) in parts {
        bytes.extend_from_slice(&f);
        want.push((n, r));
    }
    (bytes, want)
}

fn check_stream(got: &[Frame], want: &[Want]) {
    assert_eq!(got.len(), want.len());
    for (i, (f, (n, r))) in got.iter().zip(want).enumerate() {
        assert_eq!(f.events.len(), *n, "frame {i}");
        assert_eq!(f.reply.as_deref(), r.as_deref(), "frame {i}");
        assert_eq!(f.login.is_some(), i == 0, "frame {i}");
    }
}

#[test]
fn a_stream_whole_byte_by_byte_and_split_anywhere() {
    let (bytes, want) = stream();
    check_stream(&frames(&mut tcp(), &bytes), &want);
    // Byte by byte.
    let mut s = tcp();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in &bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            got.push(f);
        }
    }
    assert!(buf.is_empty());
    check_stream(&got, &want);
    // Split at every point.
    for at in 0..bytes.len() {
        let mut s = tcp();
        let mut buf = BytesMut::from(&bytes[..at]);
        let mut got = Vec::new();
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            got.push(f);
        }
        buf.extend_from_slice(&bytes[at..]);
        while let Some(f) = s.decode(&mut buf, now()).unwrap() {
            got.push(f);
        }
        check_stream(&got, &want);
    }
}

#[test]
fn udp_datagrams_stand_alone() {
    let mut s = session(Transport::Udp);
    let f = frames(&mut s, &ccc_frame(b'Q', 2));
    assert_eq!(
        f[0].reply.as_deref(),
        Some(&frame::encode(b'Q', IMEI, b"CCC,2")[..])
    );
    // A datagram cut short is refused at once and nothing of it is kept.
    let cut = ccc_frame(b'R', 2);
    let mut buf = BytesMut::from(&cut[..cut.len() - 3]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::BadLength, Action::Continue));
    assert!(buf.is_empty());
}

#[test]
fn checksums_are_strict_and_never_answered() {
    let good = ccc_frame(b'B', 1);
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 4] = if bad[n - 4] == b'0' { b'1' } else { b'0' };
    let mut s = tcp();
    let out = decode_all(&mut s, &[bad.clone(), good.clone()].concat());
    let [Err(e), Ok(f)] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (e.kind, e.action),
        (ErrorKind::BadChecksum, Action::Continue)
    );
    assert!(e.reply.is_none());
    assert!(f.reply.is_some(), "the frame after it is read");
    // Lower-case digits are the same checksum.
    let mut lower = good.clone();
    lower[n - 4..n - 2].make_ascii_lowercase();
    assert!(decode_all(&mut tcp(), &lower)[0].is_ok());
    // A data byte changed under a kept checksum.
    let mut flipped = good;
    flipped[40] ^= 1;
    assert!(matches!(
        &decode_all(&mut tcp(), &flipped)[0],
        Err(e) if e.kind == ErrorKind::BadChecksum
    ));
}

#[test]
fn wrong_lengths_and_caps_are_refused_and_the_stream_goes_on() {
    let good = dev(b'A', AAA);
    let text = String::from_utf8(good.clone()).unwrap();
    let len: usize = text[3..6].parse().unwrap();
    let short = format!("{}{}{}", &text[..3], len - 1, &text[6..]);
    let mut s = tcp();
    let out = decode_all(&mut s, &[short.as_bytes(), &good].concat());
    assert!(
        matches!(&out[0], Err(e) if e.kind == ErrorKind::BadLength && e.action == Action::Continue)
    );
    assert!(matches!(out.last(), Some(Ok(f)) if f.events.len() == 1));
    // Over the cap: refused from the header.
    let cfg = ProtocolConfig::default().with(NAME, "max_frame_bytes", "100");
    let mut s = Session::new(Transport::Tcp, &cfg);
    let mut buf = BytesMut::from(&good[..10]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
}

#[test]
fn reports_are_positions_alarms_or_status() {
    let mut s = tcp();
    let f = &frames(&mut s, &dev(b'A', AAA))[0];
    let e = &f.events[0];
    assert_eq!(e.kind, EventKind::Position as i32);
    assert_eq!(e.protocol, Protocol::Meitrack as i32);
    assert_eq!(e.device_time.unwrap().seconds, 1_354_932_409);
    assert!(f.reply.is_none(), "AAA is not answered");
    let sos = AAA.replacen("AAA,35,", "AAA,1,", 1);
    let e = &frames(&mut s, &dev(b'B', &sos))[0].events[0];
    assert_eq!(e.kind, EventKind::Alarm as i32);
    assert!(e.has_alarm(crate::proto::Alarm::Sos));
    // A report that does not parse is refused, the session goes on.
    let broken = AAA.replacen(",A,7,", ",Q,7,", 1);
    let out = decode_all(&mut s, &dev(b'C', &broken));
    assert!(matches!(&out[0], Err(e) if e.kind == ErrorKind::BadValue));
    // The same report under another flag is the same content: the same event ids.
    let a = frames(&mut tcp(), &dev(b'A', AAA))[0].digest;
    let b = frames(&mut tcp(), &dev(b'k', AAA))[0].digest;
    assert_eq!(a, b);
}

#[test]
fn an_unknown_ccc_layout_is_kept_and_confirmed() {
    let mut d = ccc(2);
    d[4] = 0x01;
    d[5] = 0x05;
    let f = &frames(&mut tcp(), &frame::encode_device(b'c', IMEI, &d))[0];
    assert_eq!(f.events.len(), 2);
    assert!(f
        .events
        .iter()
        .all(|e| e.kind == EventKind::Unknown as i32 && e.raw_named("record").is_some()));
    assert_eq!(
        f.reply.as_deref(),
        Some(&frame::encode(b'c', IMEI, b"CCC,2")[..])
    );
    // A batch whose records do not divide its data is refused and not confirmed.
    let mut d = ccc(2);
    d.push(0);
    let out = decode_all(&mut tcp(), &frame::encode_device(b'c', IMEI, &d));
    assert!(matches!(&out[0], Err(e) if e.kind == ErrorKind::Malformed && e.reply.is_none()));
}

#[test]
fn a_new_imei_on_the_connection_is_announced() {
    let mut s = session(Transport::Udp);
    let a = frames(&mut s, &dev(b'A', AAA));
    let again = frames(&mut s, &dev(b'B', AAA));
    let other = frames(
        &mut s,
        &frame::encode_device(b'C', "356307042441047", AAA.as_bytes()),
    );
    assert_eq!(a[0].login.as_deref(), Some(IMEI));
    assert_eq!(again[0].login, None);
    assert_eq!(other[0].login.as_deref(), Some("356307042441047"));
    assert_eq!(s.imei(), Some("356307042441047"));
}

// ---- photos -------------------------------------------------------------------------------

fn chunk(name: &str, total: u32, i: u32, data: &[u8]) -> Vec<u8> {
    let mut c = format!("D00,{name},{total},{i},").into_bytes();
    c.extend_from_slice(data);
    frame::encode_device(b'D', IMEI, &c).to_vec()
}

fn request(name: &str, next: u32) -> Vec<u8> {
    frame::encode(b'O', IMEI, format!("D00,{name},{next}").as_bytes()).to_vec()
}

#[test]
fn a_photo_is_reassembled_run_by_run() {
    let name = "180224072614_C1E1.jpg";
    let parts: Vec<Vec<u8>> = (0..10u8)
        .map(|i| vec![i, b'*', b'\r', b'\n', b',', 0xFF])
        .collect();
    let mut s = tcp();
    let mut file = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let i = i as u32;
        let f = &frames(&mut s, &chunk(name, 10, i, p))[0];
        file.extend_from_slice(p);
        match i {
            7 => assert_eq!(f.reply.as_deref(), Some(&request(name, 8)[..])),
            9 => {
                assert!(f.reply.is_none());
                let e: &TelemetryEvent = &f.events[0];
                assert_eq!(e.kind, EventKind::File as i32);
                let file_ev = e.file.as_ref().unwrap();
                assert_eq!((file_ev.name.as_str(), &file_ev.data), (name, &file));
            }
            _ => assert!(f.reply.is_none() && f.events.is_empty(), "chunk {i}"),
        }
    }
    // The same photo again has the same id; another photo ending alike does not.
    let mut again = tcp();
    let mut other = tcp();
    let mut last = (0, 0);
    for (i, p) in parts.iter().enumerate() {
        let a = frames(&mut again, &chunk(name, 10, i as u32, p));
        let q = if i == 0 { vec![9, 9] } else { p.clone() };
        let b = frames(&mut other, &chunk(name, 10, i as u32, &q));
        last = (a[0].digest, b[0].digest);
    }
    assert_ne!(last.0, last.1);
}

#[test]
fn a_lost_chunk_is_asked_again_once_per_run() {
    let name = "p.jpg";
    let mut s = tcp();
    for i in 0..3 {
        frames(&mut s, &chunk(name, 20, i, b"ab"));
    }
    // Chunk 3 is lost; 4..=6 are refused without a reply, 7 (the end of the run) asks again.
    for i in 4..=7 {
        let out = decode_all(&mut s, &chunk(name, 20, i, b"ab"));
        let Err(e) = &out[0] else { panic!() };
        assert_eq!(e.kind, ErrorKind::BadValue);
        let want = (i == 7).then(|| request(name, 3));
        assert_eq!(e.reply.as_deref(), want.as_deref(), "chunk {i}");
    }
    // A resent chunk is acknowledged again without being stored twice.
    let f = &frames(&mut s, &chunk(name, 20, 2, b"ab"))[0];
    assert!(f.events.is_empty());
}

#[test]
fn a_photo_over_the_cap_is_dropped() {
    let cfg = ProtocolConfig::default().with(NAME, "max_file_bytes", "10");
    let mut s = Session::new(Transport::Tcp, &cfg);
    frames(&mut s, &chunk("p.jpg", 3, 0, b"123456"));
    let out = decode_all(&mut s, &chunk("p.jpg", 3, 1, b"123456"));
    assert!(matches!(&out[0], Err(e) if e.kind == ErrorKind::BadValue));
    // Nothing of it is left: the next chunk is out of order.
    let out = decode_all(&mut s, &chunk("p.jpg", 3, 2, b"1"));
    assert!(matches!(&out[0], Err(e) if e.detail.contains("out of order")));
}

#[test]
fn a_photo_command_answer_asks_for_the_photo() {
    let mut s = tcp();
    frames(&mut s, &dev(b'A', AAA));
    let cmd = s
        .encode_command(&CommandRequest::Text("D03,1,front.jpg".into()))
        .unwrap();
    assert_eq!(&cmd[..], &frame::encode(b'A', IMEI, b"D03,1,front.jpg")[..]);
    let f = &frames(&mut s, &dev(b'A', "D03,OK"))[0];
    assert_eq!(f.reply.as_deref(), Some(&request("front.jpg", 0)[..]));
    assert_eq!(f.answers[0].tag, s.last_command_tag());
    assert_eq!(f.events[0].kind, EventKind::CommandResponse as i32);
    assert_eq!(f.events[0].text.as_deref(), Some("D03,OK"));
}

// ---- commands -----------------------------------------------------------------------------

#[test]
fn commands_exact_bytes_and_flags() {
    let mut s = tcp();
    assert!(matches!(
        s.encode_command(&CommandRequest::PositionRequest),
        Err(CommandError::Invalid(_))
    ));
    frames(&mut s, &dev(b'A', AAA));
    let cases = [
        (CommandRequest::PositionRequest, "A10"),
        (CommandRequest::EngineStop, "C01,0,12222"),
        (CommandRequest::EngineResume, "C01,0,02222"),
        (
            CommandRequest::OutputSet { index: 2, on: true },
            "C01,0,21222",
        ),
        (CommandRequest::SetReportInterval { seconds: 30 }, "A12,3"),
        (CommandRequest::Reboot, "F01"),
        (
            CommandRequest::Text("C02,0,15360853789,Meitrack".into()),
            "C02,0,15360853789,Meitrack",
        ),
    ];
    let mut flag = b'A';
    for (req, content) in cases {
        let out = s.encode_command(&req).unwrap();
        assert_eq!(
            &out[..],
            &frame::encode(flag, IMEI, content.as_bytes())[..],
            "{req:?}"
        );
        let name: [u8; 3] = content.as_bytes()[..3].try_into().unwrap();
        assert_eq!(s.last_command_tag(), Some(command::tag(flag, &name)));
        flag = command::next_flag(flag);
    }
    // Invalid requests use no flag.
    assert!(s
        .encode_command(&CommandRequest::Text("reboot".into()))
        .is_err());
    assert_eq!(
        &s.encode_command(&CommandRequest::PositionRequest).unwrap()[2..3],
        &[flag]
    );
}

#[test]
fn answers_carry_the_flag_and_command_back() {
    let mut s = tcp();
    frames(&mut s, &dev(b'A', AAA));
    s.encode_command(&CommandRequest::SetReportInterval { seconds: 60 })
        .unwrap();
    let f = &frames(&mut s, &dev(b'A', "A12,OK"))[0];
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag: s.last_command_tag(),
            outcome: AnswerOutcome::Text("A12,OK".into())
        }]
    );
    // A report under the same flag answers nothing but an A10.
    assert!(frames(&mut s, &dev(b'A', AAA))[0].answers.is_empty());
    let locate = AAA.replacen("AAA,35,", "AAA,34,", 1);
    let f = &frames(&mut s, &dev(b'A', &locate))[0];
    assert_eq!(f.answers[0].tag, Some(command::tag(b'A', b"A10")));
    assert_eq!(f.events[0].kind, EventKind::Position as i32);
}

// ---- properties ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Any content, binary included, framed by its length: it splits back exactly, whole and
    /// in any two pieces.
    #[test]
    fn frames_round_trip(flag in 0x41u8..=0x7A, data in proptest::collection::vec(any::<u8>(), 0..600), at in any::<usize>()) {
        let mut content = b"D82,".to_vec();
        content.extend_from_slice(&data);
        let f = frame::encode_device(flag, IMEI, &content);
        let mut s = tcp();
        let cut = at % (f.len() + 1);
        let mut buf = BytesMut::from(&f[..cut]);
        prop_assert!(s.decode(&mut buf, now()).unwrap().is_none() || cut == f.len());
        let mut buf = BytesMut::from(&f[..]);
        let out = s.decode(&mut buf, now()).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(&out.answers[0].tag, &Some(command::tag(flag, b"D82")));
        let raw_data = out.events[0].raw_named("data").cloned();
        match std::str::from_utf8(&data) {
            Ok(t) => prop_assert_eq!(out.events[0].text.clone(), Some(mapping::answer_text("D82", t))),
            Err(_) => prop_assert_eq!(raw_data, Some(crate::proto::raw_value::Value::BytesValue(data.clone()))),
        }
    }

    /// `CCC` records of any values decode to what was encoded.
    #[test]
    fn ccc_records_round_trip(
        lat in -90_000_000i32..=90_000_000, lon in -180_000_000i32..=180_000_000,
        t in any::<u32>(), speed in any::<u16>(), alt in any::<i16>(), mileage in any::<u32>(),
        event in any::<u8>(), power in any::<u16>(),
    ) {
        let mut r = vec![event];
        r.extend_from_slice(&lat.to_le_bytes());
        r.extend_from_slice(&lon.to_le_bytes());
        r.extend_from_slice(&t.to_le_bytes());
        r.extend_from_slice(&[1, 5, 20]);
        r.extend_from_slice(&speed.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.extend_from_slice(&alt.to_le_bytes());
        r.extend_from_slice(&mileage.to_le_bytes());
        r.resize(46, 0);
        r.extend_from_slice(&power.to_le_bytes());
        r.resize(52, 0);
        let mut d = b"CCC,".to_vec();
        d.extend_from_slice(&[0x02, 0x01, 52, 0, 1, 0, 0, 0]);
        d.extend_from_slice(&r);
        let f = &frames(&mut tcp(), &frame::encode_device(b'X', IMEI, &d))[0];
        let e = &f.events[0];
        prop_assert_eq!(e.device_time.unwrap().seconds, record::EPOCH_2000 + i64::from(t));
        prop_assert_eq!(e.raw_named("event_code"), Some(&crate::proto::raw_value::Value::UintValue(event.into())));
        prop_assert_eq!(e.raw_named("mileage"), Some(&crate::proto::raw_value::Value::UintValue(mileage.into())));
        prop_assert_eq!(e.raw_named("power_centivolts"), Some(&crate::proto::raw_value::Value::UintValue(power.into())));
        match &e.position {
            Some(p) => {
                prop_assert_eq!(p.latitude, f64::from(lat) / 1e6);
                prop_assert_eq!(p.longitude, f64::from(lon) / 1e6);
                prop_assert_eq!(p.speed, Some(f64::from(speed)));
                prop_assert_eq!(p.altitude, Some(f64::from(alt)));
            }
            None => prop_assert!(lat == 0 && lon == 0),
        }
    }
}
