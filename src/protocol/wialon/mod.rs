//! Wialon IPS 1.1 and 2.0 (Gurtam's open text protocol), over TCP and UDP, plain or in
//! compressed containers, including photo and tachograph-file uploads.
//!
//! - `packet`: splitting `[2.0;imei]#TYPE#body`, SD/D records, reply codes, record → event.
//! - `crc`: the 2.0 checksum field.
//! - `compress`: the `0xFF` zlib container.
//! - `file`: block reassembly for `#I#` photos and `#IT#`/`#T#` ddd-files.
//!
//! # Conventions
//!
//! - **Negative answers are [`DecodeError`]s** with `reply` set (the spec's exact bytes) and
//!   [`Action::Continue`]: the session sends them at once and counts the error; nothing is
//!   published. Positive answers ride on a [`Frame`] and are sent after the sink confirmed its
//!   events. A wrong CRC therefore never publishes anything.
//! - **Framing errors close** a TCP connection ([`Action::Close`]): a line longer than
//!   `wialon_max_packet_bytes`, an oversized container or binary block, a photo header whose
//!   size cannot be read (the block that follows cannot be skipped).
//! - **Data before login on TCP closes the connection without an answer.** A structure-error
//!   answer (`#AD#-1`) tells the device its record is malformed, and firmware drops such records;
//!   a closed connection makes it reconnect, log in and resend, so nothing is lost.
//! - **`#P#` is answered and publishes nothing:** keep-alives every few seconds from every device
//!   would flood the topic with no information.
//! - **CRC presence** follows the field count (an SD with 11 fields, a D with 17, a `#B#` whose
//!   last `|` segment has no `;`), so 1.1 firmware that appends one anyway is checked too; a
//!   session that logged in as 2.0 must send it.

pub mod compress;
pub mod crc;
pub mod file;
pub mod packet;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::event::{attr, timestamp, timestamp_secs};
use crate::proto::{EventKind, Protocol, TelemetryEvent, Transport};
use crate::protocol::{
    digest, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame, Limits, Probe,
    ProtocolModule, ProtocolSession,
};

use packet::{Line, PacketType, Version};

/// The registry entry.
pub struct Wialon;

impl ProtocolModule for Wialon {
    fn protocol(&self) -> Protocol {
        Protocol::WialonIps
    }

    fn name(&self) -> &'static str {
        "wialon"
    }

    fn probe(&self, prefix: &[u8], transport: Transport) -> Probe {
        probe(prefix, transport)
    }

    fn new_session(&self, transport: Transport, limits: &Limits) -> Box<dyn ProtocolSession> {
        Box::new(Session::new(transport, limits))
    }

    /// `#AL#0`, "connection rejected by server" (the spec's login answer codes: 1 accepted,
    /// 0 rejected, 01 wrong password, 10 bad checksum). UDP devices are only not answered.
    fn login_rejected_reply(&self, transport: Transport) -> Option<Bytes> {
        (transport == Transport::Tcp).then(|| packet::reply("AL", "0"))
    }
}

/// Cheap look at the first bytes: no parsing beyond what tells Wialon apart.
pub fn probe(prefix: &[u8], transport: Transport) -> Probe {
    match prefix.first() {
        None => Probe::NeedMore,
        Some(b'#') => Probe::Yes,
        Some(&compress::MARKER) => match prefix.get(1..compress::HEADER_LEN) {
            None if transport == Transport::Udp => Probe::No,
            None => Probe::NeedMore,
            Some(&[lo, hi]) => {
                let size = usize::from(u16::from_le_bytes([lo, hi]));
                // The smallest DEFLATE stream is 2 bytes; a UDP datagram must hold the whole block.
                // `probe` has no `Limits`: the default cap bounds plausibility here, the session
                // enforces the configured one.
                let fits = transport != Transport::Udp
                    || prefix.len() >= compress::HEADER_LEN.saturating_add(size);
                if size >= 2 && size <= Limits::default().wialon_max_packet_bytes && fits {
                    Probe::Yes
                } else {
                    Probe::No
                }
            }
            Some(_) => Probe::No,
        },
        // The UDP form: `2.0;imei#` or `imei#`, then a packet type letter.
        Some(b) if transport == Transport::Udp && b.is_ascii_alphanumeric() => {
            let head_len = prefix
                .iter()
                .take(packet::MAX_ID_LEN + 8)
                .position(|&b| b == b'#');
            match head_len {
                Some(n) => {
                    let head = prefix.get(..n).unwrap_or_default();
                    let letter = prefix.get(n + 1).is_some_and(u8::is_ascii_alphabetic);
                    if letter && packet::parse_prefix(head).is_some() {
                        Probe::Yes
                    } else {
                        Probe::No
                    }
                }
                None => Probe::No,
            }
        }
        Some(_) => Probe::No,
    }
}

/// What an allow-list says about a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVerdict {
    Accept,
    /// Answered `#AL#01`.
    BadPassword,
    /// Answered `#AL#0`.
    Reject,
}

/// A login policy: the IMEI and the password (`None` for `NA` or empty).
pub type LoginCheck = fn(imei: &str, password: Option<&[u8]>) -> LoginVerdict;

/// The default policy: any device may log in (the gateway identifies, it does not authorise).
pub fn accept_any(_imei: &str, _password: Option<&[u8]>) -> LoginVerdict {
    LoginVerdict::Accept
}

/// A ddd-file announced by `#IT#`.
#[derive(Debug)]
struct Tacho {
    driver_id: Vec<u8>,
    time: Option<i64>,
    /// Total number of blocks (the last index is `blocks - 1`).
    blocks: u32,
    upload: Option<file::Upload>,
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_packet: usize,
    max_file: usize,
    imei: Option<String>,
    /// Set once the current IMEI was reported in a `Frame.login`.
    announced: bool,
    version: Version,
    /// Bytes at the front of the buffer already known to hold no `\n`.
    scan: usize,
    photo: Option<file::Upload>,
    tacho: Option<Tacho>,
    login_check: LoginCheck,
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

enum SplitResult {
    NeedMore { scanned: usize },
    Unit(Unit),
}

/// A framing failure and whether a reply goes with it.
struct SplitError {
    kind: ErrorKind,
    detail: String,
    reply: Option<Bytes>,
}

impl Session {
    pub fn new(transport: Transport, limits: &Limits) -> Self {
        Session {
            udp: transport == Transport::Udp,
            max_packet: limits.wialon_max_packet_bytes.max(16),
            max_file: limits.wialon_max_file_bytes,
            imei: None,
            announced: false,
            version: Version::V1,
            scan: 0,
            photo: None,
            tacho: None,
            login_check: accept_any,
        }
    }

    /// Replaces the default accept-any login policy.
    pub fn with_login_check(mut self, check: LoginCheck) -> Self {
        self.login_check = check;
        self
    }

    /// The protocol version the device announced (1.1 until a 2.0 login or UDP prefix).
    pub fn version(&self) -> Version {
        self.version
    }

    /// TCP errors that lose framing close the stream; a UDP datagram stands alone.
    fn framing_action(&self) -> Action {
        if self.udp {
            Action::Continue
        } else {
            Action::Close
        }
    }

    fn decode_tcp(&mut self, buf: &mut BytesMut, now: SystemTime) -> DecodeResult {
        // Stray line ends between packets are not packets.
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            buf.advance(blank);
            self.scan = 0;
        }
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first == compress::MARKER {
            return self.decode_container(buf, now);
        }
        match split_unit(buf, self.scan, false, self.max_packet) {
            Ok(SplitResult::NeedMore { scanned }) => {
                self.scan = scanned;
                Ok(None)
            }
            Ok(SplitResult::Unit(u)) => {
                self.scan = 0;
                let unit = buf.split_to(u.total).freeze();
                self.handle_unit(&unit, u, now).map(Some)
            }
            Err(e) => Err(self.split_error(e)),
        }
    }

    fn decode_udp(&mut self, buf: &mut BytesMut, now: SystemTime) -> DecodeResult {
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.advance(blank);
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let result = if first == compress::MARKER {
            self.decode_container(buf, now)
        } else {
            match split_unit(buf, 0, true, self.max_packet) {
                Ok(SplitResult::Unit(u)) => {
                    let unit = buf.split_to(u.total).freeze();
                    self.handle_unit(&unit, u, now).map(Some)
                }
                Ok(SplitResult::NeedMore { .. }) => Err(DecodeError::new(
                    ErrorKind::BadLength,
                    Action::Continue,
                    "truncated datagram",
                )),
                Err(e) => Err(self.split_error(e)),
            }
        };
        if result.is_err() {
            buf.clear();
        }
        result
    }

    fn split_error(&self, e: SplitError) -> DecodeError {
        let mut err = DecodeError::new(e.kind, self.framing_action(), e.detail);
        err.reply = e.reply;
        err
    }

    /// One `0xFF` container at the front of `buf`.
    fn decode_container(&mut self, buf: &mut BytesMut, now: SystemTime) -> DecodeResult {
        let total = match compress::split(buf, self.max_packet) {
            Ok(compress::Split::Incomplete) if self.udp => {
                return Err(DecodeError::new(
                    ErrorKind::BadLength,
                    Action::Continue,
                    "compressed container longer than the datagram",
                ))
            }
            Ok(compress::Split::Incomplete) => return Ok(None),
            Ok(compress::Split::Complete { total }) => total,
            Err(e) => {
                let kind = match e {
                    compress::ContainerError::Empty => ErrorKind::BadLength,
                    _ => ErrorKind::TooLarge,
                };
                return Err(DecodeError::new(kind, self.framing_action(), e.to_string()));
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
            DecodeError::new(kind, Action::Continue, e.to_string())
        })?;
        let start = content
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let content = content.get(start..).unwrap_or_default();
        let u = match split_unit(content, 0, true, self.max_packet) {
            Ok(SplitResult::Unit(u)) => u,
            Ok(SplitResult::NeedMore { .. }) => {
                return Err(DecodeError::new(
                    ErrorKind::BadLength,
                    Action::Continue,
                    "compressed packet shorter than its binary block",
                ))
            }
            Err(e) => {
                let mut err = DecodeError::new(e.kind, Action::Continue, e.detail);
                err.reply = e.reply;
                return Err(err);
            }
        };
        let rest = content.get(u.total..).unwrap_or_default();
        if !rest.iter().all(|&b| b == b'\r' || b == b'\n') {
            return Err(DecodeError::new(
                ErrorKind::Malformed,
                Action::Continue,
                "compressed container holds more than one packet",
            ));
        }
        let unit = Bytes::copy_from_slice(content.get(..u.total).unwrap_or_default());
        self.handle_unit(&unit, u, now).map(Some)
    }

    fn handle_unit(&mut self, unit: &[u8], u: Unit, now: SystemTime) -> Result<Frame, DecodeError> {
        let line = unit.get(..u.line_len).unwrap_or_default();
        let bin = unit.get(u.header_len..u.total);
        let mut frame = self.handle(line, bin, now)?;
        if !self.announced {
            if let Some(imei) = &self.imei {
                frame.login = Some(imei.clone());
                self.announced = true;
            }
        }
        Ok(frame)
    }

    /// One packet: `line` without its terminator, `bin` the binary block of `#I#`/`#T#`.
    fn handle(
        &mut self,
        line: &[u8],
        bin: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Frame, DecodeError> {
        let Some(l) = packet::split_line(line) else {
            return Err(DecodeError::new(
                ErrorKind::Malformed,
                Action::Continue,
                "not a Wialon IPS packet",
            ));
        };
        let mut version = self.version;
        if let Some((v, id)) = l.prefix {
            if !self.udp {
                return Err(DecodeError::new(
                    ErrorKind::Malformed,
                    Action::Continue,
                    "UDP device-id prefix on a TCP connection",
                ));
            }
            // `valid_id` made sure it is ASCII.
            let id = String::from_utf8_lossy(id).into_owned();
            if self.imei.as_deref() != Some(id.as_str()) {
                self.imei = Some(id);
                self.announced = false;
                // A new device behind the same address: its uploads are not the old one's.
                self.photo = None;
                self.tacho = None;
            }
            self.version = v;
            version = v;
        }
        if l.ty == PacketType::Login {
            return self.login(&l);
        }
        let Some(imei) = self.imei.clone() else {
            let action = if self.udp {
                Action::Continue
            } else {
                Action::Close
            };
            return Err(DecodeError::new(
                ErrorKind::NotLoggedIn,
                action,
                "packet before login",
            ));
        };
        let ctx = Ctx {
            version,
            now,
            digest: digest(
                Protocol::WialonIps,
                &[imei.as_bytes(), l.text, bin.unwrap_or_default()],
            ),
        };
        match l.ty {
            PacketType::ShortData => ctx.record(&l, false),
            PacketType::Data => ctx.record(&l, true),
            PacketType::Ping => Ok(ctx.frame(Vec::new(), packet::reply("AP", ""))),
            PacketType::Blackbox => ctx.blackbox(&l),
            PacketType::Message => ctx.message(&l),
            PacketType::Image => self.image(&ctx, &l, bin.unwrap_or_default()),
            PacketType::TachoInfo => self.tacho_info(&ctx, &l),
            PacketType::TachoBlock => self.tacho_block(&ctx, &l, bin.unwrap_or_default()),
            PacketType::Login | PacketType::Other => Err(DecodeError::new(
                ErrorKind::Unsupported,
                Action::Continue,
                format!(
                    "packet type {:?} is not sent by devices",
                    String::from_utf8_lossy(l.text.get(..l.text.len().min(6)).unwrap_or_default())
                ),
            )),
        }
    }

    /// `#L#imei;password` (1.1) or `#L#2.0;imei;password;crc16` (2.0).
    fn login(&mut self, l: &Line<'_>) -> Result<Frame, DecodeError> {
        let refuse = |code: &str, kind: ErrorKind, action: Action, why: &str| {
            DecodeError::new(kind, action, why.to_string()).with_reply(packet::reply("AL", code))
        };
        let fields: Vec<&[u8]> = l.body.split(|&b| b == b';').collect();
        let (version, id, password) = match fields.as_slice() {
            [v, id, pw, crc_field] if packet::is_version(v) => {
                let covered = l.body.len().saturating_sub(crc_field.len());
                let data = l.body.get(..covered).unwrap_or_default();
                if crc::check(data, crc_field) != Some(true) {
                    // A transmission error: let the device retry on this connection.
                    return Err(refuse(
                        "10",
                        ErrorKind::BadChecksum,
                        Action::Continue,
                        "login checksum mismatch",
                    ));
                }
                (Version::V2, *id, *pw)
            }
            [id, pw] => (Version::V1, *id, *pw),
            _ => {
                return Err(refuse(
                    "0",
                    ErrorKind::Malformed,
                    self.framing_action(),
                    "login structure",
                ))
            }
        };
        if !packet::valid_id(id) {
            return Err(refuse(
                "0",
                ErrorKind::LoginRejected,
                self.framing_action(),
                "unusable device id",
            ));
        }
        let imei = String::from_utf8_lossy(id).into_owned();
        let password =
            (!password.is_empty() && !password.eq_ignore_ascii_case(b"NA")).then_some(password);
        match (self.login_check)(&imei, password) {
            LoginVerdict::Accept => {}
            LoginVerdict::BadPassword => {
                return Err(refuse(
                    "01",
                    ErrorKind::LoginRejected,
                    self.framing_action(),
                    "wrong password",
                ))
            }
            LoginVerdict::Reject => {
                return Err(refuse(
                    "0",
                    ErrorKind::LoginRejected,
                    self.framing_action(),
                    "device not allowed",
                ))
            }
        }
        if self.imei.as_deref() != Some(imei.as_str()) {
            self.photo = None;
            self.tacho = None;
        }
        self.imei = Some(imei.clone());
        self.announced = true;
        self.version = version;
        Ok(Frame {
            digest: digest(Protocol::WialonIps, &[imei.as_bytes(), l.text]),
            reply: Some(packet::reply("AL", "1")),
            login: Some(imei),
            ..Default::default()
        })
    }

    /// `#I#sz;ind;count;date;time;name[;crc16]` + BIN.
    fn image(&mut self, ctx: &Ctx, l: &Line<'_>, bin: &[u8]) -> Result<Frame, DecodeError> {
        let structure = |why: &str| {
            DecodeError::new(ErrorKind::Malformed, Action::Continue, why.to_string())
                .with_reply(packet::reply("AI", "NA;0"))
        };
        let fields: Vec<&[u8]> = l.body.split(|&b| b == b';').collect();
        let (head, crc_field) = match fields.as_slice() {
            [head @ .., c] if fields.len() == 7 => (head, Some(*c)),
            head if fields.len() == 6 && ctx.version == Version::V1 => (head, None),
            _ => return Err(structure("photo header fields")),
        };
        let [_, ind, count, date, time, name] = head else {
            return Err(structure("photo header fields"));
        };
        let (Some(ind), Some(last)) = (parse_u32(ind), parse_u32(count)) else {
            return Err(structure("photo block index"));
        };
        let Ok(file_time) = packet::parse_time(date, time) else {
            return Err(structure("photo date/time"));
        };
        let block = |code: &str| packet::reply("AI", &format!("{ind};{code}"));
        if let Some(c) = crc_field {
            if crc::check(bin, c) != Some(true) {
                return Err(DecodeError::new(
                    ErrorKind::BadChecksum,
                    Action::Continue,
                    "photo block CRC",
                )
                .with_reply(block("01")));
            }
        }
        if ind > last || name.is_empty() {
            return Err(structure("photo block index beyond the last"));
        }
        match file::push(
            &mut self.photo,
            name,
            ind,
            last,
            file_time,
            bin,
            self.max_file,
        ) {
            Ok(file::Progress::Stored | file::Progress::Duplicate) => {
                Ok(ctx.frame(Vec::new(), block("1")))
            }
            Ok(file::Progress::Complete(up)) => {
                let mut e = ctx.file_event(&up, "photo", String::from_utf8_lossy(name).into());
                e.set("blocks", attr::uint(u64::from(last) + 1));
                let reply = [block("1"), packet::reply("AI", "1")].concat();
                Ok(ctx.file_frame(e, &up, reply.into()))
            }
            Err(refused) => {
                Err(
                    DecodeError::new(ErrorKind::BadValue, Action::Continue, refused.to_string())
                        .with_reply(block("0")),
                )
            }
        }
    }

    /// `#IT#date;time;driverid;code;count;crc16`: announces a ddd-file.
    fn tacho_info(&mut self, ctx: &Ctx, l: &Line<'_>) -> Result<Frame, DecodeError> {
        let answer = |code: &str| packet::reply("AIT", code);
        let structure = |why: &str| {
            DecodeError::new(ErrorKind::Malformed, Action::Continue, why.to_string())
                .with_reply(answer("0"))
        };
        let n = l.body.split(|&b| b == b';').count();
        let with_crc = match n {
            6 => true,
            5 if ctx.version == Version::V1 => false,
            _ => return Err(structure("ddd info fields")),
        };
        let (fields, crc_ok) = packet::split_checked(l.body, with_crc);
        if crc_ok == Some(false) {
            return Err(
                DecodeError::new(ErrorKind::BadChecksum, Action::Continue, "ddd info CRC")
                    .with_reply(answer("01")),
            );
        }
        let [date, time, driver, code, count] = fields.as_slice() else {
            return Err(structure("ddd info fields"));
        };
        let Ok(file_time) = packet::parse_time(date, time) else {
            return Err(structure("ddd info date/time"));
        };
        let Some(blocks) = parse_u32(count).filter(|&c| c > 0) else {
            return Err(structure("ddd block count"));
        };
        if driver.is_empty() {
            return Err(structure("ddd driver id"));
        }
        if !code.is_empty() {
            // The tachograph could not produce the file; no blocks follow. Say so to consumers.
            self.tacho = None;
            let mut e = ctx.event(EventKind::Status);
            e.set("driver_id", packet::text_attr(driver));
            e.set("tachograph_error", packet::text_attr(code));
            return Ok(ctx.frame(vec![e], answer("1")));
        }
        self.tacho = Some(Tacho {
            driver_id: driver.to_vec(),
            time: file_time,
            blocks,
            upload: None,
        });
        Ok(ctx.frame(Vec::new(), answer("1")))
    }

    /// `#T#code;sz;ind;crc16` + BIN: one block of the announced ddd-file.
    fn tacho_block(&mut self, ctx: &Ctx, l: &Line<'_>, bin: &[u8]) -> Result<Frame, DecodeError> {
        let fields: Vec<&[u8]> = l.body.split(|&b| b == b';').collect();
        let (code, ind, crc_field) = match fields.as_slice() {
            [code, _, ind, c] => (*code, *ind, Some(*c)),
            [code, _, ind] if ctx.version == Version::V1 => (*code, *ind, None),
            _ => (&b""[..], &b"NA"[..], None),
        };
        let Some(ind) = parse_u32(ind) else {
            return Err(DecodeError::new(
                ErrorKind::Malformed,
                Action::Continue,
                "ddd block header",
            )
            .with_reply(packet::reply("AT", "NA;0")));
        };
        let block = |c: &str| packet::reply("AT", &format!("{ind};{c}"));
        let refuse = |kind: ErrorKind, why: String, c: &str| {
            DecodeError::new(kind, Action::Continue, why).with_reply(block(c))
        };
        if let Some(c) = crc_field {
            if crc::check(bin, c) != Some(true) {
                return Err(refuse(ErrorKind::BadChecksum, "ddd block CRC".into(), "01"));
            }
        }
        if !code.is_empty() {
            self.tacho = None;
            return Err(refuse(
                ErrorKind::BadValue,
                format!("tachograph error {}", String::from_utf8_lossy(code)),
                "0",
            ));
        }
        let Some(t) = self.tacho.as_mut() else {
            return Err(refuse(
                ErrorKind::BadValue,
                "ddd block without #IT#".into(),
                "0",
            ));
        };
        let last = t.blocks.saturating_sub(1);
        if ind > last {
            return Err(refuse(
                ErrorKind::BadValue,
                "ddd block index beyond the count".into(),
                "0",
            ));
        }
        let key = t.driver_id.clone();
        match file::push(&mut t.upload, &key, ind, last, t.time, bin, self.max_file) {
            Ok(file::Progress::Stored | file::Progress::Duplicate) => {
                Ok(ctx.frame(Vec::new(), block("1")))
            }
            Ok(file::Progress::Complete(up)) => {
                let time = up.time.unwrap_or_else(|| secs(ctx.now));
                let name = format!(
                    "{}_{}.ddd",
                    String::from_utf8_lossy(&key),
                    packet::format_file_time(time)
                );
                let mut e = ctx.file_event(&up, "ddd", name);
                e.set("driver_id", packet::text_attr(&key));
                e.set("blocks", attr::uint(u64::from(last) + 1));
                self.tacho = None;
                let reply = [block("1"), packet::reply("AT", "1")].concat();
                Ok(ctx.file_frame(e, &up, reply.into()))
            }
            Err(refused) => {
                if matches!(refused, file::Refused::TooLarge(_)) {
                    self.tacho = None;
                }
                Err(refuse(ErrorKind::BadValue, refused.to_string(), "0"))
            }
        }
    }
}

type DecodeResult = Result<Option<Frame>, DecodeError>;

fn parse_u32(f: &[u8]) -> Option<u32> {
    std::str::from_utf8(f).ok()?.parse().ok()
}

fn secs(t: SystemTime) -> i64 {
    timestamp(t).seconds
}

/// Finds one packet at the front of `data`: a line (capped at `cap` bytes before its
/// terminator) and, for `#I#`/`#T#`, the binary block its header announces. `from`: bytes
/// already known to hold no `\n`. `complete`: `data` is all there is (a datagram or an inflated
/// container), so a missing terminator ends the line instead of meaning "wait".
fn split_unit(
    data: &[u8],
    from: usize,
    complete: bool,
    cap: usize,
) -> Result<SplitResult, SplitError> {
    let too_long = || SplitError {
        kind: ErrorKind::TooLarge,
        detail: format!("line longer than {cap} bytes"),
        reply: None,
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
        None => return Ok(SplitResult::NeedMore { scanned: window }),
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
            return Err(SplitError {
                kind: ErrorKind::BadLength,
                detail: format!("binary block of {bin_len} bytes is cut short"),
                reply: None,
            });
        }
        // Keep `from` at the terminator so the next call finds it at once.
        return Ok(SplitResult::NeedMore {
            scanned: line_len.min(window),
        });
    }
    Ok(SplitResult::Unit(Unit {
        line_len,
        header_len,
        total,
    }))
}

/// The binary size a `#I#` (first field) or `#T#` (second field) header announces. A size we
/// cannot read or that exceeds the packet cap leaves the stream unframeable: the caller closes
/// (the spec's own advice to firmware is to retry with smaller blocks when the server hangs up).
fn bin_len(l: &Line<'_>, cap: usize) -> Result<usize, SplitError> {
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
    match size {
        Some(n) if n <= cap => Ok(n),
        Some(n) => Err(SplitError {
            kind: ErrorKind::TooLarge,
            detail: format!("binary block of {n} bytes exceeds {cap}"),
            reply,
        }),
        None => Err(SplitError {
            kind: ErrorKind::Malformed,
            detail: "binary block size unreadable".into(),
            reply,
        }),
    }
}

/// What every packet handler needs from its packet.
struct Ctx {
    version: Version,
    now: SystemTime,
    digest: u128,
}

impl Ctx {
    fn frame(&self, events: Vec<TelemetryEvent>, reply: Bytes) -> Frame {
        Frame {
            events,
            digest: self.digest,
            reply: Some(reply),
            ..Default::default()
        }
    }

    /// The frame of a completed file: its digest covers the whole file, not only the last
    /// block, so two files that end alike still get distinct event ids.
    fn file_frame(&self, e: TelemetryEvent, up: &file::Upload, reply: Bytes) -> Frame {
        let mut f = self.frame(vec![e], reply);
        f.digest = digest(Protocol::WialonIps, &[&self.digest.to_be_bytes(), &up.data]);
        f
    }

    fn event(&self, kind: EventKind) -> TelemetryEvent {
        TelemetryEvent {
            protocol: Protocol::WialonIps as i32,
            kind: kind as i32,
            ..Default::default()
        }
    }

    fn file_event(&self, up: &file::Upload, file_type: &str, name: String) -> TelemetryEvent {
        let mut e = self.event(EventKind::File);
        e.device_time = Some(match up.time {
            Some(t) => timestamp_secs(t),
            None => timestamp(self.now),
        });
        e.set("file_name", attr::string(name));
        e.set("file_type", attr::string(file_type));
        e.set("size", attr::uint(up.data.len() as u64));
        e.set("data", attr::bytes(up.data.clone()));
        e
    }

    /// `#SD#` / `#D#`.
    fn record(&self, l: &Line<'_>, full: bool) -> Result<Frame, DecodeError> {
        let (ty, n, crc_code) = if full {
            ("AD", packet::D_FIELDS, "16")
        } else {
            ("ASD", packet::SD_FIELDS, "13")
        };
        let structure = |why: &str| {
            DecodeError::new(ErrorKind::Malformed, Action::Continue, why.to_string())
                .with_reply(packet::reply(ty, "-1"))
        };
        let count = l.body.split(|&b| b == b';').count();
        let with_crc = if count == n.saturating_add(1) {
            true
        } else if count == n && self.version == Version::V1 {
            false
        } else if count == n {
            return Err(structure("2.0 packet without a CRC"));
        } else {
            return Err(structure("wrong number of fields"));
        };
        let (fields, crc_ok) = packet::split_checked(l.body, with_crc);
        if crc_ok == Some(false) {
            return Err(
                DecodeError::new(ErrorKind::BadChecksum, Action::Continue, "CRC mismatch")
                    .with_reply(packet::reply(ty, crc_code)),
            );
        }
        match packet::parse_record(&fields) {
            Ok(r) => Ok(self.frame(
                vec![packet::record_event(&r, self.now, false)],
                packet::reply(ty, "1"),
            )),
            Err(e) => Err(record_error(e).with_reply(packet::reply(ty, e.code()))),
        }
    }

    /// `#B#rec|rec|...[|crc16]`.
    fn blackbox(&self, l: &Line<'_>) -> Result<Frame, DecodeError> {
        let mut segs: Vec<&[u8]> = l.body.split(|&b| b == b'|').collect();
        let last = segs.last().copied().unwrap_or_default();
        // The CRC is the last `|` segment without a `;`; a 1.1 body may end in a bare `|`
        // (then there is nothing to check) and a non-hex tail there is a broken record.
        let crc_seg = segs.len() > 1
            && !last.contains(&b';')
            && (self.version == Version::V2 || last.is_empty() || crc::parse_field(last).is_some());
        if crc_seg {
            segs.pop();
            if !(last.is_empty() && self.version == Version::V1) {
                let covered = l.body.len().saturating_sub(last.len());
                let data = l.body.get(..covered).unwrap_or_default();
                if crc::check(data, last) != Some(true) {
                    return Err(DecodeError::new(
                        ErrorKind::BadChecksum,
                        Action::Continue,
                        "blackbox CRC mismatch",
                    )
                    .with_reply(packet::reply("AB", "")));
                }
            }
        } else if self.version == Version::V2 {
            return Err(DecodeError::new(
                ErrorKind::Malformed,
                Action::Continue,
                "2.0 blackbox without a CRC",
            )
            .with_reply(packet::reply("AB", "0")));
        }
        let mut events = Vec::new();
        let mut first_error = None;
        for seg in segs {
            let fields: Vec<&[u8]> = seg.split(|&b| b == b';').collect();
            match packet::parse_record(&fields) {
                Ok(r) => events.push(packet::record_event(&r, self.now, true)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if events.is_empty() {
            let e = first_error.unwrap_or(packet::RecordError::Structure);
            return Err(record_error(e).with_reply(packet::reply("AB", "0")));
        }
        let reply = packet::reply("AB", &events.len().to_string());
        Ok(self.frame(events, reply))
    }

    /// `#M#msg[;crc16]`: a message from the driver.
    fn message(&self, l: &Line<'_>) -> Result<Frame, DecodeError> {
        let text = if self.version == Version::V2 {
            let Some(i) = l.body.iter().rposition(|&b| b == b';') else {
                return Err(DecodeError::new(
                    ErrorKind::Malformed,
                    Action::Continue,
                    "2.0 message without a CRC",
                )
                .with_reply(packet::reply("AM", "0")));
            };
            let data = l.body.get(..=i).unwrap_or_default();
            let field = l.body.get(i + 1..).unwrap_or_default();
            if crc::check(data, field) != Some(true) {
                return Err(DecodeError::new(
                    ErrorKind::BadChecksum,
                    Action::Continue,
                    "message CRC mismatch",
                )
                .with_reply(packet::reply("AM", "01")));
            }
            l.body.get(..i).unwrap_or_default()
        } else {
            l.body
        };
        let mut e = self.event(EventKind::DriverMessage);
        e.set("text", packet::text_attr(text));
        Ok(self.frame(vec![e], packet::reply("AM", "1")))
    }
}

fn record_error(e: packet::RecordError) -> DecodeError {
    let kind = match e {
        packet::RecordError::Structure => ErrorKind::Malformed,
        _ => ErrorKind::BadValue,
    };
    DecodeError::new(kind, Action::Continue, e.describe())
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        if self.udp {
            self.decode_udp(buf, now)
        } else {
            self.decode_tcp(buf, now)
        }
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    /// `#M#text` (1.1) or `#M#text;crc16` (2.0): a message for the driver.
    fn command_answered(&self) -> bool {
        false
    }

    fn encode_command(&mut self, command: &CommandRequest) -> Result<Bytes, CommandError> {
        let text = match command {
            CommandRequest::Text(t) => t.as_str(),
            CommandRequest::Payload(p) => std::str::from_utf8(p)
                .map_err(|_| CommandError::Invalid("a Wialon message is text".into()))?,
        };
        if text.is_empty() {
            return Err(CommandError::Invalid("message text is empty".into()));
        }
        crate::protocol::check_command_text(text)?;
        if text.len() > self.max_packet.saturating_sub(16) {
            return Err(CommandError::Invalid(
                "message longer than the packet cap".into(),
            ));
        }
        let body = match self.version {
            Version::V1 => text.to_string(),
            Version::V2 => packet::with_crc(text),
        };
        Ok(Bytes::from(format!("#M#{body}\r\n")))
    }
}

#[cfg(test)]
mod tests;
