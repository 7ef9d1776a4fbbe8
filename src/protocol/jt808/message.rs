//! Message bodies: what each terminal message becomes (events, typed command answers) and the
//! exact reply the platform owes it.
//!
//! | id | message | event | reply |
//! | --- | --- | --- | --- |
//! | `0001` | terminal general answer | COMMAND_RESPONSE, a typed answer | — |
//! | `0002` | heartbeat | HEARTBEAT | `8001` |
//! | `0003` | logout | — | `8001` |
//! | `0100` | registration | STATUS (the terminal's data) | `8100`, code = the terminal number |
//! | `0102` | authentication | STATUS for the 2019 form (IMEI, software version) | `8001` |
//! | `0104` | parameter query answer | COMMAND_RESPONSE, a typed answer | — |
//! | `0107` | terminal attributes | STATUS (ICCID, versions) | `8001` |
//! | `0109` | time sync request | — | `8109`, the UTC time |
//! | `0200` | location report | POSITION / STATUS | `8001` |
//! | `0201` | location query answer | POSITION / STATUS, a typed answer | — |
//! | `0210` | vendor battery report (7 bytes) or batch (u8 lengths) | STATUS / one per record | `8001` |
//! | `0500` | vehicle control answer | POSITION / STATUS, a typed answer | — |
//! | `0701` | electronic waybill (text some models answer commands with) | COMMAND_RESPONSE | `8001` |
//! | `0702` | driver identity | STATUS (driver id) | `8001` |
//! | `0704` | location batch | one per record | `8001` |
//! | `0800` | multimedia event | STATUS | `8001` |
//! | `0801` | multimedia upload | FILE | `8800`, nothing to resend |
//! | `0900` | pass-through | STATUS (type and data raw) | `8001` |
//! | `1007` | time-zone sync (vendor) | — | `8001` |
//! | `1300` | text answer (vendor) | COMMAND_RESPONSE, a typed answer | — |
//! | `5501` `5502` | JT701 e-lock report | POSITION | `4401` when attribute bit 15 asks |
//! | `6006` | text report (vendor) | COMMAND_RESPONSE | `8001` |
//! | other | — | UNKNOWN (body raw) | `8001`; none for ids from `8000` up (the platform's own, echoed) |
//!
//! Replies carry serial 0 in their own header, as the deployed servers send them (the worked
//! examples in the protocol notes); the answered serial and id are in the body.

use std::time::SystemTime;

use bytes::Bytes;

use super::command::{self, tag};
use super::frame::{self, bcd_digits, Header, RESERVED_BIT};
use super::location::{self, event};
use super::mapping::name;
use crate::event::{raw, timestamp_secs};
use crate::proto::{EventKind, File, TelemetryEvent};
use crate::protocol::cursor::Cursor;
use crate::protocol::{AnswerOutcome, CommandAnswer};

pub const TERMINAL_ANSWER: u16 = 0x0001;
pub const HEARTBEAT: u16 = 0x0002;
pub const LOGOUT: u16 = 0x0003;
pub const REGISTRATION: u16 = 0x0100;
pub const AUTHENTICATION: u16 = 0x0102;
pub const PARAMETERS_ANSWER: u16 = 0x0104;
pub const ATTRIBUTES: u16 = 0x0107;
pub const TIME_SYNC: u16 = 0x0109;
pub const LOCATION: u16 = 0x0200;
pub const LOCATION_ANSWER: u16 = 0x0201;
pub const BATCH_VENDOR: u16 = 0x0210;
pub const VEHICLE_CONTROL_ANSWER: u16 = 0x0500;
pub const WAYBILL: u16 = 0x0701;
pub const DRIVER_IDENTITY: u16 = 0x0702;
pub const BATCH: u16 = 0x0704;
pub const MEDIA_EVENT: u16 = 0x0800;
pub const MEDIA_UPLOAD: u16 = 0x0801;
pub const PASSTHROUGH: u16 = 0x0900;
pub const TIMEZONE_SYNC: u16 = 0x1007;
pub const TEXT_ANSWER: u16 = 0x1300;
pub const TEXT_REPORT: u16 = 0x6006;

/// Platform messages.
pub const GENERAL_ANSWER: u16 = 0x8001;
pub const REGISTRATION_ANSWER: u16 = 0x8100;
pub const TIME_SYNC_ANSWER: u16 = 0x8109;
pub const MEDIA_UPLOAD_ANSWER: u16 = 0x8800;

/// `8001` results.
pub const RESULT_OK: u8 = 0;
pub const RESULT_BAD_MESSAGE: u8 = 2;
pub const RESULT_UNSUPPORTED: u8 = 3;

/// Messages whose content carries the device's own time: their events' ids leave the serial
/// out, so a record resent under a new serial gets the same ids. Every other message (a
/// heartbeat is the same bytes every time) has its serial in the id.
pub fn timestamped(id: u16) -> bool {
    matches!(
        id,
        LOCATION
            | LOCATION_ANSWER
            | VEHICLE_CONTROL_ANSWER
            | BATCH
            | BATCH_VENDOR
            | MEDIA_UPLOAD
            | DRIVER_IDENTITY
            | frame::LOCATION_JT701
            | frame::LOCATION_JT701_BLIND
    )
}

/// What a message gave.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<TelemetryEvent>,
    pub reply: Option<Bytes>,
    pub answers: Vec<CommandAnswer>,
    pub lenient: Vec<&'static str>,
}

/// What decoding needs besides the message.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The protocol's time zone, minutes east of UTC.
    pub offset_minutes: i32,
    pub now: SystemTime,
}

/// The platform general answer (`8001`) to the message (or package) `h`.
pub fn general_answer(h: &Header, result: u8) -> Bytes {
    let mut body = Vec::with_capacity(5);
    body.extend_from_slice(&h.serial.to_be_bytes());
    body.extend_from_slice(&h.id.to_be_bytes());
    body.push(result);
    frame::encode(GENERAL_ANSWER, &h.addressee(), 0, &body)
}

fn start(kind: EventKind, id: u16) -> TelemetryEvent {
    let mut e = event(kind);
    e.raw.push(raw::uint(name::MESSAGE_ID, id.into()));
    e
}

fn end(mut e: TelemetryEvent, serial: u16) -> TelemetryEvent {
    e.raw.push(raw::uint(name::SERIAL, serial.into()));
    e
}

/// Text as sent: a string when it is UTF-8 (GBK's ASCII subset), bytes otherwise; NUL and
/// space padding removed.
fn text_value(n: &str, b: &[u8]) -> crate::proto::RawValue {
    let end = b
        .iter()
        .rposition(|&c| c != 0 && c != b' ')
        .map_or(0, |i| i + 1);
    raw::text(n, b.get(..end).unwrap_or_default())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_matches(['\0', ' '])
        .to_string()
}

/// Decodes one whole message. `serial` is the message's serial (a sub-packaged message's
/// first package's); replies answer `h` (the last package).
pub fn decode(h: &Header, serial: u16, body: &[u8], ctx: &Context) -> Decoded {
    let mut d = Decoded::default();
    let ok = || Some(general_answer(h, RESULT_OK));
    match h.id {
        TERMINAL_ANSWER => {
            if let Some((e, a)) = terminal_answer(body, serial) {
                d.events.push(e);
                d.answers.push(a);
            } else {
                d.events.push(unknown(h.id, body, serial));
            }
        }
        HEARTBEAT => {
            let mut e = start(EventKind::Heartbeat, h.id);
            if !body.is_empty() {
                e.raw.push(raw::bytes(name::BODY, body));
            }
            d.events.push(end(e, serial));
            d.reply = ok();
        }
        LOGOUT | TIMEZONE_SYNC => d.reply = ok(),
        REGISTRATION => {
            d.events
                .push(match registration(body, h.version.is_some()) {
                    Some(e) => end(e, serial),
                    None => unknown(h.id, body, serial),
                });
            let mut b = Vec::with_capacity(24);
            b.extend_from_slice(&h.serial.to_be_bytes());
            b.push(RESULT_OK);
            b.extend_from_slice(h.terminal.auth_code().as_bytes());
            d.reply = Some(frame::encode(REGISTRATION_ANSWER, &h.addressee(), 0, &b));
        }
        AUTHENTICATION => {
            if h.version.is_some() {
                if let Some(e) = authentication_2019(body) {
                    d.events.push(end(e, serial));
                }
            }
            d.reply = ok();
        }
        PARAMETERS_ANSWER => match parameters_answer(body, serial) {
            Some((e, a)) => {
                d.events.push(e);
                d.answers.push(a);
            }
            None => d.events.push(unknown(h.id, body, serial)),
        },
        ATTRIBUTES => {
            d.events.push(match attributes(body, h.version.is_some()) {
                Some(e) => end(e, serial),
                None => unknown(h.id, body, serial),
            });
            d.reply = ok();
        }
        TIME_SYNC => d.reply = Some(time_sync_answer(h, ctx.now)),
        LOCATION => {
            d.events
                .push(location_event(h.id, body, serial, ctx, &mut d.lenient));
            d.reply = ok();
        }
        LOCATION_ANSWER | VEHICLE_CONTROL_ANSWER => {
            let mut c = Cursor::new(body);
            match c.u16() {
                Some(answered) => {
                    let mut e = start(EventKind::Status, h.id);
                    e.raw
                        .push(raw::uint(name::ANSWERED_SERIAL, answered.into()));
                    let command = if h.id == LOCATION_ANSWER {
                        command::LOCATION_QUERY
                    } else {
                        command::VEHICLE_CONTROL
                    };
                    match location::decode(c.rest(), ctx.offset_minutes, &mut e) {
                        Some(l) => d.lenient.extend(l),
                        None => e.raw.push(raw::bytes(name::BODY, c.rest())),
                    }
                    let text = match &e.position {
                        Some(p) => format!("position {:.6},{:.6}", p.latitude, p.longitude),
                        None => "no position".to_string(),
                    };
                    d.answers.push(CommandAnswer {
                        tag: Some(tag(command, answered)),
                        outcome: AnswerOutcome::Text(text),
                    });
                    d.events.push(end(e, serial));
                }
                None => d.events.push(unknown(h.id, body, serial)),
            }
        }
        BATCH_VENDOR if body.len() == 7 => {
            let mut e = start(EventKind::Status, h.id);
            let level = body.first().copied().unwrap_or_default();
            e.raw.push(raw::uint(name::BATTERY_LEVEL, level.into()));
            if let Some(t) = body
                .get(1..7)
                .and_then(|t| location::bcd_time(t, ctx.offset_minutes))
            {
                e.device_time = Some(timestamp_secs(t));
            }
            d.events.push(end(e, serial));
            d.reply = ok();
        }
        BATCH | BATCH_VENDOR => {
            match location::batch(body, h.id == BATCH, ctx.offset_minutes) {
                Some((events, lenient)) if !events.is_empty() => {
                    d.lenient.extend(lenient);
                    for mut e in events {
                        e.raw.insert(0, raw::uint(name::MESSAGE_ID, h.id.into()));
                        d.events.push(end(e, serial));
                    }
                }
                _ => d.events.push(unknown(h.id, body, serial)),
            }
            d.reply = ok();
        }
        WAYBILL => {
            let mut c = Cursor::new(body);
            let text = c
                .u32()
                .and_then(|n| c.take(usize::try_from(n).ok()?.min(c.remaining())));
            d.events.push(match text {
                Some(t) => text_event(h.id, None, t, serial),
                None => unknown(h.id, body, serial),
            });
            d.reply = ok();
        }
        TEXT_REPORT => {
            d.events.push(match body.split_first() {
                Some((&encoding, t)) => {
                    let mut e = text_event(h.id, None, t, serial);
                    e.raw
                        .insert(1, raw::uint(name::TEXT_ENCODING, encoding.into()));
                    e
                }
                None => unknown(h.id, body, serial),
            });
            d.reply = ok();
        }
        TEXT_ANSWER => {
            let mut c = Cursor::new(body);
            match c.u16() {
                Some(answered) => {
                    let units: Vec<u16> = c
                        .rest()
                        .chunks_exact(2)
                        .map(|p| u16::from_be_bytes([p[0], p.get(1).copied().unwrap_or(0)]))
                        .collect();
                    let text = String::from_utf16_lossy(&units).trim().to_string();
                    let mut e = start(EventKind::CommandResponse, h.id);
                    e.raw
                        .push(raw::uint(name::ANSWERED_SERIAL, answered.into()));
                    e.raw.push(raw::bytes(name::BODY, c.rest()));
                    e.text = Some(text.clone());
                    d.answers.push(CommandAnswer {
                        tag: Some(tag(command::TEXT, answered)),
                        outcome: AnswerOutcome::Text(text),
                    });
                    d.events.push(end(e, serial));
                }
                None => d.events.push(unknown(h.id, body, serial)),
            }
        }
        DRIVER_IDENTITY => {
            d.events
                .push(match driver_identity(body, ctx.offset_minutes) {
                    Some(e) => end(e, serial),
                    None => unknown(h.id, body, serial),
                });
            d.reply = ok();
        }
        MEDIA_EVENT => {
            d.events
                .push(match media_header(h.id, body, EventKind::Status) {
                    Some((e, _)) => end(e, serial),
                    None => unknown(h.id, body, serial),
                });
            d.reply = ok();
        }
        MEDIA_UPLOAD => match media_upload(h.id, body, ctx, &mut d.lenient) {
            Some((e, media_id)) => {
                d.events.push(end(e, serial));
                let mut b = media_id.to_be_bytes().to_vec();
                b.push(0);
                d.reply = Some(frame::encode(MEDIA_UPLOAD_ANSWER, &h.addressee(), 0, &b));
            }
            None => {
                d.events.push(unknown(h.id, body, serial));
                d.reply = Some(general_answer(h, RESULT_BAD_MESSAGE));
            }
        },
        PASSTHROUGH => {
            d.events.push(match body.split_first() {
                Some((&kind, data)) => {
                    let mut e = start(EventKind::Status, h.id);
                    e.raw.push(raw::uint(name::PASSTHROUGH_TYPE, kind.into()));
                    e.raw.push(raw::bytes(name::PASSTHROUGH_DATA, data));
                    passthrough_fields(kind, data, &mut e);
                    end(e, serial)
                }
                None => unknown(h.id, body, serial),
            });
            d.reply = ok();
        }
        frame::LOCATION_JT701 | frame::LOCATION_JT701_BLIND => {
            let mut e = start(EventKind::Position, h.id);
            d.events.push(
                match location::jt701(body, h.id == frame::LOCATION_JT701_BLIND, &mut e) {
                    Some(()) => end(e, serial),
                    None => unknown(h.id, body, serial),
                },
            );
            if h.attributes & RESERVED_BIT != 0 {
                d.reply = Some(frame::encode_jt701_answer(&h.terminal, h.id));
            }
        }
        _ => {
            d.events.push(unknown(h.id, body, serial));
            // Ids from 8000 up are the platform's: a device sending one back (an echo) gets
            // no answer, or the two would answer each other forever.
            if h.id < PLATFORM_IDS {
                d.reply = ok();
            }
        }
    }
    d
}

/// Message ids from here up are platform (server → terminal) messages.
pub const PLATFORM_IDS: u16 = 0x8000;

/// The fields of the pass-through lines whose layout is known: `41` `$OBD-RT` (see
/// `location::obd_rt`), `40` `GTSL|<type>|<n>|<n>|<driver id>|…` from a card reader on the
/// serial port (the driver id as `gtsl_driver_id`).
fn passthrough_fields(kind: u8, data: &[u8], e: &mut TelemetryEvent) {
    match kind {
        0x41 => location::obd_rt(data, e),
        0x40 => {
            // Readers put a length or control bytes before the line.
            let start = data.iter().position(|&b| b > b' ').unwrap_or(data.len());
            let line = data.get(start..).unwrap_or_default();
            if !line.starts_with(b"GTSL|") {
                return;
            }
            if let Some(id) = line.split(|&b| b == b'|').nth(4).filter(|f| !f.is_empty()) {
                e.raw.push(raw::text(name::GTSL_DRIVER_ID, id));
            }
        }
        _ => {}
    }
}

/// A message the gateway does not decode: kind UNKNOWN, the body raw.
fn unknown(id: u16, body: &[u8], serial: u16) -> TelemetryEvent {
    let mut e = start(EventKind::Unknown, id);
    e.raw.push(raw::bytes(name::BODY, body));
    end(e, serial)
}

fn location_event(
    id: u16,
    body: &[u8],
    serial: u16,
    ctx: &Context,
    lenient: &mut Vec<&'static str>,
) -> TelemetryEvent {
    let mut e = start(EventKind::Status, id);
    match location::decode(body, ctx.offset_minutes, &mut e) {
        Some(l) => {
            lenient.extend(l);
            end(e, serial)
        }
        None => unknown(id, body, serial),
    }
}

/// Text the device sent (`0701`, `6006`): COMMAND_RESPONSE with the text (GBK: lossy when it
/// is not ASCII; the bytes are in `raw` as `body`).
fn text_event(id: u16, answered: Option<u16>, t: &[u8], serial: u16) -> TelemetryEvent {
    let mut e = start(EventKind::CommandResponse, id);
    if let Some(a) = answered {
        e.raw.push(raw::uint(name::ANSWERED_SERIAL, a.into()));
    }
    e.raw.push(raw::bytes(name::BODY, t));
    e.text = Some(lossy(t));
    end(e, serial)
}

/// `0001`: answered serial, answered id, result.
fn terminal_answer(body: &[u8], serial: u16) -> Option<(TelemetryEvent, CommandAnswer)> {
    let mut c = Cursor::new(body);
    let answered = c.u16()?;
    let id = c.u16()?;
    let result = c.u8()?;
    let mut e = start(EventKind::CommandResponse, TERMINAL_ANSWER);
    e.raw
        .push(raw::uint(name::ANSWERED_SERIAL, answered.into()));
    e.raw.push(raw::uint(name::ANSWERED_ID, id.into()));
    e.raw.push(raw::uint(name::RESULT, result.into()));
    if c.remaining() > 0 {
        e.raw.push(raw::bytes(name::TAIL, c.rest()));
    }
    let words = command::result_text(result);
    e.text = Some(words.to_string());
    let outcome = if result == RESULT_OK {
        AnswerOutcome::Text(words.to_string())
    } else {
        AnswerOutcome::Refused(words.to_string())
    };
    Some((
        end(e, serial),
        CommandAnswer {
            tag: Some(tag(id, answered)),
            outcome,
        },
    ))
}

/// `0104`: answered serial, count, then parameters (id u32, length u8, value).
fn parameters_answer(body: &[u8], serial: u16) -> Option<(TelemetryEvent, CommandAnswer)> {
    let mut c = Cursor::new(body);
    let answered = c.u16()?;
    c.u8()?;
    let mut e = start(EventKind::CommandResponse, PARAMETERS_ANSWER);
    e.raw
        .push(raw::uint(name::ANSWERED_SERIAL, answered.into()));
    let mut text = String::new();
    while c.remaining() > 0 {
        let Some((id, v)) = (|| {
            let id = c.u32()?;
            let len = usize::from(c.u8()?);
            Some((id, c.take(len)?))
        })() else {
            break;
        };
        if !text.is_empty() {
            text.push(';');
        }
        text.push_str(&format!("{id:04x}={}", hex::encode(v)));
        e.raw.push(raw::bytes(name::param(id), v));
    }
    if c.remaining() > 0 {
        e.raw.push(raw::bytes(name::TAIL, c.rest()));
    }
    e.text = Some(text.clone());
    Some((
        end(e, serial),
        CommandAnswer {
            tag: Some(tag(command::QUERY_PARAMETERS, answered)),
            outcome: AnswerOutcome::Text(text),
        },
    ))
}

/// `0100`: province u16, city u16, manufacturer, model, terminal id, plate colour u8, plate.
/// Field widths: 2019 11/30/30; 2013 5/20/7; 2011 5/8/7 (a 2013-form body has at least 37
/// bytes, a 2011-form body with a usual plate fewer).
fn registration(body: &[u8], v2019: bool) -> Option<TelemetryEvent> {
    let (m, model, id) = match (v2019, body.len()) {
        (true, _) => (11, 30, 30),
        (false, n) if n >= 37 => (5, 20, 7),
        _ => (5, 8, 7),
    };
    let mut c = Cursor::new(body);
    let mut e = start(EventKind::Status, REGISTRATION);
    e.raw.push(raw::uint(name::PROVINCE, c.u16()?.into()));
    e.raw.push(raw::uint(name::CITY, c.u16()?.into()));
    e.raw.push(text_value(name::MANUFACTURER, c.take(m)?));
    e.raw.push(text_value(name::TERMINAL_MODEL, c.take(model)?));
    e.raw.push(text_value(name::TERMINAL_ID, c.take(id)?));
    e.raw.push(raw::uint(name::PLATE_COLOUR, c.u8()?.into()));
    e.raw.push(text_value(name::PLATE, c.rest()));
    Some(e)
}

/// `0102`, 2019 form: code length u8, code, IMEI (15), software version (20). The code is not
/// published (it is a credential).
fn authentication_2019(body: &[u8]) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(body);
    let n = usize::from(c.u8()?);
    c.skip(n)?;
    let mut e = start(EventKind::Status, AUTHENTICATION);
    e.raw.push(text_value(name::IMEI, c.take(15)?));
    e.raw.push(text_value(
        name::SOFTWARE_VERSION,
        c.take(20.min(c.remaining()))?,
    ));
    Some(e)
}

/// `0107`: terminal type u16, manufacturer (5), model (20; 2019: 30), terminal id (7; 2019:
/// 30), ICCID (BCD 10), hardware version (u8 length, text), firmware version (u8 length,
/// text), GNSS module u8, communication module u8.
fn attributes(body: &[u8], v2019: bool) -> Option<TelemetryEvent> {
    let (model, id) = if v2019 { (30, 30) } else { (20, 7) };
    let mut c = Cursor::new(body);
    let mut e = start(EventKind::Status, ATTRIBUTES);
    e.raw.push(raw::uint(name::TERMINAL_TYPE, c.u16()?.into()));
    e.raw.push(text_value(name::MANUFACTURER, c.take(5)?));
    e.raw.push(text_value(name::TERMINAL_MODEL, c.take(model)?));
    e.raw.push(text_value(name::TERMINAL_ID, c.take(id)?));
    let iccid = c.take(10)?;
    e.raw.push(match bcd_digits(iccid) {
        Some(d) => raw::string(name::ICCID, d),
        None => raw::bytes(name::ICCID, iccid),
    });
    let mut rest = || -> Option<()> {
        let hw = usize::from(c.u8()?);
        e.raw.push(text_value(name::HARDWARE_VERSION, c.take(hw)?));
        let fw = usize::from(c.u8()?);
        e.raw.push(text_value(name::FIRMWARE_VERSION, c.take(fw)?));
        e.raw.push(raw::uint(name::GNSS_MODULE, c.u8()?.into()));
        e.raw.push(raw::uint(name::COMM_MODULE, c.u8()?.into()));
        Some(())
    };
    rest();
    if c.remaining() > 0 {
        e.raw.push(raw::bytes(name::TAIL, c.rest()));
    }
    Some(e)
}

/// `0702` (2013): card status u8 (1 inserted, 2 removed), time BCD, then for an inserted
/// card: read result u8, name (u8 length), certificate code (20), issuing authority (u8
/// length), validity (BCD `YYYYMMDD`).
fn driver_identity(body: &[u8], offset_minutes: i32) -> Option<TelemetryEvent> {
    let mut c = Cursor::new(body);
    let mut e = start(EventKind::Status, DRIVER_IDENTITY);
    e.raw.push(raw::uint(name::CARD_STATUS, c.u8()?.into()));
    let time = c.take(6)?;
    e.device_time = location::bcd_time(time, offset_minutes).map(timestamp_secs);
    let mut rest = || -> Option<()> {
        e.raw.push(raw::uint(name::CARD_RESULT, c.u8()?.into()));
        let n = usize::from(c.u8()?);
        e.raw.push(text_value(name::DRIVER_NAME, c.take(n)?));
        e.raw
            .push(text_value(name::DRIVER_CERTIFICATE, c.take(20)?));
        let n = usize::from(c.u8()?);
        e.raw
            .push(text_value(name::CERTIFICATE_AUTHORITY, c.take(n)?));
        let v = c.take(4)?;
        e.raw.push(match bcd_digits(v) {
            Some(d) => raw::string(name::CERTIFICATE_VALIDITY, d),
            None => raw::bytes(name::CERTIFICATE_VALIDITY, v),
        });
        Some(())
    };
    rest();
    if c.remaining() > 0 {
        e.raw.push(raw::bytes(name::TAIL, c.rest()));
    }
    Some(e)
}

/// `0800` / `0801` header: media id u32, type u8, format u8, event u8, channel u8.
fn media_header(id: u16, body: &[u8], kind: EventKind) -> Option<(TelemetryEvent, u32)> {
    let mut c = Cursor::new(body);
    let media_id = c.u32()?;
    let mut e = start(kind, id);
    e.raw.push(raw::uint(name::MEDIA_ID, media_id.into()));
    e.raw.push(raw::uint(name::MEDIA_TYPE, c.u8()?.into()));
    e.raw.push(raw::uint(name::MEDIA_FORMAT, c.u8()?.into()));
    e.raw.push(raw::uint(name::MEDIA_EVENT, c.u8()?.into()));
    e.raw.push(raw::uint(name::MEDIA_CHANNEL, c.u8()?.into()));
    Some((e, media_id))
}

/// `0801`: the media header, the location's basic information (28 bytes), the data. A FILE
/// event: `file` (`<media id>.<format>`, type `image`/`audio`/`video`, the data) and the
/// location of the basic information (its alarm and status words in `raw`).
fn media_upload(
    id: u16,
    body: &[u8],
    ctx: &Context,
    lenient: &mut Vec<&'static str>,
) -> Option<(TelemetryEvent, u32)> {
    let (mut e, media_id) = media_header(id, body, EventKind::File)?;
    let basic = body.get(8..8 + location::BASIC_LEN)?;
    let data = body.get(8 + location::BASIC_LEN..)?;
    lenient.extend(location::decode(basic, ctx.offset_minutes, &mut e)?);
    e.kind = EventKind::File as i32;
    let media_type = body.get(4).copied().unwrap_or_default();
    let format = body.get(5).copied().unwrap_or_default();
    let ext = match format {
        0 => "jpg",
        1 => "tif",
        2 => "mp3",
        3 => "wav",
        4 => "wmv",
        _ => "bin",
    };
    e.file = Some(File {
        name: format!("{media_id}.{ext}"),
        r#type: match media_type {
            0 => "image",
            1 => "audio",
            2 => "video",
            _ => "unknown",
        }
        .into(),
        data: data.to_vec(),
    });
    Some((e, media_id))
}

/// `8109`: the UTC time now (year u16, month, day, hour, minute, second) and result 0.
fn time_sync_answer(h: &Header, now: SystemTime) -> Bytes {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (y, mo, d, hh, mi, s) =
        crate::protocol::civil::civil_from_secs(i64::try_from(secs).unwrap_or(0));
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&u16::try_from(y).unwrap_or(0).to_be_bytes());
    for v in [mo, d, hh, mi, s] {
        b.push(v as u8);
    }
    b.push(RESULT_OK);
    frame::encode(TIME_SYNC_ANSWER, &h.addressee(), 0, &b)
}
