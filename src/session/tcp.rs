//! A TCP connection: detect the protocol under a timeout, then read, decode, publish, ACK,
//! until the device leaves, goes quiet, or the gateway drains.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, field, info_span, Instrument};

use super::{transport_label, Core, End, Replier, Shared};
use crate::metrics as m;
use crate::proto::Transport;
use crate::protocol::detect::{detect, Detection};

impl Replier for tokio::net::tcp::OwnedWriteHalf {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await
    }
}

/// Runs one connection to its end.
pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let span =
        info_span!("conn", %peer, transport = "tcp", protocol = field::Empty, imei = field::Empty);
    async move {
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = BytesMut::with_capacity(2048);

        // Detection: read until a protocol claims the prefix, under one deadline.
        let deadline = tokio::time::Instant::now() + shared.timeouts.detect;
        let module = loop {
            match detect(&buf, Transport::Tcp) {
                Detection::Found(module) => break module,
                Detection::Unknown => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "unknown").increment(1);
                    debug!(prefix = %hex::encode(&buf[..buf.len().min(16)]), "unknown protocol; closing");
                    return;
                }
                Detection::NeedMore => {}
            }
            let read = tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                r = tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)) => r,
            };
            match read {
                Err(_) => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "timeout").increment(1);
                    debug!("no protocol recognised before the detection timeout; closing");
                    return;
                }
                Ok(Ok(0)) | Ok(Err(_)) => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "closed").increment(1);
                    return;
                }
                Ok(Ok(_)) => {}
            }
        };
        metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => module.name()).increment(1);
        let span = tracing::Span::current();
        span.record("protocol", module.name());
        let mut core = Core::new(shared.clone(), module, Transport::Tcp, peer, span);
        let open = metrics::gauge!(m::CONNECTIONS_OPEN, "protocol" => module.name(), "transport" => transport_label(Transport::Tcp));
        open.increment(1.0);

        // The bytes read while detecting are the start of the stream: decode them first.
        let end = loop {
            if let Err(end) = core.process(&mut buf, &mut wr).await {
                break end;
            }
            // Between frames is the one place a drain may stop a session: the frame in hand
            // has been delivered and acknowledged.
            if shared.shutdown.is_cancelled() {
                break End::Shutdown;
            }
            let read = tokio::select! {
                _ = shared.shutdown.cancelled() => break End::Shutdown,
                r = tokio::time::timeout(shared.timeouts.idle, rd.read_buf(&mut buf)) => r,
            };
            match read {
                Err(_) => break End::Idle,
                Ok(Ok(0)) => break End::PeerClosed,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    debug!(error = %e, "read failed");
                    break End::Io;
                }
            }
        };
        open.decrement(1.0);
        core.close(end).await;
        let _ = wr.shutdown().await;
    }
    .instrument(span)
    .await
}
