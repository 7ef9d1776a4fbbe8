//! Robustness properties shared by the property tests (`tests/robustness.rs`, run by
//! `cargo test`) and the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, which include this file
//! by path), so CI and the fuzzers check exactly the same things.
//!
//! Each `check_*` function panics (with a message saying which property broke) when a
//! property does not hold; any panic inside the gateway's code fails the same way.
//!
//! Properties:
//! - **progress and bounded buffering** ([`drive_session`]): fed in arbitrary chunks, a
//!   session's `decode` only ever asks for more bytes while the buffer is within the
//!   protocol's cap; every frame and every recoverable error consumes at least one byte (no
//!   stuck connection); a closing error stops the stream.
//! - **bounded allocation**: the heap a single `decode` call adds is linear in the bytes it was
//!   given plus the configured cap (measured with the counting allocator below), so no length
//!   or count field can make it reserve memory the input does not pay for.
//! - **never reads past the input**: every split reports a size within the buffer (slicing
//!   past it would panic in safe code; the fuzzers also run under AddressSanitizer).
//! - **re-encoding**: whatever is accepted encodes back to an equivalent frame where an
//!   encoder exists (Teltonika TCP envelope and UDP header byte for byte, AVL records through
//!   `avl::encode` → `avl::parse`, Codec 12/14, GT06 frames byte for byte, Wialon records
//!   through `render_record` → `parse_record`).
//! - **detection**: bounded, and a stream never flips from one protocol to another as more of
//!   it arrives.
//! - **GT06 events on the vocabulary** ([`check_gt06_event`]): raw starts with the packet's
//!   protocol number, percentages stay within 0–100 whatever the bytes, kind is ALARM exactly
//!   when alarms were raised, and no event carries string-keyed attributes other than the
//!   gateway's `decode_error`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::Transport;
use avlgate::protocol::detect::{detect, Detection, MAX_DETECT_BYTES};
use avlgate::protocol::gt06::frame as gt06_frame;
use avlgate::protocol::teltonika::{avl, command, frame as tframe, mapping as tmapping};
use avlgate::protocol::wialon::packet as wpacket;
use avlgate::protocol::{Action, ProtocolConfig, ProtocolModule};
use bytes::BytesMut;
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Counting allocator: live bytes and their peak, per thread (tests run in parallel threads).

/// Wraps the system allocator and tracks the live heap of the current thread. Install with
/// `#[global_allocator] static A: props::Counting = props::Counting;`.
pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: the allocator may run while thread-locals are being torn down.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v)
            }
        });
    });
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the peak heap growth (bytes) it caused on this thread.
/// Zero when the counting allocator is not installed.
pub fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - base).max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// ProtocolConfig and per-protocol bounds

/// Caps used while fuzzing, for every registered protocol: small, so inputs can reach them
/// (each protocol's `max_frame_bytes` 2 KiB, its other size settings 8 KiB, within their
/// declared ranges).
pub fn limits() -> ProtocolConfig {
    use avlgate::protocol::settings::{SettingKind, MAX_FRAME_BYTES};
    let mut entries = Vec::new();
    for m in avlgate::protocol::REGISTRY {
        for s in m.settings() {
            if let SettingKind::Bytes { min, max, .. } = s.kind {
                let want: u64 = if s.key == MAX_FRAME_BYTES { 2048 } else { 8192 };
                entries.push((m.name(), s.key, want.clamp(min, max).to_string()));
            }
        }
    }
    ProtocolConfig::default()
        .configure(entries.iter().map(|(p, k, v)| (*p, *k, v.as_str())))
        .expect("the fuzz caps are within every declared range")
}

/// The size settings of a protocol (frame cap, file cap, ...), summed.
fn size_caps(name: &str, l: &ProtocolConfig) -> usize {
    use avlgate::protocol::settings::SettingKind;
    let s = l.settings(name);
    s.module()
        .settings()
        .iter()
        .filter(|x| matches!(x.kind, SettingKind::Bytes { .. }))
        .map(|x| s.bytes(x.key))
        .sum()
}

/// The most a session may hold while it waits for more bytes: about one frame of its cap. A
/// framing unit may carry a header and a binary block its header announces (Wialon: a line of
/// at most the cap plus a block of at most the cap), hence twice the cap plus a header.
pub fn buffer_bound(name: &str, l: &ProtocolConfig) -> usize {
    2 * l.settings(name).max_frame_bytes() + 64
}

/// Heap one decode call may add: linear in what it was given, plus the protocol's size caps
/// (an inflated container may legitimately grow to the frame cap from a few bytes; a file
/// upload keeps the file, and publishing copies it into the event), with a constant for the
/// fixed-size structures of one frame. 64 bytes per input byte covers the worst honest case:
/// every 2-byte IO element becomes a record entry and a raw value.
pub fn alloc_bound(input_len: usize, name: &str, l: &ProtocolConfig) -> usize {
    64 * (input_len + 2 * size_caps(name, l)) + 64 * 1024
}

/// A protocol, a transport, a stream and its units' sizes.
pub type Simulated = (&'static ProtocolModule, Transport, Vec<u8>, Vec<usize>);

/// What a simulator device of every registered protocol sends: its login and a batch of
/// `records` records, per transport it speaks, with the sizes of its units (over UDP each is
/// one datagram: pass them as `chunks`). Valid by construction, so mutations of these reach
/// deep into every protocol's parsers, including protocols added later.
pub fn simulated_streams(records: usize) -> Vec<Simulated> {
    let track: Vec<avlgate::protocol::sim::Fix> = (0..records as u64)
        .map(|i| avlgate::protocol::sim::Fix {
            time_ms: 1_750_000_000_000 + i * 10_000,
            latitude: 54.682 + i as f64 * 1e-4,
            longitude: 25.391 - i as f64 * 1e-4,
            altitude: 110.0,
            speed_kmh: 42.0 + i as f64,
            course: (i * 37 % 360) as f64,
            satellites: 9,
            hdop: 0.8,
            odometer_m: 120_000 + i * 11,
            power_mv: 12_300,
            battery_mv: 4_100,
            gsm_level: 4,
        })
        .collect();
    let mut out = Vec::new();
    for m in avlgate::protocol::REGISTRY {
        for sim in m.simulators() {
            for &t in sim.transports {
                let mut d = (sim.make)("356307042441013", t == Transport::Udp);
                let mut stream = Vec::new();
                let mut units = Vec::new();
                let login = d.login().map(|(l, _)| l);
                for unit in login.into_iter().chain(d.batch(&track).units) {
                    units.push(unit.len());
                    stream.extend_from_slice(&unit);
                }
                out.push((*m, t, stream, units));
            }
        }
    }
    out
}

/// A fixed clock: decoding must not depend on the wall clock.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

// ---------------------------------------------------------------------------------------------
// Session driving

/// What a driven stream produced, for callers that want to assert more.
#[derive(Debug, Default)]
pub struct Outcome {
    pub frames: usize,
    pub events: usize,
    pub errors: usize,
    pub closed: bool,
}

/// Feeds `input` to a fresh session of `module` as the session layer does. TCP: the stream
/// arrives in chunks whose sizes cycle through `chunks` (0 = the rest at once). UDP: each chunk
/// is one datagram; what the decoder leaves of it is discarded. Checks the progress,
/// buffering and allocation properties at every call, and encodes every event.
pub fn drive_session(
    module: &ProtocolModule,
    transport: Transport,
    input: &[u8],
    chunks: &[usize],
) -> Outcome {
    let l = limits();
    let name = module.name();
    let bound = buffer_bound(name, &l);
    let mut s = module.new_session(transport, &l);
    let mut out = Outcome::default();
    let mut buf = BytesMut::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() && !out.closed {
        let want = chunks.get(i % chunks.len().max(1)).copied().unwrap_or(0);
        i += 1;
        let n = if want == 0 {
            rest.len()
        } else {
            want.min(rest.len())
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        if transport == Transport::Udp {
            buf.clear();
        }
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let (result, grew) = peak_growth(|| s.decode(&mut buf, now()));
            let limit = alloc_bound(before, name, &l);
            assert!(
                grew <= limit,
                "{name}: one decode of {before} bytes grew the heap by {grew} (> {limit})"
            );
            assert!(buf.len() <= before, "{name}: decode grew the buffer");
            match result {
                Ok(None) => {
                    assert!(
                        buf.len() <= bound,
                        "{name}: waits for more with {} bytes buffered (bound {bound})",
                        buf.len()
                    );
                    break;
                }
                Ok(Some(frame)) => {
                    assert!(
                        buf.len() < before || transport == Transport::Udp,
                        "{name}: a frame consumed nothing"
                    );
                    out.frames += 1;
                    out.events += frame.events.len();
                    for e in &frame.events {
                        let bytes = e.encode_to_vec();
                        let back = avlgate::proto::TelemetryEvent::decode(&bytes[..])
                            .expect("an encoded event decodes");
                        assert_eq!(&back, e, "{name}: protobuf round trip");
                        if name == "gt06" {
                            check_gt06_event(e);
                        }
                    }
                    if frame.close {
                        out.closed = true;
                        break;
                    }
                }
                Err(e) => {
                    out.errors += 1;
                    if e.action == Action::Close {
                        out.closed = true;
                        break;
                    }
                    assert!(
                        buf.len() < before || transport == Transport::Udp && buf.is_empty(),
                        "{name}: recoverable error consumed nothing ({e}): the connection would spin"
                    );
                }
            }
            if buf.is_empty() {
                break;
            }
        }
    }
    out
}

/// Chunk sizes from fuzz bytes: 1..=64 each, or 0 (all at once) when `raw` is empty.
pub fn chunk_sizes(raw: &[u8]) -> Vec<usize> {
    if raw.is_empty() {
        return vec![0];
    }
    raw.iter().map(|&b| usize::from(b % 64) + 1).collect()
}

// ---------------------------------------------------------------------------------------------
// Teltonika re-encoding

/// TCP framing and the codecs inside: anything accepted re-encodes.
pub fn check_teltonika_tcp_frame(buf: &[u8]) {
    let cap = limits().settings("teltonika").max_frame_bytes();
    match tframe::split_tcp(buf, cap) {
        Ok(tframe::Split::Complete(f, total)) => {
            assert!(
                total <= buf.len() && total <= cap,
                "split past the input or the cap"
            );
            if f.crc_ok {
                assert_eq!(
                    tframe::encode_tcp(f.data),
                    &buf[..total],
                    "accepted envelope re-encodes byte for byte"
                );
            }
            check_avl(f.data);
            check_command(f.data);
        }
        Ok(tframe::Split::Incomplete) => assert!(buf.len() < cap, "incomplete beyond the cap"),
        Err(_) => {}
    }
}

/// A whole UDP datagram.
pub fn check_teltonika_udp(d: &[u8]) {
    if let Ok(p) = tframe::parse_udp(d) {
        let mut again = tframe::encode_udp(p.packet_id, p.avl_packet_id, p.imei, p.data);
        // Byte 4 is "not usable": read and ignored, written as 0x01.
        if let (Some(a), Some(b)) = (again.get_mut(4), d.get(4)) {
            *a = *b;
        }
        assert_eq!(again, d, "accepted UDP header re-encodes byte for byte");
        check_avl(p.data);
    }
}

/// AVL data (codec id .. second count): accepted records encode back to data of the same
/// length that parses to the same records. (Not byte for byte: the total IO count is
/// redundant and not enforced, the encoder writes the true one.)
pub fn check_avl(data: &[u8]) {
    if let Ok((codec, records)) = avl::parse(data) {
        assert!(!records.is_empty() && records.len() <= 255);
        let again = avl::encode(codec, &records);
        assert_eq!(
            again.len(),
            data.len(),
            "re-encoded AVL data has the same length"
        );
        assert_eq!(
            avl::parse(&again),
            Ok((codec, records.clone())),
            "re-encoded AVL data parses to the same records"
        );
        // Every record maps under every built-in profile; zero coordinates are no position.
        for profile in tmapping::profiles() {
            for r in &records {
                let e = tmapping::to_event(r, &profile);
                assert_eq!(
                    e.position.is_some(),
                    r.latitude != 0 || r.longitude != 0,
                    "a position exactly when the record has coordinates"
                );
            }
        }
    }
}

/// Codec 12/13/14 data: an accepted message re-encodes byte for byte where an encoder exists.
pub fn check_command(data: &[u8]) {
    let Ok(msg) = command::parse(data) else {
        return;
    };
    let again = match (&msg, data.first()) {
        (command::Message::Response { text }, Some(0x0C)) => {
            Some(command::encode_codec12(0x06, text))
        }
        (command::Message::Command { text }, Some(0x0C)) => {
            Some(command::encode_codec12(0x05, text))
        }
        (command::Message::AddressedResponse { imei, text }, Some(0x0E)) => {
            command::encode_codec14(0x06, imei, text)
        }
        _ => None,
    };
    if let Some(again) = again {
        assert_eq!(
            again, data,
            "accepted command data re-encodes byte for byte: {msg:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// GT06 events

/// What every GT06 event holds, whatever bytes produced it (see the module doc).
pub fn check_gt06_event(e: &avlgate::proto::TelemetryEvent) {
    use avlgate::proto::{raw_value, EventKind};
    let first = e.raw.first().map(|r| (r.name.as_str(), &r.value));
    assert!(
        matches!(first, Some(("protocol_number", Some(raw_value::Value::UintValue(n)))) if *n <= 0xFF),
        "gt06: raw does not start with the protocol number: {first:?}"
    );
    let t = e.telemetry();
    for (field, v) in [
        ("battery_percent", t.battery_percent),
        ("gsm_signal_percent", t.gsm_signal_percent),
    ] {
        assert!(
            v.is_none_or(|v| (0.0..=100.0).contains(&v)),
            "gt06: {field} = {v:?} is no percentage"
        );
    }
    assert_eq!(
        e.kind == EventKind::Alarm as i32,
        !e.alarms.is_empty(),
        "gt06: kind {} with alarms {:?}",
        e.kind,
        e.alarms
    );
    assert!(
        e.attributes.keys().all(|k| k == "decode_error"),
        "gt06: attributes {:?}",
        e.attributes.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// GT06 re-encoding

/// GT06 framing: splits stay within the input and the cap, skips make progress, and an
/// accepted standard frame re-encodes byte for byte.
pub fn check_gt06_frames(mut buf: &[u8]) {
    let cap = limits().settings("gt06").max_frame_bytes();
    while !buf.is_empty() {
        match gt06_frame::split(buf, cap) {
            gt06_frame::Split::Incomplete => {
                assert!(
                    buf.len() < cap,
                    "GT06 waits with {} bytes (cap {cap})",
                    buf.len()
                );
                return;
            }
            gt06_frame::Split::Skip(n, why) => {
                assert!(
                    n >= 1 && n <= buf.len(),
                    "skip of {n} of {} bytes ({why:?})",
                    buf.len()
                );
                buf = &buf[n..];
            }
            gt06_frame::Split::Frame(f, n) => {
                assert!(
                    n >= 1 && n <= buf.len() && n <= cap,
                    "frame of {n} of {} bytes",
                    buf.len()
                );
                if f.wifi_count.is_none() {
                    let again = gt06_frame::encode(f.extended, f.protocol, &f.content, f.serial);
                    assert_eq!(
                        &again[..],
                        &buf[..n],
                        "accepted GT06 frame re-encodes byte for byte"
                    );
                }
                buf = &buf[n..];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Wialon re-encoding

/// Every line of `input` that is an `#SD#`/`#D#` packet (or a `#B#` segment) and parses
/// renders back to a body that parses to the same record.
pub fn check_wialon_records(input: &[u8]) {
    for line in input.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(l) = wpacket::split_line(line) else {
            continue;
        };
        for seg in l.body.split(|&b| b == b'|') {
            let fields: Vec<&[u8]> = seg.split(|&b| b == b';').collect();
            for n in [wpacket::SD_FIELDS, wpacket::D_FIELDS] {
                if let Some(fields) = fields.get(..n) {
                    check_wialon_record(fields);
                }
            }
        }
    }
}

fn check_wialon_record(fields: &[&[u8]]) {
    let Ok(r) = wpacket::parse_record(fields) else {
        return;
    };
    let full = fields.len() == wpacket::D_FIELDS;
    let text = wpacket::render_record(&r, full);
    let again: Vec<&[u8]> = text.as_bytes().split(|&b| b == b';').collect();
    let back = wpacket::parse_record(&again)
        .unwrap_or_else(|e| panic!("rendered record {text:?} does not parse: {e:?}"));
    let close = |a: Option<f64>, b: Option<f64>, tol: f64| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= tol * a.abs().max(1.0),
        (None, None) => true,
        _ => false,
    };
    assert_eq!(back.time, r.time, "time round trip: {text}");
    assert!(close(back.latitude, r.latitude, 1e-9), "latitude: {text}");
    assert!(
        close(back.longitude, r.longitude, 1e-9),
        "longitude: {text}"
    );
    assert!(close(back.speed, r.speed, 1e-12), "speed: {text}");
    assert!(close(back.course, r.course, 1e-12), "course: {text}");
    assert!(close(back.height, r.height, 1e-12), "height: {text}");
    assert_eq!(back.satellites, r.satellites, "satellites: {text}");
    assert!(close(back.hdop, r.hdop, 1e-12), "hdop: {text}");
    assert_eq!(
        (back.inputs, back.outputs),
        (r.inputs, r.outputs),
        "io: {text}"
    );
    assert_eq!(back.adc.len(), r.adc.len(), "adc: {text}");
    // The renderer writes text, so non-UTF-8 bytes come back replaced (the decoder itself
    // keeps them: `mapping` publishes such raw values as bytes).
    let lossy = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned().into_bytes();
    assert_eq!(
        back.ibutton,
        r.ibutton.as_ref().map(lossy),
        "ibutton: {text}"
    );
    assert_eq!(back.params.len(), r.params.len(), "params: {text}");
}

// ---------------------------------------------------------------------------------------------
// Detection

/// Detection over every prefix of `input`: it never asks for more than `MAX_DETECT_BYTES`,
/// UDP never asks for more, and on TCP, once a protocol is found, a longer prefix never names
/// another one (what was read first must not decide differently from what was read later).
/// UDP prefixes are different datagrams, each whole, so they may legitimately differ.
pub fn check_detect(input: &[u8], transport: Transport) {
    let mut found: Option<&'static str> = None;
    let end = input.len().min(MAX_DETECT_BYTES + 8);
    for n in 0..=end {
        match detect(&input[..n], transport) {
            Detection::NeedMore => {
                assert!(transport == Transport::Tcp, "UDP asked for more");
                assert!(n < MAX_DETECT_BYTES, "asked for more after {n} bytes");
            }
            Detection::Found(m) if transport == Transport::Tcp => {
                if let Some(before) = found {
                    assert_eq!(before, m.name(), "prefix of {n} bytes changed the protocol");
                }
                found = Some(m.name());
            }
            Detection::Found(_) | Detection::Unknown => {}
        }
    }
}

/// A mutation of `base`: flip a bit, overwrite, insert, delete or truncate, at the positions
/// and with the bytes of `ops` (what the property tests draw).
pub fn mutate(base: &[u8], ops: &[(u8, u16, u8)]) -> Vec<u8> {
    let mut v = base.to_vec();
    for &(op, at, byte) in ops {
        let at = if v.is_empty() {
            0
        } else {
            usize::from(at) % v.len()
        };
        match op % 5 {
            0 if !v.is_empty() => v[at] ^= 1 << (byte % 8),
            1 if !v.is_empty() => v[at] = byte,
            2 => v.insert(at, byte),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            4 => v.truncate(at),
            _ => {}
        }
    }
    v
}
