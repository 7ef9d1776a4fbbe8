//! The binary batches: `CCC` (fixed records) and `CCE` (records of id/value parameters).
//! Every multi-byte integer is little-endian.
//!
//! # `CCC`
//!
//! `version u16, record length u16, remaining cache u32` (records still stored on the device,
//! these included), then records of that length. Version `0x0102` with 52-byte records:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | event code |
//! | 4 + 4 | latitude, longitude, i32 × 10⁻⁶ ° |
//! | 4 | time, seconds since 2000-01-01 UTC |
//! | 1 + 1 + 1 | fix valid (1), satellites, GSM signal (0–31) |
//! | 2 + 2 | speed km/h, course ° |
//! | 2 + 2 | HDOP × 10, altitude m (signed) |
//! | 4 + 4 | mileage m, run time s |
//! | 2 × 4 | MCC, MNC, LAC, cell id |
//! | 2 | status |
//! | 2 + 2 + 2 | AD1, battery 0.01 V, external power 0.01 V |
//! | 4 | geofence |
//!
//! Longer records of that version carry those 52 bytes first (the rest is kept as `extra`);
//! other versions (`0x0501`'s layout is configured on the device with `CCB`) are published as
//! UNKNOWN records with their bytes. The server confirms with `CCC,<records>` and the device
//! deletes that many.
//!
//! # `CCE`
//!
//! `remaining cache u32, record count u16`, then per record `length u16` (the bytes after it),
//! `index u16` and four groups, each a count u8 and that many `(id, value)` pairs with 1-, 2-
//! and 4-byte values and, in the last group, a length u8 and that many bytes. An id whose first
//! byte is `FE` is two bytes (`FE69`). The record length bounds every record: a group that
//! ends short of it or runs past it leaves the record's remaining bytes in `trailing_bytes`
//! (counted as lenient input), and what was read before stays. `CCE` is not confirmed.

use crate::proto::{CellTower, Position, WifiAccessPoint};
use crate::protocol::cursor::Cursor;

use super::mapping::name;
use super::record::{Record, EPOCH_2000, V};

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0} header is cut short")]
    Header(&'static str),
    #[error("CCC data ({0} bytes) is not a whole number of {1}-byte records")]
    Records(usize, usize),
    #[error("CCE record {0} runs past the data")]
    Overrun(usize),
    #[error("CCE holds {0} bytes after its last record")]
    Trailing(usize),
}

/// The `CCC` layout this decoder knows.
pub const CCC_VERSION: u16 = 0x0102;
/// Its record length.
pub const CCC_RECORD: usize = 52;

/// A decoded `CCC` batch.
#[derive(Debug)]
pub struct Ccc {
    pub version: u16,
    pub remaining: u32,
    pub records: Vec<CccRecord>,
}

/// One `CCC` record.
#[derive(Debug)]
pub enum CccRecord {
    Known(Record),
    /// A layout this decoder does not know: its bytes.
    Unknown(Vec<u8>),
}

pub fn parse_ccc(data: &[u8]) -> Result<Ccc, BatchError> {
    let mut c = Cursor::new(data);
    let (Some(version), Some(len), Some(remaining)) = (c.u16_le(), c.u16_le(), u32_le(&mut c))
    else {
        return Err(BatchError::Header("CCC"));
    };
    let len = usize::from(len);
    let body = c.rest();
    if len == 0 || body.len() % len != 0 {
        return Err(BatchError::Records(body.len(), len));
    }
    let records = body
        .chunks_exact(len)
        .map(|r| {
            if version == CCC_VERSION && len >= CCC_RECORD {
                CccRecord::Known(ccc_record(r, version, remaining))
            } else {
                CccRecord::Unknown(r.to_vec())
            }
        })
        .collect();
    Ok(Ccc {
        version,
        remaining,
        records,
    })
}

fn u32_le(c: &mut Cursor<'_>) -> Option<u32> {
    Some(u32::from_le_bytes(c.array()?))
}

fn i32_le(c: &mut Cursor<'_>) -> Option<i32> {
    Some(i32::from_le_bytes(c.array()?))
}

/// One 52-byte (or longer) `CCC` record; `r` holds at least [`CCC_RECORD`] bytes.
fn ccc_record(r: &[u8], version: u16, remaining: u32) -> Record {
    let mut c = Cursor::new(r);
    let mut rec = Record::default();
    // The length was checked: every read below is within the record.
    let event = c.u8().unwrap_or_default();
    let lat = i32_le(&mut c).unwrap_or_default();
    let lon = i32_le(&mut c).unwrap_or_default();
    let time = u32_le(&mut c).unwrap_or_default();
    let valid = c.u8().unwrap_or_default();
    let sats = c.u8().unwrap_or_default();
    let gsm = c.u8().unwrap_or_default();
    let speed = c.u16_le().unwrap_or_default();
    let course = c.u16_le().unwrap_or_default();
    let hdop = c.u16_le().unwrap_or_default();
    let altitude = c.u16_le().unwrap_or_default() as i16;
    let mileage = u32_le(&mut c).unwrap_or_default();
    let run_time = u32_le(&mut c).unwrap_or_default();
    let (mcc, mnc, lac, ci) = (
        c.u16_le().unwrap_or_default(),
        c.u16_le().unwrap_or_default(),
        c.u16_le().unwrap_or_default(),
        c.u16_le().unwrap_or_default(),
    );
    let status = c.u16_le().unwrap_or_default();
    let ad1 = c.u16_le().unwrap_or_default();
    let battery = c.u16_le().unwrap_or_default();
    let power = c.u16_le().unwrap_or_default();
    let geofence = u32_le(&mut c).unwrap_or_default();

    rec.named(name::CCC_VERSION, V::Uint(version.into(), 2));
    rec.named(name::REMAINING_CACHE, V::Uint(remaining.into(), 4));
    rec.named(name::EVENT_CODE, V::Uint(event.into(), 1));
    rec.time = Some(EPOCH_2000 + i64::from(time));
    let position = Position {
        latitude: f64::from(lat) / 1e6,
        longitude: f64::from(lon) / 1e6,
        altitude: Some(f64::from(altitude)),
        speed: Some(f64::from(speed)),
        course: Some(f64::from(course)),
        satellites: Some(u32::from(sats)),
        hdop: Some(f64::from(hdop) / 10.0),
        valid: valid == 1,
        ..Default::default()
    };
    if lat == 0 && lon == 0 {
        rec.named(name::SPEED, V::Uint(speed.into(), 2));
        rec.named(name::COURSE, V::Uint(course.into(), 2));
        rec.named(name::ALTITUDE, V::Int(altitude.into()));
        rec.named(name::SATELLITES, V::Uint(sats.into(), 1));
        rec.named(name::HDOP_TENTHS, V::Uint(hdop.into(), 2));
    } else {
        rec.position = Some(position);
    }
    if valid > 1 {
        rec.named(name::FIX, V::Uint(valid.into(), 1));
    }
    rec.named(name::GSM_SIGNAL, V::Uint(gsm.into(), 1));
    rec.named(name::MILEAGE, V::Uint(mileage.into(), 4));
    rec.named(name::RUN_TIME, V::Uint(run_time.into(), 4));
    if mcc != 0 || mnc != 0 || lac != 0 || ci != 0 {
        rec.cells.push(CellTower {
            mcc: mcc.into(),
            mnc: mnc.into(),
            lac: lac.into(),
            cell_id: ci.into(),
            signal: Some(gsm.into()),
        });
    }
    rec.named(name::STATUS, V::Uint(status.into(), 2));
    rec.named(name::AD1, V::Uint(ad1.into(), 2));
    rec.named(name::BATTERY_CENTIVOLTS, V::Uint(battery.into(), 2));
    rec.named(name::POWER_CENTIVOLTS, V::Uint(power.into(), 2));
    rec.named(name::GEOFENCE, V::Uint(geofence.into(), 4));
    if let Some(extra) = r.get(CCC_RECORD..).filter(|e| !e.is_empty()) {
        rec.named(name::EXTRA, V::Bytes(extra.to_vec()));
    }
    rec
}

/// A decoded `CCE` batch.
#[derive(Debug)]
pub struct Cce {
    pub remaining: u32,
    pub records: Vec<Record>,
    /// Records whose groups did not end on the record length (see the module doc).
    pub inconsistent: usize,
}

pub fn parse_cce(data: &[u8]) -> Result<Cce, BatchError> {
    let mut c = Cursor::new(data);
    let (Some(remaining), Some(count)) = (u32_le(&mut c), c.u16_le()) else {
        return Err(BatchError::Header("CCE"));
    };
    let mut records = Vec::new();
    let mut inconsistent = 0;
    for i in 0..usize::from(count) {
        let Some(len) = c.u16_le() else {
            return Err(BatchError::Overrun(i));
        };
        let Some(body) = c.take(usize::from(len)) else {
            return Err(BatchError::Overrun(i));
        };
        let (rec, clean) = cce_record(body, remaining);
        if !clean {
            inconsistent += 1;
        }
        records.push(rec);
    }
    if c.remaining() > 0 {
        return Err(BatchError::Trailing(c.remaining()));
    }
    Ok(Cce {
        remaining,
        records,
        inconsistent,
    })
}

/// One parameter of a `CCE` record.
#[derive(Debug, Clone, PartialEq)]
enum Param<'a> {
    Fixed(u64, u8),
    Var(&'a [u8]),
}

/// One `CCE` record (the bytes after its length). Returns the record and whether its groups
/// ended exactly on its length.
fn cce_record(body: &[u8], remaining: u32) -> (Record, bool) {
    let mut rec = Record::default();
    rec.named(name::REMAINING_CACHE, V::Uint(remaining.into(), 4));
    let mut c = Cursor::new(body);
    let Some(index) = c.u16_le() else {
        rec.named(name::TRAILING_BYTES, V::Bytes(body.to_vec()));
        return (rec, false);
    };
    rec.named(name::RECORD_INDEX, V::Uint(index.into(), 2));
    let mut params: Vec<(u32, Param<'_>)> = Vec::new();
    let mut clean = true;
    'groups: for width in [1u8, 2, 4, 0] {
        let Some(n) = c.u8() else {
            clean = false;
            break;
        };
        for _ in 0..n {
            let before = c.position();
            let param = (|| {
                let first = c.u8()?;
                let id = if first == 0xFE {
                    0xFE00 | u32::from(c.u8()?)
                } else {
                    u32::from(first)
                };
                let value = match width {
                    0 => {
                        let len = usize::from(c.u8()?);
                        Param::Var(c.take(len)?)
                    }
                    w => {
                        let b = c.take(usize::from(w))?;
                        let v = b.iter().rev().fold(0u64, |a, &x| a << 8 | u64::from(x));
                        Param::Fixed(v, w)
                    }
                };
                Some((id, value))
            })();
            match param {
                Some(p) => params.push(p),
                None => {
                    // Runs past the record: what is left of it is kept as it is.
                    c = Cursor::new(body);
                    let _ = c.skip(before);
                    clean = false;
                    break 'groups;
                }
            }
        }
    }
    let trailing = c.rest();
    if !trailing.is_empty() {
        clean = false;
        rec.named(name::TRAILING_BYTES, V::Bytes(trailing.to_vec()));
    }
    apply(&mut rec, &params);
    (rec, clean)
}

/// The record's parameters: all of them raw by id, the fix and cells typed, compound values'
/// parts derived.
fn apply(rec: &mut Record, params: &[(u32, Param<'_>)]) {
    let mut pos = Position::default();
    let (mut lat, mut lon) = (None, None);
    for (id, p) in params {
        let id = *id;
        match p {
            Param::Fixed(v, w) => {
                rec.id(id, V::Uint(*v, *w));
                match id {
                    0x02 => lat = Some(f64::from(*v as u32 as i32) / 1e6),
                    0x03 => lon = Some(f64::from(*v as u32 as i32) / 1e6),
                    0x04 => rec.time = Some(EPOCH_2000 + *v as i64),
                    0x05 => pos.valid = *v > 0,
                    0x06 => pos.satellites = u32::try_from(*v).ok(),
                    0x08 => pos.speed = Some(*v as f64),
                    0x09 => pos.course = Some(*v as f64),
                    0x0A => pos.hdop = Some(*v as f64 / 10.0),
                    0x0B => pos.altitude = Some(f64::from(*v as u16 as i16)),
                    _ => {}
                }
            }
            Param::Var(b) => {
                rec.id(id, V::Bytes(b.to_vec()));
                compound(rec, id, b);
            }
        }
    }
    if let (Some(latitude), Some(longitude)) = (lat, lon) {
        if latitude != 0.0 || longitude != 0.0 {
            pos.latitude = latitude;
            pos.longitude = longitude;
            rec.position = Some(pos);
        }
    }
}

/// The parts of variable-length parameters.
fn compound(rec: &mut Record, id: u32, b: &[u8]) {
    let mut c = Cursor::new(b);
    let i16le = |c: &mut Cursor<'_>| c.array::<2>().map(i16::from_le_bytes);
    match id {
        // Cells: MCC, MNC, LAC u16, cell id u32, signal i16.
        0x0E..=0x13 if b.len() == 12 => {
            let (Some(mcc), Some(mnc), Some(lac), Some(ci), Some(sig)) = (
                c.u16_le(),
                c.u16_le(),
                c.u16_le(),
                u32_le(&mut c),
                i16le(&mut c),
            ) else {
                return;
            };
            rec.cells.push(CellTower {
                mcc: mcc.into(),
                mnc: mnc.into(),
                lac: lac.into(),
                cell_id: ci.into(),
                signal: Some(sig.into()),
            });
        }
        // Wi-Fi: MAC, signal i16.
        0x1D..=0x25 if b.len() == 8 => {
            let mac = b[..6]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            let sig = i16::from_le_bytes([b[6], b[7]]);
            rec.wifi.push(WifiAccessPoint {
                mac,
                signal_dbm: Some(sig.into()),
            });
        }
        // Temperature sensors 1..8: a label byte, then i16 hundredths of a degree.
        0x2A..=0x31 if b.len() >= 3 => {
            let t = i16::from_le_bytes([b[1], b[2]]);
            rec.derived(
                name::temperature(u64::from(id - 0x2A + 1)),
                V::Int(t.into()),
            );
        }
        // Battery levels: three (present, percent) pairs and an alert byte.
        0xFEA8 => {
            for k in 1..=3u64 {
                let (Some(present), Some(level)) = (c.u8(), c.u8()) else {
                    return;
                };
                if present > 0 {
                    rec.derived(name::battery_level(k), V::Uint(level.into(), 1));
                }
            }
        }
        // A BLE tag: version, name, MAC, battery %, temperature and humidity in 1/256.
        0xFE73 => {
            let Some(_version) = c.u8() else { return };
            let Some(n) = c.u8() else { return };
            let Some(tag) = c.take(usize::from(n)) else {
                return;
            };
            rec.derived(name::TAG_NAME, V::Text(String::from_utf8_lossy(tag).into()));
            if c.skip(6).is_none() {
                return;
            }
            if let Some(battery) = c.u8() {
                rec.derived(name::TAG_BATTERY, V::Uint(battery.into(), 1));
            }
            if let Some(t) = i16le(&mut c) {
                rec.derived(name::TAG_TEMPERATURE, V::Int(t.into()));
            }
            if let Some(h) = i16le(&mut c) {
                rec.derived(name::TAG_HUMIDITY, V::Int(h.into()));
            }
        }
        // A camera alarm: protocol, type, and (protocol 2) the picture's file name.
        0xFE31 if b.len() >= 2 => {
            rec.derived(name::ALARM_TYPE, V::Uint(b[1].into(), 1));
            if b[0] == 2 && b.len() > 2 {
                rec.derived(
                    name::ALARM_FILE,
                    V::Text(String::from_utf8_lossy(&b[2..]).into()),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Key;

    fn cce(records: &[Vec<u8>]) -> Vec<u8> {
        let mut d = 7u32.to_le_bytes().to_vec();
        d.extend_from_slice(&(records.len() as u16).to_le_bytes());
        for r in records {
            d.extend_from_slice(&(r.len() as u16).to_le_bytes());
            d.extend_from_slice(r);
        }
        d
    }

    /// A record: index 5; event 35, sats 9; speed 60 (u16), altitude -12; lat, lon, time;
    /// one cell; `FEA8`.
    fn record() -> Vec<u8> {
        let mut r = vec![5, 0];
        r.extend_from_slice(&[2, 0x01, 35, 0x06, 9]);
        r.extend_from_slice(&[2, 0x08, 60, 0, 0x0B]);
        r.extend_from_slice(&(-12i16).to_le_bytes());
        r.push(3);
        r.push(0x02);
        r.extend_from_slice(&(-7_266_760i32).to_le_bytes());
        r.push(0x03);
        r.extend_from_slice(&112_743_550i32.to_le_bytes());
        r.push(0x04);
        r.extend_from_slice(&453_268_800u32.to_le_bytes());
        r.push(2);
        r.extend_from_slice(&[0x0E, 12]);
        r.extend_from_slice(&[0x5c, 2, 2, 0, 0x17, 5, 0x21, 0x3e, 0x97, 1, 0xa0, 0xff]);
        r.extend_from_slice(&[0xFE, 0xA8, 7, 1, 50, 2, 88, 0, 0, 0]);
        r
    }

    #[test]
    fn cce_records_are_read_whole() {
        let c = parse_cce(&cce(&[record(), record()])).unwrap();
        assert_eq!((c.remaining, c.records.len(), c.inconsistent), (7, 2, 0));
        let r = &c.records[0];
        let p = r.position.as_ref().unwrap();
        assert_eq!((p.latitude, p.longitude), (-7.26676, 112.74355));
        assert_eq!(
            (p.speed, p.altitude, p.satellites),
            (Some(60.0), Some(-12.0), Some(9))
        );
        assert_eq!(r.time, Some(EPOCH_2000 + 453_268_800));
        assert_eq!(r.cells[0].mcc, 604);
        assert_eq!(r.cells[0].cell_id, 0x0197_3e21);
        assert_eq!(r.cells[0].signal, Some(-96));
        assert_eq!(
            r.get(&Key::Id(0x0B)),
            Some(&V::Uint(0xFFF4, 2)),
            "raw as sent"
        );
        assert_eq!(r.get(&Key::Id(0xFEA8)).map(|_| ()), Some(()));
        assert_eq!(
            r.get(&Key::Name("battery_level_2".into())),
            Some(&V::Uint(88, 1))
        );
        assert!(r
            .values
            .iter()
            .all(|v| v.raw || matches!(v.key, Key::Name(_))));
    }

    #[test]
    fn cce_record_length_bounds_every_record() {
        // A variable parameter whose length runs past its record: the rest is kept.
        let mut short = record();
        let at = short.len() - 8;
        short[at] = 200;
        let c = parse_cce(&cce(&[short.clone(), record()])).unwrap();
        assert_eq!((c.records.len(), c.inconsistent), (2, 1));
        let tail = c.records[0].get(&Key::Name("trailing_bytes".into()));
        assert_eq!(tail, Some(&V::Bytes(short[at - 2..].to_vec())));
        assert!(c.records[1]
            .get(&Key::Name("trailing_bytes".into()))
            .is_none());
        // Records that overrun the data, and bytes after the last record, are refused.
        let mut d = cce(&[record()]);
        d.truncate(d.len() - 1);
        assert_eq!(parse_cce(&d).unwrap_err(), BatchError::Overrun(0));
        let mut d = cce(&[record()]);
        d.push(0);
        assert_eq!(parse_cce(&d).unwrap_err(), BatchError::Trailing(1));
        assert_eq!(parse_cce(&[1, 2]).unwrap_err(), BatchError::Header("CCE"));
    }

    #[test]
    fn ccc_known_and_unknown_layouts() {
        let mut d = vec![0x02, 0x01, 52, 0, 1, 0, 0, 0];
        let mut r = vec![35u8];
        r.extend_from_slice(&(-7_266_504i32).to_le_bytes());
        r.extend_from_slice(&112_743_651i32.to_le_bytes());
        r.extend_from_slice(&454_222_789u32.to_le_bytes()); // 2014-05-24T04:59:49Z
        r.extend_from_slice(&[0, 9, 19]);
        r.extend_from_slice(&[0u8; 8]);
        r.extend_from_slice(&80_083u32.to_le_bytes());
        r.extend_from_slice(&180_092u32.to_le_bytes());
        r.extend_from_slice(&[0xFE, 1, 1, 0, 0x04, 0x35, 0xFC, 0xEC]);
        r.extend_from_slice(&[2, 0, 5, 0, 0xA3, 1, 0x80, 5]);
        r.extend_from_slice(&[0u8; 4]);
        assert_eq!(r.len(), CCC_RECORD);
        d.extend_from_slice(&r);
        let c = parse_ccc(&d).unwrap();
        let CccRecord::Known(rec) = &c.records[0] else {
            panic!()
        };
        let p = rec.position.as_ref().unwrap();
        assert_eq!((p.latitude, p.valid), (-7.266504, false));
        assert_eq!(rec.time, Some(1_400_907_589));
        assert_eq!(rec.cells[0].mcc, 510);
        assert_eq!(
            rec.get(&Key::Name("power_centivolts".into())),
            Some(&V::Uint(1408, 2))
        );
        // Another version: unknown records, kept whole.
        d[0] = 0x01;
        d[1] = 0x05;
        let c = parse_ccc(&d).unwrap();
        assert!(matches!(&c.records[0], CccRecord::Unknown(b) if b == &r));
        d.push(0);
        assert_eq!(
            parse_ccc(&d).unwrap_err(),
            BatchError::Records(CCC_RECORD + 1, CCC_RECORD)
        );
    }
}
