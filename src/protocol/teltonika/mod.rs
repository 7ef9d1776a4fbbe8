//! Teltonika: TCP (IMEI login, then Codec 8 / 8E / 16 frames and Codec 12/13/14 command
//! traffic) and UDP (self-contained datagrams carrying the IMEI).
//!
//! - `frame`: login, envelope, CRC, UDP header, ACKs.
//! - `avl`: the telemetry codecs (Codec 8, 8E, 16).
//! - `mapping`: records onto the vocabulary (the device profiles).
//! - `command`: Codec 12/13/14.

pub mod avl;
pub mod command;
pub mod frame;
pub mod mapping;
pub mod samples;
pub mod sim;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::event::{raw, timestamp_secs};
use crate::proto::{EventKind, Protocol, TelemetryEvent, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::{
    digest, Action, AnswerOutcome, CommandAnswer, CommandError, CommandRequest, DecodeError,
    ErrorKind, Frame, Probe, ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::{Profile, ProfileCache};

use frame::Split;

/// Which codec commands are sent in.
const COMMAND_CODEC: &str = "command_codec";

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        16 * 1024,
        "largest TCP frame (preamble to CRC) or UDP datagram accepted",
    ),
    settings::IDLE_TIMEOUT,
    Setting {
        key: COMMAND_CODEC,
        kind: SettingKind::Choice {
            default: "12",
            choices: &["12", "14"],
        },
        doc:
            "commands as Codec 12, or Codec 14 addressed to the device's IMEI (FMB firmware 03.25+)",
    },
];

static SIMULATORS: &[Simulator] = &[
    Simulator {
        name: "teltonika8",
        doc: "Teltonika FMB device, Codec 8",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::Teltonika::new(imei, avl::Codec::C8, udp)),
    },
    Simulator {
        name: "teltonika8e",
        doc: "Teltonika FMB device, Codec 8 Extended",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::Teltonika::new(imei, avl::Codec::C8E, udp)),
    },
    Simulator {
        name: "teltonika16",
        doc: "Teltonika FMB device, Codec 16",
        transports: &[Transport::Tcp, Transport::Udp],
        make: |imei, udp| Box::new(sim::Teltonika::new(imei, avl::Codec::C16, udp)),
    },
];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Teltonika,
    name: "teltonika",
    describe:
        "IMEI login, Codec 8, 8 Extended, 16 (CRC-16 checked), Codec 12/13/14 command traffic",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session,
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply,
    // Codec 12 over UDP: Teltonika lists "SMS over GPRS via UDP" in the base firmware of its
    // FMB devices.
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// Detection: a TCP login, or a whole UDP datagram.
fn probe(prefix: &[u8], transport: Transport) -> Probe {
    match transport {
        // `00 <len>` then ASCII digits.
        Transport::Tcp => match frame::split_login(prefix) {
            Ok(Split::Complete(..)) => Probe::Yes,
            Ok(Split::Incomplete) if prefix.len() > 2 => Probe::Yes,
            Ok(Split::Incomplete) => Probe::NeedMore,
            Err(_) => Probe::No,
        },
        // A UDP datagram is whole: its length field and header must hold.
        _ => match frame::parse_udp(prefix) {
            Ok(_) => Probe::Yes,
            Err(_) => Probe::No,
        },
    }
}

fn new_session(transport: Transport, config: &ProtocolConfig) -> Box<dyn ProtocolSession> {
    let s = config.settings(MODULE.name);
    Box::new(Session {
        udp: transport == Transport::Udp,
        max_frame_bytes: s.max_frame_bytes(),
        imei: None,
        codec14_commands: s.choice(COMMAND_CODEC) == "14",
        next_packet_id: 1,
        profile: ProfileCache::new(config.profiles.clone(), Protocol::Teltonika),
    })
}

/// The login answer `0x00` (TCP); UDP has no login answer.
fn login_rejected_reply(transport: Transport) -> Option<Bytes> {
    (transport == Transport::Tcp).then(|| Bytes::from_static(&[0x00]))
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_frame_bytes: usize,
    imei: Option<String>,
    codec14_commands: bool,
    /// Packet id of the next command datagram (UDP).
    next_packet_id: u16,
    /// The device's profile (by IMEI), re-resolved when the profile file is reloaded.
    profile: ProfileCache,
}

impl Session {
    fn decode_tcp(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if self.imei.is_none() {
            return match frame::split_login(buf) {
                Ok(Split::Incomplete) => Ok(None),
                Ok(Split::Complete(imei, n)) => {
                    let imei = String::from_utf8_lossy(imei).into_owned();
                    buf.advance(n);
                    self.imei = Some(imei.clone());
                    Ok(Some(Frame {
                        reply: Some(Bytes::from_static(&[0x01])),
                        login: Some(imei),
                        ..Default::default()
                    }))
                }
                Err(why) => Err(
                    DecodeError::new(ErrorKind::LoginRejected, Action::Close, why)
                        .with_reply(Bytes::from_static(&[0x00])),
                ),
            };
        }
        // Some firmware sends a lone 0xFF as a keep-alive between frames: no reply.
        if buf.first() == Some(&0xFF) {
            buf.advance(1);
            return Ok(Some(Frame::default()));
        }
        let (data, total) = match frame::split_tcp(buf, self.max_frame_bytes) {
            Ok(Split::Incomplete) => return Ok(None),
            Ok(Split::Complete(f, total)) if f.crc_ok => (f.data, total),
            Ok(Split::Complete(f, total)) => {
                let detail = format!("CRC mismatch over {} data bytes", f.data.len());
                buf.advance(total);
                return Err(DecodeError::new(
                    ErrorKind::BadChecksum,
                    Action::Continue,
                    detail,
                ));
            }
            Err(e @ frame::FramingError::BadLength(..)) => {
                return Err(DecodeError::new(
                    ErrorKind::TooLarge,
                    Action::Close,
                    e.to_string(),
                ))
            }
            Err(e) => {
                return Err(DecodeError::new(
                    ErrorKind::Malformed,
                    Action::Close,
                    e.to_string(),
                ))
            }
        };
        let result = decode_data(data, None, self.profile.get(self.imei.as_deref()));
        buf.advance(total);
        result.map(Some)
    }

    fn decode_udp(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if buf.len() > self.max_frame_bytes {
            buf.clear();
            return Err(DecodeError::new(
                ErrorKind::TooLarge,
                Action::Continue,
                "datagram exceeds the frame cap",
            ));
        }
        let result = match frame::parse_udp(buf) {
            Ok(d) => {
                // The datagram's IMEI counts only once its data decoded: a broken datagram
                // must not leave it as this peer's device without a login being reported.
                let new = self.imei.as_deref() != Some(d.imei);
                let imei = d.imei;
                let profile = self.profile.get(Some(imei));
                decode_data(d.data, Some((d.packet_id, d.avl_packet_id)), profile).map(|mut f| {
                    if new {
                        self.imei = Some(imei.to_string());
                        f.login = Some(imei.to_string());
                    }
                    f
                })
            }
            Err(why) => Err(DecodeError::new(
                ErrorKind::BadLength,
                Action::Continue,
                why,
            )),
        };
        buf.clear();
        result.map(Some)
    }
}

/// Decodes the data part (codec id ..) of a TCP frame or UDP datagram. `udp` carries the
/// datagram's packet ids, which the ACK echoes.
fn decode_data(
    data: &[u8],
    udp: Option<(u16, u8)>,
    profile: &Profile,
) -> Result<Frame, DecodeError> {
    let codec_id = data.first().copied().unwrap_or_default();
    let digest = digest(Protocol::Teltonika, &[data]);
    if avl::Codec::from_id(codec_id).is_some() {
        let (_, records) = avl::parse(data)
            .map_err(|e| DecodeError::new(ErrorKind::Malformed, Action::Continue, e.to_string()))?;
        let count = records.len();
        let reply = match udp {
            None => frame::tcp_ack(count as u32),
            Some((packet_id, avl_id)) => frame::udp_ack(packet_id, avl_id, count as u8),
        };
        return Ok(Frame {
            events: records
                .iter()
                .map(|r| mapping::to_event(r, profile))
                .collect(),
            digest,
            reply: Some(reply),
            ..Default::default()
        });
    }
    // Command traffic: over TCP in the TCP envelope, over UDP in the UDP channel header like
    // AVL data (the device's answers to commands sent over UDP). Neither is acknowledged.
    if matches!(codec_id, 0x0C..=0x0E) {
        let msg = command::parse(data).map_err(|e| {
            let kind = match e {
                command::ParseError::UnknownType { .. } => ErrorKind::Unsupported,
                command::ParseError::Malformed(_) => ErrorKind::Malformed,
            };
            DecodeError::new(kind, Action::Continue, e.to_string())
        })?;
        let Some((event, answer)) = command_event(msg) else {
            return Ok(Frame {
                digest,
                ..Default::default()
            });
        };
        return Ok(Frame {
            events: vec![event],
            digest,
            answers: answer.into_iter().collect(),
            ..Default::default()
        });
    }
    Err(DecodeError::new(
        ErrorKind::Unsupported,
        Action::Continue,
        format!("codec {codec_id:#04x} is not supported"),
    ))
}

/// Command-codec traffic from the device: a COMMAND_RESPONSE event carrying the answer as
/// `text` (raw: `codec`, and for Codec 14 the `addressed_imei` and `nack`), and the typed
/// answer for the command tracker. Answers come back in order, so they carry no tag.
fn command_event(msg: command::Message) -> Option<(TelemetryEvent, Option<CommandAnswer>)> {
    let mut e = TelemetryEvent {
        protocol: Protocol::Teltonika as i32,
        kind: EventKind::CommandResponse as i32,
        ..Default::default()
    };
    let text = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
    let outcome = match msg {
        command::Message::Response { text: t } => {
            e.raw.push(raw::uint("codec", 12));
            AnswerOutcome::Text(text(&t))
        }
        command::Message::Timestamped {
            timestamp_secs: ts,
            text: t,
        } if mapping::serial_line(&t).is_some() => {
            // Not a command answer: a reader on the serial port reporting through Codec 13.
            return mapping::serial_line(&t).map(|mut e| {
                e.device_time = Some(timestamp_secs(ts.into()));
                (e, None)
            });
        }
        command::Message::Timestamped {
            timestamp_secs: ts,
            text: t,
        } => {
            e.raw.push(raw::uint("codec", 13));
            e.device_time = Some(timestamp_secs(ts.into()));
            AnswerOutcome::Text(text(&t))
        }
        command::Message::AddressedResponse { imei, text: t } => {
            e.raw.push(raw::uint("codec", 14));
            e.raw.push(raw::string("addressed_imei", imei));
            AnswerOutcome::Text(text(&t))
        }
        command::Message::AddressedNack { imei } => {
            e.raw.push(raw::uint("codec", 14));
            e.raw.push(raw::string("addressed_imei", imei));
            e.raw.push(raw::uint("nack", 1));
            AnswerOutcome::Refused(
                "the device refused the command (Codec 14 nACK: IMEI mismatch)".into(),
            )
        }
        command::Message::Command { .. } => return None,
    };
    if let AnswerOutcome::Text(t) = &outcome {
        e.text = Some(t.clone());
    }
    Some((e, Some(CommandAnswer { tag: None, outcome })))
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        _now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        if self.udp {
            self.decode_udp(buf)
        } else {
            self.decode_tcp(buf)
        }
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    /// Typed commands become the SMS/GPRS command texts of FMB devices (see [`command::text`]);
    /// the text goes as Codec 12 (or Codec 14, addressed to the IMEI) in the TCP envelope,
    /// or over UDP in the UDP channel header, as the device's own datagrams come.
    fn encode_command(&mut self, request: &CommandRequest) -> Result<Bytes, CommandError> {
        let text = command::text(request)?;
        if text.is_empty() || text.len() > self.max_frame_bytes.saturating_sub(40) {
            return Err(CommandError::Invalid(
                "command text is empty or longer than the frame cap".into(),
            ));
        }
        let data = if self.codec14_commands {
            let imei = self.imei.as_deref().ok_or(CommandError::Invalid(
                "Codec 14 needs the device's IMEI".into(),
            ))?;
            command::encode_codec14(0x05, imei, &text)
                .ok_or_else(|| CommandError::Invalid("IMEI not encodable for Codec 14".into()))?
        } else {
            command::encode_codec12(0x05, &text)
        };
        if !self.udp {
            return Ok(frame::encode_tcp(&data).into());
        }
        let imei = self.imei.as_deref().ok_or(CommandError::Invalid(
            "a UDP command needs the device's IMEI".into(),
        ))?;
        let packet_id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1);
        Ok(frame::encode_udp(packet_id, packet_id as u8, imei, &data).into())
    }
}

#[cfg(test)]
mod tests;
