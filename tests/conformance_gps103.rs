//! The GPS103 frames of Traccar's test suite (`tests/data/traccar-frames-more.json`: 81
//! decoder frames, 2 encoder frames), replayed in `seq` order on one session per transport,
//! through the public session API: over TCP as a device writes them (frames without a
//! terminator get the `\r\n` such firmware ends its lines with), over UDP one datagram each,
//! exactly as in the file.
//!
//! - **Every frame decodes** to exactly one frame, or is refused for a stated reason listed
//!   in [`REFUSED`] (a listed frame that starts decoding fails the test). GPS103 has no
//!   checksum and no length field, so there is nothing to refuse for a wrong one.
//! - **Answers are exact** (built here from the frame's text, not by the gateway): `LOAD` for
//!   logins, `ON` for heartbeats (also in front of a report glued to one), the alarm cancel
//!   `**,imei:<IMEI>,E;` for `help me`, nothing for anything else.
//! - **Kinds:** `F` reports are POSITION (ALARM with a keyword alarm) with the coordinates
//!   re-read here; `L` reports carry no position (LBS with their cell, STATUS without); OBD
//!   lines are STATUS; the alternative form is POSITION; `expect: null` frames publish no
//!   position.
//! - **Traccar's asserts** (`alarm`, `course`, `temp1`, `fuel1`, `fixTime`, `valid`,
//!   `latitude`, `longitude`) are checked against our event after unit conversion; for
//!   `verifyPosition` frames also that the position is in range and has a time. Misses are
//!   failures unless listed in [`KNOWN_GAPS`] with the reason; a listed gap that matches
//!   fails too. The score is printed and asserted.
//! - **Nothing is lost:** every field of every report, OBD line and alternative frame is
//!   re-parsed here from the frame text and looked up in `raw` under its documented name, or
//!   in `position` / `cell_towers` where the layout puts it; `raw` holds nothing else.
//! - **Encoder entries:** our typed / custom command encoding equals Traccar's bytes.
//! - **The real gateway:** a device logs in over TCP, gets `LOAD` and `ON`, an SOS is
//!   published and cancelled, a typed command arrives byte for byte and ends SENT (the device
//!   never answers commands in a way that names them).
//!
//! `cargo test --test conformance_gps103 -- --nocapture` prints the figures.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{Alarm, EventKind, TelemetryEvent, Transport};
use avlgate::protocol::gps103::Gps103;
use avlgate::protocol::{
    Action, CommandRequest, DecodeError, Frame, ProtocolConfig, ProtocolModule, ProtocolSession,
};
use bytes::BytesMut;
use serde_json::Value;

/// Frames refused by the decoder, and why (none today).
const REFUSED: &[(u64, &str)] = &[];

/// Traccar asserts (seq, key) we do not match, and why.
const KNOWN_GAPS: &[(u64, &str, &str)] = &[];

/// `verifyPosition` frames whose event has no `device_time`, and why.
const NO_TIME: &[(u64, &str)] = &[
    (
        77,
        "the UTC field holds `31.0`, not a time, and the device showed no clock offset: the local clock alone does not say when (Traccar reads it as UTC)",
    ),
    (
        78,
        "the UTC field holds `0.0`, not a time; no offset known for this device (Traccar reads the local clock as UTC)",
    ),
    (
        79,
        "the UTC field holds `0.0`, not a time; no offset known for this device (Traccar reads the local clock as UTC)",
    ),
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
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
    assert!(buf.is_empty(), "bytes left over: {buf:?}");
    out
}

// ---------------------------------------------------------------------------------------------
// An independent reading of the frames

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Digits with at most one `.`, an optional sign when `signed`.
fn number(s: &str, signed: bool) -> Option<f64> {
    let body = if signed {
        s.strip_prefix(['+', '-']).unwrap_or(s)
    } else {
        s
    };
    let ok = body.bytes().any(|b| b.is_ascii_digit())
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && body.matches('.').count() <= 1;
    ok.then(|| s.trim_start_matches('+').parse().ok()).flatten()
}

fn dtc(s: &str) -> bool {
    s.len() == 5
        && matches!(s.as_bytes()[0], b'P' | b'C' | b'B' | b'U')
        && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A value off its documented shape: a trouble code, else `field<i>` typed as it reads.
fn off_shape(i: usize, v: &str, dtc_name: &str) -> (String, RawV) {
    if dtc(v) {
        return (dtc_name.into(), RawV::StringValue(v.into()));
    }
    let name = format!("field{i}");
    if is_digits(v) {
        (name, RawV::UintValue(v.parse().unwrap()))
    } else if (v.starts_with('-') || v.starts_with('+')) && is_digits(&v[1..]) {
        (
            name,
            RawV::IntValue(v.trim_start_matches('+').parse().unwrap()),
        )
    } else if let Some(d) = number(v, true) {
        (name, RawV::DoubleValue(d))
    } else {
        (name, RawV::StringValue(v.into()))
    }
}

/// `ddmm.mmmm` → degrees.
fn ddmm(s: &str) -> Option<f64> {
    let dot = s.find('.')?;
    if dot < 3 || !is_digits(&s[..dot]) || !is_digits(&s[dot + 1..]) {
        return None;
    }
    Some(s[..dot - 2].parse::<f64>().ok()? + s[dot - 2..].parse::<f64>().ok()? / 60.0)
}

/// A position as re-read here: latitude, longitude, valid, speed (km/h), course, altitude.
type Fix = (f64, f64, bool, Option<f64>, Option<f64>, Option<f64>);

/// What a regular report's event must hold: its position and raw values.
struct Expected {
    position: Option<Fix>,
    cell: Option<(u64, u64)>,
    raw: Vec<(String, RawV)>,
}

fn expected_report(fields: &[&str]) -> Expected {
    let f = |i: usize| fields.get(i).copied().unwrap_or("");
    let fixed = f(4) == "F";
    let mut e = Expected {
        position: None,
        cell: None,
        raw: Vec::new(),
    };
    let mut used = vec![false; fields.len()];
    if fixed {
        let swapped = matches!(f(7), "N" | "S");
        let (lat, ns, lon, ew) = if swapped {
            (f(8), f(7), f(10), f(9))
        } else {
            (f(7), f(8), f(9), f(10))
        };
        let lat = ddmm(lat).unwrap() * if ns == "S" { -1.0 } else { 1.0 };
        let lon = ddmm(lon).unwrap() * if ew == "W" { -1.0 } else { 1.0 };
        let speed = number(f(11), false);
        let course = number(f(12), false);
        let altitude = number(f(13), true);
        for (i, v) in [(11, speed), (12, course), (13, altitude)] {
            if let Some(u) = used.get_mut(i) {
                *u = v.is_some();
            }
        }
        for u in used.iter_mut().take(11).skip(6) {
            *u = true;
        }
        e.position = Some((
            lat,
            lon,
            f(6) == "A",
            speed.map(|k| k * 1.852),
            course,
            altitude,
        ));
    } else if f(4) == "L" {
        let hex = |s: &str| {
            (!s.is_empty())
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        if let (Some(lac), Some(cid)) = (hex(f(7)), hex(f(9))) {
            e.cell = Some((lac, cid));
            used[7] = true;
            used[9] = true;
        }
    }
    let keyword = f(1);
    for (i, &v) in fields.iter().enumerate().skip(1) {
        if v.is_empty() || used[i] {
            continue;
        }
        let s = |n: &str| (n.to_string(), RawV::StringValue(v.into()));
        let d = |n: &str, x: f64| (n.to_string(), RawV::DoubleValue(x));
        let item = match i {
            1 => {
                e.raw.push(s("keyword"));
                if let Some(t) = v.strip_prefix("T:").and_then(|t| number(t, true)) {
                    e.raw.push(d("alarm_temp", t));
                }
                if let Some(x) = v.strip_prefix("oil ").and_then(|x| number(x, false)) {
                    e.raw.push(d("alarm_fuel", x));
                }
                continue;
            }
            2 => s("local_time"),
            3 if keyword == "rfid" => s("rfid"),
            3 => s("phone"),
            4 => s("fix"),
            5 if fixed => s("utc_time"),
            11..=13 => {
                let n = ["speed", "course", "altitude"][i - 11];
                match number(v, i == 13) {
                    Some(x) => d(n, x),
                    None => off_shape(i, v, "dtc"),
                }
            }
            14 | 15 if v == "0" || v == "1" => (
                if i == 14 { "acc" } else { "door" }.into(),
                RawV::UintValue(v.parse().unwrap()),
            ),
            16 | 17 => match v.strip_suffix('%').and_then(|p| number(p, false)) {
                Some(p) => d(if i == 16 { "fuel1" } else { "fuel2" }, p),
                None => off_shape(i, v, "dtc"),
            },
            18 => match number(v, true) {
                Some(t) => d("temp", t),
                None => off_shape(i, v, "dtc"),
            },
            _ => off_shape(i, v, "dtc"),
        };
        e.raw.push(item);
    }
    if let Some((lac, cid)) = e.cell {
        e.raw.push(("lac".into(), RawV::UintValue(lac)));
        e.raw.push(("cell_id".into(), RawV::UintValue(cid)));
    }
    e
}

fn expected_obd(fields: &[&str]) -> Vec<(String, RawV)> {
    let mut out = Vec::new();
    for (i, &v) in fields.iter().enumerate().skip(2) {
        if v.is_empty() {
            continue;
        }
        let pct = |v: &str| v.strip_suffix('%').and_then(|p| number(p, false));
        let item = match i {
            2 => Some(("local_time", RawV::StringValue(v.into()))),
            3 if is_digits(v) => Some(("obd_odometer", RawV::UintValue(v.parse().unwrap()))),
            4 => number(v, false).map(|x| ("obd_fuel_instant", RawV::DoubleValue(x))),
            5 => number(v, false).map(|x| ("obd_fuel_average", RawV::DoubleValue(x))),
            6 if is_digits(v) => Some(("obd_hours", RawV::UintValue(v.parse().unwrap()))),
            7 if is_digits(v) => Some(("obd_speed", RawV::UintValue(v.parse().unwrap()))),
            8 => pct(v).map(|x| ("obd_load", RawV::DoubleValue(x))),
            9 if is_digits(v.trim_start_matches(['+', '-'])) => Some((
                "obd_coolant",
                RawV::IntValue(v.trim_start_matches('+').parse().unwrap()),
            )),
            10 => pct(v).map(|x| ("obd_throttle", RawV::DoubleValue(x))),
            11 if is_digits(v) => Some(("obd_rpm", RawV::UintValue(v.parse().unwrap()))),
            12 => number(v, false).map(|x| ("obd_battery", RawV::DoubleValue(x))),
            _ => None,
        };
        out.push(match item {
            Some((n, x)) => (n.to_string(), x),
            None => off_shape(i, v, "obd_dtc"),
        });
    }
    out
}

fn expected_alternative(fields: &[&str]) -> Vec<(String, RawV)> {
    let mut out = Vec::new();
    for (i, &v) in fields.iter().enumerate().skip(1) {
        if v.is_empty() || v.bytes().all(|b| b == b'-') || matches!(i, 5 | 6 | 9..=15) {
            continue;
        }
        let s = |n: &str| (n.to_string(), RawV::StringValue(v.into()));
        let u = |n: &str| (n.to_string(), RawV::UintValue(v.parse().unwrap()));
        out.push(match i {
            1 => s("label"),
            2 => s("event"),
            3 => s("sensor_id"),
            4 => (
                "sensor_voltage".into(),
                RawV::DoubleValue(v.parse().unwrap()),
            ),
            7 => u("rssi"),
            8 => u("gps_status"),
            16 => u("ignition"),
            17 => u("charge"),
            18 => s("error"),
            _ => off_shape(i, v, "dtc"),
        });
    }
    out
}

/// Every expected raw value is in `raw`, and `raw` holds nothing else.
fn raw_matches(e: &TelemetryEvent, want: &[(String, RawV)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, v) in want {
        if !e
            .raw
            .iter()
            .any(|r| r.name == *n && r.value.as_ref() == Some(v))
        {
            problems.push(format!("raw {n} = {v:?} missing (raw: {:?})", e.raw));
        }
    }
    if e.raw.len() != want.len() {
        problems.push(format!(
            "raw holds {} values, the frame {}: {:?}",
            e.raw.len(),
            want.len(),
            e.raw
        ));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Traccar's asserts

/// `2015-10-30T00:01:01.000Z` → seconds since the epoch.
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

/// Traccar's alarm names (`powerCut`) → ours (`ALARM_POWER_CUT`).
fn alarm(name: &str) -> Option<Alarm> {
    let mut up = String::from("ALARM_");
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            up.push('_');
        }
        up.push(c.to_ascii_uppercase());
    }
    Alarm::from_str_name(&up)
}

fn check(e: &TelemetryEvent, key: &str, want: &Value) -> Result<(), String> {
    let p = e.position.as_ref();
    let t = e.telemetry();
    let num = want.as_f64();
    let close =
        |g: Option<f64>, w: Option<f64>| g.zip(w).is_some_and(|(g, w)| (g - w).abs() < 1e-5);
    let ok = match key {
        "latitude" => close(p.map(|p| p.latitude), num),
        "longitude" => close(p.map(|p| p.longitude), num),
        "valid" => p.map(|p| p.valid) == want.as_bool(),
        "course" => close(p.and_then(|p| p.course), num),
        "fixTime" => e.device_time.as_ref().map(|t| t.seconds) == want.as_str().map(parse_iso),
        "alarm" => want
            .as_str()
            .and_then(alarm)
            .is_some_and(|a| e.alarms.contains(&(a as i32))),
        "temp1" => close(t.temperatures_celsius.get(&1).copied(), num),
        // Traccar's `fuel1` is the first fuel sensor's percentage: ours maps it, and keeps it raw.
        "fuel1" => {
            close(t.fuel_level_percent, num)
                && matches!(e.raw_named("fuel1"), Some(RawV::DoubleValue(v)) if Some(*v) == num)
        }
        other => return Err(format!("no check for Traccar key {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: want {want}, got position {:?} time {:?} telemetry {:?} alarms {:?} raw {:?}",
            e.position, e.device_time, e.telemetry, e.alarms, e.raw
        ))
    }
}

// ---------------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Figures {
    frames: usize,
    decoded: usize,
    refused: usize,
    replies: usize,
    logins: usize,
    heartbeats: usize,
    positions: usize,
    without_position: usize,
    obd: usize,
    photo_chunks: usize,
    raw_values: usize,
    asserts: usize,
    asserts_matched: usize,
    lenient: usize,
    encoder: usize,
}

/// The reply the device expects for this frame, built from its text.
fn expected_reply(wire: &Value) -> Option<Vec<u8>> {
    let kind = wire["kind"].as_str().unwrap();
    let fields = wire["fields"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    if wire["leading_imei"].is_string() {
        out.extend_from_slice(b"ON");
    }
    match kind {
        "login" => out.extend_from_slice(b"LOAD"),
        "heartbeat" => out.extend_from_slice(b"ON"),
        // `imei:<IMEI>,L,*`: the short form Traccar answers `LOAD`.
        "alternative" if fields <= 3 => out.extend_from_slice(b"LOAD"),
        _ if wire["keyword"] == "help me" => out
            .extend_from_slice(format!("**,imei:{},E;", wire["imei"].as_str().unwrap()).as_bytes()),
        _ => {}
    }
    (!out.is_empty()).then_some(out)
}

#[test]
fn traccar_gps103_frames() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut decoder: Vec<&Value> = all
        .iter()
        .filter(|e| e["protocol"] == "gps103" && e["test_kind"] == "protocol_decoder")
        .collect();
    decoder.sort_by_key(|e| (e["test"].as_str().unwrap().to_string(), e["seq"].as_u64()));
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps_seen: Vec<(u64, String)> = Vec::new();
    let mut refused_seen: Vec<u64> = Vec::new();
    let mut no_time_seen: Vec<u64> = Vec::new();
    for transport in [Transport::Tcp, Transport::Udp] {
        let mut s = Gps103.new_session(transport, &ProtocolConfig::default());
        let mut current_test = String::new();
        for entry in &decoder {
            let test = entry["test"].as_str().unwrap();
            if test != current_test {
                s = Gps103.new_session(transport, &ProtocolConfig::default());
                current_test = test.to_string();
            }
            fig.frames += 1;
            let seq = entry["seq"].as_u64().unwrap();
            let name = format!("{test}#{seq} {transport:?}");
            let frame = entry["frame"].as_str().unwrap();
            let wire = &entry["wire"];
            let bytes = if transport == Transport::Tcp && wire["delimiter"].is_null() {
                format!("{frame}\r\n")
            } else {
                frame.to_string()
            };
            let out = decode_all(s.as_mut(), bytes.as_bytes());
            let refused_why = REFUSED.iter().find(|(s, _)| *s == seq);
            let f = match (&out[..], refused_why) {
                ([Ok(f)], None) => f,
                ([Err(e)], Some((_, why))) => {
                    fig.refused += 1;
                    refused_seen.push(seq);
                    eprintln!("  refused {name}: {why} [{e}]");
                    continue;
                }
                ([Ok(_)], Some((_, why))) => {
                    failures.push(format!(
                        "{name} decodes now: remove it from REFUSED ({why})"
                    ));
                    continue;
                }
                _ => {
                    failures.push(format!("{name}: {} outcomes: {out:?}", out.len()));
                    continue;
                }
            };
            fig.decoded += 1;
            if !f.lenient.is_empty() {
                fig.lenient += 1;
                eprintln!("  {name}: accepted with quirks {:?}", f.lenient);
            }
            let want_reply = expected_reply(wire);
            if f.reply.as_deref() != want_reply.as_deref() {
                failures.push(format!(
                    "{name}: reply {:?}, want {:?}",
                    f.reply,
                    want_reply.map(|r| String::from_utf8_lossy(&r).into_owned())
                ));
            } else if want_reply.is_some() {
                fig.replies += 1;
            }
            let kind = wire["kind"].as_str().unwrap();
            let imei = wire["imei"].as_str().unwrap();
            if s.imei() != Some(imei) {
                failures.push(format!(
                    "{name}: session device {:?}, want {imei}",
                    s.imei()
                ));
            }
            // The report's own text (after a glued heartbeat, before the terminator).
            let body = frame
                .strip_prefix(wire["leading_imei"].as_str().unwrap_or(""))
                .unwrap();
            let body = body
                .strip_suffix(';')
                .or(body.strip_suffix('*'))
                .unwrap_or(body);
            let fields: Vec<&str> = body.split(',').collect();
            match kind {
                "login" => {
                    fig.logins += 1;
                    if !f.events.is_empty() {
                        failures.push(format!("{name}: a login published {:?}", f.events));
                    }
                    continue;
                }
                "heartbeat" => {
                    fig.heartbeats += 1;
                    if !matches!(&f.events[..], [e] if e.kind == EventKind::Heartbeat as i32) {
                        failures.push(format!("{name}: heartbeat gave {:?}", f.events));
                    }
                    continue;
                }
                "photo_data" => {
                    fig.photo_chunks += 1;
                    // Chunk 12 of the 14 the `vt14` report before it announced: stored.
                    if !f.events.is_empty() {
                        failures.push(format!("{name}: a partial photo published {:?}", f.events));
                    }
                    continue;
                }
                "alternative" if fields.len() <= 3 => {
                    fig.logins += 1;
                    if !f.events.is_empty() {
                        failures.push(format!("{name}: a short login published {:?}", f.events));
                    }
                    continue;
                }
                _ => {}
            }
            let [e] = &f.events[..] else {
                failures.push(format!("{name}: {} events", f.events.len()));
                continue;
            };
            // Kind and values, from an independent reading of the text.
            let mut problems = Vec::new();
            let want_raw = match kind {
                "obd" => {
                    fig.obd += 1;
                    if e.kind != EventKind::Status as i32 || e.position.is_some() {
                        problems.push(format!("OBD kind {}", e.kind));
                    }
                    expected_obd(&fields)
                }
                "alternative" => {
                    let p = e.position.as_ref();
                    let want = (
                        fields[9].parse::<f64>().unwrap(),
                        fields[10].parse::<f64>().unwrap(),
                    );
                    if e.kind != EventKind::Position as i32
                        || p.map(|p| (p.latitude, p.longitude)) != Some(want)
                    {
                        problems.push(format!("alternative: kind {} position {p:?}", e.kind));
                    }
                    expected_alternative(&fields)
                }
                _ => {
                    let x = expected_report(&fields);
                    let alarmed = !e.alarms.is_empty();
                    let want_kind = match (&x.position, &x.cell, alarmed) {
                        (_, _, true) => EventKind::Alarm,
                        (Some(_), _, _) => EventKind::Position,
                        (None, Some(_), _) => EventKind::Lbs,
                        (None, None, _) => EventKind::Status,
                    };
                    if e.kind != want_kind as i32 {
                        problems.push(format!("kind {} want {want_kind:?}", e.kind));
                    }
                    match (&x.position, &e.position) {
                        (Some((lat, lon, valid, speed, course, alt)), Some(p)) => {
                            let near = |a: Option<f64>, b: Option<f64>| match (a, b) {
                                (Some(a), Some(b)) => (a - b).abs() < 1e-6,
                                (None, None) => true,
                                _ => false,
                            };
                            if !(near(Some(*lat), Some(p.latitude))
                                && near(Some(*lon), Some(p.longitude))
                                && *valid == p.valid
                                && near(*speed, p.speed)
                                && near(*course, p.course)
                                && near(*alt, p.altitude))
                            {
                                problems.push(format!("position {p:?}"));
                            }
                        }
                        (None, None) => {}
                        (w, g) => problems.push(format!("position {g:?}, want {w:?}")),
                    }
                    let towers: Vec<(u64, u64)> =
                        e.cell_towers.iter().map(|c| (c.lac, c.cell_id)).collect();
                    if towers != x.cell.into_iter().collect::<Vec<_>>() {
                        problems.push(format!("cells {towers:?}, want {:?}", x.cell));
                    }
                    x.raw
                }
            };
            fig.raw_values += want_raw.len();
            problems.extend(raw_matches(e, &want_raw));
            if e.position.is_some() {
                fig.positions += 1;
            } else {
                fig.without_position += 1;
            }
            match entry["expect"].as_str() {
                Some("null") if e.position.is_some() => {
                    problems.push("Traccar expects nothing; we published a position".into())
                }
                _ => {}
            }
            if entry["check"] == "verifyPosition" && e.position.is_some() {
                let in_range = e
                    .position
                    .as_ref()
                    .is_some_and(|p| p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0);
                let timed = e.device_time.is_some();
                let excused = NO_TIME.iter().find(|(s, _)| *s == seq);
                match (in_range, timed, excused) {
                    (true, true, None) => {}
                    (true, false, Some((_, why))) => {
                        no_time_seen.push(seq);
                        if transport == Transport::Tcp {
                            eprintln!("  no time {name}: {why}");
                        }
                    }
                    (_, true, Some((_, why))) => {
                        problems.push(format!("has a time now: remove it from NO_TIME ({why})"))
                    }
                    _ => problems.push(format!(
                        "position {:?} time {:?}",
                        e.position, e.device_time
                    )),
                }
            }
            for (key, want) in entry["asserts"].as_object().into_iter().flatten() {
                if key == "not_null" {
                    continue;
                }
                fig.asserts += 1;
                let gap = KNOWN_GAPS.iter().find(|(s, k, _)| *s == seq && k == key);
                match (check(e, key, want), gap) {
                    (Ok(()), None) => fig.asserts_matched += 1,
                    (Err(why), None) => problems.push(why),
                    (Err(why), Some((_, _, reason))) => {
                        gaps_seen.push((seq, key.clone()));
                        eprintln!("  gap {name} {key}: {reason} [{why}]");
                    }
                    (Ok(()), Some((_, _, reason))) => problems.push(format!(
                        "{key} matches now: remove it from KNOWN_GAPS ({reason})"
                    )),
                }
            }
            failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
        }
    }
    for (s, k, why) in KNOWN_GAPS {
        if !gaps_seen.iter().any(|(gs, gk)| gs == s && gk == k) {
            failures.push(format!(
                "KNOWN_GAPS lists #{s} {k} ({why}) but it was not seen"
            ));
        }
    }
    for (s, why) in REFUSED {
        if !refused_seen.contains(s) {
            failures.push(format!("REFUSED lists #{s} ({why}) but it was not refused"));
        }
    }
    for (s, why) in NO_TIME {
        if !no_time_seen.contains(s) {
            failures.push(format!("NO_TIME lists #{s} ({why}) but it was not seen"));
        }
    }

    // Encoder entries: our encoding of the same command, for the same device.
    let mut s = Gps103.new_session(Transport::Tcp, &ProtocolConfig::default());
    decode_all(s.as_mut(), b"##,imei:123456789012345,A;");
    for entry in all
        .iter()
        .filter(|e| e["protocol"] == "gps103" && e["test_kind"] == "protocol_encoder")
    {
        let a = &entry["asserts"];
        let request = match a["command_type"].as_str().unwrap() {
            "positionPeriodic" => CommandRequest::SetReportInterval {
                seconds: a["command_attributes"]["frequency"].as_u64().unwrap() as u32,
            },
            "custom" => CommandRequest::Text(a["command_data"].as_str().unwrap().into()),
            other => panic!("encoder entry of type {other}: map it"),
        };
        let got = s.encode_command(&request).unwrap();
        if got != entry["frame"].as_str().unwrap().as_bytes() {
            failures.push(format!(
                "encoder {}: {:?}, want {}",
                entry["test"], got, entry["frame"]
            ));
        } else {
            fig.encoder += 1;
        }
    }

    eprintln!("GPS103 conformance (Traccar frames, each over TCP and UDP):");
    eprintln!(
        "  decoder frames: {} = {} decoded + {} refused; exact answers checked: {}; accepted with tolerated quirks: {}",
        fig.frames, fig.decoded, fig.refused, fig.replies, fig.lenient
    );
    eprintln!(
        "  logins {}, heartbeats {}, photo chunks {}, OBD lines {}; events with a position {}, without {}",
        fig.logins, fig.heartbeats, fig.photo_chunks, fig.obd, fig.positions, fig.without_position
    );
    eprintln!(
        "  raw values re-read from the frames and found in raw: {}",
        fig.raw_values
    );
    eprintln!(
        "  Traccar asserts matched: {}/{} (known gaps {}); verifyPosition frames without a time: {} (listed)",
        fig.asserts_matched,
        fig.asserts,
        KNOWN_GAPS.len(),
        NO_TIME.len()
    );
    eprintln!(
        "  encoder entries matching Traccar's bytes: {}/2",
        fig.encoder
    );
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    // The figures themselves, so a regression slipping past the per-frame checks fails.
    assert_eq!(fig.frames, 2 * 81);
    assert_eq!(fig.decoded + fig.refused, fig.frames);
    assert_eq!(fig.refused, 2 * REFUSED.len());
    assert_eq!(fig.asserts_matched + 2 * KNOWN_GAPS.len(), fig.asserts);
    assert_eq!(fig.encoder, 2);
}

/// A Coban device against the real gateway (embedded MQTT broker) over TCP: `LOAD` to its
/// login and `ON` to its heartbeat; an SOS published then cancelled with the exact
/// `**,imei:<IMEI>,E;`; a command written byte for byte, ending SENT (terminal: the device
/// does not answer commands in a way that names them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_logs_in_raises_an_sos_and_takes_a_command_through_the_gateway() {
    use avlgate::proto::{Command, CommandResult, CommandStatus, CommandType};
    use prost::Message;

    let broker = common::embedded_broker();
    let gw = common::TestGateway::mqtt(broker).await;
    let mut events = common::Subscriber::connect(broker, "avlgate/events/#").await;
    let mut results = common::Subscriber::connect(broker, "avlgate/command-results/#").await;
    let imei = "359586015829802";
    let mut dev = common::Device::connect(gw.addr).await;
    dev.send(format!("##,imei:{imei},A;").as_bytes()).await;
    assert_eq!(dev.read_exact(4, 15).await.as_deref(), Some(&b"LOAD"[..]));
    dev.send(format!("{imei};").as_bytes()).await;
    assert_eq!(dev.read_exact(2, 15).await.as_deref(), Some(&b"ON"[..]));
    dev.send(
        format!("imei:{imei},help me,0809231429,13554900601,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,;")
            .as_bytes(),
    )
    .await;
    let cancel = format!("**,imei:{imei},E;");
    assert_eq!(
        dev.read_exact(cancel.len(), 15).await.as_deref(),
        Some(cancel.as_bytes())
    );
    // The cancel came after the gateway had the SOS delivered: it is on the broker.
    let mut kinds = Vec::new();
    let mut sos = None;
    while let Some((topic, e)) = events.next_event(5).await {
        assert_eq!(topic, format!("avlgate/events/{imei}"));
        kinds.push(EventKind::try_from(e.kind).unwrap());
        if e.has_alarm(Alarm::Sos) {
            sos = Some(e);
            break;
        }
    }
    let sos = sos.unwrap_or_else(|| panic!("no SOS event; saw {kinds:?}"));
    assert_eq!(sos.kind, EventKind::Alarm as i32);
    assert!(kinds.contains(&EventKind::Heartbeat), "{kinds:?}");
    assert_eq!(
        sos.device_time.map(|t| t.seconds),
        Some(1_222_151_387),
        "2008-09-23 06:29:47 UTC"
    );

    // The command subscription is made when the device logs in; give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // CUSTOM `L` (arm). A typed command (ENGINE_STOP) cannot be sent through the bus yet: the
    // command ledger refuses a command without `text` or `payload` whatever its type.
    let command = Command {
        command_id: "g-1".into(),
        imei: imei.into(),
        r#type: CommandType::Custom as i32,
        body: Some(avlgate::proto::command::Body::Text("L".into())),
        ttl_secs: 60,
        ..Default::default()
    };
    results
        .publish(&format!("avlgate/commands/{imei}"), command.encode_to_vec())
        .await;
    let want = format!("**,imei:{imei},L");
    assert_eq!(
        dev.read_exact(want.len(), 15).await.as_deref(),
        Some(want.as_bytes())
    );
    assert_eq!(
        dev.read_exact(1, 2).await,
        None,
        "nothing after the command"
    );
    let mut got: Vec<CommandResult> = Vec::new();
    while let Some((_, p)) = results.next(3).await {
        let r = CommandResult::decode(&p[..]).unwrap();
        if r.command_id == "g-1" {
            got.push(r);
        }
    }
    let statuses: Vec<(i32, bool)> = got.iter().map(|r| (r.status, r.terminal)).collect();
    assert_eq!(statuses, vec![(CommandStatus::Sent as i32, true)]);
    gw.stop().await;
}
