//! Model-specific packets of the family, decoded from their public captures: modular GPS
//! (`0x70`), JC100/JC400 alarms (`0x95`), serial pass-through (`0x9B`), Jimi 4G status with
//! modules and the VL103 location form (`0x36`), X1 GPS (`0x34`), AZ735 extended location
//! and alarm (`79 79` `0x32`/`0x33`), GPS+LBS with modules (`0x38`), OBD text (`0x8C`) and
//! the short GL21L status (`0xA3`).
//!
//! Every parser reads through a bounds-checked [`Cursor`] and returns `None` on content
//! that does not fit its layout; the caller then publishes the packet raw (kind UNKNOWN).
//! Sub-blocks with their own length (modules) are read through a cursor over exactly that
//! many bytes, so a wrong inner length cannot make a reader run past its block. Values go
//! into `raw` by the names of `mapping::name`; `mapping` says what they mean.

use super::block::{self, Cell, Speed};
use super::mapping::name;
use crate::event::{raw, timestamp_secs};
use crate::proto::{EventKind, TelemetryEvent};
use crate::protocol::cursor::Cursor;

/// A module value this decoder does not know, kept as `module_<type>` bytes.
fn unknown_module(e: &mut TelemetryEvent, kind: u16, value: &[u8]) {
    e.raw.push(raw::bytes(name::module(kind), value));
}

/// Kind POSITION with a fix, LBS with only a cell, STATUS otherwise.
fn kind_of(e: &TelemetryEvent) -> EventKind {
    if e.position.is_some() {
        EventKind::Position
    } else if !e.cell_towers.is_empty() {
        EventKind::Lbs
    } else {
        EventKind::Status
    }
}

/// `0x70` (`79 79`): a list of modules, each type u16, length u16, value. Kind POSITION
/// when a GPS module (`0x0033`) is there, LBS with only a cell module, STATUS otherwise.
pub fn modular(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    let mut sats = None;
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u16()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0003 => {
                block::put_bytes(&mut e, name::ICCID, value);
                Some(())
            }
            0x0009 => v.u8().map(|n| {
                sats = Some(n);
                block::put(&mut e, name::SATELLITES, n);
            }),
            0x000A => v
                .u8()
                .map(|n| block::put(&mut e, name::SATELLITES_VISIBLE, n)),
            0x0011 => (|| {
                let (mcc, mnc, lac) = (v.u16()?, v.u16()?, v.u16()?);
                let cid = v.u24()?;
                let rssi = v.u8()?;
                // A zero cell id is no cell (the module is sent without service too).
                if cid > 0 {
                    block::push_cell(&mut e, mcc, mnc, lac.into(), cid.into(), Some(rssi));
                } else {
                    unknown_module(&mut e, kind, value);
                }
                Some(())
            })(),
            0x0018 => v
                .u16()
                .map(|b| block::put(&mut e, name::BATTERY_CENTIVOLTS, b)),
            0x0028 => v.u8().map(|h| block::put(&mut e, name::HDOP_TENTHS, h)),
            0x0029 => v.u32().map(|i| block::put(&mut e, name::INDEX, i)),
            0x002A => v.u8().map(|b| block::put(&mut e, name::DOOR_TAMPER, b)),
            0x002B => v.u8().map(|ev| block::put(&mut e, name::EVENT, ev)),
            // Two u16 words, each little-endian, low word first.
            0x002E => v.u16_le().and_then(|lo| {
                let hi = v.u16_le()?;
                block::put(
                    &mut e,
                    name::ODOMETER_METERS,
                    u64::from(hi) << 16 | u64::from(lo),
                );
                Some(())
            }),
            0x0033 => (|| {
                let secs = v.u32()?;
                let sats = v.u8()?;
                let alt = v.i16()?;
                let (lat, lon) = (v.u32()?, v.u32()?);
                let speed = v.u8()?;
                let flags = v.u16()?;
                e.device_time = Some(timestamp_secs(secs.into()));
                block::set_position(&mut e, lat, lon, flags, Some(speed.into()), Some(sats));
                if let Some(p) = e.position.as_mut() {
                    p.altitude = Some(alt.into());
                }
                Some(())
            })(),
            _ => None,
        };
        if known.is_none() {
            unknown_module(&mut e, kind, value);
        }
    }
    // The satellites module counts the fix's satellites when there is one.
    if let (Some(p), Some(n)) = (e.position.as_mut(), sats) {
        p.satellites = Some(n.into());
    }
    e.kind = kind_of(&e) as i32;
    Some(e)
}

/// `0x95` alarm (JC100 / JC400 dash cameras). Short form: date-time, alarm type. Extended
/// form: a GPS block without satellites or speed, alarm type, then video file names. The
/// JC400 form starts with marker `FF FF` and a version byte, and its GPS block has
/// satellites and a u16 speed, followed by the power voltage (0.1 V). The short form's type
/// is `short_alarm_type` (its 0x01 is a general alarm, the others' is SOS).
pub fn dashcam_alarm(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    let extended = content.len() > 7;
    let jc400 = content.get(..2) == Some(&[0xFF, 0xFF][..]);
    if jc400 {
        c.skip(3)?; // marker, version
    }
    block::set_time(&mut e, block::read_time(&mut c)?);
    if extended {
        if jc400 {
            block::read_gps_fields(&mut c, &mut e, true, Speed::U16)?;
            block::put(&mut e, name::POWER_DECIVOLTS, c.u16()?);
        } else {
            block::read_gps_fields(&mut c, &mut e, false, Speed::Absent)?;
        }
    }
    let alarm = c.u8()?;
    let type_name = if extended {
        name::ALARM_TYPE
    } else {
        name::SHORT_ALARM_TYPE
    };
    block::put(&mut e, type_name, alarm);
    // Then a u16 (unknown use) and the comma-separated names of the event's video files.
    if let Some(x) = c.u16() {
        block::put(&mut e, name::RESERVED_WORD, x);
        let files = c.rest();
        if !files.is_empty() && files.iter().all(|b| b.is_ascii_graphic()) {
            e.raw.push(raw::text(name::EVENT_FILES, files));
            c.skip(files.len())?;
        }
    }
    block::put_tail(&c, &mut e);
    e.kind = kind_of(&e) as i32;
    Some(e)
}

/// `0x9B` (`79 79`): data an external device (RFID reader, sensor) passed through. Kind
/// STATUS with raw `external_device_type` and `passthrough_data` (bytes).
pub fn serial_passthrough(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    block::put(&mut e, name::EXTERNAL_DEVICE_TYPE, c.u8()?);
    block::put_bytes(&mut e, name::PASSTHROUGH_DATA, c.rest());
    Some(e)
}

/// `0x36`. Two layouts share the number:
/// - Jimi 4G heartbeat: the 5-byte status block (terminal info, voltage level, GSM,
///   alarm, language) then modules of type u16, length u8, value (`0x0018` battery
///   voltage, `0x0032` start-up status, `0x006A` battery percentage). Chosen when the
///   modules end exactly at the end of the content.
/// - VL103 location: GPS block, MCC, MNC, LAC u16, cell id u32, then ACC and status bytes
///   (kept raw as `status_data`) and an 8-byte driver id.
pub fn status_or_vl103(content: &[u8]) -> Option<TelemetryEvent> {
    status_with_modules(content).or_else(|| vl103_location(content))
}

fn status_with_modules(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Heartbeat);
    block::read_status(&mut c, &mut e, false)?;
    block::put(&mut e, name::LANGUAGE, c.u8()?);
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u8()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0018 => v
                .u16()
                .map(|b| block::put(&mut e, name::BATTERY_CENTIVOLTS, b)),
            0x0032 => v.u8().map(|b| block::put(&mut e, name::STARTUP_STATUS, b)),
            0x006A => v.u8().map(|b| block::put(&mut e, name::BATTERY_PERCENT, b)),
            _ => None,
        };
        if known.is_none() {
            unknown_module(&mut e, kind, value);
        }
    }
    Some(e)
}

/// Bytes of the VL103 `0x36` location: GPS 18, cell 9, ACC 1, status 12, driver id 8.
const VL103_LEN: usize = 48;

fn vl103_location(content: &[u8]) -> Option<TelemetryEvent> {
    if content.len() != VL103_LEN {
        return None;
    }
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    let (mcc, mnc) = block::read_mcc_mnc(&mut c, Cell::Standard)?;
    let lac = c.u16()?;
    let cid = c.u32()?;
    block::push_cell(&mut e, mcc, mnc, lac.into(), cid.into(), None);
    block::put(&mut e, name::ACC, c.u8()?);
    block::put_bytes(&mut e, name::STATUS_DATA, c.take(12)?);
    block::put_bytes(&mut e, name::DRIVER_ID, c.take(8)?);
    Some(e)
}

/// `0x34` X1 GPS: data/alarm u32, GPS block, terminal info u16, odometer u32 (m), MCC
/// u16, MNC u8, LAC u16, cell id u32, driver id u32, battery and power u16 (0.01 V),
/// port info u32 (bits 20–23: ADC count), inputs u8, outputs u8, ADCs u16 (0.01 V).
pub fn x1_gps(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::put(&mut e, name::X1_DATA_ALARM, c.u32()?);
    block::read_gps(&mut c, &mut e)?;
    block::put(&mut e, name::X1_TERMINAL_INFO, c.u16()?);
    block::put(&mut e, name::ODOMETER_METERS, c.u32()?);
    let (mcc, mnc, lac, cid) = (c.u16()?, c.u8()?, c.u16()?, c.u32()?);
    block::push_cell(&mut e, mcc, mnc.into(), lac.into(), cid.into(), None);
    block::put(&mut e, name::X1_DRIVER_ID, c.u32()?);
    block::put(&mut e, name::BATTERY_CENTIVOLTS, c.u16()?);
    block::put(&mut e, name::POWER_CENTIVOLTS, c.u16()?);
    let ports = c.u32()?;
    block::put(&mut e, name::X1_PORT_INFO, ports);
    block::put(&mut e, name::INPUTS, c.u8()?);
    block::put(&mut e, name::OUTPUTS, c.u8()?);
    for i in 1..=(ports >> 20) & 0x0F {
        block::put(&mut e, &name::adc_centivolts(i), c.u16()?);
    }
    block::put_tail(&c, &mut e);
    Some(e)
}

/// AZ735 `79 79` `0x32` (location) / `0x33` (alarm): date-time, GPS length (0 = no fix
/// block), GPS fields, cell length (0 = none), cell + RSSI, then length-prefixed extra
/// cells and access points (kept as bytes), a status byte (`status` for `0x32`,
/// `alarm_status` for `0x33`) and a length-prefixed reserved block.
pub fn az735(protocol: u8, content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    block::set_time(&mut e, block::read_time(&mut c)?);
    if c.u8()? != 0 {
        block::read_gps_fields(&mut c, &mut e, true, Speed::U8)?;
    }
    if c.u8()? != 0 {
        let (mcc, mnc) = block::read_mcc_mnc(&mut c, Cell::Standard)?;
        let (lac, cid) = block::read_lac_cid(&mut c, Cell::Standard)?;
        block::push_cell(&mut e, mcc, mnc, lac, cid, Some(c.u8()?));
    }
    for block_name in [name::EXTRA_CELLS, name::WIFI_DATA] {
        let n = usize::from(c.u8()?);
        let bytes = c.take(n)?;
        if !bytes.is_empty() {
            block::put_bytes(&mut e, block_name, bytes);
        }
    }
    let status = c.u8()?;
    let status_name = if protocol == 0x33 {
        name::ALARM_STATUS
    } else {
        name::STATUS
    };
    block::put(&mut e, status_name, status);
    let n = usize::from(c.u8()?);
    let reserved = c.take(n)?;
    if !reserved.is_empty() {
        block::put_bytes(&mut e, name::RESERVED, reserved);
    }
    block::put_tail(&c, &mut e);
    e.kind = kind_of(&e) as i32;
    Some(e)
}

/// `0x38`: GPS block, upload mode, re-upload flag, network type, MCC/MNC, LAC u32, cell id
/// u64, two status bytes, then modules of type u16, length u8 (`0x0027` power 0.01 V,
/// `0x002E` odometer m, `0x003B` accuracy 0.01 m; others kept as `module_<type>`).
pub fn gps_lbs_modules(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    block::put(&mut e, name::UPLOAD_MODE, c.u8()?);
    block::put(&mut e, name::GPS_REUPLOAD, c.u8()?);
    block::put(&mut e, name::NETWORK_TYPE, c.u8()?);
    block::read_cell(&mut c, &mut e, Cell::Long)?;
    block::put_bytes(&mut e, name::STATUS_DATA, c.take(2)?);
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u8()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0027 => v
                .u16()
                .map(|p| block::put(&mut e, name::POWER_CENTIVOLTS, p)),
            0x002E => v
                .u32()
                .map(|o| block::put(&mut e, name::ODOMETER_METERS, o)),
            0x003B => v
                .u16()
                .map(|a| block::put(&mut e, name::ACCURACY_CENTIMETERS, a)),
            _ => None,
        };
        if known.is_none() {
            unknown_module(&mut e, kind, value);
        }
    }
    Some(e)
}

/// `0x8C` (`79 79`, FM08ABC): date-time, ACC, OBD values as ASCII `id=value` pairs
/// separated by `,` (values in hex), then 12 trailing bytes kept raw as `tail`. Kind
/// STATUS. Each pair becomes raw `obd_<id>`: the value as a number when it is hex digits
/// (at most 16), as text otherwise (the VIN); text that is not pairs stays whole (`obd`).
pub fn obd(content: &[u8]) -> Option<TelemetryEvent> {
    const TAIL: usize = 12;
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    block::set_time(&mut e, block::read_time(&mut c)?);
    block::put(&mut e, name::ACC, c.u8()?);
    let text = c.take(c.remaining().checked_sub(TAIL)?)?;
    let text = String::from_utf8_lossy(text);
    let pairs: Option<Vec<(&str, &str)>> = text
        .split(',')
        .map(|p| {
            p.split_once('=')
                .filter(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        })
        .collect();
    match pairs {
        Some(pairs) => {
            for (id, value) in pairs {
                let key = format!("{}{id}", name::OBD_PREFIX);
                let hex =
                    (1..=16).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit());
                match u64::from_str_radix(value, 16) {
                    Ok(n) if hex => e.raw.push(raw::uint(key, n)),
                    _ => e.raw.push(raw::string(key, value)),
                }
            }
        }
        None => e.raw.push(raw::string(name::OBD, text.into_owned())),
    }
    block::put_tail(&c, &mut e);
    Some(e)
}

/// The short `0xA3` (GL21L status, under 18 bytes, so no GPS block): terminal info, then
/// the rest kept raw as `status_data`. Kind HEARTBEAT (ALARM when the terminal bits say so).
pub fn short_status(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Heartbeat);
    block::put(&mut e, name::TERMINAL_INFO, c.u8()?);
    if c.remaining() > 0 {
        block::put_bytes(&mut e, name::STATUS_DATA, c.rest());
    }
    Some(e)
}

/// `0x17` of RFID models (35 bytes): GPS block, MCC, MNC, LAC u16, cell id u24, 8-byte
/// driver id, validity byte.
pub fn gps_lbs_rfid(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Standard)?;
    block::put_bytes(&mut e, name::DRIVER_ID, c.take(8)?);
    block::put(&mut e, name::DRIVER_ID_VALID, c.u8()?);
    (c.remaining() == 0).then_some(e)
}

/// Content bytes of the LW4G `0xA2` GPS+LBS+status form (frame length `0x40`).
pub const LW4G_LEN: usize = 59;

/// `0xA2` of LW4G models: GPS block, MCC/MNC, LAC u32, cell id u64, network indicator,
/// terminal info, power u16 (0.01 V), battery (0–6 level or %), GSM signal, alarm byte,
/// language, odometer u32 (m), hours u32 (s), terminal id (8), inputs u16.
pub fn lw4g(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Long)?;
    block::put(&mut e, name::NETWORK_TYPE, c.u8()?);
    block::put(&mut e, name::TERMINAL_INFO, c.u8()?);
    block::put(&mut e, name::POWER_CENTIVOLTS, c.u16()?);
    block::put(&mut e, name::VOLTAGE_LEVEL, c.u8()?);
    block::put(&mut e, name::GSM_SIGNAL, c.u8()?);
    block::put(&mut e, name::ALARM, c.u8()?);
    block::put(&mut e, name::LANGUAGE, c.u8()?);
    block::put(&mut e, name::ODOMETER_METERS, c.u32()?);
    block::put(&mut e, name::ENGINE_SECONDS, c.u32()?);
    block::put_bytes(&mut e, name::TERMINAL_ID, c.take(8)?);
    block::put(&mut e, name::INPUT_STATUS, c.u16()?);
    block::put_tail(&c, &mut e);
    Some(e)
}

/// Content bytes of the SR411 mini `0x24` form (frame length `0x2E`).
pub const SR411_LEN: usize = 41;

/// `0x24` of the SR411 mini: GPS block, a bare cell block, ACC, power and battery u16
/// (0.01 V), then 10 bytes kept raw as `status_data`.
pub fn sr411(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Standard)?;
    block::put(&mut e, name::ACC, c.u8()?);
    block::put(&mut e, name::POWER_CENTIVOLTS, c.u16()?);
    block::put(&mut e, name::BATTERY_CENTIVOLTS, c.u16()?);
    block::put_bytes(&mut e, name::STATUS_DATA, c.rest());
    Some(e)
}

/// Content bytes of the QH302R `0x12` form: the IMEI (8 bytes BCD) before the GPS block.
pub const QH302R_LEN: usize = 34;

/// `0x12` of the QH302R: IMEI (BCD), GPS block, a bare cell block.
pub fn imei_location(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let imei = c.take(8)?;
    if !imei.iter().all(|b| b >> 4 <= 9 && b & 0x0F <= 9) {
        return None;
    }
    let mut e = block::event(EventKind::Position);
    let digits: String = imei
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .map(|n| char::from(b'0' + n))
        .collect();
    e.raw.push(raw::string(name::IMEI, digits));
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Standard)?;
    (c.remaining() == 0).then_some(e)
}
