//! UDP: one receive loop per socket, and one task per peer address so that a peer's datagrams
//! are handled in order and a slow broker delays only that peer. Every datagram is detected
//! and decoded on its own; replies go back to the datagram's sender. Where the device's
//! protocol takes commands over UDP, the peer's task takes them for its device and writes them
//! to the peer's address while its latest datagram is recent ([`super::UDP_REACHABLE`]); a
//! device that moved to a new address is a new peer, whose commands the old one gives back.
//!
//! Built for a flood of spoofable, connectionless traffic:
//!
//! - **Buffers belong to datagrams, not peers.** The socket has one receive buffer; each
//!   datagram is copied into an allocation of its own size and handed to its peer, which
//!   keeps no buffer between datagrams.
//! - **A peer that has not identified itself is cheap and short-lived.** Until a datagram
//!   names an allowed device (a login, or a datagram carrying its IMEI), the peer's task ends
//!   as soon as its queue is empty; only identified peers wait out `--udp-idle-timeout-secs`.
//!   A stream of garbage from 50,000 source ports therefore leaves nothing behind.
//! - **Peers are admitted like TCP connections**: a pod-wide cap and a per-address cap
//!   (`--max-udp-peers`, `--max-udp-peers-per-ip`) through the same [`ConnLimiter`] as TCP,
//!   checked before any task or state exists for the peer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, field, info_span, warn, Instrument};

use super::{End, Replier, Shared};
use crate::metrics as m;
use crate::net::limits::{ConnLimiter, Rejection};
use crate::proto::Transport;
use crate::protocol::detect::{detect, Detection};
use crate::protocol::ProtocolModule;
use crate::throttle::Throttle;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams queued per peer before new ones are dropped (the device resends).
const PEER_QUEUE: usize = 32;
/// At most one warning per this interval about refused peers (a flood must not flood the log).
const WARN_EVERY: Duration = Duration::from_secs(60);

struct UdpReplier {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl Replier for UdpReplier {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(bytes, self.peer).await.map(|_| ())
    }
}

/// A datagram on its way to its peer's task. A boxed slice, not a `BytesMut`: a peer's queue
/// allocates its first block of 32 slots at once, 1 KiB with 32-byte slots, half with these
/// (memory per session, docs/load-runs.md); it becomes the task's `BytesMut` without a copy.
type Datagram = Box<[u8]>;

/// The receive loop's view of a peer: its task's id (to tell a successor apart) and queue.
type Peers = HashMap<SocketAddr, (u64, mpsc::Sender<Datagram>)>;

/// What the receive loop keeps across datagrams.
struct Loop {
    socket: Arc<UdpSocket>,
    shared: Arc<Shared>,
    peers: Peers,
    gone_tx: mpsc::UnboundedSender<(SocketAddr, u64)>,
    next_id: u64,
}

/// Receives on `socket` until the gateway drains.
pub async fn run(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut l = Loop {
        socket: socket.clone(),
        shared: shared.clone(),
        peers: HashMap::new(),
        gone_tx,
        next_id: 0,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            Some((peer, id)) = gone_rx.recv() => {
                l.forget(peer, id);
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    // ICMP port-unreachable from an earlier reply and the like: not fatal.
                    debug!(error = %e, "UDP receive error");
                    continue;
                }
            },
        };
        let mut datagram = Datagram::from(&buf[..n]);
        if let Some((_, tx)) = l.peers.get(&peer) {
            match tx.try_send(datagram) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!(m::UDP_DROPPED, "reason" => "peer_queue_full").increment(1);
                    continue;
                }
                // The peer's task just ended (idle, or unidentified): start a new one below.
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    l.peers.remove(&peer);
                    datagram = d;
                }
            }
        }
        l.start_peer(peer, datagram);
    }
}

impl Loop {
    fn forget(&mut self, peer: SocketAddr, id: u64) {
        if self.peers.get(&peer).is_some_and(|(i, _)| *i == id) {
            self.peers.remove(&peer);
        }
        // After a flood the map would keep its high-water capacity for good; shrinking when
        // three quarters are unused keeps the cost amortised O(1) per peer.
        if self.peers.capacity() > 1024 && self.peers.len() < self.peers.capacity() / 4 {
            self.peers.shrink_to_fit();
        }
    }

    fn start_peer(&mut self, peer: SocketAddr, datagram: Datagram) {
        let module = match detect(&datagram, Transport::Udp) {
            Detection::Found(m) => m,
            _ => {
                metrics::counter!(m::DETECTIONS, "transport" => "udp", "outcome" => "unknown")
                    .increment(1);
                debug!(%peer, len = datagram.len(), "UDP datagram of no known protocol; dropped");
                return;
            }
        };
        let limiter = &self.shared.udp_limiter;
        let permit = match limiter.admit(Some(crate::net::canonical(peer).ip()), Instant::now()) {
            Ok(p) => p,
            Err(r) => {
                let reason = match r {
                    Rejection::MaxConnectionsPerIp => "max_udp_peers_per_ip",
                    _ => "max_udp_peers",
                };
                metrics::counter!(m::UDP_DROPPED, "reason" => reason).increment(1);
                static REFUSED: Throttle = Throttle::new(WARN_EVERY);
                if let Some(held) = REFUSED.allow() {
                    warn!(%peer, reason, peers = limiter.open(), held_back = held, "UDP peer refused by the peer limits; datagrams dropped (logged once a minute; see avlgate_udp_datagrams_dropped_total)");
                }
                return;
            }
        };
        metrics::gauge!(m::UDP_PEERS).set(limiter.open() as f64);
        metrics::counter!(m::DETECTIONS, "transport" => "udp", "outcome" => module.name())
            .increment(1);
        metrics::counter!(m::CONNECTIONS_ACCEPTED, "transport" => "udp").increment(1);
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let _ = tx.try_send(datagram);
        self.next_id += 1;
        let id = self.next_id;
        self.peers.insert(peer, (id, tx));
        let gone = self.gone_tx.clone();
        let socket = self.socket.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            peer_task(socket, peer, module, rx, shared.clone()).await;
            drop(permit);
            metrics::gauge!(m::UDP_PEERS).set(shared.udp_limiter.open() as f64);
            let _ = gone.send((peer, id));
        });
    }
}

/// The limiter of UDP peers for these limits (no rate: a peer costs nothing until admitted,
/// and an unidentified one ends with its last datagram).
pub fn limiter(max_peers: usize, max_peers_per_ip: u32) -> ConnLimiter {
    ConnLimiter::new(crate::net::limits::ConnLimits {
        max_connections: max_peers,
        max_connections_per_ip: max_peers_per_ip,
        max_connect_rate_per_ip: 0,
    })
}

async fn peer_task(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    module: &'static ProtocolModule,
    mut rx: mpsc::Receiver<Datagram>,
    shared: Arc<Shared>,
) {
    // Known by its canonical address; replies go to the one the socket gave.
    let shown = crate::net::canonical(peer);
    let span = peer_span(shown, module.name(), None);
    let mut core = super::Core::new(shared.clone(), module, Transport::Udp, shown, span);
    let mut out = UdpReplier { socket, peer };
    let open =
        metrics::gauge!(m::CONNECTIONS_OPEN, "protocol" => module.name(), "transport" => "udp");
    open.increment(1.0);
    let end = async {
        let mut retiring = false;
        let mut command_rx = None;
        loop {
            let next = if core.identified() && !retiring {
                if command_rx.is_none() {
                    command_rx = core.take_command_rx();
                }
                let answer_due = core
                    .commands
                    .next_deadline()
                    .map(tokio::time::Instant::from_std);
                // Waiting: no span held (a span of the default `info` level costs about
                // 1.3 KB per peer in the registry); each round of work gets a fresh one.
                core.span = tracing::Span::none();
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return End::Shutdown,
                    Some(msg) = super::tcp::next_command(&mut command_rx) => {
                        let span = live_span(&mut core);
                        // Boxed, as the per-datagram work below: rare, and inline it would be
                        // part of every peer's task for its whole life.
                        let written = Box::pin(core.on_command_msg(*msg, &mut out))
                            .instrument(span.clone())
                            .await;
                        not_written(&span, written);
                        continue;
                    }
                    _ = super::tcp::sleep_until_opt(answer_due) => {
                        let span = live_span(&mut core);
                        let written = Box::pin(core.expire_commands(&mut out))
                            .instrument(span.clone())
                            .await;
                        not_written(&span, written);
                        continue;
                    }
                    r = tokio::time::timeout(shared.timeouts.udp_idle, rx.recv()) => match r {
                        Err(_) => return End::Idle,
                        Ok(None) => return End::Shutdown,
                        Ok(Some(d)) => d,
                    },
                }
            } else {
                match rx.try_recv() {
                    Ok(d) => d,
                    Err(mpsc::error::TryRecvError::Disconnected) => return End::Unidentified,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Nothing identified this peer: retire it. Closing first makes the
                        // receive loop start a fresh peer for the next datagram; what was
                        // queued in between is still handled below (then Disconnected).
                        rx.close();
                        retiring = true;
                        continue;
                    }
                }
            };
            let mut datagram = BytesMut::from(bytes::Bytes::from(next));
            let span = live_span(&mut core);
            // A datagram stands alone: an error ends only this datagram, not the peer. Boxed:
            // decoding, publishing and waiting for delivery is the largest state of the peer's
            // task; inline, every waiting peer would carry it (memory per session).
            if let Err(end) = Box::pin(core.process(&mut datagram, &mut out))
                .instrument(span.clone())
                .await
            {
                span.in_scope(|| debug!(reason = end.label(), "datagram not processed to the end"));
            }
            if !datagram.is_empty() {
                metrics::counter!(m::UDP_DROPPED, "reason" => "trailing_bytes").increment(1);
            }
        }
    }
    .await;
    open.decrement(1.0);
    let span = live_span(&mut core);
    Box::pin(core.close(end)).instrument(span).await;
}

/// Logs why a command could not be written to the peer (its result reports it too).
fn not_written(span: &tracing::Span, r: Result<(), End>) {
    if let Err(end) = r {
        span.in_scope(|| debug!(reason = end.label(), "command not written to the UDP peer"));
    }
}

/// A UDP peer's span.
fn peer_span(peer: SocketAddr, protocol: &str, imei: Option<&str>) -> tracing::Span {
    let span = info_span!("udp_peer", %peer, transport = "udp", protocol, imei = field::Empty);
    if let Some(imei) = imei {
        span.record("imei", imei);
    }
    span
}

/// The peer's span, made anew if it was let go while waiting.
fn live_span(core: &mut super::Core) -> tracing::Span {
    if core.span.is_none() {
        core.span = peer_span(core.peer(), core.label(), core.imei.as_deref());
    }
    core.span.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identified UDP peer's task lives as long as the device keeps sending (up to
    /// `--udp-idle-timeout-secs` of silence): as for TCP, the per-datagram work, commands and
    /// the closing are boxed while they run and must not come back inline (memory per
    /// session, docs/load-runs.md).
    #[tokio::test]
    async fn a_udp_peer_task_stays_small() {
        let shared = super::super::tcp::tests::shared();
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let peer = socket.local_addr().unwrap();
        let module = crate::protocol::module(crate::proto::Protocol::Teltonika).unwrap();
        let (_tx, rx) = mpsc::channel(1);
        let task = peer_task(socket, peer, module, rx, shared);
        let size = std::mem::size_of_val(&task);
        eprintln!("udp peer_task future: {size} bytes");
        // 2,208 bytes with that work inline: tokio's cell for the peer was 2,560 bytes.
        assert!(size <= 1000, "udp peer_task future is {size} bytes");
    }
}
