//! Session tests with packets built here: framing (whole, byte by byte, split at every point),
//! every data type, hidden blocks, large and oversized packets, truncation at every byte,
//! malformed blocks, many units on one connection, detection at every prefix against every
//! other protocol's frames, commands, and property tests (encode then decode).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use proptest::prelude::*;

use super::packet::{self, data_type, flag, Block, Packet, PosInfo, Value};
use super::*;
use crate::proto::raw_value::Value as RawV;
use crate::proto::{Alarm, EventKind, TelemetryEvent};

/// Traccar's first Retranslator frame (the spec's example): unit 353976013445485, posinfo,
/// pwr_ext, avl_inputs.
const TRACCAR_1: &str = "74000000333533393736303133343435343835004b0bfb70000000030bbb000000270102706f73696e666f00a027afdf5d9848403ac7253383dd4b400000000000805a40003601460b0bbb0000001200047077725f657874002b8716d9ce973b400bbb00000011010361766c5f696e707574730000000001";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn session() -> Session {
    Session::new(&ProtocolConfig::default())
}

fn with_cap(cap: usize) -> Session {
    let config = ProtocolConfig::default()
        .configure([(NAME, "max_frame_bytes", cap.to_string().as_str())])
        .unwrap();
    Session::new(&config)
}

/// Decodes everything in `bytes`, fed at once.
fn decode_all(s: &mut Session, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
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

fn one(bytes: &[u8]) -> Frame {
    let mut out = decode_all(&mut session(), bytes);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0).unwrap()
}

fn only_event(f: &Frame) -> &TelemetryEvent {
    assert_eq!(f.events.len(), 1);
    &f.events[0]
}

fn pos() -> PosInfo {
    PosInfo {
        longitude: 25.2797,
        latitude: 54.6872,
        altitude: 112.0,
        speed: 61,
        course: 275,
        satellites: 12,
    }
}

fn b<'a>(name: &'a str, value: Value<'a>) -> Block<'a> {
    Block {
        hidden: 0,
        name,
        value,
    }
}

fn build(unit: &str, blocks: Vec<Block<'_>>) -> Vec<u8> {
    packet::encode(&Packet {
        unit: unit.as_bytes(),
        time: 1_750_000_000,
        flags: flag::POSITION,
        blocks,
    })
}

fn sample(unit: &str) -> Vec<u8> {
    build(
        unit,
        vec![
            b("posinfo", Value::Position(pos())),
            b("pwr_ext", Value::Double(12.6)),
        ],
    )
}

// ---------------------------------------------------------------------------------------
// The spec's example (Traccar's first frame)

#[test]
fn the_specs_example_decodes_to_its_unit_position_and_values() {
    let f = one(&h(TRACCAR_1));
    assert_eq!(f.relayed.as_deref(), Some("353976013445485"));
    assert!(f.login.is_none(), "a relay connection has no identity");
    assert_eq!(f.reply.as_deref(), Some(&[0x11][..]));
    assert!(!f.close && f.answers.is_empty() && f.lenient.is_empty());
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::Position as i32);
    // 2009-11-24 15:27:44 UTC
    assert_eq!(e.device_time.unwrap().seconds, 0x4b0b_fb70);
    let p = e.position.unwrap();
    assert_eq!((p.longitude, p.latitude), (49.1903648, 55.7305664));
    assert_eq!(
        (p.altitude, p.speed, p.course, p.satellites, p.valid),
        (Some(106.0), Some(54.0), Some(326.0), Some(11), true)
    );
    let t = e.telemetry();
    assert_eq!(t.external_power_volts, Some(27.593));
    assert_eq!(t.digital_inputs, Some(1));
    assert_eq!(e.raw_named("msg_flags"), Some(&RawV::UintValue(3)));
    assert_eq!(e.raw_named("pwr_ext"), Some(&RawV::DoubleValue(27.593)));
    assert_eq!(e.raw_named("avl_inputs"), Some(&RawV::IntValue(1)));
    assert_eq!(e.raw.len(), 3, "posinfo is the position, not raw");
}

#[test]
fn a_resent_packet_digests_alike_and_another_one_does_not() {
    let a = one(&h(TRACCAR_1));
    let again = one(&h(TRACCAR_1));
    assert_eq!(a.digest, again.digest);
    let mut other = h(TRACCAR_1);
    *other.last_mut().unwrap() = 3;
    assert_ne!(one(&other).digest, a.digest);
}

// ---------------------------------------------------------------------------------------
// Framing

#[test]
fn a_stream_of_packets_decodes_whole_byte_by_byte_and_split_anywhere() {
    let stream = [
        h(TRACCAR_1),
        sample("unit-a"),
        sample("unit-b"),
        h(TRACCAR_1),
    ]
    .concat();
    let expect: Vec<(Option<String>, u128)> = decode_all(&mut session(), &stream)
        .into_iter()
        .map(|f| {
            let f = f.unwrap();
            (f.relayed, f.digest)
        })
        .collect();
    assert_eq!(expect.len(), 4);
    assert_eq!(expect[1].0.as_deref(), Some("unit-a"));
    assert_eq!(expect[2].0.as_deref(), Some("unit-b"));
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut s = session();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(f) = s.decode(&mut buf, now()).unwrap() {
                got.push((f.relayed, f.digest));
            }
        }
        assert!(buf.is_empty());
        got
    };
    assert_eq!(run(&mut stream.chunks(1)), expect, "byte by byte");
    for at in 0..=stream.len() {
        let (x, y) = stream.split_at(at);
        assert_eq!(run(&mut [x, y].into_iter()), expect, "split at {at}");
    }
}

#[test]
fn nothing_is_consumed_until_a_packet_is_whole() {
    let p = h(TRACCAR_1);
    let mut s = session();
    for n in 0..p.len() {
        let mut buf = BytesMut::from(&p[..n]);
        assert!(s.decode(&mut buf, now()).unwrap().is_none(), "prefix {n}");
        assert_eq!(buf.len(), n);
    }
}

#[test]
fn a_size_below_the_smallest_packet_closes_the_connection() {
    for size in [0u32, 1, 9] {
        let mut bytes = size.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[b'1'; 16]);
        let out = decode_all(&mut session(), &bytes);
        let [Err(e)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((e.kind, e.action), (ErrorKind::BadLength, Action::Close));
        assert!(e.reply.is_none());
    }
}

#[test]
fn an_oversized_packet_is_refused_from_its_size_field_alone() {
    let mut s = with_cap(1024);
    let mut buf = BytesMut::from(&1021u32.to_le_bytes()[..]);
    let e = s.decode(&mut buf, now()).unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::TooLarge, Action::Close));
    assert!(
        e.detail.contains("1025") && e.detail.contains("1024"),
        "{e}"
    );
    // 4 GiB announced: refused before anything is buffered.
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    let e = session().decode(&mut buf, now()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    // Exactly the cap, size field included, is accepted; one byte more is not.
    let empty = build("u", vec![b("img", Value::Binary(&[]))]).len();
    let filler = vec![0x5A; 1024 - empty];
    let p = build("u", vec![b("img", Value::Binary(&filler))]);
    assert_eq!(p.len(), 1024);
    let out = decode_all(&mut with_cap(1024), &p);
    assert!(matches!(&out[..], [Ok(_)]), "{out:?}");
    let out = decode_all(&mut with_cap(1023), &p);
    assert!(
        matches!(&out[..], [Err(e)] if e.kind == ErrorKind::TooLarge),
        "{out:?}"
    );
}

#[test]
fn a_large_image_block_decodes_under_the_default_cap() {
    let image: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let p = build(
        "cam-1",
        vec![
            b("posinfo", Value::Position(pos())),
            b("image", Value::Binary(&image)),
        ],
    );
    assert!(p.len() > 256 * 1024);
    let f = one(&p);
    let e = only_event(&f);
    assert_eq!(e.raw_named("image"), Some(&RawV::BytesValue(image)));
    assert_eq!(e.kind, EventKind::Position as i32);
}

// ---------------------------------------------------------------------------------------
// Data types and blocks

#[test]
fn every_data_type_lands_in_raw_typed_and_exact() {
    let p = build(
        "353976013445485",
        vec![
            b("posinfo", Value::Position(pos())),
            b("txt", Value::Text(b"hello, world")),
            b("empty_txt", Value::Text(b"")),
            b("bin", Value::Binary(&[0, 1, 0xFF])),
            b("empty_bin", Value::Binary(&[])),
            b("i32_min", Value::Int(i32::MIN)),
            b("i32_neg", Value::Int(-5)),
            b("dbl", Value::Double(-0.125)),
            b("dbl_big", Value::Double(1.0e300)),
            b("i64_max", Value::Long(i64::MAX)),
            b("i64_neg", Value::Long(-9_000_000_000)),
            b(
                "type9",
                Value::Other {
                    data_type: 9,
                    bytes: &[9, 9],
                },
            ),
            b(
                "type0",
                Value::Other {
                    data_type: 0,
                    bytes: &[],
                },
            ),
        ],
    );
    // Each block is encoded as the spec lays it out: check two by hand.
    let dbl = [
        &[0x0B, 0xBB, 0, 0, 0, 14, 0, 4][..],
        b"dbl\0",
        &(-0.125f64).to_le_bytes(),
    ]
    .concat();
    assert!(p.windows(dbl.len()).any(|w| w == dbl), "double block, LE");
    let int = [
        &[0x0B, 0xBB, 0, 0, 0, 14, 0, 3][..],
        b"i32_neg\0",
        &[0xFF, 0xFF, 0xFF, 0xFB],
    ]
    .concat();
    assert!(p.windows(int.len()).any(|w| w == int), "i32 block, BE");
    let f = one(&p);
    let e = only_event(&f);
    let raw = |n: &str| e.raw_named(n).cloned();
    assert_eq!(raw("txt"), Some(RawV::StringValue("hello, world".into())));
    assert_eq!(raw("empty_txt"), Some(RawV::StringValue(String::new())));
    assert_eq!(raw("bin"), Some(RawV::BytesValue(vec![0, 1, 0xFF])));
    assert_eq!(raw("empty_bin"), Some(RawV::BytesValue(vec![])));
    assert_eq!(raw("i32_min"), Some(RawV::IntValue(i64::from(i32::MIN))));
    assert_eq!(raw("i32_neg"), Some(RawV::IntValue(-5)));
    assert_eq!(raw("dbl"), Some(RawV::DoubleValue(-0.125)));
    assert_eq!(raw("dbl_big"), Some(RawV::DoubleValue(1.0e300)));
    assert_eq!(raw("i64_max"), Some(RawV::IntValue(i64::MAX)));
    assert_eq!(raw("i64_neg"), Some(RawV::IntValue(-9_000_000_000)));
    assert_eq!(raw("type9"), Some(RawV::BytesValue(vec![9, 9])));
    assert_eq!(raw("type0"), Some(RawV::BytesValue(vec![])));
    assert_eq!(e.raw.len(), 1 + 12);
    let p = e.position.unwrap();
    assert_eq!(
        (p.latitude, p.longitude, p.speed),
        (54.6872, 25.2797, Some(61.0))
    );
}

#[test]
fn hidden_blocks_are_values_like_any_other() {
    let mut blocks = vec![
        b("posinfo", Value::Position(pos())),
        b("pwr_ext", Value::Double(13.8)),
        b("avl_inputs", Value::Int(6)),
    ];
    for bl in &mut blocks {
        bl.hidden = 1;
    }
    let hidden = one(&build("u1", blocks.clone()));
    for bl in &mut blocks {
        bl.hidden = 0;
    }
    let shown = one(&build("u1", blocks));
    let (eh, es) = (only_event(&hidden), only_event(&shown));
    assert_eq!(eh.raw, es.raw);
    assert_eq!(eh.telemetry, es.telemetry);
    assert_eq!(eh.position, es.position);
    assert_eq!(eh.telemetry().digital_inputs, Some(6));
    // The byte is part of the packet: a different packet, a different digest.
    assert_ne!(hidden.digest, shown.digest);
}

#[test]
fn a_packet_without_blocks_is_a_status_with_its_flags() {
    let p = build("u", vec![]);
    assert_eq!(p.len(), 4 + 2 + 8);
    let f = one(&p);
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::Status as i32);
    assert_eq!(e.raw_named("msg_flags"), Some(&RawV::UintValue(1)));
}

#[test]
fn the_alarm_flag_makes_an_alarm_event() {
    let p = packet::encode(&Packet {
        unit: b"u",
        time: 1,
        flags: flag::POSITION | flag::ALARM | flag::DRIVER,
        blocks: vec![
            b("posinfo", Value::Position(pos())),
            b("avl_driver", Value::Text(b"0012345678")),
        ],
    });
    let f = one(&p);
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::Alarm as i32);
    assert!(e.has_alarm(Alarm::General));
    assert!(e.position.is_some());
    assert_eq!(e.telemetry().driver_id.as_deref(), Some("0012345678"));
}

// ---------------------------------------------------------------------------------------
// Malformed packets

/// The outcome of a malformed packet that names its unit: one UNKNOWN event with the packet,
/// the reason, the unit and the answer.
fn assert_unknown(bytes: &[u8], unit: &str, why: &str) {
    let f = one(bytes);
    assert_eq!(f.relayed.as_deref(), Some(unit));
    assert_eq!(f.reply.as_deref(), Some(&[ACK][..]));
    let e = only_event(&f);
    assert_eq!(e.kind, EventKind::Unknown as i32, "{why}");
    assert_eq!(
        e.raw_named("packet"),
        Some(&RawV::BytesValue(bytes.to_vec()))
    );
    let Some(crate::proto::attribute_value::Value::StringValue(reason)) = e.attr("decode_error")
    else {
        panic!("no decode_error")
    };
    assert!(reason.contains(why), "{reason:?} should say {why:?}");
}

/// A packet with one hand-made block after a valid header.
fn with_raw_block(block: &[u8]) -> Vec<u8> {
    let mut p = build("u7", vec![]);
    p.extend_from_slice(block);
    let size = u32::try_from(p.len() - 4).unwrap();
    p[..4].copy_from_slice(&size.to_le_bytes());
    p
}

fn block_bytes(ty: u16, hidden: u8, dt: u8, name: &[u8], value: &[u8]) -> Vec<u8> {
    let body = [&[hidden, dt][..], name, &[0], value].concat();
    [
        &ty.to_be_bytes()[..],
        &u32::try_from(body.len()).unwrap().to_be_bytes(),
        &body,
    ]
    .concat()
}

#[test]
fn values_of_the_wrong_size_for_their_type_make_the_packet_unknown() {
    let cases: &[(u8, &[u8], &str)] = &[
        (data_type::INT, &[1, 2, 3], "i32 value is 4 bytes"),
        (data_type::INT, &[1, 2, 3, 4, 5], "i32 value is 4 bytes"),
        (data_type::DOUBLE, &[0; 7], "double value is 8 bytes"),
        (data_type::LONG, &[0; 9], "i64 value is 8 bytes"),
        (data_type::TEXT, b"no nul", "text value must end"),
        (data_type::TEXT, b"a\0b\0", "text value must end"),
        (data_type::TEXT, b"", "text value must end"),
    ];
    for (dt, value, why) in cases {
        assert_unknown(
            &with_raw_block(&block_bytes(0x0BBB, 0, *dt, b"v", value)),
            "u7",
            why,
        );
    }
    let mut short = Vec::new();
    pos().write(&mut short);
    short.pop();
    assert_unknown(
        &with_raw_block(&block_bytes(
            0x0BBB,
            1,
            data_type::BINARY,
            b"posinfo",
            &short,
        )),
        "u7",
        "posinfo value is 29 bytes",
    );
}

#[test]
fn broken_block_structure_makes_the_packet_unknown() {
    assert_unknown(
        &with_raw_block(&block_bytes(0x0BBC, 0, 3, b"v", &[0; 4])),
        "u7",
        "type 0x0bbc",
    );
    // A block size that runs past the packet.
    let mut blk = block_bytes(0x0BBB, 0, 3, b"v", &[0; 4]);
    blk[5] += 1;
    assert_unknown(&with_raw_block(&blk), "u7", "runs past the packet");
    // A name without its NUL, and one that is not UTF-8.
    let nameless = [&[0x0B, 0xBB, 0, 0, 0, 4, 0, 3][..], b"ab"].concat();
    assert_unknown(&with_raw_block(&nameless), "u7", "NUL-terminated name");
    assert_unknown(
        &with_raw_block(&block_bytes(0x0BBB, 0, 3, b"\xff\xfe", &[0; 4])),
        "u7",
        "not UTF-8",
    );
    // A block of one byte, and a block header cut short.
    assert_unknown(
        &with_raw_block(&[0x0B, 0xBB, 0, 0, 0, 1, 0]),
        "u7",
        "NUL-terminated name",
    );
    assert_unknown(&with_raw_block(&[0x0B, 0xBB, 0, 0]), "u7", "cut short");
    // The header's time and flags missing.
    let mut p = 10u32.to_le_bytes().to_vec();
    p.extend_from_slice(b"ab\0\0\0\0\0\0\0\0");
    assert_unknown(&p, "ab", "time and flags");
}

#[test]
fn a_packet_without_a_unit_is_answered_and_counted_but_publishes_nothing() {
    for unit in [
        &b"no-nul-anywhere-in-this-packet"[..],
        b"\0starts-with-nul-xx",
    ] {
        let mut p = u32::try_from(unit.len()).unwrap().to_le_bytes().to_vec();
        p.extend_from_slice(unit);
        p.extend_from_slice(&sample("next")); // the stream goes on after it
        let out = decode_all(&mut session(), &p);
        let [Err(e), Ok(next)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((e.kind, e.action), (ErrorKind::Malformed, Action::Continue));
        assert_eq!(
            e.reply.as_deref(),
            Some(&[ACK][..]),
            "answered, or Wialon stalls"
        );
        assert_eq!(next.relayed.as_deref(), Some("next"));
    }
}

#[test]
fn a_packet_cut_at_every_byte_is_a_frame_an_unknown_event_or_an_answered_error() {
    let full = build(
        "353976013445485",
        vec![
            b("posinfo", Value::Position(pos())),
            b("pwr_ext", Value::Double(12.6)),
            b("fw", Value::Text(b"1.2.3")),
        ],
    );
    let body = &full[4..];
    let unit_end = body.iter().position(|&b| b == 0).unwrap();
    // Block boundaries (offsets in the body where a block ends).
    let mut boundaries = vec![unit_end + 1 + 8];
    let mut at = unit_end + 1 + 8;
    while at < body.len() {
        let size = u32::from_be_bytes(body[at + 2..at + 6].try_into().unwrap()) as usize;
        at += 6 + size;
        boundaries.push(at);
    }
    for cut in usize::try_from(frame::MIN_SIZE).unwrap()..body.len() {
        let mut p = u32::try_from(cut).unwrap().to_le_bytes().to_vec();
        p.extend_from_slice(&body[..cut]);
        let out = decode_all(&mut session(), &p);
        let [r] = &out[..] else {
            panic!("cut {cut}: {out:?}")
        };
        match r {
            Err(e) => {
                assert!(cut <= unit_end, "cut {cut}: {e}");
                assert_eq!(e.reply.as_deref(), Some(&[ACK][..]));
            }
            Ok(f) => {
                assert_eq!(f.relayed.as_deref(), Some("353976013445485"), "cut {cut}");
                assert_eq!(f.reply.as_deref(), Some(&[ACK][..]));
                let kind = only_event(f).kind;
                if boundaries.contains(&cut) {
                    assert_ne!(kind, EventKind::Unknown as i32, "cut {cut} at a block end");
                } else {
                    assert_eq!(kind, EventKind::Unknown as i32, "cut {cut}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Many units on one connection

#[test]
fn each_packet_names_its_own_unit_and_the_session_keeps_no_identity() {
    let mut s = session();
    let stream = [sample("A-1"), sample("B.2"), sample("A-1"), sample("c_3")].concat();
    let units: Vec<String> = decode_all(&mut s, &stream)
        .into_iter()
        .map(|f| f.unwrap().relayed.unwrap())
        .collect();
    assert_eq!(units, ["A-1", "B.2", "A-1", "c_3"]);
    assert!(s.imei().is_none());
    // A unit id the gateway would refuse is still named: the session layer refuses it.
    let f = one(&sample("has space"));
    assert_eq!(f.relayed.as_deref(), Some("has space"));
    let f = one(&build("\u{e9}t\u{e9}", vec![]));
    assert!(!crate::device_id::is_valid(f.relayed.as_deref().unwrap()));
}

#[test]
fn each_unit_is_mapped_with_its_own_profile() {
    let dir = std::env::temp_dir().join(format!(
        "avlgate-retranslator-profiles-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profiles.toml");
    std::fs::write(
        &path,
        r#"
[profiles.gsm-bars]
extends = "wialon_retranslator"
[profiles.gsm-bars.names.gsm]
field = "gsm_signal_percent"
scale = 20
[[devices]]
profile = "gsm-bars"
imeis = ["bars-unit"]
"#,
    )
    .unwrap();
    let profiles = crate::vocab::Profiles::load(&path).unwrap();
    let config = ProtocolConfig::default().with_profiles(profiles);
    let mut s = Session::new(&config);
    let gsm = |unit: &str| build(unit, vec![b("gsm", Value::Int(4))]);
    let stream = [gsm("bars-unit"), gsm("other"), gsm("bars-unit")].concat();
    let percent: Vec<Option<f64>> = decode_all(&mut s, &stream)
        .into_iter()
        .map(|f| only_event(&f.unwrap()).telemetry().gsm_signal_percent)
        .collect();
    assert_eq!(percent, [Some(80.0), None, Some(80.0)]);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Commands

#[test]
fn no_command_is_encoded_and_each_refusal_says_why() {
    let mut s = session();
    for c in [
        CommandRequest::Text("hello".into()),
        CommandRequest::Payload(bytes::Bytes::from_static(b"x")),
        CommandRequest::EngineStop,
        CommandRequest::EngineResume,
        CommandRequest::PositionRequest,
        CommandRequest::Reboot,
        CommandRequest::SetReportInterval { seconds: 30 },
        CommandRequest::OutputSet { index: 1, on: true },
    ] {
        let Err(CommandError::UnsupportedType(why)) = s.encode_command(&c) else {
            panic!("{c:?} encoded")
        };
        assert!(
            why.contains("Retranslator") && why.contains(c.type_name()),
            "{why}"
        );
    }
    assert!(!s.command_answered());
}

// ---------------------------------------------------------------------------------------
// Detection

fn probe_tcp(prefix: &[u8]) -> Probe {
    WialonRetranslator.probe(prefix, Transport::Tcp)
}

#[test]
fn a_packet_is_recognised_once_its_first_block_type_is_in_and_not_before() {
    for p in [h(TRACCAR_1), sample("x"), sample(&"7".repeat(MAX_PROBE_ID))] {
        let unit_end = 4 + p[4..].iter().position(|&b| b == 0).unwrap();
        let decided = unit_end + 1 + 8 + 2;
        assert!(decided <= crate::protocol::detect::MAX_DETECT_BYTES);
        for n in 0..=p.len() {
            let want = if n < decided {
                Probe::NeedMore
            } else {
                Probe::Yes
            };
            assert_eq!(probe_tcp(&p[..n]), want, "prefix {n}");
        }
        assert_eq!(WialonRetranslator.probe(&p, Transport::Udp), Probe::No);
    }
    // No blocks: recognised once the header is in.
    let p = build("u", vec![]);
    assert_eq!(probe_tcp(&p[..p.len() - 1]), Probe::NeedMore);
    assert_eq!(probe_tcp(&p), Probe::Yes);
}

#[test]
fn implausible_headers_are_not_a_retranslator_packet() {
    let no = |bytes: &[u8], why: &str| assert_eq!(probe_tcp(bytes), Probe::No, "{why}");
    let p = sample("unit");
    // Size field.
    no(&[9, 0, 0, 0], "below the smallest packet");
    no(&[0, 0, 0x11], "over the default cap from byte 2 on");
    no(&[0, 0, 0, 1], "over the default cap");
    assert_eq!(
        probe_tcp(&[0, 0, 0x10, 0]),
        Probe::NeedMore,
        "exactly 1 MiB"
    );
    // Unit id.
    no(&[&p[..4], b"\0"].concat(), "empty unit id");
    no(&[&p[..4], b"ab cd\0"].concat(), "a space in the unit id");
    no(
        &[&p[..4], b"ab\x01"].concat(),
        "a control byte in the unit id",
    );
    no(
        &[&p[..4], &[b'7'; MAX_PROBE_ID + 1]].concat(),
        "unit id too long",
    );
    // Size smaller than the header, or than header plus one block.
    let mut small = p.clone();
    small[..4].copy_from_slice(&10u32.to_le_bytes());
    no(&small[..9], "size below unit + header");
    small[..4].copy_from_slice(&(5u32 + 8 + 8).to_le_bytes());
    no(&small, "room for part of a block only");
    // The first block's type.
    let mut wrong = p.clone();
    let at = 4 + 5 + 8;
    wrong[at + 1] = 0xBC;
    assert_eq!(probe_tcp(&wrong[..=at]), Probe::NeedMore);
    no(&wrong[..at + 2], "0B BC is no block");
    wrong[at] = 0x0C;
    no(&wrong[..=at], "0C is no block");
}

/// Every conformance frame of every other protocol (both Traccar files, whatever is
/// registered), and well-known first bytes: never claimed at any prefix length, and
/// refused outright once the frame is whole.
#[test]
fn no_other_protocols_frame_is_ever_taken_for_a_retranslator_packet() {
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    for file in ["traccar-frames.json", "traccar-frames-more.json"] {
        let text =
            std::fs::read_to_string(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for e in all {
            let protocol = e["protocol"].as_str().unwrap_or_default().to_string();
            if protocol == NAME {
                continue;
            }
            let frame = e["frame"].as_str().unwrap_or_default();
            let bytes = if e["encoding"] == "hex" {
                match hex::decode(frame) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                frame.as_bytes().to_vec()
            };
            frames.push((protocol, bytes));
        }
    }
    assert!(frames.len() > 800, "{} frames", frames.len());
    frames.push(("teltonika".into(), h("000f333536333037303432343431303133")));
    frames.push((
        "teltonika".into(),
        h("000000000000003608010000016b40d8ea30"),
    ));
    frames.push(("gt06".into(), h("78780d010353419036066061000300010d0a")));
    frames.push(("gt06".into(), h("79790100260000000000000000000000")));
    frames.push((
        "jt808".into(),
        h("7e0200002621222324252600010203040506070809"),
    ));
    frames.push(("h02".into(), h("244105003132002021222324252600000b")));
    let mut refused = 0;
    for (protocol, f) in &frames {
        for n in 1..=f.len().min(crate::protocol::detect::MAX_DETECT_BYTES) {
            assert_ne!(
                probe_tcp(&f[..n]),
                Probe::Yes,
                "{protocol} frame {} taken at prefix {n}",
                hex::encode(&f[..n.min(24)])
            );
        }
        if probe_tcp(f) == Probe::No {
            refused += 1;
        }
    }
    // A frame shorter than what decides (a bare `7E`, say) may still be "need more".
    assert!(
        refused * 100 >= frames.len() * 99,
        "{refused} of {}",
        frames.len()
    );
}

#[test]
fn the_simulator_stream_is_recognised_and_decodes() {
    use crate::protocol::sim::DeviceCodec;
    let mut d = sim::Retranslator::new("356307042441013");
    let fix = crate::protocol::sim::Fix {
        time_ms: 1_750_000_000_000,
        latitude: 54.68,
        longitude: 25.39,
        altitude: 110.0,
        speed_kmh: 42.4,
        course: 359.7,
        satellites: 9,
        hdop: 0.83,
        odometer_m: 120_000,
        power_mv: 12_300,
        battery_mv: 4_100,
        gsm_level: 4,
    };
    let batch = d.batch(&[fix, fix]);
    let stream = batch.units.concat();
    assert!(matches!(
        crate::protocol::detect::detect(&stream, Transport::Tcp),
        crate::protocol::detect::Detection::Found(m) if m.name() == NAME
    ));
    let f = one(&batch.units[0]);
    let p = only_event(&f).position.unwrap();
    assert_eq!(
        (p.speed, p.course, p.altitude),
        (Some(42.0), Some(0.0), Some(110.0))
    );
    assert_eq!(
        only_event(&f).raw_named("mileage"),
        Some(&RawV::DoubleValue(120.0))
    );
}

// ---------------------------------------------------------------------------------------
// Properties

fn arb_name() -> impl Strategy<Value = String> {
    // Names as Wialon writes them, and anything else without a NUL.
    prop_oneof![
        "[a-z_][a-z0-9_]{0,15}",
        proptest::collection::vec(1u8..=0x7F, 1..12).prop_map(|v| String::from_utf8(v).unwrap()),
    ]
    .prop_filter("posinfo is the position block", |n| n != packet::POSINFO)
}

#[derive(Debug, Clone)]
enum ArbValue {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Int(i32),
    Double(f64),
    Long(i64),
    Other(u8, Vec<u8>),
}

fn arb_value() -> impl Strategy<Value = ArbValue> {
    prop_oneof![
        proptest::collection::vec(1u8..=0xFF, 0..24).prop_map(ArbValue::Text),
        proptest::collection::vec(any::<u8>(), 0..48).prop_map(ArbValue::Binary),
        any::<i32>().prop_map(ArbValue::Int),
        any::<f64>().prop_map(ArbValue::Double),
        any::<i64>().prop_map(ArbValue::Long),
        (6u8..=255, proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(t, v)| ArbValue::Other(t, v)),
    ]
}

fn arb_pos() -> impl Strategy<Value = PosInfo> {
    (
        -180.0f64..180.0,
        -90.0f64..90.0,
        -500.0f64..9000.0,
        any::<u16>(),
        0u16..360,
        any::<u8>(),
    )
        .prop_map(
            |(longitude, latitude, altitude, speed, course, satellites)| PosInfo {
                longitude,
                latitude,
                altitude,
                speed,
                course,
                satellites,
            },
        )
}

/// The raw value a block's value must become.
fn expected_raw(v: &ArbValue) -> RawV {
    match v {
        ArbValue::Text(t) => match String::from_utf8(t.clone()) {
            Ok(s) => RawV::StringValue(s),
            Err(_) => RawV::BytesValue(t.clone()),
        },
        ArbValue::Binary(b) | ArbValue::Other(_, b) => RawV::BytesValue(b.clone()),
        ArbValue::Int(i) => RawV::IntValue(i64::from(*i)),
        ArbValue::Double(d) => RawV::DoubleValue(*d),
        ArbValue::Long(l) => RawV::IntValue(*l),
    }
}

proptest! {
    /// Packets built from arbitrary units, flags, positions and blocks of every type decode
    /// to exactly their values (raw in order, position from posinfo), answered `0x11`, and
    /// parse back to what was encoded.
    #[test]
    fn encoded_packets_decode_to_their_values(
        unit in "[0-9A-Za-z._-]{1,32}",
        time in any::<u32>(),
        flags in any::<u32>(),
        position in proptest::option::of(arb_pos()),
        hidden in any::<u8>(),
        values in proptest::collection::vec((arb_name(), arb_value()), 0..12),
    ) {
        let mut blocks = Vec::new();
        if let Some(p) = position {
            blocks.push(Block { hidden, name: packet::POSINFO, value: Value::Position(p) });
        }
        for (n, v) in &values {
            let value = match v {
                ArbValue::Text(t) => Value::Text(t),
                ArbValue::Binary(b) => Value::Binary(b),
                ArbValue::Int(i) => Value::Int(*i),
                ArbValue::Double(d) => Value::Double(*d),
                ArbValue::Long(l) => Value::Long(*l),
                ArbValue::Other(t, b) => Value::Other { data_type: *t, bytes: b },
            };
            blocks.push(Block { hidden, name: n, value });
        }
        let packet = Packet { unit: unit.as_bytes(), time, flags, blocks };
        let bytes = packet::encode(&packet);
        let parsed = packet::parse(&bytes[4..]).unwrap();
        // NaN != NaN: compare the encodings.
        prop_assert_eq!(packet::encode(&parsed), bytes.clone());

        let f = one(&bytes);
        prop_assert_eq!(f.relayed.as_deref(), Some(unit.as_str()));
        prop_assert_eq!(f.reply.as_deref(), Some(&[ACK][..]));
        let e = only_event(&f);
        prop_assert_eq!(e.device_time.unwrap().seconds, i64::from(time));
        let located = position.and_then(|p| mapping::location(&p));
        prop_assert_eq!(e.position.is_some(), located.is_some());
        let mut raw = e.raw.iter();
        prop_assert_eq!(raw.next().and_then(|r| r.value.clone()), Some(RawV::UintValue(flags.into())));
        if position.is_some() && located.is_none() {
            prop_assert_eq!(raw.next().map(|r| r.name.as_str()), Some(packet::POSINFO));
        }
        for (n, v) in &values {
            let r = raw.next().unwrap();
            prop_assert_eq!(&r.name, n);
            match (r.value.as_ref().unwrap(), expected_raw(v)) {
                (RawV::DoubleValue(a), RawV::DoubleValue(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                (a, b) => prop_assert_eq!(a, &b),
            }
        }
        prop_assert!(raw.next().is_none());
        let alarm = flags & flag::ALARM != 0;
        prop_assert_eq!(e.has_alarm(Alarm::General), alarm);
        if alarm {
            prop_assert_eq!(e.kind, EventKind::Alarm as i32);
        }
    }

    /// Arbitrary bytes after a valid size field: whatever `parse` accepts re-encodes byte for
    /// byte, and the session answers every packet (a frame or an answered error), never
    /// panicking and always consuming the packet.
    #[test]
    fn any_packet_body_is_answered_and_accepted_ones_reencode(
        body in proptest::collection::vec(any::<u8>(), 10..200),
    ) {
        let mut bytes = u32::try_from(body.len()).unwrap().to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        if let Ok(p) = packet::parse(&body) {
            prop_assert_eq!(packet::encode(&p), bytes.clone());
        }
        let mut s = session();
        let mut buf = BytesMut::from(&bytes[..]);
        match s.decode(&mut buf, now()) {
            Ok(Some(f)) => prop_assert_eq!(f.reply.as_deref(), Some(&[ACK][..])),
            Ok(None) => prop_assert!(false, "a whole packet waits"),
            Err(e) => {
                prop_assert_eq!(e.reply.as_deref(), Some(&[ACK][..]));
                prop_assert_eq!(e.action, Action::Continue);
            }
        }
        prop_assert!(buf.is_empty());
    }

    /// The probe never flips: once it says yes or no, longer prefixes say the same.
    #[test]
    fn the_probe_decides_once(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let mut decided = None;
        for n in 0..=bytes.len() {
            let p = probe_tcp(&bytes[..n]);
            match (decided, p) {
                (None, Probe::NeedMore) => {}
                (None, d) => decided = Some(d),
                (Some(d), now) => prop_assert_eq!(d, now, "prefix {}", n),
            }
        }
    }
}
