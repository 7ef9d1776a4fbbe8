//! Commands to live devices, across a fleet of stateless pods.
//!
//! Backends produce `Command`s (protobuf, or canonical JSON when the payload starts with `{`)
//! keyed by IMEI. Every pod reads every command and every claim ([`ledger`]); the pod holding
//! the device's session claims the command, writes it once, and reports `CommandResult`s.

pub mod bus;
pub mod dispatcher;
pub mod ledger;
pub mod session;

use crate::proto::Command;

/// Decodes a command from a broker payload: canonical JSON when it starts with `{`, protobuf
/// otherwise.
pub fn parse(payload: &[u8]) -> Result<Command, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        serde_json::from_slice(payload).map_err(|e| format!("invalid JSON command: {e}"))
    } else {
        prost::Message::decode(payload).map_err(|e| format!("invalid protobuf command: {e}"))
    }
}

/// Starts the command flow for the configured broker: the bus, the ledger and the dispatcher.
/// `None` when commands are off or the sink has no broker (stdout). Readiness requires the
/// bus's Kafka clients to be alive; one that cannot be rebuilt requests `abort`.
pub fn start(
    config: &crate::config::Config,
    publisher: std::sync::Arc<crate::sink::Publisher>,
    shutdown: tokio_util::sync::CancellationToken,
    readiness: &crate::ops::Readiness,
    abort: &crate::abort::Abort,
) -> anyhow::Result<Option<dispatcher::Commands>> {
    use crate::config::SinkKind;
    use std::sync::Arc;
    if !config.commands.enabled {
        return Ok(None);
    }
    let instance = instance_id();
    let cfg = ledger::LedgerConfig {
        gateway: config.gateway_name.clone(),
        instance: instance.clone(),
        default_ttl: config.commands.default_ttl,
        max_ttl: config.commands.max_ttl,
        max_entries: 1_000_000,
        remember: std::time::Duration::from_secs(600),
        proposal_timeout: std::time::Duration::from_secs(10),
    };
    let (writer, entries): (Arc<dyn bus::ClaimWriter>, _) = match config.sink {
        SinkKind::Stdout => return Ok(None),
        SinkKind::Kafka => {
            let o = crate::sink::kafka::KafkaOptions {
                brokers: config.kafka.brokers.clone(),
                options: config.kafka.options.clone(),
                events_topic: config.kafka.events_topic.clone(),
                command_results_topic: config.kafka.command_results_topic.clone(),
                client_id: format!("avlgate-{}-commands", config.gateway_name),
                message_timeout: config.in_flight.delivery_timeout,
                format: config.format,
            };
            let mut consumer = rdkafka::ClientConfig::new();
            consumer
                .set("bootstrap.servers", &o.brokers)
                .set("group.id", format!("avlgate-commands-{instance}"))
                .set("enable.auto.commit", "false")
                .set("client.id", &o.client_id);
            for (k, v) in &o.options {
                consumer.set(k, v);
            }
            let (b, rx) = bus::KafkaBus::start(
                o.producer_config(),
                consumer,
                config.kafka.commands_topic.clone(),
                config.commands.max_ttl,
                shutdown.clone(),
                abort,
            )?;
            for h in b.health() {
                readiness.require(h);
            }
            (Arc::new(b), rx)
        }
        SinkKind::Mqtt | SinkKind::Embedded => {
            let url = match config.sink {
                SinkKind::Mqtt => config.mqtt_url.clone().unwrap_or_default(),
                _ => format!(
                    "mqtt://{}",
                    crate::sink::embedded::connect_addr(config.embedded_mqtt_listen)
                ),
            };
            let client_id = format!("avlgate-cmd-{}-{instance}", config.gateway_name);
            let o =
                crate::sink::mqtt::MqttOptions::from_url(&url, &client_id, &config.topic_prefix)
                    .map_err(anyhow::Error::msg)?;
            let mut ro = rumqttc::MqttOptions::new(client_id, o.host.clone(), o.port);
            if let (Some(u), Some(p)) = (o.username.clone(), o.password.clone()) {
                ro.set_credentials(u, p);
            }
            let (b, rx) = bus::MqttBus::start(ro, config.topic_prefix.clone(), shutdown.clone());
            (Arc::new(b), rx)
        }
    };
    let (commands, _task) = dispatcher::start(cfg, writer, entries, publisher, shutdown);
    Ok(Some(commands))
}

/// A random id for this process: a restarted pod keeps its name but is a new instance.
fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = format!("{nanos}-{}", std::process::id());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::command::Body;

    #[test]
    fn json_and_protobuf_commands_parse_alike() {
        let j = br#"{"commandId":"c-1","imei":"356307042441013","text":"getinfo","ttlSecs":30}"#;
        let c = parse(j).unwrap();
        assert_eq!(c.command_id, "c-1");
        assert_eq!(c.body, Some(Body::Text("getinfo".into())));
        assert_eq!(c.ttl_secs, 30);
        let p = prost::Message::encode_to_vec(&c);
        assert_eq!(parse(&p).unwrap(), c);
        assert!(parse(b"{not json").is_err());
        assert!(parse(&[0xff, 0xff, 0xff]).is_err());
    }
}
