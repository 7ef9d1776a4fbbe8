//! `--sink embedded` (the default): an MQTT broker (rumqttd) runs inside the gateway, and the
//! gateway publishes to it over loopback with the ordinary MQTT sink, so `avlgate serve` with
//! no configuration does the whole job on a fresh machine. Anyone can subscribe to it.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on its own threads. Fails at once when the address cannot be bound.
pub fn start(listen: SocketAddr, max_payload_bytes: usize) -> anyhow::Result<()> {
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
                auth: None,
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
