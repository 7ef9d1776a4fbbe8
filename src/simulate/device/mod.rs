//! The device side: one sans-IO [`DeviceCodec`] per protocol (what to send, which exact reply
//! to expect, how to split and answer what the server sends) and [`run`], the task that drives
//! one virtual device over a socket: connect (bound to its source address), log in, send a
//! batch every interval, match ACKs, resend on timeout, answer commands, reconnect with backoff.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::{sleep, sleep_until, Instant};
use tracing::debug;

pub use crate::protocol::sim::{Batch, DeviceCodec, DeviceError, Incoming};

use super::track::{self, Fix, Track};
use super::{Ctx, DeviceProtocol, SimTransport};

/// The device codec of a simulator variant over `transport`.
pub fn codec(
    protocol: DeviceProtocol,
    transport: SimTransport,
    imei: &str,
) -> Box<dyn DeviceCodec> {
    (protocol.sim.make)(imei, transport == SimTransport::Udp)
}

/// Transmissions of one batch before the device drops the connection and starts over.
const MAX_ATTEMPTS: u32 = 3;
/// Reconnect backoff: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest message the device buffers from the server.
const MAX_BUFFER: usize = 64 * 1024;

/// A socket to the gateway.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Udp(UdpSocket),
}

impl Conn {
    async fn open(target: SocketAddr, source: Option<IpAddr>, udp: bool) -> io::Result<Conn> {
        if udp {
            let local = source.unwrap_or(if target.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            });
            let s = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
            s.connect(target).await?;
            return Ok(Conn::Udp(s));
        }
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            // Each source address has its own ephemeral ports: that is how one machine
            // opens more than ~28,000 connections to one gateway port.
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target).await?;
        let _ = stream.set_nodelay(true);
        Ok(Conn::Tcp(stream))
    }

    async fn send(&mut self, units: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                if let [one] = units {
                    s.write_all(one).await
                } else {
                    s.write_all(&units.concat()).await
                }
            }
            Conn::Udp(s) => {
                for u in units {
                    s.send(u).await?;
                }
                Ok(())
            }
        }
    }

    /// Reads what is there; `Ok(0)` is the end of the stream (never for UDP).
    async fn recv(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        buf.reserve(2048);
        match self {
            Conn::Tcp(s) => s.read_buf(buf).await,
            Conn::Udp(s) => {
                let n = s.recv_buf(buf).await?;
                // An empty datagram is not an end of stream.
                Ok(n.max(1))
            }
        }
    }
}

/// Least time between two records of one device. GT06 positions have 1 s and about 6 cm
/// resolution and its event ids come from the content: two records closer than this could be
/// identical and would get the same event id (a consumer would drop one as a duplicate). At the
/// slowest track speed (16 km/h) 50 ms is 22 cm.
const MIN_RECORD_STEP_MS: u64 = 50;

/// Timestamps for `k` records after the one at `last_ms`: spread over the time since, the
/// newest at `now_ms`, each at least [`MIN_RECORD_STEP_MS`] after the one before (so a device
/// asked for more than 20 records a second runs ahead of the clock rather than repeat itself).
pub fn record_times(last_ms: u64, now_ms: u64, k: u64) -> Vec<u64> {
    let k = k.max(1);
    let span = now_ms.saturating_sub(last_ms);
    let mut prev = last_ms;
    (0..k)
        .map(|j| {
            let ideal = now_ms.saturating_sub(span * (k - 1 - j) / k);
            prev = ideal.max(prev.saturating_add(MIN_RECORD_STEP_MS));
            prev
        })
        .collect()
}

/// A batch waiting for its ACKs. It survives reconnects: devices keep unacknowledged data.
struct Pending {
    batch: Batch,
    /// Index of the next expected reply.
    next: usize,
    sent_at: Instant,
    deadline: Instant,
    attempts: u32,
    /// A wrong reply came for this transmission (then the resend is not a "timeout").
    wrong: bool,
}

/// How a session ended.
enum End {
    /// The run is over.
    Finished,
    /// The connection broke or the device gave up on it: reconnect.
    Lost,
}

/// One device's state across connections.
struct Device {
    ctx: Arc<Ctx>,
    index: u64,
    codec: Box<dyn DeviceCodec>,
    track: Track,
    pending: Option<Pending>,
    first_acked: bool,
    /// The time of the last record sent, so the next batch continues the track.
    last_record_ms: u64,
}

/// Runs device `index` until the run stops. `delay`: its place in the ramp-up.
pub(crate) async fn run(ctx: Arc<Ctx>, index: u64, delay: Duration) {
    tokio::select! {
        _ = ctx.stop_sending.cancelled() => return,
        _ = sleep(delay) => {}
    }
    let Some(imei) = super::imei(ctx.opts.imei_base, index) else {
        return;
    };
    let now = track::now_ms();
    let mut d = Device {
        codec: codec(ctx.opts.protocol, ctx.opts.transport, &imei),
        // The track began an hour ago: the odometer shows an hour of driving.
        track: Track::new(index, now.saturating_sub(3_600_000)),
        pending: None,
        first_acked: false,
        // The first batch covers the interval before it, like every later one: records in a
        // batch are spread in time, so none repeats another (GT06 positions have 1 s and
        // 6 cm resolution, and identical content means an identical event id).
        last_record_ms: now
            .saturating_sub(u64::try_from(ctx.opts.interval.as_millis()).unwrap_or(u64::MAX)),
        index,
        ctx,
    };
    d.run().await;
}

impl Device {
    async fn run(&mut self) {
        let ctx = self.ctx.clone();
        let stats = &ctx.stats;
        let source = (!ctx.opts.source_ips.is_empty())
            .then(|| ctx.opts.source_ips[(self.index % ctx.opts.source_ips.len() as u64) as usize]);
        let udp = ctx.opts.transport == SimTransport::Udp;
        let mut backoff = BACKOFF_FIRST;
        let mut ever = false;
        loop {
            if ctx.hard_stop.is_cancelled()
                || (ctx.stop_sending.is_cancelled() && self.pending.is_none())
            {
                return;
            }
            let has_pending = self.pending.is_some();
            let attempt = async {
                let _permit = ctx.connect_limit.acquire().await;
                let mut conn = match tokio::time::timeout(
                    ctx.opts.ack_timeout,
                    Conn::open(ctx.target, source, udp),
                )
                .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        debug!(device = self.index, error = %e, "connect failed");
                        stats.connect_failures.fetch_add(1, Relaxed);
                        return None;
                    }
                    Err(_) => {
                        stats.connect_failures.fetch_add(1, Relaxed);
                        return None;
                    }
                };
                let mut buf = BytesMut::with_capacity(256);
                if let Some((login, expected)) = self.codec.login() {
                    if !self.login(&mut conn, &mut buf, &login, &expected).await {
                        stats.login_failures.fetch_add(1, Relaxed);
                        return None;
                    }
                }
                Some((conn, buf))
            };
            let established = tokio::select! {
                _ = ctx.stop_sending.cancelled(), if !has_pending => return,
                _ = ctx.hard_stop.cancelled() => return,
                r = attempt => r,
            };
            let Some((mut conn, mut buf)) = established else {
                self.backoff(&mut backoff).await;
                continue;
            };
            backoff = BACKOFF_FIRST;
            stats.connections.fetch_add(1, Relaxed);
            if !ever {
                ever = true;
                stats.devices_connected.fetch_add(1, Relaxed);
            }
            stats.online.fetch_add(1, Relaxed);
            let end = self.session(&mut conn, &mut buf).await;
            stats.online.fetch_sub(1, Relaxed);
            match end {
                End::Finished => return,
                End::Lost => {
                    stats.disconnects.fetch_add(1, Relaxed);
                    self.backoff(&mut backoff).await;
                }
            }
        }
    }

    /// Waits out the backoff (with jitter so reconnecting devices spread out), then doubles it.
    async fn backoff(&self, backoff: &mut Duration) {
        let jitter = track::mix(self.index ^ backoff.as_millis() as u64) % 1000;
        let wait = *backoff + Duration::from_millis(jitter * backoff.as_millis() as u64 / 2000);
        tokio::select! {
            _ = self.ctx.hard_stop.cancelled() => {}
            _ = self.ctx.stop_sending.cancelled(), if self.pending.is_none() => {}
            _ = sleep(wait) => {}
        }
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
    }

    /// Sends the login and waits for its exact reply; resends it on timeout like a frame.
    async fn login(
        &mut self,
        conn: &mut Conn,
        buf: &mut BytesMut,
        login: &[u8],
        expected: &[u8],
    ) -> bool {
        for _ in 0..MAX_ATTEMPTS {
            if conn
                .send(std::slice::from_ref(&login.to_vec()))
                .await
                .is_err()
            {
                return false;
            }
            let deadline = Instant::now() + self.ctx.opts.ack_timeout;
            loop {
                match self.codec.parse(buf) {
                    Ok(Some(Incoming::Reply(r))) => return r == expected,
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(_) => {
                        self.ctx.stats.protocol_errors.fetch_add(1, Relaxed);
                        return false;
                    }
                }
                if buf.len() > MAX_BUFFER {
                    return false;
                }
                match tokio::time::timeout_at(deadline, conn.recv(buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return false,
                    Ok(Ok(_)) => {}
                    Err(_) => break,
                }
            }
        }
        false
    }

    /// One connection, logged in. Returns when the run is over or the connection is lost.
    async fn session(&mut self, conn: &mut Conn, buf: &mut BytesMut) -> End {
        let ctx = self.ctx.clone();
        let stats = &ctx.stats;
        let interval = ctx.opts.interval;
        // Unacknowledged data from the last connection goes first, as the same bytes.
        if let Some(p) = self.pending.as_mut() {
            stats
                .retransmits
                .fetch_add(u64::from(p.batch.frames), Relaxed);
            if conn.send(&p.batch.units).await.is_err() {
                return End::Lost;
            }
            let now = Instant::now();
            (p.next, p.wrong, p.attempts) = (0, false, 1);
            (p.sent_at, p.deadline) = (now, now + ctx.opts.ack_timeout);
        }
        let mut next_tick = Instant::now();
        loop {
            // Anything complete in the buffer first (the login reply may have brought more).
            loop {
                match self.codec.parse(buf) {
                    Ok(Some(m)) => {
                        if self.handle(conn, m).await.is_err() {
                            return End::Lost;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        debug!(device = self.index, error = %e, "bad server bytes");
                        stats.protocol_errors.fetch_add(1, Relaxed);
                        if matches!(conn, Conn::Udp(_)) {
                            buf.clear();
                            break;
                        }
                        return End::Lost;
                    }
                }
            }
            if buf.len() > MAX_BUFFER {
                stats.protocol_errors.fetch_add(1, Relaxed);
                return End::Lost;
            }
            let sending = !ctx.stop_sending.is_cancelled();
            if !sending && self.pending.is_none() {
                return End::Finished;
            }
            let deadline = self.pending.as_ref().map(|p| p.deadline);
            tokio::select! {
                _ = ctx.hard_stop.cancelled() => return End::Finished,
                _ = ctx.stop_sending.cancelled(), if sending => {}
                r = conn.recv(buf) => match r {
                    Ok(0) | Err(_) => return End::Lost,
                    Ok(_) => {}
                },
                _ = sleep_until(deadline.unwrap_or(next_tick)), if deadline.is_some() => {
                    if !sending {
                        // The run is over: no more resends, the frame stays unacknowledged.
                        return End::Finished;
                    }
                    let Some(p) = self.pending.as_mut() else { continue };
                    if !p.wrong {
                        stats.ack_timeouts.fetch_add(1, Relaxed);
                    }
                    if p.attempts >= MAX_ATTEMPTS {
                        // Real devices give up on the connection and start over.
                        return End::Lost;
                    }
                    stats.retransmits.fetch_add(u64::from(p.batch.frames), Relaxed);
                    if conn.send(&p.batch.units).await.is_err() {
                        return End::Lost;
                    }
                    let now = Instant::now();
                    p.attempts += 1;
                    (p.next, p.wrong) = (0, false);
                    (p.sent_at, p.deadline) = (now, now + ctx.opts.ack_timeout);
                }
                _ = sleep_until(next_tick), if deadline.is_none() && sending => {
                    let batch = self.next_batch();
                    stats.frames_sent.fetch_add(u64::from(batch.frames), Relaxed);
                    stats.records_sent.fetch_add(u64::from(batch.records), Relaxed);
                    let now = Instant::now();
                    let send = conn.send(&batch.units).await;
                    self.pending = Some(Pending {
                        batch,
                        next: 0,
                        sent_at: now,
                        deadline: now + ctx.opts.ack_timeout,
                        attempts: 1,
                        wrong: false,
                    });
                    if send.is_err() {
                        return End::Lost;
                    }
                    // A device that fell behind does not burst to catch up.
                    next_tick = (next_tick + interval).max(now);
                }
            }
        }
    }

    /// The next `records_per_frame` fixes, continuing the track up to now.
    fn next_batch(&mut self) -> Batch {
        let k = u64::from(self.ctx.opts.records_per_frame.max(1));
        let times = record_times(self.last_record_ms, track::now_ms(), k);
        self.last_record_ms = times.last().copied().unwrap_or(self.last_record_ms);
        let fixes: Vec<Fix> = times.iter().map(|&t| self.track.at(t)).collect();
        self.codec.batch(&fixes)
    }

    /// One message from the server.
    async fn handle(&mut self, conn: &mut Conn, m: Incoming) -> io::Result<()> {
        let stats = &self.ctx.stats;
        match m {
            Incoming::Reply(r) => {
                let Some(p) = self.pending.as_mut() else {
                    stats.unexpected_replies.fetch_add(1, Relaxed);
                    return Ok(());
                };
                if p.batch.expected.get(p.next) == Some(&r) {
                    p.next += 1;
                    if p.next == p.batch.expected.len() {
                        stats.acked(
                            self.index,
                            p.batch.frames.into(),
                            p.batch.records.into(),
                            p.sent_at.elapsed(),
                        );
                        self.pending = None;
                        if !self.first_acked {
                            self.first_acked = true;
                            stats.first_acked(self.ctx.start.elapsed());
                        }
                    }
                } else if !p.wrong {
                    debug!(
                        device = self.index,
                        got = %hex::encode(&r),
                        want = %hex::encode(p.batch.expected.get(p.next).map(Vec::as_slice).unwrap_or_default()),
                        "wrong ACK"
                    );
                    // Counted once per transmission; the frame is resent at its deadline.
                    stats.ack_errors.fetch_add(1, Relaxed);
                    p.wrong = true;
                }
            }
            Incoming::Command { text, answer } => {
                debug!(device = self.index, %text, "command");
                stats.commands_received.fetch_add(1, Relaxed);
                conn.send(std::slice::from_ref(&answer)).await?;
                stats.commands_answered.fetch_add(1, Relaxed);
            }
            Incoming::AnswerAck { ok } => {
                if !ok {
                    stats.ack_errors.fetch_add(1, Relaxed);
                }
            }
            Incoming::Ignored(why) => {
                debug!(device = self.index, why, "ignored a server message");
                stats.protocol_errors.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_times_are_spread_and_never_repeat() {
        assert_eq!(record_times(1000, 2000, 4), vec![1250, 1500, 1750, 2000]);
        assert_eq!(record_times(1000, 2000, 1), vec![2000]);
        // Back to back (no time since the last batch): still strictly apart.
        assert_eq!(record_times(2000, 2000, 3), vec![2050, 2100, 2150]);
        assert_eq!(record_times(5000, 2000, 2), vec![5050, 5100]);
        let mut last = 0;
        for now in [10, 10, 11, 500, 500] {
            let t = record_times(last, now, 10);
            assert!(t.windows(2).all(|w| w[1] >= w[0] + MIN_RECORD_STEP_MS));
            assert!(t[0] >= last + MIN_RECORD_STEP_MS);
            last = *t.last().unwrap();
        }
    }
}
