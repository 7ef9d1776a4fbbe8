//! What a run measured: counters every device task bumps, the ACK latency histogram
//! (hdrhistogram, microseconds), the once-a-second progress line and the final [`Summary`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Options;

/// Latency shards: devices record into `index % SHARDS` so that thousands of tasks on a few
/// threads rarely wait for one lock.
const SHARDS: usize = 16;
/// Largest latency tracked exactly: one hour (slower ACKs are clamped to it).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Counters shared by every device task.
pub struct Stats {
    devices: u64,
    /// Devices that logged in (or, without a login, opened their socket) at least once.
    pub devices_connected: AtomicU64,
    /// Connections up now.
    pub online: AtomicU64,
    /// Successful logins, reconnects included.
    pub connections: AtomicU64,
    pub connect_failures: AtomicU64,
    pub login_failures: AtomicU64,
    /// Established connections that ended before the run did.
    pub disconnects: AtomicU64,
    pub frames_sent: AtomicU64,
    pub records_sent: AtomicU64,
    pub frames_acked: AtomicU64,
    pub records_acked: AtomicU64,
    /// Replies that were not the exact ACK expected.
    pub ack_errors: AtomicU64,
    /// Frames whose ACK did not come within the ACK timeout.
    pub ack_timeouts: AtomicU64,
    /// Frames sent again (after a timeout, a wrong ACK or a reconnect).
    pub retransmits: AtomicU64,
    /// Replies when none was awaited (a late ACK for a frame already resent, say).
    pub unexpected_replies: AtomicU64,
    /// Server bytes that are no message of the protocol.
    pub protocol_errors: AtomicU64,
    pub commands_received: AtomicU64,
    pub commands_answered: AtomicU64,
    /// Devices whose first frame was acknowledged.
    pub first_frames_acked: AtomicU64,
    /// Milliseconds from the start until the last device's first frame was acknowledged.
    all_first_acked_ms: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant figures: about 30 KiB per shard.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant, valid bounds")
}

impl Stats {
    pub fn new(devices: u64) -> Self {
        Stats {
            devices,
            devices_connected: AtomicU64::new(0),
            online: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            login_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            frames_acked: AtomicU64::new(0),
            records_acked: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            ack_timeouts: AtomicU64::new(0),
            retransmits: AtomicU64::new(0),
            unexpected_replies: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            commands_received: AtomicU64::new(0),
            commands_answered: AtomicU64::new(0),
            first_frames_acked: AtomicU64::new(0),
            all_first_acked_ms: AtomicU64::new(u64::MAX),
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    /// A frame (or batch) was acknowledged `latency` after it was (last) sent.
    pub fn acked(&self, device: u64, frames: u64, records: u64, latency: Duration) {
        self.frames_acked.fetch_add(frames, Relaxed);
        self.records_acked.fetch_add(records, Relaxed);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let shard = &self.latency[(device % SHARDS as u64) as usize];
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(us.clamp(1, MAX_LATENCY_US));
    }

    /// A device's first frame was acknowledged, `since_start` into the run.
    pub fn first_acked(&self, since_start: Duration) {
        let n = self.first_frames_acked.fetch_add(1, Relaxed) + 1;
        if n == self.devices {
            let ms = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX - 1);
            self.all_first_acked_ms.store(ms, Relaxed);
        }
    }

    fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for s in &self.latency {
            let _ = all.add(&*s.lock().unwrap_or_else(|p| p.into_inner()));
        }
        all
    }

    fn latency(&self) -> Latency {
        let h = self.merged();
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            samples: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }

    /// The summary of a run whose sending phase lasted `window`.
    pub fn summary(&self, o: &Options, target: SocketAddr, window: Duration) -> Summary {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let secs = window.as_secs_f64().max(1e-9);
        let all_first = g(&self.all_first_acked_ms);
        Summary {
            protocol: o.protocol.name().to_string(),
            transport: match o.transport {
                super::SimTransport::Tcp => "tcp",
                super::SimTransport::Udp => "udp",
            }
            .to_string(),
            target: target.to_string(),
            devices: self.devices,
            interval_ms: u64::try_from(o.interval.as_millis()).unwrap_or(u64::MAX),
            records_per_frame: o.records_per_frame,
            elapsed_secs: window.as_secs_f64(),
            devices_connected: g(&self.devices_connected),
            connections: g(&self.connections),
            connect_failures: g(&self.connect_failures),
            login_failures: g(&self.login_failures),
            disconnects: g(&self.disconnects),
            frames_sent: g(&self.frames_sent),
            records_sent: g(&self.records_sent),
            frames_acked: g(&self.frames_acked),
            records_acked: g(&self.records_acked),
            frames_unacked: g(&self.frames_sent).saturating_sub(g(&self.frames_acked)),
            ack_errors: g(&self.ack_errors),
            ack_timeouts: g(&self.ack_timeouts),
            retransmits: g(&self.retransmits),
            unexpected_replies: g(&self.unexpected_replies),
            protocol_errors: g(&self.protocol_errors),
            records_per_sec: g(&self.records_acked) as f64 / secs,
            frames_per_sec: g(&self.frames_acked) as f64 / secs,
            ack_latency_ms: self.latency(),
            commands_received: g(&self.commands_received),
            commands_answered: g(&self.commands_answered),
            first_frames_acked: g(&self.first_frames_acked),
            all_first_frames_acked_ms: (all_first != u64::MAX).then_some(all_first),
        }
    }
}

/// ACK latency, milliseconds: from the (last) transmission of a frame to its exact ACK.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// The end-of-run report (`--json` prints it as one object).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Summary {
    pub protocol: String,
    pub transport: String,
    pub target: String,
    pub devices: u64,
    pub interval_ms: u64,
    pub records_per_frame: u16,
    /// Seconds from the start until sending stopped; rates are over this window.
    pub elapsed_secs: f64,
    pub devices_connected: u64,
    pub connections: u64,
    pub connect_failures: u64,
    pub login_failures: u64,
    pub disconnects: u64,
    pub frames_sent: u64,
    pub records_sent: u64,
    pub frames_acked: u64,
    pub records_acked: u64,
    pub frames_unacked: u64,
    pub ack_errors: u64,
    pub ack_timeouts: u64,
    pub retransmits: u64,
    pub unexpected_replies: u64,
    pub protocol_errors: u64,
    pub records_per_sec: f64,
    pub frames_per_sec: f64,
    pub ack_latency_ms: Latency,
    pub commands_received: u64,
    pub commands_answered: u64,
    pub first_frames_acked: u64,
    /// From the start until every device's first frame was acknowledged (the storm figure).
    pub all_first_frames_acked_ms: Option<u64>,
}

impl Summary {
    /// True when every device connected, every frame was acknowledged and no ACK was wrong.
    pub fn clean(&self) -> bool {
        self.devices_connected == self.devices
            && self.frames_unacked == 0
            && self.ack_errors == 0
            && self.frames_acked > 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.ack_latency_ms;
        writeln!(
            f,
            "{} over {} to {}: {} devices, every {} ms, {} records per frame, {:.1} s",
            self.protocol,
            self.transport,
            self.target,
            self.devices,
            self.interval_ms,
            self.records_per_frame,
            self.elapsed_secs
        )?;
        writeln!(
            f,
            "devices connected   {} of {} ({} logins, {} connect failures, {} login failures, {} disconnects)",
            self.devices_connected,
            self.devices,
            self.connections,
            self.connect_failures,
            self.login_failures,
            self.disconnects
        )?;
        writeln!(
            f,
            "frames              {} sent, {} acknowledged, {} unacknowledged",
            self.frames_sent, self.frames_acked, self.frames_unacked
        )?;
        writeln!(
            f,
            "records             {} sent, {} acknowledged",
            self.records_sent, self.records_acked
        )?;
        writeln!(
            f,
            "ACK errors          {} wrong, {} timed out, {} retransmits, {} unexpected replies, {} protocol errors",
            self.ack_errors, self.ack_timeouts, self.retransmits, self.unexpected_replies, self.protocol_errors
        )?;
        writeln!(
            f,
            "rate                {:.0} records/s, {:.0} frames/s",
            self.records_per_sec, self.frames_per_sec
        )?;
        writeln!(
            f,
            "ACK latency         p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            l.p50, l.p90, l.p99, l.max, l.samples
        )?;
        writeln!(
            f,
            "commands            {} received, {} answered",
            self.commands_received, self.commands_answered
        )?;
        match self.all_first_frames_acked_ms {
            Some(ms) => writeln!(
                f,
                "first frames        all {} acknowledged after {ms} ms",
                self.devices
            ),
            None => writeln!(
                f,
                "first frames        {} of {} acknowledged",
                self.first_frames_acked, self.devices
            ),
        }
    }
}

/// Prints a progress line to stderr every second until `stop`.
pub async fn progress(stats: std::sync::Arc<Stats>, start: Instant, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let (mut last_records, mut last_frames) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let g = |a: &AtomicU64| a.load(Relaxed);
        let (records, frames) = (g(&stats.records_acked), g(&stats.frames_acked));
        let p99 = stats.merged().value_at_quantile(0.99) as f64 / 1000.0;
        eprintln!(
            "[{:>5.0}s] online {}/{}  frames acked {} (+{}/s)  records acked {} (+{}/s)  ack errors {}  timeouts {}  retransmits {}  p99 {:.1} ms",
            start.elapsed().as_secs_f64(),
            g(&stats.online),
            stats.devices,
            frames,
            frames.saturating_sub(last_frames),
            records,
            records.saturating_sub(last_records),
            g(&stats.ack_errors),
            g(&stats.ack_timeouts),
            g(&stats.retransmits),
            p99,
        );
        (last_records, last_frames) = (records, frames);
    }
}
