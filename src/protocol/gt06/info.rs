//! Information transmission (`0x94`), time calibration (`0x8A`) and address requests
//! (`0x1A`, `0x2A`) with their replies.

use std::time::SystemTime;

use bytes::Bytes;

use super::block;
use super::frame;
use super::mapping::name;
use crate::event::raw;
use crate::proto::{EventKind, TelemetryEvent};
use crate::protocol::cursor::Cursor;

/// The address reply's protocol number (English address).
pub const ADDRESS_REPLY: u8 = 0x97;

/// What we answer an address request with: no address, no phone, "0" alarm. The gateway
/// does no reverse geocoding; this neutral reply (the form public servers send) only stops
/// the device from waiting and retrying.
pub const NEUTRAL_ADDRESS: &[u8] = b"NA&&NA&&0##";

/// `0x8A`: the current UTC time as `YY MM DD hh mm ss`, in the framing the request came in,
/// echoing its serial.
pub fn time_reply(extended: bool, serial: u16, now: SystemTime) -> Bytes {
    let (y, mo, d, h, mi, s) = block::secs_to_civil(now);
    let yy = u8::try_from(y.saturating_sub(2000).clamp(0, 255)).unwrap_or_default();
    frame::encode(extended, 0x8A, &[yy, mo, d, h, mi, s], serial)
}

/// The address reply: `79 79`, protocol `0x97`, content = text length u8, server flag u32
/// (0), [`NEUTRAL_ADDRESS`]; the request's serial echoed.
pub fn address_reply(serial: u16) -> Bytes {
    let mut content = Vec::with_capacity(5 + NEUTRAL_ADDRESS.len());
    content.push(NEUTRAL_ADDRESS.len() as u8);
    content.extend_from_slice(&[0, 0, 0, 0]);
    content.extend_from_slice(NEUTRAL_ADDRESS);
    frame::encode(true, ADDRESS_REPLY, &content, serial)
}

/// An address request carries a GPS block, then (`0x2A`) a 21-byte phone number (ASCII,
/// NUL-padded) and the alarm and language bytes. Published as a position with raw `phone`.
pub fn address_request(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Position);
    block::read_gps(&mut c, &mut e)?;
    if let Some(phone) = c.take(21) {
        let phone: String = phone
            .iter()
            .filter(|b| b.is_ascii_graphic())
            .map(|&b| char::from(b))
            .collect();
        if !phone.is_empty() {
            e.raw.push(raw::string(name::PHONE, phone));
        }
        if let Some(a) = c.u8() {
            block::put(&mut e, name::ALARM, a);
        }
        block::read_language(&mut c, &mut e);
    }
    block::put_tail(&c, &mut e);
    Some(e)
}

/// `0x94`: a sub-type byte and its content. Kind STATUS with raw `info_type`; the simple
/// sub-types are decoded, the rest kept as `info_content` bytes.
pub fn information(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let sub = c.u8()?;
    let mut e = block::event(EventKind::Status);
    block::put(&mut e, name::INFO_TYPE, sub);
    let rest = c.rest();
    let decoded = match sub {
        // External power voltage, 0.01 V.
        0x00 => c
            .u16()
            .map(|v| block::put(&mut e, name::POWER_CENTIVOLTS, v)),
        // Terminal status synchronisation: ASCII `ALM1=..;ALM2=..;...`.
        0x04 => {
            e.raw.push(raw::text(name::STATUS_SYNC, rest));
            c.skip(rest.len())
        }
        // Door status: bit 0 door (bit 2: input 1), after a date-time on some models.
        0x05 => (|| {
            if c.remaining() >= 7 {
                block::set_time(&mut e, block::read_time(&mut c)?);
            }
            block::put(&mut e, name::DOOR_STATUS, c.u8()?);
            Some(())
        })(),
        // External device data: RFID text (`RFID:...`) or a framed card read (header,
        // type, 4-byte card id, checksum, footer).
        0x1B => (|| {
            if rest.first()?.is_ascii_alphabetic() {
                let text = String::from_utf8_lossy(rest).trim().to_string();
                e.raw.push(raw::string(name::RFID_TEXT, text));
                c.skip(rest.len())
            } else {
                c.skip(2)?;
                block::put_bytes(&mut e, name::DRIVER_ID, c.take(4)?);
                c.skip(c.remaining().min(2))
            }
        })(),
        // IMEI (8), IMSI (8), ICCID (10), all BCD.
        0x0A => (|| {
            let imei = c.take(8)?;
            let imsi = c.take(8)?;
            let iccid = c.take(10)?;
            e.raw.push(raw::string(name::IMEI, bcd_digits(imei)));
            e.raw.push(raw::string(name::IMSI, bcd_digits(imsi)));
            e.raw.push(raw::string(name::ICCID, bcd_digits(iccid)));
            Some(())
        })(),
        _ => None,
    };
    if decoded.is_none() {
        block::put_bytes(&mut e, name::INFO_CONTENT, rest);
    } else {
        block::put_tail(&c, &mut e);
    }
    Some(e)
}

/// BCD digits with the padding nibbles (`F`) and a leading pad zero dropped.
fn bcd_digits(b: &[u8]) -> String {
    let s: String = b
        .iter()
        .flat_map(|x| [x >> 4, x & 0x0F])
        .filter(|&n| n <= 9)
        .map(|n| char::from(b'0' + n))
        .collect();
    match s.strip_prefix('0') {
        Some(t) if s.len() == b.len() * 2 => t.to_string(),
        _ => s,
    }
}
