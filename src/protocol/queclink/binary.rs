//! The two binary forms, from checked frames (`frame` verified length and CRC).
//!
//! # Classic binary (`+RSP`, `+EVT`, `+HBD`, `+ACK`, `+INF`, …)
//!
//! The layout of `+RSP`/`+EVT` is driven by the 4-byte report mask (`AT+GTHRM`): each optional
//! field is present only when its bit is set. Between the header fields and the positions,
//! `+EVT` messages carry a type-specific insert whose size is taken from the frame's own
//! length (the published type tables disagree between models; the length does not), and
//! `+RSP` carries the report id/type. Identity: 8 bytes that are either the IMEI as seven
//! two-digit integers and a last digit, or the device name in ASCII (mask bit 6).
//! Coordinates are i32 in 10⁻⁶ degrees, longitude first; MCC/MNC are BCD.
//!
//! The protocol defines no server acknowledgement for this form: nothing is answered.
//!
//! # Compact binary (Protocol Pro)
//!
//! `2B`/`2D` (buffered) `00`, length, flags, IMEI (BCD, leading nibble dropped), device type,
//! protocol and custom versions, a reserved block, then records: length (1 or 2 bytes),
//! generated time (u32 Unix seconds), count, record id, event code, and data items (id,
//! length, content; ids and lengths are 1 or 2 bytes, high bit set = 2). Item `0x52` is the
//! full location, `0x51` the short one; every other item is kept in `raw` by its numeric id.
//! Answered `+SACK:<count>$` like the text form.

use crate::event::raw;
use crate::proto::{CellTower, Position, RawValue};
use crate::protocol::cursor::Cursor;

use super::mapping::name;
use super::models;
use super::report::{Ack, Class, Record, Report};

/// Why a binary message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    #[error("truncated {0}")]
    Truncated(&'static str),
}

fn bcd(b: u8) -> Option<u32> {
    let (h, l) = (b >> 4, b & 0x0F);
    (h <= 9 && l <= 9).then(|| u32::from(h) * 10 + u32::from(l))
}

fn bcd16(v: u16) -> Option<u32> {
    let [a, b] = v.to_be_bytes();
    Some(bcd(a)? * 100 + bcd(b)?)
}

/// The classic identity: the IMEI as seven two-digit integers and one digit, else `None`.
fn classic_imei(b: &[u8]) -> Option<String> {
    let (last, pairs) = b.split_last()?;
    if pairs.len() != 7 || *last > 9 || pairs.iter().any(|&x| x > 99) {
        return None;
    }
    let mut s = String::with_capacity(15);
    for p in pairs {
        s.push_str(&format!("{p:02}"));
    }
    s.push(char::from(b'0' + last));
    Some(s)
}

/// A device name sent in the identity's place: ASCII, NUL padded.
fn ascii_name(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    let (name, pad) = b.split_at(end);
    (!name.is_empty()
        && name.iter().all(|c| c.is_ascii_graphic() || *c == b' ')
        && pad.iter().all(|&x| x == 0))
    .then(|| String::from_utf8_lossy(name).into_owned())
}

/// `YYYY MM DD hh mm ss` (u16 year) → the text form's `YYYYMMDDHHMMSS` and seconds.
fn time7(c: &mut Cursor<'_>) -> Option<(String, Option<i64>)> {
    let y = c.u16()?;
    let [mo, d, h, mi, s] = c.array::<5>()?;
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}");
    let secs = super::text::parse_time(&text);
    Some((text, secs))
}

fn signed24(v: u32) -> i32 {
    ((v << 8) as i32) >> 8
}

/// The message type names of `+RSP`.
fn rsp_type(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "TOW",
        3 => "LBC",
        4 => "EPS",
        5 => "DIS",
        6 => "IOB",
        7 => "FRI",
        8 => "GEO",
        9 => "SPD",
        10 => "SOS",
        11 => "RTL",
        12 => "DOG",
        15 => "HBM",
        16 => "IGL",
        17 => "IDA",
        18 => "ERI",
        _ => return None,
    })
}

/// The message type names of `+EVT` whose meaning the published tables agree on.
fn evt_type(t: u8) -> Option<&'static str> {
    Some(match t {
        6 => "BPL",
        9 => "STT",
        13 => "IGN",
        14 => "IGF",
        15 => "UPD",
        17 => "IDF",
        21 => "GSS",
        23 => "CRA",
        25 => "DOS",
        26 => "GES",
        31 => "GPJ",
        45 | 50 => "VGN",
        46 | 51 => "VGF",
        _ => return None,
    })
}

/// Command ids of the binary `+ACK`.
fn ack_command(t: u8) -> Option<&'static str> {
    Some(match t {
        0 => "BSI",
        1 => "SRI",
        2 => "QSS",
        4 => "CFG",
        5 => "TOW",
        6 => "EPS",
        7 => "DIS",
        8 => "OUT",
        9 => "IOB",
        10 => "TMA",
        11 => "FRI",
        12 => "GEO",
        13 => "SPD",
        14 => "SOS",
        15 => "CAN",
        16 => "RTO",
        _ => return None,
    })
}

fn bit(mask: u32, b: u32) -> bool {
    mask & (1 << b) != 0
}

/// Decodes a checked classic frame.
pub fn decode_classic(frame: &[u8]) -> Result<Report, BinaryError> {
    match frame.get(..4).unwrap_or_default() {
        b"+RSP" | b"+BSP" | b"+EVT" | b"+BVT" => location(frame),
        b"+HBD" => heartbeat(frame),
        b"+ACK" => command_ack(frame),
        _ => other(frame),
    }
}

/// The fields before the positions of `+RSP`/`+EVT` (see the module doc).
struct Front {
    mask: u32,
    ty: u8,
    device_type: Option<u8>,
    shared: Vec<RawValue>,
    device_id: Option<String>,
    satellites: Option<u32>,
}

fn front(c: &mut Cursor<'_>, header: &[u8]) -> Option<Front> {
    let ty = c.u8()?;
    let mask = c.u32()?;
    let mut shared = vec![
        raw::string(name::HEADER, String::from_utf8_lossy(header)),
        raw::uint(name::MESSAGE_TYPE, ty.into()),
        raw::uint(name::REPORT_MASK, mask.into()),
    ];
    if bit(mask, 7) {
        c.u16()?;
    }
    let device_type = if bit(mask, 8) { Some(c.u8()?) } else { None };
    if let Some(d) = device_type {
        shared.push(raw::uint(name::DEVICE_TYPE_CODE, d.into()));
    }
    if bit(mask, 9) {
        let p = c.u16()?;
        let v = match device_type {
            Some(d) => format!("{d:02X}{p:04X}"),
            None => format!("{p:04X}"),
        };
        shared.push(raw::string(name::PROTOCOL_VERSION, v));
    }
    if bit(mask, 10) {
        let f = c.u16()?;
        shared.push(raw::string(name::FIRMWARE_VERSION, format!("{f:04X}")));
    }
    let id = c.take(8)?;
    let device_id = if bit(mask, 6) {
        if let Some(n) = ascii_name(id) {
            shared.push(raw::string(name::DEVICE_NAME, n));
        } else {
            shared.push(raw::bytes(name::DEVICE_NAME, id.to_vec()));
        }
        None
    } else {
        classic_imei(id)
    };
    if bit(mask, 11) {
        shared.push(raw::uint(name::BATTERY_PERCENT, c.u8()?.into()));
    }
    if bit(mask, 12) {
        shared.push(raw::uint(name::EXTERNAL_POWER_MV, c.u16()?.into()));
    }
    if bit(mask, 14) {
        shared.push(raw::uint(name::analog_input(1), c.u16()?.into()));
    }
    if bit(mask, 26) {
        shared.push(raw::uint(name::EIO_INPUTS, c.u8()?.into()));
    }
    if bit(mask, 17) {
        shared.push(raw::uint(name::DIGITAL_INPUTS, c.u8()?.into()));
    }
    if bit(mask, 26) {
        shared.push(raw::uint(name::EIO_OUTPUTS, c.u8()?.into()));
    }
    if bit(mask, 17) {
        shared.push(raw::uint(name::DIGITAL_OUTPUTS, c.u8()?.into()));
    }
    if bit(mask, 18) {
        shared.push(raw::uint(name::MOTION_STATUS, c.u8()?.into()));
    }
    let mut satellites = None;
    if bit(mask, 19) {
        let a = c.u8()?;
        shared.push(raw::uint(name::ANTENNA_SATELLITES, a.into()));
        satellites = Some(u32::from(a & 0x0F));
    }
    Some(Front {
        mask,
        ty,
        device_type,
        shared,
        device_id,
        satellites,
    })
}

/// Bytes of the tail fields after the positions (bits 20–23 fixed, 24 RFID) and the send
/// time and count: what the end of the frame holds after the last position.
fn tail_size(mask: u32) -> usize {
    [(20, 3), (21, 5), (22, 3), (23, 6), (24, 4), (4, 7), (5, 2)]
        .iter()
        .filter(|(b, _)| bit(mask, *b))
        .map(|(_, n)| n)
        .sum()
}

fn position_size(mask: u32) -> usize {
    1 + [(0, 3), (1, 2), (2, 2), (3, 9)]
        .iter()
        .filter(|(b, _)| bit(mask, *b))
        .map(|(_, n)| n)
        .sum::<usize>()
        + 4
        + 4
        + 7
}

/// One position of `+RSP`/`+EVT`.
fn position(c: &mut Cursor<'_>, mask: u32, satellites: Option<u32>) -> Option<Record> {
    let mut rec = Record::default();
    let acc = c.u8()?;
    rec.raw.push(raw::double(name::GPS_ACCURACY, acc.into()));
    let speed = if bit(mask, 0) {
        let int = c.u16()?;
        let frac = c.u8()?;
        rec.raw.push(raw::uint(
            name::SPEED_RAW,
            u64::from(int) << 8 | u64::from(frac),
        ));
        // Integer km/h and a fraction byte whose scale no document states: tenths when it
        // can be, hundredths otherwise.
        let f = if frac < 10 {
            f64::from(frac) / 10.0
        } else {
            f64::from(frac) / 100.0
        };
        Some(f64::from(int) + f)
    } else {
        None
    };
    let course = if bit(mask, 1) {
        Some(f64::from(c.u16()?))
    } else {
        None
    };
    let altitude = if bit(mask, 2) {
        Some(f64::from(c.i16()?))
    } else {
        None
    };
    let lon = f64::from(c.i32()?) / 1e6;
    let lat = f64::from(c.i32()?) / 1e6;
    let (_, fix_time) = time7(c)?;
    if bit(mask, 3) {
        let mcc = c.u16()?;
        let mnc = c.u16()?;
        let lac = c.u16()?;
        let cid = c.u16()?;
        let trigger = c.u8()?;
        match (bcd16(mcc), bcd16(mnc)) {
            (Some(mcc), Some(mnc)) => rec.cells.push(CellTower {
                mcc,
                mnc,
                lac: lac.into(),
                cell_id: cid.into(),
                signal: None,
            }),
            _ => {
                rec.raw.push(raw::uint(name::MCC_RAW, mcc.into()));
                rec.raw.push(raw::uint(name::MNC_RAW, mnc.into()));
                rec.raw.push(raw::uint(name::LAC_RAW, lac.into()));
                rec.raw.push(raw::uint(name::CELL_ID_RAW, cid.into()));
            }
        }
        rec.raw
            .push(raw::uint(name::POSITION_APPEND_MASK, trigger.into()));
    }
    if lat.abs() <= 90.0 && lon.abs() <= 180.0 {
        rec.position = Some(Position {
            latitude: lat,
            longitude: lon,
            altitude,
            speed,
            course,
            satellites,
            valid: acc > 0,
            ..Default::default()
        });
        rec.fix_time = fix_time;
    }
    Some(rec)
}

/// The insert between the front and the positions of a `+EVT`, named where the type and
/// size say what it is.
fn insert(ty: Option<&str>, data: &[u8], shared: &mut Vec<RawValue>) {
    let mut c = Cursor::new(data);
    match (ty, data.len()) {
        (_, 0) => {}
        (Some("IGN" | "IGF"), 4) => {
            let n = if ty == Some("IGN") {
                name::IGNITION_OFF_SECONDS
            } else {
                name::IGNITION_ON_SECONDS
            };
            shared.push(raw::uint(n, c.u32().unwrap_or(0).into()));
        }
        (Some("VGN" | "VGF"), 7) => {
            shared.push(raw::uint(name::EVENT_RESERVED, c.u16().unwrap_or(0).into()));
            shared.push(raw::uint(name::VGN_REPORT_TYPE, c.u8().unwrap_or(0).into()));
            let n = if ty == Some("VGN") {
                name::IGNITION_OFF_SECONDS
            } else {
                name::IGNITION_ON_SECONDS
            };
            shared.push(raw::uint(n, c.u32().unwrap_or(0).into()));
        }
        (Some("BPL"), 2) => {
            shared.push(raw::uint(
                name::BACKUP_BATTERY_MV,
                c.u16().unwrap_or(0).into(),
            ));
        }
        (Some("GPJ"), 2) => {
            shared.push(raw::uint(name::GPS_JAMMING_CW, c.u8().unwrap_or(0).into()));
            shared.push(raw::uint(
                name::GPS_JAMMING_STATE,
                c.u8().unwrap_or(0).into(),
            ));
        }
        _ => shared.push(raw::bytes(name::EVENT_DATA, data.to_vec())),
    }
}

/// `+RSP`/`+BSP`/`+EVT`/`+BVT`.
fn location(frame: &[u8]) -> Result<Report, BinaryError> {
    let header = frame.get(..4).unwrap_or_default();
    let event = matches!(header, b"+EVT" | b"+BVT");
    let body = frame
        .get(4..frame.len().saturating_sub(4))
        .ok_or(BinaryError::Truncated("frame"))?;
    let mut c = Cursor::new(body);
    let f = front(&mut c, header).ok_or(BinaryError::Truncated("header"))?;
    let mut mask = f.mask;
    let ty_name = if event {
        evt_type(f.ty)
    } else {
        rsp_type(f.ty)
    };
    if matches!(ty_name, Some("IGN" | "IGF")) {
        // Documented: ignition events always carry both mileages.
        mask |= (1 << 20) | (1 << 21);
    }
    let ty = ty_name.map_or_else(
        || format!("{}{}", if event { "E" } else { "R" }, f.ty),
        str::to_string,
    );
    let mut rep = Report::new(Class::Report, ty.clone());
    rep.device_id = f.device_id.clone();
    rep.model = f
        .device_type
        .and_then(|d| models::by_code(&format!("{d:02X}")));
    let mut shared = f.shared;
    let tail = tail_size(mask);
    let body_end = body.len().saturating_sub(tail);
    if !event && f.ty == 100 {
        // The compressed batch: a u16 point count and a bit-packed delta stream.
        rep.records = compressed(&mut c, body_end, &mut shared);
    } else {
        if event {
            // The insert is what the length leaves between the front and one position.
            let size =
                (body_end.saturating_sub(c.position())).saturating_sub(1 + position_size(mask));
            let data = c.take(size).ok_or(BinaryError::Truncated("insert"))?;
            insert(ty_name, data, &mut shared);
        } else if f.ty == 3 {
            // LBC: the phone number, BCD, until an `F` nibble.
            let len = c.u8().ok_or(BinaryError::Truncated("phone"))?;
            shared.push(raw::uint(name::PHONE_LENGTH, len.into()));
            let start = c.position();
            loop {
                let b = c.u8().ok_or(BinaryError::Truncated("phone"))?;
                if b & 0x0F == 0x0F || b & 0xF0 == 0xF0 {
                    break;
                }
            }
            let phone = body.get(start..c.position()).unwrap_or_default();
            shared.push(raw::bytes(name::CALL_NUMBER, phone.to_vec()));
        }
        if !event {
            let id_type = c.u8().ok_or(BinaryError::Truncated("report type"))?;
            shared.push(raw::uint(
                format!("{}_{}", ty.to_ascii_lowercase(), name::REPORT_ID_TYPE),
                id_type.into(),
            ));
        }
        let n = c.u8().ok_or(BinaryError::Truncated("number"))?;
        shared.push(raw::uint(name::NUMBER, n.into()));
        for _ in 0..n {
            if c.position() + position_size(mask) > body_end {
                break;
            }
            match position(&mut c, mask, f.satellites) {
                Some(r) => rep.records.push(r),
                None => break,
            }
        }
    }
    // What the length leaves before the fixed tail (CAN data, an unread position): kept.
    if let Some(rest) = body.get(c.position()..body_end).filter(|r| !r.is_empty()) {
        shared.push(raw::bytes(name::UNDECODED, rest.to_vec()));
    }
    let mut t = Cursor::new(body.get(body_end..).unwrap_or_default());
    for (b, n, size) in [
        (20, name::CURRENT_MILEAGE, 3usize),
        (21, name::TOTAL_MILEAGE, 5),
    ] {
        if bit(mask, b) {
            if let Some(v) = t.take(size) {
                let (int, frac) = v.split_at(size - 1);
                let km = int.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
                shared.push(raw::uint(n, km));
                shared.push(raw::uint(
                    format!("{n}_fraction"),
                    frac.first().copied().unwrap_or(0).into(),
                ));
            }
        }
    }
    if bit(mask, 22) {
        if let Some([h, mi, s]) = t.array::<3>() {
            shared.push(raw::string(
                name::CURRENT_HOUR_METER,
                format!("{h:02}:{mi:02}:{s:02}"),
            ));
        }
    }
    if bit(mask, 23) {
        if let (Some(h), Some([mi, s])) = (t.u32(), t.array::<2>()) {
            shared.push(raw::string(
                name::HOUR_METER_COUNT,
                format!("{h:05}:{mi:02}:{s:02}"),
            ));
        }
    }
    if bit(mask, 24) {
        if let Some(r) = t.take(4) {
            shared.push(raw::bytes(name::RFID, r.to_vec()));
        }
    }
    if bit(mask, 4) {
        if let Some((text, secs)) = time7(&mut t) {
            shared.push(raw::string(name::SEND_TIME, text));
            rep.send_time = secs;
        }
    }
    if bit(mask, 5) {
        if let Some(n) = t.u16() {
            shared.push(raw::string(name::COUNT_NUMBER, format!("{n:04X}")));
        }
    }
    if rep.records.is_empty() {
        rep.records.push(Record::default());
    }
    rep.shared = shared;
    Ok(rep)
}

/// `+RSP` type 100: a u16 count, then per point a 2-bit tag: 1 = absolute (3 bytes of
/// attribute, fix type, 12-bit speed in 0.1 km/h, 9-bit heading, then i32 longitude and
/// latitude, and a u32 time on the first point), 2 = delta (5 bytes of signed deltas), other =
/// one byte, no point. Points are one second apart.
fn compressed(c: &mut Cursor<'_>, end: usize, shared: &mut Vec<RawValue>) -> Vec<Record> {
    let Some(count) = c.u16() else {
        return Vec::new();
    };
    shared.push(raw::uint(name::NUMBER, count.into()));
    let (mut speed, mut heading, mut lat, mut lon) = (0i64, 0i64, 0i64, 0i64);
    let mut time: i64 = 0;
    let mut out = Vec::new();
    for _ in 0..count {
        if c.position() >= end {
            break;
        }
        if time > 0 {
            time += 1;
        }
        let Some(&first) = c.rest().first() else {
            break;
        };
        let (attr, fix) = match first >> 6 {
            1 => {
                let Some(b) = c.take(3) else { break };
                let bits = u32::from_be_bytes([0, b[0], b[1], b[2]]);
                speed = i64::from((bits >> 9) & 0x0FFF);
                heading = i64::from(bits & 0x01FF);
                let (Some(x), Some(y)) = (c.i32(), c.i32()) else {
                    break;
                };
                lon = x.into();
                lat = y.into();
                if time == 0 {
                    let Some(t) = c.u32() else { break };
                    time = t.into();
                }
                ((bits >> 22) & 0x3, (bits >> 21) & 1)
            }
            2 => {
                let Some(b) = c.take(5) else { break };
                let bits = b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x));
                let field = |shift: u32, width: u32| -> i64 {
                    let v = (bits >> shift) & ((1 << width) - 1);
                    let sign = 1u64 << (width - 1);
                    (v ^ sign) as i64 - sign as i64
                };
                speed += field(30, 7);
                heading += field(23, 7);
                lon += field(11, 12);
                lat += field(0, 11);
                ((bits >> 38) as u32 & 0x3, (bits >> 37) as u32 & 1)
            }
            _ => {
                c.skip(1);
                continue;
            }
        };
        let mut rec = Record::default();
        rec.raw.push(raw::uint(name::POINT_ATTRIBUTE, attr.into()));
        rec.raw.push(raw::uint(name::FIX_TYPE_BIT, fix.into()));
        let (la, lo) = (lat as f64 / 1e6, lon as f64 / 1e6);
        if la.abs() <= 90.0 && lo.abs() <= 180.0 {
            rec.position = Some(Position {
                latitude: la,
                longitude: lo,
                speed: Some(speed as f64 / 10.0),
                course: Some(heading as f64),
                valid: true,
                ..Default::default()
            });
            rec.fix_time = Some(time);
        }
        out.push(rec);
    }
    out
}

/// `+HBD`: mask bits 0 length, 1 device type, 2 protocol version, 3 firmware, 7 the IMEI
/// (absent: the heartbeat is anonymous), 5 send time, 6 count.
fn heartbeat(frame: &[u8]) -> Result<Report, BinaryError> {
    let body = frame
        .get(4..frame.len().saturating_sub(4))
        .ok_or(BinaryError::Truncated("frame"))?;
    let mut c = Cursor::new(body);
    let mask = c.u8().ok_or(BinaryError::Truncated("mask"))?;
    let m = |b: u8| mask & (1 << b) != 0;
    let mut shared = vec![
        raw::string(name::HEADER, "+HBD"),
        raw::uint(name::REPORT_MASK, mask.into()),
    ];
    let mut rep = Report::new(Class::Heartbeat, "HBD");
    let err = BinaryError::Truncated("heartbeat");
    if m(0) {
        c.u8().ok_or(err.clone())?;
    }
    let dt = if m(1) {
        Some(c.u8().ok_or(err.clone())?)
    } else {
        None
    };
    if let Some(d) = dt {
        shared.push(raw::uint(name::DEVICE_TYPE_CODE, d.into()));
        rep.model = models::by_code(&format!("{d:02X}"));
    }
    if m(2) {
        let p = c.u16().ok_or(err.clone())?;
        shared.push(raw::string(
            name::PROTOCOL_VERSION,
            dt.map_or_else(|| format!("{p:04X}"), |d| format!("{d:02X}{p:04X}")),
        ));
    }
    if m(3) {
        let f = c.u16().ok_or(err.clone())?;
        shared.push(raw::string(name::FIRMWARE_VERSION, format!("{f:04X}")));
    }
    if m(7) {
        let id = c.take(8).ok_or(err.clone())?;
        match classic_imei(id) {
            Some(i) => rep.device_id = Some(i),
            None => shared.push(raw::bytes(name::DEVICE_NAME, id.to_vec())),
        }
    }
    if m(5) {
        let (text, secs) = time7(&mut c).ok_or(err.clone())?;
        shared.push(raw::string(name::SEND_TIME, text));
        rep.send_time = secs;
    }
    if m(6) {
        let n = c.u16().ok_or(err)?;
        shared.push(raw::string(name::COUNT_NUMBER, format!("{n:04X}")));
    }
    if !c.rest().is_empty() {
        shared.push(raw::bytes(name::UNDECODED, c.rest().to_vec()));
    }
    rep.shared = shared;
    rep.records.push(Record::default());
    Ok(rep)
}

/// Binary `+ACK`: command id, mask, length, device type, versions, identity, an id byte,
/// the serial, send time, count (read from the end: 36 bytes in every published sample).
fn command_ack(frame: &[u8]) -> Result<Report, BinaryError> {
    let n = frame.len();
    let err = BinaryError::Truncated("command acknowledgement");
    let body = frame.get(4..n.saturating_sub(4)).ok_or(err.clone())?;
    let mut c = Cursor::new(body);
    let cmd = c.u8().ok_or(err.clone())?;
    let mask = c.u8().ok_or(err.clone())?;
    // From the end: id(1) serial(2) time(7) count(2).
    let tail_at = body.len().checked_sub(12).ok_or(err.clone())?;
    let id_at = tail_at.checked_sub(8).ok_or(err.clone())?;
    let mut shared = vec![
        raw::string(name::HEADER, "+ACK"),
        raw::uint(name::MESSAGE_TYPE, cmd.into()),
        raw::uint(name::REPORT_MASK, mask.into()),
    ];
    // Length, device type, protocol and firmware versions when there is room for them.
    let front = body.get(2..id_at).unwrap_or_default();
    let mut model = None;
    if let [_len, dt, p0, p1, f0, f1] = front {
        shared.push(raw::uint(name::DEVICE_TYPE_CODE, (*dt).into()));
        shared.push(raw::string(
            name::PROTOCOL_VERSION,
            format!("{dt:02X}{p0:02X}{p1:02X}"),
        ));
        shared.push(raw::string(
            name::FIRMWARE_VERSION,
            format!("{f0:02X}{f1:02X}"),
        ));
        model = models::by_code(&format!("{dt:02X}"));
    } else if !front.is_empty() {
        shared.push(raw::bytes(name::UNDECODED, front.to_vec()));
    }
    let id = body.get(id_at..tail_at).unwrap_or_default();
    let device_id = classic_imei(id);
    if device_id.is_none() {
        match ascii_name(id) {
            Some(nm) => shared.push(raw::string(name::DEVICE_NAME, nm)),
            None => shared.push(raw::bytes(name::DEVICE_NAME, id.to_vec())),
        }
    }
    let mut t = Cursor::new(body.get(tail_at..).unwrap_or_default());
    let ack_id = t.u8().ok_or(err.clone())?;
    let serial = t.u16().ok_or(err.clone())?;
    let (time, secs) = time7(&mut t).ok_or(err.clone())?;
    let count = t.u16().ok_or(err)?;
    shared.push(raw::uint(name::ACK_ID, ack_id.into()));
    shared.push(raw::string(name::SERIAL_NUMBER, format!("{serial:04X}")));
    shared.push(raw::string(name::SEND_TIME, time));
    shared.push(raw::string(name::COUNT_NUMBER, format!("{count:04X}")));
    let word = ack_command(cmd).map_or_else(|| format!("#{cmd}"), |w| format!("GT{w}"));
    let mut rep = Report::new(
        Class::CommandAck {
            serial: Some(serial),
            refused: false,
        },
        word.trim_start_matches("GT").to_string(),
    );
    rep.device_id = device_id;
    rep.model = model;
    rep.send_time = secs;
    rep.text = Some(format!("+ACK:{word},{serial:04X}"));
    rep.shared = shared;
    rep.records.push(Record::default());
    Ok(rep)
}

/// `+INF`, `+CRD`, `+CAN`, `+DAT`, `+LGN`, `+ATI` and the buffered `+BNF`/`+BRD`: kept
/// whole (their published layouts disagree between models), with the identity, send time and
/// count where they are certain (`+LGN`: IMEI at 15, send time at 25, count at 32).
fn other(frame: &[u8]) -> Result<Report, BinaryError> {
    let header = frame.get(..4).unwrap_or_default();
    let tag = String::from_utf8_lossy(header).into_owned();
    let body = frame
        .get(4..frame.len().saturating_sub(4))
        .ok_or(BinaryError::Truncated("frame"))?;
    let mut rep = Report::new(Class::Report, tag.trim_start_matches('+').to_string());
    let mut shared = vec![raw::string(name::HEADER, tag.clone())];
    if let Some(&t) = body.first() {
        shared.push(raw::uint(name::MESSAGE_TYPE, t.into()));
    }
    if header == b"+LGN" && frame.len() >= 38 {
        let id = frame.get(15..23).unwrap_or_default();
        rep.device_id = classic_imei(id);
        let mut t = Cursor::new(frame.get(25..).unwrap_or_default());
        if let Some((text, secs)) = time7(&mut t) {
            shared.push(raw::string(name::SEND_TIME, text));
            rep.send_time = secs;
        }
        if let Some(n) = t.u16() {
            shared.push(raw::string(name::COUNT_NUMBER, format!("{n:04X}")));
        }
    }
    shared.push(raw::bytes(name::BODY, body.to_vec()));
    rep.shared = shared;
    rep.records.push(Record::default());
    Ok(rep)
}

/// The compact IMEI: 8 bytes of BCD, the leading nibble dropped.
fn compact_imei(b: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(16);
    for &x in b {
        for n in [x >> 4, x & 0x0F] {
            if n > 9 {
                return None;
            }
            s.push(char::from(b'0' + n));
        }
    }
    s.get(1..).map(str::to_string)
}

/// A 1- or 2-byte length/id: high bit set = two bytes, 15 bits of value.
fn varint(c: &mut Cursor<'_>) -> Option<usize> {
    let b = c.u8()?;
    if b & 0x80 == 0 {
        Some(usize::from(b))
    } else {
        Some(usize::from(b & 0x7F) << 8 | usize::from(c.u8()?))
    }
}

/// Decodes a checked compact report or heartbeat.
pub fn decode_compact(frame: &[u8], heartbeat: bool) -> Result<Report, BinaryError> {
    let n = frame.len();
    let err = BinaryError::Truncated("compact frame");
    // Everything but the check byte and `$`.
    let body = frame.get(..n.saturating_sub(2)).ok_or(err.clone())?;
    let mut c = Cursor::new(body);
    let head = c.u8().ok_or(err.clone())?;
    c.u8().ok_or(err.clone())?;
    let mut shared = vec![raw::uint(name::FRAME_HEADER, head.into())];
    if heartbeat {
        c.u8().ok_or(err.clone())?;
    } else {
        c.u16().ok_or(err.clone())?;
        let flags = c.u8().ok_or(err.clone())?;
        shared.push(raw::uint(name::FRAME_FLAGS, flags.into()));
        if flags & 0x80 != 0 {
            let [total, number] = c.array::<2>().ok_or(err.clone())?;
            shared.push(raw::uint(name::FRAME_TOTAL, total.into()));
            shared.push(raw::uint(name::FRAME_NUMBER, number.into()));
        }
    }
    let imei = compact_imei(c.take(8).ok_or(err.clone())?);
    let dt = c.u16().ok_or(err.clone())?;
    let pv = c.u16().ok_or(err.clone())?;
    let cv = c.u8().ok_or(err.clone())?;
    shared.push(raw::uint(name::DEVICE_TYPE_CODE, dt.into()));
    shared.push(raw::uint(name::PROTOCOL_VERSION_NUMBER, pv.into()));
    shared.push(raw::uint(name::CUSTOM_VERSION, cv.into()));
    let class = if heartbeat {
        Class::Heartbeat
    } else {
        Class::Report
    };
    let mut rep = Report::new(class, if heartbeat { "HBD" } else { "PRO" });
    rep.device_id = imei;
    rep.model = models::by_code(&format!("{dt:04X}"));
    // The count is the last two bytes before the check byte.
    let count_at = body.len().checked_sub(2).ok_or(err.clone())?;
    if heartbeat {
        let t = c.u32().ok_or(err.clone())?;
        shared.push(raw::uint(name::GENERATED_TIME, t.into()));
        rep.send_time = Some(t.into());
        rep.records.push(Record::default());
    } else {
        let reserved = c.u8().ok_or(err.clone())?;
        if let Some(r) = c.take(usize::from(reserved)).filter(|r| !r.is_empty()) {
            shared.push(raw::bytes(name::RESERVED_FIELD, r.to_vec()));
        }
        while c.position() < count_at {
            let start = c.position();
            let Some(rec) = compact_record(&mut c, count_at) else {
                let rest = body.get(start..count_at).unwrap_or_default();
                shared.push(raw::bytes(name::UNDECODED, rest.to_vec()));
                break;
            };
            rep.records.push(rec);
        }
        if rep.records.is_empty() {
            rep.records.push(Record::default());
        }
    }
    let count = body.get(count_at..).unwrap_or_default();
    let count = format!(
        "{:02X}{:02X}",
        count.first().unwrap_or(&0),
        count.get(1).unwrap_or(&0)
    );
    shared.push(raw::string(name::COUNT_NUMBER, count.clone()));
    rep.ack = Ack::Count(count);
    rep.shared = shared;
    Ok(rep)
}

/// One compact record, not past `end`.
fn compact_record(c: &mut Cursor<'_>, end: usize) -> Option<Record> {
    let start = c.position();
    let len = varint(c)?;
    let rec_end = start.checked_add(len).filter(|&e| e <= end && len > 0)?;
    let time = c.u32()?;
    let count = c.u16()?;
    let id = c.u8()?;
    let event = c.u8()?;
    let mut rec = Record::default();
    rec.raw.push(raw::uint(name::GENERATED_TIME, time.into()));
    rec.raw.push(raw::uint(name::RECORD_COUNT, count.into()));
    rec.raw.push(raw::uint(name::RECORD_ID, id.into()));
    rec.raw.push(raw::uint(name::EVENT_CODE, event.into()));
    while c.position() < rec_end {
        let item = varint(c)?;
        let n = varint(c)?;
        let data = c.take(n)?;
        if c.position() > rec_end {
            return None;
        }
        match (item, data.len()) {
            (0x52, 22) | (0x51, 15) => location_item(&mut rec, data),
            _ => rec.raw.push(RawValue {
                id: Some(item as u32),
                name: String::new(),
                value: Some(crate::proto::raw_value::Value::BytesValue(data.to_vec())),
            }),
        }
    }
    if rec.fix_time.is_none() {
        // No location: the record's own time.
        rec.fix_time = Some(time.into());
    }
    Some(rec)
}

/// Item `0x52` (full location: fix byte, lon, lat, UTC, speed 0.1 km/h, HDOP 0.1, azimuth,
/// altitude i24 0.1 m, satellites) or `0x51` (the first five of those).
fn location_item(rec: &mut Record, data: &[u8]) {
    let mut c = Cursor::new(data);
    let (Some(fix), Some(lon), Some(lat), Some(t), Some(speed)) =
        (c.u8(), c.i32(), c.i32(), c.u32(), c.u16())
    else {
        return;
    };
    rec.raw.push(raw::uint(name::FIX_STATUS, fix.into()));
    let mut p = Position {
        latitude: f64::from(lat) / 1e6,
        longitude: f64::from(lon) / 1e6,
        speed: Some(f64::from(speed) / 10.0),
        // Bits 3–2: 00 GNSS off, 01 no fix (the last valid position), 10 fix.
        valid: (fix >> 2) & 0x3 == 0b10,
        ..Default::default()
    };
    if let (Some(hdop), Some(az), Some(alt), Some(sats)) = (c.u8(), c.u16(), c.u24(), c.u8()) {
        rec.raw.push(raw::uint(name::HDOP_TENTHS, hdop.into()));
        p.course = Some(az.into());
        p.altitude = Some(f64::from(signed24(alt)) / 10.0);
        p.satellites = Some(sats.into());
    }
    if p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0 {
        rec.position = Some(p);
        rec.fix_time = Some(t.into());
    }
}
