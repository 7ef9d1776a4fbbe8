//! What the text and binary decoders make of one message, before it becomes events: the
//! device it names, one [`Record`] per position (or one without a position), the values that
//! belong to the message as a whole, and what kind of message it is. `mapping` turns it into
//! `TelemetryEvent`s; the session builds the reply from it.

use crate::event::raw;
use crate::proto::{CellTower, Position, RawValue, WifiAccessPoint};

use super::models::Model;

/// What a message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A report (`+RESP`, `+BUFF`, binary `+RSP`/`+EVT`/…, compact records).
    Report,
    /// A keep-alive (`+ACK:GTHBD`, binary `+HBD`, compact `2B 10`).
    Heartbeat,
    /// The device's answer to a command: the serial it echoes, and whether it refused.
    CommandAck { serial: Option<u16>, refused: bool },
}

/// One record: a position block, or the message itself when it carries none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub position: Option<Position>,
    /// When the fix was taken (GNSS UTC), seconds since the epoch.
    pub fix_time: Option<i64>,
    pub cells: Vec<CellTower>,
    pub wifi: Vec<WifiAccessPoint>,
    pub raw: Vec<RawValue>,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub class: Class,
    /// The message type without its `GT` (`FRI`, `HBD`, `RTO`); binary messages name theirs
    /// the same way where the type is known.
    pub ty: String,
    /// The device id the message carries (IMEI, or a MEID on some models).
    pub device_id: Option<String>,
    pub model: Option<&'static Model>,
    /// Records, oldest first. Never empty for a report.
    pub records: Vec<Record>,
    /// Values of the message as a whole (header, tail, send time, count): they go on the
    /// last record, the most recent one, which the tail describes.
    pub shared: Vec<RawValue>,
    /// When the device sent the message (its clock, zone not guaranteed), seconds.
    pub send_time: Option<i64>,
    /// Text for the event (`text`): a command answer.
    pub text: Option<String>,
    /// The server acknowledgement this message asks for, if the protocol defines one.
    pub ack: Ack,
    /// Quirks tolerated while decoding (labels of [`super::LENIENT`]).
    pub lenient: Vec<&'static str>,
}

/// The acknowledgement a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// `+SACK:<count>$`, the count echoed byte for byte.
    Count(String),
    /// `+SACK:GTHBD,<protocol version>,<count>$`.
    Heartbeat { version: String, count: String },
    /// The protocol defines none (classic binary) or the message carries no count.
    None,
}

impl Report {
    pub fn new(class: Class, ty: impl Into<String>) -> Report {
        Report {
            class,
            ty: ty.into(),
            device_id: None,
            model: None,
            records: Vec::new(),
            shared: Vec::new(),
            send_time: None,
            text: None,
            ack: Ack::None,
            lenient: Vec::new(),
        }
    }
}

/// How a text field is typed in `raw`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Text exactly as sent.
    Str,
    /// A decimal integer (uint, or sint when negative).
    Dec,
    /// A decimal with a fraction (double).
    Float,
    /// Hexadecimal digits (uint).
    Hex,
    /// Four hex digits of a two's-complement 16-bit reading (sint).
    Hex16,
}

/// The raw value of one text field: typed as declared when it reads so, otherwise kept as text
/// (nothing is lost: a device that sends `nan` or `F94` where a number is documented gets its
/// text in `raw`). `None` for an empty field (the device sent no value).
pub fn typed(name: &str, text: &str, ty: Ty) -> Option<RawValue> {
    if text.is_empty() {
        return None;
    }
    let v = match ty {
        Ty::Str => None,
        Ty::Dec => text
            .parse::<u64>()
            .ok()
            .map(|n| raw::uint(name, n))
            .or_else(|| {
                text.strip_prefix('-')
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|_| text.parse::<i64>().ok())
                    .map(|n| raw::int(name, n))
            }),
        Ty::Float => {
            let plain = text
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
            plain
                .then(|| text.parse::<f64>().ok())
                .flatten()
                .filter(|f| f.is_finite())
                .map(|f| raw::double(name, f))
        }
        Ty::Hex => (text.len() <= 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .map(|n| raw::uint(name, n)),
        Ty::Hex16 => (text.len() == 4 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u16::from_str_radix(text, 16).ok())
            .flatten()
            .map(|n| raw::int(name, i64::from(n as i16))),
    };
    Some(v.unwrap_or_else(|| raw::string(name, text)))
}
