//! The fuzz targets' properties (see `tests/props/mod.rs`) as property tests, so plain
//! `cargo test` checks them on every run without the fuzzers: random bytes, conformance frames
//! with random mutations, and valid-by-construction Teltonika frames, fed in random chunks to
//! every protocol's session and to the framing/re-encoding checks.

mod props;

use std::sync::OnceLock;

use avlgate::proto::Transport;
use avlgate::protocol::gt06::{frame as gt06_frame, MODULE as GT06};
use avlgate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use avlgate::protocol::teltonika::{frame as tframe, MODULE as TELTONIKA};
use avlgate::protocol::wialon::MODULE as WIALON;
use proptest::prelude::*;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

/// The conformance frames as wire bytes, per protocol, with a login in front of each
/// Teltonika TCP and GT06 data frame so sessions get past the login (both refuse data
/// before it, so without one the packet parsers would never run).
struct Seeds {
    teltonika_tcp: Vec<Vec<u8>>,
    teltonika_udp: Vec<Vec<u8>>,
    wialon: Vec<Vec<u8>>,
    gt06: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/traccar-frames.json"
        ))
        .expect("conformance frames");
        let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
        let mut s = Seeds {
            teltonika_tcp: Vec::new(),
            teltonika_udp: Vec::new(),
            wialon: Vec::new(),
            gt06: Vec::new(),
        };
        let login = tframe::encode_login("356307042441013");
        // GT06 login of IMEI 352887071911998 (BCD, pad digit first).
        let gt06_login =
            gt06_frame::encode(false, 0x01, &hex::decode("0352887071911998").unwrap(), 1);
        for e in &all {
            let frame = e["frame"].as_str().unwrap_or_default();
            let bytes = if e["encoding"] == "hex" {
                match hex::decode(frame) {
                    Ok(b) => b,
                    Err(_) => continue,
                }
            } else {
                format!("{frame}\r\n").into_bytes()
            };
            match (e["protocol"].as_str(), e["transport"].as_str()) {
                (Some("teltonika"), Some("udp")) => s.teltonika_udp.push(bytes),
                (Some("teltonika"), _) if e["wire"]["kind"] == "imei_login" => {}
                (Some("teltonika"), _) => s.teltonika_tcp.push([&login[..], &bytes].concat()),
                (Some("wialon"), _) => s.wialon.push(bytes),
                (Some("gt06"), _) if e["wire"]["protocol_number"] == "0x01" => s.gt06.push(bytes),
                (Some("gt06"), _) => s.gt06.push([&gt06_login[..], &bytes].concat()),
                _ => {}
            }
        }
        assert!(!s.teltonika_tcp.is_empty() && !s.wialon.is_empty() && !s.gt06.is_empty());
        s
    })
}

fn ops() -> impl Strategy<Value = Vec<(u8, u16, u8)>> {
    proptest::collection::vec(any::<(u8, u16, u8)>(), 0..6)
}

fn chunks() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..8)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// A Teltonika record with arbitrary values and up to 12 IO elements the codec can carry.
fn arb_record(codec: Codec) -> impl Strategy<Value = Record> {
    let wide = codec != Codec::C8;
    let id = if wide {
        any::<u16>().boxed()
    } else {
        (0u16..=255).boxed()
    };
    let fixed = prop_oneof![
        any::<u8>().prop_map(IoValue::U8),
        any::<u16>().prop_map(IoValue::U16),
        any::<u32>().prop_map(IoValue::U32),
        any::<u64>().prop_map(IoValue::U64),
    ];
    let value = if codec == Codec::C8E {
        prop_oneof![4 => fixed, 1 => bytes(24).prop_map(IoValue::Bytes)].boxed()
    } else {
        fixed.boxed()
    };
    (
        any::<(u64, u8, i32, i32, i16, u16, u8, u16, u16, u8)>(),
        proptest::collection::vec((id, value), 0..12),
    )
        .prop_map(
            move |((ts, pr, lon, lat, alt, ang, sat, spd, ev, g), mut io)| {
                // The encoder groups values by width; sort the same way so records compare.
                io.sort_by_key(|(_, v)| match v {
                    IoValue::U8(_) => 0,
                    IoValue::U16(_) => 1,
                    IoValue::U32(_) => 2,
                    IoValue::U64(_) => 3,
                    IoValue::Bytes(_) => 4,
                });
                Record {
                    timestamp_ms: ts,
                    priority: pr,
                    longitude: lon,
                    latitude: lat,
                    altitude: alt,
                    angle: ang,
                    satellites: sat,
                    speed: spd,
                    event_io: if wide { ev } else { ev & 0xFF },
                    generation_type: (codec == Codec::C16).then_some(g),
                    io,
                }
            },
        )
}

fn arb_avl() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Codec::C8), Just(Codec::C8E), Just(Codec::C16)].prop_flat_map(|c| {
        proptest::collection::vec(arb_record(c), 1..6).prop_map(move |r| avl::encode(c, &r))
    })
}

fn pick(v: &[Vec<u8>], i: usize) -> &[u8] {
    &v[i % v.len()]
}

use props::Simulated;

fn simulated() -> &'static [Simulated] {
    static S: OnceLock<Vec<Simulated>> = OnceLock::new();
    S.get_or_init(|| props::simulated_streams(3))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // ---- Every registered protocol (a protocol added to the registry is covered here)

    #[test]
    fn every_protocol_random_bytes(input in bytes(600), ch in chunks()) {
        for m in avlgate::protocol::REGISTRY {
            for &t in m.transports() {
                props::drive_session(m, t, &input, &props::chunk_sizes(&ch));
            }
        }
    }

    #[test]
    fn every_protocol_mutated_simulator_streams(i in any::<usize>(), m in ops(), ch in chunks()) {
        let all = simulated();
        let (module, t, stream, units) = &all[i % all.len()];
        let input = props::mutate(stream, &m);
        let chunks = if *t == Transport::Udp { units.clone() } else { props::chunk_sizes(&ch) };
        props::drive_session(module, *t, &input, &chunks);
        props::check_detect(&input, *t);
    }

    // ---- Teltonika

    #[test]
    fn teltonika_tcp_random_bytes(input in bytes(700), ch in chunks()) {
        props::drive_session(&TELTONIKA, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::check_teltonika_tcp_frame(&input);
    }

    #[test]
    fn teltonika_tcp_mutated_conformance(i in any::<usize>(), m in ops(), ch in chunks()) {
        let input = props::mutate(pick(&seeds().teltonika_tcp, i), &m);
        props::drive_session(&TELTONIKA, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        // The frame after the 17-byte login.
        props::check_teltonika_tcp_frame(input.get(17..).unwrap_or_default());
    }

    #[test]
    fn teltonika_tcp_valid_frames(data in arb_avl(), m in ops(), ch in chunks()) {
        let frame = tframe::encode_tcp(&data);
        props::check_teltonika_tcp_frame(&frame);
        let login = tframe::encode_login("356307042441013");
        let out = props::drive_session(
            &TELTONIKA, Transport::Tcp, &[&login[..], &frame].concat(), &props::chunk_sizes(&ch));
        if frame.len() <= props::limits().settings("teltonika").max_frame_bytes() {
            prop_assert_eq!(out.frames, 2, "login and the frame");
        }
        // And mutated: whatever still passes the CRC must re-encode.
        props::check_teltonika_tcp_frame(&props::mutate(&frame, &m));
        props::check_avl(&props::mutate(&data, &m));
    }

    #[test]
    fn teltonika_udp_random_and_mutated(input in bytes(600), i in any::<usize>(), m in ops(), ch in chunks()) {
        props::drive_session(&TELTONIKA, Transport::Udp, &input, &props::chunk_sizes(&ch));
        props::check_teltonika_udp(&input);
        let d = props::mutate(pick(&seeds().teltonika_udp, i), &m);
        props::drive_session(&TELTONIKA, Transport::Udp, &d, &[0]);
        props::check_teltonika_udp(&d);
    }

    #[test]
    fn teltonika_udp_valid_datagrams(data in arb_avl(), id in any::<(u16, u8)>(), m in ops()) {
        let d = tframe::encode_udp(id.0, id.1, "356307042441013", &data);
        props::check_teltonika_udp(&d);
        let out = props::drive_session(&TELTONIKA, Transport::Udp, &d, &[0]);
        if d.len() <= props::limits().settings("teltonika").max_frame_bytes() {
            prop_assert_eq!(out.frames, 1);
        }
        props::check_teltonika_udp(&props::mutate(&d, &m));
    }

    // ---- Wialon IPS

    #[test]
    fn wialon_random_bytes(input in bytes(600), ch in chunks()) {
        props::drive_session(&WIALON, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::drive_session(&WIALON, Transport::Udp, &input, &props::chunk_sizes(&ch));
        props::check_wialon_records(&input);
    }

    #[test]
    fn wialon_mutated_conformance(i in any::<usize>(), j in any::<usize>(), m in ops(), ch in chunks()) {
        // A login, then a data packet: mutations hit both.
        let s = &seeds().wialon;
        let input = props::mutate(&[pick(s, i), pick(s, j)].concat(), &m);
        props::drive_session(&WIALON, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::drive_session(&WIALON, Transport::Udp, &input, &[0]);
        props::check_wialon_records(&input);
    }

    #[test]
    fn wialon_text_like_bytes(input in "[#LSDBPMI0-9NAE.;:,|\r\n]{0,300}", ch in chunks()) {
        // Random text over the protocol's alphabet reaches the field parsers far more often.
        let input = input.into_bytes();
        props::drive_session(&WIALON, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::check_wialon_records(&input);
    }

    // ---- GT06

    #[test]
    fn gt06_random_bytes(input in bytes(600), ch in chunks()) {
        props::drive_session(&GT06, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::drive_session(&GT06, Transport::Udp, &input, &props::chunk_sizes(&ch));
        props::check_gt06_frames(&input);
    }

    #[test]
    fn gt06_mutated_conformance(i in any::<usize>(), j in any::<usize>(), m in ops(), ch in chunks()) {
        let s = &seeds().gt06;
        let input = props::mutate(&[pick(s, i), pick(s, j)].concat(), &m);
        props::drive_session(&GT06, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        props::check_gt06_frames(&input);
    }

    // ---- Detection

    #[test]
    fn detection_random_and_conformance(input in bytes(96), i in any::<usize>(), m in ops()) {
        props::check_detect(&input, Transport::Tcp);
        props::check_detect(&input, Transport::Udp);
        let s = seeds();
        for set in [&s.teltonika_tcp, &s.wialon, &s.gt06] {
            let seed = props::mutate(pick(set, i), &m);
            props::check_detect(&seed, Transport::Tcp);
        }
    }
}

/// Every simulator device's own stream decodes cleanly on its protocol's session: its three
/// records at least, no errors, no close (the mutated test starts from these).
#[test]
fn simulated_streams_decode_cleanly() {
    for (m, t, stream, units) in simulated() {
        let chunks: &[usize] = if *t == Transport::Udp { units } else { &[7] };
        let out = props::drive_session(m, *t, stream, chunks);
        assert!(
            out.events >= 3 && out.errors == 0 && !out.closed,
            "{} over {t:?}: {out:?}",
            m.name()
        );
    }
}

/// Every unmutated conformance stream drives its own session cleanly and passes the
/// re-encoding checks (the mutated tests start from these).
#[test]
fn conformance_frames_hold_every_property() {
    let s = seeds();
    for input in &s.teltonika_tcp {
        props::drive_session(&TELTONIKA, Transport::Tcp, input, &[0]);
        props::drive_session(&TELTONIKA, Transport::Tcp, input, &[1]);
        props::check_teltonika_tcp_frame(&input[17..]);
    }
    for d in &s.teltonika_udp {
        props::drive_session(&TELTONIKA, Transport::Udp, d, &[0]);
        props::check_teltonika_udp(d);
    }
    for input in &s.wialon {
        props::drive_session(&WIALON, Transport::Tcp, input, &[3]);
        props::check_wialon_records(input);
    }
    for input in &s.gt06 {
        props::drive_session(&GT06, Transport::Tcp, input, &[2]);
        props::check_gt06_frames(input);
    }
}

/// Found by the `detect` fuzz target: a datagram starting with GT06 start bits whose prefixes
/// are GT06 while the whole is a Wialon UDP packet. Fine for UDP (each datagram is whole); over
/// TCP the decision must not flip.
#[test]
fn detect_fuzz_regression_gt06_start_bits_then_wialon_text() {
    let input =
        b"xx99999!999#SD#270413;205601\x00=544\x00\x00\x00\x00\x00\x00\x00\x0003739.68;42;;E";
    props::check_detect(input, Transport::Tcp);
    props::check_detect(input, Transport::Udp);
}

/// The allocation property is only as good as the counter: make sure it sees allocations.
#[test]
fn the_counting_allocator_counts() {
    let (_, grew) = props::peak_growth(|| std::hint::black_box(vec![0u8; 100_000]));
    assert!(grew >= 100_000, "peak growth {grew}");
}
