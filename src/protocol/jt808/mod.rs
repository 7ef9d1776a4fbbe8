//! JT/T 808 (China's road transport terminal protocol, 2011/2013/2019; Huabao, Jimi, AOVX,
//! BSJ, Jointech and most Chinese vehicle terminals): binary messages between `7E` delimiters
//! with `7D` escapes and an XOR check byte, over TCP and UDP.
//!
//! - `frame`: framing, escapes, check byte, headers (2013 and 2019 forms), detection, the
//!   frames the server writes.
//! - `packets`: sub-packaged messages, reassembled under bounds.
//! - `message`: what each message becomes and the reply it gets.
//! - `location`: the `0200` body and its additional items, batches, the JT701 reports.
//! - `command`: commands (typed and custom) and their answers' tags.
//! - `mapping`: the raw names and the device profiles that map them onto the vocabulary.
//!
//! # Identity
//!
//! The terminal number (终端手机号) in every header is the device id: its BCD digits, with the
//! zeros a 2019 header pads it to 20 digits with removed down to 12, so one SIM number names
//! one device in both header forms. There is no login to wait for: the first message
//! identifies the device (`Frame.login`), and a message with another number re-identifies the
//! connection. Registration (`0100`) is answered with code = the terminal number, and
//! authentication (`0102`) is answered whatever its code (the device may have registered
//! with another platform; refusing it would only start a reconnect loop).
//!
//! A 15-digit IMEI relates to the number in two ways:
//! - a 2019 header carries 20 digits: an IMEI fits, zero-padded (`00000356307042441013`), and
//!   the device id is the IMEI;
//! - a 2013 header carries 12 digits: some firmware packs the IMEI's first 14 digits as a
//!   48-bit number (the Luhn digit dropped), which is not BCD: `0b3a73ce2ff2` is read as IMEI
//!   `123456789012345` (lenient label `jt808_packed_imei`, once per identification). A packed
//!   value whose hex happens to be all digits cannot be told from a BCD number and is read as
//!   one (the deployed servers have the same ambiguity).
//!
//! # Framing
//!
//! See `frame`. Besides frames, the session drops line breaks between frames without an error
//! (the e-lock text frames may come with one).
//!
//! # Replies
//!
//! Every terminal message is answered (see `message` for the table): `8001` with the serial
//! and id it answers, `8100` for a registration, `8109` for a time request, `8800` for a
//! multimedia upload; answers to the platform's own messages (`0001`, `0104`, `0201`, `0500`,
//! `1300`) are not answered. Each package of a sub-packaged message is answered with `8001`
//! as it arrives (devices wait for it before sending the next); the last one gets the whole
//! message's reply once its records are delivered. A message with encryption bits set is
//! refused with `8001` result 3 (not supported). Bad check bytes, lengths or escapes get no
//! reply.
//!
//! # Time zone
//!
//! The BCD times in location bodies are local times; the convention is GMT+8 (China), which
//! is the `timezone` setting's default. Fleets configured to UTC or another zone set it
//! (`[protocols.jt808] timezone = "+00:00"`).
//!
//! # Transports
//!
//! TCP, and UDP: JT/T 808-2013 §2.1 names both, and the standard's parameters `0018`/`0019`
//! configure a server's TCP and UDP ports, so terminals can be set to UDP. A datagram holds
//! whole frames; a peer's session keeps its sub-packages between datagrams. Commands go over
//! TCP only (the gateway's UDP sessions take none).
//!
//! # Not supported
//!
//! - The `E7` variant delimiter (escapes `E6 01`/`E6 02`/`3E 01`/`3E 02`, a 7-byte number)
//!   that one server accepts: no public document or test frame shows a device sending it, and
//!   its escape table (`3E 02` → `3D`) is unlike any documented scheme, so nothing could check
//!   an implementation. `E7` is garbage to the framer and detection.
//! - RSA-encrypted bodies (refused, see above).
//! - Non-ASCII command texts (GBK needs an encoder the gateway does not link).

pub mod command;
pub mod frame;
pub mod location;
pub mod mapping;
pub mod message;
pub mod packets;
pub mod sim;

use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};

use crate::event::raw;
use crate::proto::{EventKind, Protocol, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, no_reply, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame,
    ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::ProfileCache;

use command::{Dialect, EngineControl, TextCommand};
use frame::{Addressee, Message, Reject, Split};
use packets::{Added, Reassembly};

const NAME: &str = "jt808";

/// Setting: the time zone of the devices' BCD times.
pub const TIMEZONE: &str = "timezone";
/// Setting: the most a session holds of sub-packaged messages in progress.
pub const MAX_MESSAGE_BYTES: &str = "max_message_bytes";
/// Setting: a sub-packaged message with no package for this long is dropped.
pub const PACKAGE_TIMEOUT_SECS: &str = "package_timeout_secs";
/// Setting: how engine stop / resume are written.
pub const ENGINE_CONTROL: &str = "engine_control";
/// Setting: how CUSTOM texts are written.
pub const TEXT_COMMAND: &str = "text_command";

/// Every UTC offset in use, `±hh:mm`.
pub const TIMEZONES: &[&str] = &[
    "-12:00", "-11:00", "-10:00", "-09:30", "-09:00", "-08:00", "-07:00", "-06:00", "-05:00",
    "-04:00", "-03:30", "-03:00", "-02:00", "-01:00", "+00:00", "+01:00", "+02:00", "+03:00",
    "+03:30", "+04:00", "+04:30", "+05:00", "+05:30", "+05:45", "+06:00", "+06:30", "+07:00",
    "+08:00", "+08:45", "+09:00", "+09:30", "+10:00", "+10:30", "+11:00", "+12:00", "+12:45",
    "+13:00", "+14:00",
];

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        4 * 1024,
        "largest frame on the wire, delimiters and escapes included (a 1023-byte body escaped is at most 2 KiB)",
    ),
    settings::IDLE_TIMEOUT,
    Setting {
        key: TIMEZONE,
        kind: SettingKind::Choice {
            default: "+08:00",
            choices: TIMEZONES,
        },
        doc: "UTC offset of the devices' BCD times (JT/T 808 devices send GMT+8 by convention)",
    },
    Setting {
        key: MAX_MESSAGE_BYTES,
        kind: SettingKind::Bytes {
            default: 512 * 1024,
            min: 1024,
            max: 64 * 1024 * 1024,
        },
        doc: "most a session holds of sub-packaged messages in progress (photos come this way)",
    },
    Setting {
        key: PACKAGE_TIMEOUT_SECS,
        kind: SettingKind::Secs {
            default: Some(120),
            min: 1,
            max: 3600,
        },
        doc: "a sub-packaged message with no package for this long is dropped",
    },
    Setting {
        key: ENGINE_CONTROL,
        kind: SettingKind::Choice {
            default: "8500",
            choices: EngineControl::CHOICES,
        },
        doc: "engine stop/resume as 8500 vehicle control (flag 1/0), or 8105 terminal control with command word F0/F1 or 64/65",
    },
    Setting {
        key: TEXT_COMMAND,
        kind: SettingKind::Choice {
            default: "8300",
            choices: TextCommand::CHOICES,
        },
        doc: "CUSTOM texts as 8300 text messages, 8900 pass-through F0 (Jimi JC) or 8103 parameter F030 (AOVX)",
    },
];

static SIMULATORS: &[Simulator] = &[Simulator {
    name: "jt808",
    doc: "JT/T 808-2019 terminal (IMEI as the terminal number): authentication, 0200 reports, 0704 batches, sub-packaged when long",
    transports: &[Transport::Tcp, Transport::Udp],
    make: |imei, _udp| Box::new(sim::Jt808::new(imei)),
}];

/// A non-BCD 6-byte terminal number read as a packed IMEI.
pub const LENIENT_PACKED_IMEI: &str = "jt808_packed_imei";

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Jt808,
    name: NAME,
    describe: "JT/T 808-2011/2013/2019: registration, authentication, location reports and batches, sub-packaged messages, multimedia, pass-through, JT701 e-lock reports; `7E` framing with escapes and XOR check",
    transports: &[Transport::Tcp, Transport::Udp],
    // `7E` and a message id, or `(` and a digit; see [`frame::probe`] for the Retranslator
    // sizes that also start `7E`. The same over both transports.
    probe: |prefix, _| frame::probe(prefix),
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // JT/T 808 terminals take platform messages (0x8105, 0x8300, ...) in a datagram to the address they report from, as on TCP (Traccar's Huabao encoder serves its UDP server too).
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// Minutes east of UTC of a `±hh:mm` setting.
pub fn offset_minutes(s: &str) -> i32 {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let digits = s.trim_start_matches(['+', '-']);
    let (h, m) = digits.split_once(':').unwrap_or((digits, "0"));
    let h: i32 = h.parse().unwrap_or(0);
    let m: i32 = m.parse().unwrap_or(0);
    sign * (h * 60 + m)
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_frame_bytes: usize,
    offset_minutes: i32,
    dialect: Dialect,
    /// The device id, once a frame identified it.
    id: Option<String>,
    /// The header form and number of the device's last message (commands use them).
    addressee: Option<Addressee>,
    /// Serial of the next platform message that is not a reply (commands).
    next_serial: u16,
    last_tag: Option<u32>,
    packets: Reassembly,
    profile: ProfileCache,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let s = config.settings(NAME);
        Session {
            udp: transport == Transport::Udp,
            // A frame needs its delimiters, a header and the check byte.
            max_frame_bytes: s.max_frame_bytes().max(32),
            offset_minutes: offset_minutes(s.choice(TIMEZONE)),
            dialect: Dialect {
                engine: EngineControl::from_setting(s.choice(ENGINE_CONTROL)),
                text: TextCommand::from_setting(s.choice(TEXT_COMMAND)),
            },
            id: None,
            addressee: None,
            next_serial: 0,
            last_tag: None,
            packets: Reassembly::new(
                s.bytes(MAX_MESSAGE_BYTES),
                s.secs(PACKAGE_TIMEOUT_SECS)
                    .unwrap_or(Duration::from_secs(120)),
            ),
            profile: ProfileCache::new(config.profiles.clone(), Protocol::Jt808),
        }
    }

    /// The login a frame from `id` carries: `Some` when it identifies the connection anew.
    fn login_for(&self, id: &str) -> Option<String> {
        (self.id.as_deref() != Some(id)).then(|| id.to_string())
    }

    fn message(&mut self, m: Message, now: SystemTime) -> Result<Frame, DecodeError> {
        let h = m.header;
        let Some((id, packed)) = h.terminal.device_id() else {
            // Nothing this device sends can be attributed.
            return Err(DecodeError::new(
                ErrorKind::LoginRejected,
                Action::Close,
                format!(
                    "terminal number {} is neither BCD nor a packed IMEI",
                    hex::encode(h.terminal.as_bytes())
                ),
            ));
        };
        let login = self.login_for(&id);
        let mut lenient = Vec::new();
        if packed && login.is_some() {
            lenient.push(LENIENT_PACKED_IMEI);
        }
        if !h.short_serial && h.encryption() != 0 {
            return Err(DecodeError::new(
                ErrorKind::Unsupported,
                Action::Continue,
                format!(
                    "message {:#06x} is encrypted (attribute bits {:#05b}); answered 'not supported'",
                    h.id,
                    h.encryption()
                ),
            )
            .with_reply(message::general_answer(&h, message::RESULT_UNSUPPORTED)));
        }
        let (body, serial) = match h.package {
            None => (m.body, h.serial),
            Some(p) => match self.packets.add(&h, p, m.body, now) {
                Ok(Added::Complete { body, first_serial }) => (body, first_serial),
                Ok(Added::Pending) => {
                    self.identified(&id, &h);
                    return Ok(Frame {
                        reply: Some(message::general_answer(&h, message::RESULT_OK)),
                        login,
                        lenient,
                        ..Default::default()
                    });
                }
                Err(e) => {
                    return Err(DecodeError::new(
                        ErrorKind::BadLength,
                        Action::Continue,
                        format!("message {:#06x} serial {}: {e}", h.id, h.serial),
                    ))
                }
            },
        };
        self.identified(&id, &h);
        let ctx = message::Context {
            offset_minutes: self.offset_minutes,
            now,
        };
        let mut decoded = message::decode(&h, serial, &body, &ctx);
        let profile = self.profile.get(Some(&id));
        for e in &mut decoded.events {
            mapping::apply(e, profile);
        }
        lenient.extend(decoded.lenient);
        let id_bytes = h.id.to_be_bytes();
        let serial_bytes = serial.to_be_bytes();
        let mut parts: Vec<&[u8]> = vec![h.terminal.as_bytes(), &id_bytes, &body];
        if !message::timestamped(h.id) {
            parts.push(&serial_bytes);
        }
        Ok(Frame {
            events: decoded.events,
            digest: digest(Protocol::Jt808, &parts),
            reply: decoded.reply,
            login,
            answers: decoded.answers,
            lenient,
            ..Default::default()
        })
    }

    /// Remembers who the connection is and how to address it.
    fn identified(&mut self, id: &str, h: &frame::Header) {
        if self.id.as_deref() != Some(id) {
            self.id = Some(id.to_string());
        }
        if !h.short_serial {
            self.addressee = Some(h.addressee());
        }
    }

    /// A `(…)` text frame: `(<id>,<fields>…)`. `(<id>,1,001,BASE,2,TIME)` asks for the time
    /// (answered with the text, `TIME` replaced by the UTC `yyMMddHHmmss`); any other is a
    /// result the e-lock reports (COMMAND_RESPONSE, the text in `text` and `raw`).
    fn text(&mut self, t: Vec<u8>, now: SystemTime) -> Result<Frame, DecodeError> {
        let sentence = String::from_utf8_lossy(&t).into_owned();
        let inner = sentence
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_default();
        let first = inner.split(',').next().unwrap_or_default();
        let from_text = (!first.is_empty()
            && first.bytes().all(|b| b.is_ascii_digit())
            && crate::device_id::is_valid(first))
        .then_some(first);
        let Some(id) = from_text.or(self.id.as_deref()).map(str::to_string) else {
            return Err(DecodeError::new(
                ErrorKind::NotLoggedIn,
                Action::Continue,
                "a text frame without a device id before any message identified the device",
            ));
        };
        let login = self.login_for(&id);
        self.id = Some(id.clone());
        if inner.contains("BASE,2") {
            let (y, mo, d, h, mi, s) = crate::protocol::civil::civil_from_secs(now_secs(now));
            let time = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}", y.rem_euclid(100));
            return Ok(Frame {
                reply: Some(Bytes::from(sentence.replace("TIME", &time))),
                login,
                ..Default::default()
            });
        }
        let mut e = location::event(EventKind::CommandResponse);
        e.raw
            .push(raw::string(mapping::name::BODY, sentence.clone()));
        e.text = Some(sentence);
        Ok(Frame {
            events: vec![e],
            digest: digest(Protocol::Jt808, &[id.as_bytes(), &t]),
            login,
            ..Default::default()
        })
    }

    fn reject(&self, n: usize, why: Reject) -> DecodeError {
        let (kind, detail) = match why {
            Reject::Garbage => (
                ErrorKind::Malformed,
                format!("skipped {n} bytes before the next delimiter"),
            ),
            Reject::StrayDelimiter => (
                ErrorKind::Malformed,
                "an empty frame (7E 7E); the first delimiter dropped".to_string(),
            ),
            Reject::BadEscape => (
                ErrorKind::Malformed,
                format!("a {n}-byte frame with 7D not followed by 01 or 02; not answered"),
            ),
            Reject::BadChecksum => (
                ErrorKind::BadChecksum,
                format!("check byte mismatch in a {n}-byte frame; not answered"),
            ),
            Reject::Truncated => (
                ErrorKind::BadLength,
                format!("a {n}-byte frame shorter than its header; not answered"),
            ),
            Reject::BadLength { declared, actual } => (
                ErrorKind::BadLength,
                format!("body length field {declared}, body {actual} bytes; not answered"),
            ),
            Reject::TooLarge => (
                ErrorKind::TooLarge,
                format!(
                    "no closing delimiter within the {}-byte frame cap; resynchronising",
                    self.max_frame_bytes
                ),
            ),
        };
        DecodeError::new(kind, Action::Continue, detail)
    }
}

fn now_secs(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        self.packets.expire(now);
        // Line breaks between frames (text frames come with one) are no frame and no error.
        let breaks = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.advance(breaks);
        match frame::split(buf, self.max_frame_bytes) {
            Split::Incomplete => {
                if self.udp {
                    return DecodeError::datagram_leftover(buf, "frame");
                }
                Ok(None)
            }
            Split::Skip(n, why) => {
                buf.advance(n.min(buf.len()));
                Err(self.reject(n, why))
            }
            Split::Text(t, n) => {
                buf.advance(n.min(buf.len()));
                self.text(t, now).map(Some)
            }
            Split::Message(m, n) => {
                buf.advance(n.min(buf.len()));
                self.message(m, now).map(Some)
            }
        }
    }

    fn imei(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn encode_command(&mut self, command: &CommandRequest) -> Result<Bytes, CommandError> {
        let Some(to) = self.addressee else {
            return Err(CommandError::Invalid(
                "no message from the device yet: its header form is unknown".into(),
            ));
        };
        let serial = self.next_serial;
        let encoded = command::encode(command, &to, serial, self.dialect)?;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.last_tag = Some(encoded.tag);
        Ok(encoded.bytes)
    }

    /// `(message id << 16) | serial` of the last command: every answer echoes both.
    fn last_command_tag(&self) -> Option<u32> {
        self.last_tag
    }
}

#[cfg(test)]
mod tests;
