//! `--sink embedded` (the default): an MQTT broker (rumqttd) runs inside the gateway, and the
//! gateway publishes to it over loopback with the ordinary MQTT sink, so `avlgate serve` with
//! no configuration does the whole job on a fresh machine.
//!
//! Whoever can connect to this broker can read every event and command every device. Without
//! credentials it therefore listens on loopback only ([`check_listen`]); with them, every
//! client (the gateway's own sink and command bus too) must log in with the one user name and
//! password. rumqttd has no per-topic ACLs and no TLS here: a fleet that needs either uses an
//! external broker (`--sink mqtt`). See docs/security.md.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::MqttCredentials;

/// Refuses to expose an anonymous broker: an address other than loopback (the unspecified
/// `0.0.0.0` / `::` included) needs credentials.
pub fn check_listen(listen: SocketAddr, has_credentials: bool) -> anyhow::Result<()> {
    if has_credentials || listen.ip().is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "the embedded MQTT broker would listen on {listen}, which is not loopback, without \
         credentials: anyone reaching it could read every event and command every device. Set \
         --embedded-mqtt-password-file FILE (or AVLGATE_EMBEDDED_MQTT_PASSWORD), or listen on \
         127.0.0.1"
    )
}

/// Starts an anonymous broker on a loopback address (tests, trials).
pub fn start(listen: SocketAddr, max_payload_bytes: usize) -> anyhow::Result<()> {
    start_with(listen, max_payload_bytes, None)
}

/// Starts the broker on its own threads. Fails at once when the address cannot be bound, or
/// when it is not loopback and `auth` is `None`.
pub fn start_with(
    listen: SocketAddr,
    max_payload_bytes: usize,
    auth: Option<&MqttCredentials>,
) -> anyhow::Result<()> {
    check_listen(listen, auth.is_some())?;
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "the embedded MQTT broker listens off loopback: its password and traffic travel in clear text; keep it on a trusted network");
    }
    // Fail early and clearly when the port is taken: rumqttd would only log it on its thread.
    std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("embedded MQTT broker cannot listen on {listen}: {e}"))?;
    let mut v4 = HashMap::new();
    v4.insert(
        "v4".to_string(),
        ServerSettings {
            name: "avlgate-embedded".into(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: max_payload_bytes,
                max_inflight_count: 65_535,
                auth: auth.map(|c| {
                    HashMap::from([(c.username.clone(), c.password.expose().to_string())])
                }),
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(v4),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("embedded-mqtt".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })?;
    // No readiness probe: a probe connection makes rumqttd log an error, and every client
    // (the gateway's sink included) retries its connection until the listener is up.
    Ok(())
}

/// Where a local client connects to reach a listener (`0.0.0.0` → loopback).
pub fn connect_addr(listen: SocketAddr) -> SocketAddr {
    let mut a = listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}
