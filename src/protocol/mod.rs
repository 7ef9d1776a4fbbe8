//! Sans-IO wire protocols: bytes in, frames, events and exact reply bytes out.
//!
//! Nothing under `protocol/` touches a socket, a clock or a runtime: the session layer
//! (`crate::session`) feeds bytes and the current time, publishes the events a frame produced,
//! and writes the frame's reply only after the sink confirmed delivery.
//!
//! # Adding a protocol
//!
//! A protocol is one folder, `src/protocol/<name>/`, and one line in [`REGISTRY`] (plus its
//! value of the schema's `Protocol` enum). The folder's `pub static MODULE:`
//! [`ProtocolModule`], plain data, declares everything the rest of the gateway reads from the
//! registry:
//!
//! - its name, transports and detector ([`ProtocolModule::probe`], tested at every prefix);
//! - its settings ([`settings`]: frame cap, idle timeout and its own knobs), which
//!   configuration, `avlgate protocols` (the README's settings table) and the Helm chart's
//!   `protocols` values take from here;
//! - its sans-IO session ([`ProtocolSession`]: framing, parsing, exact replies, typed command
//!   answers on the [`Frame`]);
//! - its commands: the one entry point [`ProtocolSession::encode_command`] takes the one
//!   request type [`CommandRequest`] (every `CommandType`, CUSTOM text or bytes) and writes it
//!   or refuses it with [`CommandError::UnsupportedType`] (REJECTED, never written), and
//!   [`ProtocolModule::command_transports`] says on which transports its devices take them.
//!   It lives on the session, reached through [`ProtocolModule::new_session`], because
//!   encoding needs the session's state (the device's id, a tag or serial counter, the
//!   transport's form); `command_tests.rs` checks every registered protocol against it;
//! - its built-in device profiles (`mapping.rs`: its values onto the vocabulary);
//! - its simulator devices ([`sim`]: `avlgate simulate`, the benchmarks, end-to-end tests).
//!
//! The property tests (`tests/props`), the fuzz target `session` and the benchmarks' whole
//! path run over every registered protocol.

pub mod catalog;
pub mod civil;
pub mod crc;
pub mod cursor;
pub mod detect;
pub mod gps103;
pub mod gt06;
pub mod h02;
pub mod jt808;
pub mod meitrack;
pub mod queclink;
pub mod settings;
pub mod sim;
pub mod teltonika;
pub mod wialon;
pub mod wialon_retranslator;

#[cfg(test)]
mod command_tests;

use std::time::SystemTime;

use bytes::{Bytes, BytesMut};

use crate::proto::{Protocol, TelemetryEvent, Transport};

pub use settings::{ProtocolConfig, ProtocolSettings, Setting};
pub use sim::Simulator;

/// Every protocol the gateway speaks, in detection order.
pub static REGISTRY: &[&ProtocolModule] = &[
    &teltonika::MODULE,
    &gps103::MODULE,
    &wialon::MODULE,
    &gt06::MODULE,
    &jt808::MODULE,
    // Before H02: Meitrack claims `$$` followed by its flag and length digits.
    &meitrack::MODULE,
    &h02::MODULE,
    &queclink::MODULE,
    // Last: it claims only a complete header that no other protocol starts with.
    &wialon_retranslator::MODULE,
];

/// Looks a protocol up by its schema enum.
pub fn module(protocol: Protocol) -> Option<&'static ProtocolModule> {
    REGISTRY.iter().copied().find(|m| m.protocol() == protocol)
}

/// Looks a protocol up by its name.
pub fn module_named(name: &str) -> Option<&'static ProtocolModule> {
    REGISTRY.iter().copied().find(|m| m.name() == name)
}

/// A simulator variant by name, with its protocol.
pub fn simulator(name: &str) -> Option<(&'static ProtocolModule, &'static Simulator)> {
    REGISTRY
        .iter()
        .flat_map(|m| m.simulators().iter().map(move |s| (*m, s)))
        .find(|(_, s)| s.name == name)
}

/// The short name of a protocol (`teltonika`, `wialon`, `gt06`), as the registry knows it;
/// `unknown` for anything else. Used for metric labels and message headers.
pub fn protocol_name(p: Protocol) -> &'static str {
    module(p).map_or("unknown", |m| m.name())
}

/// A protocol's entry in the registry: everything the gateway needs to know about it. Each
/// protocol folder declares one, as data (`pub static MODULE: ProtocolModule`), and the rest of
/// the gateway reads it through these methods.
pub struct ProtocolModule {
    /// The schema enum value for this protocol.
    pub(crate) protocol: Protocol,
    /// Short lower-case name used in logs, metric labels, settings and the CLI.
    pub(crate) name: &'static str,
    /// One line for the README's protocol table.
    pub(crate) describe: &'static str,
    /// The transports the protocol has.
    pub(crate) transports: &'static [Transport],
    /// Looks at the first bytes of a TCP stream or of a UDP datagram (`prefix` is the whole
    /// datagram for UDP).
    pub(crate) probe: fn(prefix: &[u8], transport: Transport) -> Probe,
    /// The protocol's settings, with defaults (at least `max_frame_bytes` and
    /// `idle_timeout_secs`; see [`settings`]).
    pub(crate) settings: &'static [Setting],
    /// A fresh per-connection (TCP) or per-peer (UDP) decoder state.
    pub(crate) new_session: fn(Transport, &ProtocolConfig) -> Box<dyn ProtocolSession>,
    /// The protocol's simulator devices (`avlgate simulate --protocol <name>`).
    pub(crate) simulators: &'static [Simulator],
    /// The protocol's built-in device profiles (its `mapping.rs`): how its values map onto the
    /// vocabulary. The first is the default for devices no operator profile names.
    pub(crate) profiles: fn() -> Vec<crate::vocab::Profile>,
    /// What the device gets when the gateway refuses its login (the IMEI allow-list) before
    /// the connection is closed. `None`: close without a reply ([`no_reply`]).
    pub(crate) login_rejected_reply: fn(Transport) -> Option<Bytes>,
    /// The transports on which the protocol's devices take commands: a UDP device takes
    /// commands only where its protocol defines server-to-device messages over UDP, which a
    /// protocol declares by listing UDP here (its sessions'
    /// [`ProtocolSession::encode_command`] then produces the UDP form, written to the address
    /// of the peer's latest datagram). Empty: the protocol takes no commands.
    pub(crate) command_transports: &'static [Transport],
}

/// The [`ProtocolModule::login_rejected_reply`] of protocols that close without a word.
pub(crate) fn no_reply(_: Transport) -> Option<Bytes> {
    None
}

impl ProtocolModule {
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    pub fn name(&self) -> &'static str {
        self.name
    }
    pub fn describe(&self) -> &'static str {
        self.describe
    }
    pub fn transports(&self) -> &'static [Transport] {
        self.transports
    }
    pub fn probe(&self, prefix: &[u8], transport: Transport) -> Probe {
        (self.probe)(prefix, transport)
    }
    pub fn settings(&self) -> &'static [Setting] {
        self.settings
    }
    pub fn new_session(
        &self,
        transport: Transport,
        config: &ProtocolConfig,
    ) -> Box<dyn ProtocolSession> {
        (self.new_session)(transport, config)
    }
    pub fn simulators(&self) -> &'static [Simulator] {
        self.simulators
    }
    pub fn profiles(&self) -> Vec<crate::vocab::Profile> {
        (self.profiles)()
    }
    pub fn login_rejected_reply(&self, transport: Transport) -> Option<Bytes> {
        (self.login_rejected_reply)(transport)
    }
    pub fn command_transports(&self) -> &'static [Transport] {
        self.command_transports
    }
}

/// What a protocol makes of the first bytes it is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// These bytes are this protocol.
    Yes,
    /// These bytes cannot be this protocol.
    No,
    /// Could be; show more bytes.
    NeedMore,
}

/// The per-connection decoder of one protocol.
pub trait ProtocolSession: Send + Sync + 'static {
    /// Decodes at most one frame from the front of `buf`, consuming its bytes.
    ///
    /// - `Ok(None)`: `buf` holds no complete frame yet; nothing was consumed.
    /// - `Ok(Some(frame))`: one frame was consumed.
    /// - `Err(e)`: a malformed frame. `e.action` says whether the connection can go on (the bad
    ///   frame's bytes were then consumed) and `e.reply` holds the protocol's negative reply.
    ///
    /// For UDP the session layer puts one whole datagram in `buf` and discards what is left
    /// after the last frame.
    fn decode(&mut self, buf: &mut BytesMut, now: SystemTime)
        -> Result<Option<Frame>, DecodeError>;

    /// The device's IMEI once it has identified itself.
    fn imei(&self) -> Option<&str>;

    /// Encodes a command for the device: the one entry point through which every protocol
    /// writes commands (typed or custom), with the session's state at hand (the device's id,
    /// a tag counter, the transport's form). A type the protocol cannot carry is
    /// [`CommandError::UnsupportedType`] with a reason that says so, and the command is
    /// REJECTED, never written. The default carries nothing.
    fn encode_command(&mut self, command: &CommandRequest) -> Result<Bytes, CommandError> {
        Err(CommandError::UnsupportedType(format!(
            "the device's protocol takes no commands, so not {}",
            command.type_name()
        )))
    }

    /// How the device's answer to the command last encoded is recognised: `Some(tag)` when the
    /// answer echoes a tag (GT06's server flag, [`CommandAnswer::tag`]), `None` when answers
    /// come back in order (Teltonika Codec 12).
    fn last_command_tag(&self) -> Option<u32> {
        None
    }

    /// Whether devices answer commands at all (Wialon's `#M#` gets no answer).
    fn command_answered(&self) -> bool {
        true
    }
}

/// A command to write to a device, as the session layer hands it to a protocol: the schema's
/// `CommandType` with its parameters checked. Each protocol encodes the types it can carry
/// and answers [`CommandError::UnsupportedType`] for the others (the command is then
/// REJECTED, never written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandRequest {
    /// CUSTOM, as text.
    Text(String),
    /// CUSTOM, as bytes.
    Payload(Bytes),
    EngineStop,
    EngineResume,
    /// Report one position now.
    PositionRequest,
    Reboot,
    /// Report every `seconds` (> 0).
    SetReportInterval {
        seconds: u32,
    },
    /// Switch digital output `index` (1 = the first) on or off.
    OutputSet {
        index: u8,
        on: bool,
    },
}

impl CommandRequest {
    /// The schema's name for the request's type (`ENGINE_STOP`), for rejection reasons.
    pub fn type_name(&self) -> &'static str {
        match self {
            CommandRequest::Text(_) | CommandRequest::Payload(_) => "CUSTOM",
            CommandRequest::EngineStop => "ENGINE_STOP",
            CommandRequest::EngineResume => "ENGINE_RESUME",
            CommandRequest::PositionRequest => "POSITION_REQUEST",
            CommandRequest::Reboot => "REBOOT",
            CommandRequest::SetReportInterval { .. } => "SET_REPORT_INTERVAL",
            CommandRequest::OutputSet { .. } => "OUTPUT_SET",
        }
    }

    /// The request a schema `Command` asks for; `Err` says why it is invalid.
    pub fn from_command(c: &crate::proto::Command) -> Result<CommandRequest, String> {
        use crate::proto::{command::Body, CommandType as T};
        let ty = T::try_from(c.r#type).map_err(|_| format!("unknown command type {}", c.r#type))?;
        Ok(match ty {
            T::Unspecified | T::Custom => match &c.body {
                Some(Body::Text(t)) => CommandRequest::Text(t.clone()),
                Some(Body::Payload(p)) => CommandRequest::Payload(p.clone().into()),
                None => return Err("a custom command needs `text` or `payload`".into()),
            },
            T::EngineStop => CommandRequest::EngineStop,
            T::EngineResume => CommandRequest::EngineResume,
            T::PositionRequest => CommandRequest::PositionRequest,
            T::Reboot => CommandRequest::Reboot,
            T::SetReportInterval => match c.report_interval_secs {
                0 => return Err("SET_REPORT_INTERVAL needs report_interval_secs > 0".into()),
                seconds => CommandRequest::SetReportInterval { seconds },
            },
            T::OutputSet => match u8::try_from(c.output_index) {
                Ok(index @ 1..) => CommandRequest::OutputSet {
                    index,
                    on: c.output_on,
                },
                _ => return Err("OUTPUT_SET needs output_index 1..=255".into()),
            },
        })
    }
}

/// Why a command could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// The protocol cannot carry this type (or this form: bytes, say); says what it can.
    #[error("{0}")]
    UnsupportedType(String),
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// Refuses a command text that a device could take for more than one line or that carries
/// invisible controls: every control character (C0 such as NUL, CR, LF, TAB; DEL; C1 such as
/// U+0085 NEXT LINE) and U+2028 / U+2029 (line / paragraph separators). Text protocols (Wialon
/// `#M#`, GT06 online commands) end a command at a line break, so one of these inside a text
/// would cut it or smuggle a second command; no device command needs them. Binary payloads go
/// as `payload`, not text.
pub fn check_command_text(text: &str) -> Result<(), CommandError> {
    match text
        .char_indices()
        .find(|(_, c)| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        None => Ok(()),
        Some((at, c)) => Err(CommandError::Invalid(format!(
            "command text holds the control character U+{:04X} at byte {at}",
            u32::from(c)
        ))),
    }
}

/// One decoded frame.
#[derive(Debug, Default)]
pub struct Frame {
    /// Events without their connection context: the session fills in `event_id`, `imei`,
    /// `transport`, `received_at`, `peer` and `gateway`. `protocol` and `kind` are set here.
    pub events: Vec<TelemetryEvent>,
    /// Bytes that identify this frame's content for deterministic event ids: a device that
    /// resends the frame must produce the same digest. See [`digest`].
    pub digest: u128,
    /// Bytes to send once every event is confirmed by the sink.
    pub reply: Option<Bytes>,
    /// Set when this frame identified the device (a login); the session then publishes a
    /// session-opened event and tags its span.
    pub login: Option<String>,
    /// Set by protocols whose connection carries many devices (a Wialon Retranslator server
    /// pushing every unit it relays): the device this frame's events belong to, which is not
    /// the connection's identity (`login` stays `None`). The session checks it against the
    /// allow-list for this frame only and stamps the events with it, but registers no session
    /// for it and routes no commands to it: the device's own connection, if any, is neither
    /// replaced by the relay nor replaces it. A refused device's events are dropped and the
    /// frame is still answered, so one refused device does not stall the others.
    pub relayed: Option<String>,
    /// Close the connection after the reply (a rejected login, say).
    pub close: bool,
    /// The device's answers to commands this frame carried, matched by the session's command
    /// tracker once the frame's events are delivered.
    pub answers: Vec<CommandAnswer>,
    /// Quirks of the device's input that the decoder tolerated because they have exactly one
    /// meaning (a number padded with spaces, say), one label per occurrence the protocol counts.
    /// Labels are `&'static str` from a fixed set per protocol, documented beside its parser;
    /// the session counts them in `avlgate_lenient_input_total{protocol,kind}`, so operators
    /// see which fleets send what. Empty for well-formed input.
    pub lenient: Vec<&'static str>,
}

/// A device's answer to a command, as typed data (the frame's events carry it too, for
/// consumers of the events topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAnswer {
    /// The tag the answer echoes (see [`ProtocolSession::last_command_tag`]); `None` when
    /// answers come back in order.
    pub tag: Option<u32>,
    pub outcome: AnswerOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// The device answered with text.
    Text(String),
    /// The device answered with bytes that are not text.
    Bytes(Vec<u8>),
    /// The device refused the command; says why.
    Refused(String),
}

/// What the connection does after a decode error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The bad frame was skipped; keep reading.
    Continue,
    /// The stream cannot be trusted any more (framing lost, login refused): close it.
    Close,
}

/// A malformed or refused frame.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct DecodeError {
    pub kind: ErrorKind,
    pub detail: String,
    /// The protocol's negative reply, sent before continuing or closing.
    pub reply: Option<Bytes>,
    pub action: Action,
}

impl DecodeError {
    pub fn new(kind: ErrorKind, action: Action, detail: impl Into<String>) -> Self {
        DecodeError {
            kind,
            detail: detail.into(),
            reply: None,
            action,
        }
    }

    pub fn with_reply(mut self, reply: impl Into<Bytes>) -> Self {
        self.reply = Some(reply.into());
        self
    }

    /// UDP: a datagram is whole, so the bytes its frames left over can never complete one.
    /// Drops them; an error when there were any (`unit`: what the protocol calls a frame).
    pub fn datagram_leftover(buf: &mut BytesMut, unit: &str) -> Result<Option<Frame>, Self> {
        let n = buf.len();
        buf.clear();
        if n == 0 {
            return Ok(None);
        }
        Err(DecodeError::new(
            ErrorKind::BadLength,
            Action::Continue,
            format!("{n} bytes left in the datagram are not a whole {unit}"),
        ))
    }
}

/// Decode failure classes; also the `kind` label of the decode-error metric (a small fixed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("checksum mismatch")]
    BadChecksum,
    #[error("bad length")]
    BadLength,
    #[error("frame too large")]
    TooLarge,
    #[error("malformed")]
    Malformed,
    #[error("not logged in")]
    NotLoggedIn,
    #[error("login rejected")]
    LoginRejected,
    #[error("unsupported")]
    Unsupported,
    #[error("bad value")]
    BadValue,
}

impl ErrorKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::BadChecksum => "bad_checksum",
            ErrorKind::BadLength => "bad_length",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Malformed => "malformed",
            ErrorKind::NotLoggedIn => "not_logged_in",
            ErrorKind::LoginRejected => "login_rejected",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::BadValue => "bad_value",
        }
    }
}

/// Digest of a frame's content for deterministic event ids (xxh3, 128 bits).
pub fn digest(protocol: Protocol, parts: &[&[u8]]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(protocol as i32).to_be_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.digest128()
}

/// Short lower-case name of a protocol for logs and metric labels.
pub fn protocol_label(p: Protocol) -> &'static str {
    module(p).map(|m| m.name()).unwrap_or("unknown")
}
