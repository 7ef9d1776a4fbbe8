//! The H02 frames of Traccar's test suite (`tests/data/traccar-frames-more.json`, 104
//! entries), through the public session API.
//!
//! - **Decoder entries** are replayed per test method in `seq` order as one TCP stream on one
//!   session (and each as a UDP datagram on a UDP session): H02 has no checksum and no length
//!   field, so every entry is a valid message and must decode to exactly one frame without an
//!   error, and get exactly the answer the family expects (built here: `V1` →
//!   `*HQ,<id>,V4,V1,<now>#`, `NBR` → `V4,NBR`, `HTBT`/`V0` → the echo, nothing else). The
//!   two binary frames of model-specific sizes (46 and 48 bytes) decode over TCP when the
//!   next message arrives (which is when the session can tell where they end), over UDP at
//!   once; the replay attributes every frame to the entry its first byte belongs to.
//! - **Traccar's asserts** are checked against our events after unit conversion (Traccar's
//!   speed is knots; ours km/h): position keys against `position`/`device_time`,
//!   `batteryLevel` against `telemetry`, `result` against `text`, `status` against `raw`. What
//!   Traccar checks as a position must have a fix with a time, what it expects `null` must
//!   produce no position. Misses are failures unless listed in [`KNOWN_GAPS`] with the reason
//!   (and a listed gap that starts matching fails). The score is printed and asserted.
//! - **Nothing is lost:** every field of every message is re-read here, independently of the
//!   decoder (text fields split at `,`; binary frames read nibble by nibble), and must be found
//!   in the events: typed (coordinates, time and date, course, cell towers, text) or in `raw`.
//! - **Frame-decoder entries**: the first frame cut from each input has exactly Traccar's bytes
//!   (plus the line break after a text message, which is consumed with it).
//! - **Encoder entries**: our typed commands (engine stop/resume, report interval) and CUSTOM
//!   texts (arm `SCF,0,0`, disarm `SCF,1,1`) encode to Traccar's exact bytes.
//! - **A command round trip through the real gateway**: a device identifies with `V1`, gets
//!   `S20` over the embedded broker and confirms it with `V4`; the backend sees SENT then
//!   RESPONDED with the confirmation's text.
//!
//! `cargo test --test conformance_h02 -- --nocapture` prints the figures.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::config::{Settings, SinkKind};
use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{
    Command, CommandResult, CommandStatus, CommandType, TelemetryEvent, Transport,
};
use avlgate::protocol::h02::H02;
use avlgate::protocol::{
    CommandRequest, DecodeError, Frame, ProtocolConfig, ProtocolModule, ProtocolSession,
};
use bytes::BytesMut;
use prost::Message;
use serde_json::Value;

/// 2026-11-20 23:32:30 UTC: the clock the sessions see.
const NOW_SECS: u64 = 1_795_217_550;
const NOW_FULL: &str = "20261120233230";

/// Frames (test method, seq) Traccar checks as positions that we do not match, and why.
const KNOWN_GAPS: &[(&str, u64, &str)] = &[
    (
        "testDecode",
        18,
        "VP1 sends a date but no time of day: Traccar stamps midnight, we leave device_time unset (the date stays in raw `date`; received_at is the arrival)",
    ),
    (
        "testDecode",
        20,
        "VP1 sends a date but no time of day: Traccar stamps midnight, we leave device_time unset (the date stays in raw `date`; received_at is the arrival)",
    ),
    (
        "testDecode",
        49,
        "V1 with empty time and date fields: Traccar stamps the server's clock, we leave device_time unset (received_at is that clock)",
    ),
];

/// Traccar keys asserted on values we have no counterpart for (none).
const EXCLUDED_KEYS: &[(&str, &str)] = &[];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn bytes_of(e: &Value) -> Vec<u8> {
    let f = e["frame"].as_str().unwrap();
    if e["encoding"] == "hex" {
        hex::decode(f).unwrap()
    } else {
        f.as_bytes().to_vec()
    }
}

fn entries(kind: &str) -> BTreeMap<String, Vec<Value>> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in all
        .into_iter()
        .filter(|e| e["protocol"] == "h02" && e["test_kind"] == kind)
    {
        let test = e["test"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap()
            .to_string();
        by.entry(test).or_default().push(e);
    }
    for v in by.values_mut() {
        v.sort_by_key(|e| e["seq"].as_u64());
    }
    by
}

// ---------------------------------------------------------------------------------------------
// Independent helpers: civil dates, the expected reply, coordinates.

/// (y, m, d, hh, mm, ss) of seconds since the epoch (H. Hinnant's civil_from_days).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

/// `2015-10-20T14:21:11.000Z` → seconds.
fn parse_iso(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

/// The answer the family expects to a text message (ack off), `None` for binary frames.
fn expected_reply(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?.trim_end();
    let inner = text.strip_prefix('*')?.strip_suffix('#')?;
    let mut f = inner.splitn(4, ',');
    let (maker, id) = (f.next()?, f.next()?);
    let ty = f.next()?.split('#').next()?;
    let out = match ty {
        "V1" | "NBR" if !id.is_empty() => format!("*HQ,{id},V4,{ty},{NOW_FULL}#"),
        "HTBT" | "V0" => format!("*{maker},{id},{ty}#"),
        _ => return None,
    };
    Some(out.into_bytes())
}

/// A coordinate field read here, unsigned: `ddmm.mmmm` (any number of degree digits),
/// `-dd-mm.mmmm`, or `ddmmmmmm` (minutes × 10⁴).
fn coordinate(s: &str) -> Option<f64> {
    if let Some(rest) = s.strip_prefix('-') {
        let (d, m) = rest.split_once('-')?;
        return Some(d.parse::<f64>().ok()? + m.parse::<f64>().ok()? / 60.0);
    }
    if s.contains('.') {
        let v: f64 = s.parse().ok()?;
        let deg = (v / 100.0).floor();
        return Some(deg + (v - deg * 100.0) / 60.0);
    }
    if s.len() >= 7 && s.bytes().all(|b| b.is_ascii_digit()) {
        let v: f64 = s.parse().ok()?;
        let deg = (v / 1_000_000.0).floor();
        return Some(deg + (v - deg * 1_000_000.0) / 10_000.0 / 60.0);
    }
    None
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

// ---------------------------------------------------------------------------------------------
// Traccar's asserts against our events.

fn raw_uint(e: &TelemetryEvent, k: &str) -> Option<u64> {
    match e.raw_named(k)? {
        RawV::UintValue(v) => Some(*v),
        _ => None,
    }
}

fn check(e: &TelemetryEvent, key: &str, want: &Value) -> Option<Result<(), String>> {
    let p = e.position.as_ref();
    let num = want.as_f64();
    let ok = match key {
        "latitude" => p.zip(num).is_some_and(|(p, w)| close(p.latitude, w, 1e-5)),
        "longitude" => p.zip(num).is_some_and(|(p, w)| close(p.longitude, w, 1e-5)),
        "valid" => p.map(|p| p.valid) == want.as_bool(),
        "fixTime" => e.device_time.as_ref().map(|t| t.seconds) == want.as_str().map(parse_iso),
        // Traccar keeps knots; the schema is km/h.
        "speed" => p
            .and_then(|p| p.speed)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w * 1.852, 0.01)),
        "course" => p
            .and_then(|p| p.course)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w, 1e-6)),
        "batteryLevel" => e
            .telemetry()
            .battery_percent
            .zip(num)
            .is_some_and(|(g, w)| close(g, w, 1e-9)),
        "ignition" => e.telemetry().ignition == want.as_bool(),
        // The device's status word, as sent.
        "status" => raw_uint(e, "status") == want.as_u64(),
        "result" => e.text.as_deref() == want.as_str(),
        _ => return None,
    };
    Some(if ok {
        Ok(())
    } else {
        Err(format!("{key}: want {want}, got {e:?}"))
    })
}

// ---------------------------------------------------------------------------------------------
// Raw survival: every field of the message, re-read here, is in the events.

/// What the events of a frame hold, for looking fields up.
struct Found<'a> {
    events: &'a [TelemetryEvent],
    imei: &'a str,
}

impl Found<'_> {
    fn strings(&self) -> impl Iterator<Item = &str> {
        self.events.iter().flat_map(|e| {
            e.raw.iter().filter_map(|r| match &r.value {
                Some(RawV::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
        })
    }

    fn numbers(&self) -> Vec<f64> {
        let mut v = Vec::new();
        for e in self.events {
            for r in &e.raw {
                match r.value {
                    Some(RawV::UintValue(x)) => v.push(x as f64),
                    Some(RawV::IntValue(x)) => v.push(x as f64),
                    Some(RawV::DoubleValue(x)) => v.push(x),
                    _ => {}
                }
            }
            if let Some(p) = &e.position {
                v.extend(p.course);
                v.extend(p.altitude);
            }
            for c in &e.cell_towers {
                v.extend([c.mcc as f64, c.mnc as f64, c.lac as f64, c.cell_id as f64]);
                v.extend(c.signal.map(f64::from));
            }
        }
        v
    }

    fn has_number(&self, x: f64) -> bool {
        self.numbers().iter().any(|&n| close(n, x, 1e-9))
    }

    /// `hhmmss` or `ddmmyy` of a device time.
    fn time_parts(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e.device_time.as_ref())
            .flat_map(|t| {
                let (y, mo, d, h, mi, s) = civil(t.seconds);
                [
                    format!("{h:02}{mi:02}{s:02}"),
                    format!("{d:02}{mo:02}{:02}", y % 100),
                ]
            })
            .collect()
    }

    fn position(&self) -> Option<&avlgate::proto::Position> {
        self.events.iter().find_map(|e| e.position.as_ref())
    }

    /// Whether text field `f` (its neighbours give coordinate context) is in the events.
    fn text_field(&self, f: &str, next: Option<&str>) -> bool {
        if self
            .strings()
            .any(|s| s == f || s.split(',').any(|x| x == f))
        {
            return true;
        }
        // Hemispheres and coordinates are typed when the fix reads (else raw, above).
        if let Some(p) = self.position() {
            match (f, next) {
                ("N" | "S", _) => return (p.latitude < 0.0) == (f == "S") || p.latitude == 0.0,
                ("E" | "W", _) => return (p.longitude < 0.0) == (f == "W") || p.longitude == 0.0,
                (_, Some("N" | "S")) => {
                    return coordinate(f).is_some_and(|v| close(v, p.latitude.abs(), 1e-6))
                }
                (_, Some("E" | "W")) => {
                    return coordinate(f).is_some_and(|v| close(v, p.longitude.abs(), 1e-6))
                }
                _ => {}
            }
        }
        if f == self.imei || self.events.iter().any(|e| e.text.as_deref() == Some(f)) {
            return true;
        }
        if self.time_parts().iter().any(|t| t == f) {
            return true;
        }
        let t = f.trim_start_matches(' ');
        if let Ok(x) = t.parse::<f64>() {
            if self.has_number(x) {
                return true;
            }
        }
        if !t.is_empty() && t.len() <= 16 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(x) = u64::from_str_radix(t, 16) {
                if self.has_number(x as f64) {
                    return true;
                }
            }
        }
        false
    }
}

/// Checks every field of a text message; returns (checked, problems).
fn text_survives(bytes: &[u8], found: &Found) -> (usize, Vec<String>) {
    let text = String::from_utf8_lossy(bytes);
    let inner = text
        .trim_end()
        .trim_start_matches('*')
        .trim_end_matches('#')
        .to_string();
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut head = inner.splitn(4, ',');
    let (maker, id, ty) = (
        head.next().unwrap_or(""),
        head.next().unwrap_or(""),
        head.next().unwrap_or(""),
    );
    let body = head.next().unwrap_or("");
    for (what, f) in [("maker", maker), ("type", ty)] {
        checked += 1;
        if !found.strings().any(|s| s == f) {
            problems.push(format!("{what} {f:?} not in raw"));
        }
    }
    if !id.is_empty() {
        checked += 1;
        if id != found.imei {
            problems.push(format!("id {id} is not the session's {}", found.imei));
        }
    }
    if ty == "SMS" {
        checked += 1;
        if !found.events.iter().any(|e| e.text.as_deref() == Some(body)) {
            problems.push("SMS text not in `text`".into());
        }
        return (checked, problems);
    }
    // VP1 joins its cells with `Y`.
    let fields: Vec<&str> = body
        .split(',')
        .flat_map(|f| {
            if ty == "VP1" {
                f.split('Y').collect::<Vec<_>>()
            } else {
                vec![f]
            }
        })
        .collect();
    for (i, f) in fields.iter().enumerate() {
        if f.is_empty() || (ty == "V3" && *f == "X") {
            continue;
        }
        checked += 1;
        // V3 writes MCC and MNC as one field.
        if ty == "V3" && i == 1 && f.len() > 3 {
            let (mcc, mnc) = f.split_at(3);
            let ok = found
                .events
                .iter()
                .flat_map(|e| &e.cell_towers)
                .all(|c| mcc.parse() == Ok(c.mcc) && mnc.parse() == Ok(c.mnc));
            if !ok {
                problems.push(format!("V3 MCC/MNC {f}"));
            }
            continue;
        }
        if !found.text_field(f, fields.get(i + 1).copied()) {
            problems.push(format!("field {i} {f:?} not found"));
        }
    }
    (checked, problems)
}

/// Reads a binary frame nibble by nibble and checks every field; returns (checked, problems).
fn binary_survives(b: &[u8], found: &Found) -> (usize, Vec<String>) {
    let nib = |i: usize| -> u8 {
        if i % 2 == 0 {
            b[i / 2] >> 4
        } else {
            b[i / 2] & 0x0F
        }
    };
    let digits = |from: usize, n: usize| -> u64 {
        (from..from + n).fold(0, |a, i| a * 10 + u64::from(nib(i)))
    };
    let id_len = if b.len() == 42 { 8 } else { 5 };
    let id_digits = if id_len == 8 { 15 } else { 10 };
    let mut problems = Vec::new();
    let id: String = (2..2 + id_digits)
        .map(|i| char::from(b'0' + nib(i)))
        .collect();
    if id != found.imei {
        problems.push(format!("id {id}"));
    }
    let at = 1 + id_len; // byte offset of the time
    let t = |k: usize| format!("{:02}", digits((at + k) * 2, 2));
    let time = format!("{}{}{}", t(0), t(1), t(2));
    let date = format!("{}{}{}", t(3), t(4), t(5));
    let parts = found.time_parts();
    if !(parts.contains(&time) && parts.contains(&date)) {
        problems.push(format!("time {time} date {date}"));
    }
    let lat_at = (at + 6) * 2;
    let lat = digits(lat_at, 2) as f64 + digits(lat_at + 2, 6) as f64 / 10_000.0 / 60.0;
    let battery = b[at + 10];
    let lon_at = (at + 11) * 2;
    let lon = digits(lon_at, 3) as f64 + digits(lon_at + 3, 6) as f64 / 10_000.0 / 60.0;
    let flags = nib(lon_at + 9);
    let sc = (at + 16) * 2;
    let (speed, course) = (digits(sc, 3), digits(sc + 3, 3));
    let status_at = at + 19;
    let status = u32::from_be_bytes(b[status_at..status_at + 4].try_into().unwrap());
    let tail = &b[status_at + 4..];
    match found.position() {
        Some(p) => {
            if !close(p.latitude.abs(), lat, 1e-9) || (p.latitude < 0.0) == (flags & 4 != 0) {
                problems.push(format!("latitude {lat} flags {flags:x}"));
            }
            if !close(p.longitude.abs(), lon, 1e-9) || (p.longitude < 0.0) == (flags & 8 != 0) {
                problems.push(format!("longitude {lon}"));
            }
            if p.valid != (flags & 2 != 0) {
                problems.push("validity flag".into());
            }
            if p.course != Some(course as f64) {
                problems.push(format!("course {course}"));
            }
        }
        None => problems.push("no position".into()),
    }
    let e = &found.events[0];
    if raw_uint(e, "battery_level") != Some(battery.into()) {
        problems.push(format!("battery byte {battery}"));
    }
    if e.raw_named("speed_knots") != Some(&RawV::DoubleValue(speed as f64)) {
        problems.push(format!("speed {speed}"));
    }
    if raw_uint(e, "status") != Some(status.into()) {
        problems.push(format!("status {status:08x}"));
    }
    if e.raw_named("tail") != Some(&RawV::BytesValue(tail.to_vec())) {
        problems.push("tail".into());
    }
    // id, time, date, latitude, battery, longitude, flags, speed, course, status, tail.
    (11, problems)
}

// ---------------------------------------------------------------------------------------------
// The replay.

/// A stream on one session: results with the byte offsets they consumed.
struct Replay {
    s: Box<dyn ProtocolSession>,
    buf: BytesMut,
    consumed: usize,
    udp: bool,
}

/// A result, the stream offset of its first byte, and the session's device after it.
type Outcome = (usize, Result<Frame, DecodeError>, String);

impl Replay {
    fn new(t: Transport) -> Self {
        Replay {
            s: H02.new_session(t, &ProtocolConfig::default()),
            buf: BytesMut::new(),
            consumed: 0,
            udp: t == Transport::Udp,
        }
    }

    /// Feeds `bytes`; every result with the stream offset of its first byte.
    fn push(&mut self, bytes: &[u8]) -> Vec<Outcome> {
        if self.udp {
            // A datagram stands alone.
            self.consumed += self.buf.len();
            self.buf.clear();
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            let before = self.buf.len();
            let r = self.s.decode(&mut self.buf, now());
            let used = before - self.buf.len();
            let r = match r {
                Ok(None) => break,
                Ok(Some(f)) => Ok(f),
                Err(e) => Err(e),
            };
            out.push((
                self.consumed,
                r,
                self.s.imei().unwrap_or_default().to_string(),
            ));
            self.consumed += used;
        }
        out
    }
}

#[derive(Default)]
struct Figures {
    entries: usize,
    decoded: usize,
    replies: usize,
    answered: usize,
    udp_decoded: usize,
    held_for_next: usize,
    positions: usize,
    matched: usize,
    known_gaps: usize,
    nulls: usize,
    asserts: usize,
    asserts_matched: usize,
    asserts_in_gaps: usize,
    excluded_asserts: usize,
    raw_frames: usize,
    raw_values: usize,
    lenient: usize,
}

fn replay_decoder_entries(fig: &mut Figures, failures: &mut Vec<String>) {
    let mut gaps_seen = Vec::new();
    for (test, entries) in entries("protocol_decoder") {
        // TCP: one stream; each entry's results are those whose first byte is in it.
        let mut tcp = Replay::new(Transport::Tcp);
        let mut udp = Replay::new(Transport::Udp);
        let mut starts = Vec::new();
        let mut results: Vec<Outcome> = Vec::new();
        let mut offset = 0;
        for e in &entries {
            let b = bytes_of(e);
            starts.push(offset);
            offset += b.len();
            let out = tcp.push(&b);
            if out.iter().all(|(at, _, _)| *at < *starts.last().unwrap()) {
                fig.held_for_next += 1;
            }
            results.extend(out);
        }
        starts.push(offset);
        for (i, e) in entries.iter().enumerate() {
            fig.entries += 1;
            let seq = e["seq"].as_u64().unwrap();
            let name = format!("{test}#{seq}");
            let b = bytes_of(e);
            let mine: Vec<&Outcome> = results
                .iter()
                .filter(|(at, _, _)| (starts[i]..starts[i + 1]).contains(at))
                .collect();
            let frames: Vec<&Frame> = mine
                .iter()
                .filter_map(|(_, r, _)| r.as_ref().ok())
                .collect();
            let errors: Vec<&DecodeError> = mine
                .iter()
                .filter_map(|(_, r, _)| r.as_ref().err())
                .collect();
            let [f] = &frames[..] else {
                failures.push(format!(
                    "{name}: {} frames, errors {errors:?}",
                    frames.len()
                ));
                continue;
            };
            if !errors.is_empty() {
                failures.push(format!("{name}: errors {errors:?}"));
                continue;
            }
            fig.decoded += 1;
            fig.lenient += f.lenient.len();
            // The same message as a datagram.
            let u = udp.push(&b);
            match &u[..] {
                [(_, Ok(g), _)] if g.reply == f.reply && g.events.len() == f.events.len() => {
                    fig.udp_decoded += 1
                }
                other => failures.push(format!("{name}: over UDP {other:?}")),
            }
            let want = expected_reply(&b);
            fig.replies += 1;
            fig.answered += usize::from(want.is_some());
            if f.reply.as_deref() != want.as_deref() {
                failures.push(format!(
                    "{name}: reply {:?}, want {:?}",
                    f.reply
                        .as_ref()
                        .map(|r| String::from_utf8_lossy(r).into_owned()),
                    want.map(|w| String::from_utf8_lossy(&w).into_owned())
                ));
            }
            let imei = mine
                .iter()
                .map(|(_, _, i)| i.clone())
                .next()
                .unwrap_or_default();
            let found = Found {
                events: &f.events,
                imei: &imei,
            };
            if f.events.is_empty() {
                failures.push(format!("{name}: no event"));
                continue;
            }
            let (checked, problems) = if b.first() == Some(&b'$') {
                binary_survives(&b, &found)
            } else {
                text_survives(&b, &found)
            };
            fig.raw_frames += 1;
            fig.raw_values += checked;
            for p in problems {
                failures.push(format!("{name}: raw: {p}"));
            }
            let with_position = f.events.iter().find(|e| e.position.is_some());
            match e["expect"].as_str() {
                Some("null") => {
                    fig.nulls += 1;
                    if with_position.is_some() {
                        failures.push(format!(
                            "{name}: Traccar makes nothing of it, we made a position"
                        ));
                    }
                    continue;
                }
                Some("none") => continue,
                _ => {}
            }
            fig.positions += 1;
            let gap = KNOWN_GAPS.iter().find(|(t, s, _)| *t == test && *s == seq);
            let ev = with_position.unwrap_or(&f.events[0]);
            let mut problems = Vec::new();
            if e["check"] == "verifyPosition" {
                let in_range = ev
                    .position
                    .as_ref()
                    .is_some_and(|p| p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0);
                if !in_range || ev.device_time.is_none() {
                    problems.push(format!(
                        "no fix with a time: {:?} {:?}",
                        ev.position, ev.device_time
                    ));
                }
            }
            let asserts = e["asserts"].as_object().map_or(0, |a| a.len());
            fig.asserts += asserts;
            let mut missed = 0;
            for (k, v) in e["asserts"].as_object().into_iter().flatten() {
                match check(ev, k, v) {
                    Some(Ok(())) => fig.asserts_matched += 1,
                    Some(Err(why)) => {
                        missed += 1;
                        problems.push(why);
                    }
                    None if EXCLUDED_KEYS.iter().any(|(x, _)| x == k) => fig.excluded_asserts += 1,
                    None => {
                        missed += 1;
                        problems.push(format!("unmapped assert {k}"));
                    }
                }
            }
            match (gap, problems.is_empty()) {
                (None, true) => fig.matched += 1,
                (None, false) => failures.push(format!("{name}: {}", problems.join("; "))),
                (Some((_, s, why)), false) => {
                    fig.known_gaps += 1;
                    fig.asserts_in_gaps += missed;
                    gaps_seen.push(*s);
                    eprintln!("  gap {name}: {why}");
                }
                (Some((_, _, why)), true) => failures.push(format!(
                    "{name} matches now: remove it from KNOWN_GAPS ({why})"
                )),
            }
        }
        // Nothing may be left waiting at the end of a method's stream.
        if !tcp.buf.is_empty() {
            failures.push(format!("{test}: {} bytes never decoded", tcp.buf.len()));
        }
    }
    for (t, s, why) in KNOWN_GAPS {
        if !gaps_seen.contains(s) {
            failures.push(format!(
                "KNOWN_GAPS lists {t}#{s} ({why}) but it was not seen as a gap"
            ));
        }
    }
}

fn frame_decoder_entries(failures: &mut Vec<String>) -> usize {
    let mut n = 0;
    for (test, entries) in entries("frame_decoder") {
        let mut s = H02.new_session(Transport::Tcp, &ProtocolConfig::default());
        for e in entries {
            let name = format!("{test}#{}", e["seq"]);
            let input = bytes_of(&e);
            let want = hex::decode(e["asserts"]["frame_out"].as_str().unwrap()).unwrap();
            // A text message takes the line break after it along.
            let breaks = input[want.len()..]
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            assert!(
                input.starts_with(&want),
                "{name}: the input starts with the frame"
            );
            let mut buf = BytesMut::from(&input[..]);
            match s.decode(&mut buf, now()) {
                Ok(Some(_)) if input.len() - buf.len() == want.len() + breaks => n += 1,
                other => failures.push(format!(
                    "{name}: cut {} bytes ({other:?}), want {}",
                    input.len() - buf.len(),
                    want.len() + breaks
                )),
            }
            // What follows in the input (Traccar's next frame) decodes too.
            while !buf.is_empty() {
                match s.decode(&mut buf, now()) {
                    Ok(Some(_)) => {}
                    other => {
                        failures.push(format!("{name}: the rest: {other:?}"));
                        break;
                    }
                }
            }
        }
    }
    n
}

fn encoder_entries(failures: &mut Vec<String>) -> usize {
    let mut n = 0;
    for (test, entries) in entries("protocol_encoder") {
        for e in entries {
            let a = &e["asserts"];
            let request = match a["command_type"].as_str().unwrap() {
                "engineStop" => CommandRequest::EngineStop,
                "engineResume" => CommandRequest::EngineResume,
                "positionPeriodic" => CommandRequest::SetReportInterval {
                    seconds: a["command_attributes"]["frequency"].as_u64().unwrap() as u32,
                },
                // No typed request for arming: CUSTOM with the command's name and parameters.
                "alarmArm" => CommandRequest::Text("SCF,0,0".into()),
                "alarmDisarm" => CommandRequest::Text("SCF,1,1".into()),
                other => {
                    failures.push(format!("{test}: command type {other} not mapped"));
                    continue;
                }
            };
            // The device identifies itself; the session's clock reads 01:02:03 (Traccar's).
            let at = a["command_time_local"].as_str().unwrap();
            let (h, m, s): (u64, u64, u64) = (
                at[0..2].parse().unwrap(),
                at[3..5].parse().unwrap(),
                at[6..8].parse().unwrap(),
            );
            let clock = UNIX_EPOCH
                + Duration::from_secs(NOW_SECS / 86_400 * 86_400 + h * 3600 + m * 60 + s);
            let mut session = H02.new_session(Transport::Tcp, &ProtocolConfig::default());
            let mut buf = BytesMut::from(
                &b"*HQ,123456789012345,V1,010203,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"[..],
            );
            session.decode(&mut buf, clock).unwrap().unwrap();
            match session.encode_command(&request) {
                Ok(b) if b == e["frame"].as_str().unwrap().as_bytes() => n += 1,
                other => failures.push(format!("{test}: {other:?}, want {}", e["frame"])),
            }
        }
    }
    n
}

#[test]
fn traccar_h02_frames() {
    let mut fig = Figures::default();
    let mut failures = Vec::new();
    replay_decoder_entries(&mut fig, &mut failures);
    let cuts = frame_decoder_entries(&mut failures);
    let encoded = encoder_entries(&mut failures);
    eprintln!("H02 conformance (Traccar frames):");
    eprintln!(
        "  decoder entries decoded to one frame without error: {}/{} over TCP ({} held until the next message told where they end), {} over UDP",
        fig.decoded, fig.entries, fig.held_for_next, fig.udp_decoded
    );
    eprintln!(
        "  replies exact: {} checked ({} answered, the rest rightly silent); lenient quirks counted: {}",
        fig.replies, fig.answered, fig.lenient
    );
    eprintln!(
        "  frames Traccar checks as positions matching every assert: {}/{} ({} known gaps); null entries without a position: {}",
        fig.matched, fig.positions, fig.known_gaps, fig.nulls
    );
    eprintln!(
        "  asserted values matching our vocabulary: {}/{} ({} on excluded keys, {} missed in known-gap frames)",
        fig.asserts_matched, fig.asserts, fig.excluded_asserts, fig.asserts_in_gaps
    );
    eprintln!(
        "  raw survival: {} fields re-read from {} frames, each found typed or in `raw`",
        fig.raw_values, fig.raw_frames
    );
    eprintln!("  frame-decoder cuts exact: {cuts}; encoder entries exact: {encoded}");
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    assert_eq!(fig.decoded, fig.entries);
    assert_eq!(fig.udp_decoded, fig.entries);
    assert_eq!(fig.entries, 89);
    assert_eq!(fig.held_for_next, 2, "the 46- and 48-byte frames");
    assert_eq!(fig.matched + fig.known_gaps, fig.positions);
    assert_eq!(fig.known_gaps, KNOWN_GAPS.len());
    assert_eq!(
        fig.asserts_matched + fig.excluded_asserts + fig.asserts_in_gaps,
        fig.asserts
    );
    assert_eq!(fig.raw_frames, fig.entries);
    assert_eq!((cuts, encoded), (10, 5));
}

// ---------------------------------------------------------------------------------------------
// A command round trip through the real gateway.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_stop_round_trip_through_the_gateway() {
    use common::*;
    let broker: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = TestGateway::start(Settings {
        sink: Some(SinkKind::Embedded),
        embedded_mqtt_listen: Some(broker),
        command_reply_timeout_secs: Some(10),
        ..Default::default()
    })
    .await;
    assert!(
        eventually(10, || async {
            tokio::net::TcpStream::connect(broker).await.is_ok()
        })
        .await
    );
    let id = "4210209006";
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let mut events = Subscriber::connect(broker, &format!("avlgate/events/{id}")).await;
    let mut dev = Device::connect(gw.addr).await;
    dev.send(
        b"*HQ,4210209006,V1,201812,A,2608.9437,N,08016.2521,W,000.80,000,150317,FFFFFBFF#\r\n",
    )
    .await;
    let reply = dev.read_exact(36, 10).await.expect("the V4 confirmation");
    let reply = String::from_utf8(reply).unwrap();
    assert!(
        reply.starts_with("*HQ,4210209006,V4,V1,") && reply.ends_with('#'),
        "{reply}"
    );
    assert!(events.next_event(10).await.is_some());
    // The command bus subscribes on its own schedule (MQTT drops what comes before): probe
    // with a command it must reject until its result shows up.
    let mut ready = false;
    for i in 0..15 {
        let probe = format!(r#"{{"commandId":"probe-{i}"}}"#);
        results
            .publish(&format!("avlgate/commands/{id}"), probe.into_bytes())
            .await;
        while let Some((_, p)) = results.next(1).await {
            if CommandResult::decode(&p[..]).is_ok_and(|r| r.command_id == format!("probe-{i}")) {
                ready = true;
            }
        }
        if ready {
            break;
        }
    }
    assert!(ready, "the gateway's command bus never read a command");
    // CUSTOM `S20,1,1`: the bus's validation (`command::ledger::validate`) still requires a
    // text or payload, so a typed ENGINE_STOP without one is refused before it reaches a
    // session (reported; the typed encoding is checked byte for byte above and in the unit
    // tests, and gives these same bytes).
    let command = Command {
        command_id: "h02-stop".into(),
        imei: id.into(),
        r#type: CommandType::Custom as i32,
        body: Some(avlgate::proto::command::Body::Text("S20,1,1".into())),
        ttl_secs: 30,
        ..Default::default()
    };
    results
        .publish(&format!("avlgate/commands/{id}"), command.encode_to_vec())
        .await;
    let Some(frame) = dev.read_exact(30, 10).await else {
        let mut seen = Vec::new();
        while let Some((_, p)) = results.next(2).await {
            seen.push(CommandResult::decode(&p[..]).unwrap());
        }
        panic!("the command never reached the device; results: {seen:?}");
    };
    let text = String::from_utf8(frame).unwrap();
    // `*HQ,4210209006,S20,HHmmss,1,1#`
    assert!(
        text.starts_with("*HQ,4210209006,S20,") && text.ends_with(",1,1#"),
        "{text}"
    );
    let time = &text[19..25];
    assert!(time.bytes().all(|b| b.is_ascii_digit()), "{text}");
    dev.send(
        format!("*HQ,4210209006,V4,S20,DONE,{time},201900,A,2608.9437,N,08016.2521,W,000.00,000,150317,F7FFFBFF#")
            .as_bytes(),
    )
    .await;
    let mut statuses = Vec::new();
    while let Some((_, p)) = results.next(3).await {
        let r = CommandResult::decode(&p[..]).unwrap();
        if r.command_id == "h02-stop" {
            statuses.push((r.status, r.response.clone()));
        }
    }
    let sent = statuses
        .iter()
        .filter(|(s, _)| *s == CommandStatus::Sent as i32)
        .count();
    assert_eq!(sent, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .any(|(s, r)| *s == CommandStatus::Responded as i32
                && format!("{r:?}").contains("S20,DONE")),
        "{statuses:?}"
    );
    gw.stop().await;
}
