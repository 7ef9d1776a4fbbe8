//! Binary `$` frames into an event. Layout (all BCD but the battery byte and the status word):
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | `$` |
//! | 5 (8 in the 42-byte form) | id: 10 digits (the long form: a 15-digit IMEI and a pad nibble) |
//! | 3 + 3 | `hhmmss`, `ddmmyy` (UTC) |
//! | 4 | latitude `ddmm.mmmm` |
//! | 1 | battery (binary: 0 unknown, 1–6 level, 7–100 %, `F1`–`F6` level) |
//! | 5 | longitude `dddmm.mmmm`, then a flags nibble: bit 1 valid, bit 2 north, bit 3 east |
//! | 3 | speed (3 digits, knots), course (3 digits) |
//! | 4 | status word (u32, active-low bits) |
//! | rest | model-specific tail (3 bytes in the short form, 16 in the 45-byte form) |
//!
//! The 45-byte form's tail carries the serving cell: MCC u16 at tail byte 8, MNC u8 at 10,
//! LAC u16 at 11, cell id u16 at 13. (Read from the public captures, where the MCC is the
//! country of the fix in all seven: 262, 374, 460, 470, 234, 238, 732.) The whole tail is in
//! `raw` either way.

use crate::event::{raw, timestamp_secs};
use crate::proto::{CellTower, EventKind, Position, Protocol, TelemetryEvent};
use crate::protocol::{Action, DecodeError, ErrorKind};

use super::frame::{self, is_bcd, LONG, LONG_ID};
use super::mapping::name;
use super::text::{date_time, KNOTS_TO_KMH};

/// One decoded binary frame.
#[derive(Debug)]
pub struct Decoded {
    pub id: String,
    pub event: TelemetryEvent,
}

fn bad(why: &str) -> DecodeError {
    DecodeError::new(ErrorKind::Malformed, Action::Continue, why.to_string())
}

/// The BCD nibbles of `bytes` as digits; `None` when one is not a decimal digit.
fn digits(bytes: &[u8]) -> Option<Vec<u8>> {
    let v: Vec<u8> = bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
    v.iter().all(|&d| d <= 9).then_some(v)
}

fn number(d: &[u8]) -> u64 {
    d.iter().fold(0u64, |a, &x| a * 10 + u64::from(x))
}

fn text(d: &[u8]) -> String {
    d.iter().map(|&x| char::from(b'0' + x)).collect()
}

/// Decodes a `$` frame (its length already decided by the framing).
pub fn decode(f: &[u8]) -> Result<Decoded, DecodeError> {
    let long_id = f.len() == LONG_ID;
    let id_len = if long_id { 8 } else { 5 };
    if f.len() < frame::SHORT || f.first() != Some(&b'$') {
        return Err(bad("binary frame shorter than its layout"));
    }
    if frame::plausible_head(f, id_len) != Some(true) {
        return Err(bad("binary id, time or date are not BCD in range"));
    }
    let at = |from: usize, n: usize| f.get(from..from + n).unwrap_or_default();
    let id_digits: Vec<u8> = at(1, id_len)
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .collect();
    let id = text(
        id_digits
            .get(..if long_id { 15 } else { 10 })
            .unwrap_or_default(),
    );
    let mut c = 1 + id_len;
    let time = digits(at(c, 3)).ok_or_else(|| bad("time"))?;
    let date = digits(at(c + 3, 3)).ok_or_else(|| bad("date"))?;
    c += 6;
    let lat = digits(at(c, 4)).ok_or_else(|| bad("latitude is not BCD"))?;
    let battery = *f.get(c + 4).ok_or_else(|| bad("battery"))?;
    let lon_bytes = at(c + 5, 5);
    let flags = lon_bytes.last().map_or(0, |b| b & 0x0F);
    let lon_all = lon_bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .collect::<Vec<_>>();
    let lon = lon_all.get(..9).unwrap_or_default();
    if lon.len() != 9 || lon.iter().any(|&d| d > 9) {
        return Err(bad("longitude is not BCD"));
    }
    c += 10;
    let sc = at(c, 3);
    if sc.len() != 3 || !sc.iter().all(|&b| is_bcd(b)) {
        return Err(bad("speed or course is not BCD"));
    }
    let sc = digits(sc).unwrap_or_default();
    c += 3;
    let status = at(c, 4);
    let status = u32::from_be_bytes(<[u8; 4]>::try_from(status).map_err(|_| bad("status"))?);
    c += 4;
    let tail = f.get(c..).unwrap_or_default();

    let minutes = |d: &[u8]| number(d) as f64 / 10_000.0;
    let mut latitude = number(lat.get(..2).unwrap_or_default()) as f64
        + minutes(lat.get(2..).unwrap_or_default()) / 60.0;
    let mut longitude = number(lon.get(..3).unwrap_or_default()) as f64
        + minutes(lon.get(3..).unwrap_or_default()) / 60.0;
    if flags & 0x04 == 0 {
        latitude = -latitude;
    }
    if flags & 0x08 == 0 {
        longitude = -longitude;
    }
    if latitude.abs() > 90.0 || longitude.abs() > 180.0 {
        return Err(bad("coordinates out of range"));
    }
    let knots = number(sc.get(..3).unwrap_or_default());
    let course = number(sc.get(3..).unwrap_or_default());

    let mut e = TelemetryEvent {
        protocol: Protocol::H02 as i32,
        kind: EventKind::Position as i32,
        position: Some(Position {
            latitude,
            longitude,
            speed: Some(knots as f64 * KNOTS_TO_KMH),
            course: Some(course as f64),
            valid: flags & 0x02 != 0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (time, date) = (text(&time), text(&date));
    match date_time(&time, &date) {
        Some(secs) => e.device_time = Some(timestamp_secs(secs)),
        None => {
            e.raw.push(raw::string(name::TIME, time));
            e.raw.push(raw::string(name::DATE, date));
        }
    }
    e.raw.push(raw::uint(name::BATTERY_LEVEL, battery.into()));
    e.raw.push(raw::double(name::SPEED_KNOTS, knots as f64));
    e.raw.push(raw::uint(name::STATUS, status.into()));
    if !tail.is_empty() {
        e.raw.push(raw::bytes(name::TAIL, tail));
    }
    if f.len() == LONG {
        let u16_at = |i: usize| {
            tail.get(i..i + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes)
        };
        if let (Some(mcc), Some(&mnc), Some(lac), Some(cid)) =
            (u16_at(8), tail.get(10), u16_at(11), u16_at(13))
        {
            if mcc != 0 {
                e.cell_towers.push(CellTower {
                    mcc: mcc.into(),
                    mnc: mnc.into(),
                    lac: lac.into(),
                    cell_id: cid.into(),
                    signal: None,
                });
            }
        }
    }
    Ok(Decoded { id, event: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn the_three_forms() {
        // 45 bytes, Bogotá: 4.69898, -74.06971, 2015-08-31 21:53:21, valid.
        let d = decode(&h("24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f")).unwrap();
        assert_eq!(d.id, "4106000826");
        let p = d.event.position.unwrap();
        assert!((p.latitude - 4.69898).abs() < 1e-5 && (p.longitude + 74.06971).abs() < 1e-5);
        assert!(p.valid);
        assert_eq!(p.speed, Some(0.0));
        assert_eq!(d.event.device_time.unwrap().seconds, 1_441_058_001);
        assert_eq!(
            d.event.cell_towers,
            vec![CellTower {
                mcc: 732,
                mnc: 12,
                lac: 0,
                cell_id: 0,
                signal: None
            }]
        );
        assert_eq!(
            d.event.raw_named(name::STATUS),
            Some(&crate::proto::raw_value::Value::UintValue(0xFFFF_FBFD))
        );
        // 42 bytes: the IMEI.
        let d = decode(&h(
            "2435248308419329301047591808172627335900074412294e024138feffffffff01120064ba73005ecc",
        ))
        .unwrap();
        assert_eq!(d.id, "352483084193293");
        let p = d.event.position.unwrap();
        assert_eq!(p.course, Some(138.0));
        assert!((p.speed.unwrap() - 24.0 * 1.852).abs() < 1e-9);
        assert!(d.event.cell_towers.is_empty());
        // 32 bytes.
        let d = decode(&h(
            "2441060116601245431311165035313006004318210e000000fffffbffff0024",
        ))
        .unwrap();
        assert_eq!(d.id, "4106011660");
        assert_eq!(
            d.event.raw_named(name::TAIL),
            Some(&crate::proto::raw_value::Value::BytesValue(vec![
                0xFF, 0x00, 0x24
            ]))
        );
    }

    #[test]
    fn non_bcd_content_is_refused() {
        let mut b = h("2441060116601245431311165035313006004318210e000000fffffbffff0024");
        b[13] = 0x5A; // a latitude nibble of A
        assert!(decode(&b).is_err());
        assert!(decode(&b[..20]).is_err());
        assert!(decode(b"*HQ,123456789012345678901234567890").is_err());
    }
}
