//! Location bodies: the `0200` report (basic information and additional items), which is also
//! the body of `0201` (location query answer), `0500` (vehicle control answer), every record
//! of the `0704` batch and of the vendor `0210` batch; and the JT701 e-lock `5501`/`5502`
//! reports.
//!
//! # The `0200` body
//!
//! Alarm flags u32, status u32, latitude u32 and longitude u32 in 10⁻⁶ degrees (the signs are
//! status bits 2 and 3), altitude (metres, read signed as the deployed servers do: devices
//! below sea level send two's complement), speed u16 in 0.1 km/h, course u16, time as 6 BCD
//! bytes `YYMMDDhhmmss` in the protocol's time zone (GMT+8 by convention; the `timezone`
//! setting), then additional items (附加信息): id u8, length u8, value.
//!
//! The alarm and status words go into `raw` whole (`alarm`, `status`); the profile's labelled
//! rules read their bits. The position is typed (`position`, `device_time`) and not repeated
//! in `raw`. Items go into `raw` by their id, in the order sent: a standard item of its
//! standard width as an unsigned number, every other item as its bytes. Two kinds of items
//! are more than a value:
//!
//! - `31` (satellites used) is also `position.satellites`;
//! - `EB`, when its content is a chain of sub-items (u16 length counting the sub-id, u16
//!   sub-id, value) that ends exactly at the item's end, holds one value per sub-item: they go
//!   into `raw` with the id `EB0000 + sub-id` (0x00EB_0089 for sub-item `0089`), as bytes. Any
//!   other `EB` content (a time-zone text, a cell list) stays one value under `EB`.
//!
//! An item whose length runs past the body ends the list; the rest of the body stays in `raw`
//! as `tail` (lenient `jt808_item_overrun`).
//!
//! A record without a fix whose coordinates are zero has no location: kind STATUS. Otherwise
//! POSITION with `valid` from status bit 1 (a record without a fix carries the last known
//! location).

use crate::event::{raw, timestamp_secs};
use crate::proto::{EventKind, Position, Protocol, TelemetryEvent};
use crate::protocol::civil;
use crate::protocol::cursor::Cursor;

use super::mapping::name;

/// The basic information block (位置基本信息), bytes.
pub const BASIC_LEN: usize = 28;

/// Status bit 1: positioned.
const STATUS_FIXED: u32 = 1 << 1;
const STATUS_SOUTH: u32 = 1 << 2;
const STATUS_WEST: u32 = 1 << 3;

/// The vendor item whose content may be a chain of sub-items.
pub const ITEM_EXTENDED: u8 = 0xEB;
/// Raw id of an `EB` sub-item: `EB_SUB_BASE + sub-id`.
pub const EB_SUB_BASE: u32 = 0x00EB_0000;
/// Raw id of a JT701 report's trailing item: `JT701_ITEM_BASE + id`.
pub const JT701_ITEM_BASE: u32 = 0x0055_0000;

/// The standard items (JT/T 808-2013 table 27, 2019 table 28) read as numbers, with their
/// widths: mileage, fuel, tachograph speed, manual alarm id, 2019 carriage temperature,
/// video alarm words (JT/T 1078 table 13), extended signals, IO status, analog, signal,
/// satellites.
pub const NUMERIC_ITEMS: &[(u8, usize)] = &[
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

/// The width of a standard numeric item, when `len` is it.
pub fn numeric_width(id: u8, len: usize) -> Option<usize> {
    NUMERIC_ITEMS
        .iter()
        .find(|(i, w)| *i == id && *w == len)
        .map(|(_, w)| *w)
}

/// A new event of this protocol.
pub fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::Jt808 as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

/// Seconds since the epoch of a BCD `YYMMDDhhmmss` local time `offset_minutes` east of UTC;
/// `None` when a byte is not BCD or a field is out of range.
pub fn bcd_time(b: &[u8], offset_minutes: i32) -> Option<i64> {
    let d = |i: usize| -> Option<u32> {
        let v = *b.get(i)?;
        let (hi, lo) = (v >> 4, v & 0x0F);
        (hi <= 9 && lo <= 9).then_some(u32::from(hi) * 10 + u32::from(lo))
    };
    let (y, mo, da, h, mi, s) = (d(0)?, d(1)?, d(2)?, d(3)?, d(4)?, d(5)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = civil::days_from_civil(2000 + i64::from(y), mo, da);
    let local = days * 86_400 + i64::from(h * 3600 + mi * 60 + s);
    Some(local - i64::from(offset_minutes) * 60)
}

/// What a location body turned into.
pub struct Location {
    pub event: TelemetryEvent,
    /// Lenient labels (see the module doc).
    pub lenient: Vec<&'static str>,
}

/// Decodes a `0200` body into an event (kind POSITION or STATUS; the caller adds the
/// message id first and the serial last). `None` when the basic information is short.
pub fn decode(
    body: &[u8],
    offset_minutes: i32,
    e: &mut TelemetryEvent,
) -> Option<Vec<&'static str>> {
    let mut c = Cursor::new(body);
    let alarm = c.u32()?;
    let status = c.u32()?;
    let lat = f64::from(c.u32()?) / 1e6;
    let lon = f64::from(c.u32()?) / 1e6;
    let altitude = c.i16()?;
    let speed = c.u16()?;
    let course = c.u16()?;
    let time = c.take(6)?;
    e.raw.push(raw::uint(name::ALARM, alarm.into()));
    e.raw.push(raw::uint(name::STATUS, status.into()));
    let fixed = status & STATUS_FIXED != 0;
    if fixed || lat != 0.0 || lon != 0.0 {
        e.kind = EventKind::Position as i32;
        e.position = Some(Position {
            latitude: if status & STATUS_SOUTH != 0 {
                -lat
            } else {
                lat
            },
            longitude: if status & STATUS_WEST != 0 { -lon } else { lon },
            altitude: Some(f64::from(altitude)),
            speed: Some(f64::from(speed) / 10.0),
            course: Some(f64::from(course)),
            valid: fixed,
            ..Default::default()
        });
    } else {
        e.kind = EventKind::Status as i32;
    }
    if let Some(t) = bcd_time(time, offset_minutes) {
        e.device_time = Some(timestamp_secs(t));
    }
    Some(items(c.rest(), e))
}

/// The additional items of a location body.
fn items(mut rest: &[u8], e: &mut TelemetryEvent) -> Vec<&'static str> {
    let mut lenient = Vec::new();
    while !rest.is_empty() {
        let (Some(&id), Some(&len)) = (rest.first(), rest.get(1)) else {
            break;
        };
        let Some(value) = rest.get(2..2 + usize::from(len)) else {
            break;
        };
        push_item(id, value, e);
        rest = rest.get(2 + usize::from(len)..).unwrap_or_default();
    }
    if !rest.is_empty() {
        lenient.push(LENIENT_ITEM_OVERRUN);
        e.raw.push(raw::bytes(name::TAIL, rest));
    }
    lenient
}

/// An item's length runs past the body: the rest is kept as `tail`.
pub const LENIENT_ITEM_OVERRUN: &str = "jt808_item_overrun";

fn push_item(id: u8, value: &[u8], e: &mut TelemetryEvent) {
    if let Some(w) = numeric_width(id, value.len()) {
        let n = value
            .iter()
            .take(w)
            .fold(0u64, |a, &b| a << 8 | u64::from(b));
        e.raw.push(raw::id_uint(id.into(), n));
        if id == 0x31 {
            if let Some(p) = e.position.as_mut() {
                p.satellites = Some(n as u32);
            }
        }
        return;
    }
    if id == ITEM_EXTENDED {
        if let Some(subs) = sub_items(value) {
            for (sub, v) in subs {
                e.raw.push(raw::id_bytes(EB_SUB_BASE + u32::from(sub), v));
            }
            return;
        }
    }
    e.raw.push(raw::id_bytes(id.into(), value));
    if id == ITEM_OBD_TEXT {
        obd_rt(value, e);
    }
}

/// The vendor item that may hold an `$OBD-RT` line.
pub const ITEM_OBD_TEXT: u8 = 0xE6;

/// An `$OBD-RT,<f1>,<f2>,…` line (in item `E6` or a `41` pass-through): each non-empty field
/// also goes into `raw` as `obd_rt_<n>` (text, as sent; `n` from 1 after the header), which the
/// profile maps by position (1 supply V, 2 rpm, 3 speed km/h, 4 throttle %, 5 load %, 6
/// coolant °C, 12 fuel used l).
pub fn obd_rt(text: &[u8], e: &mut TelemetryEvent) {
    let Some(rest) = text.strip_prefix(b"$OBD-RT") else {
        return;
    };
    let line = rest.trim_ascii_end();
    for (i, f) in line.split(|&b| b == b',').enumerate().skip(1) {
        if !f.is_empty() {
            e.raw.push(raw::text(name::obd_rt(i), f));
        }
    }
}

/// The `EB` sub-items (u16 length counting the sub-id, u16 sub-id, value), when the content
/// is exactly such a chain.
fn sub_items(mut v: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    if v.is_empty() {
        return None;
    }
    while !v.is_empty() {
        let mut c = Cursor::new(v);
        let len = usize::from(c.u16()?);
        let sub = c.u16()?;
        let value = c.take(len.checked_sub(2)?)?;
        out.push((sub, value));
        v = c.rest();
    }
    Some(out)
}

/// A `0704` batch (count u16, type u8, then per record u16 length and a `0200` body) or the
/// vendor `0210` batch (per record u8 length and a `0200` body). Each record is one event;
/// `batch_type` (0 normal, 1 blind-area backlog) goes into each record's `raw`. Records that
/// do not decode are skipped; the count of the `0704` header is not trusted (the lengths
/// are).
pub fn batch(
    body: &[u8],
    wide_lengths: bool,
    offset_minutes: i32,
) -> Option<(Vec<TelemetryEvent>, Vec<&'static str>)> {
    let mut c = Cursor::new(body);
    let batch_type = if wide_lengths {
        c.u16()?;
        Some(c.u8()?)
    } else {
        None
    };
    let mut events = Vec::new();
    let mut lenient = Vec::new();
    while c.remaining() > 0 {
        let len = if wide_lengths {
            usize::from(c.u16()?)
        } else {
            usize::from(c.u8()?)
        };
        let record = c.take(len)?;
        let mut e = event(EventKind::Status);
        if let Some(l) = decode(record, offset_minutes, &mut e) {
            if let Some(t) = batch_type {
                e.raw.push(raw::uint(name::BATCH_TYPE, t.into()));
            }
            lenient.extend(l);
            events.push(e);
        }
    }
    Some((events, lenient))
}

/// A JT701 (Jointech e-lock) `5501`/`5502` report: time BCD `DDMMYYhhmmss` (UTC), latitude
/// 8 BCD digits `DDMMmmmm` (degrees, minutes ×10⁴), longitude 9 BCD digits `DDDMMmmmm` whose
/// last byte's low nibble is the flags (bit 0 valid, bit 1 north, bit 2 east), speed 2 BCD
/// digits (knots), course u8 (×2 degrees), signal u8, satellites u8, odometer u32 (km),
/// battery u8 (≤ 100 %, `AA`/`AB` charging), cell id u32, LAC u16, product u8, status u16,
/// alarm u16, then items (id u8, length u8, value; raw id `JT701_ITEM_BASE + id`; item `02`
/// is the altitude, i16 metres). `5502` is the blind-area backlog: never a current fix.
pub fn jt701(body: &[u8], blind: bool, e: &mut TelemetryEvent) -> Option<()> {
    let mut c = Cursor::new(body);
    let t = c.take(6)?;
    let dmy = [
        t.get(2)?,
        t.get(1)?,
        t.first()?,
        t.get(3)?,
        t.get(4)?,
        t.get(5)?,
    ]
    .map(|b| *b);
    let time = bcd_time(&dmy, 0);
    let lat_digits = super::frame::bcd_digits(c.take(4)?)?;
    let lon_bytes = c.take(5)?;
    let lon_digits = super::frame::bcd_digits(lon_bytes.get(..4)?)?;
    let last = *lon_bytes.get(4)?;
    let (ninth, flags) = (last >> 4, last & 0x0F);
    if ninth > 9 {
        return None;
    }
    let minutes = |deg_digits: usize, s: &str| -> Option<f64> {
        let deg: f64 = s.get(..deg_digits)?.parse().ok()?;
        let min: f64 = s.get(deg_digits..)?.parse().ok()?;
        Some(deg + min / 10_000.0 / 60.0)
    };
    let lat = minutes(2, &lat_digits)?;
    let lon = minutes(3, &format!("{lon_digits}{ninth}"))?;
    let speed = super::frame::bcd_digits(&[c.u8()?])?.parse::<f64>().ok()?;
    let course = f64::from(c.u8()?) * 2.0;
    let rssi = c.u8()?;
    let satellites = c.u8()?;
    let odometer = c.u32()?;
    let battery = c.u8()?;
    let cell_id = c.u32()?;
    let lac = c.u16()?;
    let product = c.u8()?;
    let status = c.u16()?;
    let alarm = c.u16()?;
    e.kind = EventKind::Position as i32;
    let mut p = Position {
        latitude: if flags & 0b010 != 0 { lat } else { -lat },
        longitude: if flags & 0b100 != 0 { lon } else { -lon },
        speed: Some(speed * 1.852),
        course: Some(course),
        satellites: Some(satellites.into()),
        valid: !blind && flags & 1 != 0,
        ..Default::default()
    };
    e.device_time = time.map(timestamp_secs);
    e.raw.push(raw::uint(name::JT701_FLAGS, flags.into()));
    e.raw.push(raw::uint(name::SIGNAL, rssi.into()));
    e.raw.push(raw::uint(name::ODOMETER_KM, odometer.into()));
    e.raw.push(raw::uint(name::BATTERY, battery.into()));
    e.raw.push(raw::uint(name::CELL_ID, cell_id.into()));
    e.raw.push(raw::uint(name::LAC, lac.into()));
    e.raw.push(raw::uint(name::PRODUCT, product.into()));
    e.raw.push(raw::uint(name::JT701_STATUS, status.into()));
    e.raw.push(raw::uint(name::JT701_ALARM, alarm.into()));
    let mut rest = c.rest();
    while let (Some(&id), Some(&len)) = (rest.first(), rest.get(1)) {
        let Some(v) = rest.get(2..2 + usize::from(len)) else {
            break;
        };
        if id == 0x02 {
            if let Ok(a) = <[u8; 2]>::try_from(v) {
                p.altitude = Some(f64::from(i16::from_be_bytes(a)));
            }
        }
        e.raw
            .push(raw::id_bytes(JT701_ITEM_BASE + u32::from(id), v));
        rest = rest.get(2 + usize::from(len)..).unwrap_or_default();
    }
    if !rest.is_empty() {
        e.raw.push(raw::bytes(name::TAIL, rest));
    }
    e.position = Some(p);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raw_value::Value as V;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn basic_information_items_and_the_time_zone() {
        // Traccar's `0200` fixture 0140 (seq 77): status 0xC2 (fixed, lat N, lon E).
        let body = h(
            "00000000000000c201597fa806cc01580080000000081508180721210104000002f50202000003020000",
        );
        let mut e = event(EventKind::Status);
        let lenient = decode(&body, 480, &mut e).unwrap();
        assert!(lenient.is_empty());
        assert_eq!(e.kind, EventKind::Position as i32);
        let p = e.position.unwrap();
        assert!(p.valid);
        assert!((p.latitude - 22.6426).abs() < 1e-6);
        assert!((p.longitude - 114.032984).abs() < 1e-6);
        assert_eq!(p.altitude, Some(128.0));
        assert_eq!(p.course, Some(8.0));
        // 2015-08-18 07:21:21 at GMT+8 is 23:21:21 UTC the day before.
        assert_eq!(
            e.device_time.unwrap().seconds,
            civil::days_from_civil(2015, 8, 17) * 86_400 + 23 * 3600 + 21 * 60 + 21
        );
        assert_eq!(e.raw_id(0x01), Some(&V::UintValue(0x2f5)));
        assert_eq!(e.raw_id(0x02), Some(&V::UintValue(0)));
        assert_eq!(e.raw_named(name::STATUS), Some(&V::UintValue(0xc2)));
    }

    #[test]
    fn south_west_no_fix_zero_coordinates_and_bad_times() {
        let mut body = h("00000000000000000000000000000000000000000000991301010000");
        let mut e = event(EventKind::Status);
        decode(&body, 0, &mut e).unwrap();
        assert_eq!(e.kind, EventKind::Status as i32);
        assert!(e.position.is_none());
        assert!(e.device_time.is_none(), "month 13");
        body[7] = 0x0E; // fixed, south, west
        body[11] = 1;
        let mut e = event(EventKind::Status);
        decode(&body, 0, &mut e).unwrap();
        let p = e.position.unwrap();
        assert!(p.valid && p.latitude < 0.0 && p.longitude == 0.0);
        assert!(decode(&body[..27], 0, &mut event(EventKind::Status)).is_none());
    }

    #[test]
    fn eb_sub_items_overruns_and_vendor_bytes() {
        let mut body = vec![0u8; BASIC_LEN];
        body.extend(h("eb0a000300e164000300e301"));
        body.extend(h("e40200630a"));
        let mut e = event(EventKind::Status);
        let lenient = decode(&body, 480, &mut e).unwrap();
        assert_eq!(
            e.raw_id(EB_SUB_BASE + 0xe1),
            Some(&V::BytesValue(vec![0x64]))
        );
        assert_eq!(
            e.raw_id(EB_SUB_BASE + 0xe3),
            Some(&V::BytesValue(vec![0x01]))
        );
        assert_eq!(e.raw_id(0xe4), Some(&V::BytesValue(vec![0x00, 0x63])));
        assert_eq!(lenient, vec![LENIENT_ITEM_OVERRUN]);
        assert_eq!(e.raw_named(name::TAIL), Some(&V::BytesValue(vec![0x0a])));
        // A text EB stays whole.
        let mut body = vec![0u8; BASIC_LEN];
        body.extend(h("eb095554432b30383a3030"));
        let mut e = event(EventKind::Status);
        decode(&body, 480, &mut e).unwrap();
        assert_eq!(e.raw_id(0xeb), Some(&V::BytesValue(b"UTC+08:00".to_vec())));
    }

    #[test]
    fn jt701_report() {
        // Traccar's 5502 fixture (seq 35): 2021-05-08 06:30:51 UTC, 22°34.8621' N,
        // 113°55.0170' E, battery AA (charging), altitude item 20 m.
        let body = h("08052106305122348621113550170700001e080000000aaa0000000000000300000000100100020200140a030000000c06003bffa8ffc3");
        let mut e = event(EventKind::Status);
        jt701(&body, true, &mut e).unwrap();
        let p = e.position.unwrap();
        assert!(!p.valid, "5502 is a backlog");
        assert!((p.latitude - (22.0 + 34.8621 / 60.0)).abs() < 1e-9);
        assert!((p.longitude - (113.0 + 55.0170 / 60.0)).abs() < 1e-9);
        assert_eq!(p.altitude, Some(20.0));
        assert_eq!(p.satellites, Some(8));
        assert_eq!(
            e.device_time.unwrap().seconds,
            civil::days_from_civil(2021, 5, 8) * 86_400 + 6 * 3600 + 30 * 60 + 51
        );
        assert_eq!(e.raw_named(name::BATTERY), Some(&V::UintValue(0xaa)));
        assert_eq!(
            e.raw_id(JT701_ITEM_BASE + 0x0c),
            Some(&V::BytesValue(h("003bffa8ffc3")))
        );
    }
}
