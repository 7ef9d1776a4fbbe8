//! Wialon Retranslator 1.0, inbound: a Wialon server pushes the messages of the units it
//! retranslates over one TCP connection, each as a binary packet that names its unit.
//!
//! - `frame`: where a packet ends (the little-endian size field) and the cap.
//! - `packet`: the unit id, time, flags and typed data blocks; written back too.
//! - `mapping`: packets onto events and the vocabulary (the Wialon IPS rules plus the
//!   Retranslator's own names).
//! - `sim`: a Wialon server relaying one unit.
//!
//! This module is the session.
//!
//! # Conventions
//!
//! - **One connection, many devices.** Every packet names its unit and the unit id is the
//!   device id, so each frame carries it in [`Frame::relayed`], never in `Frame::login`: the
//!   connection has no identity of its own. The session layer checks each unit against the
//!   allow-list for that frame, stamps the events with it, and neither registers a session
//!   for it (the unit's own tracker may be connected directly, and must not be replaced by
//!   the relay nor replace it) nor routes commands to it. [`ProtocolSession::imei`] is
//!   therefore always `None`.
//! - **Every packet is answered `0x11`, after delivery** (Traccar writes it before parsing;
//!   here it rides on the frame, so the session writes it once the broker confirmed). A packet
//!   of a unit that is not allowed is answered too, its records dropped: the sender waits for
//!   the answer before the next packet, so holding it back would stall every other unit.
//! - **A packet that names its unit but cannot be read** (a block that runs past the packet,
//!   a value of the wrong size for its data type, a block type other than `0x0BBB`) is
//!   published as one UNKNOWN event carrying its bytes and answered: Wialon would resend it
//!   unchanged forever. A packet without a NUL-terminated unit id belongs to no device: it is
//!   a [`DecodeError`] (counted and logged) answered `0x11` for the same reason.
//! - **Framing errors close the connection:** a size below the smallest packet, or a packet
//!   over `max_frame_bytes` (raise the cap; Wialon resends it on the next connection).
//! - **No commands:** the protocol has none.

pub mod frame;
pub mod mapping;
pub mod packet;
pub mod sim;

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use crate::proto::{Protocol, Transport};
use crate::protocol::settings;
use crate::protocol::{
    digest, no_reply, Action, CommandError, CommandRequest, DecodeError, ErrorKind, Frame, Probe,
    ProtocolConfig, ProtocolModule, ProtocolSession, Setting, Simulator,
};
use crate::vocab::ProfileCache;

const NAME: &str = "wialon_retranslator";

/// The answer to every packet.
pub const ACK: u8 = 0x11;

/// A packet may carry images (binary blocks), hence more room than trackers' frames.
const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Longest unit id detection waits for: the id, its NUL, time, flags and the first block's
/// type must fit in [`crate::protocol::detect::MAX_DETECT_BYTES`].
const MAX_PROBE_ID: usize = 48;

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        DEFAULT_MAX_FRAME_BYTES as u64,
        "largest packet, size field included (blocks may carry images)",
    ),
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[Simulator {
    name: "wialon_retranslator",
    doc: "Wialon server retranslating one unit (posinfo, power, inputs, ignition)",
    transports: &[Transport::Tcp],
    make: |imei, _udp| Box::new(sim::Retranslator::new(imei)),
}];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::WialonRetranslator,
    name: NAME,
    describe: "1.0, inbound from a Wialon server: many units on one connection (each unit is a device), typed blocks, `posinfo`, `0x11` after delivery; no commands",
    transports: &[Transport::Tcp],
    // TCP only.
    probe: |prefix, transport| match transport {
        Transport::Tcp => probe(prefix),
        _ => Probe::No,
    },
    settings: SETTINGS,
    new_session: |_, config| Box::new(Session::new(config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // A relay connection carries many units one way: none takes commands through it.
    command_transports: &[],
};

/// Detection: a plausible size, then a printable unit id and its NUL, then time and flags,
/// then the first block's `0B BB` (or the packet ends there).
///
/// Nothing else on the shared port looks like this. The size is little-endian and at most
/// the default cap (1 MiB), so byte 3 is `00` and byte 2 at most `10`: a Teltonika login
/// (`00 0F` + IMEI digits) or any text protocol fails there, Teltonika data (`00 00 00 00`)
/// fails the smallest size. Binary protocols whose first four bytes pass (a JT/T 808
/// `7E 02 00 00`, say) fail on the id, which must be graphic ASCII up to a NUL, and at
/// the latest on `0B BB`, which BCD and the other protocols' headers do not produce there.
/// The probe answers `Yes` only on a complete header, so it never claims a prefix another
/// protocol could still take. `probe` has no settings: a first packet over the default cap
/// is not recognised even where the configured cap allows it.
pub fn probe(prefix: &[u8]) -> Probe {
    // The smallest size the known bytes allow already over the cap: not this protocol.
    let least = prefix
        .iter()
        .take(frame::SIZE_LEN)
        .rev()
        .fold(0u64, |a, &b| a << 8 | u64::from(b));
    if least > DEFAULT_MAX_FRAME_BYTES as u64 {
        return Probe::No;
    }
    let Some(size) = frame::declared_size(prefix) else {
        return Probe::NeedMore;
    };
    if size < frame::MIN_SIZE {
        return Probe::No;
    }
    let id_and_rest = prefix.get(frame::SIZE_LEN..).unwrap_or_default();
    let id_len = match id_and_rest.iter().position(|&b| !b.is_ascii_graphic()) {
        Some(n) if n > 0 && n <= MAX_PROBE_ID && id_and_rest.get(n) == Some(&0) => n,
        Some(_) => return Probe::No,
        None if id_and_rest.len() <= MAX_PROBE_ID => return Probe::NeedMore,
        None => return Probe::No,
    };
    // Unit id, NUL, time, flags.
    let header = id_len + 1 + 8;
    let size = size as usize;
    if size < header {
        return Probe::No;
    }
    let after = id_and_rest.get(header..).unwrap_or_default();
    if size == header {
        // A packet without blocks: whole once the header is in.
        return if id_and_rest.len() >= header {
            Probe::Yes
        } else {
            Probe::NeedMore
        };
    }
    // A block is at least its type, size, hidden byte, data type and the name's NUL.
    if size < header + 9 {
        return Probe::No;
    }
    match after {
        [0x0B, 0xBB, ..] => Probe::Yes,
        [0x0B] | [] => Probe::NeedMore,
        _ => Probe::No,
    }
}

/// Per-connection state.
pub struct Session {
    max_frame: usize,
    /// The profile of the unit of the packet in hand, re-resolved when the unit (or the
    /// profile file) changes.
    profile: ProfileCache,
}

impl Session {
    pub fn new(config: &ProtocolConfig) -> Self {
        Session {
            max_frame: config.settings(NAME).max_frame_bytes(),
            profile: ProfileCache::new(config.profiles.clone(), Protocol::WialonRetranslator),
        }
    }
}

fn ack() -> Bytes {
    Bytes::from_static(&[ACK])
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        _now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        let total = match frame::split(buf, self.max_frame) {
            Ok(None) => return Ok(None),
            Ok(Some(n)) => n,
            Err(e) => {
                let kind = match e {
                    frame::FrameError::TooSmall(_) => ErrorKind::BadLength,
                    frame::FrameError::TooLarge { .. } => ErrorKind::TooLarge,
                };
                return Err(DecodeError::new(kind, Action::Close, e.to_string()));
            }
        };
        let bytes = buf.split_to(total).freeze();
        let body = bytes.get(frame::SIZE_LEN..).unwrap_or_default();
        let Some(unit) = packet::unit(body) else {
            return Err(DecodeError::new(
                ErrorKind::Malformed,
                Action::Continue,
                "packet without a NUL-terminated unit id: no device to publish it for",
            )
            .with_reply(ack()));
        };
        // A unit id that is not a valid device id is refused by the session layer (and
        // counted there); the lossy text keeps it visible in its log.
        let unit = String::from_utf8_lossy(unit).into_owned();
        let event = match packet::parse(body) {
            Ok(p) => mapping::to_event(&p, self.profile.get(Some(&unit))),
            Err(e) => mapping::unknown_event(&bytes, &e.to_string()),
        };
        Ok(Some(Frame {
            events: vec![event],
            // The packet names its unit, time and values: a resent packet digests alike.
            digest: digest(Protocol::WialonRetranslator, &[body]),
            reply: Some(ack()),
            relayed: Some(unit),
            ..Default::default()
        }))
    }

    /// A relay connection has no identity: each frame names its unit ([`Frame::relayed`]).
    fn imei(&self) -> Option<&str> {
        None
    }

    fn encode_command(&mut self, command: &CommandRequest) -> Result<Bytes, CommandError> {
        Err(CommandError::UnsupportedType(format!(
            "Wialon Retranslator carries no commands (a Wialon server relays its units' messages one way), not {}",
            command.type_name()
        )))
    }

    fn command_answered(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
