//! The device side of a protocol: what a virtual device of the protocol sends and which exact
//! reply it expects, sans IO. Each protocol folder implements [`DeviceCodec`] in its `sim.rs`
//! and lists its variants in [`super::ProtocolModule::simulators`]; `avlgate simulate`, the
//! end-to-end tests and the benchmarks drive them.

use bytes::BytesMut;

use crate::proto::Transport;

/// One fix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Signed decimal degrees.
    pub latitude: f64,
    pub longitude: f64,
    /// Metres.
    pub altitude: f64,
    /// km/h.
    pub speed_kmh: f64,
    /// Degrees clockwise from north, `0..360`.
    pub course: f64,
    pub satellites: u8,
    pub hdop: f64,
    /// Distance driven since the track began, metres.
    pub odometer_m: u64,
    /// Supply voltage, millivolts.
    pub power_mv: u16,
    /// Backup battery, millivolts.
    pub battery_mv: u16,
    /// 0..=5.
    pub gsm_level: u8,
}

/// What a device sends in one go and what must come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Frames in the order written. Over UDP each is one datagram.
    pub units: Vec<Vec<u8>>,
    /// The exact replies expected, in order.
    pub expected: Vec<Vec<u8>>,
    pub frames: u32,
    pub records: u32,
}

/// One message the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A reply (ACK) to compare with what was expected.
    Reply(Vec<u8>),
    /// A command, and the device's answer to write back.
    Command { text: String, answer: Vec<u8> },
    /// The server's answer to a message the device sent in answer to a command (Wialon `#AM#`
    /// to the driver's `#M#`); `ok` when it was the positive one.
    AnswerAck { ok: bool },
    /// A well-framed message the device ignores (a command with a bad CRC, say).
    Ignored(&'static str),
}

/// The server sent bytes that are no message of the protocol: the stream cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected bytes from the server: {0}")]
pub struct DeviceError(pub String);

/// One protocol's device side, no I/O.
pub trait DeviceCodec: Send + Sync {
    /// The login to send on a fresh connection and the exact reply that accepts it; `None`
    /// when the transport has no login (Teltonika and Wialon over UDP).
    fn login(&mut self) -> Option<(Vec<u8>, Vec<u8>)>;
    /// Encodes `fixes` (oldest first).
    fn batch(&mut self, fixes: &[Fix]) -> Batch;
    /// Splits one message off the front of `buf`; `Ok(None)` until one is complete.
    fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DeviceError>;
}

/// A simulator variant of a protocol (`teltonika8e`, `wialon2`, ...), as `avlgate simulate
/// --protocol` names it.
#[derive(Clone, Copy)]
pub struct Simulator {
    pub name: &'static str,
    /// One line for `--help` and the README.
    pub doc: &'static str,
    /// The transports this device speaks.
    pub transports: &'static [Transport],
    /// A device with this IMEI over UDP (`true`) or TCP.
    pub make: fn(imei: &str, udp: bool) -> Box<dyn DeviceCodec>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}
