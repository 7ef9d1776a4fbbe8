//! Model-specific packets of the family, decoded from their public captures: modular GPS
//! (`0x70`), JC100/JC400 alarms (`0x95`), serial pass-through (`0x9B`), Jimi 4G status with
//! modules and the VL103 location form (`0x36`), X1 GPS (`0x34`), AZ735 extended location
//! and alarm (`79 79` `0x32`/`0x33`), GPS+LBS with modules (`0x38`), OBD text (`0x8C`) and
//! the short GL21L status (`0xA3`).
//!
//! Every parser reads through a bounds-checked [`Cursor`] and returns `None` on content
//! that does not fit its layout; the caller then publishes the packet raw (kind UNKNOWN).
//! Sub-blocks with their own length (modules) are read through a cursor over exactly that
//! many bytes, so a wrong inner length cannot make a reader run past its block.

use super::block::{self, Cell, Speed};
use crate::event::{attr, timestamp_secs};
use crate::proto::{EventKind, TelemetryEvent};
use crate::protocol::cursor::Cursor;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn raise(e: &mut TelemetryEvent, alarm: Option<&str>) {
    if let Some(a) = alarm {
        e.set("alarm", attr::string(a));
        e.kind = EventKind::Alarm as i32;
    }
}

/// `0x70` (`79 79`): a list of modules, each type u16, length u16, value. Kind POSITION
/// when a GPS module (`0x0033`) is there, STATUS otherwise; ALARM when an event module
/// reports one. Modules this parser does not know are kept as `module_<type>` bytes.
pub fn modular(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    let mut alarm = None;
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u16()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0003 => {
                e.set("iccid", attr::string(hex(value)));
                Some(())
            }
            0x0009 => v.u8().map(|n| {
                e.set("satellites", attr::uint(n.into()));
            }),
            0x000A => v.u8().map(|n| {
                e.set("satellites_visible", attr::uint(n.into()));
            }),
            0x0011 => (|| {
                let (mcc, mnc, lac) = (v.u16()?, v.u16()?, v.u16()?);
                let cid = v.u24()?;
                let rssi = v.u8()?;
                if cid > 0 {
                    block::set_cell(&mut e, mcc, mnc, lac.into(), cid.into());
                    e.set("cell_rssi", attr::uint(rssi.into()));
                }
                Some(())
            })(),
            0x0018 => v.u16().map(|b| {
                e.set("battery_voltage", attr::double(f64::from(b) / 100.0));
            }),
            0x0028 => v.u8().map(|h| {
                e.set("hdop", attr::double(f64::from(h) / 10.0));
            }),
            0x0029 => v.u32().map(|i| {
                e.set("index", attr::uint(i.into()));
            }),
            0x002A => v.u8().map(|b| {
                e.set("door", attr::boolean(b & 0x0F != 0));
                e.set("tamper", attr::boolean(b >> 4 != 0));
            }),
            0x002B => v.u8().map(|ev| {
                e.set("event", attr::uint(ev.into()));
                alarm = match ev {
                    0x11 => Some("low_battery"),
                    0x12 => Some("low_power"),
                    0x13 => Some("power_cut"),
                    0x14 => Some("removing"),
                    _ => alarm,
                };
            }),
            0x002E => v.u16_le().and_then(|lo| {
                let hi = v.u16_le()?;
                e.set("odometer", attr::uint(u64::from(hi) << 16 | u64::from(lo)));
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
            e.set(format!("module_{kind:04x}"), attr::bytes(value.to_vec()));
        }
    }
    if e.position.is_some() {
        e.kind = EventKind::Position as i32;
        // The satellites/HDOP modules belong to the fix when there is one.
        let sats = match e.attr("satellites") {
            Some(crate::proto::attribute_value::Value::UintValue(n)) => u32::try_from(*n).ok(),
            _ => None,
        };
        let hdop = match e.attr("hdop") {
            Some(crate::proto::attribute_value::Value::DoubleValue(h)) => Some(*h),
            _ => None,
        };
        if let Some(p) = e.position.as_mut() {
            p.satellites = sats.or(p.satellites);
            p.hdop = hdop;
        }
    }
    raise(&mut e, alarm);
    Some(e)
}

/// `0x95` alarm (JC100 / JC400 dash cameras). Short form: date-time, event. Extended form:
/// a GPS block without satellites or speed, event, then video file names. The JC400 form
/// starts with marker `FF FF` and a version byte, and its GPS block has satellites and a
/// u16 speed, followed by the power voltage (0.1 V). `event` is always set; known events
/// raise `alarm`.
pub fn dashcam_alarm(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Alarm);
    let extended = content.len() > 7;
    let jc400 = content.get(..2) == Some(&[0xFF, 0xFF][..]);
    if jc400 {
        c.skip(3)?; // marker, version
    }
    block::set_time(&mut e, block::read_time(&mut c)?);
    if extended {
        if jc400 {
            block::read_gps_fields(&mut c, &mut e, true, Speed::U16)?;
            e.set("external_voltage", attr::double(f64::from(c.u16()?) / 10.0));
        } else {
            block::read_gps_fields(&mut c, &mut e, false, Speed::Absent)?;
        }
    }
    let event = c.u8()?;
    e.set("event", attr::uint(event.into()));
    let alarm = match event {
        0x01 if extended => Some("sos"),
        0x01 => Some("general"),
        0x0E => Some("low_power"),
        0x76 => Some("temperature"),
        0x80 => Some("vibration"),
        0x87 => Some("overspeed"),
        0x88 => Some("power_cut"),
        0x90 => Some("hard_acceleration"),
        0x91 => Some("hard_braking"),
        0x92 => Some("cornering"),
        0x93 => Some("accident"),
        _ => None,
    };
    // Then a u16 (unknown use) and the comma-separated names of the event's video files.
    if c.skip(2).is_some() {
        let files = c.rest();
        if !files.is_empty() && files.iter().all(|b| b.is_ascii_graphic()) {
            e.set(
                "event_files",
                attr::string(String::from_utf8_lossy(files).into_owned()),
            );
        }
    }
    match alarm {
        Some(a) => e.set("alarm", attr::string(a)),
        None => e.kind = EventKind::Status as i32,
    }
    if e.position.is_some() && alarm.is_none() {
        e.kind = EventKind::Position as i32;
    }
    Some(e)
}

/// `0x9B` (`79 79`): data an external device (RFID reader, sensor) passed through. Kind
/// STATUS with `external_device_type`, `data` (bytes) and `result`: the text, trimmed,
/// when it is printable, otherwise its hex.
pub fn serial_passthrough(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    e.set("external_device_type", attr::uint(c.u8()?.into()));
    let data = c.rest();
    let printable = data
        .iter()
        .all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
    let result = if printable {
        String::from_utf8_lossy(data).trim().to_string()
    } else {
        hex(data)
    };
    e.set("data", attr::bytes(data.to_vec()));
    e.set("result", attr::string(result));
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
    let alarm = block::read_status(&mut c, &mut e, false)?;
    c.skip(1)?; // language
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u8()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0018 => v.u16().map(|b| {
                e.set("battery_voltage", attr::double(f64::from(b) / 100.0));
            }),
            0x0032 => v.u8().map(|b| {
                e.set("startup_status", attr::uint(b.into()));
            }),
            0x006A => v.u8().map(|b| {
                e.set("battery_percent", attr::uint(b.into()));
            }),
            _ => None,
        };
        if known.is_none() {
            e.set(format!("module_{kind:04x}"), attr::bytes(value.to_vec()));
        }
    }
    if alarm {
        e.kind = EventKind::Alarm as i32;
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
    block::set_cell(&mut e, mcc, mnc, lac.into(), cid.into());
    e.set("ignition", attr::boolean(c.u8()? != 0));
    e.set("status_data", attr::bytes(c.take(12)?.to_vec()));
    set_driver_id(&mut e, c.take(8)?);
    Some(e)
}

/// An 8-byte driver (RFID) id as hex; all zeros means no card.
pub fn set_driver_id(e: &mut TelemetryEvent, id: &[u8]) {
    if id.iter().any(|&b| b != 0) {
        e.set("driver_id", attr::string(hex(id)));
    }
}

/// `0x34` X1 GPS: data/alarm u32, GPS block, terminal info u16, odometer u32 (m), MCC
/// u16, MNC u8, LAC u16, cell id u32, driver id u32, battery and power u16 (0.01 V),
/// port info u32 (bits 20–23: ADC count), inputs u8, outputs u8, ADCs u16 (0.01 V).
pub fn x1_gps(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    e.set("data_alarm", attr::uint(c.u32()?.into()));
    block::read_gps(&mut c, &mut e)?;
    e.set("terminal_info", attr::uint(c.u16()?.into()));
    e.set("odometer", attr::uint(c.u32()?.into()));
    let (mcc, mnc, lac, cid) = (c.u16()?, c.u8()?, c.u16()?, c.u32()?);
    block::set_cell(&mut e, mcc, mnc.into(), lac.into(), cid.into());
    let driver = c.u32()?;
    if driver > 0 {
        e.set("driver_id", attr::string(driver.to_string()));
    }
    e.set("battery_voltage", attr::double(f64::from(c.u16()?) / 100.0));
    e.set(
        "external_voltage",
        attr::double(f64::from(c.u16()?) / 100.0),
    );
    let ports = c.u32()?;
    e.set("inputs", attr::uint(c.u8()?.into()));
    e.set("outputs", attr::uint(c.u8()?.into()));
    for i in 1..=(ports >> 20) & 0x0F {
        e.set(format!("adc{i}"), attr::double(f64::from(c.u16()?) / 100.0));
    }
    Some(e)
}

/// AZ735 `79 79` `0x32` (location) / `0x33` (alarm): date-time, GPS length (0 = no fix
/// block), GPS fields, cell length (0 = none), cell + RSSI, then length-prefixed extra
/// cells and access points (kept raw), a status byte and a length-prefixed reserved block.
pub fn az735(protocol: u8, content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    block::set_time(&mut e, block::read_time(&mut c)?);
    if c.u8()? != 0 {
        block::read_gps_fields(&mut c, &mut e, true, Speed::U8)?;
        e.kind = EventKind::Position as i32;
    }
    if c.u8()? != 0 {
        block::read_cell(&mut c, &mut e, Cell::Standard)?;
        e.set("gsm_signal", attr::uint(c.u8()?.into()));
    }
    let n = usize::from(c.u8()?);
    let cells = c.take(n)?;
    if !cells.is_empty() {
        e.set("extra_cells", attr::bytes(cells.to_vec()));
    }
    let n = usize::from(c.u8()?);
    let wifi = c.take(n)?;
    if !wifi.is_empty() {
        e.set("wifi_raw", attr::bytes(wifi.to_vec()));
    }
    let status = c.u8()?;
    e.set("status", attr::uint(status.into()));
    if protocol == 0x33 {
        match status {
            0xA0 => e.set("armed", attr::boolean(true)),
            0xA1 => e.set("armed", attr::boolean(false)),
            0xA2 | 0xA3 => raise(&mut e, Some("low_battery")),
            0xA4 => raise(&mut e, Some("general")),
            0xA5 => raise(&mut e, Some("door")),
            _ => {}
        }
    }
    let n = usize::from(c.u8()?);
    c.skip(n)?;
    Some(e)
}

/// `0x38`: GPS block, upload mode, re-upload flag, network type, MCC/MNC, LAC u32, cell id
/// u64, two status bytes, then modules of type u16, length u8 (`0x0027` power 0.01 V,
/// `0x002E` odometer m, `0x003B` accuracy 0.01 m; others kept as `module_<type>`).
pub fn gps_lbs_modules(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    e.set("upload_mode", attr::uint(c.u8()?.into()));
    e.set("archive", attr::boolean(c.u8()? != 0));
    e.set("network_type", attr::uint(c.u8()?.into()));
    block::read_cell(&mut c, &mut e, Cell::Long)?;
    e.set("status_data", attr::bytes(c.take(2)?.to_vec()));
    while c.remaining() > 0 {
        let kind = c.u16()?;
        let len = usize::from(c.u8()?);
        let value = c.take(len)?;
        let mut v = Cursor::new(value);
        let known = match kind {
            0x0027 => v.u16().map(|p| {
                e.set("external_voltage", attr::double(f64::from(p) / 100.0));
            }),
            0x002E => v.u32().map(|o| {
                e.set("odometer", attr::uint(o.into()));
            }),
            0x003B => v.u16().map(|a| {
                e.set("accuracy", attr::double(f64::from(a) / 100.0));
            }),
            _ => None,
        };
        if known.is_none() {
            e.set(format!("module_{kind:04x}"), attr::bytes(value.to_vec()));
        }
    }
    Some(e)
}

/// `0x8C` (`79 79`, FM08ABC): date-time, ACC, `id=value` OBD pairs as ASCII separated by
/// `,`, then 12 trailing bytes kept raw. Kind STATUS with `obd` (the text).
pub fn obd(content: &[u8]) -> Option<TelemetryEvent> {
    const TAIL: usize = 12;
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Status);
    block::set_time(&mut e, block::read_time(&mut c)?);
    e.set("ignition", attr::boolean(c.u8()? != 0));
    let text = c.take(c.remaining().checked_sub(TAIL)?)?;
    e.set(
        "obd",
        attr::string(String::from_utf8_lossy(text).into_owned()),
    );
    e.set("obd_tail", attr::bytes(c.rest().to_vec()));
    Some(e)
}

/// The short `0xA3` (GL21L status, under 18 bytes, so no GPS block): terminal info, then
/// the rest kept raw as `status_data`. Kind HEARTBEAT, ALARM when the terminal bits say so.
pub fn short_status(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Heartbeat);
    let alarm = block::set_terminal_info(&mut e, c.u8()?);
    e.set("status_data", attr::bytes(c.rest().to_vec()));
    raise(&mut e, alarm);
    Some(e)
}

/// `0x17` of RFID models (35 bytes): GPS block, MCC, MNC, LAC u16, cell id u24, 8-byte
/// driver id, validity byte.
pub fn gps_lbs_rfid(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Standard)?;
    set_driver_id(&mut e, c.take(8)?);
    e.set("driver_id_valid", attr::boolean(c.u8()? != 0));
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
    e.set("network_type", attr::uint(c.u8()?.into()));
    let from_bits = block::set_terminal_info(&mut e, c.u8()?);
    e.set(
        "external_voltage",
        attr::double(f64::from(c.u16()?) / 100.0),
    );
    e.set("battery_level", attr::uint(c.u8()?.into()));
    e.set("gsm_signal", attr::uint(c.u8()?.into()));
    let code = c.u8()?;
    if code != 0 {
        e.set("alarm_code", attr::uint(code.into()));
    }
    c.skip(1)?; // language
    e.set("odometer", attr::uint(c.u32()?.into()));
    e.set("engine_seconds", attr::uint(c.u32()?.into()));
    e.set("terminal_id", attr::string(hex(c.take(8)?)));
    e.set("inputs", attr::uint(c.u16()?.into()));
    raise(&mut e, block::alarm_name(code).or(from_bits));
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
    e.set("ignition", attr::boolean(c.u8()? != 0));
    e.set(
        "external_voltage",
        attr::double(f64::from(c.u16()?) / 100.0),
    );
    e.set("battery_voltage", attr::double(f64::from(c.u16()?) / 100.0));
    e.set("status_data", attr::bytes(c.rest().to_vec()));
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
    block::read_gps(&mut c, &mut e)?;
    block::read_cell(&mut c, &mut e, Cell::Standard)?;
    (c.remaining() == 0).then_some(e)
}
