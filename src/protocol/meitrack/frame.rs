//! Meitrack framing: `$$<flag><length>,<IMEI>,<command>[,<data>]*<checksum>\r\n` from the
//! device, `@@...` from the server.
//!
//! - `<flag>` is one byte `0x41..=0x7A` ('A'…'z'); an answer reuses the flag of what it answers.
//! - `<length>` is decimal ASCII and counts every byte from the first comma through the closing
//!   CR LF.
//! - `<checksum>` is the low byte of the sum of every byte from the first `$`/`@` through `*`,
//!   as two hex digits (devices send upper case; some lower case, which is accepted).
//!
//! The data of `CCC`, `CCE` and `D00` is binary and may hold `*`, `,`, CR and LF, so a frame
//! ends where its length says, never at a CR LF: the length is checked against the `*`, the
//! checksum digits and the CR LF it must land on. Framing only finds boundaries and checks
//! them; the session parses what is inside. Every outcome says how many bytes to consume, and a
//! frame over the cap is refused from its header alone, before anything is buffered for it.

use bytes::{BufMut, Bytes, BytesMut};

/// Start of a device frame.
pub const DEVICE_START: [u8; 2] = *b"$$";
/// Start of a server frame.
pub const SERVER_START: [u8; 2] = *b"@@";
/// The range of the flag byte (data identifier).
pub const FLAGS: std::ops::RangeInclusive<u8> = 0x41..=0x7A;
/// `*`, two checksum digits, CR LF: what every frame ends with.
const TAIL: usize = 5;
/// Digits of the length field, at most (a 99 999-byte frame; real ones stay under 2 KiB).
const MAX_LENGTH_DIGITS: usize = 5;
/// The least a length can count: `,` + a 1-byte id + `,` + a 3-byte command + the tail.
const MIN_LENGTH: usize = 1 + 1 + 1 + 3 + TAIL;
/// Longest device id accepted (the gateway's own limit on ids).
const MAX_ID: usize = crate::device_id::MAX_LEN;

/// A checked frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The data identifier.
    pub flag: u8,
    /// The device id as sent (ASCII, checked by `device_id::is_valid_bytes`).
    pub imei: String,
    /// The three-character command (`AAA`, `CCC`, `A10`, ...).
    pub command: [u8; 3],
    /// Everything between the comma after the command and the final `*` (empty when the
    /// command is followed directly by `*`). Binary for `CCC`, `CCE`, `D00`.
    pub data: Vec<u8>,
}

impl RawFrame {
    pub fn command_str(&self) -> &str {
        std::str::from_utf8(&self.command).unwrap_or("???")
    }
}

/// What is at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes to decide; consume nothing.
    Incomplete,
    /// A good frame spanning `.1` bytes.
    Frame(RawFrame, usize),
    /// Bytes to drop, and why.
    Skip(usize, Reject),
}

/// Why bytes were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes before the next `$$`, or a `$$` whose header is no Meitrack header.
    Garbage,
    /// The frame is delimited but its checksum does not match.
    BadChecksum,
    /// The length does not land on `*`, two hex digits and CR LF, or is below the minimum.
    BadLength,
    /// The length announces more than the frame cap.
    TooLarge,
    /// Well delimited with a good checksum, but the id or the command is unusable.
    Malformed,
}

/// The checksum: the low byte of the sum of `bytes`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Offset of the next `start` pair at or after `from`.
fn find(buf: &[u8], start: [u8; 2], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == start)
        .map(|p| p + from)
}

/// How far to skip to reach the next possible frame start after `from`: to the next `$$`, or
/// to the end keeping a trailing `$` (it may be the first half of one).
fn skip_to_next(buf: &[u8], start: [u8; 2], from: usize) -> usize {
    match find(buf, start, from) {
        Some(at) => at,
        None if buf.last() == Some(&start[0]) => buf.len().saturating_sub(1).max(from),
        None => buf.len(),
    }
    .max(1)
}

/// The header: flag, length, and where the first comma is. `Err(n)`: not a header, skip `n`.
fn header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, usize> {
    let Some(&flag) = buf.get(2) else {
        return Ok(None);
    };
    if !FLAGS.contains(&flag) {
        return Err(1);
    }
    let mut length = 0usize;
    for i in 3..3 + MAX_LENGTH_DIGITS + 1 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        match b {
            b'0'..=b'9' if i < 3 + MAX_LENGTH_DIGITS => {
                length = length * 10 + usize::from(b - b'0');
            }
            b',' if i > 3 => return Ok(Some((flag, length, i))),
            _ => return Err(1),
        }
    }
    Err(1)
}

/// Splits one device frame (`$$`) off the front of `buf`. `max_frame` caps a whole frame.
pub fn split(buf: &[u8], max_frame: usize) -> Split {
    split_with(buf, max_frame, DEVICE_START)
}

/// Splits one server frame (`@@`) off the front of `buf` (the simulator's side).
pub fn split_server(buf: &[u8], max_frame: usize) -> Split {
    split_with(buf, max_frame, SERVER_START)
}

fn split_with(buf: &[u8], max_frame: usize, start: [u8; 2]) -> Split {
    match buf {
        [] => return Split::Incomplete,
        [b] if *b == start[0] => return Split::Incomplete,
        [a, b, ..] if [*a, *b] == start => {}
        _ => return Split::Skip(skip_to_next(buf, start, 1), Reject::Garbage),
    }
    let (flag, length, comma) = match header(buf) {
        Ok(Some(h)) => h,
        Ok(None) => return Split::Incomplete,
        Err(n) => return Split::Skip(n, Reject::Garbage),
    };
    if length < MIN_LENGTH {
        return Split::Skip(2, Reject::BadLength);
    }
    let total = comma.saturating_add(length);
    if total > max_frame {
        return Split::Skip(2, Reject::TooLarge);
    }
    let Some(frame) = buf.get(..total) else {
        return Split::Incomplete;
    };
    let star = total - TAIL;
    let tail = &frame[star..];
    let digits = (hex_digit(tail[1]), hex_digit(tail[2]));
    let (Some(hi), Some(lo)) = digits else {
        return Split::Skip(2, Reject::BadLength);
    };
    if tail[0] != b'*' || &tail[3..] != b"\r\n" {
        // The length does not land on the tail: drop the start only, so a real frame inside
        // is found again.
        return Split::Skip(2, Reject::BadLength);
    }
    if checksum(&frame[..=star]) != (hi << 4 | lo) {
        return Split::Skip(total, Reject::BadChecksum);
    }
    match parse_body(flag, &frame[comma + 1..star]) {
        Some(f) => Split::Frame(f, total),
        None => Split::Skip(total, Reject::Malformed),
    }
}

/// `<IMEI>,<command>[,<data>]` (between the first comma and the final `*`).
fn parse_body(flag: u8, body: &[u8]) -> Option<RawFrame> {
    let comma = body.iter().take(MAX_ID + 1).position(|&b| b == b',')?;
    let id = &body[..comma];
    if !crate::device_id::is_valid_bytes(id) {
        return None;
    }
    let rest = &body[comma + 1..];
    let command: [u8; 3] = rest.get(..3)?.try_into().ok()?;
    if !command.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let data = match rest.get(3) {
        None => Vec::new(),
        Some(b',') => rest[4..].to_vec(),
        Some(_) => return None,
    };
    Some(RawFrame {
        flag,
        imei: String::from_utf8(id.to_vec()).ok()?,
        command,
        data,
    })
}

/// Builds a frame: `start`, flag, length, `,<id>,<content>*<checksum>\r\n`. The length is
/// written with at least two digits, as the devices and the reference server do.
pub fn encode_with(start: [u8; 2], flag: u8, imei: &str, content: &[u8]) -> Bytes {
    let length = 1 + imei.len() + 1 + content.len() + TAIL;
    let head = format!("{length:02}");
    let mut b = BytesMut::with_capacity(3 + head.len() + length);
    b.put_slice(&start);
    b.put_u8(flag);
    b.put_slice(head.as_bytes());
    b.put_u8(b',');
    b.put_slice(imei.as_bytes());
    b.put_u8(b',');
    b.put_slice(content);
    b.put_u8(b'*');
    let cs = checksum(&b);
    b.put_slice(format!("{cs:02X}\r\n").as_bytes());
    b.freeze()
}

/// A server frame (`@@`): replies and commands.
pub fn encode(flag: u8, imei: &str, content: &[u8]) -> Bytes {
    encode_with(SERVER_START, flag, imei, content)
}

/// A device frame (`$$`): the simulator's and the tests'.
pub fn encode_device(flag: u8, imei: &str, content: &[u8]) -> Bytes {
    encode_with(DEVICE_START, flag, imei, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A10: &[u8] = b"@@A25,123456789012345,A10*58\r\n";

    #[test]
    fn encodes_the_reference_examples_exactly() {
        assert_eq!(&encode(b'A', "123456789012345", b"A10")[..], A10);
        assert_eq!(
            &encode(b'z', "861451040910625", b"AAC,1")[..],
            b"@@z27,861451040910625,AAC,1*0B\r\n"
        );
        assert_eq!(
            &encode(b'O', "353358017784062", b"D00,0215080432_C2E03.jpg,0")[..],
            b"@@O48,353358017784062,D00,0215080432_C2E03.jpg,0*DB\r\n"
        );
    }

    #[test]
    fn splits_a_frame_and_its_parts() {
        let f = b"$$D28,353358017784062,D03,OK*F3\r\n";
        match split(f, 1024) {
            Split::Frame(r, n) => {
                assert_eq!(n, f.len());
                assert_eq!(r.flag, b'D');
                assert_eq!(r.imei, "353358017784062");
                assert_eq!(&r.command, b"D03");
                assert_eq!(r.data, b"OK");
            }
            other => panic!("{other:?}"),
        }
        match split_server(A10, 1024) {
            Split::Frame(r, n) => {
                assert_eq!((n, r.data.len(), &r.command), (A10.len(), 0, b"A10"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lower_case_checksums_are_the_same_checksum() {
        let upper = encode_device(b'X', "123", b"AAC,1");
        let text = String::from_utf8(upper.to_vec()).unwrap();
        let star = text.rfind('*').unwrap();
        let lower = format!(
            "{}{}\r\n",
            &text[..=star],
            text[star + 1..star + 3].to_ascii_lowercase()
        );
        assert!(matches!(split(lower.as_bytes(), 1024), Split::Frame(..)));
        // A different value is never accepted, whatever its case.
        let wrong = format!("{}00\r\n", &text[..=star]);
        if &text[star + 1..star + 3] != "00" {
            assert_eq!(
                split(wrong.as_bytes(), 1024),
                Split::Skip(wrong.len(), Reject::BadChecksum)
            );
        }
    }

    #[test]
    fn binary_data_with_crlf_and_star_inside_is_framed_by_its_length() {
        let data = b"CCC,\r\n*\r\n$$A12,\x00\xff*00\r\n";
        let f = encode_device(b'q', "356307042441013", data);
        match split(&f, 1024) {
            Split::Frame(r, n) => {
                assert_eq!(n, f.len());
                assert_eq!(r.data, &data[4..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_prefix_waits_and_the_whole_frame_splits() {
        let f = encode_device(b'k', "356307042441013", b"AAA,35,1.0,2.0");
        for n in 0..f.len() {
            assert_eq!(split(&f[..n], 1024), Split::Incomplete, "prefix {n}");
        }
        assert!(matches!(split(&f, 1024), Split::Frame(_, n) if n == f.len()));
    }

    #[test]
    fn lengths_that_miss_the_tail_are_refused_and_resynchronise() {
        // Declared one byte too long and one too short.
        let good = encode_device(b'k', "356307042441013", b"A12,OK");
        let text = String::from_utf8(good.to_vec()).unwrap();
        for delta in [-1i64, 1] {
            let len: i64 = text[3..5].parse().unwrap();
            let bad = format!("{}{}{}", &text[..3], len + delta, &text[5..]);
            let mut stream = bad.into_bytes();
            stream.extend_from_slice(&good);
            stream.extend_from_slice(b"\x00\x00");
            let s = split(&stream, 1024);
            assert_eq!(s, Split::Skip(2, Reject::BadLength), "delta {delta}");
            // What follows is skipped as garbage up to the next frame, which then splits.
            let Split::Skip(g, Reject::Garbage) = split(&stream[2..], 1024) else {
                panic!("garbage expected");
            };
            assert!(matches!(split(&stream[2 + g..], 1024), Split::Frame(..)));
        }
    }

    #[test]
    fn caps_and_headers_are_checked_before_buffering() {
        assert_eq!(
            split(b"$$A99999,", 1000),
            Split::Skip(2, Reject::TooLarge),
            "the cap from the header alone"
        );
        assert_eq!(
            split(b"$$A09,1,AAA*00\r\n", 1000),
            Split::Skip(2, Reject::BadLength),
            "below the least a frame holds"
        );
        assert_eq!(split(b"$$\x00", 100), Split::Skip(1, Reject::Garbage));
        assert_eq!(split(b"$$A123456", 100), Split::Skip(1, Reject::Garbage));
        assert_eq!(split(b"$$A,", 100), Split::Skip(1, Reject::Garbage));
        assert_eq!(split(b"xx$$A1", 100), Split::Skip(2, Reject::Garbage));
        assert_eq!(split(b"xxx$", 100), Split::Skip(3, Reject::Garbage));
        assert_eq!(split(b"xxx", 100), Split::Skip(3, Reject::Garbage));
    }

    #[test]
    fn unusable_ids_and_commands_are_malformed() {
        for content in [&b"A1"[..], b"A1\x00", b"A10x"] {
            let f = encode_device(b'A', "123", content);
            assert_eq!(split(&f, 1024), Split::Skip(f.len(), Reject::Malformed));
        }
        let f = encode_device(b'A', "12/3", b"A10");
        assert_eq!(split(&f, 1024), Split::Skip(f.len(), Reject::Malformed));
    }
}
