//! H02 (Sinotrack ST-9xx, Coban/"HQ" clones, TH and many Chinese trackers), over TCP and UDP:
//! text messages `*HQ,<id>,<type>,…#` and binary `$` frames of 32, 42 or 45 bytes.
//!
//! - `frame`: where a message ends (text at `#`; binary frames, which have neither delimiter
//!   nor length nor checksum, by the session's length decision; `X` frames).
//! - `text`: the text types into events (`V1` family, `V4` confirmations, `NBR`, `V3`, `VP1`,
//!   `LINK`, `HTBT`/`V0`/`XT`, `SMS`).
//! - `binary`: `$` frames into events.
//! - `mapping`: the raw names and the device profile (the status word's active-low bits).
//! - `command`: commands and matching the device's `V4` confirmations to them.
//!
//! This module is the session: identity, replies, commands.
//!
//! # Identity
//!
//! There is no login: every message carries the device id (10 digits, or a 15-digit IMEI). The
//! first message that names a device identifies the session ([`Frame::login`]); a message
//! naming another id re-identifies it (a UDP peer behind the same address, say). A text
//! message with an empty id (`*HQ,,V1,…`) is the session's device's, counted as lenient
//! input; before any id it is refused.
//!
//! # Replies (after the broker confirmed the frame's events)
//!
//! - `V1` → `*HQ,<id>,V4,V1,<yyyyMMddHHmmss>#` (UTC, the `now` of the decode); `NBR` →
//!   `*HQ,<id>,V4,NBR,<yyyyMMddHHmmss>#`. Not sent for a message without an id.
//! - `HTBT`, `V0` → the message echoed up to its type, plus `#`.
//! - With the `ack` setting: `*HQ,<id>,R12,<HHmmss>#` for every other `V…` message (`V4`
//!   included) and every binary frame. Off by default, as in Traccar.
//! - Nothing else is answered; `X` frames are consumed and ignored.
//!
//! # Errors
//!
//! There is no checksum to fail: text that is no `*XX,<id>,<type>…#` message, bytes before a
//! marker, a binary frame whose BCD does not read, are refused with [`Action::Continue`]
//! (framing resynchronises at the next `*`, `$` or `X`) and no reply.

pub mod binary;
pub mod command;
pub mod frame;
pub mod mapping;
pub mod sim;
pub mod text;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::{Protocol, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, no_reply, Action, CommandAnswer, CommandError, CommandRequest, DecodeError, ErrorKind,
    Frame, Probe, ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::ProfileCache;

use command::{Commands, IntervalCommand};
use frame::{Framer, Kind, Reject, Split};
use text::{Decoded, Reply};

const NAME: &str = "h02";
/// The largest text message by default (SMS answers are the longest).
const DEFAULT_MAX_FRAME_BYTES: u64 = 4 * 1024;
/// Setting: the length of `$` frames.
pub const BINARY_FRAME_BYTES: &str = "binary_frame_bytes";
/// Setting: answer `R12` to other messages.
pub const ACK: &str = "ack";
/// Setting: how SET_REPORT_INTERVAL is sent.
pub const REPORT_INTERVAL_COMMAND: &str = "report_interval_command";

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        DEFAULT_MAX_FRAME_BYTES,
        "largest text message, `*` to `#` (binary frames are at most 64 bytes)",
    ),
    Setting {
        key: BINARY_FRAME_BYTES,
        kind: SettingKind::Choice {
            default: "auto",
            choices: &["auto", "32", "42", "45"],
        },
        doc: "length of `$` binary frames: `auto` decides per session from the stream (and locks it once the next frame proves it), or always 32, 42 or 45 (Traccar's `h02.messageLength`)",
    },
    Setting {
        key: ACK,
        kind: SettingKind::Flag { default: false },
        doc: "answer every `V…` message but `V1` and every binary frame with `*HQ,<id>,R12,<HHmmss>#`, for models that wait for it (Traccar's `h02.ack`)",
    },
    Setting {
        key: REPORT_INTERVAL_COMMAND,
        kind: SettingKind::Choice {
            default: "S71",
            choices: &["S71", "D1"],
        },
        doc: "how SET_REPORT_INTERVAL is sent: `S71,<t>,22,<s>` or `D1,<t>,<s>` (Traccar's `h02.alternative` models)",
    },
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[
    Simulator {
        name: "h02",
        doc: "H02 device, `*HQ,…,V1,…#` text positions, each confirmed with `V4,V1`",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::H02::text(imei, udp)),
    },
    Simulator {
        name: "h02bin",
        doc: "H02 device, 42-byte binary `$` positions (IMEI id) closed by an `HTBT` heartbeat whose echo confirms them",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::H02::binary(imei, udp)),
    },
];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::H02,
    name: NAME,
    describe: "text `*HQ,…#` (`V1` family, `V4` confirmations, `NBR`/`V3`/`VP1` cells, `LINK`, `HTBT`/`V0`, `SMS`), binary `$` frames of 32/42/45 bytes, `S20`/`SCF`/`S71`/`D1` commands",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // H02 devices take `*HQ,...#` commands in a datagram to the address they report from (Traccar's H02 encoder serves its UDP server too).
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// Detection:
///
/// - `*` + two letters + `,`: text;
/// - `$` + BCD whose id, `hhmmss` and `ddmmyy` read (in range) with a 5- or an 8-byte id:
///   binary, decided after 12 or 15 bytes. Meitrack's `$$<flag><length digits>,` is never
///   taken: its `,` (within 8 bytes) is no BCD byte, and nothing is claimed before it could
///   have come. Nor is Meiligao's `$$` + u16 length + `F`-padded id;
/// - `X` + the same as `$` with a 5-byte id.
///
/// Over UDP the prefix is the whole datagram: "need more" there is "no".
pub fn probe(prefix: &[u8], transport: Transport) -> Probe {
    let verdict = match prefix.first() {
        None => Probe::NeedMore,
        Some(b'*') => match frame::text_start(prefix) {
            Some(true) => Probe::Yes,
            Some(false) => Probe::No,
            None => Probe::NeedMore,
        },
        Some(b'$') => {
            match (
                frame::plausible_head(prefix, 5),
                frame::plausible_head(prefix, 8),
            ) {
                (Some(true), _) | (_, Some(true)) => Probe::Yes,
                (Some(false), Some(false)) => Probe::No,
                _ => Probe::NeedMore,
            }
        }
        Some(b'X') => match frame::plausible_head(prefix, 5) {
            Some(true) => Probe::Yes,
            Some(false) => Probe::No,
            None => Probe::NeedMore,
        },
        Some(_) => Probe::No,
    };
    if verdict == Probe::NeedMore && transport == Transport::Udp && !prefix.is_empty() {
        Probe::No
    } else {
        verdict
    }
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    framer: Framer,
    max_text: usize,
    imei: Option<String>,
    /// Set once the current id was reported in a `Frame.login`.
    announced: bool,
    ack: bool,
    interval: IntervalCommand,
    /// The `now` of the last decode: the server's clock for command times.
    clock: Option<SystemTime>,
    commands: Commands,
    /// The device's profile (by id), re-resolved when the profile file is reloaded.
    profile: ProfileCache,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `yyyyMMddHHmmss` (UTC).
fn full_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = crate::protocol::civil::civil_from_secs(secs(t) as i64);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let s = config.settings(NAME);
        let udp = transport == Transport::Udp;
        // Room for the longest binary frame and its look-ahead whatever the cap.
        let max_text = s.max_frame_bytes().max(frame::BINARY_WAIT_BYTES + 16);
        let binary = s.choice(BINARY_FRAME_BYTES).parse::<usize>().ok();
        let interval = if s.choice(REPORT_INTERVAL_COMMAND) == "D1" {
            IntervalCommand::D1
        } else {
            IntervalCommand::S71
        };
        Session {
            framer: Framer::new(udp, max_text, binary),
            max_text,
            imei: None,
            announced: false,
            ack: s.flag(ACK),
            interval,
            clock: None,
            commands: Commands::default(),
            profile: ProfileCache::new(config.profiles.clone(), Protocol::H02),
        }
    }

    /// The binary frame length this session locked, if any.
    pub fn binary_length(&self) -> Option<usize> {
        self.framer.binary.locked()
    }

    /// The device a message with `id` (possibly empty) belongs to; re-identifies the session
    /// when the id changes.
    fn identify(
        &mut self,
        id: &str,
        lenient: &mut Vec<&'static str>,
    ) -> Result<String, DecodeError> {
        if id.is_empty() {
            lenient.push(text::LENIENT_MISSING_ID);
            return self.imei.clone().ok_or_else(|| {
                DecodeError::new(
                    ErrorKind::NotLoggedIn,
                    Action::Continue,
                    "message without an id before any message with one",
                )
            });
        }
        if self.imei.as_deref() != Some(id) {
            if self.imei.is_some() {
                // Another device: the last one's commands are not its.
                self.commands.forget();
            }
            self.imei = Some(id.to_string());
            self.announced = false;
        }
        Ok(id.to_string())
    }

    fn reply(&self, reply: &Reply, id: &str, now: SystemTime) -> Option<Bytes> {
        match reply {
            Reply::None => None,
            Reply::Echo(bytes) => Some(Bytes::from(bytes.clone())),
            Reply::Confirm(ty) if !id.is_empty() => Some(Bytes::from(format!(
                "*{},{id},V4,{ty},{}#",
                command::MAKER,
                full_time(now)
            ))),
            Reply::AckIfEnabled if self.ack && !id.is_empty() => Some(Bytes::from(format!(
                "*{},{id},R12,{}#",
                command::MAKER,
                command::time_of_day(secs(now))
            ))),
            _ => None,
        }
    }

    /// One message's events, mapped, with identity, digest, reply and answers.
    fn finish(&mut self, m: Decoded, bytes: &[u8], now: SystemTime) -> Result<Frame, DecodeError> {
        let Decoded {
            id: sent_id,
            mut events,
            reply,
            confirmation,
            mut lenient,
        } = m;
        let id = self.identify(&sent_id, &mut lenient)?;
        let profile = self.profile.get(Some(&id));
        for e in &mut events {
            mapping::apply(e, profile);
        }
        // Messages without a time of their own (heartbeats, SMS answers) are each an event
        // of their own: their digest includes the time they arrived.
        let digest = if events.iter().any(|e| e.device_time.is_some()) {
            digest(Protocol::H02, &[id.as_bytes(), bytes])
        } else {
            let nanos = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            digest(Protocol::H02, &[id.as_bytes(), bytes, &nanos.to_be_bytes()])
        };
        let answers = confirmation
            .and_then(|c| {
                self.commands.confirm(&c).map(|tag| CommandAnswer {
                    tag: Some(tag),
                    outcome: c.outcome,
                })
            })
            .into_iter()
            .collect();
        let login = (!self.announced).then(|| {
            self.announced = true;
            id.clone()
        });
        Ok(Frame {
            events,
            digest,
            reply: self.reply(&reply, &sent_id, now),
            login,
            answers,
            lenient,
            ..Default::default()
        })
    }
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        self.clock = Some(now);
        let (kind, start, len, consumed) = match self.framer.split(buf) {
            Split::Incomplete => return Ok(None),
            Split::Skip(n, why) => {
                let n = n.clamp(1, buf.len().max(1));
                buf.advance(n.min(buf.len()));
                let (kind, detail) = match why {
                    Reject::Garbage => (
                        ErrorKind::Malformed,
                        format!("skipped {n} bytes before the next message"),
                    ),
                    Reject::TooLarge => (
                        ErrorKind::TooLarge,
                        format!(
                            "text message longer than {} bytes without its `#`",
                            self.max_text
                        ),
                    ),
                    Reject::CutShort => (
                        ErrorKind::Malformed,
                        format!("a {n}-byte message cut short by the next one"),
                    ),
                    Reject::Truncated => (
                        ErrorKind::BadLength,
                        format!("{n} bytes of a datagram are no whole message"),
                    ),
                };
                return Err(DecodeError::new(kind, Action::Continue, detail));
            }
            Split::Frame {
                kind,
                start,
                len,
                consumed,
                ..
            } => (kind, start, len, consumed),
        };
        let bytes = buf.get(start..start + len).unwrap_or_default().to_vec();
        match kind {
            Kind::X => {
                buf.advance(consumed.min(buf.len()));
                // The binary layout with another id, duplicating a `$` frame: nothing to
                // publish, nothing to answer (as Traccar).
                Ok(Some(Frame {
                    digest: digest(Protocol::H02, &[b"X", &bytes]),
                    ..Default::default()
                }))
            }
            Kind::Text => {
                buf.advance(consumed.min(buf.len()));
                let d = text::decode(&bytes)?;
                self.finish(d, &bytes, now).map(Some)
            }
            Kind::Binary => match binary::decode(&bytes) {
                Ok(d) => {
                    buf.advance(consumed.min(buf.len()));
                    let m = Decoded {
                        id: d.id,
                        events: vec![d.event],
                        reply: Reply::AckIfEnabled,
                        confirmation: None,
                        lenient: Vec::new(),
                    };
                    self.finish(m, &bytes, now).map(Some)
                }
                Err(e) => {
                    // The cut may be wrong: drop the marker only and resynchronise.
                    self.framer.binary.unlock();
                    buf.advance((start + 1).min(buf.len()));
                    Err(e)
                }
            },
        }
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn encode_command(&mut self, request: &CommandRequest) -> Result<Bytes, CommandError> {
        let Some(id) = self.imei.clone() else {
            return Err(CommandError::Invalid(
                "the device has not identified itself".into(),
            ));
        };
        let now = self.clock.map(secs).unwrap_or(0);
        self.commands
            .encode(&id, request, now, self.interval, self.max_text)
    }

    fn last_command_tag(&self) -> Option<u32> {
        self.commands.last_tag()
    }
}

#[cfg(test)]
mod tests;
