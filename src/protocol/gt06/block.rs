//! The building blocks GT06 packets share: date-time, the GPS block, cell towers, the status
//! block, and the event skeleton.
//!
//! Every reader takes a bounds-checked [`Cursor`] and returns `None` when the content is
//! short, so packet parsers can use `?` on untrusted bytes. Readers put what the device sent
//! into the event as it came (`raw` by the names of `mapping::name`, the position, the cell
//! towers); what it means is `mapping`'s business.

use std::time::{SystemTime, UNIX_EPOCH};

use super::mapping::name;
use crate::event::{raw, timestamp_secs};
use crate::proto::{CellTower, EventKind, Position, Protocol, TelemetryEvent};
use crate::protocol::civil;
use crate::protocol::cursor::Cursor;

/// A new event of this protocol.
pub fn event(kind: EventKind) -> TelemetryEvent {
    TelemetryEvent {
        protocol: Protocol::Gt06 as i32,
        kind: kind as i32,
        ..Default::default()
    }
}

/// Seconds since the epoch of a civil UTC date (proleptic Gregorian), or `None` when a
/// field is out of range.
pub fn civil_to_secs(year: i64, month: u8, day: u8, hour: u8, min: u8, sec: u8) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = civil::days_from_civil(year, month.into(), day.into());
    Some(days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec))
}

/// The UTC civil date-time of a system time: (year, month, day, hour, minute, second).
pub fn secs_to_civil(t: SystemTime) -> (i64, u8, u8, u8, u8, u8) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (year, month, day, hour, min, sec) = civil::civil_from_secs(secs);
    let b = |v: u32| u8::try_from(v).unwrap_or_default();
    (year, b(month), b(day), b(hour), b(min), b(sec))
}

/// Reads binary `YY MM DD hh mm ss` (year 2000+). `Some(None)` when the bytes are there but
/// are not a date (devices without a fix send zeros).
pub fn read_time(c: &mut Cursor) -> Option<Option<i64>> {
    let [y, mo, d, h, mi, s] = c.array::<6>()?;
    Some(civil_to_secs(2000 + i64::from(y), mo, d, h, mi, s))
}

/// Reads BCD `YY MM DD hh mm ss` (the CRC-less Wi-Fi form).
pub fn read_bcd_time(c: &mut Cursor) -> Option<Option<i64>> {
    let t = c.array::<6>()?;
    let [y, mo, d, h, mi, s] = t.map(|b| (b >> 4) * 10 + (b & 0x0F));
    Some(civil_to_secs(2000 + i64::from(y), mo, d, h, mi, s))
}

/// Adds an unsigned raw value.
pub fn put(e: &mut TelemetryEvent, name: &str, v: impl Into<u64>) {
    e.raw.push(raw::uint(name, v.into()));
}

/// Adds a raw byte string.
pub fn put_bytes(e: &mut TelemetryEvent, name: &str, v: &[u8]) {
    e.raw.push(raw::bytes(name, v));
}

/// Keeps what is left of the content after a layout's last field (`tail`), if anything.
pub fn put_tail(c: &Cursor, e: &mut TelemetryEvent) {
    if c.remaining() > 0 {
        put_bytes(e, name::TAIL, c.rest());
    }
}

/// Sets the device time when there is one.
pub fn set_time(e: &mut TelemetryEvent, secs: Option<i64>) {
    if let Some(s) = secs {
        e.device_time = Some(timestamp_secs(s));
    }
}

/// The GPS block: date-time, satellites (low nibble; the high nibble is the GPS data
/// length), latitude, longitude, speed, course/status. Fills `e`'s position and time.
pub fn read_gps(c: &mut Cursor, e: &mut TelemetryEvent) -> Option<()> {
    let time = read_time(c)?;
    set_time(e, time);
    read_gps_fields(c, e, true, Speed::U8)
}

/// How a GPS block carries its speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// u8 km/h (the common case).
    U8,
    /// u16 km/h (JC400 alarm packets).
    U16,
    /// No speed field (JC100 extended alarm).
    Absent,
}

/// The GPS block after its date-time: optional satellites byte, latitude, longitude,
/// speed as `speed` says, course/status flags.
pub fn read_gps_fields(
    c: &mut Cursor,
    e: &mut TelemetryEvent,
    sats: bool,
    speed: Speed,
) -> Option<()> {
    let sats = if sats { Some(c.u8()? & 0x0F) } else { None };
    let lat = c.u32()?;
    let lon = c.u32()?;
    let speed = match speed {
        Speed::U8 => Some(f64::from(c.u8()?)),
        Speed::U16 => Some(f64::from(c.u16()?)),
        Speed::Absent => None,
    };
    let flags = c.u16()?;
    set_position(e, lat, lon, flags, speed, sats);
    Some(())
}

/// Sets the position from raw latitude/longitude (1/1,800,000 degree) and the course/status
/// flags (bits 0–9 course, 10 north, 11 west, 12 fixed), and keeps the word as
/// `course_status` (its ACC bits 14–15 are mapped from there).
pub fn set_position(
    e: &mut TelemetryEvent,
    lat: u32,
    lon: u32,
    flags: u16,
    speed: Option<f64>,
    sats: Option<u8>,
) {
    let lat = f64::from(lat) / 1_800_000.0;
    let lon = f64::from(lon) / 1_800_000.0;
    let north = flags & (1 << 10) != 0;
    let west = flags & (1 << 11) != 0;
    e.position = Some(Position {
        latitude: if north { lat } else { -lat },
        longitude: if west { -lon } else { lon },
        speed,
        course: Some(f64::from(flags & 0x03FF)),
        satellites: sats.map(u32::from),
        valid: flags & (1 << 12) != 0,
        ..Default::default()
    });
    put(e, name::COURSE_STATUS, flags);
}

/// Widths of the cell-tower fields, which differ between 2G and 4G variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// MCC u16 (bit 15 set = MNC is u16), MNC u8, LAC u16, cell id u24.
    Standard,
    /// MCC u16, MNC u16, LAC u16, cell id u32 (`0x11`).
    Wide,
    /// MCC u16 (bit 15 = MNC u16), MNC u8, LAC u32, cell id u64 (the GK310 `0xA*` family).
    Long,
}

/// Reads MCC and MNC (the MNC width depends on MCC bit 15 and the variant).
pub fn read_mcc_mnc(c: &mut Cursor, cell: Cell) -> Option<(u16, u16)> {
    let mcc = c.u16()?;
    let mnc = if cell == Cell::Wide || mcc & 0x8000 != 0 {
        c.u16()?
    } else {
        u16::from(c.u8()?)
    };
    Some((mcc & 0x7FFF, mnc))
}

/// Reads LAC and cell id.
pub fn read_lac_cid(c: &mut Cursor, cell: Cell) -> Option<(u64, u64)> {
    Some(match cell {
        Cell::Standard => (u64::from(c.u16()?), u64::from(c.u24()?)),
        Cell::Wide => (u64::from(c.u16()?), u64::from(c.u32()?)),
        Cell::Long => (u64::from(c.u32()?), c.u64()?),
    })
}

/// Reads one serving cell into `cell_towers`.
pub fn read_cell(c: &mut Cursor, e: &mut TelemetryEvent, cell: Cell) -> Option<()> {
    let (mcc, mnc) = read_mcc_mnc(c, cell)?;
    let (lac, cid) = read_lac_cid(c, cell)?;
    push_cell(e, mcc, mnc, lac, cid, None);
    Some(())
}

/// Adds a cell tower; `signal` as the device reports it.
pub fn push_cell(
    e: &mut TelemetryEvent,
    mcc: u16,
    mnc: u16,
    lac: u64,
    cid: u64,
    signal: Option<u8>,
) {
    e.cell_towers.push(CellTower {
        mcc: mcc.into(),
        mnc: mnc.into(),
        lac,
        cell_id: cid,
        signal: signal.map(i32::from),
    });
}

/// The cell block of the status packets, led by its own length byte (counting itself).
/// A zero length means "no cell"; a longer one has extra bytes that are skipped.
pub fn read_cell_with_length(c: &mut Cursor, e: &mut TelemetryEvent, cell: Cell) -> Option<()> {
    let len = usize::from(c.u8()?);
    if len == 0 {
        return Some(());
    }
    let start = c.position();
    read_cell(c, e, cell)?;
    let used = c.position().saturating_sub(start).saturating_add(1);
    c.skip(len.saturating_sub(used))
}

/// The status block: terminal information, voltage level 0–6, GSM signal 0–4 and the alarm
/// byte (absent in some short forms). `wide_battery`: some models send a u16 battery value
/// (`battery_level`) instead of the 0–6 level. The language byte that usually follows is
/// the caller's, since its width differs by packet.
pub fn read_status(c: &mut Cursor, e: &mut TelemetryEvent, wide_battery: bool) -> Option<()> {
    put(e, name::TERMINAL_INFO, c.u8()?);
    if wide_battery {
        put(e, name::BATTERY_LEVEL, c.u16()?);
    } else {
        put(e, name::VOLTAGE_LEVEL, c.u8()?);
    }
    put(e, name::GSM_SIGNAL, c.u8()?);
    if let Some(code) = c.u8() {
        put(e, name::ALARM, code);
    }
    Some(())
}

/// The language byte after a status block, when there is one.
pub fn read_language(c: &mut Cursor, e: &mut TelemetryEvent) {
    if let Some(l) = c.u8() {
        put(e, name::LANGUAGE, l);
    }
}

/// Hex of a byte string, lower case, `:`-separated (MAC addresses).
pub fn mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_round_trip() {
        assert_eq!(civil_to_secs(1970, 1, 1, 0, 0, 0), Some(0));
        assert_eq!(civil_to_secs(2015, 10, 20, 14, 21, 11), Some(1_445_350_871));
        let t = UNIX_EPOCH + Duration::from_secs(1_445_350_871);
        assert_eq!(secs_to_civil(t), (2015, 10, 20, 14, 21, 11));
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(secs_to_civil(t), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_to_secs(2000, 13, 1, 0, 0, 0), None);
        assert_eq!(civil_to_secs(2000, 0, 0, 0, 0, 0), None);
    }
}
