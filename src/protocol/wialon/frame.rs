//! Wialon IPS framing: where one packet ends. A packet is a text line (`\r\n` or `\n`
//! terminated, capped at `wialon_max_packet_bytes`), followed for `#I#` photos and `#T#`
//! tachograph blocks by the binary block its header announces; or a `0xFF` compressed
//! container holding exactly one such packet.
//!
//! Framing only finds boundaries; `packet` parses the line and the session handles it. Every
//! outcome says how many bytes are consumed, so the buffer stays bounded by one packet:
//!
//! - TCP: a line longer than the cap, an oversized container or binary block, or a binary
//!   header whose size cannot be read leaves the stream unframeable ([`FrameError::lost`]:
//!   the session closes). A container whose content is bad was itself framed: it is dropped
//!   and the stream goes on.
//! - UDP: a datagram is one packet; whatever is wrong with it, the datagram is dropped and
//!   the peer's next datagram starts afresh.

use bytes::{Buf, Bytes, BytesMut};

use super::compress;
use super::packet::{self, Line, PacketType};
use crate::protocol::ErrorKind;

/// One packet: its line and (for `#I#` / `#T#`) its binary block.
#[derive(Debug, Clone)]
pub struct Packet {
    bytes: Bytes,
    line_len: usize,
    header_len: usize,
}

impl Packet {
    /// The text line without its terminator.
    pub fn line(&self) -> &[u8] {
        self.bytes.get(..self.line_len).unwrap_or_default()
    }

    /// The binary block after the line (empty for packets without one).
    pub fn bin(&self) -> &[u8] {
        self.bytes.get(self.header_len..).unwrap_or_default()
    }
}

/// A framing failure.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct FrameError {
    pub kind: ErrorKind,
    pub detail: String,
    /// The spec's answer, where it has one (`#AI#NA;0` for a photo header).
    pub reply: Option<Bytes>,
    /// The stream cannot be framed past this point (TCP closes; UDP drops the datagram).
    pub lost: bool,
}

impl FrameError {
    fn new(kind: ErrorKind, detail: impl Into<String>, lost: bool) -> Self {
        FrameError {
            kind,
            detail: detail.into(),
            reply: None,
            lost,
        }
    }
}

/// Where one packet's parts lie in a buffer.
#[derive(Debug, Clone, Copy)]
struct Unit {
    /// The text line without its terminator.
    line_len: usize,
    /// Line plus terminator: where a binary block starts.
    header_len: usize,
    /// Everything the packet occupies.
    total: usize,
}

enum Split {
    NeedMore { scanned: usize },
    Unit(Unit),
}

/// A stream's (TCP) or a peer's (UDP) framing state.
#[derive(Debug)]
pub struct Framer {
    udp: bool,
    max_packet: usize,
    /// Bytes at the front of the buffer already known to hold no `\n`.
    scan: usize,
}

impl Framer {
    pub fn new(udp: bool, max_packet: usize) -> Self {
        Framer {
            udp,
            max_packet,
            scan: 0,
        }
    }

    /// Takes the next packet off the front of `buf`. `Ok(None)`: no whole packet yet (TCP),
    /// or nothing but line ends (both).
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        if self.udp {
            let result = self.next_datagram(buf);
            if result.is_err() {
                buf.clear();
            }
            result
        } else {
            self.next_stream(buf)
        }
    }

    fn next_stream(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        // Stray line ends between packets are not packets.
        let blank = leading_line_ends(buf);
        if blank > 0 {
            buf.advance(blank);
            self.scan = 0;
        }
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first == compress::MARKER {
            return self.container(buf);
        }
        match split_unit(buf, self.scan, false, self.max_packet)? {
            Split::NeedMore { scanned } => {
                self.scan = scanned;
                Ok(None)
            }
            Split::Unit(u) => {
                self.scan = 0;
                Ok(Some(packet(buf.split_to(u.total).freeze(), u)))
            }
        }
    }

    fn next_datagram(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        buf.advance(leading_line_ends(buf));
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first == compress::MARKER {
            return self.container(buf);
        }
        match split_unit(buf, 0, true, self.max_packet)? {
            Split::Unit(u) => Ok(Some(packet(buf.split_to(u.total).freeze(), u))),
            Split::NeedMore { .. } => Err(FrameError::new(
                ErrorKind::BadLength,
                "truncated datagram",
                false,
            )),
        }
    }

    /// One `0xFF` container at the front of `buf`.
    fn container(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, FrameError> {
        let total = match compress::split(buf, self.max_packet) {
            Ok(compress::Split::Incomplete) if self.udp => {
                return Err(FrameError::new(
                    ErrorKind::BadLength,
                    "compressed container longer than the datagram",
                    false,
                ))
            }
            Ok(compress::Split::Incomplete) => return Ok(None),
            Ok(compress::Split::Complete { total }) => total,
            Err(e) => {
                let kind = match e {
                    compress::ContainerError::Empty => ErrorKind::BadLength,
                    _ => ErrorKind::TooLarge,
                };
                return Err(FrameError::new(kind, e.to_string(), true));
            }
        };
        let container = buf.split_to(total);
        self.scan = 0;
        let data = container.get(compress::HEADER_LEN..).unwrap_or_default();
        // The container's bytes are consumed whatever its content: framing holds, so go on.
        let content = compress::inflate(data, self.max_packet).map_err(|e| {
            let kind = match e {
                compress::ContainerError::InflatedTooLarge(_) => ErrorKind::TooLarge,
                _ => ErrorKind::Malformed,
            };
            FrameError::new(kind, e.to_string(), false)
        })?;
        let content = content
            .get(leading_line_ends(&content)..)
            .unwrap_or_default();
        let u = match split_unit(content, 0, true, self.max_packet) {
            Ok(Split::Unit(u)) => u,
            Ok(Split::NeedMore { .. }) => {
                return Err(FrameError::new(
                    ErrorKind::BadLength,
                    "compressed packet shorter than its binary block",
                    false,
                ))
            }
            Err(e) => return Err(FrameError { lost: false, ..e }),
        };
        let rest = content.get(u.total..).unwrap_or_default();
        if !rest.iter().all(|&b| b == b'\r' || b == b'\n') {
            return Err(FrameError::new(
                ErrorKind::Malformed,
                "compressed container holds more than one packet",
                false,
            ));
        }
        let bytes = Bytes::copy_from_slice(content.get(..u.total).unwrap_or_default());
        Ok(Some(packet(bytes, u)))
    }
}

fn packet(bytes: Bytes, u: Unit) -> Packet {
    Packet {
        bytes,
        line_len: u.line_len,
        header_len: u.header_len,
    }
}

fn leading_line_ends(data: &[u8]) -> usize {
    data.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// Finds one packet at the front of `data`: a line (capped at `cap` bytes before its
/// terminator) and, for `#I#`/`#T#`, the binary block its header announces. `from`: bytes
/// already known to hold no `\n`. `complete`: `data` is all there is (a datagram or an inflated
/// container), so a missing terminator ends the line instead of meaning "wait".
fn split_unit(data: &[u8], from: usize, complete: bool, cap: usize) -> Result<Split, FrameError> {
    let too_long = || {
        FrameError::new(
            ErrorKind::TooLarge,
            format!("line longer than {cap} bytes"),
            true,
        )
    };
    let window = data.len().min(cap.saturating_add(2));
    let from = from.min(window);
    let nl = data
        .get(from..window)
        .and_then(|w| w.iter().position(|&b| b == b'\n'))
        .map(|p| p.saturating_add(from));
    let (mut line_len, header_len) = match nl {
        Some(p) => (p, p.saturating_add(1)),
        None if data.len() > cap.saturating_add(1) => return Err(too_long()),
        None if complete => (data.len(), data.len()),
        None => return Ok(Split::NeedMore { scanned: window }),
    };
    if line_len > 0 && data.get(line_len - 1) == Some(&b'\r') {
        line_len -= 1;
    }
    if line_len > cap {
        return Err(too_long());
    }
    let line = data.get(..line_len).unwrap_or_default();
    let bin_len = match packet::split_line(line) {
        Some(l) if matches!(l.ty, PacketType::Image | PacketType::TachoBlock) => bin_len(&l, cap)?,
        _ => 0,
    };
    let total = header_len.saturating_add(bin_len);
    if data.len() < total {
        if complete {
            return Err(FrameError::new(
                ErrorKind::BadLength,
                format!("binary block of {bin_len} bytes is cut short"),
                true,
            ));
        }
        // Keep `from` at the terminator so the next call finds it at once.
        return Ok(Split::NeedMore {
            scanned: line_len.min(window),
        });
    }
    Ok(Split::Unit(Unit {
        line_len,
        header_len,
        total,
    }))
}

/// The binary size a `#I#` (first field) or `#T#` (second field) header announces. A size we
/// cannot read or that exceeds the packet cap leaves the stream unframeable: the caller closes
/// (the spec's own advice to firmware is to retry with smaller blocks when the server hangs up).
fn bin_len(l: &Line<'_>, cap: usize) -> Result<usize, FrameError> {
    let (field, reply) = match l.ty {
        PacketType::Image => (0, Some(packet::reply("AI", "NA;0"))),
        _ => (1, None),
    };
    let size = l
        .body
        .split(|&b| b == b';')
        .nth(field)
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|s| s.parse::<usize>().ok());
    let mut err = match size {
        Some(n) if n <= cap => return Ok(n),
        Some(n) => FrameError::new(
            ErrorKind::TooLarge,
            format!("binary block of {n} bytes exceeds {cap}"),
            true,
        ),
        None => FrameError::new(ErrorKind::Malformed, "binary block size unreadable", true),
    };
    err.reply = reply;
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(f: &mut Framer, input: &[u8]) -> (Vec<Result<Vec<u8>, FrameError>>, usize) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match f.next(&mut buf) {
                Ok(None) => break,
                Ok(Some(p)) => out.push(Ok(p.line().to_vec())),
                Err(e) => {
                    let stop = e.lost || f.udp;
                    out.push(Err(e));
                    if stop {
                        break;
                    }
                }
            }
        }
        (out, buf.len())
    }

    #[test]
    fn lines_with_either_terminator_and_a_binary_block() {
        let mut f = Framer::new(false, 1024);
        let (out, left) = all(&mut f, b"\r\n#P#\r\n#P#\n#I#3;0;0;NA;NA;a.jpg\r\nBIN#P");
        let lines: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            lines,
            [
                b"#P#".to_vec(),
                b"#P#".to_vec(),
                b"#I#3;0;0;NA;NA;a.jpg".to_vec()
            ]
        );
        // `#P` waits for its terminator.
        assert_eq!(left, 2);
    }

    #[test]
    fn a_binary_block_is_framed_even_when_it_holds_line_ends() {
        let mut f = Framer::new(false, 1024);
        let mut buf = BytesMut::from(&b"#T#;4;0;0\r\n\r\n\r\n"[..]);
        let p = f.next(&mut buf).unwrap().unwrap();
        assert_eq!(p.bin(), b"\r\n\r\n");
        assert!(buf.is_empty());
        // Split arrival: nothing until the whole block is there.
        let mut buf = BytesMut::from(&b"#T#;4;0;0\r\n\r\n"[..]);
        assert!(f.next(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"ab");
        assert_eq!(f.next(&mut buf).unwrap().unwrap().bin(), b"\r\nab");
    }

    #[test]
    fn oversized_lines_and_blocks_lose_the_stream() {
        let mut f = Framer::new(false, 16);
        let (out, _) = all(&mut f, &[b'#'; 40]);
        let e = out[0].as_ref().unwrap_err();
        assert!(e.lost && e.kind == ErrorKind::TooLarge);
        let mut f = Framer::new(false, 32);
        let (out, _) = all(&mut f, b"#I#99;0;0;NA;NA;a\r\n");
        let e = out[0].as_ref().unwrap_err();
        assert!(e.lost);
        assert_eq!(e.reply.as_deref(), Some(&b"#AI#NA;0\r\n"[..]));
    }

    #[test]
    fn containers_hold_one_packet_and_bad_content_keeps_the_stream() {
        let mut input = compress::compress(b"#P#");
        input.extend(compress::compress(b"#P#\r\n#P#\r\n"));
        input.extend_from_slice(&[compress::MARKER, 3, 0, 1, 2, 3]);
        input.extend_from_slice(b"#P#\r\n");
        let mut f = Framer::new(false, 1024);
        let (out, left) = all(&mut f, &input);
        assert_eq!(left, 0);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].as_ref().unwrap(), b"#P#");
        let two = out[1].as_ref().unwrap_err();
        assert!(!two.lost && two.kind == ErrorKind::Malformed);
        assert!(!out[2].as_ref().unwrap_err().lost);
        assert_eq!(out[3].as_ref().unwrap(), b"#P#");
    }

    #[test]
    fn a_datagram_is_one_packet_and_a_bad_one_is_dropped_whole() {
        let mut f = Framer::new(true, 1024);
        let mut buf = BytesMut::from(&b"123#P#"[..]);
        assert_eq!(f.next(&mut buf).unwrap().unwrap().line(), b"123#P#");
        let mut buf = BytesMut::from(&b"#I#10;0;0;NA;NA;a\r\nshort"[..]);
        let e = f.next(&mut buf).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadLength);
        assert!(buf.is_empty());
    }
}
