//! H02 framing: where a message ends. Three kinds share one stream:
//!
//! - **text**, `*XX,...#`: cut at `#`; the CR/LF some devices send after it is consumed with
//!   the message. A new `*XX,` before the `#` means the message was cut short: it is dropped
//!   so it cannot swallow the next one.
//! - **binary**, `$` + BCD: no delimiter, no length field, no checksum, and three standard
//!   sizes (32 bytes; 45 with cell data; 42 with an 8-byte id). See [`BinaryLength`].
//! - **`X` frames**: 32 bytes, the binary layout with another id (duplicates of a `$` frame;
//!   the gateway consumes and ignores them, as Traccar does).
//!
//! Bytes before a marker (`*`, `$`, `X`) are skipped (reported, so they are counted); CR/LF
//! between messages are not garbage and are consumed silently with the next message. Every
//! outcome says how many bytes to consume; nothing is buffered beyond the text cap or
//! [`BINARY_WAIT_BYTES`].

/// The short binary frame (also every `X` frame).
pub const SHORT: usize = 32;
/// The binary frame with an 8-byte id (15-digit IMEI).
pub const LONG_ID: usize = 42;
/// The binary frame with cell data.
pub const LONG: usize = 45;
/// Binary frames longer than this are not looked for (model variants of 46 and 48 bytes exist).
pub const MAX_BINARY: usize = 64;
/// What a frame boundary is recognised from: a text start needs 4 bytes, a `$` frame the
/// marker and 5 id bytes, an `X` frame its id and time (12 bytes).
const LOOKAHEAD: usize = 12;
/// The most a `$` frame waits for while its length is not known yet.
pub const BINARY_WAIT_BYTES: usize = MAX_BINARY + LOOKAHEAD;
/// The most line breaks held between messages before they count as garbage.
const MAX_LINE_BREAKS: usize = 64;

/// What kind of message a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `*...#` (the frame includes the `*` and the `#`).
    Text,
    /// `$...`.
    Binary,
    /// `X...` (32 bytes).
    X,
}

/// Why bytes were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes before the next marker.
    Garbage,
    /// A text message longer than the cap without its `#`.
    TooLarge,
    /// A text message cut short by the start of the next one.
    CutShort,
    /// A UDP datagram too short for the binary frame it starts.
    Truncated,
}

/// What is at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Not enough bytes; consume nothing.
    Incomplete,
    /// A frame at `start..start + len` (after line breaks); consume `consumed` bytes.
    Frame {
        kind: Kind,
        start: usize,
        len: usize,
        consumed: usize,
        /// How a binary frame's length was decided (for the session's log and tests).
        length: Option<Decided>,
    },
    /// Drop this many bytes.
    Skip(usize, Reject),
}

/// How a binary frame's length was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// The operator configured it.
    Configured,
    /// The next message starts right after it (same id, or a text message): the length is
    /// locked for the session.
    NextFrame,
    /// The length the session locked earlier.
    Locked,
    /// The bytes at hand are exactly one frame of a standard size (a device writes each frame
    /// in one go; Traccar's rule). Not locked: the next frame decides again.
    WholeSegment,
    /// A UDP datagram: the datagram is the frame.
    Datagram,
    /// Nothing else applied after [`BINARY_WAIT_BYTES`]: the short size.
    Fallback,
}

/// How the session cuts `$` frames. Traccar's splitter (`h02.messageLength` 0) takes 45 when
/// exactly 45 bytes arrived, 32 otherwise, and keeps that for the connection, which locks a
/// wrong length when a 45-byte frame arrives in two pieces. Here:
///
/// 1. a configured length is always used;
/// 2. a length at which the next message visibly starts (`$` and the same first five id
///    bytes, `*` + two letters + `,`, or a plausible `X` frame) is used and **locked** for
///    the session: it is proof, and later frames then need no look-ahead;
/// 3. a locked length is used when no such proof is at hand;
/// 4. before any lock, a buffer that is exactly 32, 45, or 42 bytes (42 only when the 8-byte
///    id reading holds: a Luhn-valid IMEI and a plausible time) is one frame, decided for
///    this frame only; over UDP any datagram of 32..=64 bytes is one frame;
/// 5. otherwise wait, at most [`BINARY_WAIT_BYTES`], then fall back to 32.
///
/// The lock belongs to the device whose frames proved it (the first five id bytes): another
/// device's frames on the same session (a UDP peer's address reused) decide afresh. It is
/// dropped when a locked cut does not parse.
#[derive(Debug, Clone, Default)]
pub struct BinaryLength {
    configured: Option<usize>,
    locked: Option<(usize, [u8; 5])>,
}

impl BinaryLength {
    pub fn new(configured: Option<usize>) -> Self {
        BinaryLength {
            configured,
            locked: None,
        }
    }

    /// The locked length, if any.
    pub fn locked(&self) -> Option<usize> {
        self.locked.map(|(l, _)| l)
    }

    /// Forgets the locked length (another device, or a cut that did not parse).
    pub fn unlock(&mut self) {
        self.locked = None;
    }
}

/// The framing state of a session.
#[derive(Debug, Clone)]
pub struct Framer {
    pub udp: bool,
    /// The largest text message.
    pub max_text: usize,
    pub binary: BinaryLength,
}

fn is_marker(b: u8) -> bool {
    matches!(b, b'*' | b'$' | b'X')
}

fn is_line_break(b: u8) -> bool {
    matches!(b, b'\r' | b'\n')
}

pub fn is_bcd(b: u8) -> bool {
    b >> 4 <= 9 && b & 0x0F <= 9
}

fn bcd_at_most(b: u8, max: u8) -> bool {
    is_bcd(b) && b <= max
}

/// Whether `rest` starts a text message: `*`, two ASCII letters, `,`. `None`: too short to say.
pub fn text_start(rest: &[u8]) -> Option<bool> {
    for (i, &b) in rest.iter().take(4).enumerate() {
        let ok = match i {
            0 => b == b'*',
            1 | 2 => b.is_ascii_alphabetic(),
            _ => b == b',',
        };
        if !ok {
            return Some(false);
        }
    }
    (rest.len() >= 4).then_some(true)
}

/// The plausibility of a binary frame's first bytes under one of its two id widths: `id`
/// BCD bytes (the long id's last nibble is padding and is not checked), then `hhmmss ddmmyy`
/// as BCD in range (day and month may be 0 on devices without a fix yet).
/// `None`: too short to say; `Some(false)`: cannot be.
pub fn plausible_head(frame: &[u8], id_len: usize) -> Option<bool> {
    let need = 1 + id_len + 6;
    for (i, &b) in frame.iter().enumerate().take(need).skip(1) {
        let at = i - 1;
        let ok = if at + 1 < id_len {
            is_bcd(b)
        } else if at + 1 == id_len {
            // The id's last byte: both nibbles BCD for a 5-byte id; a long id's last nibble is
            // padding.
            if id_len == 5 {
                is_bcd(b)
            } else {
                b >> 4 <= 9
            }
        } else {
            match at - id_len {
                0 => bcd_at_most(b, 0x23),
                1 | 2 => bcd_at_most(b, 0x59),
                3 => bcd_at_most(b, 0x31),
                4 => bcd_at_most(b, 0x12),
                _ => is_bcd(b),
            }
        };
        if !ok {
            return Some(false);
        }
    }
    (frame.len() >= need).then_some(true)
}

/// Whether the 15 digits of a long id pass the IMEI check digit (Luhn).
pub fn luhn_imei(id: &[u8]) -> bool {
    let mut digits = [0u8; 15];
    let mut n = 0;
    for (slot, d) in digits
        .iter_mut()
        .zip(id.iter().flat_map(|b| [b >> 4, b & 0x0F]))
    {
        if d > 9 {
            return false;
        }
        *slot = b'0' + d;
        n += 1;
    }
    let Ok(body) = std::str::from_utf8(&digits[..14]) else {
        return false;
    };
    n == 15 && crate::device_id::luhn_digit(body) == digits[14] - b'0'
}

/// Evidence that a message starts at the front of `rest`, the bytes right after a candidate
/// `$` frame whose first id bytes are `id5`.
fn starts_message(rest: &[u8], id5: &[u8]) -> Option<bool> {
    match rest.first()? {
        b'$' => {
            let got = rest.get(1..6)?;
            Some(got == id5)
        }
        b'*' => text_start(rest),
        b'X' => plausible_head(rest, 5),
        _ => Some(false),
    }
}

/// The length of the `$` frame at the front of `buf`, and how it was decided; `None`: wait.
fn binary_length(buf: &[u8], st: &BinaryLength, udp: bool) -> Option<(usize, Decided)> {
    if let Some(n) = st.configured {
        return (buf.len() >= n).then_some((n, Decided::Configured));
    }
    let id5 = buf.get(1..6)?;
    let mut pending = false;
    for l in SHORT..=MAX_BINARY.min(buf.len().saturating_sub(1)) {
        match buf.get(l..).and_then(|rest| starts_message(rest, id5)) {
            Some(true) => return Some((l, Decided::NextFrame)),
            Some(false) => {}
            None => {
                // The look-ahead runs past the bytes at hand: later candidates have even less.
                pending = true;
                break;
            }
        }
    }
    if let Some((l, _)) = st.locked.filter(|(_, id)| id[..] == *id5) {
        return (buf.len() >= l).then_some((l, Decided::Locked));
    }
    let n = buf.len();
    if udp {
        return (SHORT..=MAX_BINARY)
            .contains(&n)
            .then_some((n, Decided::Datagram));
    }
    if !pending {
        let long_id = n == LONG_ID
            && plausible_head(buf, 8) == Some(true)
            && buf.get(1..9).is_some_and(luhn_imei);
        if n == SHORT || n == LONG || long_id {
            return Some((n, Decided::WholeSegment));
        }
    }
    (n >= BINARY_WAIT_BYTES).then_some((SHORT, Decided::Fallback))
}

impl Framer {
    pub fn new(udp: bool, max_text: usize, binary_length: Option<usize>) -> Self {
        Framer {
            udp,
            max_text,
            binary: BinaryLength::new(binary_length),
        }
    }

    /// Splits one message off the front of `buf`.
    pub fn split(&mut self, buf: &[u8]) -> Split {
        let lead = buf.iter().take_while(|&&b| is_line_break(b)).count();
        let Some(&marker) = buf.get(lead) else {
            return if lead >= MAX_LINE_BREAKS || (self.udp && lead > 0) {
                Split::Skip(lead, Reject::Garbage)
            } else {
                Split::Incomplete
            };
        };
        if !is_marker(marker) {
            let skip = buf
                .iter()
                .skip(lead + 1)
                .position(|&b| is_marker(b))
                .map_or(buf.len(), |p| lead + 1 + p);
            return Split::Skip(skip, Reject::Garbage);
        }
        let rest = buf.get(lead..).unwrap_or_default();
        match marker {
            b'*' => self.text(rest, lead),
            b'$' => self.binary(rest, lead),
            _ => {
                if plausible_head(rest, 5) == Some(false) {
                    return Split::Skip(lead + 1, Reject::Garbage);
                }
                if rest.len() >= SHORT {
                    return Split::Frame {
                        kind: Kind::X,
                        start: lead,
                        len: SHORT,
                        consumed: lead + SHORT,
                        length: None,
                    };
                }
                self.incomplete(lead)
            }
        }
    }

    /// A partial message: wait over TCP; over UDP the datagram is all there is.
    fn incomplete(&self, lead: usize) -> Split {
        if self.udp {
            Split::Skip(lead + 1, Reject::Truncated)
        } else {
            Split::Incomplete
        }
    }

    fn text(&self, rest: &[u8], lead: usize) -> Split {
        // The end, or the start of another message before it (a message cut short).
        let window = rest.get(..self.max_text.min(rest.len())).unwrap_or(rest);
        for (i, &b) in window.iter().enumerate() {
            if b == b'#' {
                let len = i + 1;
                let after = rest
                    .iter()
                    .skip(len)
                    .take_while(|&&b| is_line_break(b))
                    .count();
                return Split::Frame {
                    kind: Kind::Text,
                    start: lead,
                    len,
                    consumed: lead + len + after,
                    length: None,
                };
            }
            if i > 0 && b == b'*' && text_start(rest.get(i..).unwrap_or_default()) == Some(true) {
                return Split::Skip(lead + i, Reject::CutShort);
            }
        }
        if rest.len() >= self.max_text {
            return Split::Skip(lead + 1, Reject::TooLarge);
        }
        if self.udp {
            // A datagram without its `#`: what is there is all there will be.
            return Split::Skip(lead + rest.len(), Reject::Truncated);
        }
        Split::Incomplete
    }

    fn binary(&mut self, rest: &[u8], lead: usize) -> Split {
        // Not even the head of a binary frame: garbage that happens to be a `$`.
        if plausible_head(rest, 5) == Some(false) && plausible_head(rest, 8) == Some(false) {
            return Split::Skip(lead + 1, Reject::Garbage);
        }
        match binary_length(rest, &self.binary, self.udp) {
            Some((len, how)) => {
                if how == Decided::NextFrame {
                    if let Some(id) = rest.get(1..6).and_then(|i| <[u8; 5]>::try_from(i).ok()) {
                        self.binary.locked = Some((len, id));
                    }
                }
                Split::Frame {
                    kind: Kind::Binary,
                    start: lead,
                    len,
                    consumed: lead + len,
                    length: Some(how),
                }
            }
            None if self.udp => Split::Skip(lead + rest.len().max(1), Reject::Truncated),
            None => Split::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    const SHORT_FRAME: &str = "2441060116601245431311165035313006004318210e000000fffffbffff0024";
    const LONG_FRAME: &str =
        "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f";
    const LONG_ID_FRAME: &str =
        "2435248308419329301047591808172627335900074412294e024138feffffffff01120064ba73005ecc";
    const X_FRAME: &str = "5800009814991024031101175540227006012321670c000095fffffbffff0033";

    fn tcp() -> Framer {
        Framer::new(false, 1024, None)
    }

    fn frame_len(s: Split) -> Option<(Kind, usize, usize)> {
        match s {
            Split::Frame {
                kind,
                len,
                consumed,
                ..
            } => Some((kind, len, consumed)),
            _ => None,
        }
    }

    #[test]
    fn text_is_cut_at_the_hash_and_its_line_break_consumed() {
        let mut f = tcp();
        let b = b"*HQ,1,V1,120000#\r\n*HQ,1";
        assert_eq!(frame_len(f.split(b)), Some((Kind::Text, 16, 18)));
        // Without the line break yet: the frame alone; the line break goes with the next one.
        assert_eq!(frame_len(f.split(&b[..16])), Some((Kind::Text, 16, 16)));
        assert_eq!(f.split(&b[..15]), Split::Incomplete);
        assert_eq!(f.split(b"\r\n"), Split::Incomplete);
        assert_eq!(
            frame_len(f.split(b"\r\n*HQ,1,V1#")),
            Some((Kind::Text, 9, 11))
        );
        // Line feeds inside a message (SMS answers) are content.
        assert_eq!(
            frame_len(f.split(b"*HQ,1,SMS,a\nb#")),
            Some((Kind::Text, 14, 14))
        );
    }

    #[test]
    fn a_text_message_cut_short_does_not_swallow_the_next() {
        let mut f = tcp();
        let b = b"*HQ,1,V1,12*HQ,1,V1,120000#";
        assert_eq!(f.split(b), Split::Skip(11, Reject::CutShort));
        assert_eq!(frame_len(f.split(&b[11..])), Some((Kind::Text, 16, 16)));
        // A `*` that starts nothing is content.
        assert_eq!(
            frame_len(f.split(b"*HQ,1,SMS,a*b#")),
            Some((Kind::Text, 14, 14))
        );
    }

    #[test]
    fn garbage_is_skipped_to_the_next_marker_and_text_is_capped() {
        let mut f = tcp();
        assert_eq!(f.split(b"abc*HQ"), Split::Skip(3, Reject::Garbage));
        assert_eq!(f.split(b"abc"), Split::Skip(3, Reject::Garbage));
        let mut small = Framer::new(false, 16, None);
        assert_eq!(
            small.split(b"*HQ,1,V1,1234567890"),
            Split::Skip(1, Reject::TooLarge)
        );
        assert_eq!(f.split(&[b'\n'; 64]), Split::Skip(64, Reject::Garbage));
        // `$` followed by ASCII text is no binary frame.
        assert_eq!(f.split(b"$GPRMC,1"), Split::Skip(1, Reject::Garbage));
    }

    #[test]
    fn lone_binary_frames_of_standard_sizes_are_whole_segments() {
        for (hex, len) in [(SHORT_FRAME, 32), (LONG_FRAME, 45), (LONG_ID_FRAME, 42)] {
            let b = h(hex);
            let mut f = tcp();
            match f.split(&b) {
                Split::Frame {
                    kind: Kind::Binary,
                    len: l,
                    length: Some(Decided::WholeSegment),
                    ..
                } => assert_eq!(l, len),
                other => panic!("{len}: {other:?}"),
            }
            assert_eq!(f.binary.locked(), None, "a whole segment does not lock");
            // A shorter prefix waits, but for one of exactly 32 bytes: without a lock or the
            // next frame, that is a whole short frame (Traccar's rule has the same blind spot;
            // the first two frames in one read lock the right length).
            for n in 1..b.len() {
                let want = if n == SHORT {
                    Some((Kind::Binary, SHORT, SHORT))
                } else {
                    None
                };
                assert_eq!(frame_len(f.split(&b[..n])), want, "{len}: prefix {n}");
                if want.is_none() {
                    assert_eq!(f.split(&b[..n]), Split::Incomplete);
                }
            }
        }
    }

    #[test]
    fn the_next_frame_decides_and_locks_the_length() {
        for (hex, len) in [(SHORT_FRAME, 32), (LONG_FRAME, 45), (LONG_ID_FRAME, 42)] {
            let one = h(hex);
            let two = [&one[..], &one[..], &one[..]].concat();
            let mut f = tcp();
            // Whatever the bytes at hand, from the first frame plus the next one's head on.
            for n in len + 6..=two.len() {
                let mut f2 = tcp();
                assert_eq!(
                    frame_len(f2.split(&two[..n])),
                    Some((Kind::Binary, len, len)),
                    "{len}: {n} bytes"
                );
            }
            assert!(matches!(
                f.split(&two),
                Split::Frame {
                    length: Some(Decided::NextFrame),
                    ..
                }
            ));
            assert_eq!(f.binary.locked(), Some(len));
            // Locked: a lone frame needs no look-ahead, and its partial prefix waits.
            assert_eq!(frame_len(f.split(&one)), Some((Kind::Binary, len, len)));
            assert_eq!(f.split(&one[..len - 1]), Split::Incomplete);
            f.binary.unlock();
            assert_eq!(f.binary.locked(), None);
        }
        // A text message after a binary frame is evidence too (Traccar's frame-decoder case).
        let b = [
            &h(SHORT_FRAME)[..],
            b"*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFBFFF#",
        ]
        .concat();
        let mut f = tcp();
        assert_eq!(frame_len(f.split(&b)), Some((Kind::Binary, 32, 32)));
        assert_eq!(f.binary.locked(), Some(32));
    }

    #[test]
    fn a_45_byte_device_split_at_32_is_not_cut_once_locked() {
        let one = h(LONG_FRAME);
        let mut f = tcp();
        let two = [&one[..], &one[..]].concat();
        assert!(frame_len(f.split(&two)).is_some());
        assert_eq!(f.binary.locked(), Some(45));
        assert_eq!(f.split(&one[..32]), Split::Incomplete);
    }

    #[test]
    fn model_variants_of_other_sizes_are_cut_by_the_next_message() {
        // 46 bytes, then the same device's text message.
        let b46 = h("2421305109380127171003170520046500100286297e003085ffffdfffff03440069129344006400001151415a20");
        let mut f = tcp();
        assert_eq!(f.split(&b46), Split::Incomplete, "46 is no standard size");
        let b = [&b46[..], b"*HQ,2130510938,V1,#"].concat();
        assert_eq!(frame_len(f.split(&b)), Some((Kind::Binary, 46, 46)));
        // With nothing after it, the wait is bounded: the short size after the look-ahead.
        let mut g = tcp();
        let junk = [&b46[..], &[0u8; BINARY_WAIT_BYTES][..]].concat();
        assert!(matches!(
            g.split(&junk[..BINARY_WAIT_BYTES]),
            Split::Frame {
                len: 32,
                length: Some(Decided::Fallback),
                ..
            }
        ));
        // Over UDP the datagram is the frame.
        let mut u = Framer::new(true, 1024, None);
        assert!(matches!(
            u.split(&b46),
            Split::Frame {
                len: 46,
                length: Some(Decided::Datagram),
                ..
            }
        ));
        assert_eq!(
            u.split(&b46[..20]),
            Split::Skip(20, Reject::Truncated),
            "a datagram too short for its frame"
        );
    }

    #[test]
    fn a_configured_length_is_always_used() {
        let mut f = Framer::new(false, 1024, Some(45));
        let b = h(SHORT_FRAME);
        assert_eq!(f.split(&b), Split::Incomplete);
        let two = [&b[..], &b[..]].concat();
        assert!(matches!(
            f.split(&two),
            Split::Frame {
                len: 45,
                length: Some(Decided::Configured),
                ..
            }
        ));
    }

    #[test]
    fn x_frames_are_32_bytes() {
        let b = h(X_FRAME);
        let mut f = tcp();
        assert_eq!(frame_len(f.split(&b)), Some((Kind::X, 32, 32)));
        assert_eq!(f.split(&b[..31]), Split::Incomplete);
        assert_eq!(f.split(b"XYZ"), Split::Skip(1, Reject::Garbage));
    }

    #[test]
    fn a_42_byte_buffer_is_a_long_id_frame_only_when_its_imei_checks() {
        // The first 42 bytes of a 45-byte frame: its "IMEI" (id + time digits) fails Luhn.
        let b = h(LONG_FRAME);
        assert!(!luhn_imei(&b[1..9]));
        assert_eq!(tcp().split(&b[..42]), Split::Incomplete);
        assert!(luhn_imei(&h(LONG_ID_FRAME)[1..9]));
        // 356307042441013 (a valid IMEI) with its pad nibble; one digit off fails.
        assert!(luhn_imei(&h("3563070424410130")));
        assert!(!luhn_imei(&h("3563070424410140")));
    }

    #[test]
    fn plausible_heads() {
        assert_eq!(plausible_head(&h(SHORT_FRAME), 5), Some(true));
        assert_eq!(plausible_head(&h(LONG_ID_FRAME), 8), Some(true));
        assert_eq!(plausible_head(b"$", 5), None);
        assert_eq!(plausible_head(b"$$A25,", 5), Some(false));
        assert_eq!(plausible_head(b"$$A25,", 8), Some(false));
        // Hour 24 is no hour.
        assert_eq!(
            plausible_head(&h("244106011660244543131116"), 5),
            Some(false)
        );
    }
}
