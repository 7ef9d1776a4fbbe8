//! One Retranslator packet (what follows the size field), read and written.
//!
//! Layout (Gurtam's "Wialon Retranslator 1.0" description; integers big-endian, doubles
//! little-endian):
//!
//! | field | bytes |
//! |---|---|
//! | unit (controller) id | ASCII, NUL-terminated |
//! | time | u32, Unix seconds UTC |
//! | flags | u32: `01` position, `02` digital inputs, `04` digital outputs, `10` alarm, `20` driver id |
//! | blocks | to the end of the packet |
//!
//! and each block:
//!
//! | field | bytes |
//! |---|---|
//! | type | u16 `0x0BBB` (the spec's block delimiter) |
//! | size | u32, the bytes after this field |
//! | hidden | u8 (1 hidden, 0 shown in Wialon's UI) |
//! | data type | u8: 1 text (NUL-terminated), 2 binary, 3 i32, 4 double, 5 i64 |
//! | name | ASCII, NUL-terminated |
//! | value | the rest of the block |
//!
//! `posinfo` (binary) holds longitude, latitude and altitude (doubles), speed (u16, km/h),
//! course (u16, degrees) and satellites (u8): 29 bytes.
//!
//! [`parse`] is strict: a block whose value does not have the size its data type says, a
//! text without its NUL, a name that is not UTF-8, a block type other than `0x0BBB` or a block
//! that runs past the packet make the packet malformed (the session then publishes it
//! as it came; see the module doc of `super`). A data type the spec does not list is kept as
//! its bytes ([`Value::Other`]): its shape is unknown, not wrong. Whatever [`parse`] accepts,
//! [`encode`] writes back byte for byte.

use crate::protocol::cursor::Cursor;

/// The block type (delimiter) of every block.
pub const BLOCK_TYPE: u16 = 0x0BBB;
/// The name of the position block.
pub const POSINFO: &str = "posinfo";
/// Size of a `posinfo` value.
pub const POSINFO_LEN: usize = 29;

/// Bits of the packet's flags field.
pub mod flag {
    pub const POSITION: u32 = 0x01;
    pub const INPUTS: u32 = 0x02;
    pub const OUTPUTS: u32 = 0x04;
    pub const ALARM: u32 = 0x10;
    pub const DRIVER: u32 = 0x20;
}

/// A block's data type byte.
pub mod data_type {
    pub const TEXT: u8 = 1;
    pub const BINARY: u8 = 2;
    pub const INT: u8 = 3;
    pub const DOUBLE: u8 = 4;
    pub const LONG: u8 = 5;
}

/// One packet, borrowing from its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    /// The unit's id as sent (ASCII in practice; not checked here).
    pub unit: &'a [u8],
    /// Unix seconds, UTC.
    pub time: u32,
    pub flags: u32,
    pub blocks: Vec<Block<'a>>,
}

/// One data block.
#[derive(Debug, Clone, PartialEq)]
pub struct Block<'a> {
    /// The visibility byte as sent (1 hidden, 0 shown).
    pub hidden: u8,
    pub name: &'a str,
    pub value: Value<'a>,
}

/// A block's value, by its data type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Type 1, without its NUL.
    Text(&'a [u8]),
    /// Type 2.
    Binary(&'a [u8]),
    /// Type 3.
    Int(i32),
    /// Type 4.
    Double(f64),
    /// Type 5.
    Long(i64),
    /// A binary block named `posinfo`.
    Position(PosInfo),
    /// A data type the spec does not list, its value as sent.
    Other { data_type: u8, bytes: &'a [u8] },
}

impl Value<'_> {
    /// The data type byte this value is written with.
    pub fn data_type(&self) -> u8 {
        match self {
            Value::Text(_) => data_type::TEXT,
            Value::Binary(_) | Value::Position(_) => data_type::BINARY,
            Value::Int(_) => data_type::INT,
            Value::Double(_) => data_type::DOUBLE,
            Value::Long(_) => data_type::LONG,
            Value::Other { data_type, .. } => *data_type,
        }
    }
}

/// The `posinfo` block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PosInfo {
    /// Degrees, positive east.
    pub longitude: f64,
    /// Degrees, positive north.
    pub latitude: f64,
    /// Metres.
    pub altitude: f64,
    /// km/h.
    pub speed: u16,
    /// Degrees.
    pub course: u16,
    pub satellites: u8,
}

impl PosInfo {
    fn read(v: &[u8]) -> Option<PosInfo> {
        if v.len() != POSINFO_LEN {
            return None;
        }
        let mut c = Cursor::new(v);
        let mut double = || c.array::<8>().map(f64::from_le_bytes);
        let (longitude, latitude, altitude) = (double()?, double()?, double()?);
        Some(PosInfo {
            longitude,
            latitude,
            altitude,
            speed: c.u16()?,
            course: c.u16()?,
            satellites: c.u8()?,
        })
    }

    /// Writes the block's 29 bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.longitude.to_le_bytes());
        out.extend_from_slice(&self.latitude.to_le_bytes());
        out.extend_from_slice(&self.altitude.to_le_bytes());
        out.extend_from_slice(&self.speed.to_be_bytes());
        out.extend_from_slice(&self.course.to_be_bytes());
        out.push(self.satellites);
    }
}

/// Why a packet could not be read. Described for the `decode_error` attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no NUL-terminated unit id")]
    NoUnit,
    #[error("the packet ends before its time and flags")]
    ShortHeader,
    #[error("block {index}: its type and size are cut short")]
    ShortBlockHeader { index: usize },
    #[error("block {index}: type {ty:#06x}, not 0x0bbb")]
    BlockType { index: usize, ty: u16 },
    #[error("block {index}: size {size} runs past the packet ({left} bytes left)")]
    BlockSize {
        index: usize,
        size: u32,
        left: usize,
    },
    #[error("block {index}: no hidden byte, data type and NUL-terminated name")]
    BlockName { index: usize },
    #[error("block {index}: the name is not UTF-8")]
    NameNotUtf8 { index: usize },
    #[error("block {index} `{name}`: {what}")]
    BlockValue {
        index: usize,
        name: String,
        what: &'static str,
    },
}

/// The unit id at the front of a packet: the bytes before the first NUL, when there is one
/// and they are not empty.
pub fn unit(packet: &[u8]) -> Option<&[u8]> {
    let end = packet.iter().position(|&b| b == 0)?;
    packet.get(..end).filter(|u| !u.is_empty())
}

/// Reads one packet (the bytes after the size field).
pub fn parse(packet: &[u8]) -> Result<Packet<'_>, ParseError> {
    let unit = unit(packet).ok_or(ParseError::NoUnit)?;
    let mut c = Cursor::new(packet);
    c.skip(unit.len() + 1).ok_or(ParseError::NoUnit)?;
    let (time, flags) = match (c.u32(), c.u32()) {
        (Some(t), Some(f)) => (t, f),
        _ => return Err(ParseError::ShortHeader),
    };
    let mut blocks = Vec::new();
    while c.remaining() > 0 {
        let index = blocks.len();
        let (ty, size) = match (c.u16(), c.u32()) {
            (Some(t), Some(s)) => (t, s),
            _ => return Err(ParseError::ShortBlockHeader { index }),
        };
        if ty != BLOCK_TYPE {
            return Err(ParseError::BlockType { index, ty });
        }
        let left = c.remaining();
        let body = usize::try_from(size)
            .ok()
            .and_then(|n| c.take(n))
            .ok_or(ParseError::BlockSize { index, size, left })?;
        blocks.push(block(index, body)?);
    }
    Ok(Packet {
        unit,
        time,
        flags,
        blocks,
    })
}

/// One block's content (after its type and size).
fn block(index: usize, body: &[u8]) -> Result<Block<'_>, ParseError> {
    let (&[hidden, ty], rest) = body
        .split_first_chunk::<2>()
        .ok_or(ParseError::BlockName { index })?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(ParseError::BlockName { index })?;
    let (name, value) = rest.split_at(end);
    let value = value.get(1..).unwrap_or_default();
    let name = std::str::from_utf8(name).map_err(|_| ParseError::NameNotUtf8 { index })?;
    let bad = |what: &'static str| ParseError::BlockValue {
        index,
        name: name.to_string(),
        what,
    };
    let value = match ty {
        data_type::TEXT => match value.split_last() {
            // The text ends at its NUL, which is the block's last byte.
            Some((0, text)) if !text.contains(&0) => Value::Text(text),
            _ => return Err(bad("a text value must end with its only NUL")),
        },
        data_type::BINARY if name == POSINFO => {
            Value::Position(PosInfo::read(value).ok_or_else(|| bad("a posinfo value is 29 bytes"))?)
        }
        data_type::BINARY => Value::Binary(value),
        data_type::INT => Value::Int(i32::from_be_bytes(
            value
                .try_into()
                .map_err(|_| bad("an i32 value is 4 bytes"))?,
        )),
        data_type::DOUBLE => Value::Double(f64::from_le_bytes(
            value
                .try_into()
                .map_err(|_| bad("a double value is 8 bytes"))?,
        )),
        data_type::LONG => Value::Long(i64::from_be_bytes(
            value
                .try_into()
                .map_err(|_| bad("an i64 value is 8 bytes"))?,
        )),
        other => Value::Other {
            data_type: other,
            bytes: value,
        },
    };
    Ok(Block {
        hidden,
        name,
        value,
    })
}

/// Writes a packet, size field included. The inverse of [`parse`] for what it accepts; for
/// the simulator and the tests (names and texts must not hold a NUL).
pub fn encode(p: &Packet<'_>) -> Vec<u8> {
    let mut out = vec![0; 4];
    out.extend_from_slice(p.unit);
    out.push(0);
    out.extend_from_slice(&p.time.to_be_bytes());
    out.extend_from_slice(&p.flags.to_be_bytes());
    for b in &p.blocks {
        out.extend_from_slice(&BLOCK_TYPE.to_be_bytes());
        let size_at = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(b.hidden);
        out.push(b.value.data_type());
        out.extend_from_slice(b.name.as_bytes());
        out.push(0);
        match b.value {
            Value::Text(t) => {
                out.extend_from_slice(t);
                out.push(0);
            }
            Value::Binary(v) | Value::Other { bytes: v, .. } => out.extend_from_slice(v),
            Value::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
            Value::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Long(v) => out.extend_from_slice(&v.to_be_bytes()),
            Value::Position(p) => p.write(&mut out),
        }
        let size = u32::try_from(out.len() - size_at - 4).unwrap_or(u32::MAX);
        out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    }
    let size = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&size.to_le_bytes());
    out
}
