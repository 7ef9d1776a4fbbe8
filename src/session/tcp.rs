//! A TCP connection, from accept to close:
//!
//! 1. (`--proxy-protocol`) the PROXY header gives the device's real address, which the
//!    per-address limits are then charged to;
//! 2. (`--tls-cert`) a first byte `0x16` starts a TLS handshake; detection runs inside;
//! 3. protocol detection on the first bytes;
//! 4. read, decode, publish, ACK, until the device leaves, goes quiet, is replaced by a newer
//!    login of its IMEI, or the gateway drains.
//!
//! Steps 1–3 and the device's login share one deadline, the login timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, field, info_span, Instrument};

use super::{transport_label, Core, End, Replier, Shared};
use crate::metrics as m;
use crate::net::limits::ConnPermit;
use crate::net::proxy::{self, Parsed};
use crate::net::tls::HANDSHAKE_RECORD;
use crate::net::{Io, Prefixed};
use crate::proto::Transport;
use crate::protocol::detect::{detect, Detection};

impl Replier for tokio::net::tcp::OwnedWriteHalf {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await
    }
}

impl<T: AsyncWrite + Send> Replier for tokio::io::WriteHalf<T> {
    async fn reply(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await
    }
}

/// How long closing may wait to flush (a TLS close_notify to a device that stopped reading).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a session reserves in its read buffer before a read when less than a quarter of it
/// is free.
const READ_CHUNK: usize = 2048;

/// A session whose read buffer is empty frees it after this long without data: a device
/// reporting every 10 s or more then holds no buffer between its reports, a busy one keeps it.
const RELEASE_BUFFER_AFTER: Duration = Duration::from_secs(2);

/// Why a connection ended before a protocol was running.
enum Early {
    Timeout,
    Closed,
    Shutdown,
}

/// Reads more into `buf` under the login deadline, at most `limit` bytes.
async fn read_more<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    limit: usize,
    deadline: Instant,
    shared: &Shared,
) -> Result<(), Early> {
    let mut rd = rd.take(limit as u64);
    let read = tokio::select! {
        _ = shared.shutdown.cancelled() => return Err(Early::Shutdown),
        r = tokio::time::timeout_at(deadline, rd.read_buf(buf)) => r,
    };
    match read {
        Err(_) => Err(Early::Timeout),
        Ok(Ok(0)) | Ok(Err(_)) => Err(Early::Closed),
        Ok(Ok(_)) => Ok(()),
    }
}

fn rejected(reason: &'static str) {
    metrics::counter!(m::CONNECTIONS_REJECTED, "transport" => "tcp", "reason" => reason)
        .increment(1);
}

/// Runs one connection to its end. `permit` holds the connection's place under the
/// connection limits until the task ends.
pub fn run(
    stream: TcpStream,
    socket_peer: SocketAddr,
    permit: ConnPermit,
    shared: Arc<Shared>,
) -> impl std::future::Future<Output = ()> + Send {
    // An async fn keeps its arguments' slots for its whole life, next to its locals: passed
    // in one box, they cost the task a pointer (docs/load-runs.md, memory per session).
    run_boxed(Box::new((stream, socket_peer, permit, shared)))
}

async fn run_boxed(args: Box<(TcpStream, SocketAddr, ConnPermit, Arc<Shared>)>) {
    // Moved out in a block: the emptied box is freed here, not when the connection ends.
    let (stream, socket_peer, mut permit, shared) = {
        let args = args;
        *args
    };
    // What the early steps leave is only the session's start: their locals end with them
    // instead of sitting next to the session for its whole life.
    let start = early(stream, socket_peer, &mut permit, shared).await;
    if let Some(start) = start {
        session(start).await;
    }
    drop(permit);
}

/// Steps 1 and 2 (PROXY header, TLS): what the session starts from, or `None` when the
/// connection ended there.
async fn early(
    stream: TcpStream,
    socket_peer: SocketAddr,
    permit: &mut ConnPermit,
    shared: Arc<Shared>,
) -> Option<Box<Start>> {
    let span = info_span!(
        "conn",
        peer = field::Empty,
        lb = field::Empty,
        transport = "tcp",
        tls = field::Empty,
        protocol = field::Empty,
        imei = field::Empty
    );
    if !shared.proxy_protocol {
        span.record("peer", field::display(socket_peer));
    }
    let deadline = Instant::now() + shared.timeouts.login;
    let early = async {
        let mut stream = stream;
        let mut buf = BytesMut::new();
        let mut tls_on = false;
        // Boxed, and only behind a PROXY-protocol balancer: the header's read would otherwise
        // set the size of every connection's task.
        let peer = if shared.proxy_protocol {
            Box::pin(proxy_header(
                &mut stream,
                socket_peer,
                &mut buf,
                deadline,
                &shared,
                permit,
            ))
            .await?
        } else {
            socket_peer
        };
        let _ = stream.set_nodelay(true);
        let io: Box<dyn Io> = match &shared.tls {
            None => Box::new(stream),
            Some(acceptor) => {
                while buf.is_empty() {
                    if read_more(&mut stream, &mut buf, 4096, deadline, &shared)
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                if buf.first() != Some(&HANDSHAKE_RECORD) {
                    Box::new(stream)
                } else {
                    let replay = Prefixed::new(buf.split().freeze(), stream);
                    // Boxed: the handshake's state would otherwise be part of every
                    // connection's task for its whole life.
                    let handshake = tokio::select! {
                        _ = shared.shutdown.cancelled() => return None,
                        r = tokio::time::timeout_at(deadline, Box::pin(acceptor.accept(replay))) => r,
                    };
                    match handshake {
                        Ok(Ok(tls)) => {
                            metrics::counter!(m::TLS_HANDSHAKES, "outcome" => "ok").increment(1);
                            tracing::Span::current().record("tls", true);
                            tls_on = true;
                            Box::new(tls)
                        }
                        Ok(Err(e)) => {
                            metrics::counter!(m::TLS_HANDSHAKES, "outcome" => "failed")
                                .increment(1);
                            rejected("tls_handshake");
                            debug!(error = %e, "TLS handshake failed; closing");
                            return None;
                        }
                        Err(_) => {
                            metrics::counter!(m::TLS_HANDSHAKES, "outcome" => "timeout")
                                .increment(1);
                            debug!("TLS handshake not done within the login timeout; closing");
                            return None;
                        }
                    }
                }
            }
        };
        Some((io, buf, peer, tls_on))
    }
    .instrument(span.clone())
    .await;
    let (io, buf, peer, tls) = early?;
    let lb = (peer != socket_peer).then_some(socket_peer);
    Some(Box::new(Start {
        io,
        buf,
        peer,
        deadline,
        shared,
        span,
        fields: SpanFields {
            lb: lb.map(Box::new),
            tls,
        },
    }))
}

/// What the connection's span says besides the session's own fields: the load balancer's
/// address (PROXY protocol) and TLS.
struct SpanFields {
    /// Boxed: rare, and every connection's task carries the field.
    lb: Option<Box<SocketAddr>>,
    tls: bool,
}

/// The `conn` span of a session at work. A logged-in session holds no span while it waits
/// (a span of the default `info` level costs about 1.3 KB per connection in the registry):
/// each round of work (frames, commands, closing) gets a fresh one with the same fields.
fn conn_span(core: &Core, f: &SpanFields) -> tracing::Span {
    let span = info_span!(
        "conn",
        peer = %core.peer(),
        lb = field::Empty,
        transport = "tcp",
        tls = field::Empty,
        protocol = core.label(),
        imei = field::Empty
    );
    if let Some(lb) = &f.lb {
        span.record("lb", field::display(lb));
    }
    if f.tls {
        span.record("tls", true);
    }
    if let Some(imei) = core.imei.as_deref() {
        span.record("imei", imei);
    }
    span
}

/// With `--proxy-protocol`: reads the header, returns the device's address and charges the
/// per-address limits to it. (Without, the socket's address is the device's, charged at
/// accept.)
async fn proxy_header(
    stream: &mut TcpStream,
    socket_peer: SocketAddr,
    buf: &mut BytesMut,
    deadline: Instant,
    shared: &Shared,
    permit: &mut ConnPermit,
) -> Option<SocketAddr> {
    let span = tracing::Span::current();
    let header = loop {
        match proxy::parse(buf) {
            Ok(Parsed::Done { header, len }) => {
                buf.advance(len);
                break header;
            }
            Ok(Parsed::NeedMore) => {}
            Err(e) => {
                rejected("proxy_header");
                span.record("peer", field::display(socket_peer));
                debug!(error = %e, "bad PROXY protocol header; closing");
                return None;
            }
        }
        let room = proxy::MAX_HEADER_BYTES.saturating_sub(buf.len()).max(1);
        if let Err(why) = read_more(stream, buf, room, deadline, shared).await {
            span.record("peer", field::display(socket_peer));
            if matches!(why, Early::Timeout) {
                rejected("proxy_header");
                debug!("no PROXY protocol header within the login timeout; closing");
            }
            return None;
        }
    };
    let peer = header.source().unwrap_or(socket_peer);
    span.record("peer", field::display(peer));
    span.record("lb", field::display(socket_peer));
    if let Err(r) = permit.bind_ip(peer.ip(), Instant::now().into_std()) {
        rejected(r.label());
        debug!(
            reason = r.label(),
            "connection refused by the per-address limits"
        );
        return None;
    }
    Some(peer)
}

/// What a connection brings to its session; boxed for the same reason as [`run`]'s arguments.
struct Start {
    io: Box<dyn Io>,
    buf: BytesMut,
    peer: SocketAddr,
    deadline: Instant,
    shared: Arc<Shared>,
    span: tracing::Span,
    fields: SpanFields,
}

/// Detection, then the protocol session.
async fn session(start: Box<Start>) {
    let Start {
        io,
        mut buf,
        peer,
        deadline,
        shared,
        span,
        fields,
    } = {
        let start = start;
        *start
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    buf.reserve(READ_CHUNK);

    // Detection: read until a protocol claims the prefix. Boxed: inline, its state (a read
    // with its timeout) would set the size of every session's task for its whole life.
    let Some(module) = Box::pin(async {
        loop {
            match detect(&buf, Transport::Tcp) {
                Detection::Found(module) => break Some(module),
                Detection::Unknown => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "unknown")
                        .increment(1);
                    debug!(prefix = %hex::encode(&buf[..buf.len().min(16)]), "unknown protocol; closing");
                    return None;
                }
                Detection::NeedMore => {}
            }
            match read_more(&mut rd, &mut buf, 4096, deadline, &shared).await {
                Ok(()) => {}
                Err(Early::Timeout) => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "timeout")
                        .increment(1);
                    debug!("no protocol recognised within the login timeout; closing");
                    return None;
                }
                Err(Early::Closed) => {
                    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => "closed")
                        .increment(1);
                    return None;
                }
                Err(Early::Shutdown) => return None,
            }
        }
    }
    .instrument(span.clone()))
    .await
    else {
        return;
    };
    metrics::counter!(m::DETECTIONS, "transport" => "tcp", "outcome" => module.name()).increment(1);
    span.record("protocol", module.name());
    let mut core = Core::new(shared.clone(), module, Transport::Tcp, peer, span);
    // Looked up again at the end rather than held: a handle is part of every session.
    metrics::gauge!(m::CONNECTIONS_OPEN, "protocol" => module.name(), "transport" => transport_label(Transport::Tcp))
        .increment(1.0);

    let mut command_rx = None;
    // Set when the gateway starts draining while a written command awaits the device's answer:
    // the session serves the device until the answer came or this passed.
    let mut drain_until: Option<Instant> = None;
    // The idle deadline in force, kept across a wait that saw no activity (a buffer release,
    // a timer firing early); cleared by activity, so that the next wait starts a new one.
    let mut held_until: Option<Instant> = None;
    // The bytes read while detecting are the start of the stream: decode them first.
    let end = loop {
        // Boxed: decoding, publishing and waiting for delivery is by far the largest state of
        // the session's future; inline, every idle session would carry it (see
        // docs/load-runs.md, memory per session).
        if !buf.is_empty() {
            let span = live_span(&mut core, &fields);
            if let Err(end) = Box::pin(core.process(&mut buf, &mut wr))
                .instrument(span)
                .await
            {
                break end;
            }
        }
        // Between frames is the one place a drain or an eviction may stop a session: the
        // frame in hand has been delivered and acknowledged.
        if shared.shutdown.is_cancelled() {
            Box::pin(core.start_draining()).await;
            let until = *drain_until.get_or_insert_with(|| Instant::now() + shared.drain_grace);
            if !core.commands.awaiting_answers() || Instant::now() >= until {
                break End::Shutdown;
            }
        }
        if core.handle.cancel.is_cancelled() {
            break core.eviction_end();
        }
        let logged_in = core.logged_in();
        if command_rx.is_none() {
            command_rx = core.take_command_rx();
        }
        if buf.capacity() > 0 && buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        if logged_in {
            // Waiting: no span held (see `conn_span`).
            core.span = tracing::Span::none();
        }
        // The deadlines, in a block: a local still in scope during the wait is part of every
        // idle session's task (docs/load-runs.md, memory per session). What the wait needs
        // afterwards: when the read gives up, and whether that frees the buffer.
        let (read_until, releasing, wake_at) = {
            // Until the device logged in (or a relay sent its first frame), the login
            // deadline; then the protocol's idle timeout.
            let until = if logged_in {
                *held_until.get_or_insert_with(|| Instant::now() + shared.idle_timeout(module))
            } else {
                deadline
            };
            // An idle session holds no read buffer: once it is empty and nothing arrived for
            // RELEASE_BUFFER_AFTER, it is freed (the next read starts small, then grows).
            let release_at = (buf.is_empty() && buf.capacity() > 0)
                .then(|| Instant::now() + RELEASE_BUFFER_AFTER)
                .filter(|at| *at < until);
            // One timer for everything the session waits on besides the socket: the buffer's
            // release (first when due), the idle or login deadline, the drain's end and the
            // next command's answer deadline.
            let read_until = release_at.unwrap_or(until);
            let answer_due = core.commands.next_deadline().map(Instant::from_std);
            let wake_at = [drain_until, answer_due]
                .into_iter()
                .flatten()
                .fold(read_until, Instant::min);
            (read_until, release_at.is_some(), wake_at)
        };
        let read = tokio::select! {
            // Back to the top, which decides whether the session ends now.
            _ = shared.shutdown.cancelled(), if drain_until.is_none() => {
                held_until = None;
                continue;
            }
            // The token itself, not `core.evicted()`: each future in this wait is part of
            // every idle session's task.
            _ = core.handle.cancel.cancelled() => break core.eviction_end(),
            Some(msg) = next_command(&mut command_rx) => {
                held_until = None;
                let span = live_span(&mut core, &fields);
                // Boxed like the per-frame work: rare, and not to be part of every session's task.
                if let Err(end) = Box::pin(core.on_command_msg(*msg, &mut wr)).instrument(span).await {
                    break end;
                }
                continue;
            }
            _ = tokio::time::sleep_until(wake_at) => {
                let now = Instant::now();
                if drain_until.is_some_and(|at| now >= at) {
                    break End::Shutdown;
                }
                // The tracker did not change during the wait: its deadline is the one waited on.
                let answer_due = core.commands.next_deadline().map(Instant::from_std);
                if answer_due.is_some_and(|at| now >= at) {
                    held_until = None;
                    let span = live_span(&mut core, &fields);
                    if let Err(end) = Box::pin(core.expire_commands(&mut wr)).instrument(span).await {
                        break end;
                    }
                    continue;
                }
                if now < read_until {
                    // Not due yet (a timer firing early): wait on, same deadline (`held_until`).
                    continue;
                }
                Err(())
            }
            r = rd.read_buf(&mut buf) => Ok(r),
        };
        match read {
            Err(_) if releasing => {
                // No activity: the same idle deadline (`held_until`) goes on.
                buf = BytesMut::new();
                continue;
            }
            Err(_) if logged_in => break End::Idle,
            Err(_) => break End::LoginTimeout,
            Ok(Ok(0)) => break End::PeerClosed,
            Ok(Ok(_)) => held_until = None,
            Ok(Err(e)) => {
                let _in = live_span(&mut core, &fields).entered();
                debug!(error = %e, "read failed");
                break End::Io;
            }
        }
    };
    metrics::gauge!(m::CONNECTIONS_OPEN, "protocol" => module.name(), "transport" => transport_label(Transport::Tcp))
        .decrement(1.0);
    // Let go of the socket first (a replaced session's device is already elsewhere), then
    // publish the session-closed event.
    drop(rd);
    drop(buf);
    let _ = tokio::time::timeout(CLOSE_GRACE, wr.shutdown()).await;
    drop(wr);
    let span = live_span(&mut core, &fields);
    Box::pin(core.close(end)).instrument(span).await;
}

/// The session's span, made anew if it was let go while waiting.
fn live_span(core: &mut Core, f: &SpanFields) -> tracing::Span {
    if core.span.is_none() {
        core.span = conn_span(core, f);
    }
    core.span.clone()
}

/// The dispatcher's next message for this session; pending forever while there is no channel.
pub(super) async fn next_command(
    rx: &mut Option<crate::command::messages::SessionReceiver>,
) -> Option<Box<crate::command::messages::SessionMsg>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::sink::memory::MemorySink;
    use crate::sink::{Format, Publisher};
    use tokio_util::sync::CancellationToken;

    /// What the sessions of a default gateway share, publishing to memory.
    pub(in crate::session) fn shared() -> Arc<Shared> {
        let config = Settings::default().resolve().unwrap();
        let publisher = Arc::new(Publisher::new(
            Arc::new(MemorySink::new()),
            Format::Protobuf,
            config.in_flight.clone(),
        ));
        Arc::new(Shared::new(
            publisher,
            "test".into(),
            config.protocols.clone(),
            config.timeouts.clone(),
            CancellationToken::new(),
        ))
    }

    /// Every connection's task holds this future for as long as the device is connected: an
    /// idle session costs at least its size (docs/load-runs.md, memory per session). The
    /// per-frame work (decode, publish, wait for delivery) is boxed while it runs and must
    /// not come back inline.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let shared = shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let permit = shared
            .conn_limiter
            .admit(Some(peer.ip()), std::time::Instant::now())
            .unwrap();
        let task = run(stream, peer, permit, shared.clone());
        let size = std::mem::size_of_val(&task);
        eprintln!("tcp::run future: {size} bytes");
        // tokio allocates the task as one cell: this future plus 112 bytes (header, trailer,
        // the task tracker's token; `-Zprint-type-sizes`), rounded up to 128. heaptrack on the
        // idle-sessions bench (docs/load-runs.md): at 1,176 bytes the cell was 1,408 bytes
        // (mimalloc's 1,536-byte class); at 1,040, 1,152 (the 1,280-byte class); from 912
        // down it is 1,024 (the 1,024-byte class).
        assert!(size <= 912, "tcp::run future is {size} bytes");
    }
}
