//! GPS103 framing: where one ASCII message ends.
//!
//! Devices end a message with `;` (the usual form), `*` (the "alternative" form), a line end
//! (`\n` or `\r\n`) or nothing at all (some firmware). Traccar's TCP splitter cuts at any of
//! `\r\n`, `\n`, `;` and `*`; this framer does the same and, for firmware that omits the
//! terminator, also ends a message where the next one visibly starts (`imei:` or `##,`), so
//! an unterminated report is decoded as soon as the device sends its next message instead of
//! being glued to it. Line ends between messages (`;\r\n`) are skipped.
//!
//! A UDP datagram is complete: its end also ends its last message (Traccar's UDP server has
//! no splitter at all), and a datagram may hold several terminated messages.
//!
//! Caps are checked before anything is copied: a message may hold at most `cap` bytes before
//! its terminator. Over TCP a longer run without a terminator loses the framing (the session
//! closes; the device reconnects and logs in again); a UDP datagram that holds one is dropped.

use bytes::{Buf, Bytes, BytesMut};

use crate::protocol::ErrorKind;

/// The next message's first bytes: a report, or a login.
const REPORT_START: &[u8] = b"imei:";
const LOGIN_START: &[u8] = b"##,";
/// Longest device id (IMEI digits) a heartbeat may carry.
pub const MAX_ID_DIGITS: usize = 20;

/// What ended a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `;`: the usual terminator.
    Semicolon,
    /// `*`: the alternative report form.
    Star,
    /// `\n` or `\r\n`.
    LineEnd,
    /// No terminator: the next message (`imei:` / `##,`) started right after it.
    NextMessage,
    /// No terminator: the datagram ended.
    Datagram,
}

/// One message, its terminator removed.
#[derive(Debug, Clone)]
pub struct Message {
    pub text: Bytes,
    pub end: End,
}

/// A framing failure.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct FrameError {
    pub kind: ErrorKind,
    pub detail: String,
    /// The stream cannot be framed past this point (TCP closes; UDP drops the datagram).
    pub lost: bool,
}

/// A stream's (TCP) or a peer's (UDP) framing state.
#[derive(Debug)]
pub struct Framer {
    udp: bool,
    cap: usize,
    /// Bytes at the front of the buffer known to hold no terminator and no message start
    /// (TCP; rescanned with an overlap of a start pattern's length).
    scan: usize,
}

impl Framer {
    pub fn new(udp: bool, cap: usize) -> Self {
        Framer { udp, cap, scan: 0 }
    }

    /// Takes the next message off the front of `buf`. `Ok(None)`: no whole message yet (TCP),
    /// or nothing but line ends and empty messages (both).
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        loop {
            let blank = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if blank > 0 {
                buf.advance(blank);
                self.scan = 0;
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let Some((len, end, consumed)) = self.split(buf)? else {
                return Ok(None);
            };
            self.scan = 0;
            let mut unit = buf.split_to(consumed.min(buf.len()));
            unit.truncate(len);
            if end == End::LineEnd || end == End::Datagram {
                while unit.last() == Some(&b'\r') {
                    unit.truncate(unit.len() - 1);
                }
            }
            // A stray terminator (`;;`, a lone `*`) is no message.
            if !unit.is_empty() {
                return Ok(Some(Message {
                    text: unit.freeze(),
                    end,
                }));
            }
        }
    }

    /// Where the message at the front of `buf` ends: `(text length, end, bytes consumed)`.
    fn split(&mut self, buf: &mut BytesMut) -> Result<Option<(usize, End, usize)>, FrameError> {
        // A message of `cap` bytes and its terminator.
        let window = buf.len().min(self.cap.saturating_add(1));
        let from = self.scan.min(window);
        let term = buf
            .get(from..window)
            .and_then(|w| w.iter().position(|&b| matches!(b, b';' | b'*' | b'\n')))
            .map(|p| p.saturating_add(from));
        let limit = term.unwrap_or(window);
        let search_from = from.saturating_sub(REPORT_START.len() - 1).max(1);
        if let Some(p) = next_start(buf.get(..limit).unwrap_or_default(), search_from) {
            return Ok(Some((p, End::NextMessage, p)));
        }
        if let Some(t) = term {
            let end = match buf.get(t) {
                Some(b';') => End::Semicolon,
                Some(b'*') => End::Star,
                _ => End::LineEnd,
            };
            return Ok(Some((t, end, t.saturating_add(1))));
        }
        if buf.len() > self.cap {
            if self.udp {
                buf.clear();
            }
            return Err(FrameError {
                kind: ErrorKind::TooLarge,
                detail: format!("no message terminator within {} bytes", self.cap),
                lost: !self.udp,
            });
        }
        if self.udp {
            return Ok(Some((buf.len(), End::Datagram, buf.len())));
        }
        // Keep an overlap so a start pattern cut by the end of the buffer is found whole later.
        self.scan = window;
        Ok(None)
    }
}

/// The first position `p >= from` (and > 0) where a new message visibly starts in `data`:
/// `##,`, or `imei:` that is neither the login's own (`##,imei:`) nor a report glued to a
/// heartbeat (`<IMEI>imei:`, one message, see `packet`).
fn next_start(data: &[u8], from: usize) -> Option<usize> {
    let mut p = from.max(1);
    while p < data.len() {
        let rest = data.get(p..).unwrap_or_default();
        if rest.starts_with(LOGIN_START) {
            return Some(p);
        }
        if rest.starts_with(REPORT_START) {
            let head = data.get(..p).unwrap_or_default();
            let login_own = head.ends_with(LOGIN_START);
            let glued = head.len() <= MAX_ID_DIGITS && head.iter().all(u8::is_ascii_digit);
            if !login_own && !glued {
                return Some(p);
            }
        }
        p += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcomes = Vec<Result<(Vec<u8>, End), FrameError>>;

    fn all(f: &mut Framer, input: &[u8]) -> (Outcomes, usize) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match f.next(&mut buf) {
                Ok(None) => break,
                Ok(Some(m)) => out.push(Ok((m.text.to_vec(), m.end))),
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

    fn texts(out: Outcomes) -> Vec<(String, End)> {
        out.into_iter()
            .map(|r| {
                let (t, e) = r.unwrap();
                (String::from_utf8(t).unwrap(), e)
            })
            .collect()
    }

    #[test]
    fn every_terminator_and_line_ends_between_messages() {
        let mut f = Framer::new(false, 256);
        let (out, left) = all(
            &mut f,
            b"##,imei:359586015829802,A;\r\n359586015829802;imei:1,x,*imei:2,y\r\nimei:3,z\nimei:4",
        );
        assert_eq!(
            texts(out),
            [
                ("##,imei:359586015829802,A".into(), End::Semicolon),
                ("359586015829802".into(), End::Semicolon),
                ("imei:1,x,".into(), End::Star),
                ("imei:2,y".into(), End::LineEnd),
                ("imei:3,z".into(), End::LineEnd),
            ]
        );
        // `imei:4` waits for its terminator (or the next message).
        assert_eq!(left, 6);
    }

    #[test]
    fn an_unterminated_message_ends_where_the_next_one_starts() {
        let mut f = Framer::new(false, 256);
        let (out, left) = all(
            &mut f,
            b"imei:1,tracker,0.37,imei:2,tracker;##,imei:3,A;359586015829802imei:4,help me;5##,imei:6,A;",
        );
        assert_eq!(
            texts(out),
            [
                ("imei:1,tracker,0.37,".into(), End::NextMessage),
                ("imei:2,tracker".into(), End::Semicolon),
                // The login's own `imei:` and a heartbeat glued to a report do not split.
                ("##,imei:3,A".into(), End::Semicolon),
                ("359586015829802imei:4,help me".into(), End::Semicolon),
                ("5".into(), End::NextMessage),
                ("##,imei:6,A".into(), End::Semicolon),
            ]
        );
        assert_eq!(left, 0);
    }

    #[test]
    fn byte_by_byte_gives_the_same_messages() {
        let input =
            b"imei:1,tracker,0.37,imei:2,tracker;\r\n##,imei:3,A;359586015829802imei:4,x;6;";
        let mut whole = Framer::new(false, 256);
        let (want, _) = all(&mut whole, input);
        let want = texts(want);
        let mut f = Framer::new(false, 256);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(m) = f.next(&mut buf).unwrap() {
                got.push((String::from_utf8(m.text.to_vec()).unwrap(), m.end));
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn the_cap_holds_the_text_and_a_longer_run_loses_the_stream() {
        // Exactly `cap` bytes and the terminator: fine.
        let mut f = Framer::new(false, 16);
        let mut input = vec![b'1'; 16];
        input.push(b';');
        let (out, _) = all(&mut f, &input);
        assert_eq!(out[0].as_ref().unwrap().0.len(), 16);
        // One more: the terminator is out of reach.
        let mut f = Framer::new(false, 16);
        let (out, _) = all(&mut f, &[b'1'; 18]);
        let e = out[0].as_ref().unwrap_err();
        assert!(e.lost && e.kind == ErrorKind::TooLarge);
        // Below the cap, TCP waits.
        let mut f = Framer::new(false, 16);
        let (out, left) = all(&mut f, &[b'1'; 16]);
        assert!(out.is_empty());
        assert_eq!(left, 16);
    }

    #[test]
    fn a_datagram_ends_its_last_message_and_may_hold_several() {
        let mut f = Framer::new(true, 256);
        let (out, left) = all(&mut f, b"##,imei:1,A;imei:1,tracker,x\r\n");
        assert_eq!(
            texts(out),
            [
                ("##,imei:1,A".into(), End::Semicolon),
                ("imei:1,tracker,x".into(), End::LineEnd),
            ]
        );
        assert_eq!(left, 0);
        let (out, _) = all(&mut f, b"359586015829802");
        assert_eq!(texts(out), [("359586015829802".into(), End::Datagram)]);
        let mut f = Framer::new(true, 8);
        let mut buf = BytesMut::from(&b"imei:123456789"[..]);
        let e = f.next(&mut buf).unwrap_err();
        assert!(!e.lost && buf.is_empty());
    }

    #[test]
    fn stray_terminators_are_no_messages() {
        let mut f = Framer::new(false, 64);
        let (out, left) = all(&mut f, b";;*\r\n;1;");
        assert_eq!(texts(out), [("1".into(), End::Semicolon)]);
        assert_eq!(left, 0);
    }
}
