//! The Queclink frames of Traccar's test suite (`tests/data/traccar-frames-more.json`,
//! protocol `queclink`: 191 text frames, 8 binary frames, 4 frame-decoder cases), replayed per
//! test method in `seq` order on one session each, through the public session API, the way a
//! device sends them (text with its closing `$`: 24 of them were stored without it, as
//! Traccar's splitter strips it).
//!
//! - **Framing and checksums are re-checked here**, independently of the gateway:
//!   CRC-16/CCITT-FALSE and CRC-8 (poly 0x31, init 0xFF) bit by bit, the classic length at its
//!   header's offset; every frame of the file checks, so every frame must decode to exactly one
//!   frame, and each frame-decoder case must be cut exactly where Traccar cuts it.
//! - **Replies are built here**: `+SACK:GTHBD,<version>,<count>$` for the heartbeat,
//!   `+SACK:<count>$` (the count's characters as sent) for every other text message ending
//!   in a 4-hex-digit count (the GT300 dialect's count sits before its trailing version),
//!   `+SACK:<count>$` for compact frames, nothing for the classic binary form.
//! - **Identity**: the first frame logs the IMEI in (field 2, field 1 on the GT300 dialect).
//! - **Positions**: every longitude/latitude/GPS-time triple of a text frame (found here by
//!   its shape) is exactly one position event, in order, with those coordinates; a frame
//!   without one has no position (the `expect: null` entries among them).
//! - **Nothing is lost**: every non-empty field of every text frame is found in the events,
//!   in `raw` (as sent, or as the number it spells in decimal or hex) or in a typed place
//!   (position, fix time, cell towers, Wi-Fi access points, text) — checked here field by
//!   field, independently of the decoder's naming.
//! - **Traccar's asserts** are checked against our vocabulary (`telemetry`, `alarms`) after
//!   unit conversion, or against `raw` for values Traccar keeps under its own name. The score
//!   is printed and asserted; a miss fails unless listed in [`KNOWN_GAPS`] with its reason,
//!   and a listed gap that starts matching fails too.
//!
//! `cargo test --test conformance_queclink -- --nocapture` prints the figures
//! (`QL_DUMP=1` also prints every frame's events).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{Alarm, EventKind, TelemetryEvent, Transport};
use avlgate::protocol::queclink::{frame, Queclink};
use avlgate::protocol::{
    Action, DecodeError, Frame, ProtocolConfig, ProtocolModule, ProtocolSession,
};
use bytes::BytesMut;
use serde_json::Value;

/// Traccar asserts (test, seq, key) we do not match, and why.
const KNOWN_GAPS: &[(&str, u64, &str, &str)] = &[(
    "Text",
    44,
    "fuel",
    "Traccar parses an Escort `COMB,<id>,<fuel>,…` line out of GTDTT's transparent serial data (a third-party sensor's payload); kept whole as bytes in raw `transparent_data`",
)];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn crc16_ccitt_false(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc8(data: &[u8]) -> u8 {
    let mut crc: u8 = 0xFF;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            Ok(Some(f)) => out.push(Ok(f)),
            Err(e) => {
                assert_eq!(e.action, Action::Continue, "{e}");
                out.push(Err(e));
            }
        }
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    out
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `-?d{1,3}.dddddd`.
fn coord(s: &str, int_max: usize) -> Option<f64> {
    let t = s.strip_prefix('-').unwrap_or(s);
    let (i, f) = t.split_once('.')?;
    (is_digits(i) && i.len() <= int_max && f.len() == 6 && is_digits(f))
        .then(|| s.parse().ok())
        .flatten()
}

/// The expected acknowledgement of a text message, from its fields.
fn text_ack(f: &[&str]) -> Option<String> {
    let n = f.len();
    let last = f[n - 1];
    if f[0] == "+ACK:GTHBD" {
        return Some(format!("+SACK:GTHBD,{},{last}$", f[1]));
    }
    if last.len() == 4 && is_hex(last) {
        return Some(format!("+SACK:{last}$"));
    }
    let prev = f[n - 2];
    (last.len() == 10 && is_hex(last) && prev.len() == 4 && is_hex(prev))
        .then(|| format!("+SACK:{prev}$"))
}

/// Every `lon,lat,YYYYMMDDHHMMSS` triple of a text frame.
fn triples(f: &[&str]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for w in f.windows(3) {
        if let (Some(lon), Some(lat)) = (coord(w[0], 3), coord(w[1], 2)) {
            if w[2].len() == 14 && is_digits(w[2]) && lon.abs() <= 180.0 && lat.abs() <= 90.0 {
                out.push((lon, lat));
            }
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// `YYYYMMDDHHMMSS` → seconds (independent of the gateway).
fn secs14(s: &str) -> Option<i64> {
    if s.len() != 14 || !is_digits(s) {
        return None;
    }
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    Some(days * 86_400 + n(8, 10) * 3600 + n(10, 12) * 60 + n(12, 14))
}

/// One value found in a frame's events, for matching the frame's fields against.
#[derive(Debug)]
enum Atom {
    Str(String),
    Uint(u64),
    Int(i64),
    Num(f64),
    Bytes(Vec<u8>),
    Time(i64),
    Mac(String),
}

/// Every value the events carry: raw values, the typed position, fix time, cells, Wi-Fi.
fn atoms(events: &[TelemetryEvent]) -> Vec<Atom> {
    let mut out = Vec::new();
    for e in events {
        for r in &e.raw {
            out.push(match r.value.clone() {
                Some(RawV::StringValue(s)) => Atom::Str(s),
                Some(RawV::UintValue(v)) => Atom::Uint(v),
                Some(RawV::IntValue(v)) => Atom::Int(v),
                Some(RawV::DoubleValue(v)) => Atom::Num(v),
                Some(RawV::BytesValue(b)) => Atom::Bytes(b),
                None => continue,
            });
        }
        if let Some(p) = &e.position {
            out.push(Atom::Num(p.latitude));
            out.push(Atom::Num(p.longitude));
            for v in [p.altitude, p.speed, p.course, p.satellites.map(f64::from)]
                .into_iter()
                .flatten()
            {
                out.push(Atom::Num(v));
            }
        }
        if let Some(t) = &e.device_time {
            out.push(Atom::Time(t.seconds));
        }
        for c in &e.cell_towers {
            out.push(Atom::Num(c.mcc.into()));
            out.push(Atom::Num(c.mnc.into()));
            out.push(Atom::Uint(c.lac));
            out.push(Atom::Uint(c.cell_id));
            if let Some(sig) = c.signal {
                out.push(Atom::Num(sig.into()));
            }
        }
        for w in &e.wifi_access_points {
            out.push(Atom::Mac(w.mac.replace(':', "")));
            if let Some(sig) = w.signal_dbm {
                out.push(Atom::Num(sig.into()));
            }
        }
    }
    out
}

/// Whether field `v` is value `a`: the text as sent, the decimal number it spells, or the
/// number it spells in hex (a 4-digit one also as a two's-complement 16-bit reading).
fn same(v: &str, a: &Atom) -> bool {
    let num: Option<f64> = v.parse().ok().filter(|x: &f64| x.is_finite());
    let hex = (v.len() <= 16 && is_hex(v))
        .then(|| u64::from_str_radix(v, 16).ok())
        .flatten();
    match a {
        Atom::Str(s) => s == v,
        Atom::Uint(u) => num.is_some_and(|n| n == *u as f64) || hex == Some(*u),
        Atom::Int(i) => {
            num.is_some_and(|n| n == *i as f64)
                || (v.len() == 4 && is_hex(v))
                    .then(|| i64::from(u16::from_str_radix(v, 16).unwrap() as i16))
                    == Some(*i)
        }
        Atom::Num(d) => num.is_some_and(|n| close(n, *d)),
        Atom::Time(t) => secs14(v) == Some(*t),
        Atom::Mac(m) => m.eq_ignore_ascii_case(v),
        Atom::Bytes(b) => hex::decode(v).is_ok_and(|x| &x == b),
    }
}

/// The fields of a text frame not found in its events. Each field must have a value of its
/// own among those the events carry (a maximum bipartite matching of fields to values, so
/// two `0` fields need two zeros), or be part of the event text (command answers carry the
/// whole message).
fn lost<'a>(fields: &[(usize, &'a str)], events: &[TelemetryEvent]) -> Vec<(usize, &'a str)> {
    let pool = atoms(events);
    let edges: Vec<Vec<usize>> = fields
        .iter()
        .map(|(_, v)| (0..pool.len()).filter(|&k| same(v, &pool[k])).collect())
        .collect();
    // Kuhn's augmenting paths.
    let mut owner: Vec<Option<usize>> = vec![None; pool.len()];
    fn augment(
        f: usize,
        edges: &[Vec<usize>],
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &k in &edges[f] {
            if seen[k] {
                continue;
            }
            seen[k] = true;
            if owner[k].is_none_or(|g| augment(g, edges, owner, seen)) {
                owner[k] = Some(f);
                return true;
            }
        }
        false
    }
    let mut out = Vec::new();
    for (f, &(i, v)) in fields.iter().enumerate() {
        let mut seen = vec![false; pool.len()];
        if !augment(f, &edges, &mut owner, &mut seen)
            && !events
                .iter()
                .any(|e| e.text.as_deref().is_some_and(|t| t.contains(v)))
        {
            out.push((i, v));
        }
    }
    out
}

/// Which part of our events an assert is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Decoded,
    Normalized,
    Alarm,
    Raw,
}

fn raw_num(e: &TelemetryEvent, name: &str) -> Option<f64> {
    match e.raw_named(name)? {
        RawV::UintValue(v) => Some(*v as f64),
        RawV::IntValue(v) => Some(*v as f64),
        RawV::DoubleValue(v) => Some(*v),
        RawV::StringValue(s) => {
            let t = s.trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '/');
            t.parse().ok()
        }
        RawV::BytesValue(_) => None,
    }
}

fn traccar_alarm(s: &str) -> Option<Alarm> {
    Some(match s {
        "sos" => Alarm::Sos,
        "hardCornering" => Alarm::HarshCornering,
        "hardBraking" => Alarm::HarshBraking,
        "hardAcceleration" => Alarm::HarshAcceleration,
        "powerOff" => Alarm::PowerOff,
        "powerOn" => Alarm::PowerOn,
        _ => return None,
    })
}

/// One Traccar assert against the frame's events (the last carries the message's values).
fn check(events: &[TelemetryEvent], key: &str, want: &Value) -> (Place, bool) {
    let Some(e) = events.last() else {
        return (Place::Decoded, false);
    };
    let t = e.telemetry();
    let num = want.as_f64();
    let near = |g: Option<f64>, w: Option<f64>| g.zip(w).is_some_and(|(g, w)| (g - w).abs() < 1e-6);
    match key {
        "not_null" => (Place::Decoded, !events.is_empty()),
        "alarm" => (
            Place::Alarm,
            want.as_str()
                .and_then(traccar_alarm)
                .is_some_and(|a| events.iter().any(|e| e.has_alarm(a))),
        ),
        "batteryLevel" if want.is_null() => (
            Place::Normalized,
            events
                .iter()
                .all(|e| e.telemetry().battery_percent.is_none()),
        ),
        "batteryLevel" => (Place::Normalized, near(t.battery_percent, num)),
        "ignition" => (Place::Normalized, t.ignition == want.as_bool()),
        "in1" => (
            Place::Normalized,
            t.digital_inputs_reported.is_none_or(|r| r & 1 == 1)
                && t.digital_inputs.map(|v| v & 1 == 1) == want.as_bool(),
        ),
        "power" => (Place::Normalized, near(t.external_power_volts, num)),
        // Traccar keeps this GTINF analog input in millivolts.
        "adc3" => (
            Place::Normalized,
            near(
                t.analog_inputs_volts.get(&3).copied(),
                num.map(|v| v / 1000.0),
            ),
        ),
        "temp1" => (
            Place::Normalized,
            near(t.temperatures_celsius.get(&1).copied(), num),
        ),
        // A digital fuel sensor's reading (Traccar's unitless `fuel`): ours stays raw.
        "fuel" => (
            Place::Raw,
            ["digital_fuel_sensor_data", "fuel_sensor_1_data"]
                .iter()
                .any(|n| near(raw_num(e, n), num)),
        ),
        // Values Traccar keeps under its own names; ours in raw, in the units sent.
        "power2" => (
            Place::Raw,
            near(raw_num(e, "backup_power_mv"), num.map(|v| v * 1000.0)),
        ),
        "accessoryVoltage" => (
            Place::Raw,
            near(raw_num(e, "accessory_voltage_mv"), num.map(|v| v * 1000.0)),
        ),
        "adBlueLevel" => (Place::Raw, near(raw_num(e, "can_adblue_level"), num)),
        "warningType" => (Place::Raw, near(raw_num(e, "warning_type"), num)),
        "data" => (
            Place::Raw,
            e.raw_named("data") == want.as_str().map(|s| RawV::StringValue(s.into())).as_ref(),
        ),
        _ => (Place::Raw, false),
    }
}

#[derive(Default)]
struct Figures {
    text_frames: usize,
    binary_frames: usize,
    framing_cases: usize,
    acked: usize,
    positions: usize,
    records: usize,
    raw_fields_checked: usize,
    lenient_frames: usize,
    asserts: BTreeMap<Place, (usize, usize)>,
}

fn dump(name: &str, f: &Frame) {
    if std::env::var_os("QL_DUMP").is_none() {
        return;
    }
    eprintln!(
        "== {name} reply {:?} login {:?} lenient {:?}",
        f.reply, f.login, f.lenient
    );
    for e in &f.events {
        let raw: Vec<String> = e
            .raw
            .iter()
            .map(|r| {
                let v = match r.value.as_ref() {
                    Some(RawV::StringValue(s)) => format!("{s:?}"),
                    Some(RawV::UintValue(v)) => v.to_string(),
                    Some(RawV::IntValue(v)) => v.to_string(),
                    Some(RawV::DoubleValue(v)) => v.to_string(),
                    Some(RawV::BytesValue(b)) => hex::encode(b),
                    None => "-".into(),
                };
                match r.id {
                    Some(id) => format!("#{id}={v}"),
                    None => format!("{}={v}", r.name),
                }
            })
            .collect();
        eprintln!(
            "   kind {:?} pos {:?} t {:?} cells {:?} wifi {} alarms {:?}\n   telemetry {:?}\n   raw {}",
            EventKind::try_from(e.kind).unwrap(),
            e.position.as_ref().map(|p| (p.latitude, p.longitude, p.valid, p.hdop, p.satellites)),
            e.device_time.as_ref().map(|t| t.seconds),
            e.cell_towers.iter().map(|c| (c.mcc, c.mnc, c.lac, c.cell_id)).collect::<Vec<_>>(),
            e.wifi_access_points.len(),
            e.alarms,
            e.telemetry,
            raw.join(" ")
        );
    }
}

#[test]
fn traccar_queclink_frames() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut groups: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in all.iter().filter(|e| e["protocol"] == "queclink") {
        groups
            .entry(e["test"].as_str().unwrap().to_string())
            .or_default()
            .push(e);
    }
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps_seen: Vec<(String, u64, String)> = Vec::new();
    for (test, mut entries) in groups {
        entries.sort_by_key(|e| e["seq"].as_u64());
        let short = if test.contains("Text") {
            "Text"
        } else if test.contains("Binary") {
            "Binary"
        } else {
            "Frame"
        };
        let mut s = Queclink.new_session(Transport::Tcp, &ProtocolConfig::default());
        let mut imei: Option<String> = None;
        for entry in entries {
            let seq = entry["seq"].as_u64().unwrap();
            let name = format!("{short}#{seq}");
            let frame_text = entry["frame"].as_str().unwrap();
            if entry["test_kind"] == "frame_decoder" {
                fig.framing_cases += 1;
                let input = hex::decode(frame_text).unwrap();
                let want = hex::decode(entry["asserts"]["frame_out"].as_str().unwrap()).unwrap();
                match frame::split(&input, 8192, false) {
                    frame::Split::Unit {
                        start,
                        end,
                        consumed,
                        ..
                    } if input[start..end] == want[..] && consumed == input.len() => {}
                    other => failures.push(format!("{name}: framing {other:?}")),
                }
                continue;
            }
            let (bytes, fields): (Vec<u8>, Vec<String>) = if entry["encoding"] == "hex" {
                fig.binary_frames += 1;
                (hex::decode(frame_text).unwrap(), Vec::new())
            } else {
                fig.text_frames += 1;
                let body = frame_text.strip_suffix('$').unwrap_or(frame_text);
                (
                    format!("{body}$").into_bytes(),
                    body.split(',').map(str::to_string).collect(),
                )
            };
            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
            // Independent checks of the binary frame's integrity and expected reply.
            let want_reply = if f.is_empty() {
                let n = bytes.len();
                if bytes[1] == 0x00 {
                    assert_eq!(crc8(&bytes[..n - 2]), bytes[n - 2], "{name}: CRC-8");
                    Some(format!("+SACK:{:02X}{:02X}$", bytes[n - 4], bytes[n - 3]))
                } else {
                    let crc = u16::from_be_bytes([bytes[n - 4], bytes[n - 3]]);
                    assert_eq!(crc16_ccitt_false(&bytes[4..n - 4]), crc, "{name}: CRC-16");
                    assert_eq!(&bytes[n - 2..], b"\r\n", "{name}");
                    None
                }
            } else {
                text_ack(&f)
            };
            let out = decode_all(s.as_mut(), &bytes);
            let [outcome] = &out[..] else {
                failures.push(format!("{name}: {} outcomes: {out:?}", out.len()));
                continue;
            };
            let fr = match outcome {
                Ok(fr) => fr,
                Err(e) => {
                    failures.push(format!("{name}: refused: {e}"));
                    continue;
                }
            };
            dump(&name, fr);
            if !fr.lenient.is_empty() {
                fig.lenient_frames += 1;
                eprintln!("  {name}: decoded with tolerated input {:?}", fr.lenient);
            }
            if fr
                .reply
                .as_deref()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                != want_reply
            {
                failures.push(format!("{name}: reply {:?}, want {want_reply:?}", fr.reply));
            } else if want_reply.is_some() {
                fig.acked += 1;
            }
            if let Some(l) = &fr.login {
                imei = Some(l.clone());
            }
            let mut id_at = 2;
            if !f.is_empty() {
                let gt300 = f[1].len() == 15 && is_digits(f[1]);
                id_at = if gt300 || f[0].starts_with("+ACK:") && !f[0].starts_with("+ACK:GT") {
                    1
                } else {
                    2
                };
                let id = if gt300 || f[0].starts_with("+ACK:") && !f[0].starts_with("+ACK:GT") {
                    f[1]
                } else {
                    f[2]
                };
                if imei.as_deref() != Some(id) {
                    failures.push(format!("{name}: device {imei:?}, want {id}"));
                }
            }
            fig.records += fr.events.len();
            let positions: Vec<(f64, f64)> = fr
                .events
                .iter()
                .filter_map(|e| e.position.as_ref().map(|p| (p.longitude, p.latitude)))
                .collect();
            fig.positions += positions.len();
            if !f.is_empty() {
                let want = triples(&f);
                let same = want.len() == positions.len()
                    && want
                        .iter()
                        .zip(&positions)
                        .all(|(a, b)| close(a.0, b.0) && close(a.1, b.1));
                if !same {
                    failures.push(format!("{name}: positions {positions:?}, want {want:?}"));
                }
                // Every field survives.
                let kept: Vec<(usize, &str)> = f
                    .iter()
                    .enumerate()
                    .filter(|(i, v)| *i != id_at && !v.is_empty())
                    .map(|(i, v)| (i, *v))
                    .collect();
                fig.raw_fields_checked += kept.len();
                for (i, v) in lost(&kept, &fr.events) {
                    failures.push(format!("{name}: field {i} `{v}` lost"));
                }
            } else {
                let located = matches!(&bytes[..4], b"+RSP" | b"+BSP" | b"+EVT" | b"+BVT")
                    || bytes[1] == 0x00;
                let expect_position = entry["expect"] == "position" && located;
                if expect_position && positions.is_empty() {
                    failures.push(format!("{name}: no position"));
                }
                for (lon, lat) in &positions {
                    if lat.abs() > 90.0 || lon.abs() > 180.0 {
                        failures.push(format!("{name}: position out of range {lat} {lon}"));
                    }
                }
            }
            if entry["expect"].is_null() && !positions.is_empty() {
                failures.push(format!(
                    "{name}: Traccar makes no position, we made {positions:?}"
                ));
            }
            for (key, want) in entry["asserts"].as_object().into_iter().flatten() {
                let (place, ok) = check(&fr.events, key, want);
                let gap = KNOWN_GAPS
                    .iter()
                    .find(|(t, s, k, _)| *t == short && *s == seq && k == key);
                let tally = fig.asserts.entry(place).or_default();
                tally.1 += 1;
                match (ok, gap) {
                    (true, None) => tally.0 += 1,
                    (false, None) => failures.push(format!(
                        "{name}: {key} want {want}, got telemetry {:?} alarms {:?} raw {:?}",
                        fr.events.last().map(|e| &e.telemetry),
                        fr.events.last().map(|e| &e.alarms),
                        fr.events.last().map(|e| &e.raw)
                    )),
                    (false, Some((_, _, _, why))) => {
                        gaps_seen.push((short.into(), seq, key.clone()));
                        eprintln!("  gap {name} {key}: {why}");
                    }
                    (true, Some((_, _, _, why))) => failures.push(format!(
                        "{name} {key} matches now: remove it from KNOWN_GAPS ({why})"
                    )),
                }
            }
        }
    }
    for (t, s, k, why) in KNOWN_GAPS {
        if !gaps_seen
            .iter()
            .any(|(gt, gs, gk)| gt == t && gs == s && gk == k)
            && !failures
                .iter()
                .any(|f| f.contains(&format!("{t}#{s} {k} matches now")))
        {
            failures.push(format!(
                "KNOWN_GAPS lists {t}#{s} {k} ({why}) but no such assert"
            ));
        }
    }
    let (matched, asserted) = fig
        .asserts
        .values()
        .fold((0, 0), |(m, a), (mm, aa)| (m + mm, a + aa));
    eprintln!("Queclink conformance (Traccar frames):");
    eprintln!(
        "  text frames {}, binary frames {}, framing cases {}: every one decoded to exactly one frame, {} acknowledged as expected",
        fig.text_frames, fig.binary_frames, fig.framing_cases, fig.acked
    );
    eprintln!(
        "  events {}, with a position {}; frames decoded with tolerated input {}",
        fig.records, fig.positions, fig.lenient_frames
    );
    eprintln!(
        "  text fields re-read from the frames and found in the events: {}",
        fig.raw_fields_checked
    );
    eprintln!(
        "  Traccar asserts matched: {matched}/{asserted} (decoded {:?}, normalized {:?}, alarms {:?}, raw {:?}; known gaps {})",
        fig.asserts.get(&Place::Decoded).copied().unwrap_or_default(),
        fig.asserts.get(&Place::Normalized).copied().unwrap_or_default(),
        fig.asserts.get(&Place::Alarm).copied().unwrap_or_default(),
        fig.asserts.get(&Place::Raw).copied().unwrap_or_default(),
        KNOWN_GAPS.len()
    );
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    assert_eq!(
        (fig.text_frames, fig.binary_frames, fig.framing_cases),
        (191, 8, 4)
    );
    assert_eq!(matched + KNOWN_GAPS.len(), asserted);
}
