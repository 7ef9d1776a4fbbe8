//! JT/T 808 framing: `7E` delimiters, the `7D` escapes, the XOR check code, the message header
//! (2011/2013 and 2019 forms, sub-package fields, the JT701 `5501`/`5502` short-serial form),
//! the `(…)` e-lock text frames some models send on the same connection, and the frames the
//! server writes.
//!
//! Framing only finds boundaries and checks them; `message` parses bodies. Every outcome says
//! exactly how many bytes to consume, so the session never keeps bytes it cannot use and the
//! buffer stays bounded by the frame cap:
//!
//! - a frame is `7E`, the escaped message, `7E`; the cap counts the wire bytes, delimiters
//!   included, and is checked before anything is allocated for the frame;
//! - on receipt: unescape (`7D 01` → `7D`, `7D 02` → `7E`), then check (the XOR of every byte
//!   of header and body equals the check byte), then read the header; the body length field
//!   must equal the body's length;
//! - bytes before a delimiter (some firmware prefixes `$$` or line noise) are skipped up to the
//!   next `7E` or `(`; a `7E 7E` pair (the closing delimiter of a lost frame followed by an
//!   opening one) drops the first;
//! - to send: build, XOR, escape.
//!
//! The `E7` variant delimiter Traccar accepts is not framed here (see the module doc of
//! `jt808`): `E7` is garbage to this framer.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::cursor::Cursor;
use crate::protocol::Probe;

/// The delimiter (标识位).
pub const FLAG: u8 = 0x7E;
/// The escape byte.
pub const ESCAPE: u8 = 0x7D;

/// Body attributes (消息体属性): bits 0–9 body length.
pub const BODY_LENGTH_MASK: u16 = 0x03FF;
/// Bits 10–12: encryption (bit 10 = RSA); all clear = plain.
pub const ENCRYPTION_MASK: u16 = 0x1C00;
/// Bit 13: the message is one package of a sub-packaged message.
pub const SUBPACKAGED: u16 = 0x2000;
/// Bit 14: the 2019 header (a version byte, a 10-byte terminal number).
pub const VERSION_FLAG: u16 = 0x4000;
/// Bit 15: reserved in the standard; the JT701 `5501`/`5502` reports set it to ask for a
/// `4401` answer.
pub const RESERVED_BIT: u16 = 0x8000;

/// The largest body one frame carries (the 10-bit length field).
pub const MAX_BODY: usize = BODY_LENGTH_MASK as usize;

/// The JT701 (Jointech e-lock) reports whose header has a one-byte serial.
pub const LOCATION_JT701: u16 = 0x5501;
pub const LOCATION_JT701_BLIND: u16 = 0x5502;

/// The longest `(…)` text frame (the e-lock frames are a few dozen characters).
pub const MAX_TEXT_FRAME: usize = 512;

/// The terminal number (终端手机号) as it came: 6 bytes BCD (2011/2013), 10 bytes BCD (2019).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terminal {
    bytes: [u8; 10],
    len: u8,
}

impl Terminal {
    /// The 2019-form number 0.
    pub const ZERO_2019: Terminal = Terminal {
        bytes: [0; 10],
        len: 10,
    };

    /// `bytes` must be 6 or 10 bytes long (the header reader guarantees it).
    pub fn new(bytes: &[u8]) -> Option<Terminal> {
        if bytes.len() != 6 && bytes.len() != 10 {
            return None;
        }
        let mut b = [0u8; 10];
        b.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(Terminal {
            bytes: b,
            len: bytes.len() as u8,
        })
    }

    /// The bytes as sent (echoed in every reply).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The BCD digits, all of them (12 or 20); `None` when a nibble is not a digit.
    pub fn digits(&self) -> Option<String> {
        bcd_digits(self.as_bytes())
    }

    /// The device id and whether it came from the packed-IMEI convention.
    ///
    /// - BCD digits: the number with the zeros a 2019 header pads it with removed, down to 12
    ///   digits, so a SIM number reads the same in both header forms (`013912345678` and
    ///   `00000000013912345678` are one device) and a 2019 header carrying a 15-digit IMEI
    ///   (`00000356307042441013`) names the device by its IMEI.
    /// - 6 bytes that are not BCD: the convention some firmware (and Traccar) uses for IMEIs,
    ///   the first 14 digits as a 48-bit number with the Luhn digit dropped:
    ///   `0b3a73ce2ff2` is IMEI `123456789012345`.
    /// - anything else (10 bytes that are not BCD): `None`.
    pub fn device_id(&self) -> Option<(String, bool)> {
        if let Some(d) = self.digits() {
            let keep = d.len().min(d.trim_start_matches('0').len().max(12));
            let id = d.get(d.len() - keep..)?.to_string();
            return Some((id, false));
        }
        if self.len != 6 {
            return None;
        }
        let n = self
            .as_bytes()
            .iter()
            .fold(0u64, |a, &b| a << 8 | u64::from(b));
        if n >= 100_000_000_000_000 {
            // More than 14 digits: no IMEI body.
            return None;
        }
        let body = format!("{n:014}");
        let check = crate::device_id::luhn_digit(&body);
        Some((format!("{body}{check}"), true))
    }

    /// The authentication code a registration answer hands out: the terminal number as
    /// decoded (all its digits, or the packed IMEI), as Traccar does; devices store it and
    /// send it back in `0102`.
    pub fn auth_code(&self) -> String {
        match self.digits() {
            Some(d) => d,
            None => self
                .device_id()
                .map(|(id, _)| id)
                .unwrap_or_else(|| self.as_bytes().iter().map(|b| format!("{b:02x}")).collect()),
        }
    }

    /// The 6-byte number of a device id: 12 BCD digits, or a 15-digit IMEI in the packed
    /// form. Used by the simulator and tests.
    pub fn from_id(id: &str) -> Option<Terminal> {
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match id.len() {
            0..=12 => Terminal::new(&bcd(&format!("{id:0>12}"))),
            15 => {
                let n: u64 = id.get(..14)?.parse().ok()?;
                Terminal::new(n.to_be_bytes().get(2..)?)
            }
            13..=20 => Terminal::new(&bcd(&format!("{id:0>20}"))),
            _ => None,
        }
    }

    /// The 10-byte (2019) number of a device id of at most 20 digits.
    pub fn from_id_2019(id: &str) -> Option<Terminal> {
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Terminal::new(&bcd(&format!("{id:0>20}")))
    }
}

/// Packs an even number of ASCII digits as BCD.
pub fn bcd(digits: &str) -> Vec<u8> {
    digits
        .as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = p.first().map_or(0, |d| d.wrapping_sub(b'0') & 0x0F);
            let lo = p.get(1).map_or(0, |d| d.wrapping_sub(b'0') & 0x0F);
            hi << 4 | lo
        })
        .collect()
}

/// The digits of BCD bytes; `None` when a nibble is not a digit.
pub fn bcd_digits(bytes: &[u8]) -> Option<String> {
    let mut s = String::with_capacity(bytes.len() * 2);
    for n in bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]) {
        if n > 9 {
            return None;
        }
        s.push(char::from(b'0' + n));
    }
    Some(s)
}

/// Package fields of a sub-packaged message (消息包封装项).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// Packages in the whole message.
    pub total: u16,
    /// This package's number, from 1.
    pub index: u16,
}

/// A message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub attributes: u16,
    /// The 2019 protocol version byte (attribute bit 14).
    pub version: Option<u8>,
    pub terminal: Terminal,
    /// The message serial (流水号); one byte in the JT701 reports.
    pub serial: u16,
    pub short_serial: bool,
    pub package: Option<Package>,
}

impl Header {
    /// The addressee of a server frame answering this one: the same version and number.
    pub fn addressee(&self) -> Addressee {
        Addressee {
            version: self.version,
            terminal: self.terminal,
        }
    }

    /// The encryption bits (10–12), meaningful for standard messages only (the JT701 reports
    /// use them otherwise).
    pub fn encryption(&self) -> u16 {
        (self.attributes & ENCRYPTION_MASK) >> 10
    }
}

/// One message: its header and its body (unescaped, check byte removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Vec<u8>,
}

/// What is at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes to decide; consume nothing.
    Incomplete,
    /// A checked message spanning `.1` wire bytes.
    Message(Message, usize),
    /// A `(…)` text frame (delimiters included) spanning `.1` bytes.
    Text(Vec<u8>, usize),
    /// Bytes to drop, and why.
    Skip(usize, Reject),
}

/// Why bytes were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes before the next delimiter.
    Garbage,
    /// `7E 7E`: an empty frame, or a lost frame's closing delimiter.
    StrayDelimiter,
    /// `7D` followed by something other than `01`/`02`.
    BadEscape,
    /// The check byte does not match.
    BadChecksum,
    /// Shorter than a header and check byte.
    Truncated,
    /// The body length field disagrees with the body.
    BadLength { declared: usize, actual: usize },
    /// No closing delimiter within the frame cap.
    TooLarge,
}

/// Splits one frame off the front of `buf` (wire bytes). `max_frame` caps a whole frame,
/// delimiters included, and is checked before anything is allocated for it.
pub fn split(buf: &[u8], max_frame: usize) -> Split {
    let Some(&first) = buf.first() else {
        return Split::Incomplete;
    };
    match first {
        FLAG => split_binary(buf, max_frame),
        b'(' => split_text(buf, max_frame.min(MAX_TEXT_FRAME)),
        _ => {
            let skip = buf
                .iter()
                .position(|&b| b == FLAG || b == b'(')
                .unwrap_or(buf.len());
            Split::Skip(skip.max(1), Reject::Garbage)
        }
    }
}

fn split_binary(buf: &[u8], max_frame: usize) -> Split {
    let window = buf.get(1..buf.len().min(max_frame)).unwrap_or_default();
    let Some(at) = window.iter().position(|&b| b == FLAG) else {
        return if buf.len() >= max_frame {
            // Drop the opening delimiter only: the rest is skipped as garbage up to the next
            // delimiter, so a good frame behind it is found again.
            Split::Skip(1, Reject::TooLarge)
        } else {
            Split::Incomplete
        };
    };
    let end = at + 1;
    if end == 1 {
        return Split::Skip(1, Reject::StrayDelimiter);
    }
    let total = end + 1;
    let escaped = buf.get(1..end).unwrap_or_default();
    let Some(content) = unescape(escaped) else {
        return Split::Skip(total, Reject::BadEscape);
    };
    let Some((&check, covered)) = content.split_last() else {
        return Split::Skip(total, Reject::Truncated);
    };
    if xor(covered) != check {
        return Split::Skip(total, Reject::BadChecksum);
    }
    match parse(covered) {
        Ok(m) => Split::Message(m, total),
        Err(why) => Split::Skip(total, why),
    }
}

fn split_text(buf: &[u8], max: usize) -> Split {
    for (i, &b) in buf.iter().enumerate().skip(1) {
        if i >= max {
            return Split::Skip(1, Reject::TooLarge);
        }
        match b {
            b')' => return Split::Text(buf.get(..=i).unwrap_or_default().to_vec(), i + 1),
            // A text frame is printable; anything else was a `(` inside binary noise.
            0x20..=0x7E => {}
            _ => return Split::Skip(1, Reject::Garbage),
        }
    }
    if buf.len() >= max {
        Split::Skip(1, Reject::TooLarge)
    } else {
        Split::Incomplete
    }
}

/// Reads the header of an unescaped, checked message (check byte removed).
pub fn parse(content: &[u8]) -> Result<Message, Reject> {
    let mut c = Cursor::new(content);
    let id = c.u16().ok_or(Reject::Truncated)?;
    let attributes = c.u16().ok_or(Reject::Truncated)?;
    let short_serial = id == LOCATION_JT701 || id == LOCATION_JT701_BLIND;
    // The JT701 reports use the upper attribute bits their own way; they have no version.
    let version = if !short_serial && attributes & VERSION_FLAG != 0 {
        Some(c.u8().ok_or(Reject::Truncated)?)
    } else {
        None
    };
    let terminal_len = if version.is_some() { 10 } else { 6 };
    let terminal = c
        .take(terminal_len)
        .and_then(Terminal::new)
        .ok_or(Reject::Truncated)?;
    let serial = if short_serial {
        c.u8().map(u16::from)
    } else {
        c.u16()
    }
    .ok_or(Reject::Truncated)?;
    let package = if !short_serial && attributes & SUBPACKAGED != 0 {
        let total = c.u16().ok_or(Reject::Truncated)?;
        let index = c.u16().ok_or(Reject::Truncated)?;
        Some(Package { total, index })
    } else {
        None
    };
    let declared = usize::from(attributes & BODY_LENGTH_MASK);
    let body = c.rest();
    if body.len() != declared {
        return Err(Reject::BadLength {
            declared,
            actual: body.len(),
        });
    }
    Ok(Message {
        header: Header {
            id,
            attributes,
            version,
            terminal,
            serial,
            short_serial,
            package,
        },
        body: body.to_vec(),
    })
}

/// XOR of every byte.
pub fn xor(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |a, &b| a ^ b)
}

/// Undoes the escapes; `None` on a `7D` not followed by `01` or `02`.
pub fn unescape(escaped: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut it = escaped.iter();
    while let Some(&b) = it.next() {
        if b == ESCAPE {
            match it.next() {
                Some(0x01) => out.push(ESCAPE),
                Some(0x02) => out.push(FLAG),
                _ => return None,
            }
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Escapes `content` into `out`.
pub fn escape_into(out: &mut BytesMut, content: &[u8]) {
    for &b in content {
        match b {
            FLAG => out.put_slice(&[ESCAPE, 0x02]),
            ESCAPE => out.put_slice(&[ESCAPE, 0x01]),
            _ => out.put_u8(b),
        }
    }
}

/// Delimits and escapes a message whose check byte is already appended.
pub fn wrap(content: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(content.len() + content.len() / 8 + 4);
    out.put_u8(FLAG);
    escape_into(&mut out, content);
    out.put_u8(FLAG);
    out.freeze()
}

/// Who a server frame goes to: the header form and number the device used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressee {
    pub version: Option<u8>,
    pub terminal: Terminal,
}

/// Builds a server frame: header (the addressee's form), body, check byte, escaped and
/// delimited. Bodies longer than one frame carries are cut (callers build short bodies and
/// check command lengths first).
pub fn encode(id: u16, to: &Addressee, serial: u16, body: &[u8]) -> Bytes {
    let body = body.get(..body.len().min(MAX_BODY)).unwrap_or_default();
    let mut m = Vec::with_capacity(17 + body.len() + 1);
    m.extend_from_slice(&id.to_be_bytes());
    let mut attributes = body.len() as u16;
    if to.version.is_some() {
        attributes |= VERSION_FLAG;
    }
    m.extend_from_slice(&attributes.to_be_bytes());
    if let Some(v) = to.version {
        m.push(v);
    }
    m.extend_from_slice(to.terminal.as_bytes());
    m.extend_from_slice(&serial.to_be_bytes());
    m.extend_from_slice(body);
    m.push(xor(&m));
    wrap(&m)
}

/// The JT701 answer `4401` to a `5501`/`5502` report that asks for one (attribute bit 15):
/// a 6-byte number, a one-byte serial (always 1, as the deployed servers send), the answered
/// message id and a result.
pub fn encode_jt701_answer(terminal: &Terminal, answered: u16) -> Bytes {
    let mut m = Vec::with_capacity(16);
    m.extend_from_slice(&0x4401u16.to_be_bytes());
    m.extend_from_slice(&3u16.to_be_bytes());
    m.extend_from_slice(terminal.as_bytes());
    m.push(1);
    m.extend_from_slice(&answered.to_be_bytes());
    m.push(0);
    m.push(xor(&m));
    wrap(&m)
}

/// Detection: a JT/T 808 frame starts `7E` and a message id (never `0000`), or `(` and a digit
/// (the e-lock text frames).
///
/// A Wialon Retranslator packet whose little-endian size field ends in `7E` also starts `7E`
/// (`7E 01 00 00` is 382 bytes): when the next bytes could be both (`7E xx 00 00`, a message id
/// ending `00` with a short 2013 body), the probe reads on. Retranslator continues with a
/// printable unit id, a NUL, time and flags, then its first block type `0B BB`; a JT/T 808
/// header has a BCD number there. A non-printable byte before the NUL, or no `0B BB` where the
/// block type would be, says JT/T 808.
pub fn probe(prefix: &[u8]) -> Probe {
    match prefix {
        [] => Probe::NeedMore,
        [b'(', rest @ ..] => match rest.first() {
            None => Probe::NeedMore,
            Some(d) if d.is_ascii_digit() => Probe::Yes,
            Some(_) => Probe::No,
        },
        [FLAG] | [FLAG, 0x00] => Probe::NeedMore,
        [FLAG, 0x00, 0x00, ..] => Probe::No,
        [FLAG, _] | [FLAG, _, 0x00] => Probe::NeedMore,
        [FLAG, _, 0x00, 0x00, rest @ ..] => retranslator_or_not(rest),
        [FLAG, ..] => Probe::Yes,
        _ => Probe::No,
    }
}

/// Bytes 4.. of a `7E xx 00 00` prefix: a Retranslator unit id (printable, NUL-terminated)
/// followed 8 bytes later by `0B BB`, or not.
fn retranslator_or_not(rest: &[u8]) -> Probe {
    for (i, &b) in rest.iter().enumerate() {
        match b {
            0 if i == 0 => return Probe::Yes,
            0 => {
                return match (rest.get(i + 9), rest.get(i + 10)) {
                    (Some(0x0B), Some(0xBB)) => Probe::No,
                    (Some(_), Some(_)) => Probe::Yes,
                    _ => Probe::NeedMore,
                }
            }
            0x20..=0x7E => {}
            _ => return Probe::Yes,
        }
    }
    Probe::NeedMore
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn escapes_and_unescapes_the_spec_example() {
        // JT/T 808 §4.4.2: 30 7E 08 7D 55 is sent as 7E 30 7D 02 08 7D 01 55 7E (Traccar's
        // frame encoder and decoder fixtures are the same bytes).
        assert_eq!(&wrap(&h("307e087d55"))[..], &h("7e307d02087d01557e")[..]);
        assert_eq!(unescape(&h("307d02087d0155")).unwrap(), h("307e087d55"));
        assert_eq!(unescape(&h("307d03")), None);
        assert_eq!(unescape(&h("307d")), None);
    }

    #[test]
    fn splits_a_heartbeat_and_checks_its_header() {
        let wire = h("7e0002000004304832546500b7ca7e");
        let Split::Message(m, n) = split(&wire, 4096) else {
            panic!("{:?}", split(&wire, 4096));
        };
        assert_eq!(n, wire.len());
        assert_eq!(m.header.id, 0x0002);
        assert_eq!(m.header.serial, 0x00b7);
        assert_eq!(m.header.terminal.digits().as_deref(), Some("043048325465"));
        assert!(m.body.is_empty());
        // Every shorter prefix waits.
        for k in 0..wire.len() {
            assert_eq!(split(&wire[..k], 4096), Split::Incomplete, "prefix {k}");
        }
    }

    #[test]
    fn refuses_bad_checks_lengths_escapes_and_oversized_frames() {
        let mut bad = h("7e0002000004304832546500b7ca7e");
        bad[13] ^= 1;
        assert_eq!(split(&bad, 4096), Split::Skip(15, Reject::BadChecksum));
        // Body length 1 declared, none there (check byte recomputed).
        let mut c = h("0002000104304832546500b7");
        c.push(xor(&c));
        let w = wrap(&c);
        assert_eq!(
            split(&w, 4096),
            Split::Skip(
                w.len(),
                Reject::BadLength {
                    declared: 1,
                    actual: 0
                }
            )
        );
        assert_eq!(
            split(&h("7e307d03087e"), 4096),
            Split::Skip(6, Reject::BadEscape)
        );
        assert_eq!(
            split(&h("7e7e0002"), 4096),
            Split::Skip(1, Reject::StrayDelimiter)
        );
        let long = [vec![FLAG], vec![0x30; 99]].concat();
        assert_eq!(split(&long[..99], 100), Split::Incomplete);
        assert_eq!(split(&long, 100), Split::Skip(1, Reject::TooLarge));
        assert_eq!(
            split(b"$$\x7e", 100),
            Split::Skip(2, Reject::Garbage),
            "garbage up to the delimiter"
        );
    }

    #[test]
    fn text_frames_are_printable_up_to_the_parenthesis() {
        let t = b"(794104004140,1,001,BASE,2,TIME)";
        assert_eq!(split(t, 4096), Split::Text(t.to_vec(), t.len()));
        assert_eq!(split(&t[..10], 4096), Split::Incomplete);
        assert_eq!(split(b"(12\x01)", 4096), Split::Skip(1, Reject::Garbage));
    }

    #[test]
    fn device_ids_of_both_header_forms_and_the_packed_imei() {
        let t = |s: &str| Terminal::new(&h(s)).unwrap();
        assert_eq!(
            t("013912345678").device_id(),
            Some(("013912345678".into(), false))
        );
        assert_eq!(
            t("00000000013912345678").device_id(),
            Some(("013912345678".into(), false))
        );
        assert_eq!(
            t("00000356307042441013").device_id(),
            Some(("356307042441013".into(), false))
        );
        // The 14 digits and their Luhn digit (Traccar's encoder fixture uses the made-up
        // IMEI 123456789012345, whose last digit is no Luhn digit).
        assert_eq!(
            t("0b3a73ce2ff2").device_id(),
            Some(("123456789012347".into(), true))
        );
        assert_eq!(t("0b3a73ce2ff2").auth_code(), "123456789012347");
        assert_eq!(crate::device_id::luhn_digit("35630704244101"), 3);
        assert_eq!(t("000000000000000000ab").device_id(), None);
        assert_eq!(
            Terminal::from_id("123456789012345").unwrap().as_bytes(),
            &h("0b3a73ce2ff2")[..]
        );
        assert_eq!(
            Terminal::from_id_2019("356307042441013")
                .unwrap()
                .device_id()
                .unwrap()
                .0,
            "356307042441013"
        );
    }

    #[test]
    fn encodes_the_worked_general_answer() {
        let to = Addressee {
            version: None,
            terminal: Terminal::new(&h("043048325465")).unwrap(),
        };
        let body = h("00b7000200");
        assert_eq!(
            &encode(0x8001, &to, 0, &body)[..],
            &h("7e80010005043048325465000000b70002004e7e")[..]
        );
    }

    #[test]
    fn probe_tells_retranslator_sizes_ending_in_7e_apart() {
        assert_eq!(probe(&[0x7E]), Probe::NeedMore);
        assert_eq!(probe(&h("7e000000")), Probe::No);
        assert_eq!(probe(&h("7e0002")), Probe::Yes);
        assert_eq!(probe(&h("7e0200")), Probe::NeedMore);
        assert_eq!(probe(&h("7e020000")), Probe::NeedMore);
        // 2013 location, body 0x48, terminal 05 11 ...: a non-printable byte.
        assert_eq!(probe(&h("7e0200004805")), Probe::Yes);
        // A 382-byte Retranslator packet: id "12345", NUL, time, flags, 0B BB.
        let r = [
            &h("7e010000")[..],
            b"12345\0",
            &h("4b0bfb7000000003")[..],
            &h("0bbb")[..],
        ]
        .concat();
        for n in 1..=r.len() {
            assert_ne!(probe(&r[..n]), Probe::Yes, "prefix {n}");
        }
        assert_eq!(probe(&r), Probe::No);
        assert_eq!(probe(b"(7"), Probe::Yes);
        assert_eq!(probe(b"(x"), Probe::No);
        assert_eq!(probe(b"$$"), Probe::No);
    }
}
