//! UDP: one receive loop per socket, and one task per peer address so that a peer's datagrams
//! are handled in order and a slow broker delays only that peer. Every datagram is detected
//! and decoded on its own; replies go back to the datagram's sender.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, field, info_span, warn, Instrument};

use super::{End, Replier, Shared};
use crate::metrics as m;
use crate::proto::Transport;
use crate::protocol::detect::{detect, Detection};
use crate::protocol::ProtocolModule;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// Datagrams queued per peer before new ones are dropped (the device resends).
const PEER_QUEUE: usize = 32;
/// Peers tracked at once per socket; beyond it new peers' datagrams are dropped.
const MAX_PEERS: usize = 200_000;

struct UdpReplier {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
}

impl Replier for UdpReplier {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.socket.send_to(bytes, self.peer).await.map(|_| ())
    }
}

/// Receives on `socket` until the gateway drains.
pub async fn run(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut peers: HashMap<SocketAddr, (u64, mpsc::Sender<Bytes>)> = HashMap::new();
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            Some((peer, id)) = gone_rx.recv() => {
                if peers.get(&peer).is_some_and(|(i, _)| *i == id) {
                    peers.remove(&peer);
                }
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
        let mut datagram = Bytes::copy_from_slice(&buf[..n]);
        if let Some((_, tx)) = peers.get(&peer) {
            match tx.try_send(datagram) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!(m::UDP_DROPPED, "reason" => "peer_queue_full").increment(1);
                    continue;
                }
                // The peer's task just ended on idle: start a new one below.
                Err(mpsc::error::TrySendError::Closed(d)) => {
                    peers.remove(&peer);
                    datagram = d;
                }
            }
        }
        start_peer(
            &socket,
            &shared,
            &mut peers,
            &gone_tx,
            &mut next_id,
            peer,
            datagram,
        );
    }
}

fn start_peer(
    socket: &Arc<UdpSocket>,
    shared: &Arc<Shared>,
    peers: &mut HashMap<SocketAddr, (u64, mpsc::Sender<Bytes>)>,
    gone_tx: &mpsc::UnboundedSender<(SocketAddr, u64)>,
    next_id: &mut u64,
    peer: SocketAddr,
    datagram: Bytes,
) {
    let module = match detect(&datagram, Transport::Udp) {
        Detection::Found(m) => m,
        _ => {
            metrics::counter!(m::DETECTIONS, "transport" => "udp", "outcome" => "unknown")
                .increment(1);
            debug!(%peer, len = datagram.len(), "UDP datagram of no known protocol; dropped");
            return;
        }
    };
    if peers.len() >= MAX_PEERS {
        metrics::counter!(m::UDP_DROPPED, "reason" => "too_many_peers").increment(1);
        warn!(%peer, "too many UDP peers; datagram dropped");
        return;
    }
    metrics::counter!(m::DETECTIONS, "transport" => "udp", "outcome" => module.name()).increment(1);
    metrics::counter!(m::CONNECTIONS_ACCEPTED, "transport" => "udp").increment(1);
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    let _ = tx.try_send(datagram);
    *next_id += 1;
    let id = *next_id;
    peers.insert(peer, (id, tx));
    let gone = gone_tx.clone();
    let socket = socket.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        peer_task(socket, peer, module, rx, shared).await;
        let _ = gone.send((peer, id));
    });
}

async fn peer_task(
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    module: &'static dyn ProtocolModule,
    mut rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    let span = info_span!("udp_peer", %peer, transport = "udp", protocol = module.name(), imei = field::Empty);
    let mut core = super::Core::new(shared.clone(), module, Transport::Udp, peer, span.clone());
    let mut out = UdpReplier { socket, peer };
    let open =
        metrics::gauge!(m::CONNECTIONS_OPEN, "protocol" => module.name(), "transport" => "udp");
    open.increment(1.0);
    let end = async {
        let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
        loop {
            let next = tokio::select! {
                _ = shared.shutdown.cancelled() => return End::Shutdown,
                r = tokio::time::timeout(shared.timeouts.udp_idle, rx.recv()) => r,
            };
            let datagram = match next {
                Err(_) => return End::Idle,
                Ok(None) => return End::Shutdown,
                Ok(Some(d)) => d,
            };
            buf.clear();
            buf.extend_from_slice(&datagram);
            // A datagram stands alone: an error ends only this datagram, not the peer.
            if let Err(end) = core.process(&mut buf, &mut out).await {
                debug!(reason = end.label(), "datagram not processed to the end");
            }
            if !buf.is_empty() {
                metrics::counter!(m::UDP_DROPPED, "reason" => "trailing_bytes").increment(1);
            }
        }
    }
    .instrument(span)
    .await;
    open.decrement(1.0);
    core.close(end).await;
}
