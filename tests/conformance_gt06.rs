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
//! - For frames Traccar checks as positions, every asserted value must match our event's
//!   vocabulary (`telemetry`, `alarms`, `position`, `text`; device codes Traccar passes
//!   through, like `event`, against `raw`) after unit conversion, through [`check`]. Asserts
//!   on Traccar-derived values we have no counterpart for are listed in [`EXCLUDED_KEYS`] with
//!   the reason; frames we do not (yet) match are listed in [`KNOWN_GAPS`] with the reason,
//!   and the test fails if one of them starts matching (so the list stays true) or if any
//!   other frame does not match.
//! - Traccar's per-device model setting (`decoder_config.model`) is a per-device profile
//!   here: frames of a model with a built-in profile ([`MODEL_PROFILES`]) are replayed after
//!   a login of an IMEI the test's profile file assigns to that profile, as an operator would.
//! - Every value of every valid frame survives into `raw`: [`RawCheck`] re-reads the fields
//!   of the layouts it knows from the frame bytes, independently of the decoder and of the
//!   mapping, and looks each one up in the event's `raw` by its documented name.
//!
//! Figures are printed (`cargo test --test conformance_gt06 -- --nocapture`) and asserted.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{EventKind, TelemetryEvent, Transport};
use avlgate::protocol::gt06::mapping::name;
use avlgate::protocol::gt06::MODULE;
use avlgate::protocol::{DecodeError, Frame, ProtocolConfig, ProtocolSession};
use avlgate::vocab::Profiles;
use common::conformance::{self as conf, raw_str, raw_uint, Ledger, RawCheck, Score};
use common::h;
use serde_json::Value;

/// A login to inject before test methods that do not start with one (GT06 refuses
/// everything before a login; Traccar's own harness only works after one too).
const LOGIN_HEX: &str = "78780d010352887071911998000479d00d0a";
const LOGIN_IMEI: &str = "352887071911998";

/// The clock the session sees: 2026-11-20 23:32:30 UTC (time requests echo it).
const NOW_SECS: u64 = 1_795_217_550;

/// Traccar models (prefix of `decoder_config.model`) that have a built-in profile, and the
/// IMEI this test's profile file assigns to it.
const MODEL_PROFILES: &[(&str, &str, &str)] = &[("LW", "868120000000017", "gt06-lw")];

/// Traccar attribute keys asserted on values our schema has no counterpart for.
/// Each is skipped for the assert only; the frame must still decode to a typed event.
const EXCLUDED_KEYS: &[(&str, &str)] = &[
    (
        "temp1",
        "a temperature Traccar reads from model-specific bytes (SEEWORLD/OBD6/S5 layouts chosen by length or configured model); we keep those bytes raw (`tail`)",
    ),
    ("humidity", "a sensor value of one 0x94 sub-type we keep raw (`info_content`)"),
    ("networkTechnology", "Traccar's label for 0x94 sub-type 0x0B; we keep `info_type` and the raw byte (`info_content`)"),
    ("hours", "engine hours Traccar derives from a model-specific 0x22 tail (multiplied by 1000); kept raw (`tail`)"),
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
    (185, "VL103 0x36: the battery voltage is somewhere in the 12 undocumented status bytes (raw `status_data`)"),
    (176, "XT40 0x22: the battery voltage is in a model-specific tail (raw `tail`)"),
    (41, "0x13 with a 14-byte model-specific tail (raw `tail`): Traccar's power value comes from a model-specific field"),
    (170, "LW4G-4B 0x13: Traccar reads the power from the alarm and language bytes as one u16 (& 0x0FFF / 10); they are two raw values here (`alarm`, `language`), which no rule combines"),
    (172, "SEEWORLD 0x13: the alarm byte is the supply voltage on this model; the family reads an alarm code. An operator profile maps it (`names.alarm` → `external_power_volts`, see gt06/mapping.rs); this test assumes none"),
    (173, "R11 0x13: Traccar reads the voltage-level and GSM bytes as one u16 voltage; they are two raw values here, which no rule combines"),
    (56, "0x13 OBD6 form (battery % after a packed satellite/RSSI word, raw `tail`); not decoded beyond the status block"),
    (
        7,
        "0x94 `0B 02E3`: Traccar reads 7.39 V from bytes 1-2, but sub-type 0x0B is the network-technology byte elsewhere (seq 20); layout undocumented, kept raw (`info_content`)",
    ),
];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
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
    conf::decode_all(s, bytes, now()).continued().results
}

/// Traccar's `result` for pass-through data: the text, trimmed, when printable, otherwise
/// its hex.
fn passthrough_result(data: &[u8]) -> String {
    let printable = data
        .iter()
        .all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
    if printable {
        String::from_utf8_lossy(data).trim().to_string()
    } else {
        hex::encode(data)
    }
}

/// One Traccar assert against our event. `None`: the key is not mapped (a failure unless
/// it is in [`EXCLUDED_KEYS`]).
fn check(e: &TelemetryEvent, key: &str, want: &Value) -> Option<Result<(), String>> {
    let t = e.telemetry();
    let num = want.as_f64();
    let close_to =
        |got: Option<f64>, eps: f64| got.zip(num).is_some_and(|(g, w)| conf::close(g, w, eps));
    let ok = match key {
        // Position keys (Traccar's speed in knots, ours km/h).
        _ if conf::position_assert(e, key, want).is_some() => {
            conf::position_assert(e, key, want) == Some(true)
        }
        // Traccar joins alarms with commas; ours are a list: the same set.
        "alarm" => conf::same_alarms(e, want),
        "ignition" => t.ignition == want.as_bool(),
        "door" => t.door_open == want.as_bool(),
        "iccid" => t.iccid.as_deref() == want.as_str(),
        // Traccar writes card ids in lower-case hex, the schema in upper case.
        "driverUniqueId" => t
            .driver_id
            .as_deref()
            .zip(want.as_str())
            .is_some_and(|(g, w)| g.eq_ignore_ascii_case(w)),
        // Traccar's power = external supply voltage; null = must be absent.
        "power" => match num {
            Some(_) => close_to(t.external_power_volts, 1e-6),
            None => t.external_power_volts.is_none(),
        },
        "battery" => close_to(t.battery_volts, 1e-6),
        // Traccar's percentage of the 0–6 level is an integer division.
        "batteryLevel" => t.battery_percent.map(|v| (v + 1e-9).floor()) == num,
        // Traccar's `result`: a command answer (our `text`) or pass-through data.
        "result" => match e.raw_named(name::PASSTHROUGH_DATA) {
            Some(RawV::BytesValue(d)) => want.as_str() == Some(passthrough_result(d).as_str()),
            _ => e.text.as_deref() == want.as_str(),
        },
        // Traccar's `serial` here is the RFID reader's text.
        "serial" => raw_str(e, name::RFID_TEXT) == want.as_str(),
        "eventFiles" => raw_str(e, name::EVENT_FILES) == want.as_str(),
        // Traccar's `event` is the device's own event / alarm code, passed through: ours is
        // in `raw` under the packet's name for it.
        "event" => [
            name::EVENT,
            name::ALARM_TYPE,
            name::SHORT_ALARM_TYPE,
            name::ALARM,
        ]
        .iter()
        .filter_map(|n| raw_uint(e, n))
        .any(|g| Some(g as f64) == num),
        _ => return None,
    };
    Some(if ok {
        Ok(())
    } else {
        // Canonical JSON: only what is set.
        let json = |v: &dyn erased::Json| v.json();
        Err(format!(
            "{key}: want {want}, ours: position {} alarms {:?} telemetry {} raw {:?}",
            e.position.as_ref().map_or("none".into(), |p| json(p)),
            conf::alarm_names(e),
            json(t),
            e.raw.iter().map(|r| r.name.as_str()).collect::<Vec<_>>()
        ))
    })
}

mod erased {
    /// Canonical JSON of a schema message, for failure messages.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw survival: the frame's fields, re-read here, are in `raw` under their names.

fn be(b: &[u8], at: usize, n: usize) -> Option<u64> {
    Some(
        b.get(at..at + n)?
            .iter()
            .fold(0u64, |a, &x| a << 8 | u64::from(x)),
    )
}

/// The GT06 layouts of raw values.
trait Layouts {
    fn status(&mut self, c: &[u8], at: usize, wide: bool);
    fn modules(&mut self, c: &[u8], len_bytes: usize);
}

impl Layouts for RawCheck<'_> {
    /// Terminal info, then the level (u8) or battery (u16), GSM, alarm, language, from `at`.
    fn status(&mut self, c: &[u8], at: usize, wide: bool) {
        self.uint(name::TERMINAL_INFO, be(c, at, 1));
        let (level, n) = if wide {
            (name::BATTERY_LEVEL, 2)
        } else {
            (name::VOLTAGE_LEVEL, 1)
        };
        self.uint(level, be(c, at + 1, n));
        self.uint(name::GSM_SIGNAL, be(c, at + 1 + n, 1));
        self.uint(name::ALARM, be(c, at + 2 + n, 1));
        if c.len() > at + 3 + n {
            self.uint(name::LANGUAGE, be(c, at + 3 + n, 1));
        }
    }

    /// The modules of `0x70` (`len_bytes` 2) and `0x36` (1): unknown ones are
    /// `module_<type>` bytes, known ones are under their names.
    fn modules(&mut self, mut c: &[u8], len_bytes: usize) {
        while let (Some(kind), Some(len)) = (be(c, 0, 2), be(c, 2, len_bytes)) {
            let at = 2 + len_bytes;
            let Some(v) = c.get(at..at + len as usize) else {
                return;
            };
            let kind = kind as u16;
            match (kind, len_bytes) {
                (0x0003, 2) => self.bytes(name::ICCID, Some(v)),
                (0x0009, 2) => self.uint(name::SATELLITES, be(v, 0, 1)),
                (0x000A, 2) => self.uint(name::SATELLITES_VISIBLE, be(v, 0, 1)),
                (0x0018, _) => self.uint(name::BATTERY_CENTIVOLTS, be(v, 0, 2)),
                (0x0028, 2) => self.uint(name::HDOP_TENTHS, be(v, 0, 1)),
                (0x0029, 2) => self.uint(name::INDEX, be(v, 0, 4)),
                (0x002A, 2) => self.uint(name::DOOR_TAMPER, be(v, 0, 1)),
                (0x002B, 2) => self.uint(name::EVENT, be(v, 0, 1)),
                // Two little-endian words, low first.
                (0x002E, 2) => self.uint(
                    name::ODOMETER_METERS,
                    v.get(..4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]).into()),
                ),
                // GPS module: the course word after time 4, sats 1, alt 2, lat 4, lon 4, speed 1.
                (0x0033, 2) => self.uint(name::COURSE_STATUS, be(v, 16, 2)),
                (0x0032, 1) => self.uint(name::STARTUP_STATUS, be(v, 0, 1)),
                (0x006A, 1) => self.uint(name::BATTERY_PERCENT, be(v, 0, 1)),
                // A serving-cell module with a cell id is a cell tower.
                (0x0011, 2) if be(v, 6, 3).is_some_and(|cid| cid > 0) => {
                    self.checked += 1;
                    let cid = be(v, 6, 3);
                    if !self.e.cell_towers.iter().any(|t| Some(t.cell_id) == cid) {
                        self.problems
                            .push(format!("cell {cid:?} not in cell_towers"));
                    }
                }
                _ => self.bytes(&format!("module_{kind:04x}"), Some(v)),
            }
            c = c.get(at + len as usize..).unwrap_or_default();
        }
    }
}

/// The fields this test knows how to find in a frame, checked against `raw`.
fn raw_survives<'e>(w: &Wire, c: &[u8], e: &'e TelemetryEvent) -> RawCheck<'e> {
    let mut rc = RawCheck::new(e);
    // Every event: the protocol number first, the serial last.
    rc.framed(
        (name::PROTOCOL_NUMBER, w.protocol.into()),
        (name::SERIAL, w.serial.into()),
    );
    if e.kind == EventKind::Unknown as i32 {
        rc.bytes(name::CONTENT, Some(c));
        return rc;
    }
    let p = w.protocol;
    let gps_at = match (p, c.len()) {
        (0x34, _) => Some(4),
        (0x12, 34) => Some(8),
        (0x10 | 0x11 | 0x12 | 0x16 | 0x1E | 0x22 | 0x26 | 0x27 | 0x2D | 0x31 | 0x37, _) => Some(0),
        (0xA0 | 0xA4 | 0x1A | 0x2A | 0x38, n) | (0xA3, n) if n >= 18 => Some(0),
        // The GPS forms of numbers other models use for LBS or status, told by length.
        (0x17, 35) | (0x36, 48) | (0xA2, 59) | (0x24, 41) => Some(0),
        _ => None,
    };
    if let Some(at) = gps_at.filter(|_| !w.extended || p == 0x38) {
        // Time 6, satellites 1, latitude 4, longitude 4, speed 1, then the course word.
        rc.uint(name::COURSE_STATUS, be(c, at + 16, 2));
    }
    let vxt01 = !w.extended && matches!(p, 0x12 | 0x16) && c.len() == 31;
    match p {
        _ if vxt01 => {
            // GPS 18, a bare cell block 8, terminal info, voltage / level, GSM, extension.
            rc.uint(name::TERMINAL_INFO, be(c, 26, 1));
            if p == 0x12 {
                rc.uint(name::POWER_CENTIVOLTS, be(c, 27, 2));
            } else {
                rc.uint(name::VOLTAGE_LEVEL, be(c, 27, 1));
                rc.uint(name::GSM_SIGNAL, be(c, 28, 1));
                rc.uint(name::ALARM_EXTENSION, be(c, 29, 1));
            }
        }
        0x13 if c.len() >= 4 => rc.status(c, 0, false),
        0x23 => {
            rc.uint(name::TERMINAL_INFO, be(c, 0, 1));
            rc.uint(name::BATTERY_CENTIVOLTS, be(c, 1, 2));
            rc.uint(name::GSM_SIGNAL, be(c, 3, 1));
            rc.uint(name::LANGUAGE, be(c, 4, 2));
        }
        // GPS, a cell block led by its length (which counts itself), then the status block.
        0x16 | 0x26 | 0x27 | 0x19 if !w.extended => {
            let cell_at = if p == 0x19 { 0 } else { 18 };
            let len = usize::from(c.get(cell_at).copied().unwrap_or_default());
            if len >= 9 {
                let at = cell_at + len;
                let wide = matches!(p, 0x16 | 0x26) && c.len() == at + 6;
                rc.status(c, at, wide);
            }
        }
        0x22 | 0x37 | 0x2D if !w.extended => {
            // GPS 18, MCC (bit 15: MNC is u16), MNC, LAC u16, cell id u24, then ACC,
            // upload mode, re-upload.
            let mnc = if be(c, 18, 2).is_some_and(|m| m & 0x8000 != 0) {
                2
            } else {
                1
            };
            let at = 18 + 2 + mnc + 5;
            if c.len() >= at + 3 {
                rc.uint(name::ACC, be(c, at, 1));
                rc.uint(name::UPLOAD_MODE, be(c, at + 1, 1));
                rc.uint(name::GPS_REUPLOAD, be(c, at + 2, 1));
            }
        }
        0x70 => rc.modules(c, 2),
        // The Jimi 4G status form: the status block, language, modules of u8 length.
        0x36 if c.len() != 48 => {
            rc.status(c, 0, false);
            rc.modules(c.get(5..).unwrap_or_default(), 1);
        }
        0x94 => {
            rc.uint(name::INFO_TYPE, be(c, 0, 1));
            match c.first() {
                Some(0x00) => rc.uint(name::POWER_CENTIVOLTS, be(c, 1, 2)),
                Some(0x04 | 0x05 | 0x0A | 0x1B) => {}
                _ => rc.bytes(name::INFO_CONTENT, c.get(1..)),
            }
        }
        0x15 => rc.uint(name::SERVER_FLAG, be(c, 1, 4)),
        0x21 => {
            rc.uint(name::SERVER_FLAG, be(c, 0, 4));
            rc.uint(name::ENCODING, be(c, 4, 1));
        }
        0x9B => {
            rc.uint(name::EXTERNAL_DEVICE_TYPE, be(c, 0, 1));
            rc.bytes(name::PASSTHROUGH_DATA, c.get(1..));
        }
        0x95 => {
            if c.get(..2) == Some(&[0xFF, 0xFF][..]) {
                // Marker 2, version 1, time 6, sats 1, lat 4, lon 4, speed u16, course word.
                rc.uint(name::COURSE_STATUS, be(c, 20, 2));
                rc.uint(name::POWER_DECIVOLTS, be(c, 22, 2));
                rc.uint(name::ALARM_TYPE, be(c, 24, 1));
            } else if c.len() > 7 {
                // Time 6, lat 4, lon 4, course word.
                rc.uint(name::COURSE_STATUS, be(c, 14, 2));
                rc.uint(name::ALARM_TYPE, be(c, 16, 1));
            } else {
                rc.uint(name::SHORT_ALARM_TYPE, be(c, 6, 1));
            }
        }
        0x34 => {
            rc.uint(name::X1_DATA_ALARM, be(c, 0, 4));
            rc.uint(name::X1_TERMINAL_INFO, be(c, 22, 2));
            rc.uint(name::ODOMETER_METERS, be(c, 24, 4));
            rc.uint(name::X1_DRIVER_ID, be(c, 37, 4));
            rc.uint(name::BATTERY_CENTIVOLTS, be(c, 41, 2));
            rc.uint(name::POWER_CENTIVOLTS, be(c, 43, 2));
        }
        _ => {}
    }
    rc
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
    /// Frames Traccar checks as positions, against their asserts.
    score: Score,
    /// Position frames replayed under a model's built-in profile.
    with_model_profile: usize,
    raw_frames: usize,
    raw_values: usize,
    /// Valid frames that publish nothing (logins, time requests).
    no_event: usize,
}

/// A login frame for `imei`, built here (BCD with a leading pad digit).
fn login(imei: &str, serial: u16) -> Vec<u8> {
    let digits = format!("0{imei}");
    let bcd: Vec<u8> = digits
        .as_bytes()
        .chunks(2)
        .map(|p| (p[0] - b'0') << 4 | (p[1] - b'0'))
        .collect();
    reply(false, 0x01, &bcd, serial)
}

/// The limits of the replay: the built-in profiles, plus a profile file that assigns each
/// [`MODEL_PROFILES`] IMEI to its profile.
fn limits() -> ProtocolConfig {
    let dir = std::env::temp_dir().join(format!("avlgate-conformance-gt06-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("profiles.toml");
    let mut text = String::new();
    for (_, imei, profile) in MODEL_PROFILES {
        text.push_str(&format!(
            "[[devices]]\nprofile = \"{profile}\"\nimeis = [\"{imei}\"]\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let profiles = Profiles::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    ProtocolConfig::default().with_profiles(profiles)
}

/// The IMEI to replay a frame under: the model's profile IMEI, or the default login's.
fn imei_for(entry: &Value) -> &'static str {
    let model = entry["decoder_config"]["model"]
        .as_str()
        .unwrap_or_default();
    MODEL_PROFILES
        .iter()
        .find(|(prefix, _, _)| !model.is_empty() && model.starts_with(prefix))
        .map_or(LOGIN_IMEI, |(_, imei, _)| imei)
}

#[test]
fn traccar_gt06_frames() {
    let all = conf::entries(conf::FRAMES, "gt06");
    let by_test = conf::groups(
        all.iter().filter(|e| e["direction"] == "device_to_server"),
        conf::test_of,
    );
    let limits = limits();
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps = Ledger::new(
        KNOWN_GAPS
            .iter()
            .map(|(seq, why)| (format!("Gt06ProtocolDecoderTest.testDecode#{seq}"), *why)),
    );
    for (test, entries) in by_test {
        let mut s = MODULE.new_session(Transport::Tcp, &limits);
        if entries.first().map(|e| &e["wire"]["protocol_number"]) != Some(&Value::from("0x01")) {
            let out = decode_all(s.as_mut(), &h(LOGIN_HEX));
            assert!(matches!(&out[..], [Ok(f)] if f.login.is_some()));
        }
        for e in entries {
            let seq = conf::seq_of(e);
            let name = format!("{test}#{seq}");
            let bytes = conf::bytes_of(e);
            // Traccar's per-device model setting: the device of that model logs in.
            let imei = imei_for(e);
            if s.imei().is_some_and(|current| current != imei) {
                let out = decode_all(s.as_mut(), &login(imei, 1));
                assert!(matches!(&out[..], [Ok(f)] if f.login.as_deref() == Some(imei)));
            }
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
                    let mut u = MODULE.new_session(Transport::Udp, &ProtocolConfig::default());
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
                } else if conf::refused_silently(&frames, &errors) {
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
            let Some(f) = conf::only_frame(&name, &frames, &errors, &mut failures) else {
                continue;
            };
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
            match f.events.first() {
                Some(ev) => {
                    let rc = raw_survives(wire, &bytes[header..bytes.len() - 6], ev);
                    fig.raw_frames += 1;
                    fig.raw_values += rc.checked;
                    for p in rc.problems {
                        failures.push(format!("{name}: raw: {p}"));
                    }
                }
                None => fig.no_event += 1,
            }
            if e["expect"] != "position" {
                continue;
            }
            if imei != LOGIN_IMEI {
                fig.with_model_profile += 1;
            }
            let ev = match f.events.first() {
                None => Err("no event".to_string()),
                Some(ev) if ev.kind == EventKind::Unknown as i32 => {
                    Err(format!("published as UNKNOWN ({})", w["protocol_number"]))
                }
                Some(ev) => Ok(ev),
            };
            // What Traccar's verifyPosition checks: a fix in range with a time.
            let problems = match ev {
                Ok(ev) if e["check"] == "verifyPosition" => {
                    conf::verify_position(ev).err().into_iter().collect()
                }
                _ => Vec::new(),
            };
            fig.score.frame(
                &name,
                &name,
                e,
                ev,
                problems,
                check,
                EXCLUDED_KEYS,
                &mut gaps,
                &mut failures,
            );
        }
    }
    gaps.finish(&mut failures);
    let score = &fig.score;
    eprintln!("GT06 conformance (Traccar frames):");
    eprintln!(
        "  valid frames decoded without error: {}/{} (replies checked: {})",
        fig.valid_ok, fig.valid, fig.replies_checked
    );
    eprintln!(
        "  position frames matching every mapped assert: {}/{} ({} known gaps, {} asserts on excluded keys, {} frames under a model's built-in profile)",
        score.matched, score.positions, score.known_gaps, score.excluded_asserts, fig.with_model_profile
    );
    score.print_asserts("our vocabulary");
    eprintln!(
        "  raw survival: {} values re-read from {} frames, each found in `raw`",
        fig.raw_values, fig.raw_frames
    );
    eprintln!(
        "  invalid entries: {} = {} refused without reply + {} truncated (held, nothing published) + {} CRC-less Wi-Fi form + {} entries of several good frames",
        fig.invalid, fig.rejected, fig.truncated, fig.crc_less_wifi, fig.concatenated
    );
    conf::fail_on(&failures);
    // The figures themselves, so a regression that slips past the per-frame checks fails.
    assert_eq!(fig.valid_ok, fig.valid);
    assert_eq!(fig.valid, 161);
    assert_eq!(
        fig.invalid,
        fig.rejected + fig.truncated + fig.crc_less_wifi + fig.concatenated
    );
    score.assert_consistent(&gaps);
    // Every valid frame published an event whose raw values were checked.
    assert_eq!(fig.raw_frames, fig.valid - fig.no_event);
    // The values the raw check re-reads (printed above): a change in what it covers must
    // update this knowingly.
    assert_eq!(fig.raw_values, 687);
}
