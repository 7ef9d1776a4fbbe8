//! Shared test support: a gateway on loopback, MQTT subscribers, a fault-injecting TCP proxy,
//! and a Mosquitto broker when one is installed. Everything binds 127.0.0.1 only. The
//! conformance tests' harness is [`conformance`].
#![allow(dead_code)]

pub mod commands;
pub mod conformance;
pub mod fleet;
pub mod kafka;
pub mod tansu;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use avlgate::config::{Config, Settings, SinkKind};
use avlgate::proto::TelemetryEvent;
use avlgate::server::Gateway;
use prost::Message;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const IMEI: &str = "356307042441013";

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub publisher: Arc<avlgate::sink::Publisher>,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
    /// What `/readyz` reports for it.
    pub readiness: Arc<avlgate::ops::Readiness>,
    /// Its session state (IMEI registry, limiter).
    pub shared: Arc<avlgate::session::Shared>,
}

impl TestGateway {
    pub async fn start(settings: Settings) -> TestGateway {
        let settings = Settings {
            listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
            gateway_name: settings.gateway_name.clone().or(Some("test-gw".into())),
            ..settings
        };
        let config: Config = settings.resolve().unwrap();
        let shutdown = CancellationToken::new();
        let gw = Gateway::bind(config, shutdown.clone()).await.unwrap();
        Self::run(gw, shutdown)
    }

    /// A gateway on loopback with a sink built by the test; `tweak` adjusts the resolved
    /// configuration (reload interval, …).
    pub async fn with_sink(
        settings: Settings,
        sink: Arc<dyn avlgate::sink::Sink>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestGateway {
        let settings = Settings {
            listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
            gateway_name: Some("test-gw".into()),
            sink: Some(SinkKind::Stdout),
            ..settings
        };
        let mut config: Config = settings.resolve().unwrap();
        // The stdout sink above only avoids starting a broker; the test's sink gets protobuf.
        config.format = avlgate::sink::Format::Protobuf;
        tweak(&mut config);
        let shutdown = CancellationToken::new();
        let gw = Gateway::bind_with_sink(
            config,
            sink,
            shutdown.clone(),
            CancellationToken::new(),
            avlgate::abort::Abort::new(),
        )
        .await
        .unwrap();
        Self::run(gw, shutdown)
    }

    /// A gateway publishing to Kafka at `settings.kafka_brokers` (commands on), with its
    /// Kafka sink handed to the test as well (generation, health).
    pub async fn with_kafka_sink(
        settings: Settings,
    ) -> (TestGateway, avlgate::sink::kafka::KafkaSink) {
        let settings = Settings {
            listen: Some(vec!["127.0.0.1:0".parse().unwrap()]),
            gateway_name: settings.gateway_name.clone().or(Some("test-gw".into())),
            sink: Some(SinkKind::Kafka),
            ..settings
        };
        let config: Config = settings.resolve().unwrap();
        let abort = avlgate::abort::Abort::new();
        let o = avlgate::server::kafka_options(&config, format!("avlgate-{}", rand_id()));
        let sink = avlgate::sink::kafka::KafkaSink::new(&o, abort.clone()).unwrap();
        let shutdown = CancellationToken::new();
        let gw = Gateway::bind_with_sink(
            config,
            Arc::new(sink.clone()),
            shutdown.clone(),
            CancellationToken::new(),
            abort,
        )
        .await
        .unwrap();
        (Self::run(gw, shutdown), sink)
    }

    fn run(gw: Gateway, shutdown: CancellationToken) -> TestGateway {
        let addr = gw.local_addrs()[0];
        let publisher = gw.publisher();
        let readiness = gw.readiness();
        let shared = gw.shared();
        let handle = tokio::spawn(gw.run());
        TestGateway {
            addr,
            publisher,
            shutdown,
            handle,
            readiness,
            shared,
        }
    }

    /// Waits until `/readyz` would say ready (at most 15 s).
    pub async fn ready(&self) -> bool {
        let r = self.readiness.clone();
        eventually(15, move || {
            let r = r.clone();
            async move { r.check().is_ok() }
        })
        .await
    }

    /// Serves `/metrics`, `/healthz`, `/readyz` for this gateway on a loopback port.
    pub async fn ops(&self) -> SocketAddr {
        let prometheus = avlgate::ops::install_prometheus().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(avlgate::ops::serve(
            listener,
            prometheus,
            self.readiness.clone(),
            CancellationToken::new(),
        ));
        addr
    }

    /// A gateway publishing to the MQTT broker at `broker`.
    pub async fn mqtt(broker: SocketAddr) -> TestGateway {
        Self::start(Settings {
            sink: Some(SinkKind::Mqtt),
            mqtt_url: Some(format!("mqtt://{broker}")),
            delivery_timeout_secs: Some(30),
            ..Default::default()
        })
        .await
    }

    /// A gateway publishing to Kafka at `bootstrap` with a short delivery deadline.
    pub async fn kafka(bootstrap: &str, delivery_timeout_secs: u64) -> TestGateway {
        Self::start(Settings {
            sink: Some(SinkKind::Kafka),
            kafka_brokers: Some(bootstrap.into()),
            delivery_timeout_secs: Some(delivery_timeout_secs),
            ..Default::default()
        })
        .await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("drain finished")
            .unwrap()
            .unwrap();
    }
}

/// An MQTT subscriber collecting `(topic, payload)`.
pub struct Subscriber {
    pub rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    _client: AsyncClient,
}

impl Subscriber {
    /// Connects and subscribes to `filter`; returns once the broker acknowledged the
    /// subscription.
    pub async fn connect(broker: SocketAddr, filter: &str) -> Subscriber {
        Self::connect_with(broker, filter, &format!("test-sub-{}", rand_id()), true).await
    }

    /// With `clean == false` the broker keeps the subscription and queues QoS 1 messages
    /// while the subscriber is away (a durable consumer).
    pub async fn connect_with(
        broker: SocketAddr,
        filter: &str,
        client_id: &str,
        clean: bool,
    ) -> Subscriber {
        let o = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        Self::connect_options(o, filter, clean).await
    }

    /// Logs in with a user name and password.
    pub async fn connect_as(
        broker: SocketAddr,
        filter: &str,
        username: &str,
        password: &str,
    ) -> Subscriber {
        let mut o = MqttOptions::new(
            format!("test-sub-{}", rand_id()),
            broker.ip().to_string(),
            broker.port(),
        );
        o.set_credentials(username, password);
        Self::connect_options(o, filter, true).await
    }

    async fn connect_options(mut o: MqttOptions, filter: &str, clean: bool) -> Subscriber {
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_max_packet_size(32 * 1024 * 1024, 32 * 1024 * 1024);
        let (client, mut el) = AsyncClient::new(o, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let resubscribe = client.clone();
        let filter_again = filter.to_string();
        tokio::spawn(async move {
            let mut connected_once = false;
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        // A broker that lost our session (restart without persistence) needs
                        // the subscription again.
                        if connected_once && !ack.session_present {
                            let _ =
                                resubscribe.try_subscribe(filter_again.clone(), QoS::AtLeastOnce);
                        }
                        connected_once = true;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv())
            .await
            .expect("SUBACK in time");
        Subscriber {
            rx,
            _client: client,
        }
    }

    /// Publishes with QoS 1 (as a backend would).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self._client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// The next message, within `secs`.
    pub async fn next(&mut self, secs: u64) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(Duration::from_secs(secs), self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event decoded from protobuf.
    pub async fn next_event(&mut self, secs: u64) -> Option<(String, TelemetryEvent)> {
        let (t, p) = self.next(secs).await?;
        Some((
            t,
            TelemetryEvent::decode(&p[..]).expect("payload is a protobuf TelemetryEvent"),
        ))
    }

    /// Asserts nothing arrives for `ms`.
    pub async fn assert_quiet(&mut self, ms: u64) {
        if let Ok(Some((t, _))) =
            tokio::time::timeout(Duration::from_millis(ms), self.rx.recv()).await
        {
            panic!("unexpected message on {t}");
        }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// Starts the embedded broker (rumqttd) on a free loopback port.
pub fn embedded_broker() -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    avlgate::sink::embedded::start(addr, 16 * 1024 * 1024).unwrap();
    addr
}

/// A simulated device over TCP.
pub struct Device {
    pub stream: TcpStream,
}

impl Device {
    pub async fn connect(addr: SocketAddr) -> Device {
        Device {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads exactly `n` bytes within `secs`, or `None` (timeout or closed).
    pub async fn read_exact(&mut self, n: usize, secs: u64) -> Option<Vec<u8>> {
        let mut b = vec![0; n];
        match tokio::time::timeout(Duration::from_secs(secs), self.stream.read_exact(&mut b)).await
        {
            Ok(Ok(_)) => Some(b),
            _ => None,
        }
    }

    /// Reads one `\n`-terminated line within `secs`.
    pub async fn read_line(&mut self, secs: u64) -> Option<String> {
        let mut out = Vec::new();
        let fut = async {
            let mut b = [0u8; 1];
            loop {
                match self.stream.read(&mut b).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {
                        out.push(b[0]);
                        if b[0] == b'\n' {
                            return Some(String::from_utf8_lossy(&out).into_owned());
                        }
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .ok()
            .flatten()
    }

    /// True when the gateway closed the connection within `secs`.
    pub async fn closed_within(&mut self, secs: u64) -> bool {
        let mut b = [0u8; 64];
        let fut = async {
            loop {
                match self.stream.read(&mut b).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(secs), fut)
            .await
            .unwrap_or(false)
    }
}

/// A loopback TCP proxy in front of a broker that the test can cut and restore, to simulate a
/// broker outage without touching the broker.
pub struct FaultProxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: CancellationToken,
    generation: Arc<std::sync::Mutex<CancellationToken>>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr, open: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open_flag = Arc::new(AtomicBool::new(open));
        let generation = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let cut = CancellationToken::new();
        let (o, g, stop) = (open_flag.clone(), generation.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => match a { Ok(v) => v, Err(_) => continue },
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let token = g.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            open: open_flag,
            cut,
            generation,
        }
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut g = self.generation.lock().unwrap();
        g.cancel();
        *g = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut.cancel();
        self.generation.lock().unwrap().cancel();
    }
}

/// A Mosquitto broker on a free loopback port, if the binary is installed. In CI
/// (`CI=true`) a missing Mosquitto is a failure: `.ci/run` installs it.
pub struct Mosquitto {
    pub addr: SocketAddr,
    child: Child,
    _dir: std::path::PathBuf,
    bin: &'static str,
    conf: std::path::PathBuf,
}

impl Mosquitto {
    pub fn start() -> Option<Mosquitto> {
        Self::start_with(false)
    }

    /// With `persistent`, the broker keeps sessions and queued messages across a restart
    /// (saved on SIGTERM), as a production broker does.
    pub fn start_with(persistent: bool) -> Option<Mosquitto> {
        let bin = [
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto",
            "/usr/local/sbin/mosquitto",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        let Some(bin) = bin else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("mosquitto is not installed; .ci/run installs it");
            }
            eprintln!("mosquitto not installed; skipping (apt-get install mosquitto)");
            return None;
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("avlgate-mosq-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        // Started as root, mosquitto drops to its own user: it must be able to write here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let conf = dir.join("mosquitto.conf");
        let mut text = format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 100000\n");
        if persistent {
            text.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            ));
        }
        std::fs::write(&conf, text).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Self::spawn(bin, &conf, addr);
        Some(Mosquitto {
            addr,
            child,
            _dir: dir,
            bin,
            conf,
        })
    }

    fn spawn(bin: &str, conf: &std::path::Path, addr: SocketAddr) -> Child {
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("mosquitto did not start on {addr}");
    }

    /// Stops the broker cleanly (SIGTERM: it saves its state when persistent).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) {
        self.child = Self::spawn(self.bin, &self.conf, self.addr);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: `(status, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` every 50 ms until it is true or `secs` passed; returns the last answer.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decodes the events a [`avlgate::sink::memory::MemorySink`] received (protobuf format).
pub fn memory_events(sink: &avlgate::sink::memory::MemorySink) -> Vec<TelemetryEvent> {
    sink.take()
        .into_iter()
        .map(|m| TelemetryEvent::decode(&m.payload[..]).expect("protobuf event"))
        .collect()
}

/// A Teltonika TCP login for `imei`.
pub fn teltonika_login(imei: &str) -> Vec<u8> {
    let mut v = (imei.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(imei.as_bytes());
    v
}
