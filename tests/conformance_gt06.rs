//! The GT06 frames of Traccar's test suite (`tests/data/traccar-frames.json`), replayed per
//! test method, in order, on one session each, through the public session API.
//!
//! - A frame with a valid length and CRC must decode without error to exactly one frame, and
//!   get exactly the reply the family expects (built here by hand, with a CRC implemented
//!   here, not by the gateway's encoder).
//! - A frame with a bad CRC or length must be refused: no frame, no reply, an error for it.
//!   Two kinds of "invalid" entries are really valid input and are checked as such: the
//!   CRC-less Wi-Fi form (byte 2 is an access-point count) and an entry holding several
//!   good frames back to back.
//! - For frames Traccar checks as positions, every asserted value must match ours, through
//!   [`check`]'s mapping. Asserts on Traccar-derived values we have no counterpart for are
//!   listed in [`EXCLUDED_KEYS`] with the reason; frames we do not (yet) match are listed in
//!   [`KNOWN_GAPS`] with the reason, and the test fails if one of them starts matching (so
//!   the list stays true) or if any other frame does not match.
//!
//! Figures are printed (`cargo test --test conformance_gt06 -- --nocapture`) and asserted.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::attribute_value::Value as AttrValue;
use avlgate::proto::{EventKind, TelemetryEvent, Transport};
use avlgate::protocol::gt06::Gt06;
use avlgate::protocol::{Action, DecodeError, Frame, Limits, ProtocolModule, ProtocolSession};
use bytes::BytesMut;
use serde_json::Value;

/// A login to inject before test methods that do not start with one (GT06 refuses
/// everything before a login; Traccar's own harness only works after one too).
const LOGIN_HEX: &str = "78780d010352887071911998000479d00d0a";

/// The clock the session sees: 2026-11-20 23:32:30 UTC (time requests echo it).
const NOW_SECS: u64 = 1_795_217_550;

/// Traccar attribute keys asserted on values our schema has no counterpart for.
/// Each is skipped for the assert only; the frame must still decode to a typed event.
const EXCLUDED_KEYS: &[(&str, &str)] = &[
    (
        "temp1",
        "a temperature Traccar reads from model-specific bytes (SEEWORLD/OBD6/S5 layouts chosen by length or configured model); we keep those bytes raw",
    ),
    ("humidity", "a sensor value of one 0x94 sub-type we keep raw (`info_content`)"),
    ("networkTechnology", "Traccar's label for 0x94 sub-type 0x0B; we keep `info_type` and the raw byte"),
    ("hours", "engine hours Traccar derives from a model-specific 0x22 tail (multiplied by 1000); kept raw"),
    ("drivingTime", "a WeTrust 0x12 tail field we do not decode"),
    ("tag1Temp", "a BLE tag temperature inside 0x70 module 0x007F, kept raw as `module_007f`"),
    ("steps", "a pedometer count in a 0xA3 variant (GL21L long form) whose layout is not documented"),
    ("adc1", "asserted only on a frame with a wrong length (refused here)"),
];

/// Frames (seq in `Gt06ProtocolDecoderTest.testDecode`) that decode but do not match
/// Traccar's asserted values, and why.
const KNOWN_GAPS: &[(u64, &str)] = &[
    (3, "0xF1: module list of an undocumented model, published raw (UNKNOWN)"),
    (5, "0x61: undocumented layout, published raw (UNKNOWN)"),
    (15, "0xF2 (VL842 peripheral): undocumented layout, published raw (UNKNOWN)"),
    (16, "0xF2 (VL842 peripheral): undocumented layout, published raw (UNKNOWN)"),
    (177, "0x25 (XT40): undocumented layout, published raw (UNKNOWN)"),
    (10, "long 0xA3 (GL21L) form: no GPS block despite the GK310 fence layout; published raw (UNKNOWN)"),
    (21, "Traccar reads this altitude from the frame's CRC bytes (0x8429); the content has none"),
    (22, "SL4X 0x31 layout (u16 MNC, u64 cell id, altitude after the ACC bytes) not decoded; altitude left unset"),
    (171, "alarm 0x19 means hard acceleration only on LW-series models (Traccar's per-device model setting); we report the family meaning, low_battery"),
    (185, "VL103 0x36: the battery voltage is somewhere in the 12 undocumented status bytes (kept raw as `status_data`)"),
    (176, "model-specific 0x22 tail (battery voltage) kept raw"),
    (41, "0x13 with a 14-byte model-specific tail: Traccar's power value comes from a model-specific field"),
    (170, "0x13 power read per configured model (LW series: u16 & 0x0FFF / 10); we read the family layout"),
    (172, "0x13 power read per configured model (SEEWORLD: the alarm byte is the voltage); we read the family layout"),
    (173, "0x13 power read per configured model (R11: u16 voltage instead of the level); we read the family layout"),
    (56, "0x13 OBD6 form (battery % after a packed satellite/RSSI word); not decoded beyond the status block"),
    (
        7,
        "0x94 `0B 02E3` in the basic framing: Traccar reads 7.39 V from bytes 1-2, but sub-type 0x0B is the network-technology byte elsewhere (seq 20); layout undocumented, kept raw",
    ),
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// CRC-16/X-25, bit by bit (independent of the gateway's table-driven one).
fn x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A reply frame built by hand: start bits, length, protocol, content, serial, CRC, stop.
fn reply(extended: bool, protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let length = content.len() + 5;
    let mut v = if extended {
        let mut v = vec![0x79, 0x79];
        v.extend_from_slice(&(length as u16).to_be_bytes());
        v
    } else {
        vec![0x78, 0x78, length as u8]
    };
    v.push(protocol);
    v.extend_from_slice(content);
    v.extend_from_slice(&serial.to_be_bytes());
    let crc = x25(&v[2..]);
    v.extend_from_slice(&crc.to_be_bytes());
    v.extend_from_slice(&[0x0D, 0x0A]);
    v
}

/// Start bits, protocol number, serial and extended flag of a well-formed frame.
struct Wire {
    extended: bool,
    protocol: u8,
    serial: u16,
}

/// Splits `bytes` into standard frames with good CRCs; `None` unless all of it is that.
fn split_valid(bytes: &[u8]) -> Option<Vec<Wire>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let extended = match rest.get(..2)? {
            [0x78, 0x78] => false,
            [0x79, 0x79] => true,
            _ => return None,
        };
        let (header, length) = if extended {
            (4, usize::from(u16::from_be_bytes([rest[2], rest[3]])))
        } else {
            (3, usize::from(*rest.get(2)?))
        };
        let total = header + length + 2;
        let f = rest.get(..total)?;
        if length < 5 || f[total - 2..] != [0x0D, 0x0A] {
            return None;
        }
        let crc = u16::from_be_bytes([f[total - 4], f[total - 3]]);
        if x25(&f[2..total - 4]) != crc {
            return None;
        }
        out.push(Wire {
            extended,
            protocol: f[header],
            serial: u16::from_be_bytes([f[total - 6], f[total - 5]]),
        });
        rest = &rest[total..];
    }
    Some(out)
}

/// The CRC-less Wi-Fi form (`78 78 <count> 17|69 <BCD time> ...`): its time bytes when
/// `bytes` is exactly one frame of that layout.
fn crc_less_wifi(bytes: &[u8]) -> Option<(u8, [u8; 6])> {
    let (&count, rest) = bytes.get(2..)?.split_first()?;
    let protocol = *rest.first()?;
    if bytes.get(..2)? != [0x78, 0x78] || !(protocol == 0x17 || protocol == 0x69) {
        return None;
    }
    let cells_at = 10 + 7 * usize::from(count);
    let cells = usize::from(*bytes.get(cells_at)?);
    let total = cells_at + 1 + 3 + 5 * cells + 2;
    (bytes.len() == total && bytes[total - 2..] == [0x0D, 0x0A])
        .then(|| (protocol, bytes[4..10].try_into().unwrap()))
}

/// The reply the family expects for one well-formed packet (`None` = no reply), from the
/// protocol notes and the behaviour of Traccar, which these devices are deployed against.
fn expected_reply(w: &Wire, content: &[u8]) -> Option<Vec<u8>> {
    match w.protocol {
        // Information transmission, extended command reply, server-type echoes,
        // pass-through, X1 GPS, OBD: the device expects nothing.
        0x94 | 0x21 | 0x80..=0x82 | 0x9B | 0x34 | 0x8C => None,
        // Time request: the current UTC time, serial echoed.
        0x8A => Some(reply(w.extended, 0x8A, &[26, 11, 20, 23, 32, 30], w.serial)),
        // Address request: a neutral English address reply, always 79 79.
        0x1A | 0x2A => {
            let text = b"NA&&NA&&0##";
            let mut c = vec![text.len() as u8, 0, 0, 0, 0];
            c.extend_from_slice(text);
            Some(reply(true, 0x97, &c, w.serial))
        }
        // GPS modules: answered in the basic framing.
        0x70 => Some(reply(false, 0x70, &[], w.serial)),
        _ => {
            let _ = content;
            Some(reply(w.extended, w.protocol, &[], w.serial))
        }
    }
}

fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            Ok(Some(f)) => out.push(Ok(f)),
            Err(e) => {
                assert_eq!(
                    e.action,
                    Action::Continue,
                    "framing errors must not close: {e}"
                );
                out.push(Err(e));
            }
        }
    }
    out
}

fn attr_f64(e: &TelemetryEvent, k: &str) -> Option<f64> {
    match e.attr(k)? {
        AttrValue::DoubleValue(v) => Some(*v),
        AttrValue::UintValue(v) => Some(*v as f64),
        AttrValue::IntValue(v) => Some(*v as f64),
        _ => None,
    }
}

fn attr_str<'a>(e: &'a TelemetryEvent, k: &str) -> Option<&'a str> {
    match e.attr(k)? {
        AttrValue::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attr_bool(e: &TelemetryEvent, k: &str) -> Option<bool> {
    match e.attr(k)? {
        AttrValue::BoolValue(b) => Some(*b),
        _ => None,
    }
}

fn camel_to_snake(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `2015-10-20T14:21:11.000Z` → seconds since the epoch.
fn parse_iso(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

/// One Traccar assert against our event. `None`: the key is not mapped (a failure unless
/// it is in [`EXCLUDED_KEYS`]).
fn check(e: &TelemetryEvent, key: &str, want: &Value) -> Option<Result<(), String>> {
    let p = e.position.as_ref();
    let num = want.as_f64();
    let ok = match key {
        "latitude" => p.zip(num).is_some_and(|(p, w)| close(p.latitude, w, 1e-5)),
        "longitude" => p.zip(num).is_some_and(|(p, w)| close(p.longitude, w, 1e-5)),
        "valid" => p.map(|p| p.valid) == want.as_bool(),
        "course" => p
            .and_then(|p| p.course)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w, 1e-6)),
        // Traccar keeps knots; the schema is km/h.
        "speed" => p
            .and_then(|p| p.speed)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w * 1.852, 0.01)),
        "altitude" => p
            .and_then(|p| p.altitude)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w, 1e-6)),
        "fixTime" => e.device_time.as_ref().map(|t| t.seconds) == want.as_str().map(parse_iso),
        "alarm" => attr_str(e, "alarm") == want.as_str().map(camel_to_snake).as_deref(),
        "ignition" | "door" => attr_bool(e, key) == want.as_bool(),
        "iccid" | "result" => attr_str(e, key) == want.as_str(),
        "driverUniqueId" => attr_str(e, "driver_id") == want.as_str(),
        "eventFiles" => attr_str(e, "event_files") == want.as_str(),
        // `serial` is already the frame's serial number in our attributes.
        "serial" => attr_str(e, "rfid_text") == want.as_str(),
        // Traccar's `event` is our `event`, except on the status-family packets, where it is
        // the alarm byte Traccar has no name for: our `alarm_code`.
        "event" => {
            let got = attr_f64(e, "event").or_else(|| attr_f64(e, "alarm_code"));
            got.zip(num).is_some_and(|(g, w)| g == w)
        }
        // Traccar scales the 0–6 level to a percentage and passes larger values through;
        // we publish the raw level (`battery_level`) or the percentage (`battery_percent`).
        "batteryLevel" => {
            let pct = attr_f64(e, "battery_percent").or_else(|| {
                attr_f64(e, "battery_level").map(|l| {
                    if l <= 6.0 {
                        (l * 100.0 / 6.0).floor()
                    } else {
                        l
                    }
                })
            });
            pct.zip(num).is_some_and(|(g, w)| g == w)
        }
        // Traccar's power = external supply voltage; null = must be absent.
        "power" => match num {
            Some(w) => attr_f64(e, "external_voltage").is_some_and(|g| close(g, w, 1e-6)),
            None => e.attr("external_voltage").is_none(),
        },
        "battery" => attr_f64(e, "battery_voltage")
            .zip(num)
            .is_some_and(|(g, w)| close(g, w, 1e-6)),
        _ => return None,
    };
    Some(if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: want {want}, event {:?} {:?}",
            e.position,
            e.attributes.keys().collect::<Vec<_>>()
        ))
    })
}

#[derive(Default)]
struct Figures {
    valid: usize,
    valid_ok: usize,
    replies_checked: usize,
    invalid: usize,
    rejected: usize,
    truncated: usize,
    crc_less_wifi: usize,
    concatenated: usize,
    positions: usize,
    matched: usize,
    known_gaps: usize,
    excluded_asserts: usize,
}

#[test]
fn traccar_gt06_frames() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut by_test: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in all
        .iter()
        .filter(|e| e["protocol"] == "gt06" && e["direction"] == "device_to_server")
    {
        by_test
            .entry(e["test"].as_str().unwrap().into())
            .or_default()
            .push(e);
    }
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps_seen: Vec<u64> = Vec::new();
    for (test, mut entries) in by_test {
        entries.sort_by_key(|e| e["seq"].as_u64());
        let mut s = Gt06.new_session(Transport::Tcp, &Limits::default());
        if entries.first().map(|e| &e["wire"]["protocol_number"]) != Some(&Value::from("0x01")) {
            let out = decode_all(s.as_mut(), &h(LOGIN_HEX));
            assert!(matches!(&out[..], [Ok(f)] if f.login.is_some()));
        }
        for e in entries {
            let seq = e["seq"].as_u64().unwrap();
            let name = format!("{test}#{seq}");
            let bytes = h(e["frame"].as_str().unwrap());
            let w = &e["wire"];
            let out = decode_all(s.as_mut(), &bytes);
            let frames: Vec<&Frame> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
            let errors: Vec<&DecodeError> = out.iter().filter_map(|r| r.as_ref().err()).collect();
            if w["length_ok"] != true || w["crc"] != "ok" {
                fig.invalid += 1;
                if let Some(ws) = split_valid(&bytes).filter(|ws| ws.len() > 1) {
                    // Several good frames in one entry: each decodes and is answered.
                    fig.concatenated += 1;
                    if !errors.is_empty() || frames.len() != ws.len() {
                        failures.push(format!(
                            "{name}: {} good frames gave {} frames, errors {errors:?}",
                            ws.len(),
                            frames.len()
                        ));
                    }
                    continue;
                }
                if let Some((protocol, time)) = crc_less_wifi(&bytes) {
                    // Not a bad CRC: a form without one. Answered with the time echoed.
                    fig.crc_less_wifi += 1;
                    let mut want = vec![0x78, 0x78, 0x00, protocol];
                    want.extend_from_slice(&time);
                    want.extend_from_slice(&[0x0D, 0x0A]);
                    match &frames[..] {
                        [f] if errors.is_empty() && f.reply.as_deref() == Some(&want[..]) => {}
                        _ => failures.push(format!(
                            "{name}: CRC-less Wi-Fi form not decoded/answered: {out:?}"
                        )),
                    }
                    continue;
                }
                // A bad CRC or length: refused, not acknowledged, nothing published. A length
                // running past the entry's end leaves the bytes waiting for the rest of a
                // frame that never comes (on TCP; a UDP datagram is refused outright, below).
                if out.is_empty() {
                    fig.truncated += 1;
                    let mut u = Gt06.new_session(Transport::Udp, &Limits::default());
                    decode_all(u.as_mut(), &h(LOGIN_HEX));
                    let out = decode_all(u.as_mut(), &bytes);
                    if !out
                        .iter()
                        .all(|r| r.as_ref().is_err_and(|e| e.reply.is_none()))
                        || out.is_empty()
                    {
                        failures.push(format!(
                            "{name}: truncated frame not refused over UDP: {out:?}"
                        ));
                    }
                } else if frames.is_empty() && errors.iter().all(|e| e.reply.is_none()) {
                    fig.rejected += 1;
                } else {
                    failures.push(format!("{name}: invalid frame not refused: {out:?}"));
                }
                continue;
            }
            fig.valid += 1;
            let ws = split_valid(&bytes).expect("the file says this frame is valid");
            let [wire] = &ws[..] else {
                panic!("{name}: one valid frame expected");
            };
            let [f] = &frames[..] else {
                failures.push(format!(
                    "{name}: valid frame gave {} frames, errors {errors:?}",
                    frames.len()
                ));
                continue;
            };
            if !errors.is_empty() {
                failures.push(format!("{name}: valid frame gave errors {errors:?}"));
                continue;
            }
            fig.valid_ok += 1;
            let header = if wire.extended { 5 } else { 4 };
            let want_reply = expected_reply(wire, &bytes[header..bytes.len() - 6]);
            if f.reply.as_deref() != want_reply.as_deref() {
                failures.push(format!(
                    "{name}: reply {:02x?}, want {:02x?}",
                    f.reply.as_deref(),
                    want_reply
                ));
            }
            fig.replies_checked += 1;
            if e["expect"] != "position" {
                continue;
            }
            fig.positions += 1;
            let gap = (test == "Gt06ProtocolDecoderTest.testDecode")
                .then(|| KNOWN_GAPS.iter().find(|(s, _)| *s == seq))
                .flatten();
            let mut problems = Vec::new();
            match f.events.first() {
                None => problems.push("no event".to_string()),
                Some(ev) if ev.kind == EventKind::Unknown as i32 => {
                    problems.push(format!("published as UNKNOWN ({})", w["protocol_number"]))
                }
                Some(ev) => {
                    if e["check"] == "verifyPosition" {
                        // What Traccar's verifyPosition checks: a fix in range with a time.
                        let in_range = ev.position.as_ref().is_some_and(|p| {
                            p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0
                        });
                        if !in_range || ev.device_time.is_none() {
                            problems.push(format!(
                                "no position/time: {:?} {:?}",
                                ev.position, ev.device_time
                            ));
                        }
                    }
                    for (k, v) in e["asserts"].as_object().into_iter().flatten() {
                        match check(ev, k, v) {
                            Some(Ok(())) => {}
                            Some(Err(why)) => problems.push(why),
                            None => match EXCLUDED_KEYS.iter().find(|(x, _)| x == k) {
                                Some(_) => fig.excluded_asserts += 1,
                                None => problems.push(format!("unmapped assert {k}")),
                            },
                        }
                    }
                }
            }
            match (gap, problems.is_empty()) {
                (None, true) => fig.matched += 1,
                (None, false) => failures.push(format!("{name}: {}", problems.join("; "))),
                (Some((s, why)), false) => {
                    fig.known_gaps += 1;
                    gaps_seen.push(*s);
                    eprintln!("  gap {name}: {why} [{}]", problems.join("; "));
                }
                (Some((_, why)), true) => failures.push(format!(
                    "{name} matches now: remove it from KNOWN_GAPS ({why})"
                )),
            }
        }
    }
    for (s, why) in KNOWN_GAPS {
        if !gaps_seen.contains(s) && !failures.iter().any(|f| f.contains(&format!("#{s} "))) {
            failures.push(format!(
                "KNOWN_GAPS lists #{s} ({why}) but no such position frame"
            ));
        }
    }
    eprintln!("GT06 conformance (Traccar frames):");
    eprintln!(
        "  valid frames decoded without error: {}/{} (replies checked: {})",
        fig.valid_ok, fig.valid, fig.replies_checked
    );
    eprintln!(
        "  position frames matching every mapped assert: {}/{} ({} known gaps, {} asserts on excluded keys)",
        fig.matched, fig.positions, fig.known_gaps, fig.excluded_asserts
    );
    eprintln!(
        "  invalid entries: {} = {} refused without reply + {} truncated (held, nothing published) + {} CRC-less Wi-Fi form + {} entries of several good frames",
        fig.invalid, fig.rejected, fig.truncated, fig.crc_less_wifi, fig.concatenated
    );
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    // The figures themselves, so a regression that slips past the per-frame checks fails.
    assert_eq!(fig.valid_ok, fig.valid);
    assert_eq!(fig.valid, 161);
    assert_eq!(
        fig.invalid,
        fig.rejected + fig.truncated + fig.crc_less_wifi + fig.concatenated
    );
    assert_eq!(fig.matched + fig.known_gaps, fig.positions);
    assert_eq!(fig.known_gaps, KNOWN_GAPS.len());
}
