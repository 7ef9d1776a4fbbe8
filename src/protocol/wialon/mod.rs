//! Wialon IPS 1.1 and 2.0 (Gurtam's open text protocol), over TCP and UDP, plain or in
//! compressed containers, including photo and tachograph-file uploads.
//!
//! - `frame`: where a packet ends (lines, `0xFF` containers, binary photo and ddd blocks).
//! - `packet`: splitting `[2.0;imei]#TYPE#body`, SD/D records, reply codes.
//! - `mapping`: records and packets onto events and the vocabulary (the device profile).
//! - `crc`: the 2.0 checksum field.
//! - `compress`: the `0xFF` zlib container.
//! - `file`: block reassembly for `#I#` photos and `#IT#`/`#T#` ddd-files.
//!
//! This module is the session: login, which packet is answered how, uploads in progress,
//! and commands.
//!
//! # Conventions
//!
//! - **Negative answers are [`DecodeError`]s** with `reply` set (the spec's exact bytes) and
//!   [`Action::Continue`]: the session sends them at once and counts the error; nothing is
//!   published. Positive answers ride on a [`Frame`] and are sent after the sink confirmed its
//!   events. A wrong CRC therefore never publishes anything, and checksums are never relaxed.
//! - **Framing errors close** a TCP connection ([`Action::Close`]): a line longer than
//!   `wialon_max_packet_bytes`, an oversized container or binary block, a photo header whose
//!   size cannot be read (the block that follows cannot be skipped).
//! - **Data before login on TCP closes the connection without an answer.** A structure-error
//!   answer (`#AD#-1`) tells the device its record is malformed, and firmware drops such records;
//!   a closed connection makes it reconnect, log in and resend, so nothing is lost.
//! - **`#P#` is answered and published as a HEARTBEAT** (each one its own event id: a ping has
//!   no content to tell two apart, so its digest includes the time it arrived).
//! - **Device quirks with one meaning are accepted and counted** (`packet::quirk`, reported in
//!   [`Frame::lenient`]): answering them with an error code makes the device resend the same
//!   record forever.
//! - **CRC presence** follows the field count (an SD with 11 fields, a D with 17, a `#B#` whose
//!   last `|` segment has no `;`), so 1.1 firmware that appends one anyway is checked too; a
//!   session that logged in as 2.0 must send it.

pub mod compress;
pub mod crc;
pub mod file;
pub mod frame;
pub mod mapping;
pub mod packet;
pub mod sim;

use std::time::SystemTime;

use bytes::Bytes;

use crate::event::timestamp;
use crate::proto::{Protocol, TelemetryEvent, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame, Probe,
    ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::{Profile, ProfileCache};

use frame::{FrameError, Framer, Packet};
use packet::{Line, PacketType, Quirks, Version};

const NAME: &str = "wialon";
/// One text packet (one line, or one decompressed container).
const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
/// A file (photo, tachograph file) across its blocks.
const MAX_FILE_BYTES: &str = "max_file_bytes";

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        DEFAULT_MAX_FRAME_BYTES as u64,
        "largest text packet: one line, or one decompressed container",
    ),
    Setting {
        key: MAX_FILE_BYTES,
        kind: SettingKind::Bytes {
            default: 8 * 1024 * 1024,
            min: 1,
            max: 256 * 1024 * 1024,
        },
        doc: "largest file (photo, tachograph file) a device may upload, across its blocks",
    },
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[
    Simulator {
        name: "wialon",
        doc: "Wialon IPS 1.1 device (no checksums)",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::Wialon::new(imei, false, udp)),
    },
    Simulator {
        name: "wialon2",
        doc: "Wialon IPS 2.0 device (CRC on every packet)",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::Wialon::new(imei, true, udp)),
    },
];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::WialonIps,
    name: NAME,
    describe: "1.1 and 2.0: `#L#`, `#SD#`, `#D#`, `#B#`, `#P#`, `#M#`, photos `#I#`, tachograph files `#IT#`/`#T#`, compressed packets, v2.0 CRC",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply,
    command_transports: &[Transport::Tcp],
};

/// `#AL#0`, "connection rejected by server" (the spec's login answer codes: 1 accepted,
/// 0 rejected, 01 wrong password, 10 bad checksum). UDP devices are only not answered.
fn login_rejected_reply(transport: Transport) -> Option<Bytes> {
    (transport == Transport::Tcp).then(|| packet::reply("AL", "0"))
}

/// Cheap look at the first bytes: no parsing beyond what tells Wialon apart.
pub fn probe(prefix: &[u8], transport: Transport) -> Probe {
    match prefix.first() {
        None => Probe::NeedMore,
        // `#` then a type letter; `##` is GPS103's login (`##,imei:`), never Wialon.
        Some(b'#') => match prefix.get(1) {
            None => Probe::NeedMore,
            Some(b'#') => Probe::No,
            Some(_) => Probe::Yes,
        },
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
                if (2..=DEFAULT_MAX_FRAME_BYTES).contains(&size) && fits {
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
    framer: Framer,
    photo: Option<file::Upload>,
    tacho: Option<Tacho>,
    login_check: LoginCheck,
    /// The device's profile (by IMEI), re-resolved when the profile file is reloaded.
    profile: ProfileCache,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let settings = config.settings(NAME);
        let udp = transport == Transport::Udp;
        let max_packet = settings.max_frame_bytes().max(16);
        Session {
            udp,
            max_packet,
            max_file: settings.bytes(MAX_FILE_BYTES),
            imei: None,
            announced: false,
            version: Version::V1,
            framer: Framer::new(udp, max_packet),
            photo: None,
            tacho: None,
            login_check: accept_any,
            profile: ProfileCache::new(config.profiles.clone(), Protocol::WialonIps),
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

    fn frame_error(&self, e: FrameError) -> DecodeError {
        let action = if e.lost {
            self.framing_action()
        } else {
            Action::Continue
        };
        DecodeError {
            kind: e.kind,
            detail: e.detail,
            reply: e.reply,
            action,
        }
    }

    fn handle_packet(&mut self, p: &Packet, now: SystemTime) -> Result<Frame, DecodeError> {
        let mut frame = self.handle(p.line(), p.bin(), now)?;
        if !self.announced {
            if let Some(imei) = &self.imei {
                frame.login = Some(imei.clone());
                self.announced = true;
            }
        }
        Ok(frame)
    }

    /// One packet: `line` without its terminator, `bin` the binary block of `#I#`/`#T#`.
    fn handle(&mut self, line: &[u8], bin: &[u8], now: SystemTime) -> Result<Frame, DecodeError> {
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
            digest: digest(Protocol::WialonIps, &[imei.as_bytes(), l.text, bin]),
        };
        match l.ty {
            PacketType::ShortData => ctx.record(&l, false, self.profile.get(Some(&imei))),
            PacketType::Data => ctx.record(&l, true, self.profile.get(Some(&imei))),
            PacketType::Ping => Ok(ctx.heartbeat(&imei)),
            PacketType::Blackbox => ctx.blackbox(&l, self.profile.get(Some(&imei))),
            PacketType::Message => ctx.message(&l),
            PacketType::Image => self.image(&ctx, &l, bin),
            PacketType::TachoInfo => self.tacho_info(&ctx, &l),
            PacketType::TachoBlock => self.tacho_block(&ctx, &l, bin),
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
                let profile = self.profile.get(self.imei.as_deref());
                let reply = [block("1"), packet::reply("AI", "1")].concat();
                let file_digest = ctx.file_digest(&up);
                let e = mapping::file_event(
                    String::from_utf8_lossy(name).into_owned(),
                    mapping::FILE_IMAGE,
                    up.data,
                    up.time,
                    None,
                    profile,
                );
                Ok(ctx.file_frame(e, file_digest, reply.into()))
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
            let profile = self.profile.get(self.imei.as_deref());
            let e = mapping::tachograph_error_event(driver, code, profile);
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
                // The spec's name for a saved ddd-file: driverid_yyyymmdd_hhmmss.ddd.
                let time = up.time.unwrap_or_else(|| secs(ctx.now));
                let name = format!(
                    "{}_{}.ddd",
                    String::from_utf8_lossy(&key),
                    packet::format_file_time(time)
                );
                self.tacho = None;
                let profile = self.profile.get(self.imei.as_deref());
                let reply = [block("1"), packet::reply("AT", "1")].concat();
                let file_digest = ctx.file_digest(&up);
                let e = mapping::file_event(
                    name,
                    mapping::FILE_TACHOGRAPH,
                    up.data,
                    up.time,
                    Some(&key),
                    profile,
                );
                Ok(ctx.file_frame(e, file_digest, reply.into()))
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

    /// A completed file's digest covers the whole file, not only the last block, so two
    /// files that end alike still get distinct event ids.
    fn file_digest(&self, up: &file::Upload) -> u128 {
        digest(Protocol::WialonIps, &[&self.digest.to_be_bytes(), &up.data])
    }

    fn file_frame(&self, e: TelemetryEvent, file_digest: u128, reply: Bytes) -> Frame {
        let mut f = self.frame(vec![e], reply);
        f.digest = file_digest;
        f
    }

    /// `#P#`: answered `#AP#` and published as a HEARTBEAT. Every ping is the same text, so
    /// its digest includes the time it arrived: each one is an event of its own.
    fn heartbeat(&self, imei: &str) -> Frame {
        let nanos = self
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut f = self.frame(vec![mapping::heartbeat_event()], packet::reply("AP", ""));
        f.digest = digest(
            Protocol::WialonIps,
            &[imei.as_bytes(), b"#P#", &nanos.to_be_bytes()],
        );
        f
    }

    /// `#SD#` / `#D#`.
    fn record(&self, l: &Line<'_>, full: bool, profile: &Profile) -> Result<Frame, DecodeError> {
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
        let mut quirks = Quirks::default();
        match packet::parse_record_noting(&fields, &mut quirks) {
            Ok(r) => {
                let mut f = self.frame(
                    vec![mapping::record_event(&r, profile, false)],
                    packet::reply(ty, "1"),
                );
                f.lenient = quirks.into_labels();
                Ok(f)
            }
            Err(e) => Err(record_error(e).with_reply(packet::reply(ty, e.code()))),
        }
    }

    /// `#B#rec|rec|...[|crc16]`.
    fn blackbox(&self, l: &Line<'_>, profile: &Profile) -> Result<Frame, DecodeError> {
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
        let mut lenient: Vec<&'static str> = Vec::new();
        for seg in segs {
            let fields: Vec<&[u8]> = seg.split(|&b| b == b';').collect();
            let mut quirks = Quirks::default();
            match packet::parse_record_noting(&fields, &mut quirks) {
                Ok(r) => {
                    events.push(mapping::record_event(&r, profile, true));
                    lenient.extend(quirks.labels());
                }
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
        let mut f = self.frame(events, reply);
        f.lenient = lenient;
        Ok(f)
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
        Ok(self.frame(vec![mapping::message_event(text)], packet::reply("AM", "1")))
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
    fn decode(&mut self, buf: &mut bytes::BytesMut, now: SystemTime) -> DecodeResult {
        let p = match self.framer.next(buf) {
            Ok(None) => return Ok(None),
            Ok(Some(p)) => p,
            Err(e) => return Err(self.frame_error(e)),
        };
        let result = self.handle_packet(&p, now);
        if result.is_err() && self.udp {
            // A datagram is one packet: nothing after a refused one is trusted.
            buf.clear();
        }
        result.map(Some)
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
            other => {
                return Err(CommandError::UnsupportedType(format!(
                    "Wialon IPS carries only messages to the driver (#M#, a CUSTOM command's text), not {} (a device profile's command template can map it to a text)",
                    other.type_name()
                )))
            }
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
