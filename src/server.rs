//! The gateway: sink, listeners (TCP and UDP on every address), session tasks, and the drain.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use socket2::Socket;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::abort::Abort;
use crate::config::{Config, SinkKind};
use crate::metrics as m;
use crate::net::limits::ConnLimiter;
use crate::net::tls::{self, ReloadingCert};
use crate::ops::Readiness;
use crate::session::allowlist::{AllowList, Verdict};
use crate::session::registry::Eviction;
use crate::session::{self, Shared};
use crate::sink::{self, Publisher, Sink};

pub use crate::broker::kafka_options;

/// Builds the configured sink. Its background tasks stop when `sink_shutdown` is cancelled,
/// which the gateway does only after every session has drained. A sink that can no longer
/// work (a Kafka producer that cannot be rebuilt) requests `abort`.
pub fn build_sink(
    config: &Config,
    sink_shutdown: CancellationToken,
    abort: &Abort,
) -> anyhow::Result<Arc<dyn Sink>> {
    let client_id = format!("avlgate-{}-{}", config.gateway_name, std::process::id());
    Ok(match config.sink {
        SinkKind::Stdout => Arc::new(sink::stdout::StdoutSink::new()),
        SinkKind::Mqtt => {
            let o = crate::broker::mqtt_options(config, &client_id)?;
            info!(host = %o.host, port = o.port, "publishing to MQTT broker");
            Arc::new(sink::mqtt::MqttSink::start(o, sink_shutdown))
        }
        SinkKind::Kafka => {
            let o = kafka_options(config, client_id);
            info!(brokers = %o.brokers, topic = %o.events_topic, "publishing to Kafka");
            Arc::new(
                sink::kafka::KafkaSink::new(&o, abort.clone())
                    .context("creating the Kafka producer")?,
            )
        }
        SinkKind::Embedded => {
            let listen = config.embedded_mqtt_listen;
            let auth = config.embedded_mqtt_auth.as_ref();
            sink::embedded::start_with(listen, 16 * 1024 * 1024, auth)?;
            let o = crate::broker::mqtt_options(config, &client_id)?;
            info!(
                "embedded MQTT broker on {listen}; watch events and command results with: mosquitto_sub -h {} -p {}{} -t '{p}/events/#' -t '{p}/command-results/#' -v",
                o.host,
                o.port,
                if auth.is_some() { " -u <user> -P <password>" } else { "" },
                p = config.topic_prefix
            );
            Arc::new(sink::mqtt::MqttSink::start(o, sink_shutdown))
        }
    })
}

/// A gateway bound to its addresses, not yet serving.
pub struct Gateway {
    tcp: Vec<TcpListener>,
    udp: Vec<Arc<UdpSocket>>,
    shared: Arc<Shared>,
    config: Config,
    sink_shutdown: CancellationToken,
    readiness: Arc<Readiness>,
    cert: Option<Arc<ReloadingCert>>,
    abort: Abort,
    /// The command flow, finished at the end of the drain.
    commands: Option<crate::command::CommandFlow>,
}

impl Gateway {
    /// Binds TCP and UDP on every listen address (UDP on the same port TCP got when the
    /// configured port is 0) and builds the sink.
    pub async fn bind(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let sink_shutdown = CancellationToken::new();
        let abort = Abort::new();
        let sink = build_sink(&config, sink_shutdown.clone(), &abort)?;
        Self::bind_with_sink(config, sink, shutdown, sink_shutdown, abort).await
    }

    /// Same, with a sink built by the caller (tests, `decode`). `abort` is what that sink and
    /// the command flow request when they cannot go on: the gateway then drains and
    /// [`Gateway::run`] returns an error.
    pub async fn bind_with_sink(
        config: Config,
        sink: Arc<dyn Sink>,
        shutdown: CancellationToken,
        sink_shutdown: CancellationToken,
        abort: Abort,
    ) -> anyhow::Result<Self> {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for addr in &config.listen {
            let v6_only = v6_only(*addr, &config.listen);
            let l = listen(*addr, v6_only).with_context(|| format!("listening on tcp {addr}"))?;
            let bound = l.local_addr()?;
            let u =
                bind_udp(bound, v6_only).with_context(|| format!("listening on udp {bound}"))?;
            info!(%bound, "accepting devices on TCP and UDP");
            tcp.push(l);
            udp.push(Arc::new(u));
        }
        let allowlist = match &config.imei_allowlist {
            Some(path) => {
                let l = AllowList::load(path)?;
                info!(path = %path.display(), imeis = l.len(), "IMEI allow-list in force");
                metrics::gauge!(m::ALLOWLIST_ENTRIES).set(l.len() as f64);
                Some(Arc::new(l))
            }
            None => None,
        };
        let (cert, acceptor) = match &config.tls {
            Some(files) => {
                let cert = Arc::new(ReloadingCert::load(&files.cert, &files.key)?);
                let acceptor = tls::acceptor(cert.clone())?;
                info!(cert = %files.cert.display(), "TLS accepted on the device port");
                (Some(cert), Some(acceptor))
            }
            None => (None, None),
        };
        let readiness = Arc::new(Readiness::new(sink.clone()));
        let publisher = Arc::new(Publisher::new(
            sink,
            config.format,
            config.in_flight.clone(),
        ));
        let mut shared = Shared::new(
            publisher,
            config.gateway_name.clone(),
            config.protocols.clone(),
            config.timeouts.clone(),
            shutdown,
        );
        shared.allowlist = allowlist;
        shared.conn_limiter = ConnLimiter::new(config.conn_limits.clone());
        shared.udp_limiter = session::udp::limiter(
            config.udp_limits.max_peers,
            config.udp_limits.max_peers_per_ip,
        );
        shared.proxy_protocol = config.proxy_protocol;
        shared.tls = acceptor;
        shared.command_reply_timeout = config.commands.reply_timeout;
        // Half the drain deadline for answers still expected; the rest for the command flow to
        // report them and the sink to flush.
        shared.drain_grace = config.drain_timeout / 2;
        shared.takeover = config.takeover;
        let commands = crate::command::start(
            &config,
            shared.publisher.clone(),
            shared.shutdown.clone(),
            &readiness,
            &abort,
        )
        .context("starting the command flow")?;
        shared.commands = commands.as_ref().map(|f| f.commands.clone());
        Ok(Gateway {
            tcp,
            udp,
            shared: Arc::new(shared),
            config,
            sink_shutdown,
            readiness,
            cert,
            abort,
            commands,
        })
    }

    /// What `/readyz` reports for this gateway.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.readiness.clone()
    }

    /// The shared session state (registry, limiter, …).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The TCP addresses bound (UDP listens on the same ones).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.tcp
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    pub fn publisher(&self) -> Arc<Publisher> {
        self.shared.publisher.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: stop accepting, let every
    /// session finish the frame in hand (its records delivered and acknowledged, or not
    /// acknowledged; a written command's answer awaited for half the drain deadline), settle
    /// the commands this pod holds (released, or reported), within the drain deadline; then
    /// stop the sink. When a part that cannot go on requested the abort, the same drain runs
    /// and the result is an error (the process exits non-zero and the orchestrator restarts
    /// it).
    pub async fn run(self) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let shutdown = self.shared.shutdown.clone();
        let mut accept_loops: Vec<JoinHandle<()>> = Vec::new();
        for l in self.tcp {
            accept_loops.push(tokio::spawn(accept_loop(
                l,
                self.shared.clone(),
                tracker.clone(),
            )));
        }
        for u in self.udp {
            let shared = self.shared.clone();
            tracker.spawn(session::udp::run(u, shared));
        }
        let watcher = tokio::spawn(watch_files(
            self.shared.clone(),
            self.cert.clone(),
            self.config.reload_interval,
        ));
        self.readiness.set_listening();
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = self.abort.requested() => {
                error!(reason = %self.abort.reason().unwrap_or_default(), "the gateway cannot go on; draining and exiting");
                shutdown.cancel();
            }
        }
        // Out of the load balancer first, then stop accepting.
        self.readiness.set_draining();
        info!("draining: no new connections; sessions finish the frame in hand");
        watcher.abort();
        for a in accept_loops {
            let _ = a.await;
        }
        tracker.close();
        let drain_started = tokio::time::Instant::now();
        if tokio::time::timeout(self.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(deadline = ?self.config.drain_timeout, "drain deadline passed with sessions still open; unacknowledged frames will be resent by their devices");
        }
        // The sessions are gone: what they held is released or reported; the flow's results
        // reach the broker before the sink stops.
        if let Some(flow) = self.commands {
            let left = self
                .config
                .drain_timeout
                .saturating_sub(drain_started.elapsed());
            flow.finish(left.max(std::time::Duration::from_secs(1)))
                .await;
        }
        // Whatever the sink client still buffers (frames abandoned by the drain deadline) gets
        // a last chance to reach the broker; those frames were not acknowledged either way.
        if let Err(e) = self
            .shared
            .publisher
            .sink()
            .flush(std::time::Duration::from_secs(5))
            .await
        {
            warn!(error = %e, "sink not flushed");
        }
        self.sink_shutdown.cancel();
        info!("drained");
        match self.abort.reason() {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    }
}

/// Pending connections the kernel queues for `accept` (capped by `net.core.somaxconn`). A
/// reconnect storm arrives faster than any accept loop; with tokio's default of 1024 a burst
/// overflows the queue and Linux silently drops the handshake's last ACK, leaving devices
/// believing they are connected to a socket nobody will ever accept.
const LISTEN_BACKLOG: i32 = 8192;

/// Whether the IPv6 listener `addr` takes IPv6 only: yes when the list also listens on IPv4 at
/// the same port, which a dual-stack `[::]` would otherwise claim too (the second bind failed
/// with "address in use"); no otherwise, so `[::]:5027` alone serves both families whatever
/// the host's `net.ipv6.bindv6only`.
fn v6_only(addr: SocketAddr, all: &[SocketAddr]) -> bool {
    addr.is_ipv6() && all.iter().any(|a| a.is_ipv4() && a.port() == addr.port())
}

/// A socket of `addr`'s family, IPv6 ones with IPV6_V6ONLY as `v6_only` says, not yet bound.
fn socket(addr: SocketAddr, kind: socket2::Type, v6_only: bool) -> std::io::Result<Socket> {
    // No protocol given: the kind's own (TCP for a stream, UDP for datagrams).
    let socket = Socket::new(socket2::Domain::for_address(addr), kind, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn listen(addr: SocketAddr, v6_only: bool) -> std::io::Result<TcpListener> {
    let socket = socket(addr, socket2::Type::STREAM, v6_only)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

fn bind_udp(addr: SocketAddr, v6_only: bool) -> std::io::Result<UdpSocket> {
    let socket = socket(addr, socket2::Type::DGRAM, v6_only)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let peer = crate::net::canonical(peer);
                // Admission happens here, before any per-connection task or buffer exists, so
                // a reconnect storm costs a refused connection one map lookup and a close.
                // Behind a PROXY-protocol balancer the socket address is the balancer's: the
                // per-address limits wait for the header.
                let ip = (!shared.proxy_protocol).then(|| peer.ip());
                let now = tokio::time::Instant::now().into_std();
                match shared.conn_limiter.admit(ip, now) {
                    Ok(permit) => {
                        metrics::counter!(m::CONNECTIONS_ACCEPTED, "transport" => "tcp")
                            .increment(1);
                        tracker.spawn(session::tcp::run(stream, peer, permit, shared.clone()));
                    }
                    Err(r) => {
                        metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => "tcp", "reason" => r.label()).increment(1);
                        tracing::trace!(%peer, reason = r.label(), "connection refused");
                        drop(stream);
                    }
                }
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Polls the allow-list, device-profile and TLS files for changes. A changed allow-list also
/// ends the sessions of devices it no longer lists; sessions pick up changed profiles with
/// their next frame.
async fn watch_files(
    shared: Arc<Shared>,
    cert: Option<Arc<ReloadingCert>>,
    every: std::time::Duration,
) {
    let profiles = shared.protocols.profiles.clone();
    if shared.allowlist.is_none() && cert.is_none() && profiles.path().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(list) = &shared.allowlist {
            match list.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    metrics::counter!(m::RELOADS, "file" => "allowlist", "outcome" => "ok")
                        .increment(1);
                    metrics::gauge!(m::ALLOWLIST_ENTRIES).set(list.len() as f64);
                    let revoked = shared.registry.evict_unless(
                        |imei, h| list.check(imei, h.peer.ip()) == Verdict::Allowed,
                        Eviction::Revoked,
                    );
                    info!(imeis = list.len(), revoked, "IMEI allow-list reloaded");
                }
                Err(e) => {
                    metrics::counter!(m::RELOADS, "file" => "allowlist", "outcome" => "failed")
                        .increment(1);
                    warn!(error = %e, "IMEI allow-list not reloaded; the previous one stays");
                }
            }
        }
        match profiles.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                metrics::counter!(m::RELOADS, "file" => "device_profiles", "outcome" => "ok")
                    .increment(1);
                info!("device profiles reloaded");
            }
            Err(e) => {
                metrics::counter!(m::RELOADS, "file" => "device_profiles", "outcome" => "failed")
                    .increment(1);
                warn!(error = %e, "device profiles not reloaded; the previous ones stay");
            }
        }
        if let Some(cert) = &cert {
            match cert.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    metrics::counter!(m::RELOADS, "file" => "tls", "outcome" => "ok").increment(1);
                    info!("TLS certificate reloaded");
                }
                Err(e) => {
                    metrics::counter!(m::RELOADS, "file" => "tls", "outcome" => "failed")
                        .increment(1);
                    warn!(error = %e, "TLS certificate not reloaded; the previous one stays");
                }
            }
        }
    }
}
