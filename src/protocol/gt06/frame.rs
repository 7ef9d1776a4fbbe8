//! GT06 framing: start bits, length, CRC-ITU, stop bits, resynchronisation, and the reply
//! frames the server writes (standard ACK, time, address reply, online command).
//!
//! Framing only finds boundaries and checks them; `packet` parses what is inside. Every
//! outcome says exactly how many bytes to consume, so the session never keeps bytes it cannot
//! use and the buffer stays bounded by the frame cap.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::crc;

/// Start bits of the standard frame (u8 length).
pub const START_SHORT: [u8; 2] = [0x78, 0x78];
/// Start bits of the extended frame (u16 length).
pub const START_LONG: [u8; 2] = [0x79, 0x79];
/// Stop bits.
pub const STOP: [u8; 2] = [0x0D, 0x0A];

/// Protocol number + serial + CRC: the least a length field can count.
const MIN_LENGTH: usize = 5;

/// A checked frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// Came as `79 79` (u16 length).
    pub extended: bool,
    pub protocol: u8,
    /// Between the protocol number and the serial.
    pub content: Vec<u8>,
    /// Information serial number (0 for the CRC-less Wi-Fi form, which has none).
    pub serial: u16,
    /// The CRC-less Wi-Fi form (`78 78 <wifi count> 17|69 ... 0D 0A`): `content` holds every
    /// byte after the protocol number, and the device expects the time echoed back.
    pub wifi_count: Option<u8>,
}

/// What is at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes to decide; consume nothing.
    Incomplete,
    /// A good frame spanning `.1` bytes.
    Frame(RawFrame, usize),
    /// Bytes to drop, and why (garbage before start bits, a bad CRC, a length that does not
    /// land on stop bits, a length over the cap).
    Skip(usize, Reject),
}

/// Why bytes were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes before the next start bits.
    Garbage,
    /// The frame is delimited but its CRC does not match.
    BadChecksum,
    /// The length does not land on stop bits, or is below the minimum.
    BadLength,
    /// The length announces more than the frame cap.
    TooLarge,
}

fn is_start(pair: &[u8]) -> bool {
    pair == START_SHORT || pair == START_LONG
}

/// Offset of the first start-bit pair in `buf`, if any.
fn find_start(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(is_start)
}

/// Splits one frame off the front of `buf`. `max_frame` caps a whole frame (start to stop
/// bits) and is checked from the header alone, before anything is buffered for it.
pub fn split(buf: &[u8], max_frame: usize) -> Split {
    let Some(&first) = buf.first() else {
        return Split::Incomplete;
    };
    if buf.len() == 1 {
        return if first == 0x78 || first == 0x79 {
            Split::Incomplete
        } else {
            Split::Skip(1, Reject::Garbage)
        };
    }
    if !is_start(buf.get(..2).unwrap_or_default()) {
        // Resynchronise: drop everything up to the next start bits. A trailing 0x78/0x79
        // may be the first half of one, so it is kept.
        let skip = match find_start(buf) {
            Some(at) => at,
            None => match buf.last() {
                Some(0x78 | 0x79) => buf.len().saturating_sub(1),
                _ => buf.len(),
            },
        };
        return Split::Skip(skip.max(1), Reject::Garbage);
    }
    let extended = first == 0x79;
    let header = if extended { 4 } else { 3 };
    let Some(len_bytes) = buf.get(2..header) else {
        return Split::Incomplete;
    };
    let length = match len_bytes {
        [l] => usize::from(*l),
        [a, b] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => return Split::Incomplete,
    };
    if !extended && length < MIN_LENGTH && buf.len() < 4 {
        // A short length may still be the Wi-Fi form's count: its protocol number decides.
        return Split::Incomplete;
    }
    if !extended && buf.get(3).is_some_and(|&p| p == 0x17 || p == 0x69) {
        if let Some(s) = split_wifi_variant(buf, length, max_frame) {
            return s;
        }
    }
    // header + length + stop bits.
    let total = header + length + STOP.len();
    if length < MIN_LENGTH {
        return Split::Skip(2, Reject::BadLength);
    }
    if total > max_frame {
        return Split::Skip(2, Reject::TooLarge);
    }
    let Some(frame) = buf.get(..total) else {
        return Split::Incomplete;
    };
    check_standard(frame, extended, header)
}

/// Checks a frame whose length field says it spans all of `frame`.
fn check_standard(frame: &[u8], extended: bool, header: usize) -> Split {
    let total = frame.len();
    let (body, tail) = frame.split_at(total.saturating_sub(6));
    // tail = serial(2) crc(2) stop(2)
    let [s0, s1, c0, c1, t0, t1] = <[u8; 6]>::try_from(tail).unwrap_or_default();
    if [t0, t1] != STOP {
        // The length does not land on stop bits: drop the start bits only, so any real frame
        // inside is found again.
        return Split::Skip(2, Reject::BadLength);
    }
    let covered = frame.get(2..total.saturating_sub(4)).unwrap_or_default();
    if crc::x25(covered) != u16::from_be_bytes([c0, c1]) {
        return Split::Skip(total, Reject::BadChecksum);
    }
    let Some((&protocol, content)) = body.get(header..).and_then(<[u8]>::split_first) else {
        return Split::Skip(2, Reject::BadLength);
    };
    Split::Frame(
        RawFrame {
            extended,
            protocol,
            content: content.to_vec(),
            serial: u16::from_be_bytes([s0, s1]),
            wifi_count: None,
        },
        total,
    )
}

/// The CRC-less Wi-Fi form some models send for `0x17`/`0x69`: byte 2 is the Wi-Fi count,
/// then date-time (6 BCD), count × (MAC 6, RSSI 1), cell count u8, MCC u16, MNC u8,
/// cells × (LAC u16, CI u16, RSSI u8), stop bits. Its length follows from the counts.
///
/// Returns `None` when the standard reading should be used instead: when a standard frame of
/// that length is there with its CRC (checked first, since the CRC is the stronger evidence),
/// or when the bytes do not fit this layout.
fn split_wifi_variant(buf: &[u8], count: usize, max_frame: usize) -> Option<Split> {
    let std_total = 3 + count + STOP.len();
    if count >= MIN_LENGTH {
        let frame = buf.get(..std_total)?; // wait for the standard reading first
        if let s @ Split::Frame(..) = check_standard(frame, false, 3) {
            return Some(s);
        }
    }
    // 4 header bytes + 6 time + 7 per access point, then the cell count.
    let cells_at = 10 + 7 * count;
    if cells_at + 4 + STOP.len() > max_frame {
        return None;
    }
    let Some(&cells) = buf.get(cells_at) else {
        // Only wait when the time so far is BCD; otherwise this is not the Wi-Fi form.
        let time = buf.get(4..10.min(buf.len())).unwrap_or_default();
        return time.iter().all(|&b| is_bcd(b)).then_some(Split::Incomplete);
    };
    let total = cells_at + 1 + 3 + 5 * usize::from(cells) + STOP.len();
    if total > max_frame {
        return None;
    }
    let Some(frame) = buf.get(..total) else {
        return Some(Split::Incomplete);
    };
    let time_ok = frame
        .get(4..10)
        .is_some_and(|t| t.iter().all(|&b| is_bcd(b)));
    if !time_ok || frame.get(total - 2..) != Some(&STOP[..]) {
        return None;
    }
    let (&protocol, content) = frame.get(3..total - 2)?.split_first()?;
    Some(Split::Frame(
        RawFrame {
            extended: false,
            protocol,
            content: content.to_vec(),
            serial: 0,
            wifi_count: u8::try_from(count).ok(),
        },
        total,
    ))
}

fn is_bcd(b: u8) -> bool {
    b >> 4 <= 9 && b & 0x0F <= 9
}

/// Builds a frame: start bits, length, protocol number, content, serial, CRC, stop bits.
/// `extended` picks `79 79` with a u16 length. Content longer than the length field can
/// carry is cut (the callers build short, fixed contents).
pub fn encode(extended: bool, protocol: u8, content: &[u8], serial: u16) -> Bytes {
    let max_content = if extended { 0xFFFF - 5 } else { 0xFF - 5 };
    let content = content
        .get(..max_content.min(content.len()))
        .unwrap_or_default();
    let length = content.len() + 5;
    let mut b = BytesMut::with_capacity(length + 6);
    if extended {
        b.put_slice(&START_LONG);
        b.put_u16(length as u16);
    } else {
        b.put_slice(&START_SHORT);
        b.put_u8(length as u8);
    }
    b.put_u8(protocol);
    b.put_slice(content);
    b.put_u16(serial);
    let crc = crc::x25(b.get(2..).unwrap_or_default());
    b.put_u16(crc);
    b.put_slice(&STOP);
    b.freeze()
}

/// The standard ACK: the packet's protocol number and serial, no content.
pub fn ack(extended: bool, protocol: u8, serial: u16) -> Bytes {
    encode(extended, protocol, &[], serial)
}

/// The reply to the CRC-less Wi-Fi form: `78 78 00 <type> <the packet's 6 time bytes> 0D 0A`,
/// the same shape the device used (no serial, no CRC).
pub fn wifi_variant_reply(protocol: u8, time: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(12);
    b.put_slice(&START_SHORT);
    b.put_u8(0);
    b.put_u8(protocol);
    b.put_slice(time.get(..6).unwrap_or(time));
    b.put_slice(&STOP);
    b.freeze()
}
