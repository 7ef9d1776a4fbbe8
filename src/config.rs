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

use crate::net::limits::ConnLimits;
use crate::protocol::ProtocolConfig;
use crate::session::registry::{Takeover, TakeoverPolicy};
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

    /// A protocol's setting, PROTOCOL.KEY=VALUE (repeatable; comma-separated in the
    /// environment), e.g. teltonika.max_frame_bytes=32768. `avlgate protocols` lists every
    /// protocol's settings. The environment also takes one variable per setting,
    /// AVLGATE_PROTOCOLS__<PROTOCOL>__<KEY>; the file a `[protocols.<protocol>]` table.
    #[arg(long = "protocol-setting", env = "AVLGATE_PROTOCOL_SETTING", value_delimiter = ',', value_parser = parse_protocol_setting)]
    #[serde(skip)]
    pub protocol_setting: Option<Vec<(String, String, String)>>,

    /// Protocol settings from the configuration file (`[protocols.<name>]` tables) and from
    /// `AVLGATE_PROTOCOLS__<NAME>__<KEY>` variables, in that order (later wins).
    #[arg(skip)]
    pub protocols: Option<BTreeMap<String, BTreeMap<String, toml::Value>>>,

    /// Kafka topic for events. Default `avlgate.events`.
    #[arg(long, env = "AVLGATE_KAFKA_EVENTS_TOPIC")]
    pub kafka_events_topic: Option<String>,

    /// Kafka topic for command results. Default `avlgate.command-results`.
    #[arg(long, env = "AVLGATE_KAFKA_COMMAND_RESULTS_TOPIC")]
    pub kafka_command_results_topic: Option<String>,

    /// Kafka topic commands are read from (and claims written to). Default `avlgate.commands`.
    #[arg(long, env = "AVLGATE_KAFKA_COMMANDS_TOPIC")]
    pub kafka_commands_topic: Option<String>,

    /// Accept commands for devices (Kafka: the commands topic; MQTT:
    /// `<prefix>/commands/<imei>`). Default true; ignored with `--sink stdout`.
    #[arg(long, env = "AVLGATE_COMMANDS")]
    pub commands: Option<bool>,

    /// Seconds a command waits for its device to be connected, when it carries no TTL.
    /// Default 300.
    #[arg(long, env = "AVLGATE_COMMAND_TTL_SECS")]
    pub command_ttl_secs: Option<u64>,

    /// Longest TTL a command may ask for, seconds; also how far back a starting pod reads the
    /// commands topic. Default 86400.
    #[arg(long, env = "AVLGATE_COMMAND_MAX_TTL_SECS")]
    pub command_max_ttl_secs: Option<u64>,

    /// Seconds a written command waits for the device's answer before it is reported
    /// EXPIRED. Default 60.
    #[arg(long, env = "AVLGATE_COMMAND_REPLY_TIMEOUT_SECS")]
    pub command_reply_timeout_secs: Option<u64>,

    /// Seconds of the command lease: a pod that stopped beating for half of it is taken for
    /// lost, and the other pods settle the commands it held (re-delivered when they were not
    /// written, EXPIRED `holder lost` when they may have been) within it. Pods beat every
    /// sixth of it. Default 60.
    #[arg(long, env = "AVLGATE_COMMAND_LEASE_SECS")]
    pub command_lease_secs: Option<u64>,

    /// Commands every pod keeps track of at most: waiting for their device, in progress, and
    /// done in the last 10 minutes, fleet-wide (every pod reads every command). Beyond, new
    /// commands are reported REJECTED ("too many pending commands"). Each costs ~0.7 KB on
    /// every pod. Default 1000000.
    #[arg(long, env = "AVLGATE_COMMAND_MAX_PENDING")]
    pub command_max_pending: Option<usize>,

    /// Where the embedded broker listens. Default 127.0.0.1:1883. An address other than
    /// loopback needs credentials (--embedded-mqtt-password or --embedded-mqtt-password-file).
    #[arg(long, env = "AVLGATE_EMBEDDED_MQTT_LISTEN")]
    pub embedded_mqtt_listen: Option<SocketAddr>,

    /// User name every client of the embedded broker (the gateway's own included) must give
    /// when a password is set. Default `avlgate`.
    #[arg(long, env = "AVLGATE_EMBEDDED_MQTT_USERNAME")]
    pub embedded_mqtt_username: Option<String>,

    /// Password of the embedded broker: with it, anonymous clients are refused. Prefer the
    /// environment or --embedded-mqtt-password-file to a flag (flags show in `ps`).
    #[arg(long, env = "AVLGATE_EMBEDDED_MQTT_PASSWORD", hide_env_values = true)]
    pub embedded_mqtt_password: Option<String>,

    /// File holding the embedded broker's password (first line; e.g. a mounted Kubernetes
    /// Secret).
    #[arg(long, env = "AVLGATE_EMBEDDED_MQTT_PASSWORD_FILE")]
    pub embedded_mqtt_password_file: Option<PathBuf>,

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

    /// Seconds a new TCP connection has to get through the PROXY header, the TLS handshake,
    /// protocol detection and the device's login; then it is closed. Default 30.
    #[arg(long, env = "AVLGATE_LOGIN_TIMEOUT_SECS")]
    pub login_timeout_secs: Option<u64>,

    /// Former name of `--login-timeout-secs`, still accepted.
    #[arg(long, env = "AVLGATE_DETECT_TIMEOUT_SECS", hide = true)]
    pub detect_timeout_secs: Option<u64>,

    /// Seconds without data after which a TCP device is disconnected. Default 900.
    #[arg(long, env = "AVLGATE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,

    /// Open TCP device connections per pod, at most; beyond it new ones are closed at once.
    /// 0: no limit. Default 200000.
    #[arg(long, env = "AVLGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open TCP device connections per source address, at most (carriers put many trackers
    /// behind one NAT address). 0: no limit. Default 5000.
    #[arg(long, env = "AVLGATE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u32>,

    /// New TCP connections per second per source address (token bucket, burst of the same
    /// size). 0: no limit. Default 200.
    #[arg(long, env = "AVLGATE_MAX_CONNECT_RATE_PER_IP")]
    pub max_connect_rate_per_ip: Option<u32>,

    /// IMEI allow-list file: one IMEI per line, `#` comments; reloaded when it changes.
    /// Unset: every device may log in.
    #[arg(long, env = "AVLGATE_IMEI_ALLOWLIST")]
    pub imei_allowlist: Option<PathBuf>,

    /// Device profiles file (TOML): which mapping rules each device's values go through, and
    /// operator-defined profiles that extend the built-in ones (docs/schema.md); reloaded when
    /// it changes. Unset: the built-in profiles.
    #[arg(long, env = "AVLGATE_DEVICE_PROFILES")]
    pub device_profiles: Option<PathBuf>,

    /// When a new login of an IMEI may replace the IMEI's live TCP session: always (default;
    /// devices behind carrier NAT reconnect from new addresses), idle (only when the live
    /// session received nothing for --session-takeover-idle-secs), never (not while it lasts).
    #[arg(long, env = "AVLGATE_SESSION_TAKEOVER", value_enum)]
    pub session_takeover: Option<TakeoverPolicy>,

    /// With --session-takeover idle: seconds the live session must have been silent before a
    /// new login may replace it. Default 120.
    #[arg(long, env = "AVLGATE_SESSION_TAKEOVER_IDLE_SECS")]
    pub session_takeover_idle_secs: Option<u64>,

    /// Every TCP connection starts with a PROXY protocol v1 or v2 header (HAProxy, AWS NLB,
    /// nginx stream); the address in it is the device's.
    #[arg(long, env = "AVLGATE_PROXY_PROTOCOL", num_args = 0..=1, default_missing_value = "true")]
    pub proxy_protocol: Option<bool>,

    /// PEM certificate chain for TLS on the device port (with --tls-key); reloaded on change.
    #[arg(long, env = "AVLGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert; reloaded on change.
    #[arg(long, env = "AVLGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Seconds without datagrams after which a UDP peer is forgotten. Default 300.
    #[arg(long, env = "AVLGATE_UDP_IDLE_TIMEOUT_SECS")]
    pub udp_idle_timeout_secs: Option<u64>,

    /// UDP peers (source address and port) tracked at once per pod; datagrams of new peers
    /// beyond it are dropped. 0: no limit. Default 200000.
    #[arg(long, env = "AVLGATE_MAX_UDP_PEERS")]
    pub max_udp_peers: Option<usize>,

    /// UDP peers tracked at once per source address (many trackers share a carrier's NAT
    /// address, each on its own port). 0: no limit. Default 5000.
    #[arg(long, env = "AVLGATE_MAX_UDP_PEERS_PER_IP")]
    pub max_udp_peers_per_ip: Option<u32>,

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
            kafka_commands_topic,
            commands,
            command_ttl_secs,
            command_max_ttl_secs,
            command_reply_timeout_secs,
            command_lease_secs,
            command_max_pending,
            embedded_mqtt_listen,
            embedded_mqtt_username,
            embedded_mqtt_password,
            embedded_mqtt_password_file,
            gateway_name,
            metrics_listen,
            log_format,
            login_timeout_secs,
            detect_timeout_secs,
            idle_timeout_secs,
            max_connections,
            max_connections_per_ip,
            max_connect_rate_per_ip,
            imei_allowlist,
            device_profiles,
            session_takeover,
            session_takeover_idle_secs,
            proxy_protocol,
            tls_cert,
            tls_key,
            udp_idle_timeout_secs,
            max_udp_peers,
            max_udp_peers_per_ip,
            max_in_flight_records,
            max_in_flight_bytes,
            delivery_timeout_secs,
            drain_timeout_secs,
            protocol_setting,
            protocols
        )
    }

    /// Reads the TOML file, if one was named, and layers the flags/environment over it.
    pub fn load(self) -> anyhow::Result<Config> {
        let mut file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => Settings::default(),
        };
        // AVLGATE_PROTOCOLS__<NAME>__<KEY> over the file's `[protocols.<name>]` tables; flags
        // (`--protocol-setting`) go over both in `resolve`.
        let env: Vec<(String, String)> = std::env::vars().collect();
        let table = file.protocols.get_or_insert_with(BTreeMap::new);
        for (protocol, key, value) in
            protocol_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            table
                .entry(protocol)
                .or_default()
                .insert(key, toml::Value::String(value));
        }
        self.over(file).resolve()
    }

    /// Applies the defaults and checks the combination.
    pub fn resolve(self) -> anyhow::Result<Config> {
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
        let idle = secs(self.idle_timeout_secs, 900);
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        let cl = ConnLimits::default();
        let lease = self
            .command_lease_secs
            .unwrap_or(DEFAULT_COMMAND_LEASE_SECS);
        if !(2..=3600).contains(&lease) {
            anyhow::bail!("--command-lease-secs {lease}: between 2 and 3600 seconds");
        }
        let embedded_mqtt_listen = self
            .embedded_mqtt_listen
            .unwrap_or_else(|| "127.0.0.1:1883".parse().expect("valid literal"));
        let embedded_mqtt_auth = embedded_credentials(
            self.embedded_mqtt_username,
            self.embedded_mqtt_password,
            self.embedded_mqtt_password_file,
        )?;
        if sink == SinkKind::Embedded {
            crate::sink::embedded::check_listen(
                embedded_mqtt_listen,
                embedded_mqtt_auth.is_some(),
            )?;
        }
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
                commands_topic: self
                    .kafka_commands_topic
                    .unwrap_or_else(|| "avlgate.commands".into()),
            },
            commands: CommandConfig {
                enabled: self.commands.unwrap_or(true) && sink != SinkKind::Stdout,
                default_ttl: secs(self.command_ttl_secs, 300),
                max_ttl: secs(self.command_max_ttl_secs, 86_400),
                reply_timeout: secs(self.command_reply_timeout_secs, 60),
                lease: Duration::from_secs(lease),
                max_pending: self.command_max_pending.unwrap_or(1_000_000).max(1),
                outbox_capacity: DEFAULT_COMMAND_OUTBOX,
            },
            embedded_mqtt_listen,
            embedded_mqtt_auth,
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
                login: secs(self.login_timeout_secs.or(self.detect_timeout_secs), 30),
                idle,
                udp_idle: secs(self.udp_idle_timeout_secs, 300),
            },
            conn_limits: ConnLimits {
                max_connections: self.max_connections.unwrap_or(cl.max_connections),
                max_connections_per_ip: self
                    .max_connections_per_ip
                    .unwrap_or(cl.max_connections_per_ip),
                max_connect_rate_per_ip: self
                    .max_connect_rate_per_ip
                    .unwrap_or(cl.max_connect_rate_per_ip),
            },
            udp_limits: UdpLimits {
                max_peers: self
                    .max_udp_peers
                    .unwrap_or(crate::session::DEFAULT_MAX_UDP_PEERS),
                max_peers_per_ip: self
                    .max_udp_peers_per_ip
                    .unwrap_or(crate::session::DEFAULT_MAX_UDP_PEERS_PER_IP),
            },
            takeover: Takeover {
                policy: self.session_takeover.unwrap_or_default(),
                idle: Duration::from_secs(
                    self.session_takeover_idle_secs
                        .unwrap_or(Takeover::default().idle.as_secs()),
                ),
            },
            imei_allowlist: self.imei_allowlist,
            proxy_protocol: self.proxy_protocol.unwrap_or(false),
            tls,
            reload_interval: Duration::from_secs(5),
            in_flight: InFlightLimits {
                max_records: self.max_in_flight_records.unwrap_or(20_000).max(1),
                max_bytes: self
                    .max_in_flight_bytes
                    .unwrap_or(64 * 1024 * 1024)
                    .max(1024),
                delivery_timeout: secs(self.delivery_timeout_secs, 30),
            },
            drain_timeout: secs(self.drain_timeout_secs, 25),
            protocols: protocol_config(
                self.protocols.unwrap_or_default(),
                self.protocol_setting.unwrap_or_default(),
                match &self.device_profiles {
                    Some(path) => crate::vocab::Profiles::load(path)?,
                    None => crate::vocab::Profiles::builtin(),
                },
            )?,
        })
    }
}

/// `PROTOCOL.KEY=VALUE`.
pub fn parse_protocol_setting(s: &str) -> Result<(String, String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not PROTOCOL.KEY=VALUE"))?;
    let (protocol, key) = name
        .split_once('.')
        .ok_or_else(|| format!("`{s}` is not PROTOCOL.KEY=VALUE"))?;
    Ok((
        protocol.trim().to_string(),
        key.trim().to_string(),
        value.trim().to_string(),
    ))
}

/// `AVLGATE_PROTOCOLS__<NAME>__<KEY>` variables as (protocol, key, value), lower-cased.
pub fn protocol_env<'a>(
    vars: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<(String, String, String)> {
    const PREFIX: &str = "AVLGATE_PROTOCOLS__";
    vars.filter_map(|(k, v)| {
        let rest = k.strip_prefix(PREFIX)?;
        let (protocol, key) = rest.split_once("__")?;
        Some((
            protocol.to_ascii_lowercase(),
            key.to_ascii_lowercase(),
            v.to_string(),
        ))
    })
    .collect()
}

/// Every protocol's settings: the declared defaults, then the file and environment table,
/// then the flags. An unknown protocol or key, or a bad value, stops the start.
fn protocol_config(
    table: BTreeMap<String, BTreeMap<String, toml::Value>>,
    flags: Vec<(String, String, String)>,
    profiles: std::sync::Arc<crate::vocab::Profiles>,
) -> anyhow::Result<ProtocolConfig> {
    let mut entries: Vec<(String, String, String)> = Vec::new();
    for (protocol, keys) in table {
        for (key, value) in keys {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => anyhow::bail!(
                    "[protocols.{protocol}] {key} = {other}: expected a number, a word or true/false"
                ),
            };
            entries.push((protocol.clone(), key, text));
        }
    }
    entries.extend(flags);
    ProtocolConfig::default()
        .with_profiles(profiles)
        .configure(
            entries
                .iter()
                .map(|(p, k, v)| (p.as_str(), k.as_str(), v.as_str())),
        )
        .map_err(|e| anyhow::anyhow!("protocol settings: {e}"))
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
    pub commands: CommandConfig,
    pub embedded_mqtt_listen: SocketAddr,
    /// Credentials of the embedded broker; `None`: anonymous (loopback only).
    pub embedded_mqtt_auth: Option<MqttCredentials>,
    pub gateway_name: String,
    pub metrics_listen: SocketAddr,
    pub log_format: LogFormat,
    pub timeouts: Timeouts,
    pub in_flight: InFlightLimits,
    pub drain_timeout: Duration,
    /// Every protocol's settings and the device profiles.
    pub protocols: ProtocolConfig,
    pub conn_limits: ConnLimits,
    pub udp_limits: UdpLimits,
    pub imei_allowlist: Option<PathBuf>,
    pub takeover: Takeover,
    pub proxy_protocol: bool,
    pub tls: Option<TlsFiles>,
    /// How often the allow-list and TLS files are checked for changes (not a setting; tests
    /// shorten it).
    pub reload_interval: Duration,
}

impl Config {
    /// Connection settings for the gateway's own MQTT clients (the sink and the command bus):
    /// the external broker of `--sink mqtt`, or the embedded one with its credentials.
    pub fn mqtt_client_options(
        &self,
        client_id: &str,
    ) -> anyhow::Result<crate::sink::mqtt::MqttOptions> {
        use crate::sink::mqtt::MqttOptions;
        match self.sink {
            SinkKind::Mqtt => {
                let url = self
                    .mqtt_url
                    .as_deref()
                    .context("--sink mqtt needs --mqtt-url")?;
                MqttOptions::from_url(url, client_id, &self.topic_prefix)
                    .map_err(anyhow::Error::msg)
            }
            SinkKind::Embedded => {
                let addr = crate::sink::embedded::connect_addr(self.embedded_mqtt_listen);
                let mut o =
                    MqttOptions::from_url(&format!("mqtt://{addr}"), client_id, &self.topic_prefix)
                        .map_err(anyhow::Error::msg)?;
                o.host = addr.ip().to_string();
                if let Some(c) = &self.embedded_mqtt_auth {
                    o.username = Some(c.username.clone());
                    o.password = Some(c.password.expose().to_string());
                }
                Ok(o)
            }
            SinkKind::Kafka | SinkKind::Stdout => {
                anyhow::bail!("--sink {:?} has no MQTT broker", self.sink)
            }
        }
    }
}

/// Caps on UDP peers; 0 disables one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpLimits {
    pub max_peers: usize,
    pub max_peers_per_ip: u32,
}

/// A user name and password for an MQTT broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttCredentials {
    pub username: String,
    pub password: Secret,
}

/// A string kept out of `Debug` output (configuration dumps, panics, logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The embedded broker's credentials from a password or a password file (not both).
fn embedded_credentials(
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
) -> anyhow::Result<Option<MqttCredentials>> {
    let password = match (password, password_file) {
        (Some(_), Some(_)) => anyhow::bail!(
            "--embedded-mqtt-password and --embedded-mqtt-password-file exclude each other"
        ),
        (Some(p), None) => p,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading the embedded MQTT password {}", path.display())
            })?;
            text.lines()
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string()
        }
        (None, None) => {
            if username.is_some() {
                anyhow::bail!("--embedded-mqtt-username needs a password (--embedded-mqtt-password or --embedded-mqtt-password-file)");
            }
            return Ok(None);
        }
    };
    if password.is_empty() {
        anyhow::bail!("the embedded MQTT password is empty");
    }
    let username = username.unwrap_or_else(|| "avlgate".into());
    if username.is_empty() {
        anyhow::bail!("the embedded MQTT user name is empty");
    }
    Ok(Some(MqttCredentials {
        username,
        password: Secret::new(password),
    }))
}

/// TLS certificate chain and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Kafka settings (used by `--sink kafka`).
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    pub brokers: String,
    /// librdkafka settings, file table first, then flags/environment (later wins).
    pub options: Vec<(String, String)>,
    pub events_topic: String,
    pub command_results_topic: String,
    pub commands_topic: String,
}

/// Default of `--command-lease-secs`.
pub const DEFAULT_COMMAND_LEASE_SECS: u64 = 60;
/// Command results the outbox holds (queued or reserved) at most: about 300 bytes each.
pub const DEFAULT_COMMAND_OUTBOX: usize = 100_000;

/// Commands to devices.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    pub enabled: bool,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub reply_timeout: Duration,
    /// Within it, a stopped pod's commands are settled by the others.
    pub lease: Duration,
    /// Commands tracked at most (the ledger's `max_entries`).
    pub max_pending: usize,
    /// Results queued or reserved at most.
    pub outbox_capacity: usize,
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
    fn protocol_settings_from_file_environment_and_flags() {
        let mut file: Settings = toml::from_str(
            "[protocols.teltonika]\nmax_frame_bytes = 2048\ncommand_codec = \"14\"\n\
             [protocols.gt06]\nmax_frame_bytes = 1000\n",
        )
        .unwrap();
        // The environment goes over the file (as `load` layers it)...
        for (p, k, v) in protocol_env(
            [
                ("AVLGATE_PROTOCOLS__GT06__MAX_FRAME_BYTES", "2000"),
                ("AVLGATE_PROTOCOLS__WIALON__MAX_FILE_BYTES", "4096"),
                ("AVLGATE_OTHER", "x"),
            ]
            .into_iter(),
        ) {
            file.protocols
                .get_or_insert_with(BTreeMap::new)
                .entry(p)
                .or_default()
                .insert(k, toml::Value::String(v));
        }
        // ...and flags over both.
        let flags = Settings {
            protocol_setting: Some(vec![parse_protocol_setting(
                "teltonika.max_frame_bytes=4096",
            )
            .unwrap()]),
            ..Default::default()
        };
        let c = flags.over(file).resolve().unwrap();
        let t = c.protocols.settings("teltonika");
        assert_eq!(
            (t.max_frame_bytes(), t.choice("command_codec")),
            (4096, "14")
        );
        assert_eq!(c.protocols.settings("gt06").max_frame_bytes(), 2000);
        assert_eq!(c.protocols.settings("wialon").bytes("max_file_bytes"), 4096);
        for bad in [
            "[protocols.nope]\nmax_frame_bytes = 1\n",
            "[protocols.gt06]\nwarp = 1\n",
            "[protocols.teltonika]\ncommand_codec = \"13\"\n",
            "[protocols.gt06]\nmax_frame_bytes = 1.5\n",
        ] {
            let s: Settings = toml::from_str(bad).unwrap();
            let e = s.resolve().unwrap_err().to_string();
            assert!(e.contains("protocol"), "{bad}: {e}");
        }
        assert!(parse_protocol_setting("gt06=1").is_err());
    }

    #[test]
    fn defaults() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:5027".parse().unwrap()]);
        assert_eq!(c.sink, SinkKind::Embedded);
        assert_eq!(c.format, Format::Protobuf);
        assert_eq!(c.embedded_mqtt_listen, "127.0.0.1:1883".parse().unwrap());
        assert_eq!(c.timeouts.login, Duration::from_secs(30));
        assert_eq!(c.timeouts.idle, Duration::from_secs(900));
        assert_eq!(c.protocols.settings("gt06").idle_timeout(), None);
        assert_eq!(c.conn_limits, ConnLimits::default());
        assert_eq!(c.conn_limits.max_connections, 200_000);
        assert_eq!(c.conn_limits.max_connections_per_ip, 5_000);
        assert_eq!(c.conn_limits.max_connect_rate_per_ip, 200);
        assert!(!c.proxy_protocol && c.tls.is_none() && c.imei_allowlist.is_none());
        assert_eq!(c.commands.max_pending, 1_000_000);
        let c = Settings {
            command_max_pending: Some(50_000),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.commands.max_pending, 50_000);
    }

    #[test]
    fn ops_settings_from_the_file_and_flags() {
        let file: Settings = toml::from_str(
            "idle_timeout_secs = 600\nproxy_protocol = true\n\
             max_connections_per_ip = 7\ndetect_timeout_secs = 12\n\
             [protocols.wialon]\nidle_timeout_secs = 120\n",
        )
        .unwrap();
        let c = file.clone().resolve().unwrap();
        assert_eq!(
            c.timeouts.login,
            Duration::from_secs(12),
            "old name still works"
        );
        assert_eq!(
            c.protocols.settings("wialon").idle_timeout(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(c.protocols.settings("teltonika").idle_timeout(), None);
        assert_eq!(c.timeouts.idle, Duration::from_secs(600));
        assert!(c.proxy_protocol);
        assert_eq!(c.conn_limits.max_connections_per_ip, 7);
        let flags = Settings {
            login_timeout_secs: Some(5),
            ..Default::default()
        };
        assert_eq!(
            flags.over(file).resolve().unwrap().timeouts.login,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn tls_needs_both_files() {
        let s = Settings {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(s.resolve().is_err());
    }

    #[test]
    fn proxy_protocol_flag_without_a_value() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            s: Settings,
        }
        let c = <Cli as clap::Parser>::try_parse_from([
            "x",
            "--proxy-protocol",
            "--max-connections",
            "9",
        ])
        .unwrap();
        assert_eq!(c.s.proxy_protocol, Some(true));
        assert_eq!(c.s.max_connections, Some(9));
        let c = <Cli as clap::Parser>::try_parse_from(["x", "--proxy-protocol=false"]).unwrap();
        assert_eq!(c.s.proxy_protocol, Some(false));
    }
}
