//! Concox GT06 family (GT06N, WeTrack140, GT800, JM/VL series, GK310, AZ735 and clones):
//! binary frames `78 78` (u8 length) and `79 79` (u16 length) over TCP and UDP.
//!
//! - `frame`: framing, CRC-ITU, resynchronisation, reply frames.
//! - `block`: shared blocks (date-time, GPS, cells, terminal info, alarms).
//! - `packet`: dispatch and the GPS/LBS/status family.
//! - `lbs`: multi-cell and Wi-Fi packets.
//! - `info`: information transmission, time calibration, address requests.
//! - `command`: online commands and their replies.
//! - `mapping`: the raw names and the device profiles that map them onto the vocabulary.
//! - `ext`: model-specific packets (modular `0x70`, dash-camera alarms `0x95`, pass-through
//!   `0x9B`, `0x36`, X1 `0x34`, AZ735 `79 79` `0x32`/`0x33`, `0x38`, OBD `0x8C`, and the
//!   LW4G/SR411/QH302R/RFID/GL21L forms of common numbers, told apart by length).
//!
//! # Replies
//!
//! Every packet is answered in the framing it came in (`78 78` or `79 79`) with its protocol
//! number and serial, except: `0x94`, `0x21`, `0x9B`, `0x34` and `0x8C` (the device expects
//! nothing), device echoes of server types `0x80..=0x82` (never acknowledge a command),
//! `0x70` (always answered in the basic `78 78` framing, as the deployed servers do), `0x8A`
//! (the current UTC time), address requests (a neutral `0x97` address reply, see
//! [`info::NEUTRAL_ADDRESS`]) and the CRC-less Wi-Fi form (the time echoed back in the same
//! CRC-less form). Unknown types get the standard ACK, as the family's servers do, and are
//! published as kind UNKNOWN.

pub mod block;
pub mod command;
pub mod ext;
pub mod frame;
pub mod info;
pub mod lbs;
pub mod mapping;
pub mod packet;
pub mod sim;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::{Protocol, Transport};
use crate::protocol::settings;
use crate::protocol::{
    digest, no_reply, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame, Probe,
    ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::ProfileCache;

use frame::{RawFrame, Reject, Split};

/// Login protocol number.
pub const LOGIN: u8 = 0x01;

const NAME: &str = "gt06";

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(4 * 1024, "largest frame, start bits to stop bits"),
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[Simulator {
    name: "gt06",
    doc: "Concox GT06 device, 0x22 GPS+LBS packets",
    transports: &[Transport::Tcp, Transport::Udp],
    make: |imei, _udp| Box::new(sim::Gt06::new(imei)),
}];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Gt06,
    name: NAME,
    describe: "login, GPS/LBS/status/alarm/Wi-Fi packets and model variants, `78 78` and `79 79` framing with CRC-ITU",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    command_transports: &[Transport::Tcp],
};

/// Detection: `78 78` or `79 79`; the first byte alone could still be either. The same holds
/// for a UDP datagram, which must start with a frame.
fn probe(prefix: &[u8], _transport: Transport) -> Probe {
    match prefix {
        [] => Probe::NeedMore,
        [0x78] | [0x79] => Probe::NeedMore,
        [0x78, 0x78, ..] | [0x79, 0x79, ..] => Probe::Yes,
        _ => Probe::No,
    }
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_frame_bytes: usize,
    imei: Option<String>,
    /// Serial of the next frame the server originates (commands).
    next_serial: u16,
    /// Server flag of the next online command.
    next_flag: u32,
    last_flag: Option<u32>,
    /// The device's profile (by IMEI), re-resolved when the profile file is reloaded.
    profile: ProfileCache,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let settings = config.settings(NAME);
        Session {
            udp: transport == Transport::Udp,
            // A frame needs at least its header, protocol, serial, CRC and stop bits.
            max_frame_bytes: settings.max_frame_bytes().max(16),
            imei: None,
            next_serial: 1,
            next_flag: 1,
            last_flag: None,
            profile: ProfileCache::new(config.profiles.clone(), Protocol::Gt06),
        }
    }

    /// The server flag of the last command [`ProtocolSession::encode_command`] built: the
    /// device echoes it in its `0x15`/`0x21` reply (the answer's tag).
    pub fn last_server_flag(&self) -> Option<u32> {
        self.last_flag
    }

    fn login(&mut self, f: &RawFrame) -> Result<Frame, DecodeError> {
        let imei = parse_imei(&f.content).ok_or_else(|| {
            // The device cannot be identified: nothing it sends can be attributed.
            DecodeError::new(
                ErrorKind::LoginRejected,
                Action::Close,
                "login IMEI is not 8 bytes of BCD digits",
            )
        })?;
        self.imei = Some(imei.clone());
        Ok(Frame {
            events: Vec::new(),
            digest: digest(Protocol::Gt06, &[imei.as_bytes(), &content_of(f)]),
            reply: Some(frame::ack(f.extended, LOGIN, f.serial)),
            login: Some(imei),
            ..Default::default()
        })
    }
}

/// Protocol number + content: what the digest covers (the serial is left out so a resent
/// packet, which may get a new serial, gives the same event ids).
fn content_of(f: &RawFrame) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + f.content.len());
    v.push(f.protocol);
    v.extend_from_slice(&f.content);
    v
}

/// The login IMEI: 8 bytes BCD, 16 digits of which the first is a pad `0`. Devices with a
/// 16-digit identifier (no pad) keep all 16.
fn parse_imei(content: &[u8]) -> Option<String> {
    let bcd = content.get(..8)?;
    let mut s = String::with_capacity(16);
    for n in bcd.iter().flat_map(|b| [b >> 4, b & 0x0F]) {
        if n > 9 {
            return None;
        }
        s.push(char::from(b'0' + n));
    }
    Some(match s.strip_prefix('0') {
        Some(t) => t.to_string(),
        None => s,
    })
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        let result = match frame::split(buf, self.max_frame_bytes) {
            Split::Incomplete => {
                if self.udp {
                    return DecodeError::datagram_leftover(buf, "frame");
                }
                return Ok(None);
            }
            Split::Skip(n, why) => {
                buf.advance(n.min(buf.len()));
                let (kind, detail) = match why {
                    Reject::Garbage => (
                        ErrorKind::Malformed,
                        format!("skipped {n} bytes before the next start bits"),
                    ),
                    Reject::BadChecksum => (
                        ErrorKind::BadChecksum,
                        format!("CRC mismatch in a {n}-byte frame; not acknowledged"),
                    ),
                    Reject::BadLength => (
                        ErrorKind::BadLength,
                        "length does not land on stop bits; resynchronising".to_string(),
                    ),
                    Reject::TooLarge => (
                        ErrorKind::TooLarge,
                        format!(
                            "length exceeds the {}-byte frame cap; resynchronising",
                            self.max_frame_bytes
                        ),
                    ),
                };
                // Every framing problem is recoverable: the next start bits resynchronise.
                return Err(DecodeError::new(kind, Action::Continue, detail));
            }
            Split::Frame(f, total) => {
                buf.advance(total.min(buf.len()));
                f
            }
        };
        let f = result;
        if f.protocol == LOGIN && f.wifi_count.is_none() {
            return self.login(&f).map(Some);
        }
        let Some(imei) = self.imei.as_deref() else {
            // Not closed: a device that reconnects may flush queued packets before its login
            // on some firmware; it gets no ACK (so it keeps them) and can still log in on this
            // connection. Closing would only start a reconnect loop.
            return Err(DecodeError::new(
                ErrorKind::NotLoggedIn,
                Action::Continue,
                format!("packet {:#04x} before login; not acknowledged", f.protocol),
            ));
        };
        let digest = digest(Protocol::Gt06, &[imei.as_bytes(), &content_of(&f)]);
        let mut decoded = packet::decode(&f, now);
        let profile = self.profile.get(Some(imei));
        for e in &mut decoded.events {
            mapping::apply(e, profile);
        }
        Ok(Some(Frame {
            events: decoded.events,
            digest,
            reply: decoded.reply,
            answers: decoded.answers,
            ..Default::default()
        }))
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    /// The server flag of the last online command: the device echoes it in its answer.
    fn last_command_tag(&self) -> Option<u32> {
        self.last_server_flag()
    }

    /// An online command (`0x80`) with a fresh server flag, its text from
    /// [`command::text`] (typed commands) or the CUSTOM text.
    fn encode_command(&mut self, request: &CommandRequest) -> Result<Bytes, CommandError> {
        let text = command::text(request)?;
        let flag = self.next_flag;
        let out = command::encode_online(&text, flag, self.next_serial)?;
        self.next_flag = self.next_flag.wrapping_add(1);
        self.next_serial = self.next_serial.wrapping_add(1);
        self.last_flag = Some(flag);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
