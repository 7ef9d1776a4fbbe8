//! GPS103 / Coban TK10x (TK102, TK103, TK104, GPS102–104 and their clones): ASCII messages
//! over TCP and UDP.
//!
//! - `frame`: where a message ends (`;`, `*`, a line end, or the next message's start).
//! - `packet`: what a message is (login, heartbeat, report, OBD line, photo chunk, the
//!   alternative form) and its fields as typed values; the local/UTC clock reconciliation.
//! - `mapping`: raw names, the built-in profile, the events.
//! - `photo`: `vtNN` / `vr` photo reassembly.
//! - `command`: `**,imei:<IMEI>,<code>` commands.
//! - `sim`: a simulated device.
//!
//! This module is the session: identity, answers, the device's clock offset, the photo in
//! progress.
//!
//! # Answers
//!
//! The device expects exactly two answers, both ASCII without a terminator: `LOAD` to its
//! login (`##,imei:<IMEI>,A;`; until then it repeats the login) and `ON` to its heartbeat
//! (`<IMEI>;`). Reports, OBD lines and photo chunks get no answer (Traccar sends none, and
//! the firmware waits for none). Like every positive answer, both ride on the [`Frame`] and
//! are written only after the frame's events were delivered (a heartbeat publishes a
//! HEARTBEAT event, so `ON` also confirms everything the device sent before it).
//!
//! **`help me` is answered with `**,imei:<IMEI>,E;`** (the alarm cancel, byte for byte as
//! Traccar sends it, with its `;`), after the SOS event was delivered: the device repeats
//! the SOS report until it gets the cancel, so the cancel is the alarm's acknowledgement, and
//! sending it only once the alarm is safely published is exactly the gateway's
//! ack-after-delivery rule. A fleet whose operators must silence the device themselves sets
//! `sos_cancel = false` (then the device keeps alarming until an `E` command).
//!
//! A report glued to a heartbeat (`<IMEI>imei:<IMEI>,…`) is one message: it is answered `ON`
//! (followed by the cancel when it is a `help me`), in one write.
//!
//! # Time
//!
//! Reports carry the device's local clock (date and time) and, with a fix, the UTC time of
//! the fix. As Traccar does, the event's time is the local date with the UTC time of day,
//! moved a day back or forward when the two clocks are more than 12 hours apart. Messages
//! without a UTC time (no-fix `L` reports, OBD lines, firmware that writes something else in
//! the UTC field) are placed with the clock offset: `local_time_zone` when the operator set
//! one, else the offset this device showed in its last report that had both clocks (rounded
//! to 15 minutes); with neither, such an event has no `device_time` (the local clock alone
//! does not say when it was) and `local_time` stays in `raw`.
//!
//! # Identity
//!
//! Every message names the device (login, heartbeat and reports alike), so a report without a
//! login is accepted and identifies the device. A message naming another device switches
//! the session to it (reported as a new login); the clock offset and a photo in progress
//! belong to the device and are dropped.
//!
//! # Errors
//!
//! A message that is no GPS103 message, or whose layout cannot be read, is a
//! [`DecodeError`] with [`Action::Continue`] and no answer (the device has no negative
//! answer). A run of more than `max_frame_bytes` without a terminator closes a TCP
//! connection (the framing is lost) and drops a datagram.

pub mod command;
pub mod frame;
pub mod mapping;
pub mod packet;
pub mod photo;
pub mod sim;

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use crate::event::{timestamp_millis, timestamp_secs, Timestamp};
use crate::proto::{Protocol, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, no_reply, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame, Probe,
    ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::ProfileCache;

use frame::{End, Framer, Message, MAX_ID_DIGITS};
use packet::{ParseError, Report, Sentence};

const NAME: &str = "gps103";
/// The answer to a login.
pub const LOAD: &[u8] = b"LOAD";
/// The answer to a heartbeat.
pub const ON: &[u8] = b"ON";

const MAX_FILE_BYTES: &str = "max_file_bytes";
const SOS_CANCEL: &str = "sos_cancel";
const LOCAL_TIME_ZONE: &str = "local_time_zone";
/// `local_time_zone`'s default: the offset each device shows.
const LEARN: &str = "learn";

/// Every UTC offset in use, for `local_time_zone`.
static ZONES: &[&str] = &[
    LEARN, "-12:00", "-11:00", "-10:00", "-09:30", "-09:00", "-08:00", "-07:00", "-06:00",
    "-05:00", "-04:00", "-03:30", "-03:00", "-02:00", "-01:00", "+00:00", "+01:00", "+02:00",
    "+03:00", "+03:30", "+04:00", "+04:30", "+05:00", "+05:30", "+05:45", "+06:00", "+06:30",
    "+07:00", "+08:00", "+08:45", "+09:00", "+09:30", "+10:00", "+10:30", "+11:00", "+12:00",
    "+12:45", "+13:00", "+14:00",
];

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        4 * 1024,
        "largest message before its terminator (photo chunks `vr` are the largest, about 1 KiB)",
    ),
    Setting {
        key: MAX_FILE_BYTES,
        kind: SettingKind::Bytes {
            default: 1024 * 1024,
            min: 1024,
            max: 64 * 1024 * 1024,
        },
        doc: "largest photo a device may upload, across its `vr` chunks",
    },
    Setting {
        key: SOS_CANCEL,
        kind: SettingKind::Flag { default: true },
        doc: "answer `help me` with the alarm cancel `**,imei:<IMEI>,E;` once the SOS was delivered (as Traccar does); false leaves the device alarming",
    },
    Setting {
        key: LOCAL_TIME_ZONE,
        kind: SettingKind::Choice {
            default: LEARN,
            choices: ZONES,
        },
        doc: "UTC offset of the devices' clocks, for messages without a UTC time (`L` reports, OBD lines); `learn`: each device's offset from its own fixes",
    },
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[Simulator {
    name: "gps103",
    doc: "Coban TK103 device: `##` login, `tracker` reports, `ON`-answered heartbeats",
    transports: &[Transport::Tcp, Transport::Udp],
    make: |imei, udp| Box::new(sim::Coban::new(imei, udp)),
}];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Gps103,
    name: NAME,
    describe: "Coban TK10x: `##` login (`LOAD`), heartbeats (`ON`), reports with keyword alarms, no-fix cells, OBD lines, `vt`/`vr` photos, the `*` form; `**,imei:` commands",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // Coban devices take `**,imei:` commands in a datagram to the address they report from (Traccar's GPS103 encoder serves its UDP server too).
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// Whether `prefix` starts like `literal`: `Yes` once it holds it whole.
fn starts_like(prefix: &[u8], literal: &[u8]) -> Probe {
    let n = prefix.len().min(literal.len());
    if prefix.get(..n) != literal.get(..n) {
        Probe::No
    } else if prefix.len() >= literal.len() {
        Probe::Yes
    } else {
        Probe::NeedMore
    }
}

/// Detection: `##,` (login; Wialon IPS has a type letter after its `#`), `imei:` (report), or
/// an IMEI (15–20 digits) followed by `;`, a line end or `imei:` (heartbeat, glued
/// heartbeat). Wialon IPS over UDP also starts with digits, but follows them with `#`
/// (`<IMEI>#…`) or `.` (`2.0;<IMEI>#…`). A peer's first datagram holding only an IMEI (a
/// heartbeat without terminator) is not claimed: it could be the head of a Wialon datagram,
/// and the device's next message (`##,`, `imei:`) starts its session anyway.
pub fn probe(prefix: &[u8], transport: Transport) -> Probe {
    match prefix.first() {
        None => Probe::NeedMore,
        Some(b'#') => starts_like(prefix, b"##,"),
        Some(b'i') => starts_like(prefix, b"imei:"),
        Some(b'0'..=b'9') => {
            let digits = prefix.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > MAX_ID_DIGITS {
                return Probe::No;
            }
            let rest = prefix.get(digits..).unwrap_or_default();
            let imei = digits >= packet::MIN_HEARTBEAT_DIGITS;
            match rest.first() {
                // A datagram is whole: digits alone are no message we can tell from the start
                // of a Wialon IPS datagram (`<IMEI>#…`).
                None if transport == Transport::Udp => Probe::No,
                None => Probe::NeedMore,
                Some(_) if !imei => Probe::No,
                Some(b';' | b'\r' | b'\n') => Probe::Yes,
                Some(b'i') => starts_like(rest, b"imei:"),
                Some(_) => Probe::No,
            }
        }
        Some(_) => Probe::No,
    }
}

/// The device's clock offset (minutes east of UTC) for messages without a UTC time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// `local_time_zone`, when the operator set one.
    fixed: Option<i32>,
    /// From this device's last report with both clocks.
    learned: Option<i32>,
}

impl Clock {
    fn new(setting: &str) -> Self {
        Clock {
            fixed: parse_zone(setting),
            learned: None,
        }
    }

    /// The event time of a message with the local clock `local` and, maybe, the UTC time of
    /// its fix.
    fn device_time(
        &mut self,
        local: Option<&packet::Civil>,
        utc: Option<&packet::TimeOfDay>,
    ) -> Option<Timestamp> {
        let local = local?;
        if let Some(utc) = utc {
            let (ms, delta) = packet::reconcile(local, utc);
            // Clocks are read a moment apart (local 04:14, UTC 01:15): the zone is the
            // difference to the nearest quarter hour.
            self.learned = Some(((f64::from(delta) / 15.0).round() as i32) * 15);
            return u64::try_from(ms).ok().map(timestamp_millis);
        }
        let offset = self.fixed.or(self.learned)?;
        let secs = local.secs() - i64::from(offset) * 60;
        (secs >= 0).then(|| timestamp_secs(secs))
    }
}

/// `+05:30` → 330 minutes; `learn` (or anything else) → `None`.
fn parse_zone(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let minutes = h.parse::<i32>().ok()? * 60 + m.parse::<i32>().ok()?;
    Some(sign * minutes)
}

/// Lenient-input labels of the session (see also [`packet::quirk`]).
pub mod lenient {
    /// A message without terminator, ended by the next message's start.
    pub const UNTERMINATED: &str = "unterminated";
    /// `<IMEI>imei:<IMEI>,…`: a heartbeat glued to a report.
    pub const GLUED_HEARTBEAT: &str = "glued_heartbeat";
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    framer: Framer,
    imei: Option<String>,
    max_file: usize,
    sos_cancel: bool,
    clock: Clock,
    zone_setting: &'static str,
    photo: Option<photo::Upload>,
    /// The device's profile (by IMEI), re-resolved when the profile file is reloaded.
    profile: ProfileCache,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let s = config.settings(NAME);
        let zone_setting = s.choice(LOCAL_TIME_ZONE);
        Session {
            // A message needs room for at least a login.
            framer: Framer::new(transport == Transport::Udp, s.max_frame_bytes().max(64)),
            imei: None,
            max_file: s.bytes(MAX_FILE_BYTES),
            sos_cancel: s.flag(SOS_CANCEL),
            clock: Clock::new(zone_setting),
            zone_setting,
            photo: None,
            profile: ProfileCache::new(config.profiles.clone(), Protocol::Gps103),
        }
    }

    /// Prepares the session for a message of device `id`: `true` when that is another device
    /// than the session's (its clock offset and photo in progress are then dropped). The
    /// session takes the id once the message is decoded ([`Self::identified`]), so a refused
    /// message never changes who the session is.
    fn switching_to(&mut self, id: &str) -> bool {
        if self.imei.as_deref() == Some(id) {
            return false;
        }
        self.photo = None;
        self.clock = Clock::new(self.zone_setting);
        true
    }

    /// The message of `id` was decoded: a login for the session layer when `id` is news.
    fn identified(&mut self, id: &str, switched: bool) -> Option<String> {
        switched.then(|| {
            self.imei = Some(id.to_string());
            id.to_string()
        })
    }

    fn handle(&mut self, m: &Message, now: SystemTime) -> Result<Frame, DecodeError> {
        let malformed = |e: ParseError| {
            let kind = match e {
                ParseError::Field(_) => ErrorKind::BadValue,
                _ => ErrorKind::Malformed,
            };
            DecodeError::new(kind, Action::Continue, e.to_string())
        };
        let sentence = packet::classify(&m.text, m.end).map_err(malformed)?;
        let mut frame = match sentence {
            Sentence::Login { id } => {
                let switched = self.switching_to(id);
                Frame {
                    digest: digest(Protocol::Gps103, &[&m.text]),
                    reply: Some(Bytes::from_static(LOAD)),
                    login: self.identified(id, switched),
                    ..Default::default()
                }
            }
            Sentence::Heartbeat { id } => {
                let switched = self.switching_to(id);
                // Every heartbeat is the same text: its time makes it an event of its own.
                let nanos = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                Frame {
                    events: vec![mapping::heartbeat_event()],
                    digest: digest(Protocol::Gps103, &[&m.text, &nanos.to_be_bytes()]),
                    reply: Some(Bytes::from_static(ON)),
                    login: self.identified(id, switched),
                    ..Default::default()
                }
            }
            Sentence::Report {
                id,
                text,
                fields,
                glued,
                alternative,
            } => {
                let switched = self.switching_to(id);
                let mut f = self
                    .report(id, text, fields, alternative)
                    .map_err(malformed)?;
                f.login = self.identified(id, switched);
                if glued {
                    // Traccar answers `ON` to a message that starts with digits, then decodes
                    // the report after them.
                    let mut reply = ON.to_vec();
                    reply.extend_from_slice(f.reply.as_deref().unwrap_or_default());
                    f.reply = Some(reply.into());
                    f.lenient.push(lenient::GLUED_HEARTBEAT);
                }
                f
            }
        };
        if m.end == End::NextMessage {
            frame.lenient.push(lenient::UNTERMINATED);
        }
        Ok(frame)
    }

    /// A message `imei:<id>,…` that is no login; `text` is all of it (the event's content).
    fn report(
        &mut self,
        id: &str,
        text: &[u8],
        fields: Vec<&[u8]>,
        alternative: bool,
    ) -> Result<Frame, ParseError> {
        let keyword = fields.get(packet::at::KEYWORD).copied().unwrap_or_default();
        if keyword == b"vr" {
            return self.photo_chunk(id, &fields);
        }
        let mut frame = Frame {
            digest: digest(Protocol::Gps103, &[text]),
            ..Default::default()
        };
        if keyword == b"OBD" {
            let local = fields.get(2).and_then(|f| packet::local_time(f));
            let time = self.clock.device_time(local.as_ref(), None);
            let profile = self.profile.get(Some(id));
            frame.events = vec![mapping::obd_event(&fields, time, profile)];
            return Ok(frame);
        }
        if alternative {
            let profile = self.profile.get(Some(id));
            frame.events = vec![mapping::alternative_event(&fields, profile)?];
            return Ok(frame);
        }
        let r = Report::parse(id, fields)?;
        let time = self.clock.device_time(r.local.as_ref(), r.utc.as_ref());
        if let Some(chunks) = packet::photo_announce(r.keyword) {
            self.photo = (chunks > 0).then(|| {
                let local = r
                    .fields
                    .get(packet::at::LOCAL_TIME)
                    .copied()
                    .unwrap_or_default();
                let stamp = if local.iter().all(u8::is_ascii_digit) && !local.is_empty() {
                    String::from_utf8_lossy(local).into_owned()
                } else {
                    format!("{:016x}", frame.digest as u64)
                };
                photo::Upload::new(chunks, format!("{id}_{stamp}.jpg"), time)
            });
        }
        if r.keyword == b"help me" && self.sos_cancel {
            frame.reply = Some(Bytes::from(format!("**,imei:{id},E;")));
        }
        frame.lenient.extend(r.quirks.iter().copied());
        let profile = self.profile.get(Some(id));
        frame.events = vec![mapping::report_event(&r, time, profile)];
        Ok(frame)
    }

    /// `imei:<id>,vr,<hex>`: one chunk of the announced photo.
    fn photo_chunk(&mut self, id: &str, fields: &[&[u8]]) -> Result<Frame, ParseError> {
        let [_, _, hex] = fields else {
            return Err(ParseError::Field("photo chunk: not imei,vr,<hex>"));
        };
        let bytes = packet::hex_bytes(hex).ok_or(ParseError::Field("photo chunk is not hex"))?;
        let (index, data) = packet::photo_chunk(&bytes)?;
        let Some(up) = self.photo.as_mut() else {
            return Err(ParseError::Field("photo chunk without a vtNN announcement"));
        };
        let chunk_digest = digest(Protocol::Gps103, &[id.as_bytes(), hex]);
        match up.push(index, data, self.max_file) {
            Ok(photo::Progress::Stored | photo::Progress::Duplicate) => Ok(Frame {
                digest: chunk_digest,
                ..Default::default()
            }),
            Ok(photo::Progress::Complete(data)) => {
                let file_digest = digest(Protocol::Gps103, &[id.as_bytes(), b"vr", &data]);
                let (name, time) = (std::mem::take(&mut up.name), up.time);
                self.photo = None;
                Ok(Frame {
                    events: vec![mapping::file_event(name, data, time)],
                    digest: file_digest,
                    ..Default::default()
                })
            }
            Err(photo::Refused::TooLarge(_)) => {
                self.photo = None;
                Err(ParseError::Field(
                    "photo larger than max_file_bytes; dropped",
                ))
            }
            Err(photo::Refused::BeyondAnnounced(..)) => Err(ParseError::Field(
                "photo chunk index beyond the announced count",
            )),
        }
    }
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        let m = match self.framer.next(buf) {
            Ok(None) => return Ok(None),
            Ok(Some(m)) => m,
            Err(e) => {
                let action = if e.lost {
                    Action::Close
                } else {
                    Action::Continue
                };
                return Err(DecodeError::new(e.kind, action, e.detail));
            }
        };
        self.handle(&m, now).map(Some)
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn encode_command(&mut self, command: &CommandRequest) -> Result<Bytes, CommandError> {
        let Some(imei) = self.imei.as_deref() else {
            return Err(CommandError::Invalid(
                "the device has not identified itself".into(),
            ));
        };
        command::encode(imei, command)
    }

    /// Devices execute commands without an answer that names them (`B` only makes the device
    /// send an ordinary report): a command ends SENT.
    fn command_answered(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
