//! Queclink @Track (GL/GV/GB/GMT/CV series), over TCP and UDP: the text form
//! (`+RESP:GTxxx`, `+BUFF:` buffered, `+ACK:GTxxx` command answers and heartbeats), the classic
//! binary form (`+RSP`, `+EVT`, `+INF`, `+HBD`, `+ACK`, buffered `+BSP`/`+BVT`/`+BNF`/`+BRD`)
//! and the compact binary form of newer models (Protocol Pro, `2B 00` / `2B 10`).
//!
//! - `frame`: where a message ends, per form; CRC-16/CCITT-FALSE and CRC-8 checks.
//! - `text`: the text form, read from both ends (see its doc).
//! - `binary`: the classic (mask-driven) and compact (records and data items) forms.
//! - `report`: what a decoded message is before it becomes events.
//! - `mapping`: raw names, the device profile, events.
//! - `models`: device types, their families and default passwords.
//! - `command`: `AT+GT` commands.
//!
//! This module is the session: identity, acknowledgements and commands.
//!
//! # Identity
//!
//! There is no login: every text message and most binary ones carry the IMEI, and the first
//! message that names one identifies the device ([`Frame::login`]). Binary messages that carry
//! only a device name (a report-mask choice) are attributed to the identified device; before
//! any identification they are refused (`NotLoggedIn`, the connection goes on).
//!
//! # Acknowledgements
//!
//! - `+ACK:GTHBD` heartbeats are always answered `+SACK:GTHBD,<protocol version>,<count>$`
//!   (the only reply the documents make mandatory; a long-connection device that gets none
//!   drops and reconnects).
//! - Every other message the device numbers — `+RESP` and `+BUFF` reports of **every** type
//!   including the periodic `GTFRI`/`GTERI`, and `+ACK` command answers — is answered
//!   `+SACK:<count>$`, the count echoed byte for byte, when the setting `sack` is `all` (the
//!   default). A device with `<SACK Enable>` on waits for the SACK of each message it sends,
//!   resends it on a timeout (or a count mismatch) and reconnects after its retries: SACKing
//!   only buffered and event reports would make such a device resend every periodic report
//!   and drop its connection. Since the SACK is written only after the broker confirmed the
//!   message's records, it is also exactly the at-least-once receipt the gateway promises —
//!   for periodic reports as much as for events. Devices with SACK off ignore it; fleets whose
//!   firmware mishandles unsolicited SACKs set `sack = heartbeat`.
//! - Compact (Protocol Pro) reports and heartbeats are answered `+SACK:<count>$` the same way.
//! - The classic binary form has no documented server acknowledgement: nothing is written.
//! - Messages that do not decode, or carry no 4-hex-digit count, are never acknowledged.

pub mod binary;
pub mod command;
pub mod frame;
pub mod mapping;
pub mod models;
pub mod report;
pub mod sim;
pub mod text;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::{Protocol, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, no_reply, Action, AnswerOutcome, CommandAnswer, CommandError, CommandRequest,
    DecodeError, ErrorKind, Frame, Probe, ProtocolConfig, ProtocolModule, ProtocolSession, Setting,
    Simulator,
};
use crate::vocab::ProfileCache;

use frame::{Format, Reject, Split};
use models::Model;
use report::{Ack, Class, Report};

const NAME: &str = "queclink";
/// Which messages get a `+SACK`.
pub const SACK: &str = "sack";
/// The password typed commands use.
pub const COMMAND_PASSWORD: &str = "command_password";

/// Largest message: text reports with CAN data or multi-packet buffers stay under 1.5 KiB, a
/// compressed binary batch under 1.5 KiB; binary `+DAT`/`+CRD` can be a few KiB.
const DEFAULT_MAX_FRAME_BYTES: u64 = 8 * 1024;

/// Labels of [`Frame::lenient`] (tolerated input, counted per kind).
pub const LENIENT_NON_UTF8: &str = "queclink_non_utf8_text";
/// A position append mask with bits whose fields are unknown: the fields after it are kept
/// under their place, unnamed.
pub const LENIENT_APPEND_MASK: &str = "queclink_unknown_append_mask";
/// A `GTERI` / Bluetooth mask bit whose section is unknown: the rest is kept unnamed.
pub const LENIENT_ERI_MASK: &str = "queclink_unknown_eri_mask";
/// A CAN mask bit whose field is unknown on the model: the rest is kept unnamed.
pub const LENIENT_CAN_MASK: &str = "queclink_unknown_can_mask";
/// A report type of unknown layout with no position found: every field kept unnamed.
pub const LENIENT_UNKNOWN_LAYOUT: &str = "queclink_unknown_layout";

/// The `sack` choices.
const SACK_CHOICES: &[&str] = &["all", "heartbeat"];

/// `command_password` choices: `model` (each device's model's factory password) or one of
/// the factory passwords for every device (a model whose type code is not known here).
const PASSWORD_CHOICES: &[&str] = &[
    "model", "cv100lg", "cv200", "gb100", "gl200", "gl300", "gl300vc", "gl300w", "gl320m", "gl50",
    "gl500", "gl500m", "gl50b", "gl530", "gmt100", "gt501", "gv200", "gv300", "gv300can", "gv300w",
    "gv30ceu", "gv310lau", "gv350ceu", "gv350m", "gv355ceu", "gv500", "gv500cna", "gv500map",
    "gv500vc", "gv50p", "gv55", "gv55lite", "gv55w", "gv56", "gv58lau", "gv600m", "gv600mg",
    "gv600w", "gv65", "gv75w", "gv800w",
];

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        DEFAULT_MAX_FRAME_BYTES,
        "largest message: a text line to its `$`, or a binary frame",
    ),
    Setting {
        key: SACK,
        kind: SettingKind::Choice {
            default: "all",
            choices: SACK_CHOICES,
        },
        doc: "`all`: `+SACK:<count>$` for every report and answer (what devices with SACK on wait for); `heartbeat`: only the `+SACK:GTHBD` heartbeat reply",
    },
    Setting {
        key: COMMAND_PASSWORD,
        kind: SettingKind::Choice {
            default: "model",
            choices: PASSWORD_CHOICES,
        },
        doc: "password of typed commands: `model` = each device's factory password (its model name in lower case, from its protocol version), or one factory password for every device",
    },
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[
    Simulator {
        name: "queclink",
        doc: "Queclink GV300 in text mode: +ACK:GTHBD heartbeat, multi-position +RESP:GTFRI, +SACK",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, _udp| Box::new(sim::Text::new(imei)),
    },
    Simulator {
        name: "queclink-pro",
        doc: "Queclink Protocol Pro device (compact binary): 2B 10 heartbeat, 2B 00 reports with location records, +SACK",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, _udp| Box::new(sim::Pro::new(imei)),
    },
];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Queclink,
    name: NAME,
    describe: "@Track text (`+RESP`/`+BUFF`/`+ACK:GT…`, multi-position reports), classic binary (`+RSP`/`+EVT`/`+HBD`/`+ACK`…, CRC-16) and compact Protocol Pro (`2B 00`, CRC-8); `+SACK` replies; `AT+GTOUT`/`AT+GTRTO`/`AT+GTFRI` commands",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // Queclink devices take `AT+GT` commands in a datagram to the address they report from (Traccar's GL200 encoder serves its UDP server too).
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// What a prefix says against one fixed start: `Yes` once all of `start` is there, `NeedMore`
/// while the prefix is a start of it, `No` otherwise.
fn against(prefix: &[u8], start: &[u8]) -> Probe {
    if prefix.starts_with(start) {
        Probe::Yes
    } else if start.starts_with(prefix) {
        Probe::NeedMore
    } else {
        Probe::No
    }
}

/// Cheap look at the first bytes: the text prefixes, a classic binary header whose length
/// field is plausible, or a compact header whose length, flags and IMEI nibble are.
pub fn probe(p: &[u8], transport: Transport) -> Probe {
    let udp = transport == Transport::Udp;
    let more = if udp { Probe::No } else { Probe::NeedMore };
    let Some(&first) = p.first() else {
        return Probe::NeedMore;
    };
    if first != b'+' && first != b'-' {
        return Probe::No;
    }
    // Compact binary: `2B|2D 00 <len:u16> <flags 00|80> <IMEI, leading nibble 0>`, and the
    // heartbeat `2B 10 18 <IMEI>`. A Wialon Retranslator packet of 43 bytes starts
    // `2B 00 00 00`: a zero length, which no Queclink frame has.
    match p.get(1) {
        None => return more,
        Some(0x00) => {
            let Some(&[hi, lo]) = p.get(2..4) else {
                return more;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if !(frame::MIN_COMPACT..=DEFAULT_MAX_FRAME_BYTES as usize).contains(&len) {
                return Probe::No;
            }
            let Some(&flags) = p.get(4) else { return more };
            let imei_at = match flags {
                0x00 => 5,
                0x80 => 7,
                _ => return Probe::No,
            };
            let Some(&imei) = p.get(imei_at) else {
                return more;
            };
            if imei >> 4 != 0 || (udp && p.len() < len) {
                return Probe::No;
            }
            return Probe::Yes;
        }
        Some(0x10) if first == b'+' => {
            return match (p.get(2), p.get(3)) {
                (None, _) | (Some(_), None) if !udp => Probe::NeedMore,
                (Some(&24), Some(&imei)) if imei >> 4 == 0 => Probe::Yes,
                _ => Probe::No,
            };
        }
        Some(_) if first == b'-' => return Probe::No,
        Some(_) => {}
    }
    // Text.
    let mut verdict = Probe::No;
    for start in [&b"+RESP:GT"[..], b"+BUFF:GT", b"+ACK:GT"] {
        match against(p, start) {
            Probe::Yes => return Probe::Yes,
            Probe::NeedMore => verdict = more,
            Probe::No => {}
        }
    }
    // Classic binary: the header, then a plausible length (`+ACK` not followed by `:`).
    for tag in frame::classic_tags() {
        match against(p, tag) {
            Probe::NeedMore => verdict = more,
            Probe::Yes => {
                if tag == b"+ACK" {
                    match p.get(4) {
                        None => return more,
                        Some(b':') => continue,
                        Some(_) => {}
                    }
                }
                return classic_length_plausible(p, tag, udp);
            }
            Probe::No => {}
        }
    }
    verdict
}

fn classic_length_plausible(p: &[u8], tag: &[u8; 4], udp: bool) -> Probe {
    let (offsets, width): (&[usize], usize) = match tag {
        b"+ACK" => (&[6], 1),
        b"+HBD" => (&[5], 1),
        b"+ATI" => (&[4], 1),
        b"+INF" | b"+BNF" => (&[7, 9], 2),
        b"+CRD" | b"+BRD" | b"+LGN" => (&[6], 2),
        _ => (&[9], 2),
    };
    let mut need = false;
    for &at in offsets {
        let len = match width {
            1 => p.get(at).map(|&b| usize::from(b)),
            _ => p
                .get(at..at + 2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))),
        };
        match len {
            None => need = true,
            Some(len) if (12..=DEFAULT_MAX_FRAME_BYTES as usize).contains(&len) => {
                if !udp || p.len() >= len {
                    return Probe::Yes;
                }
            }
            Some(_) => {}
        }
    }
    if need && !udp {
        Probe::NeedMore
    } else {
        Probe::No
    }
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_frame: usize,
    imei: Option<String>,
    /// The current IMEI was reported in a `Frame.login`.
    announced: bool,
    /// The device's model, from the last message that named its type.
    model: Option<&'static Model>,
    /// The device sent compact (Protocol Pro) frames.
    pro: bool,
    sack_all: bool,
    /// `None`: each model's factory password.
    password: Option<&'static str>,
    next_serial: u16,
    last_serial: Option<u16>,
    profile: ProfileCache,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let s = config.settings(NAME);
        Session {
            udp: transport == Transport::Udp,
            max_frame: s.max_frame_bytes().max(64),
            imei: None,
            announced: false,
            model: None,
            pro: false,
            sack_all: s.choice(SACK) != "heartbeat",
            password: match s.choice(COMMAND_PASSWORD) {
                "model" | "" => None,
                p => Some(p),
            },
            next_serial: 1,
            last_serial: None,
            profile: ProfileCache::new(config.profiles.clone(), Protocol::Queclink),
        }
    }

    /// The model the session knows the device as.
    pub fn model(&self) -> Option<&'static Model> {
        self.model
    }

    fn reject(kind: ErrorKind, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(kind, Action::Continue, detail)
    }

    fn handle(&mut self, format: Format, unit: &[u8]) -> Result<Frame, DecodeError> {
        let mut lenient = Vec::new();
        let rep = match format {
            Format::Text => {
                let text = match std::str::from_utf8(unit) {
                    Ok(t) => std::borrow::Cow::Borrowed(t),
                    Err(_) => {
                        lenient.push(LENIENT_NON_UTF8);
                        String::from_utf8_lossy(unit)
                    }
                };
                text::decode(&text)
                    .map_err(|e| Self::reject(ErrorKind::Malformed, e.to_string()))?
            }
            Format::Classic => binary::decode_classic(unit)
                .map_err(|e| Self::reject(ErrorKind::Malformed, e.to_string()))?,
            Format::Compact | Format::CompactHeartbeat => {
                self.pro = true;
                binary::decode_compact(unit, format == Format::CompactHeartbeat)
                    .map_err(|e| Self::reject(ErrorKind::Malformed, e.to_string()))?
            }
        };
        self.identify(&rep)?;
        let imei = self.imei.clone().unwrap_or_default();
        let profile = self.profile.get(Some(&imei));
        let events = mapping::to_events(&rep, profile);
        let reply = self.reply(&rep, format);
        let answers = match &rep.class {
            Class::CommandAck { serial, refused } => {
                let text = rep.text.clone().unwrap_or_default();
                vec![CommandAnswer {
                    tag: serial.map(u32::from),
                    outcome: if *refused {
                        AnswerOutcome::Refused(text)
                    } else {
                        AnswerOutcome::Text(text)
                    },
                }]
            }
            _ => Vec::new(),
        };
        lenient.extend(rep.lenient.iter().copied());
        let login = (!self.announced).then(|| {
            self.announced = true;
            imei.clone()
        });
        Ok(Frame {
            events,
            digest: digest(
                Protocol::Queclink,
                &[imei.as_bytes(), content(format, unit)],
            ),
            reply,
            login,
            close: false,
            answers,
            lenient,
            relayed: None,
        })
    }

    /// Binds the message to a device: its own IMEI, or the identified device's.
    fn identify(&mut self, rep: &Report) -> Result<(), DecodeError> {
        if let Some(m) = rep.model {
            self.model = Some(m);
        }
        match rep.device_id.as_deref() {
            Some(id) if crate::device_id::is_valid(id) => {
                if self.imei.as_deref() != Some(id) {
                    self.imei = Some(id.to_string());
                    self.announced = false;
                }
                Ok(())
            }
            _ if self.imei.is_some() => Ok(()),
            _ => Err(Self::reject(
                ErrorKind::NotLoggedIn,
                format!(
                    "a {} message without the device's IMEI before any message that names it; not acknowledged",
                    rep.ty
                ),
            )),
        }
    }

    fn reply(&self, rep: &Report, format: Format) -> Option<Bytes> {
        let heartbeat = rep.class == Class::Heartbeat;
        match &rep.ack {
            Ack::Heartbeat { version, count } => {
                Some(Bytes::from(format!("+SACK:GTHBD,{version},{count}$")))
            }
            Ack::Count(c) if format != Format::Classic && (self.sack_all || heartbeat) => {
                Some(Bytes::from(format!("+SACK:{c}$")))
            }
            _ => None,
        }
    }

    fn framing_error(&self, n: usize, why: Reject) -> DecodeError {
        let (kind, action, detail) = match why {
            Reject::Garbage => (
                ErrorKind::Malformed,
                Action::Continue,
                format!("skipped {n} bytes that start no message"),
            ),
            Reject::BadChecksum => (
                ErrorKind::BadChecksum,
                Action::Continue,
                format!("checksum mismatch in a {n}-byte binary frame; not acknowledged"),
            ),
            Reject::BadLength => (
                ErrorKind::BadLength,
                Action::Continue,
                "a binary length that does not land on the frame's tail; resynchronising".into(),
            ),
            Reject::TooLarge => (
                ErrorKind::TooLarge,
                Action::Continue,
                format!(
                    "no message end within the {}-byte cap; resynchronising",
                    self.max_frame
                ),
            ),
            // The end of a message without a length field cannot be found: nothing after it
            // on the stream can be trusted.
            Reject::Unframeable => (
                ErrorKind::Unsupported,
                if self.udp {
                    Action::Continue
                } else {
                    Action::Close
                },
                "a binary +ACC message (no length field): its end cannot be found".into(),
            ),
        };
        DecodeError::new(kind, action, detail)
    }
}

/// What a message's digest covers: its content without the real-time/buffered marker, so a
/// `+BUFF` replay of a `+RESP` the gateway already published gets the same event ids.
fn content(format: Format, unit: &[u8]) -> &[u8] {
    let skip = match format {
        Format::Text if unit.starts_with(b"+RESP:") || unit.starts_with(b"+BUFF:") => 5,
        Format::Classic => 4,
        Format::Compact => 1,
        _ => 0,
    };
    unit.get(skip..).unwrap_or(unit)
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        _now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        match frame::split(buf, self.max_frame, self.udp) {
            Split::Incomplete => {
                if self.udp
                    && buf
                        .iter()
                        .any(|&b| !matches!(b, b'\r' | b'\n' | 0 | b' ' | b'\t'))
                {
                    return DecodeError::datagram_leftover(buf, "message");
                }
                Ok(None)
            }
            Split::Skip(n, why) => {
                buf.advance(n.min(buf.len()));
                Err(self.framing_error(n, why))
            }
            Split::Unit {
                format,
                start,
                end,
                consumed,
            } => {
                let bytes = buf.split_to(consumed.min(buf.len())).freeze();
                let unit = bytes.get(start..end).unwrap_or_default();
                self.handle(format, unit).map(Some)
            }
        }
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn encode_command(&mut self, req: &CommandRequest) -> Result<Bytes, CommandError> {
        let password = match self.password {
            Some(p) => Some(p.to_string()),
            None => self.model.map(Model::default_password),
        };
        let target = command::Target {
            model: self.model,
            password: password.as_deref(),
            pro: self.pro,
        };
        let serial = self.next_serial;
        let out = command::encode(req, &target, serial)?;
        if out.serial == Some(serial) {
            self.next_serial = self.next_serial.wrapping_add(1);
        }
        self.last_serial = out.serial;
        Ok(out.bytes)
    }

    /// Answers echo the command's serial.
    fn last_command_tag(&self) -> Option<u32> {
        self.last_serial.map(u32::from)
    }
}

#[cfg(test)]
mod tests;
