//! Queclink framing: where one message ends, for the three wire formats a device may use on
//! one connection, told apart by their first bytes (never by scanning for a delimiter first:
//! a `$` is a legal byte inside binary data).
//!
//! - **Text** (@Track air interface, ASCII): `+RESP:`, `+BUFF:`, `+ACK:`, `+NACK:` … ending
//!   in `$` (or NUL on the GT300 dialect). No length and no checksum: the terminator is the
//!   only boundary. Over UDP a datagram without a terminator is one message.
//! - **Classic binary** (the same document's HEX format): a 4-character header (`+RSP`,
//!   `+EVT`, `+INF`, `+HBD`, `+ACK` not followed by `:`, the buffered `+BSP`/`+BVT`/`+BNF`/
//!   `+BRD`, …), a whole-frame length at a header-dependent offset, CRC-16/CCITT-FALSE over
//!   the bytes after the header up to the CRC, then `0D 0A`. `+INF`'s length sits at offset 7
//!   or 9 depending on the model: the candidate whose tail and CRC check wins.
//! - **Compact binary** (Protocol Pro, newer models): `2B`/`2D` `00`, a u16 whole-frame length,
//!   …, count, CRC-8 (poly 0x31, init 0xFF) over every byte before it, `$`; the heartbeat is
//!   `2B 10` with a u8 length (24).
//!
//! Every outcome says how many bytes to consume. Caps are checked from the header alone,
//! before anything is buffered for a frame.

use crc::{Crc, CRC_16_IBM_3740, CRC_8_NRSC_5};

/// CRC-16/CCITT-FALSE (`CRC-16/IBM-3740` in the catalogue: poly 0x1021, init 0xFFFF, no
/// reflection, no final xor): classic binary frames.
pub const CRC16_CCITT_FALSE: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);
/// CRC-8 poly 0x31, init 0xFF, no reflection, no final xor (`CRC-8/NRSC-5`): compact frames.
pub const CRC8: Crc<u8> = Crc::<u8>::new(&CRC_8_NRSC_5);

/// Which wire format a unit is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Classic,
    Compact,
    CompactHeartbeat,
}

/// What is at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes to decide; consume nothing.
    Incomplete,
    /// One message at `start..end` (a text message without its terminator); consume
    /// `consumed` bytes (padding before it and its terminator included).
    Unit {
        format: Format,
        start: usize,
        end: usize,
        consumed: usize,
    },
    /// Bytes to drop, and why.
    Skip(usize, Reject),
}

/// Why bytes were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes that start no message.
    Garbage,
    /// A delimited binary frame whose checksum does not match.
    BadChecksum,
    /// A binary length that does not land on the frame's tail, or is below the minimum.
    BadLength,
    /// More than the frame cap without an end.
    TooLarge,
    /// A binary message without a length field (`+ACC`): its end cannot be found.
    Unframeable,
}

/// A classic binary header: where its length field is and how wide it is.
struct Classic {
    tag: &'static [u8; 4],
    /// Offsets to try, in order (`+INF` has two).
    len_at: &'static [usize],
    len_bytes: usize,
}

/// Every classic header with a length field. `+ACK` is binary only when not followed by `:`.
static CLASSIC: &[Classic] = &[
    Classic {
        tag: b"+RSP",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+BSP",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+EVT",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+BVT",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+CAN",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+DAT",
        len_at: &[9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+INF",
        len_at: &[7, 9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+BNF",
        len_at: &[7, 9],
        len_bytes: 2,
    },
    Classic {
        tag: b"+HBD",
        len_at: &[5],
        len_bytes: 1,
    },
    Classic {
        tag: b"+CRD",
        len_at: &[6],
        len_bytes: 2,
    },
    Classic {
        tag: b"+BRD",
        len_at: &[6],
        len_bytes: 2,
    },
    Classic {
        tag: b"+LGN",
        len_at: &[6],
        len_bytes: 2,
    },
    Classic {
        tag: b"+ACK",
        len_at: &[6],
        len_bytes: 1,
    },
    Classic {
        tag: b"+ATI",
        len_at: &[4],
        len_bytes: 1,
    },
];

/// The binary header without a length field.
pub const UNFRAMEABLE: &[u8; 4] = b"+ACC";

/// The classic headers, for detection.
pub fn classic_tags() -> impl Iterator<Item = &'static [u8; 4]> {
    CLASSIC.iter().map(|c| c.tag)
}

/// Smallest classic frame: header, type, a mask byte, length, CRC and tail.
const MIN_CLASSIC: usize = 12;
/// Smallest compact report: header, identifier, length, flags, IMEI, device type, protocol
/// and custom versions, reserved length, count, check byte, tail.
pub const MIN_COMPACT: usize = 23;
/// The compact heartbeat's fixed length.
pub const COMPACT_HEARTBEAT_LEN: usize = 24;

/// Bytes tolerated between messages (line ends some firmware appends, NUL padding).
fn is_padding(b: u8) -> bool {
    matches!(b, b'\r' | b'\n' | 0 | b' ' | b'\t')
}

/// Splits one message off the front of `buf`. `max` caps a whole message; `udp`: `buf` is one
/// whole datagram, so a text message may end at its end.
pub fn split(buf: &[u8], max: usize, udp: bool) -> Split {
    let start = buf.iter().position(|&b| !is_padding(b));
    let Some(start) = start else {
        return Split::Incomplete;
    };
    let rest = buf.get(start..).unwrap_or_default();
    let out = match rest.first() {
        Some(b'+') | Some(b'-') => split_message(rest, max, udp),
        _ => {
            // Resynchronise at the next message start.
            let skip = rest
                .iter()
                .position(|&b| b == b'+')
                .unwrap_or(rest.len())
                .max(1);
            return Split::Skip(start + skip, Reject::Garbage);
        }
    };
    match out {
        Split::Unit {
            format,
            start: s,
            end,
            consumed,
        } => Split::Unit {
            format,
            start: start + s,
            end: start + end,
            consumed: start + consumed,
        },
        Split::Skip(n, why) => Split::Skip(start + n, why),
        Split::Incomplete => Split::Incomplete,
    }
}

/// `rest` starts with `+` or `-`.
fn split_message(rest: &[u8], max: usize, udp: bool) -> Split {
    let minus = rest.first() == Some(&b'-');
    match rest.get(1) {
        None => return Split::Incomplete,
        Some(0x00) => return split_compact(rest, max),
        Some(0x10) if !minus => return split_compact_heartbeat(rest),
        Some(_) if minus => return Split::Skip(1, Reject::Garbage),
        Some(_) => {}
    }
    let Some(head) = rest.get(..4) else {
        // Could still be a binary header or a text prefix.
        return Split::Incomplete;
    };
    if head == UNFRAMEABLE {
        return Split::Skip(1, Reject::Unframeable);
    }
    if let Some(c) = CLASSIC.iter().find(|c| c.tag == head) {
        if c.tag == b"+ACK" {
            match rest.get(4) {
                None => return Split::Incomplete,
                Some(b':') => return split_text(rest, max, udp),
                Some(_) => {}
            }
        }
        return split_classic(rest, c, max);
    }
    split_text(rest, max, udp)
}

fn split_text(rest: &[u8], max: usize, udp: bool) -> Split {
    let window = rest.get(..max.saturating_add(1)).unwrap_or(rest);
    match window.iter().position(|&b| b == b'$' || b == 0) {
        Some(end) => Split::Unit {
            format: Format::Text,
            start: 0,
            end,
            consumed: end + 1,
        },
        None if rest.len() > max => Split::Skip(rest.len().min(max.max(1)), Reject::TooLarge),
        None if udp => Split::Unit {
            format: Format::Text,
            start: 0,
            end: rest.len(),
            consumed: rest.len(),
        },
        None => Split::Incomplete,
    }
}

fn read_len(rest: &[u8], at: usize, width: usize) -> Option<usize> {
    match width {
        1 => rest.get(at).map(|&b| usize::from(b)),
        _ => rest
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
    }
}

fn classic_ok(frame: &[u8]) -> Result<(), Reject> {
    let n = frame.len();
    if frame.get(n.saturating_sub(2)..) != Some(&b"\r\n"[..]) {
        return Err(Reject::BadLength);
    }
    let covered = frame.get(4..n.saturating_sub(4)).unwrap_or_default();
    let want = frame
        .get(n.saturating_sub(4)..n.saturating_sub(2))
        .map(|b| u16::from_be_bytes([b[0], b[1]]));
    if Some(CRC16_CCITT_FALSE.checksum(covered)) == want {
        Ok(())
    } else {
        Err(Reject::BadChecksum)
    }
}

fn split_classic(rest: &[u8], c: &Classic, max: usize) -> Split {
    let mut checksum_failed: Option<usize> = None;
    for &at in c.len_at {
        let Some(len) = read_len(rest, at, c.len_bytes) else {
            return Split::Incomplete;
        };
        if len < MIN_CLASSIC.max(at + c.len_bytes + 4) || len > max {
            continue;
        }
        let Some(frame) = rest.get(..len) else {
            return Split::Incomplete;
        };
        match classic_ok(frame) {
            Ok(()) => {
                return Split::Unit {
                    format: Format::Classic,
                    start: 0,
                    end: len,
                    consumed: len,
                }
            }
            Err(Reject::BadChecksum) => {
                checksum_failed.get_or_insert(len);
            }
            Err(_) => {}
        }
    }
    match checksum_failed {
        // The length landed on a tail: the frame is delimited, only its content is bad.
        Some(len) => Split::Skip(len, Reject::BadChecksum),
        None => {
            let too_large = c
                .len_at
                .iter()
                .filter_map(|&at| read_len(rest, at, c.len_bytes))
                .all(|len| len > max);
            if too_large {
                Split::Skip(1, Reject::TooLarge)
            } else {
                Split::Skip(1, Reject::BadLength)
            }
        }
    }
}

fn compact_ok(frame: &[u8]) -> Result<(), Reject> {
    let n = frame.len();
    if frame.last() != Some(&b'$') {
        return Err(Reject::BadLength);
    }
    let covered = frame.get(..n.saturating_sub(2)).unwrap_or_default();
    if frame.get(n.saturating_sub(2)) == Some(&CRC8.checksum(covered)) {
        Ok(())
    } else {
        Err(Reject::BadChecksum)
    }
}

fn split_compact(rest: &[u8], max: usize) -> Split {
    let Some(len) = read_len(rest, 2, 2) else {
        return Split::Incomplete;
    };
    if len < MIN_COMPACT {
        return Split::Skip(1, Reject::BadLength);
    }
    if len > max {
        return Split::Skip(1, Reject::TooLarge);
    }
    let Some(frame) = rest.get(..len) else {
        return Split::Incomplete;
    };
    match compact_ok(frame) {
        Ok(()) => Split::Unit {
            format: Format::Compact,
            start: 0,
            end: len,
            consumed: len,
        },
        Err(Reject::BadChecksum) => Split::Skip(len, Reject::BadChecksum),
        Err(why) => Split::Skip(1, why),
    }
}

fn split_compact_heartbeat(rest: &[u8]) -> Split {
    let Some(&len) = rest.get(2) else {
        return Split::Incomplete;
    };
    let len = usize::from(len);
    if len != COMPACT_HEARTBEAT_LEN {
        return Split::Skip(1, Reject::BadLength);
    }
    let Some(frame) = rest.get(..len) else {
        return Split::Incomplete;
    };
    match compact_ok(frame) {
        Ok(()) => Split::Unit {
            format: Format::CompactHeartbeat,
            start: 0,
            end: len,
            consumed: len,
        },
        Err(Reject::BadChecksum) => Split::Skip(len, Reject::BadChecksum),
        Err(why) => Split::Skip(1, why),
    }
}

/// Appends a classic frame's CRC and tail to `body` (header through count): for tests and
/// the simulator.
pub fn seal_classic(mut body: Vec<u8>) -> Vec<u8> {
    let crc = CRC16_CCITT_FALSE.checksum(body.get(4..).unwrap_or_default());
    body.extend_from_slice(&crc.to_be_bytes());
    body.extend_from_slice(b"\r\n");
    body
}

/// Appends a compact frame's check byte and `$` to `body` (header through count).
pub fn seal_compact(mut body: Vec<u8>) -> Vec<u8> {
    let crc = CRC8.checksum(&body);
    body.push(crc);
    body.push(b'$');
    body
}
