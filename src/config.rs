//! The one typed configuration.
//!
//! Every setting can come from a flag (`--listen`), the environment (`AVLGATE_LISTEN`) or the
//! TOML file given by `--config` (key `listen`). Precedence: flag, then environment, then file,
//! then the built-in default. [`Settings`] is the raw, all-optional layer that clap and serde
//! both fill; [`Config`] is the resolved result the gateway runs on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::protocol::Limits;
use crate::session::Timeouts;
use crate::sink::{Format, InFlightLimits};

/// Where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// An MQTT broker inside the gateway (the default: no set-up needed).
    Embedded,
    /// An external MQTT broker (`--mqtt-url`).
    Mqtt,
    /// Canonical JSON lines on standard output.
    Stdout,
    /// A Kafka cluster (`--kafka-brokers`).
    Kafka,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting, all optional: filled by clap (flags and environment) and by the TOML file.
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file (keys are the long flag names with `_` for `-`).
    #[arg(long, env = "AVLGATE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to accept devices on, TCP and UDP (repeatable, or comma-separated in the
    /// environment). Default 0.0.0.0:5027.
    #[arg(long, env = "AVLGATE_LISTEN", value_delimiter = ',')]
    pub listen: Option<Vec<SocketAddr>>,

    /// Where events go: embedded (default), mqtt, stdout.
    #[arg(long, env = "AVLGATE_SINK", value_enum)]
    pub sink: Option<SinkKind>,

    /// Payload encoding for broker sinks: protobuf (default) or json. stdout is always JSON.
    #[arg(long, env = "AVLGATE_FORMAT", value_enum)]
    pub format: Option<Format>,

    /// MQTT topic prefix: events go to `<prefix>/events/<imei>`. Default `avlgate`.
    #[arg(long, env = "AVLGATE_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,

    /// External MQTT broker for `--sink mqtt`: mqtt://[user[:password]@]host[:port].
    #[arg(long, env = "AVLGATE_MQTT_URL")]
    pub mqtt_url: Option<String>,

    /// Kafka bootstrap servers for `--sink kafka`: host:port[,host:port].
    #[arg(long, env = "AVLGATE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// A librdkafka setting, key=value (repeatable; comma-separated in the environment),
    /// e.g. security.protocol=SASL_SSL. Applied over the gateway's producer defaults.
    #[arg(long = "kafka-option", env = "AVLGATE_KAFKA_OPTIONS", value_delimiter = ',', value_parser = crate::sink::kafka::parse_option)]
    #[serde(skip)]
    pub kafka_option: Option<Vec<(String, String)>>,

    /// librdkafka settings from the configuration file: a `[kafka_options]` table.
    #[arg(skip)]
    pub kafka_options: Option<BTreeMap<String, String>>,

    /// Kafka topic for events. Default `avlgate.events`.
    #[arg(long, env = "AVLGATE_KAFKA_EVENTS_TOPIC")]
    pub kafka_events_topic: Option<String>,

    /// Kafka topic for command results. Default `avlgate.command-results`.
    #[arg(long, env = "AVLGATE_KAFKA_COMMAND_RESULTS_TOPIC")]
    pub kafka_command_results_topic: Option<String>,

    /// Where the embedded broker listens. Default 127.0.0.1:1883.
    #[arg(long, env = "AVLGATE_EMBEDDED_MQTT_LISTEN")]
    pub embedded_mqtt_listen: Option<SocketAddr>,

    /// This instance's name, stamped on every event (`gateway`). Default: $POD_NAME, then
    /// $HOSTNAME, then "avlgate".
    #[arg(long, env = "AVLGATE_GATEWAY_NAME")]
    pub gateway_name: Option<String>,

    /// Prometheus metrics listener (path /metrics). Default 0.0.0.0:9102.
    #[arg(long, env = "AVLGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log format: text (default) or json. The level comes from RUST_LOG (default info).
    #[arg(long, env = "AVLGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Seconds a new connection has to show a known protocol. Default 30.
    #[arg(long, env = "AVLGATE_DETECT_TIMEOUT_SECS")]
    pub detect_timeout_secs: Option<u64>,

    /// Seconds without data after which a TCP device is disconnected. Default 900.
    #[arg(long, env = "AVLGATE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,

    /// Seconds without datagrams after which a UDP peer is forgotten. Default 300.
    #[arg(long, env = "AVLGATE_UDP_IDLE_TIMEOUT_SECS")]
    pub udp_idle_timeout_secs: Option<u64>,

    /// Records handed to the broker and not yet confirmed, at most. Default 20000.
    #[arg(long, env = "AVLGATE_MAX_IN_FLIGHT_RECORDS")]
    pub max_in_flight_records: Option<usize>,

    /// Encoded bytes handed to the broker and not yet confirmed, at most. Default 64 MiB.
    #[arg(long, env = "AVLGATE_MAX_IN_FLIGHT_BYTES")]
    pub max_in_flight_bytes: Option<usize>,

    /// Seconds to wait for the broker to confirm a frame before giving up on it (the device
    /// is not acknowledged and resends). Default 30.
    #[arg(long, env = "AVLGATE_DELIVERY_TIMEOUT_SECS")]
    pub delivery_timeout_secs: Option<u64>,

    /// Seconds the drain may take on SIGTERM before the process exits anyway. Default 25.
    #[arg(long, env = "AVLGATE_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,

    /// Largest Teltonika frame accepted, bytes. Default 16384.
    #[arg(long, env = "AVLGATE_TELTONIKA_MAX_FRAME_BYTES")]
    pub teltonika_max_frame_bytes: Option<usize>,

    /// Largest Wialon IPS packet accepted, bytes. Default 65536.
    #[arg(long, env = "AVLGATE_WIALON_MAX_PACKET_BYTES")]
    pub wialon_max_packet_bytes: Option<usize>,

    /// Largest file (photo, tachograph file) a Wialon device may upload, bytes. Default 8 MiB.
    #[arg(long, env = "AVLGATE_WIALON_MAX_FILE_BYTES")]
    pub wialon_max_file_bytes: Option<usize>,

    /// Largest GT06 frame accepted, bytes. Default 4096.
    #[arg(long, env = "AVLGATE_GT06_MAX_FRAME_BYTES")]
    pub gt06_max_frame_bytes: Option<usize>,
}

macro_rules! merge_fields {
    ($hi:ident, $lo:ident, $($f:ident),*) => { Settings { config: $hi.config.or($lo.config), $($f: $hi.$f.or($lo.$f)),* } };
}

impl Settings {
    /// `self` wins over `lower` field by field.
    pub fn over(self, lower: Settings) -> Settings {
        let hi = self;
        let lo = lower;
        merge_fields!(
            hi,
            lo,
            listen,
            sink,
            format,
            topic_prefix,
            mqtt_url,
            kafka_brokers,
            kafka_option,
            kafka_options,
            kafka_events_topic,
            kafka_command_results_topic,
            embedded_mqtt_listen,
            gateway_name,
            metrics_listen,
            log_format,
            detect_timeout_secs,
            idle_timeout_secs,
            udp_idle_timeout_secs,
            max_in_flight_records,
            max_in_flight_bytes,
            delivery_timeout_secs,
            drain_timeout_secs,
            teltonika_max_frame_bytes,
            wialon_max_packet_bytes,
            wialon_max_file_bytes,
            gt06_max_frame_bytes
        )
    }

    /// Reads the TOML file, if one was named, and layers the flags/environment over it.
    pub fn load(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => Settings::default(),
        };
        self.over(file).resolve()
    }

    /// Applies the defaults and checks the combination.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let d = Limits::default();
        let sink = self.sink.unwrap_or(SinkKind::Embedded);
        if sink == SinkKind::Mqtt && self.mqtt_url.is_none() {
            anyhow::bail!("--sink mqtt needs --mqtt-url mqtt://host:port");
        }
        if sink == SinkKind::Kafka && self.kafka_brokers.as_deref().is_none_or(str::is_empty) {
            anyhow::bail!("--sink kafka needs --kafka-brokers host:port[,host:port]");
        }
        let mut kafka_options: Vec<(String, String)> =
            self.kafka_options.unwrap_or_default().into_iter().collect();
        kafka_options.extend(self.kafka_option.unwrap_or_default());
        let listen = self
            .listen
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| vec!["0.0.0.0:5027".parse().expect("valid literal")]);
        let secs = |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
        Ok(Config {
            listen,
            sink,
            format: if sink == SinkKind::Stdout {
                Format::Json
            } else {
                self.format.unwrap_or(Format::Protobuf)
            },
            topic_prefix: self.topic_prefix.unwrap_or_else(|| "avlgate".into()),
            mqtt_url: self.mqtt_url,
            kafka: KafkaConfig {
                brokers: self.kafka_brokers.unwrap_or_default(),
                options: kafka_options,
                events_topic: self
                    .kafka_events_topic
                    .unwrap_or_else(|| "avlgate.events".into()),
                command_results_topic: self
                    .kafka_command_results_topic
                    .unwrap_or_else(|| "avlgate.command-results".into()),
            },
            embedded_mqtt_listen: self
                .embedded_mqtt_listen
                .unwrap_or_else(|| "127.0.0.1:1883".parse().expect("valid literal")),
            gateway_name: self
                .gateway_name
                .or_else(|| std::env::var("POD_NAME").ok())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "avlgate".into()),
            metrics_listen: self
                .metrics_listen
                .unwrap_or_else(|| "0.0.0.0:9102".parse().expect("valid literal")),
            log_format: self.log_format.unwrap_or(LogFormat::Text),
            timeouts: Timeouts {
                detect: secs(self.detect_timeout_secs, 30),
                idle: secs(self.idle_timeout_secs, 900),
                udp_idle: secs(self.udp_idle_timeout_secs, 300),
            },
            in_flight: InFlightLimits {
                max_records: self.max_in_flight_records.unwrap_or(20_000).max(1),
                max_bytes: self
                    .max_in_flight_bytes
                    .unwrap_or(64 * 1024 * 1024)
                    .max(1024),
                delivery_timeout: secs(self.delivery_timeout_secs, 30),
            },
            drain_timeout: secs(self.drain_timeout_secs, 25),
            limits: Limits {
                teltonika_max_frame_bytes: self
                    .teltonika_max_frame_bytes
                    .unwrap_or(d.teltonika_max_frame_bytes),
                wialon_max_packet_bytes: self
                    .wialon_max_packet_bytes
                    .unwrap_or(d.wialon_max_packet_bytes),
                wialon_max_file_bytes: self
                    .wialon_max_file_bytes
                    .unwrap_or(d.wialon_max_file_bytes),
                gt06_max_frame_bytes: self.gt06_max_frame_bytes.unwrap_or(d.gt06_max_frame_bytes),
            },
        })
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub sink: SinkKind,
    pub format: Format,
    pub topic_prefix: String,
    pub mqtt_url: Option<String>,
    pub kafka: KafkaConfig,
    pub embedded_mqtt_listen: SocketAddr,
    pub gateway_name: String,
    pub metrics_listen: SocketAddr,
    pub log_format: LogFormat,
    pub timeouts: Timeouts,
    pub in_flight: InFlightLimits,
    pub drain_timeout: Duration,
    pub limits: Limits,
}

/// Kafka settings (used by `--sink kafka`).
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    pub brokers: String,
    /// librdkafka settings, file table first, then flags/environment (later wins).
    pub options: Vec<(String, String)>,
    pub events_topic: String,
    pub command_results_topic: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: Settings = toml::from_str(
            "listen = [\"127.0.0.1:7000\"]\nsink = \"stdout\"\ntopic_prefix = \"fleet\"\n",
        )
        .unwrap();
        let flags = Settings {
            topic_prefix: Some("cli".into()),
            ..Default::default()
        };
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert_eq!(c.sink, SinkKind::Stdout);
        assert_eq!(c.format, Format::Json, "stdout is always JSON");
        assert_eq!(c.topic_prefix, "cli");
        assert_eq!(c.timeouts.idle, Duration::from_secs(900));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("lisen = []").is_err());
    }

    #[test]
    fn mqtt_needs_a_url() {
        let s = Settings {
            sink: Some(SinkKind::Mqtt),
            ..Default::default()
        };
        assert!(s.resolve().is_err());
    }

    #[test]
    fn kafka_needs_brokers_and_takes_options_from_file_and_flags() {
        let s = Settings {
            sink: Some(SinkKind::Kafka),
            ..Default::default()
        };
        assert!(s.resolve().is_err());
        let file: Settings = toml::from_str(
            "sink = \"kafka\"\nkafka_brokers = \"127.0.0.1:9092\"\n[kafka_options]\n\"security.protocol\" = \"SASL_SSL\"\n",
        )
        .unwrap();
        let flags = Settings {
            kafka_option: Some(vec![("linger.ms".into(), "20".into())]),
            ..Default::default()
        };
        let c = flags.over(file).resolve().unwrap();
        assert_eq!(c.sink, SinkKind::Kafka);
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            c.kafka.options,
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("linger.ms".into(), "20".into())
            ]
        );
        assert_eq!(c.kafka.events_topic, "avlgate.events");
    }

    #[test]
    fn defaults() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:5027".parse().unwrap()]);
        assert_eq!(c.sink, SinkKind::Embedded);
        assert_eq!(c.format, Format::Protobuf);
        assert_eq!(c.embedded_mqtt_listen, "127.0.0.1:1883".parse().unwrap());
    }
}
