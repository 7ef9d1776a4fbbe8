//! Decode throughput per protocol, in bytes/s and records/s (`cargo bench --bench decode`).
//!
//! Every group runs over one batch of distinct frames (values change from record to record)
//! and reports both throughputs. Two paths are measured:
//!
//! - `decode_*`: frame bytes to owned records holding every IO value: framing, CRC and the
//!   protocol's parse function (Teltonika: `frame::split_tcp` + `avl::parse`; Wialon: line
//!   split, CRC, `packet::parse_record`; GT06: `frame::split` + `packet::decode`, which has no
//!   intermediate record type and yields events).
//! - `whole_path_avlgate`: the bytes through the protocol session's `decode` (exactly what a
//!   connection runs), the connection context stamped on each event as the session layer does
//!   (`event_id`, `imei`, `received_at`, `peer`, `gateway`), then each event encoded as
//!   protobuf with the sink's encoder (`Format::encode_event`).
//!
//! The Teltonika groups also run the same frames through `nom-teltonika`
//! (`take_frame(..).evaluate()`, CRC checked, owned records) as the yardstick. After the run,
//! a summary table with records/s and the avlgate / nom-teltonika ratio is printed and written
//! to `<criterion dir>/avlgate-decode-summary.md`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use avlgate::event::{timestamp, Stamp};
use avlgate::proto::{Protocol, Transport};
use avlgate::protocol::gt06::{self, frame as gt06_frame, packet as gt06_packet};
use avlgate::protocol::teltonika::avl::{self, Codec, IoValue, Record};
use avlgate::protocol::teltonika::frame as tframe;
use avlgate::protocol::wialon::packet as wpacket;
use avlgate::protocol::wialon::{self, crc as wcrc};
use avlgate::protocol::{ProtocolConfig, ProtocolModule, ProtocolSession};
use avlgate::sink::Format;
use bytes::BytesMut;
use criterion::{Criterion, Throughput};

/// The binary's allocator (`src/main.rs`), so allocation costs are the ones production pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IMEI: &str = "356307042441013";
/// Distinct frames per batch: enough that the branch predictor cannot learn one frame.
const FRAMES: usize = 32;
const RECORDS_PER_FRAME: usize = 15;

// ---------------------------------------------------------------------------------------------
// Inputs

/// A typical FMB record: ten IO elements of every width, real FMB ids (ignition, movement, GSM
/// signal, GNSS status, DIN1; external and battery voltage, HDOP; odometer; iButton), values
/// that move from record to record. 81 bytes in Codec 8E, so 15 records fit the 1280-byte
/// frame Teltonika documents for Codec 8/8E (and that nom-teltonika enforces).
fn teltonika_record(frame: usize, i: usize) -> Record {
    let k = (frame * RECORDS_PER_FRAME + i) as u64;
    Record {
        timestamp_ms: 1_700_000_000_000 + k * 10_000,
        priority: (k % 2) as u8,
        longitude: 253_910_000 + (k as i32) * 37,
        latitude: 546_820_000 - (k as i32) * 23,
        altitude: 110 + (k % 7) as i16,
        angle: (k * 13 % 360) as u16,
        satellites: 9 + (k % 4) as u8,
        speed: (k * 7 % 120) as u16,
        event_io: if k % 5 == 0 { 239 } else { 0 },
        generation_type: None,
        io: vec![
            (239, IoValue::U8((k % 2) as u8)),
            (240, IoValue::U8(1)),
            (21, IoValue::U8(3 + (k % 3) as u8)),
            (69, IoValue::U8(1)),
            (1, IoValue::U8(0)),
            (66, IoValue::U16(12_000 + (k % 900) as u16)),
            (67, IoValue::U16(4_000 + (k % 100) as u16)),
            (182, IoValue::U16(7 + (k % 5) as u16)),
            (16, IoValue::U32(123_456 + k as u32 * 11)),
            (78, IoValue::U64(0x0102_0304_0506_0000 + k)),
        ],
    }
}

/// `FRAMES` TCP frames (preamble .. CRC) of `RECORDS_PER_FRAME` records each.
fn teltonika_frames(codec: Codec) -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|f| {
            let records: Vec<Record> = (0..RECORDS_PER_FRAME)
                .map(|i| {
                    let mut r = teltonika_record(f, i);
                    if codec == Codec::C16 {
                        r.generation_type = Some(7);
                    }
                    r
                })
                .collect();
            tframe::encode_tcp(&avl::encode(codec, &records))
        })
        .collect()
}

/// A Wialon IPS 2.0 `#D#` body (16 fields, no CRC yet): eight typed parameters, three ADCs.
fn wialon_d_body(k: usize) -> String {
    let sec = k % 60;
    let min = (k / 60) % 60;
    format!(
        "201125;10{min:02}{sec:02};5544.{:04};N;03739.{:04};E;{};{};{};{};0.9;{};0;12.{},0.02,3.6;NA;\
         fuel:2:{}.5,odo:1:{},temp1:2:21.{},bat:1:{},gsm:1:21,hw:3:FW4.5,ign:1:{},SOS:1:0",
        6025 + k % 3000,
        6834 + k % 2000,
        k % 120,
        k * 7 % 360,
        150 + k % 20,
        8 + k % 5,
        k % 8,
        k % 100,
        40 + k % 30,
        100_000 + k * 13,
        k % 10,
        80 + k % 20,
        k % 2,
    )
}

/// `FRAMES` `#D#` lines with their 2.0 CRC.
fn wialon_d_lines() -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|f| format!("#D#{}\r\n", wpacket::with_crc(&wialon_d_body(f))).into_bytes())
        .collect()
}

/// `FRAMES` `#B#` lines of `RECORDS_PER_FRAME` D records each, with the 2.0 CRC.
fn wialon_b_lines() -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|f| {
            let recs: Vec<String> = (0..RECORDS_PER_FRAME)
                .map(|i| wialon_d_body(f * RECORDS_PER_FRAME + i))
                .collect();
            let body = format!("{}|", recs.join("|"));
            let crc = wcrc::render(body.as_bytes());
            format!("#B#{body}{crc}\r\n").into_bytes()
        })
        .collect()
}

/// `FRAMES` GT06 `0x22` (GPS + LBS + status, 78 78 form) frames with distinct times,
/// positions and serials.
fn gt06_frames() -> Vec<Vec<u8>> {
    (0..FRAMES)
        .map(|f| {
            let mut c = Vec::with_capacity(32);
            c.extend_from_slice(&[24, 11, 20, 10, (f / 60) as u8, (f % 60) as u8]);
            c.push(0xC0 | 9); // GPS info length 12, 9 satellites
            c.extend_from_slice(&(0x027A_C818u32 + f as u32 * 97).to_be_bytes());
            c.extend_from_slice(&(0x0C46_5860u32 + f as u32 * 53).to_be_bytes());
            c.push((f % 120) as u8);
            c.extend_from_slice(&(0x1400u16 | (f as u16 * 7 % 360)).to_be_bytes());
            c.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0x71]);
            c.extend_from_slice(&[0x01, 0x00, 0x01]); // ACC on, upload mode, real time
            gt06_frame::encode(false, 0x22, &c, f as u16 + 1).to_vec()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The paths

/// Decode alone, avlgate: framing + CRC + `avl::parse` to owned records.
fn teltonika_decode(frames: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for f in frames {
        let tframe::Split::Complete(tf, _) = tframe::split_tcp(f, 16 * 1024).expect("frame") else {
            panic!("incomplete")
        };
        assert!(tf.crc_ok);
        let (_, records) = avl::parse(tf.data).expect("records");
        n += black_box(records).len();
    }
    n
}

/// Decode alone, nom-teltonika: `take_frame` (framing + CRC) then `evaluate` (owned records).
fn nom_decode(frames: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for f in frames {
        let frame = nom_teltonika::decoder::take_frame(&mut &f[..])
            .expect("frame")
            .evaluate();
        let nom_teltonika::protocol::Frame::Avl(p) = black_box(frame) else {
            panic!("not AVL")
        };
        n += p.records().len();
    }
    n
}

/// Decode alone, Wialon `#D#`: line split, field split + CRC, `parse_record`.
fn wialon_d_decode(lines: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for l in lines {
        let line = l.strip_suffix(b"\r\n").expect("line end");
        let line = wpacket::split_line(line).expect("packet");
        let (fields, crc_ok) = wpacket::split_checked(line.body, true);
        assert_eq!(crc_ok, Some(true));
        black_box(wpacket::parse_record(&fields).expect("record"));
        n += 1;
    }
    n
}

/// Decode alone, Wialon `#B#`: line split, CRC over the body, each record parsed.
fn wialon_b_decode(lines: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for l in lines {
        let line = l.strip_suffix(b"\r\n").expect("line end");
        let line = wpacket::split_line(line).expect("packet");
        let body = line.body;
        let bar = body.iter().rposition(|&b| b == b'|').expect("crc segment");
        assert_eq!(wcrc::check(&body[..=bar], &body[bar + 1..]), Some(true));
        for seg in body[..bar].split(|&b| b == b'|') {
            let fields: Vec<&[u8]> = seg.split(|&b| b == b';').collect();
            black_box(wpacket::parse_record(&fields).expect("record"));
            n += 1;
        }
    }
    n
}

/// Decode alone, GT06: `frame::split` (CRC) + `packet::decode`.
fn gt06_decode(frames: &[Vec<u8>], now: SystemTime) -> usize {
    let mut n = 0;
    for f in frames {
        let gt06_frame::Split::Frame(raw, _) = gt06_frame::split(f, 4096) else {
            panic!("not a frame")
        };
        n += black_box(gt06_packet::decode(&raw, now)).events.len();
    }
    n
}

/// What the session layer adds to every event before publishing it.
#[derive(Clone)]
struct Context {
    imei: String,
    protocol: Protocol,
    peer: String,
    gateway: String,
}

/// The whole path: session `decode` over the batch as one stream, context stamped, protobuf
/// encoded. Returns the records and the encoded bytes (both checked by the caller).
fn whole_path(
    session: &mut dyn ProtocolSession,
    stream: &[u8],
    ctx: &Context,
    now: SystemTime,
    out: &mut usize,
) -> usize {
    let mut buf = BytesMut::from(stream);
    let stamp = Stamp {
        imei: &ctx.imei,
        protocol: ctx.protocol,
        transport: Transport::Tcp,
        received_at: timestamp(now),
        peer: &ctx.peer,
        gateway: &ctx.gateway,
    };
    let mut n = 0;
    while let Some(mut frame) = session.decode(&mut buf, now).expect("frame") {
        // Exactly what the session layer does (`session::Core`), then the sink's encoding
        // (`Publisher`).
        stamp.apply(&mut frame.events, frame.digest);
        for e in &frame.events {
            let bytes = Format::Protobuf.encode_event(e);
            *out += black_box(bytes).len();
        }
        n += frame.events.len();
    }
    n
}

/// Only the session's `decode` to events (no context, no encoding): the whole path minus
/// this is what stamping and protobuf encoding cost.
fn normalize(session: &mut dyn ProtocolSession, stream: &[u8], now: SystemTime) -> usize {
    let mut buf = BytesMut::from(stream);
    let mut n = 0;
    while let Some(frame) = session.decode(&mut buf, now).expect("frame") {
        n += black_box(frame).events.len();
    }
    n
}

/// A logged-in TCP session of `module`.
fn logged_in(module: &ProtocolModule, login: &[u8], now: SystemTime) -> Box<dyn ProtocolSession> {
    let mut s = module.new_session(Transport::Tcp, &ProtocolConfig::default());
    let mut buf = BytesMut::from(login);
    let f = s
        .decode(&mut buf, now)
        .expect("login")
        .expect("login frame");
    assert!(f.login.is_some() && buf.is_empty(), "login accepted");
    s
}

// ---------------------------------------------------------------------------------------------
// Groups

struct Case {
    group: &'static str,
    frames: Vec<Vec<u8>>,
    records: usize,
}

impl Case {
    fn new(group: &'static str, frames: Vec<Vec<u8>>, records: usize) -> Self {
        Case {
            group,
            frames,
            records,
        }
    }
    fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
    fn stream(&self) -> Vec<u8> {
        self.frames.concat()
    }
}

fn configure<'a>(
    c: &'a mut Criterion,
    case: &Case,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(case.group);
    g.throughput(Throughput::ElementsAndBytes {
        elements: case.records as u64,
        bytes: case.bytes() as u64,
    });
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    g
}

fn teltonika_login() -> Vec<u8> {
    tframe::encode_login(IMEI)
}

fn bench_teltonika(c: &mut Criterion, ctx: &Context, now: SystemTime) {
    let ctx = &Context {
        protocol: Protocol::Teltonika,
        ..ctx.clone()
    };
    for (codec, group) in [
        (Codec::C8E, "teltonika8e_15rec"),
        (Codec::C8, "teltonika8_15rec"),
        (Codec::C16, "teltonika16_15rec"),
    ] {
        let case = Case::new(group, teltonika_frames(codec), FRAMES * RECORDS_PER_FRAME);
        // Both decoders see the same records before anything is timed.
        assert_eq!(teltonika_decode(&case.frames), case.records);
        assert_eq!(nom_decode(&case.frames), case.records);
        let stream = case.stream();
        let mut session = logged_in(
            &avlgate::protocol::teltonika::MODULE,
            &teltonika_login(),
            now,
        );
        let mut out = 0usize;
        assert_eq!(
            whole_path(session.as_mut(), &stream, ctx, now, &mut out),
            case.records
        );

        let mut g = configure(c, &case);
        g.bench_function("decode_avlgate", |b| {
            b.iter(|| teltonika_decode(black_box(&case.frames)))
        });
        g.bench_function("decode_nom_teltonika", |b| {
            b.iter(|| nom_decode(black_box(&case.frames)))
        });
        g.bench_function("normalize_avlgate", |b| {
            b.iter(|| normalize(session.as_mut(), black_box(&stream), now))
        });
        g.bench_function("whole_path_avlgate", |b| {
            b.iter(|| whole_path(session.as_mut(), black_box(&stream), ctx, now, &mut out))
        });
        g.finish();
    }
}

fn bench_wialon(c: &mut Criterion, ctx: &Context, now: SystemTime) {
    let ctx = &Context {
        protocol: Protocol::WialonIps,
        ..ctx.clone()
    };
    let login = format!("#L#{}\r\n", wpacket::with_crc(&format!("2.0;{IMEI};NA")));
    let cases = [
        (
            Case::new("wialon2_d", wialon_d_lines(), FRAMES),
            wialon_d_decode as fn(&[Vec<u8>]) -> usize,
        ),
        (
            Case::new(
                "wialon2_b_15rec",
                wialon_b_lines(),
                FRAMES * RECORDS_PER_FRAME,
            ),
            wialon_b_decode,
        ),
    ];
    for (case, decode) in cases {
        assert_eq!(decode(&case.frames), case.records);
        let stream = case.stream();
        let mut session = logged_in(&wialon::MODULE, login.as_bytes(), now);
        let mut out = 0usize;
        assert_eq!(
            whole_path(session.as_mut(), &stream, ctx, now, &mut out),
            case.records
        );
        let mut g = configure(c, &case);
        g.bench_function("decode_avlgate", |b| {
            b.iter(|| decode(black_box(&case.frames)))
        });
        g.bench_function("normalize_avlgate", |b| {
            b.iter(|| normalize(session.as_mut(), black_box(&stream), now))
        });
        g.bench_function("whole_path_avlgate", |b| {
            b.iter(|| whole_path(session.as_mut(), black_box(&stream), ctx, now, &mut out))
        });
        g.finish();
    }
}

fn bench_gt06(c: &mut Criterion, ctx: &Context, now: SystemTime) {
    let ctx = &Context {
        protocol: Protocol::Gt06,
        ..ctx.clone()
    };
    let case = Case::new("gt06_0x22", gt06_frames(), FRAMES);
    assert_eq!(gt06_decode(&case.frames, now), case.records);
    let login = gt06_frame::encode(
        false,
        0x01,
        &[0x03, 0x56, 0x30, 0x70, 0x42, 0x44, 0x10, 0x13],
        0,
    );
    let stream = case.stream();
    let mut session = logged_in(&gt06::MODULE, &login, now);
    let mut out = 0usize;
    assert_eq!(
        whole_path(session.as_mut(), &stream, ctx, now, &mut out),
        case.records
    );
    let mut g = configure(c, &case);
    g.bench_function("decode_avlgate", |b| {
        b.iter(|| gt06_decode(black_box(&case.frames), now))
    });
    g.bench_function("normalize_avlgate", |b| {
        b.iter(|| normalize(session.as_mut(), black_box(&stream), now))
    });
    g.bench_function("whole_path_avlgate", |b| {
        b.iter(|| whole_path(session.as_mut(), black_box(&stream), ctx, now, &mut out))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// The summary: records/s per bench and the nom-teltonika ratio, from criterion's estimates.

fn criterion_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CRITERION_HOME") {
        return d.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// Mean time per iteration in ns, from `<group>/<bench>/new/estimates.json`.
fn mean_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn summary(cases: &[(&str, usize, usize)]) {
    let mut out = String::from(
        "| group | bench | ns/iter | MiB/s | records/s |\n| --- | --- | ---: | ---: | ---: |\n",
    );
    let mut ratios = String::new();
    for &(group, records, bytes) in cases {
        for bench in [
            "decode_avlgate",
            "decode_nom_teltonika",
            "normalize_avlgate",
            "whole_path_avlgate",
        ] {
            let Some(ns) = mean_ns(group, bench) else {
                continue;
            };
            let secs = ns / 1e9;
            out.push_str(&format!(
                "| {group} | {bench} | {ns:.0} | {:.1} | {:.2} M |\n",
                bytes as f64 / secs / (1024.0 * 1024.0),
                records as f64 / secs / 1e6
            ));
        }
        if let (Some(ours), Some(nom)) = (
            mean_ns(group, "decode_avlgate"),
            mean_ns(group, "decode_nom_teltonika"),
        ) {
            ratios.push_str(&format!(
                "{group}: avlgate decode is {:.2}x nom-teltonika (ratio >= 1.0 = at least as fast)\n",
                nom / ours
            ));
        }
    }
    out.push('\n');
    out.push_str(&ratios);
    println!("\n{out}");
    let path = criterion_dir().join("avlgate-decode-summary.md");
    if std::fs::write(&path, &out).is_ok() {
        println!("(written to {})", path.display());
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let now = SystemTime::now();
    let ctx = Context {
        imei: IMEI.into(),
        protocol: Protocol::Unspecified,
        peer: "127.0.0.1:40000".into(),
        gateway: "avlgate-0".into(),
    };
    bench_teltonika(&mut c, &ctx, now);
    bench_wialon(&mut c, &ctx, now);
    bench_gt06(&mut c, &ctx, now);
    c.final_summary();

    let t = |codec| {
        let f = teltonika_frames(codec);
        f.iter().map(Vec::len).sum::<usize>()
    };
    let sum = |f: Vec<Vec<u8>>| f.iter().map(Vec::len).sum::<usize>();
    let all = FRAMES * RECORDS_PER_FRAME;
    summary(&[
        ("teltonika8e_15rec", all, t(Codec::C8E)),
        ("teltonika8_15rec", all, t(Codec::C8)),
        ("teltonika16_15rec", all, t(Codec::C16)),
        ("wialon2_d", FRAMES, sum(wialon_d_lines())),
        ("wialon2_b_15rec", all, sum(wialon_b_lines())),
        ("gt06_0x22", FRAMES, sum(gt06_frames())),
    ]);
}
