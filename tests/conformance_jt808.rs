//! The JT/T 808 frames of Traccar's test suite (`tests/data/traccar-frames-more.json`),
//! replayed per test method, in order, on one session, through the public session API; and a
//! command round trip through a real gateway.
//!
//! - Traccar's decoder tests feed frames after its frame decoder (unescaped): they are escaped
//!   here (by this file's own escaper) into wire form, except the one fixture given in wire
//!   form.
//! - A frame with a valid check byte and body length must decode without error to exactly one
//!   frame and get exactly the reply the platform owes it, built here by hand: `8001` with the
//!   serial and id it answers (serial 0 in its own header, the version byte and terminal
//!   number echoed), `8100` with the terminal number as the code, `4401` for a JT701 report
//!   that asks, the time for an e-lock time request, nothing for the terminal's own answers.
//!   Unlike Traccar, the gateway also answers `0701`, `0702` and `2070` (the standard has the
//!   platform answer every terminal message).
//! - A frame with a wrong check byte or body length must be refused: no frame, no reply.
//! - `expect: null` frames produce no position; `not_null` ones produce an event.
//! - For frames Traccar checks as positions, every asserted value must match our event's
//!   vocabulary after unit conversion ([`check`]; device codes Traccar passes through against
//!   `raw`). Keys without a counterpart are in [`EXCLUDED_KEYS`] with the reason; frames that
//!   do not match are in [`KNOWN_GAPS`] with the reason; the test fails if a gap starts
//!   matching or any other frame does not match.
//! - Traccar's per-device model setting is a per-device profile here ([`MODEL_PROFILES`]).
//! - Every value of every valid frame survives into `raw`: [`raw_survives`] re-reads the
//!   fields of the layouts it knows from the frame bytes, independently of the decoder, and
//!   looks each one up in `raw`.
//! - Encoder and frame-codec entries are compared byte for byte where the command maps onto a
//!   `CommandRequest`.
//!
//! Figures are printed (`cargo test --test conformance_jt808 -- --nocapture`) and asserted.

mod common;
mod props;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{Alarm, CommandResult, CommandStatus, EventKind, TelemetryEvent, Transport};
use avlgate::protocol::jt808::frame as jframe;
use avlgate::protocol::jt808::mapping::name;
use avlgate::protocol::jt808::Jt808;
use avlgate::protocol::{
    Action, CommandRequest, DecodeError, Frame, ProtocolConfig, ProtocolModule, ProtocolSession,
};
use avlgate::vocab::Profiles;
use bytes::{Bytes, BytesMut};
use prost::Message;
use serde_json::Value;

#[global_allocator]
static ALLOC: props::Counting = props::Counting;

/// The clock the session sees: 2026-11-20 23:32:30 UTC (time requests echo it).
const NOW_SECS: u64 = 1_795_217_550;

/// Traccar models with a built-in profile here.
const MODEL_PROFILES: &[(&str, &str)] = &[
    ("AL300", "jt808-aovx"),
    ("GL100", "jt808-aovx"),
    ("MV710G", "jt808-mv"),
    ("MV810G", "jt808-mv"),
    ("VL300", "jt808-vl300"),
    ("G-360P", "jt808-padlock"),
    ("G-508P", "jt808-padlock"),
];

/// Traccar attribute keys asserted on values our schema has no counterpart for; the frame
/// must still decode, and the value is in `raw`.
const EXCLUDED_KEYS: &[(&str, &str)] = &[
    ("tire1Pressure", "TPMS item 0x77 (sensor id, pressure, temperature per tyre): no tyre fields in the vocabulary; kept raw"),
    ("lock2Battery", "e-lock item 0x63 (per-lock id, battery, seal): no lock fields; kept raw"),
    ("lock1Locked", "e-lock item 0xD5: no lock fields; kept raw"),
    ("fuel1", "EB sub-item 0x0001 of one vendor, unit undocumented (Traccar names it fuel1, not fuel); kept raw"),
    ("fuel2", "EB sub-item 0x0023 (six ASCII digits) of one vendor, unit undocumented; kept raw"),
    ("alarmLabel", "ADAS item 0x64's attachment label (a file-server key, not telemetry); kept raw"),
    ("tag1Mac", "BLE tag list inside a GL100 pass-through 0x53; kept raw (passthrough_data)"),
];

/// Frames (seq in `Jt808ProtocolDecoderTest.testDecode`) that decode but do not match
/// Traccar's asserted values, and why.
const KNOWN_GAPS: &[(u64, &str)] = &[
    (12, "motion from EB sub-item 00C5 bits 23–25 = 0 (zero means moving): a rule maps non-zero to true, so this inverted code stays raw"),
    (27, "temp1 from AOVX item F6 (event, mask, then masked sensor words): a layout chosen by a mask byte, kept raw"),
    (30, "temp1 from item 51 of 16 bytes (eight sign-and-magnitude words): a rule reads values of at most 8 bytes, and negative sign-and-magnitude is no two's complement; kept raw"),
    (31, "ICCID in EB sub-item 00B2 is BCD padded with F: the hex rule gives the F (…309F); Traccar strips it"),
    (36, "driver id inside item 60 (event 0065, then a 6-byte lock id, then 8 ASCII bytes): an event-dependent layout, kept raw"),
    (40, "DTCs inside a Jimi 0900 pass-through F0 sub-type 02 (count, system ids, code records): not decoded, kept raw (passthrough_data)"),
    (46, "a Jimi 0900 pass-through F0 sub-type 03 carrying a position after its alarm list: not decoded, so no position"),
    (50, "temp3 from item E6 BLE sensors (index, MAC, custom signed fixed-point pairs): not decoded, kept raw"),
    (51, "harsh acceleration inside item FE's 7C-marked sub-items: a marker-dependent layout, kept raw"),
    (55, "a Jimi 0900 pass-through F0 sub-type 01 (OBD values, then a position): not decoded, so no position"),
    (58, "DTCs in item A0 come comma-joined in one value; the vocabulary's list takes one code per raw value (no split rule), so A0 stays raw"),
    (74, "battery inside an item 33 `*M00,…` e-lock status text: not decoded, kept raw"),
    (106, "JC371 item E8 extended type 2003 (battery and supply inside a Jimi TLV): not decoded, kept raw"),
    (107, "JC371 item E8 extended type 0C01 (SOS): a Jimi alarm code inside a TLV, kept raw"),
    (108, "JC371 item E8 extended type 0406 (vibration): a Jimi alarm code inside a TLV, kept raw"),
    (111, "ICCID inside AOVX item F8 (mode, IMEI, ICCID, model): a rule cannot cut 10 bytes out of 29, kept raw"),
    (113, "device temperature inside a GL100 0900 pass-through 54 (masked sensor samples): not decoded, kept raw"),
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn xor(b: &[u8]) -> u8 {
    b.iter().fold(0, |a, x| a ^ x)
}

/// Wire form of an unescaped frame (`7E`, content, `7E`): the content escaped.
fn escape(frame: &[u8]) -> Vec<u8> {
    let inner = &frame[1..frame.len() - 1];
    let mut out = vec![0x7E];
    for &b in inner {
        match b {
            0x7E => out.extend_from_slice(&[0x7D, 0x02]),
            0x7D => out.extend_from_slice(&[0x7D, 0x01]),
            b => out.push(b),
        }
    }
    out.push(0x7E);
    out
}

/// The unescaped content between the delimiters of a wire frame.
fn unescape(frame: &[u8]) -> Vec<u8> {
    let inner = &frame[1..frame.len() - 1];
    let mut out = Vec::new();
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == 0x7D {
            out.push(if inner[i + 1] == 0x01 { 0x7D } else { 0x7E });
            i += 2;
        } else {
            out.push(inner[i]);
            i += 1;
        }
    }
    out
}

/// A message's header fields, read here.
#[derive(Debug, Clone)]
struct Head {
    id: u16,
    attributes: u16,
    version: Option<u8>,
    terminal: Vec<u8>,
    serial: u16,
    header_len: usize,
}

/// The header of unescaped content (check byte included at the end).
fn head(c: &[u8]) -> Head {
    let id = u16::from_be_bytes([c[0], c[1]]);
    let attributes = u16::from_be_bytes([c[2], c[3]]);
    let short = id == 0x5501 || id == 0x5502;
    let (version, at) = if !short && attributes & 0x4000 != 0 {
        (Some(c[4]), 5)
    } else {
        (None, 4)
    };
    let tl = if version.is_some() { 10 } else { 6 };
    let terminal = c[at..at + tl].to_vec();
    let (serial, mut end) = if short {
        (u16::from(c[at + tl]), at + tl + 1)
    } else {
        (
            u16::from_be_bytes([c[at + tl], c[at + tl + 1]]),
            at + tl + 2,
        )
    };
    if !short && attributes & 0x2000 != 0 {
        end += 4;
    }
    Head {
        id,
        attributes,
        version,
        terminal,
        serial,
        header_len: end,
    }
}

/// A platform frame built here: header in the addressee's form, serial 0, body, check byte,
/// escaped.
fn platform(id: u16, to: &Head, body: &[u8]) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let mut attr = body.len() as u16;
    if to.version.is_some() {
        attr |= 0x4000;
    }
    m.extend_from_slice(&attr.to_be_bytes());
    if let Some(v) = to.version {
        m.push(v);
    }
    m.extend_from_slice(&to.terminal);
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(body);
    m.push(xor(&m));
    escape(&[&[0x7E][..], &m, &[0x7E]].concat())
}

/// Traccar's reading of a terminal number: its hex when all digits, else a packed IMEI with
/// its Luhn digit.
fn decoded_id(t: &[u8]) -> String {
    let hexs = hex::encode(t);
    if hexs.bytes().all(|b| b.is_ascii_digit()) {
        return hexs;
    }
    let n = t.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
    let body = format!("{n:014}");
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The reply the platform owes one valid message (`None` = no reply).
fn expected_reply(hd: &Head, body: &[u8]) -> Option<Vec<u8>> {
    match hd.id {
        // The terminal's answers to platform messages.
        0x0001 | 0x0104 | 0x0201 | 0x0500 | 0x1300 => None,
        0x0100 => {
            let mut b = hd.serial.to_be_bytes().to_vec();
            b.push(0);
            b.extend_from_slice(decoded_id(&hd.terminal).as_bytes());
            Some(platform(0x8100, hd, &b))
        }
        0x5501 | 0x5502 => (hd.attributes & 0x8000 != 0).then(|| {
            let mut m = h("44010003");
            m.extend_from_slice(&hd.terminal);
            m.push(1);
            m.extend_from_slice(&hd.id.to_be_bytes());
            m.push(0);
            m.push(xor(&m));
            escape(&[&[0x7E][..], &m, &[0x7E]].concat())
        }),
        0x0801 => {
            let mut b = body[..4].to_vec();
            b.push(0);
            Some(platform(0x8800, hd, &b))
        }
        _ => {
            let mut b = hd.serial.to_be_bytes().to_vec();
            b.extend_from_slice(&hd.id.to_be_bytes());
            b.push(0);
            Some(platform(0x8001, hd, &b))
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
                assert_eq!(e.action, Action::Continue, "must not close: {e}");
                out.push(Err(e));
            }
        }
    }
    out
}

/// A Traccar alarm name as our enum.
fn traccar_alarm(s: &str) -> Option<Alarm> {
    let snake = match s {
        "hardAcceleration" => "HARSH_ACCELERATION".to_string(),
        "hardBraking" => "HARSH_BRAKING".to_string(),
        "hardCornering" => "HARSH_CORNERING".to_string(),
        _ => {
            let mut out = String::new();
            for c in s.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    };
    Alarm::from_str_name(&format!("ALARM_{snake}"))
}

fn raw_id_bytes(e: &TelemetryEvent, id: u32) -> Option<&[u8]> {
    match e.raw_id(id)? {
        RawV::BytesValue(b) => Some(b),
        _ => None,
    }
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

/// One Traccar assert against our event. `None`: the key is not mapped.
fn check(e: &TelemetryEvent, key: &str, want: &Value) -> Option<Result<(), String>> {
    let p = e.position.as_ref();
    let t = e.telemetry();
    let num = want.as_f64();
    let close_to = |got: Option<f64>, eps: f64| got.zip(num).is_some_and(|(g, w)| close(g, w, eps));
    let ok = match key {
        "sat" => p.and_then(|p| p.satellites).map(f64::from) == num,
        "alarm" => {
            let want: Option<Vec<Alarm>> = want
                .as_str()
                .and_then(|s| s.split(',').map(traccar_alarm).collect::<Option<Vec<_>>>());
            let mut ours: Vec<i32> = e.alarms.clone();
            ours.sort_unstable();
            want.is_some_and(|w| {
                let mut w: Vec<i32> = w.into_iter().map(|a| a as i32).collect();
                w.sort_unstable();
                w.dedup();
                w == ours
            })
        }
        "power" => close_to(t.external_power_volts, 1e-6),
        "battery" => close_to(t.battery_volts, 1e-6),
        "batteryLevel" => t.battery_percent.map(|v| (v + 1e-9).floor()) == num,
        "charge" => t.charging == want.as_bool(),
        "motion" => t.motion == want.as_bool(),
        "door" => t.door_open == want.as_bool(),
        "iccid" => t.iccid.as_deref() == want.as_str(),
        "driverUniqueId" => t.driver_id.as_deref() == want.as_str(),
        "temp1" => close_to(t.temperatures_celsius.get(&1).copied(), 1e-6),
        "temp3" => close_to(t.temperatures_celsius.get(&3).copied(), 1e-6),
        "rpm" => close_to(t.rpm, 1e-6),
        "fuelUsed" => close_to(t.fuel_used_liters, 1e-6),
        "steps" => t.steps.map(|s| s as f64) == num,
        "deviceTemp" => close_to(t.device_temperature_celsius, 1e-6),
        "dtcs" => Some(t.dtcs.join(" ")).as_deref() == want.as_str(),
        // Traccar's `result`: text the device sent.
        "result" => e.text.as_deref() == want.as_str(),
        // Codes Traccar passes through: ours are in `raw`.
        "cardCode" => {
            e.raw_named(name::DRIVER_CERTIFICATE)
                == want.as_str().map(|s| RawV::StringValue(s.into())).as_ref()
        }
        "driver" => {
            raw_id_bytes(e, 0xBC)
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_end_matches('\0')
                        .trim()
                        .to_string()
                })
                .as_deref()
                == want.as_str()
        }
        "event" => {
            raw_id_bytes(e, 0x60)
                .and_then(|b| b.get(..2))
                .map(|b| f64::from(u16::from_be_bytes([b[0], b[1]])))
                == num
        }
        "videoAlarm" => e.raw_id(0x14) == num.map(|n| RawV::UintValue(n as u64)).as_ref(),
        "imei" => {
            raw_id_bytes(e, 0xF6)
                .map(|b| hex::encode(b)[1..].to_string())
                .as_deref()
                == want.as_str()
        }
        "timezone" => raw_id_bytes(e, 0xEB) == want.as_str().map(str::as_bytes),
        "unlockResult" => {
            raw_id_bytes(e, 0x55_000B)
                .and_then(|b| b.last())
                .map(|b| f64::from(*b))
                == num
        }
        "tilt" => {
            raw_id_bytes(e, 0x55_000C)
                .map(|b| {
                    let w = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
                    format!("[{},{},{}]", w(0), w(2), w(4))
                })
                .as_deref()
                == want.as_str()
        }
        _ => return None,
    };
    Some(if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: want {want}, ours: position {} alarms {:?} telemetry {} text {:?} raw ids {:?}",
            e.position
                .as_ref()
                .map_or("none".into(), |p| serde_json::to_string(p)
                    .unwrap_or_default()),
            e.alarms
                .iter()
                .map(|a| Alarm::try_from(*a).map_or("?", |a| a.as_str_name()))
                .collect::<Vec<_>>(),
            serde_json::to_string(t).unwrap_or_default(),
            e.text,
            e.raw
                .iter()
                .map(|r| r.id.map_or(r.name.clone(), |i| format!("{i:#x}")))
                .collect::<Vec<_>>()
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Raw survival: the frame's fields, re-read here, are in `raw` under their names or ids.

struct RawCheck<'a> {
    e: &'a TelemetryEvent,
    checked: usize,
    problems: Vec<String>,
}

impl RawCheck<'_> {
    fn named(&mut self, k: &str, want: RawV) {
        self.checked += 1;
        let found = self
            .e
            .raw
            .iter()
            .any(|r| r.id.is_none() && r.name == k && r.value.as_ref() == Some(&want));
        if !found {
            self.problems.push(format!(
                "{k}: frame has {want:02x?}, raw {:02x?}",
                self.e.raw_named(k)
            ));
        }
    }

    fn id(&mut self, id: u32, want: RawV) {
        self.checked += 1;
        if !self
            .e
            .raw
            .iter()
            .any(|r| r.id == Some(id) && r.value.as_ref() == Some(&want))
        {
            self.problems.push(format!(
                "{id:#x}: frame has {want:02x?}, raw {:02x?}",
                self.e.raw_id(id)
            ));
        }
    }

    fn u(&mut self, k: &str, b: &[u8]) {
        let v = b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
        self.named(k, RawV::UintValue(v));
    }
}

/// The standard numeric items and their widths, as JT/T 808 tables them.
const NUMERIC: &[(u8, usize)] = &[
    (0x01, 4),
    (0x02, 2),
    (0x03, 2),
    (0x04, 2),
    (0x06, 2),
    (0x14, 4),
    (0x15, 4),
    (0x16, 4),
    (0x17, 2),
    (0x18, 2),
    (0x25, 4),
    (0x2A, 2),
    (0x2B, 4),
    (0x30, 1),
    (0x31, 1),
];

/// A `0200` body's words and items against an event.
fn location_raw(rc: &mut RawCheck, body: &[u8]) {
    rc.u(name::ALARM, &body[0..4]);
    rc.u(name::STATUS, &body[4..8]);
    let mut rest = &body[28..];
    while rest.len() >= 2 {
        let (id, len) = (rest[0], usize::from(rest[1]));
        let Some(v) = rest.get(2..2 + len) else {
            rc.named(name::TAIL, RawV::BytesValue(rest.to_vec()));
            return;
        };
        if NUMERIC.iter().any(|&(i, w)| i == id && w == len) {
            let n = v.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
            rc.id(id.into(), RawV::UintValue(n));
        } else if id == 0xEB && eb_chain(v).is_some() {
            for (sub, sv) in eb_chain(v).unwrap_or_default() {
                rc.id(0xEB_0000 + u32::from(sub), RawV::BytesValue(sv.to_vec()));
            }
        } else {
            rc.id(id.into(), RawV::BytesValue(v.to_vec()));
        }
        rest = &rest[2 + len..];
    }
    if !rest.is_empty() {
        rc.named(name::TAIL, RawV::BytesValue(rest.to_vec()));
    }
}

fn eb_chain(mut v: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    if v.is_empty() {
        return None;
    }
    while !v.is_empty() {
        let len = usize::from(u16::from_be_bytes([*v.first()?, *v.get(1)?]));
        let sub = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
        let value = v.get(4..2 + len.checked_sub(2)? + 2)?;
        out.push((sub, value));
        v = &v[4 + value.len()..];
    }
    Some(out)
}

/// The fields this test knows how to find in a message, checked against the frame's events.
fn raw_survives(hd: &Head, body: &[u8], events: &[TelemetryEvent]) -> (usize, Vec<String>) {
    let mut checked = 0;
    let mut problems = Vec::new();
    // Location records, in order, for the messages that carry them.
    let records: Vec<&[u8]> = match hd.id {
        0x0200 => vec![body],
        0x0201 | 0x0500 => vec![&body[2..]],
        0x0704 => {
            let mut v = Vec::new();
            let mut rest = &body[3..];
            while rest.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                v.push(&rest[2..2 + len]);
                rest = &rest[2 + len..];
            }
            v
        }
        0x0210 if body.len() != 7 => {
            let mut v = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                let len = usize::from(rest[0]);
                v.push(&rest[1..1 + len]);
                rest = &rest[1 + len..];
            }
            v
        }
        _ => Vec::new(),
    };
    for (i, e) in events.iter().enumerate() {
        let mut rc = RawCheck {
            e,
            checked: 0,
            problems: Vec::new(),
        };
        // Every event: the message id first, the serial last.
        rc.checked += 2;
        let first = e.raw.first().map(|r| (r.name.as_str(), r.value.clone()));
        let last = e.raw.last().map(|r| (r.name.as_str(), r.value.clone()));
        if first != Some((name::MESSAGE_ID, Some(RawV::UintValue(hd.id.into())))) {
            rc.problems.push(format!("first raw {first:?}"));
        }
        if last != Some((name::SERIAL, Some(RawV::UintValue(hd.serial.into())))) {
            rc.problems.push(format!("last raw {last:?}"));
        }
        if e.kind == EventKind::Unknown as i32 {
            rc.named(name::BODY, RawV::BytesValue(body.to_vec()));
        } else if let Some(r) = records.get(i) {
            location_raw(&mut rc, r);
        } else {
            match hd.id {
                0x0001 => {
                    rc.u(name::ANSWERED_SERIAL, &body[0..2]);
                    rc.u(name::ANSWERED_ID, &body[2..4]);
                    rc.u(name::RESULT, &body[4..5]);
                }
                0x0100 => {
                    rc.u(name::PROVINCE, &body[0..2]);
                    rc.u(name::CITY, &body[2..4]);
                }
                0x0107 => {
                    rc.u(name::TERMINAL_TYPE, &body[0..2]);
                    rc.named(name::ICCID, RawV::StringValue(hex::encode(&body[34..44])));
                }
                0x0210 => rc.u(name::BATTERY_LEVEL, &body[0..1]),
                0x0702 => rc.u(name::CARD_STATUS, &body[0..1]),
                0x0900 => {
                    rc.u(name::PASSTHROUGH_TYPE, &body[0..1]);
                    rc.named(name::PASSTHROUGH_DATA, RawV::BytesValue(body[1..].to_vec()));
                }
                0x0701 | 0x6006 | 0x1300 | 0x2070 => {
                    let from = match hd.id {
                        0x0701 => 4,
                        0x6006 => 1,
                        0x1300 => 2,
                        _ => 0,
                    };
                    rc.named(name::BODY, RawV::BytesValue(body[from..].to_vec()));
                }
                0x5501 | 0x5502 => {
                    // Fixed part: 6 time, 4 + 5 coordinates, speed, course, signal, satellites,
                    // odometer 4, battery, cell 4, LAC 2, product, status 2, alarm 2.
                    rc.u(name::SIGNAL, &body[17..18]);
                    rc.u(name::ODOMETER_KM, &body[19..23]);
                    rc.u(name::BATTERY, &body[23..24]);
                    rc.u(name::JT701_STATUS, &body[31..33]);
                    rc.u(name::JT701_ALARM, &body[33..35]);
                    let mut rest = &body[35..];
                    while rest.len() >= 2 {
                        let (id, len) = (rest[0], usize::from(rest[1]));
                        rc.id(
                            0x55_0000 + u32::from(id),
                            RawV::BytesValue(rest[2..2 + len].to_vec()),
                        );
                        rest = &rest[2 + len..];
                    }
                }
                _ => {}
            }
        }
        checked += rc.checked;
        problems.extend(rc.problems);
    }
    (checked, problems)
}

#[derive(Default)]
struct Figures {
    valid: usize,
    valid_ok: usize,
    replies_checked: usize,
    invalid: usize,
    rejected: usize,
    positions: usize,
    matched: usize,
    known_gaps: usize,
    with_model_profile: usize,
    asserts: usize,
    asserts_matched: usize,
    asserts_in_gaps: usize,
    excluded_asserts: usize,
    raw_frames: usize,
    raw_values: usize,
    nulls: usize,
    no_event: usize,
}

/// The device id a frame's terminal number gives (as the session names it).
fn device_id(hd: &Head) -> String {
    let d = decoded_id(&hd.terminal);
    if hd.terminal.len() == 10 {
        let trimmed = d.trim_start_matches('0');
        let keep = trimmed.len().max(12);
        return d[d.len() - keep..].to_string();
    }
    d
}

/// The built-in profiles plus a profile file that assigns each model's devices to the model's
/// profile, as an operator would.
fn config(assign: &BTreeMap<String, &'static str>) -> ProtocolConfig {
    let dir =
        std::env::temp_dir().join(format!("avlgate-conformance-jt808-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profiles.toml");
    let mut text = String::new();
    for (id, profile) in assign {
        text.push_str(&format!(
            "[[devices]]\nprofile = \"{profile}\"\nimeis = [\"{id}\"]\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let profiles = Profiles::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    ProtocolConfig::default().with_profiles(profiles)
}

fn entries() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/traccar-frames-more.json"
    ))
    .unwrap();
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|e| e["protocol"] == "jt808")
        .collect()
}

fn bytes_of(e: &Value) -> Vec<u8> {
    let f = e["frame"].as_str().unwrap();
    if e["encoding"] == "hex" {
        h(f)
    } else {
        f.as_bytes().to_vec()
    }
}

#[test]
fn traccar_jt808_frames() {
    let all = entries();
    let decoder: Vec<&Value> = all
        .iter()
        .filter(|e| e["test_kind"] == "protocol_decoder")
        .collect();
    // Devices of models with a profile.
    let mut assign = BTreeMap::new();
    for e in &decoder {
        let model = e["decoder_config"]["model"].as_str().unwrap_or_default();
        if let Some((_, p)) = MODEL_PROFILES.iter().find(|(m, _)| *m == model) {
            let b = bytes_of(e);
            assign.insert(device_id(&head(&b[1..b.len() - 1])), *p);
        }
    }
    let config = config(&assign);
    let mut by_test: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in decoder {
        by_test
            .entry(e["test"].as_str().unwrap().into())
            .or_default()
            .push(e);
    }
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps_seen: Vec<u64> = Vec::new();
    for (test, mut list) in by_test {
        list.sort_by_key(|e| e["seq"].as_u64());
        let mut s = Jt808.new_session(Transport::Tcp, &config);
        for e in list {
            let seq = e["seq"].as_u64().unwrap();
            let name = format!("{test}#{seq}");
            let w = &e["wire"];
            let text_frame = w["kind"] == "text_paren";
            let raw_bytes = bytes_of(e);
            let wire_bytes = if text_frame || w["form"] == "escaped" {
                raw_bytes.clone()
            } else {
                escape(&raw_bytes)
            };
            let out = decode_all(s.as_mut(), &wire_bytes);
            let frames: Vec<&Frame> = out.iter().filter_map(|r| r.as_ref().ok()).collect();
            let errors: Vec<&DecodeError> = out.iter().filter_map(|r| r.as_ref().err()).collect();
            let valid = text_frame || (w["length_ok"] == true && w["crc"] == "ok");
            if !valid {
                fig.invalid += 1;
                if frames.is_empty()
                    && !errors.is_empty()
                    && errors.iter().all(|e| e.reply.is_none())
                {
                    fig.rejected += 1;
                } else {
                    failures.push(format!("{name}: invalid frame not refused: {out:?}"));
                }
                continue;
            }
            fig.valid += 1;
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
            // The reply.
            let (hd, body) = if text_frame {
                (None, Vec::new())
            } else {
                let c = unescape(&wire_bytes);
                let hd = head(&c);
                let body = c[hd.header_len..c.len() - 1].to_vec();
                (Some(hd), body)
            };
            let want_reply = match &hd {
                Some(hd) => expected_reply(hd, &body),
                None => {
                    let t = String::from_utf8_lossy(&raw_bytes).into_owned();
                    t.contains("BASE,2")
                        .then(|| t.replace("TIME", "261120233230").into_bytes())
                }
            };
            fig.replies_checked += 1;
            if f.reply.as_deref() != want_reply.as_deref() {
                failures.push(format!(
                    "{name}: reply {}, want {}",
                    f.reply.as_deref().map_or("none".into(), hex::encode),
                    want_reply.as_deref().map_or("none".into(), hex::encode)
                ));
            }
            // Raw survival.
            if let Some(hd) = &hd {
                if f.events.is_empty() {
                    fig.no_event += 1;
                } else {
                    let (n, problems) = raw_survives(hd, &body, &f.events);
                    fig.raw_frames += 1;
                    fig.raw_values += n;
                    for p in problems {
                        failures.push(format!("{name}: raw: {p}"));
                    }
                }
            }
            match e["expect"].as_str() {
                Some("null") | None => {
                    fig.nulls += 1;
                    if f.events.iter().any(|ev| ev.position.is_some()) {
                        failures.push(format!("{name}: expect null, got a position"));
                    }
                    continue;
                }
                Some("none") => {
                    if e["asserts"]["not_null"] == true && f.events.is_empty() {
                        failures.push(format!("{name}: expect an event"));
                    }
                    continue;
                }
                _ => {}
            }
            fig.positions += 1;
            let model = e["decoder_config"]["model"].as_str().unwrap_or_default();
            if MODEL_PROFILES.iter().any(|(m, _)| *m == model) {
                fig.with_model_profile += 1;
            }
            let gap = KNOWN_GAPS.iter().find(|(s, _)| *s == seq);
            let mut problems = Vec::new();
            let asserts = e["asserts"].as_object().map_or(0, |a| a.len());
            fig.asserts += asserts;
            let mut missed = 0;
            match f.events.first() {
                None => {
                    missed = asserts;
                    problems.push("no event".to_string());
                }
                Some(ev) => {
                    if e["check"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("verifyPosition"))
                    {
                        for ev in &f.events {
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
                    }
                    for (k, v) in e["asserts"].as_object().into_iter().flatten() {
                        match check(ev, k, v) {
                            Some(Ok(())) => fig.asserts_matched += 1,
                            Some(Err(why)) => {
                                missed += 1;
                                problems.push(why)
                            }
                            None => match EXCLUDED_KEYS.iter().find(|(x, _)| x == k) {
                                Some(_) => fig.excluded_asserts += 1,
                                None => {
                                    missed += 1;
                                    problems.push(format!("unmapped assert {k}"))
                                }
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
                    fig.asserts_in_gaps += missed;
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
        if !gaps_seen.contains(s) && !failures.iter().any(|f| f.contains(&format!("#{s}:"))) {
            failures.push(format!(
                "KNOWN_GAPS lists #{s} ({why}) but no such position frame"
            ));
        }
    }
    eprintln!("JT/T 808 conformance (Traccar frames):");
    eprintln!(
        "  valid frames decoded without error: {}/{} (replies checked: {})",
        fig.valid_ok, fig.valid, fig.replies_checked
    );
    eprintln!(
        "  position frames matching every mapped assert: {}/{} ({} known gaps, {} under a model's profile)",
        fig.matched, fig.positions, fig.known_gaps, fig.with_model_profile
    );
    eprintln!(
        "  asserted values matching our vocabulary or raw: {}/{} ({} on excluded keys, {} missed in known-gap frames)",
        fig.asserts_matched, fig.asserts, fig.excluded_asserts, fig.asserts_in_gaps
    );
    eprintln!(
        "  raw survival: {} values re-read from {} frames, each found in `raw`",
        fig.raw_values, fig.raw_frames
    );
    eprintln!(
        "  invalid entries (bad check byte or length): {} = {} refused without reply; expect-null frames without a position: {}",
        fig.invalid, fig.rejected, fig.nulls
    );
    for f in &failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
    assert_eq!(fig.valid_ok, fig.valid);
    assert_eq!(fig.invalid, fig.rejected);
    assert_eq!(fig.valid + fig.invalid, 113);
    assert_eq!(fig.valid, 108);
    // Every valid frame with an event had its raw values checked; the figure itself, so a
    // change in what the check covers updates it knowingly.
    assert_eq!(fig.raw_frames + fig.no_event, fig.valid - 2);
    assert_eq!(fig.raw_values, 1222);
    assert_eq!(fig.matched + fig.known_gaps, fig.positions);
    assert_eq!(fig.known_gaps, KNOWN_GAPS.len());
    assert_eq!(
        fig.asserts_matched + fig.excluded_asserts + fig.asserts_in_gaps,
        fig.asserts
    );
}

/// The frame decoder and encoder fixtures: escapes undone and applied byte for byte, garbage
/// before a delimiter skipped, a text frame cut at its parenthesis.
#[test]
fn traccar_frame_codec_fixtures() {
    let mut checked = 0;
    for e in entries() {
        let kind = e["test_kind"].as_str().unwrap_or_default();
        let input = bytes_of(&e);
        let want = match e["asserts"]["frame_out"].as_str() {
            Some(w) => h(w),
            None => continue,
        };
        match kind {
            "frame_decoder" => {
                let mut buf = &input[..];
                // Garbage before the delimiter is skipped (Traccar's `$$` prefix).
                if let jframe::Split::Skip(n, jframe::Reject::Garbage) = jframe::split(buf, 4096) {
                    buf = &buf[n..];
                }
                let got = match jframe::split(buf, 4096) {
                    jframe::Split::Text(t, _) => t,
                    // The fixture has no valid header or check byte; its unescaped form is
                    // compared.
                    _ => {
                        let end = buf[1..].iter().position(|&b| b == 0x7E).unwrap() + 2;
                        let inner = jframe::unescape(&buf[1..end - 1]).unwrap();
                        [&[0x7E][..], &inner, &[0x7E]].concat()
                    }
                };
                assert_eq!(hex::encode(&got), hex::encode(&want), "{}", e["source"]);
            }
            "frame_encoder" => {
                let got = jframe::wrap(&input[1..input.len() - 1]);
                assert_eq!(hex::encode(&got), hex::encode(&want), "{}", e["source"]);
            }
            _ => continue,
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

/// Traccar's encoder fixtures: device IMEI 123456789012345 (number `0b3a73ce2ff2`), serial 0.
/// Each maps onto a `CommandRequest` under the dialect setting of its model.
#[test]
fn traccar_encoder_fixtures() {
    let mut checked = 0;
    for e in entries()
        .iter()
        .filter(|e| e["test_kind"] == "protocol_encoder")
    {
        let want = h(e["frame"].as_str().unwrap());
        let model = e["decoder_config"]["model"].as_str().unwrap_or_default();
        let data = e["asserts"]["command_data"].as_str().unwrap_or_default();
        let (request, setting) = match (e["asserts"]["command_type"].as_str(), model) {
            // Traccar's default engine stop: 8105 with command word F0.
            (Some("engineStop"), _) => (CommandRequest::EngineStop, ("engine_control", "8105-f0")),
            // Hex data: the whole frame.
            (Some("custom"), "") => (
                CommandRequest::Payload(Bytes::from(h(data))),
                ("text_command", "8300"),
            ),
            (Some("custom"), "BSJ") => {
                (CommandRequest::Text(data.into()), ("text_command", "8300"))
            }
            (Some("custom"), m) if m.starts_with("JC") => (
                CommandRequest::Text(data.into()),
                ("text_command", "8900-f0"),
            ),
            other => panic!("unmapped encoder fixture {other:?}"),
        };
        let config = ProtocolConfig::default().with("jt808", setting.0, setting.1);
        let mut s = Jt808.new_session(Transport::Tcp, &config);
        // The device shows itself first (its heartbeat), so the session knows its header.
        let mut m = h("000200000b3a73ce2ff20001");
        m.push(xor(&m));
        let hb = escape(&[&[0x7E][..], &m, &[0x7E]].concat());
        assert!(matches!(&decode_all(s.as_mut(), &hb)[..], [Ok(_)]));
        let got = s.encode_command(&request).unwrap();
        assert_eq!(hex::encode(&got), hex::encode(&want), "{}", e["source"]);
        checked += 1;
    }
    assert_eq!(checked, 4);
}

/// A command through a real gateway over TCP: the device identifies with a heartbeat, the
/// backend publishes a CUSTOM text on the embedded broker, the gateway writes `8300` with a
/// fresh serial, the device answers `0001` echoing serial and id, and the command is SENT,
/// then RESPONDED. (Typed commands without a `text`/`payload` are refused before they reach a
/// session by the command ledger's validation, outside this protocol; their bytes are
/// checked in `command.rs` and through the session in `sim.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_command_round_trip_through_the_gateway() {
    use common::*;
    let broker = embedded_broker();
    let gw = TestGateway::mqtt(broker).await;
    let mut results = Subscriber::connect(broker, "avlgate/command-results/#").await;
    let number = h("013912345678");
    let id = "013912345678";
    let mut dev = Device::connect(gw.addr).await;
    let mut m = h("00020000");
    m.extend_from_slice(&number);
    m.extend_from_slice(&[0, 1]);
    m.push(xor(&m));
    dev.send(&escape(&[&[0x7E][..], &m, &[0x7E]].concat()))
        .await;
    let hd = Head {
        id: 0x0002,
        attributes: 0,
        version: None,
        terminal: number.clone(),
        serial: 1,
        header_len: 12,
    };
    let want = platform(0x8001, &hd, &h("0001000200"));
    assert_eq!(
        dev.read_exact(want.len(), 15).await,
        Some(want),
        "heartbeat answered"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    results
        .publish(
            &format!("avlgate/commands/{id}"),
            format!(r#"{{"commandId":"text-1","imei":"{id}","text":"STATUS#"}}"#).into_bytes(),
        )
        .await;
    // 8300, flag 01 and the text, the session's first command: serial 0.
    let cmd = platform(0x8300, &hd, b"\x01STATUS#");
    assert_eq!(
        dev.read_exact(cmd.len(), 20).await,
        Some(cmd),
        "8300 written"
    );
    let mut a = h("00010005");
    a.extend_from_slice(&number);
    a.extend_from_slice(&[0, 2]);
    a.extend_from_slice(&h("0000830000"));
    a.push(xor(&a));
    dev.send(&escape(&[&[0x7E][..], &a, &[0x7E]].concat()))
        .await;
    let mut statuses = Vec::new();
    while let Some((_, p)) = results.next(3).await {
        let r = CommandResult::decode(&p[..]).unwrap();
        assert_eq!(r.command_id, "text-1");
        statuses.push(r.status);
        if r.status == CommandStatus::Responded as i32 {
            assert_eq!(
                r.response,
                Some(avlgate::proto::command_result::Response::ResponseText(
                    "success".into()
                ))
            );
        }
    }
    assert_eq!(
        statuses,
        vec![CommandStatus::Sent as i32, CommandStatus::Responded as i32]
    );
    gw.stop().await;
}

/// Batches longer than one frame's body go as packages through a real gateway, over TCP and
/// UDP: every package answered exactly, every record published once, for the right device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_packaged_batches_through_the_gateway() {
    use avlgate::config::Settings;
    use avlgate::simulate::{self, DeviceProtocol, Options, SimTransport};
    use avlgate::sink::memory::MemorySink;
    use std::collections::HashSet;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;
    for transport in [SimTransport::Tcp, SimTransport::Udp] {
        let config = Settings {
            listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
            gateway_name: Some("jt808-test".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        let sink = MemorySink::new();
        let shutdown = CancellationToken::new();
        let gw = avlgate::server::Gateway::bind_with_sink(
            config,
            Arc::new(sink.clone()),
            shutdown.clone(),
            CancellationToken::new(),
            avlgate::abort::Abort::new(),
        )
        .await
        .unwrap();
        let addr = gw.local_addrs()[0];
        let handle = tokio::spawn(gw.run());
        let o = Options {
            transport,
            devices: 2,
            interval: Duration::from_millis(300),
            // 40 records of 50 bytes: a 2 KiB batch, two packages.
            records_per_frame: 40,
            duration: Some(Duration::from_millis(1500)),
            ..Options::new(addr.to_string(), DeviceProtocol::named("jt808").unwrap())
        };
        let s = simulate::run(o.clone(), CancellationToken::new())
            .await
            .unwrap();
        let ctx = format!("{transport:?} {s:#?}");
        assert!(s.frames_acked >= 3, "{ctx}");
        assert_eq!(s.frames_acked, s.frames_sent, "{ctx}");
        assert_eq!(s.records_acked, s.records_sent, "{ctx}");
        assert_eq!(
            (s.ack_errors, s.ack_timeouts, s.protocol_errors),
            (0, 0, 0),
            "{ctx}"
        );
        let published: Vec<TelemetryEvent> = sink
            .take()
            .into_iter()
            .map(|m| TelemetryEvent::decode(&m.payload[..]).unwrap())
            .filter(|e| e.kind == EventKind::Position as i32)
            .collect();
        let ids: HashSet<&str> = published.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len() as u64, s.records_acked, "{ctx}");
        let devices: HashSet<&str> = published.iter().map(|e| e.imei.as_str()).collect();
        let want: HashSet<String> = (0..o.devices)
            .map(|i| simulate::imei(o.imei_base, i).unwrap())
            .collect();
        assert_eq!(
            devices,
            want.iter().map(String::as_str).collect::<HashSet<_>>()
        );
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    }
}

/// Traccar's frames in wire form, for the mutation test.
fn wire_seeds() -> Vec<Vec<u8>> {
    entries()
        .iter()
        .filter(|e| e["test_kind"] == "protocol_decoder")
        .map(|e| {
            let b = bytes_of(e);
            if e["wire"]["kind"] == "text_paren" || e["wire"]["form"] == "escaped" {
                b
            } else {
                escape(&b)
            }
        })
        .collect()
}

/// Every frame `input` decodes to, errors skipped (they may close: mutations can make a
/// number unreadable).
fn decode_all_any(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match s.decode(&mut buf, now()) {
            Ok(None) => break,
            Ok(Some(f)) => out.push(f),
            Err(e) if e.action == Action::Close => break,
            Err(_) => {}
        }
    }
    out
}

/// A mutation of `base`: flip, overwrite, insert, delete or truncate at positions from `ops`.
fn mutate(base: &[u8], ops: &[(u8, u16, u8)]) -> Vec<u8> {
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

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// Traccar's JT/T 808 frames, two at a time and mutated, through a session over TCP (in
    /// random chunks) and UDP: the progress, bounded-buffer, bounded-allocation and
    /// event-encoding properties of `tests/props`, and detection's.
    #[test]
    fn mutated_traccar_frames_keep_the_session_properties(
        a in proptest::prelude::any::<usize>(),
        b in proptest::prelude::any::<usize>(),
        ops in proptest::collection::vec(proptest::prelude::any::<(u8, u16, u8)>(), 0..6),
        ch in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8),
    ) {
        static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let seeds = SEEDS.get_or_init(wire_seeds);
        let base = [&seeds[a % seeds.len()][..], &seeds[b % seeds.len()][..]].concat();
        let input = mutate(&base, &ops);
        let out = props::drive_session(&Jt808, Transport::Tcp, &input, &props::chunk_sizes(&ch));
        proptest::prop_assert!(!out.closed || out.errors > 0);
        props::drive_session(&Jt808, Transport::Udp, &input, &[input.len().max(1)]);
        // The events of whatever decodes: percentages on their scale, kind ALARM exactly
        // when alarms were raised, raw framed by message id and serial.
        let mut s = Jt808.new_session(Transport::Tcp, &ProtocolConfig::default());
        for f in decode_all_any(s.as_mut(), &input) {
            for e in &f.events {
                let t = e.telemetry();
                for (field, v) in [
                    ("battery_percent", t.battery_percent),
                    ("gsm_signal_percent", t.gsm_signal_percent),
                    ("throttle_percent", t.throttle_percent),
                    ("engine_load_percent", t.engine_load_percent),
                ] {
                    proptest::prop_assert!(
                        v.is_none_or(|v| (0.0..=100.0).contains(&v)),
                        "{} = {:?}", field, v
                    );
                }
                proptest::prop_assert_eq!(
                    e.kind == EventKind::Alarm as i32,
                    !e.alarms.is_empty()
                );
                if e.kind != EventKind::CommandResponse as i32 || e.raw.len() > 1 {
                    proptest::prop_assert_eq!(
                        e.raw.first().map(|r| r.name.as_str()),
                        Some(if e.raw.len() == 1 { name::BODY } else { name::MESSAGE_ID })
                    );
                }
            }
        }
        props::check_detect(&input, Transport::Tcp);
        props::check_detect(&input, Transport::Udp);
    }
}
