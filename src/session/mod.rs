//! Sessions: one task per TCP connection (`tcp`) or per UDP peer (`udp`). Both run the same
//! [`Core`]: feed bytes to the protocol, publish each frame's events, wait for the sink's
//! confirmation, and only then write the frame's reply (the ACK).

pub mod allowlist;
pub mod registry;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn, Span};

use crate::command::messages::{SessionMsg, SessionReceiver, Update};
use crate::command::session::Tracker;
use crate::command::Commands;
use crate::event::{attr, event_id, timestamp, Stamp};
use crate::metrics as m;
use crate::net::limits::{ConnLimiter, ConnLimits};
use crate::proto::{EventKind, Protocol, TelemetryEvent, Transport};
use crate::protocol::{self, Action, Frame, ProtocolConfig, ProtocolSession};
use crate::sink::{Publisher, SinkError};
use crate::throttle::Throttle;
use allowlist::{AllowList, Verdict};
use registry::{Eviction, Registry, SessionHandle, Takeover};
use tokio_rustls::TlsAcceptor;

/// Timeouts a session enforces.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// From accept to a logged-in device (PROXY header, TLS handshake, detection, login):
    /// past it the connection is closed.
    pub login: Duration,
    /// The default idle timeout: nothing received for this long closes a TCP connection (a
    /// protocol's `idle_timeout_secs` setting overrides it).
    pub idle: Duration,
    /// UDP peers are forgotten after this much silence.
    pub udp_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let idle = Duration::from_secs(900);
        Timeouts {
            login: Duration::from_secs(30),
            idle,
            udp_idle: Duration::from_secs(300),
        }
    }
}

/// Default of `--max-udp-peers`.
pub const DEFAULT_MAX_UDP_PEERS: usize = 200_000;
/// Default of `--max-udp-peers-per-ip` (as for TCP: carriers NAT many trackers behind one
/// address, each with its own source port).
pub const DEFAULT_MAX_UDP_PEERS_PER_IP: u32 = 5_000;

/// What every session shares.
pub struct Shared {
    pub publisher: Arc<Publisher>,
    /// This gateway instance's name (the pod name), stamped on every event.
    pub gateway: String,
    /// Every protocol's settings and the device profiles.
    pub protocols: ProtocolConfig,
    pub timeouts: Timeouts,
    /// Cancelled when the gateway drains: sessions finish the frame in hand and stop.
    pub shutdown: CancellationToken,
    /// IMEI → live session (one per IMEI).
    pub registry: Arc<Registry>,
    /// `None`: every device may log in.
    pub allowlist: Option<Arc<AllowList>>,
    /// Admission of new TCP connections.
    pub conn_limiter: ConnLimiter,
    /// Admission of new UDP peers (pod-wide and per source address).
    pub udp_limiter: ConnLimiter,
    /// Every TCP connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// TLS on the device port, when configured.
    pub tls: Option<TlsAcceptor>,
    /// The command dispatcher, when commands are enabled.
    pub commands: Option<Commands>,
    /// How long a written command waits for the device's answer.
    pub command_reply_timeout: Duration,
    /// During a drain, how long a session whose written command awaits the device's answer
    /// keeps serving the device for that answer.
    pub drain_grace: Duration,
    /// When a new login of an IMEI may replace its live TCP session.
    pub takeover: Takeover,
}

impl Shared {
    /// Shared state with no allow-list, no PROXY protocol, no TLS and default connection
    /// limits; callers set the rest.
    pub fn new(
        publisher: Arc<Publisher>,
        gateway: String,
        protocols: ProtocolConfig,
        timeouts: Timeouts,
        shutdown: CancellationToken,
    ) -> Self {
        Shared {
            publisher,
            gateway,
            protocols,
            timeouts,
            shutdown,
            registry: Arc::new(Registry::new()),
            allowlist: None,
            conn_limiter: ConnLimiter::new(ConnLimits::default()),
            udp_limiter: udp::limiter(DEFAULT_MAX_UDP_PEERS, DEFAULT_MAX_UDP_PEERS_PER_IP),
            proxy_protocol: false,
            tls: None,
            commands: None,
            command_reply_timeout: Duration::from_secs(60),
            drain_grace: Duration::from_secs(12),
            takeover: Takeover::default(),
        }
    }

    /// Whether device `id` may log in from `ip`: a valid device id ([`crate::device_id`]),
    /// and the allow-list (if any) lists it for that address. `Err` is the refusal's `reason`
    /// label: `invalid_id`, `not_allowed`, `wrong_network`.
    pub fn admit(&self, id: &str, ip: std::net::IpAddr) -> Result<(), &'static str> {
        if !crate::device_id::is_valid(id) {
            return Err("invalid_id");
        }
        match self.allowlist.as_ref().map(|l| l.check(id, ip)) {
            None | Some(Verdict::Allowed) => Ok(()),
            Some(Verdict::NotListed) => Err("not_allowed"),
            Some(Verdict::WrongNetwork) => Err("wrong_network"),
        }
    }

    /// Largest buffer a session of `module` may hold: its frame cap plus one read's worth.
    pub fn max_buffer_bytes(&self, module: &protocol::ProtocolModule) -> usize {
        self.protocols
            .settings(module.name())
            .max_frame_bytes()
            .saturating_add(64 * 1024)
    }

    /// The idle timeout of a TCP session of `module`: its own setting, else the default.
    pub fn idle_timeout(&self, module: &protocol::ProtocolModule) -> Duration {
        self.protocols
            .settings(module.name())
            .idle_timeout()
            .unwrap_or(self.timeouts.idle)
    }
}

/// Writes replies to the device.
pub trait Replier {
    fn reply(
        &mut self,
        bytes: &[u8],
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// Why a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The device closed the connection.
    PeerClosed,
    /// Nothing arrived within the idle timeout.
    Idle,
    /// The protocol refused the stream (bad login, lost framing).
    Protocol,
    /// The sink did not confirm a frame: it was not acknowledged, the device will resend.
    Undelivered,
    /// A socket error.
    Io,
    /// The gateway is draining.
    Shutdown,
    /// No login within the login timeout.
    LoginTimeout,
    /// The IMEI is not on the allow-list.
    NotAllowed,
    /// The device logged in again on another connection.
    Replaced,
    /// The IMEI was taken off the allow-list while connected.
    Revoked,
    /// A UDP peer whose datagrams named no allowed device: retired once its queue is empty.
    Unidentified,
    /// The IMEI's live session may not be replaced (`--session-takeover`).
    TakeoverRefused,
}

impl End {
    pub fn label(self) -> &'static str {
        match self {
            End::PeerClosed => "peer_closed",
            End::Idle => "idle",
            End::Protocol => "protocol",
            End::Undelivered => "undelivered",
            End::Io => "io",
            End::Shutdown => "shutdown",
            End::LoginTimeout => "login_timeout",
            End::NotAllowed => "not_allowed",
            End::Replaced => "replaced",
            End::Revoked => "revoked",
            End::Unidentified => "unidentified",
            End::TakeoverRefused => "takeover_refused",
        }
    }
}

/// The protocol-independent part of a session.
pub struct Core {
    pub shared: Arc<Shared>,
    pub proto: Box<dyn ProtocolSession>,
    pub protocol: Protocol,
    pub transport: Transport,
    /// `peer` as events carry it, formatted once (the address itself is the handle's).
    peer_label: Box<str>,
    pub imei: Option<String>,
    pub span: Span,
    /// When set, decode errors are also collected here (for `avlgate decode`). Boxed: every
    /// connection's task carries the field.
    pub errors: Option<Box<Vec<String>>>,
    /// This session as the registry knows it (TCP sessions are registered once logged in).
    pub handle: SessionHandle,
    /// The module, for its login-refusal reply.
    module: &'static protocol::ProtocolModule,
    /// UDP: the current device is not on the allow-list; its datagrams are dropped.
    denied: bool,
    /// The connection relays many devices' frames ([`Frame::relayed`]): it has no identity
    /// of its own, and counts as logged in from its first relayed frame on (answered whether
    /// or not its device was admitted).
    relaying: bool,
    /// Commands for this device (once identified, when commands are enabled and the
    /// protocol takes them on this transport).
    pub commands: Tracker,
    /// The dispatcher's channel to this session, taken by the session loop.
    command_rx: Option<SessionReceiver>,
    /// Registered with the dispatcher under this IMEI.
    command_imei: Option<String>,
    /// The gateway drains: commands handed over from now on go straight back.
    draining: bool,
}

/// A UDP device is written to only while its latest datagram is this recent: the address it
/// came from (often a carrier NAT's mapping) is taken to reach the device only that long.
pub const UDP_REACHABLE: Duration = Duration::from_secs(30);

impl Core {
    pub fn new(
        shared: Arc<Shared>,
        module: &'static protocol::ProtocolModule,
        transport: Transport,
        peer: SocketAddr,
        span: Span,
    ) -> Self {
        let proto = module.new_session(transport, &shared.protocols);
        let shared_reply_timeout = shared.command_reply_timeout;
        let handle = SessionHandle::new(
            shared.registry.next_id(),
            module.protocol(),
            transport,
            peer,
        );
        Core {
            shared,
            proto,
            protocol: module.protocol(),
            transport,
            peer_label: peer.to_string().into(),
            imei: None,
            span,
            errors: None,
            handle,
            module,
            denied: false,
            relaying: false,
            commands: Tracker::new(shared_reply_timeout),
            command_rx: None,
            command_imei: None,
            draining: false,
        }
    }

    /// The device's address (the PROXY header's source behind a load balancer).
    pub fn peer(&self) -> SocketAddr {
        self.handle.peer
    }

    /// Whether an allowed device identified itself on this session.
    pub fn identified(&self) -> bool {
        self.imei.is_some() && !self.denied
    }

    /// Whether the connection is past its login: a device identified itself, or it sent a
    /// relayed frame ([`Frame::relayed`]). Until then the login timeout applies.
    pub fn logged_in(&self) -> bool {
        self.imei.is_some() || self.relaying
    }

    /// Resolves when the session was evicted (replaced by a newer login of its IMEI, or
    /// revoked by an allow-list reload); says why.
    pub async fn evicted(&self) -> End {
        self.handle.cancel.cancelled().await;
        self.eviction_end()
    }

    /// How a session whose token was cancelled ends: revoked, or replaced by a newer one.
    pub fn eviction_end(&self) -> End {
        match self.handle.eviction() {
            Some(Eviction::Revoked) => End::Revoked,
            _ => End::Replaced,
        }
    }

    /// A device identified itself as `imei`: check the id, the allow-list and its networks,
    /// and (TCP) take over the IMEI's registry slot as the takeover policy allows. `Err`: the
    /// login is refused and the session ends.
    async fn login<R: Replier>(&mut self, imei: String, out: &mut R) -> Result<bool, End> {
        if let Err(reason) = self.shared.admit(&imei, self.handle.peer.ip()) {
            metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => transport_label(self.transport), "reason" => reason).increment(1);
            debug!(id = %crate::device_id::excerpt(&imei), reason, "login refused");
            if let Some(previous) = self.imei.take() {
                self.shared.registry.remove(&previous, self.handle.id);
            }
            if self.transport == Transport::Tcp {
                self.refuse_login(out).await?;
                return Err(End::NotAllowed);
            }
            self.denied = true;
            return Ok(false);
        }
        self.denied = false;
        self.span.record("imei", imei.as_str());
        debug!(%imei, "device identified");
        if self.transport == Transport::Tcp {
            if let Some(previous) = self.imei.as_deref().filter(|p| *p != imei) {
                self.shared.registry.remove(previous, self.handle.id);
            }
            let now = std::time::Instant::now();
            self.handle.touch(now);
            match self.shared.registry.register(
                &imei,
                self.handle.clone(),
                self.shared.takeover,
                now,
            ) {
                Ok(Some(old)) => {
                    metrics::counter!(m::SESSIONS_REPLACED, "protocol" => self.label())
                        .increment(1);
                    debug!(%imei, old_peer = %old.peer, "replaced the device's previous session");
                }
                Ok(None) => {}
                Err(live) => {
                    metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => "tcp", "reason" => "session_active").increment(1);
                    debug!(%imei, live_peer = %live.peer, live_idle_secs = live.idle.as_secs(), policy = ?self.shared.takeover.policy, "login refused: the IMEI's live session may not be replaced");
                    self.imei = None;
                    self.refuse_login(out).await?;
                    return Err(End::TakeoverRefused);
                }
            }
        }
        if self.module.command_transports().contains(&self.transport) {
            self.commands_up(&imei).await;
        }
        Ok(true)
    }

    /// The protocol's login refusal, where it has one.
    async fn refuse_login<R: Replier>(&mut self, out: &mut R) -> Result<(), End> {
        if let Some(reply) = self.module.login_rejected_reply(self.transport) {
            self.reply(out, &reply).await?;
        }
        Ok(())
    }

    /// Tells the dispatcher this session takes commands for `imei`.
    async fn commands_up(&mut self, imei: &str) {
        let Some(cmds) = self.shared.commands.clone() else {
            return;
        };
        if self.command_imei.as_deref() == Some(imei) {
            return;
        }
        if let Some(previous) = self.command_imei.take() {
            // A UDP peer whose datagrams now name another device: the first one's commands go
            // back.
            let updates = self
                .commands
                .close("the device's address was taken by another device");
            cmds.updates(self.handle.id, updates).await;
            cmds.session_down(&previous, self.handle.id).await;
        }
        self.command_rx = cmds
            .session_up(imei, self.handle.id, SystemTime::now())
            .await;
        self.command_imei = Some(imei.to_string());
    }

    /// The channel commands for this session arrive on (once, after the login).
    pub fn take_command_rx(&mut self) -> Option<SessionReceiver> {
        self.command_rx.take()
    }

    /// Reports the command tracker's updates to the dispatcher (waiting while its queue is
    /// full: an update is never dropped).
    async fn report(&self, updates: Vec<Update>) {
        if updates.is_empty() {
            return;
        }
        if let Some(cmds) = &self.shared.commands {
            cmds.updates(self.handle.id, updates).await;
        }
    }

    /// A message from the dispatcher, then the writes it allows.
    pub async fn on_command_msg<R: Replier>(
        &mut self,
        msg: SessionMsg,
        out: &mut R,
    ) -> Result<(), End> {
        match msg {
            SessionMsg::Deliver(c) if self.draining => {
                self.report(vec![Update::NotWritten {
                    command_id: c.command_id,
                }])
                .await;
            }
            SessionMsg::Deliver(c) => {
                let updates = self.commands.push(c);
                self.report(updates).await;
            }
            SessionMsg::Go(id) => self.commands.go(&id),
            SessionMsg::Withdraw(id) => self.commands.withdraw(&id),
            SessionMsg::Superseded => {
                let updates = self.commands.give_back();
                self.report(updates).await;
            }
        }
        self.write_commands(out).await
    }

    /// Gives up on answers past the reply timeout, then writes what that allows.
    pub async fn expire_commands<R: Replier>(&mut self, out: &mut R) -> Result<(), End> {
        let updates = self.commands.expire(std::time::Instant::now());
        self.report(updates).await;
        self.write_commands(out).await
    }

    /// The gateway drains: commands not yet written go back at once (another pod or this
    /// pod's next instance delivers them); written ones may still get their answer.
    pub async fn start_draining(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        let updates = self.commands.give_back();
        self.report(updates).await;
    }

    /// Writes the commands the protocol allows now (a UDP device only while it is reachable
    /// at its address, see [`UDP_REACHABLE`]).
    pub async fn write_commands<R: Replier>(&mut self, out: &mut R) -> Result<(), End> {
        if self.commands.is_idle() {
            return Ok(());
        }
        if self.transport == Transport::Udp
            && self.handle.idle_for(std::time::Instant::now()) > UDP_REACHABLE
        {
            return Ok(());
        }
        let profile = self
            .shared
            .protocols
            .profiles
            .resolve(self.protocol, self.imei.as_deref());
        loop {
            let (bytes, updates) = self
                .commands
                .next_write(self.proto.as_mut(), Some(&profile.commands));
            self.report(updates).await;
            let Some(bytes) = bytes else {
                return Ok(());
            };
            if let Err(e) = out.reply(&bytes).await {
                debug!(error = %e, "cannot write command");
                // Not written: it goes back with the others when the session closes.
                return Err(End::Io);
            }
            let updates = self.commands.written(std::time::Instant::now());
            self.report(updates).await;
        }
    }

    /// Decodes and handles every complete frame in `buf`. Returns `Err` when the session must
    /// end.
    pub async fn process<R: Replier>(
        &mut self,
        buf: &mut BytesMut,
        out: &mut R,
    ) -> Result<(), End> {
        loop {
            // Backpressure before decoding: while the broker holds all it may, the bytes stay
            // raw in `buf` (a frame's bytes, not its decoded and encoded records).
            if !buf.is_empty() && self.shared.publisher.saturated() {
                tokio::select! {
                    _ = self.shared.shutdown.cancelled() => return Err(End::Shutdown),
                    why = self.evicted() => return Err(why),
                    _ = self.shared.publisher.wait_for_room() => {}
                }
            }
            let now = SystemTime::now();
            match self.proto.decode(buf, now) {
                Ok(None) => return Ok(()),
                Ok(Some(frame)) => {
                    let close = frame.close;
                    self.handle_frame(frame, now, out).await?;
                    if close {
                        return Err(End::Protocol);
                    }
                }
                Err(e) => {
                    metrics::counter!(m::DECODE_ERRORS, "protocol" => self.label(), "kind" => e.kind.label()).increment(1);
                    // Anyone can send malformed frames: one WARN a second, the rest at debug.
                    static BAD_FRAMES: Throttle = Throttle::new(Duration::from_secs(1));
                    let close = e.action == Action::Close;
                    match BAD_FRAMES.allow() {
                        Some(held) => {
                            warn!(kind = e.kind.label(), detail = %e.detail, close, held_back = held, "bad frame (at most one line a second; avlgate_decode_errors_total counts them all)")
                        }
                        None => {
                            debug!(kind = e.kind.label(), detail = %e.detail, close, "bad frame")
                        }
                    }
                    if let Some(errors) = self.errors.as_mut() {
                        errors.push(format!(
                            "{} ({})",
                            e,
                            if e.action == Action::Close {
                                "connection closed"
                            } else {
                                "frame skipped"
                            }
                        ));
                    }
                    if let Some(reply) = &e.reply {
                        self.reply(out, reply).await?;
                    }
                    if e.action == Action::Close {
                        return Err(End::Protocol);
                    }
                }
            }
            if buf.len() > self.shared.max_buffer_bytes(self.module) {
                warn!(
                    len = buf.len(),
                    "buffer over the largest frame size; closing"
                );
                return Err(End::Protocol);
            }
        }
    }

    async fn handle_frame<R: Replier>(
        &mut self,
        mut frame: Frame,
        now: SystemTime,
        out: &mut R,
    ) -> Result<(), End> {
        metrics::counter!(m::FRAMES_DECODED, "protocol" => self.label()).increment(1);
        for kind in &frame.lenient {
            metrics::counter!(m::LENIENT_INPUT, "protocol" => self.label(), "kind" => *kind)
                .increment(1);
        }
        self.handle.touch(std::time::Instant::now());
        let ip = self.handle.peer.ip();
        let relayed = frame.relayed.take();
        if let Some(device) = relayed.as_deref() {
            // One frame of one of the many devices this connection relays: admitted per
            // frame; never registered (see `Frame::relayed`).
            self.relaying = true;
            if let Err(reason) = self.shared.admit(device, ip) {
                metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => transport_label(self.transport), "reason" => reason).increment(1);
                debug!(id = %crate::device_id::excerpt(device), reason, "relayed device refused: its records dropped, the frame answered");
                frame.events.clear();
            }
        } else {
            if self.denied && frame.login.is_none() {
                // UDP: a refused device may have been put on the list since.
                if let Some(imei) = self
                    .proto
                    .imei()
                    .filter(|i| self.shared.admit(i, ip).is_ok())
                {
                    frame.login = Some(imei.to_string());
                }
            }
            if let Some(imei) = frame.login.take() {
                if !self.login(imei.clone(), out).await? {
                    return Ok(());
                }
                if self.transport == Transport::Tcp && self.imei.is_none() {
                    let mut opened = self.lifecycle_event(EventKind::SessionOpened, &imei, now);
                    opened.set("peer_protocol", attr::string(self.label()));
                    frame.events.insert(0, opened);
                }
                self.imei = Some(imei);
            } else if let Some(Err(reason)) = self.imei.as_deref().map(|i| self.shared.admit(i, ip))
            {
                // Taken off the list (or its networks) since the login: no ACK for this
                // frame, and a TCP session ends (the device will find itself refused when it
                // logs in again).
                metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => transport_label(self.transport), "reason" => reason).increment(1);
                if self.transport == Transport::Tcp {
                    return Err(End::Revoked);
                }
                self.imei = None;
                self.denied = true;
            }
            if self.denied {
                // UDP datagrams of a device that is not allowed: neither published nor
                // answered.
                return Ok(());
            }
        }
        // Answers to commands count as soon as they arrive: a device never sends an answer
        // twice, so one must not wait on the broker (nor be lost if the frame is not delivered).
        if !frame.answers.is_empty() {
            let updates = self.commands.on_answers(&frame.answers);
            self.report(updates).await;
        }
        if !frame.events.is_empty() {
            let Some(imei) = relayed.or_else(|| self.imei.clone()) else {
                warn!("the protocol produced events before the device identified itself; dropped");
                return Ok(());
            };
            metrics::counter!(m::RECORDS_DECODED, "protocol" => self.label())
                .increment(frame.events.len() as u64);
            let stamp = Stamp {
                imei: &imei,
                protocol: self.protocol,
                transport: self.transport,
                received_at: timestamp(now),
                peer: &self.peer_label,
                gateway: &self.shared.gateway,
            };
            stamp.apply(&mut frame.events, frame.digest);
            if let Err(err) = self.shared.publisher.publish(&frame.events).await {
                warn!(error = %err, records = frame.events.len(), "frame not delivered; not acknowledged");
                return Err(End::Undelivered);
            }
        }
        if let Some(reply) = &frame.reply {
            self.reply(out, reply).await?;
            metrics::counter!(m::ACKS_SENT, "protocol" => self.label()).increment(1);
        }
        self.write_commands(out).await?;
        Ok(())
    }

    async fn reply<R: Replier>(&self, out: &mut R, bytes: &[u8]) -> Result<(), End> {
        out.reply(bytes).await.map_err(|e| {
            debug!(error = %e, "cannot write reply");
            End::Io
        })?;
        metrics::counter!(m::REPLIES_SENT, "protocol" => self.label()).increment(1);
        Ok(())
    }

    fn lifecycle_event(&self, kind: EventKind, imei: &str, now: SystemTime) -> TelemetryEvent {
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let digest = protocol::digest(
            self.protocol,
            &[
                imei.as_bytes(),
                &(kind as i32).to_be_bytes(),
                self.peer_label.as_bytes(),
                &nanos.to_be_bytes(),
            ],
        );
        TelemetryEvent {
            event_id: event_id(imei, digest, 0),
            protocol: self.protocol as i32,
            kind: kind as i32,
            device_time: None,
            ..Default::default()
        }
    }

    /// Publishes the session-closed event (TCP sessions of identified devices), best effort.
    pub async fn close(&mut self, why: End) {
        metrics::counter!(m::SESSIONS_CLOSED, "protocol" => self.label(), "transport" => transport_label(self.transport), "reason" => why.label()).increment(1);
        debug!(reason = why.label(), "session closed");
        let updates = self.commands.close(&match why {
            End::Shutdown => "the gateway drained".to_string(),
            other => format!("the session ended ({})", other.label()),
        });
        self.report(updates).await;
        if let (Some(cmds), Some(imei)) = (self.shared.commands.clone(), self.command_imei.take()) {
            cmds.session_down(&imei, self.handle.id).await;
        }
        let Some(imei) = self.imei.clone() else {
            return;
        };
        self.shared.registry.remove(&imei, self.handle.id);
        if self.transport != Transport::Tcp {
            return;
        }
        let now = SystemTime::now();
        let mut e = self.lifecycle_event(EventKind::SessionClosed, &imei, now);
        e.set("reason", attr::string(why.label()));
        e.imei = imei;
        e.transport = self.transport as i32;
        e.received_at = Some(timestamp(now));
        e.peer.clear();
        e.peer.push_str(&self.peer_label);
        e.gateway.clone_from(&self.shared.gateway);
        if let Err(err) = self
            .shared
            .publisher
            .publish(std::slice::from_ref(&e))
            .await
        {
            if err != SinkError::Closed {
                debug!(error = %err, "session-closed event not delivered");
            }
        }
    }

    pub fn label(&self) -> &'static str {
        self.module.name()
    }
}

pub fn transport_label(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        _ => "tcp",
    }
}
