//! avlgate: one port for every GPS tracker protocol, normalized to protobuf events on Kafka or
//! MQTT, acknowledged to the device only after the broker confirmed them.
//!
//! # Layout
//!
//! The tree follows the data path:
//!
//! - [`protocol`]: sans-IO wire protocols (`teltonika/`, …) and the [`protocol::detect`]or.
//!   Bytes in, [`protocol::Frame`]s (events + exact reply bytes) out. No sockets, no clock.
//! - [`session`]: one task per TCP connection or UDP peer: detect, decode, publish, wait for
//!   delivery, reply.
//! - [`sink`]: where events go (`mqtt`, `embedded` broker, `stdout`, …) behind one
//!   ack-after-delivery [`sink::Sink`] seam, with a bounded in-flight [`sink::Publisher`].
//! - [`command`]: commands to devices across pods (the claims log, the dispatcher, the
//!   results outbox, the sessions' side); [`broker`]: every broker client's settings.
//! - [`net`]: between the socket and detection: connection limits, PROXY protocol, TLS.
//! - [`server`]: listeners, connection accounting, graceful shutdown.
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz`; [`abort`]: a part that cannot go on stops
//!   the process (drain, exit non-zero).
//! - [`device_id`]: what a device id may be (logins, allow-list, commands).
//! - [`config`]: the one typed configuration, from flags, environment and a TOML file.
//! - [`decode`]: the `avlgate decode` support tool.
//! - [`simulate`]: `avlgate simulate`, virtual devices of every protocol for load and
//!   end-to-end tests.
//! - [`vocab`]: the normalized vocabulary (fields, alarms), the mapping rules and device
//!   profiles every protocol maps its values with.
//! - [`proto`]: the generated event schema (`proto/avlgate/v1/telemetry.proto`).
#![forbid(unsafe_code)]

pub mod abort;
pub mod broker;
pub mod command;
pub mod config;
pub mod decode;
pub mod device_id;
pub mod event;
pub mod metrics;
pub mod net;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod session;
pub mod simulate;
pub mod sink;
pub mod throttle;
pub mod vocab;

/// The generated event schema, package `avlgate.v1`, with canonical JSON (pbjson) impls.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/avlgate.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/avlgate.v1.serde.rs"));
}
