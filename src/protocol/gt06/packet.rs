//! Packet dispatch: turns one checked frame (after login) into events and the exact reply.
//!
//! The GPS/LBS/status families share one table-driven parser here; the multi-cell and Wi-Fi
//! packets live in `lbs`, information/time/address in `info`, command traffic in `command`.
//!
//! A frame whose CRC holds was sent by the device, so content this parser cannot read is
//! still published (kind UNKNOWN, its bytes as raw `content`, the attribute `decode_error`
//! when a known type did not fit its layout) and acknowledged as its type would be:
//! refusing it would only make the device resend it forever.
//!
//! Events come out with their raw values, position, cells and Wi-Fi; the session maps them
//! onto the vocabulary (`mapping::apply`) with the device's profile.

use std::time::SystemTime;

use bytes::Bytes;

use super::block::{self, Cell};
use super::frame::{self, RawFrame};
use super::mapping::name;
use super::{command, ext, info, lbs};
use crate::event::{attr, raw};
use crate::proto::{EventKind, TelemetryEvent};
use crate::protocol::cursor::Cursor;
use crate::protocol::CommandAnswer;

/// What one packet produced.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<TelemetryEvent>,
    pub reply: Option<Bytes>,
    /// The device's answer to a command (`0x15`, `0x21`).
    pub answers: Vec<CommandAnswer>,
}

/// The layout of a GPS/LBS/status packet.
#[derive(Debug, Clone, Copy)]
struct Layout {
    gps: bool,
    cell: Option<Cell>,
    /// The cell block starts with its own length byte (the status packets).
    cell_length: bool,
    status: bool,
    /// ACC, upload mode and re-upload flag follow (`0x22` family).
    extras: bool,
}

const fn layout(gps: bool, cell: Option<Cell>, cell_length: bool, status: bool) -> Layout {
    Layout {
        gps,
        cell,
        cell_length,
        status,
        extras: false,
    }
}

fn layout_of(protocol: u8, extended: bool) -> Option<Layout> {
    use Cell::*;
    Some(match protocol {
        0x10 => layout(true, None, false, false),
        0x11 => layout(true, Some(Wide), false, false),
        0x12 | 0x31 | 0x1E => layout(true, Some(Standard), false, false),
        0x22 | 0x37 | 0x2D => Layout {
            extras: true,
            ..layout(true, Some(Standard), false, false)
        },
        0xA0 => Layout {
            extras: true,
            ..layout(true, Some(Long), false, false)
        },
        0x16 | 0x26 | 0x27 => layout(true, Some(Standard), true, true),
        // The basic form of 0x32 is GPS+LBS+status; the 79 79 form (AZ735) is not.
        0x32 if !extended => layout(true, Some(Standard), true, true),
        0xA3 | 0xA4 => layout(true, Some(Long), true, true),
        0x19 => layout(false, Some(Standard), true, true),
        // The GK310/LL301 LBS alarm has no length byte before its cell block.
        0xA5 => layout(false, Some(Long), false, true),
        _ => return None,
    })
}

/// Decodes one packet. `now` is only used to answer time requests. Every event starts with
/// the raw `protocol_number` and ends with the packet's `serial`.
pub fn decode(f: &RawFrame, now: SystemTime) -> Decoded {
    let mut d = decode_content(f, now);
    for e in &mut d.events {
        e.raw
            .insert(0, raw::uint(name::PROTOCOL_NUMBER, f.protocol.into()));
        if f.wifi_count.is_none() {
            e.raw.push(raw::uint(name::SERIAL, f.serial.into()));
        }
    }
    d
}

fn decode_content(f: &RawFrame, now: SystemTime) -> Decoded {
    let ack = || Some(frame::ack(f.extended, f.protocol, f.serial));
    if let Some(count) = f.wifi_count {
        return match lbs::wifi_variant(&f.content, count) {
            Some(e) => one(
                e,
                Some(frame::wifi_variant_reply(
                    f.protocol,
                    f.content.get(..6).unwrap_or_default(),
                )),
            ),
            None => unknown(f, "Wi-Fi packet shorter than its counts", None),
        };
    }
    let parsed: Option<Decoded> = match f.protocol {
        0x13 => status(&f.content).map(|e| one(e, ack())),
        0x23 => heartbeat(&f.content).map(|e| one(e, ack())),
        0x1A | 0x2A => {
            info::address_request(&f.content).map(|e| one(e, Some(info::address_reply(f.serial))))
        }
        0x8A => Some(Decoded {
            reply: Some(info::time_reply(f.extended, f.serial, now)),
            ..Default::default()
        }),
        // Information transmission: the device expects no reply.
        0x94 => info::information(&f.content).map(|e| one(e, None)),
        // Command replies: 0x15 is acknowledged like any basic packet; the extended 0x21
        // is not (the device does not wait for one).
        0x15 => command::response_ascii(&f.content).map(|(e, a)| answered(e, a, ack())),
        0x21 => command::response_encoded(&f.content).map(|(e, a)| answered(e, a, None)),
        0xA2 if f.content.len() == ext::LW4G_LEN => ext::lw4g(&f.content).map(|e| one(e, ack())),
        0x24 if f.content.len() == ext::SR411_LEN => ext::sr411(&f.content).map(|e| one(e, ack())),
        0x12 if f.content.len() == ext::QH302R_LEN => match ext::imei_location(&f.content) {
            Some(e) => Some(one(e, ack())),
            None => layout_of(0x12, f.extended)
                .and_then(|l| location(0x12, &f.content, f.extended, l))
                .map(|e| one(e, ack())),
        },
        0x18 | 0x28 | 0x2E | 0x24 | 0x2C | 0xA1 | 0xA2 => {
            lbs::multi_cell(f.protocol, &f.content).map(|e| one(e, ack()))
        }
        0x17 if f.content.len() == RFID_LEN => ext::gps_lbs_rfid(&f.content).map(|e| one(e, ack())),
        // With a length and a CRC, models disagree on the layout (some put a GPS block
        // there): published as it came.
        0x17 | 0x69 => return unknown(f, "", ack()),
        // GPS modules: Traccar, which these devices are deployed against, answers in the
        // basic framing whatever framing the packet came in.
        0x70 => ext::modular(&f.content).map(|e| one(e, Some(frame::ack(false, 0x70, f.serial)))),
        0x95 => ext::dashcam_alarm(&f.content).map(|e| one(e, ack())),
        // Pass-through, X1 GPS and OBD data: the devices expect no reply.
        0x9B => ext::serial_passthrough(&f.content).map(|e| one(e, None)),
        0x34 => ext::x1_gps(&f.content).map(|e| one(e, None)),
        0x8C => ext::obd(&f.content).map(|e| one(e, None)),
        0x36 => ext::status_or_vl103(&f.content).map(|e| one(e, ack())),
        0x32 | 0x33 if f.extended => ext::az735(f.protocol, &f.content).map(|e| one(e, ack())),
        0x38 => ext::gps_lbs_modules(&f.content).map(|e| one(e, ack())),
        0xA3 if f.content.len() < 18 => ext::short_status(&f.content).map(|e| one(e, ack())),
        // Server-to-device types echoed back: publish, never acknowledge a command.
        0x80..=0x82 => return unknown(f, "server-to-device packet type", None),
        p => match layout_of(p, f.extended) {
            Some(l) => location(p, &f.content, f.extended, l).map(|e| one(e, ack())),
            None => return unknown(f, "", ack()),
        },
    };
    match parsed {
        Some(d) => d,
        None => {
            // The reply the type would have had, so the device moves on.
            let reply = match f.protocol {
                0x94 | 0x21 | 0x80..=0x82 | 0x9B | 0x34 | 0x8C => None,
                0x70 => Some(frame::ack(false, 0x70, f.serial)),
                _ => ack(),
            };
            unknown(f, "content shorter than its packet type", reply)
        }
    }
}

fn one(e: TelemetryEvent, reply: Option<Bytes>) -> Decoded {
    Decoded {
        events: vec![e],
        reply,
        answers: Vec::new(),
    }
}

fn answered(e: TelemetryEvent, answer: CommandAnswer, reply: Option<Bytes>) -> Decoded {
    Decoded {
        events: vec![e],
        reply,
        answers: vec![answer],
    }
}

/// An event carrying the packet as it came: kind UNKNOWN, raw `content` (without serial),
/// and the attribute `decode_error` when a known type failed to parse (the gateway's
/// diagnosis, not a device value).
fn unknown(f: &RawFrame, error: &str, reply: Option<Bytes>) -> Decoded {
    let mut e = block::event(EventKind::Unknown);
    block::put_bytes(&mut e, name::CONTENT, &f.content);
    if !error.is_empty() {
        e.set("decode_error", attr::string(error));
    }
    one(e, reply)
}

/// Content bytes of the VXT01 form of `0x12`/`0x16` (frame length `0x24`): GPS block, a
/// cell block without length byte, then a status block.
const VXT01_LEN: usize = 31;
/// Content bytes of the RFID form of `0x17` (frame length `0x28`).
const RFID_LEN: usize = 35;
/// Bytes of a cell block without its length byte, and of a status block.
const CELL_LEN: usize = 8;
const STATUS_LEN: usize = 5;
/// The zeroed multi-cell block some firmware sends after a cell length of 0.
const ZEROED_CELLS_LEN: usize = 45;

/// A GPS/LBS/status packet. Kind POSITION with a GPS block, LBS without (the mapping makes
/// it ALARM when the packet reports an alarm).
fn location(protocol: u8, content: &[u8], extended: bool, l: Layout) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(if l.gps {
        EventKind::Position
    } else {
        EventKind::Lbs
    });
    if l.gps {
        block::read_gps(&mut c, &mut e)?;
    }
    // VXT01 trackers send 0x12 and 0x16 with a bare cell block and their own status
    // block; they are told apart by length alone.
    let vxt01 = !extended && matches!(protocol, 0x12 | 0x16) && content.len() == VXT01_LEN;
    if vxt01 {
        block::read_cell(&mut c, &mut e, Cell::Standard)?;
        vxt01_status(&mut c, &mut e, protocol == 0x12)?;
        block::put_tail(&c, &mut e);
        return Some(e);
    }
    if let Some(cell) = l.cell {
        if l.cell_length {
            // Some firmware writes length 0 yet still sends the (zeroed) cell block: skip
            // it when exactly a cell block and a status block follow.
            let zero_length = c.rest().first() == Some(&0) && matches!(protocol, 0x16 | 0x26);
            // Others write length 0 and then 45 bytes of zeroed multi-cell data.
            let zeroed_block = zero_length
                && c.remaining() >= 1 + ZEROED_CELLS_LEN + STATUS_LEN
                && c.rest()
                    .get(1 + CELL_LEN + 1..1 + ZEROED_CELLS_LEN)
                    .is_some_and(|b| b.iter().all(|&x| x == 0));
            if zero_length && c.remaining() == 1 + CELL_LEN + STATUS_LEN {
                c.skip(1 + CELL_LEN)?;
            } else if zeroed_block {
                c.skip(1 + ZEROED_CELLS_LEN)?;
            } else {
                block::read_cell_with_length(&mut c, &mut e, cell)?;
            }
        } else {
            // A zero-filled cell block is still a cell block; some devices omit it entirely.
            if c.remaining() > 0 {
                block::read_cell(&mut c, &mut e, cell)?;
            }
        }
    }
    if l.status {
        // 0x16/0x26 status blocks are 5 bytes; the 6-byte form some models send carries a
        // u16 battery value (the rest of the layout is unchanged).
        let wide = matches!(protocol, 0x16 | 0x26) && c.remaining() == 6;
        block::read_status(&mut c, &mut e, wide)?;
        block::read_language(&mut c, &mut e);
        // VL103 and RFID-capable models append the 8-byte id of the driver's card.
        if matches!(protocol, 0x16 | 0x26) && c.remaining() == 8 {
            block::put_bytes(&mut e, name::DRIVER_ID, c.take(8)?);
        }
    }
    if l.extras && c.remaining() >= 3 {
        block::put(&mut e, name::ACC, c.u8()?);
        block::put(&mut e, name::UPLOAD_MODE, c.u8()?);
        block::put(&mut e, name::GPS_REUPLOAD, c.u8()?);
    }
    block::put_tail(&c, &mut e);
    Some(e)
}

/// The VXT01 status block: terminal info, then for `0x12` the supply voltage u16 (0.01 V),
/// for `0x16` the 0–6 level, GSM signal, and an alarm extension byte that is not an alarm
/// code. (On this model the terminal bits `111` mean overspeed: profile `gt06-vxt01`.)
fn vxt01_status(c: &mut Cursor, e: &mut TelemetryEvent, voltage: bool) -> Option<()> {
    block::put(e, name::TERMINAL_INFO, c.u8()?);
    if voltage {
        block::put(e, name::POWER_CENTIVOLTS, c.u16()?);
    } else {
        block::put(e, name::VOLTAGE_LEVEL, c.u8()?);
    }
    block::put(e, name::GSM_SIGNAL, c.u8()?);
    block::put(e, name::ALARM_EXTENSION, c.u8()?);
    Some(())
}

/// `0x13` status/heartbeat: terminal info, voltage level, GSM signal, alarm, language.
/// Kind HEARTBEAT (ALARM when it reports one).
fn status(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Heartbeat);
    block::read_status(&mut c, &mut e, false)?;
    block::read_language(&mut c, &mut e);
    block::put_tail(&c, &mut e);
    Some(e)
}

/// `0x23` heartbeat (GK310 and later): terminal info, battery voltage u16 (0.01 V), GSM
/// signal, language u16.
fn heartbeat(content: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(content);
    let mut e = block::event(EventKind::Heartbeat);
    block::put(&mut e, name::TERMINAL_INFO, c.u8()?);
    if let Some(v) = c.u16() {
        block::put(&mut e, name::BATTERY_CENTIVOLTS, v);
    }
    if let Some(g) = c.u8() {
        block::put(&mut e, name::GSM_SIGNAL, g);
    }
    if let Some(l) = c.u16() {
        block::put(&mut e, name::LANGUAGE, l);
    }
    block::put_tail(&c, &mut e);
    Some(e)
}
