//! How the gateway's broker clients are configured, in one place: the events producer (the
//! sink), the command flow's claims producer and commands reader, and the MQTT clients of both.
//! Every client of one gateway takes the same brokers, credentials and librdkafka options.

use crate::config::Config;
use crate::sink::kafka::KafkaOptions;
use crate::sink::mqtt::MqttOptions;

/// The Kafka producer settings (events, results and claims) with `client_id`.
pub fn kafka_options(config: &Config, client_id: String) -> KafkaOptions {
    KafkaOptions {
        brokers: config.kafka.brokers.clone(),
        options: config.kafka.options.clone(),
        events_topic: config.kafka.events_topic.clone(),
        command_results_topic: config.kafka.command_results_topic.clone(),
        client_id,
        message_timeout: config.in_flight.delivery_timeout,
        format: config.format,
    }
}

/// The commands reader's consumer settings: its own group (it assigns partitions itself and
/// commits nothing), the brokers and the user's librdkafka options.
pub fn kafka_reader_config(
    config: &Config,
    group_id: &str,
    client_id: &str,
) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("client.id", client_id);
    for (k, v) in &config.kafka.options {
        c.set(k, v);
    }
    c
}

/// The MQTT connection settings for a client called `client_id`: the external broker of
/// `--sink mqtt`, or the embedded one with its credentials.
pub fn mqtt_options(config: &Config, client_id: &str) -> anyhow::Result<MqttOptions> {
    config.mqtt_client_options(client_id)
}

/// The same settings for a `rumqttc` client (the command bus).
pub fn rumqttc_options(o: &MqttOptions) -> rumqttc::MqttOptions {
    let mut r = rumqttc::MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
    if let (Some(u), Some(p)) = (o.username.clone(), o.password.clone()) {
        r.set_credentials(u, p);
    }
    r.set_keep_alive(o.keep_alive);
    r
}
