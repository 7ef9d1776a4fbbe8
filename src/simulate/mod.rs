//! `avlgate simulate`: virtual trackers for load tests and end-to-end trials without hardware.
//!
//! Each virtual device has its own IMEI, logs in as the real device does, sends a smooth moving
//! track at its interval, checks the protocol's exact ACK for every frame, retransmits what was
//! not acknowledged (the same bytes, as real devices do), reconnects with backoff when the
//! connection drops, and answers server commands.
//!
//! # Layout
//!
//! - [`track`]: the positions a device reports (a circle per device, speed and course
//!   consistent with the movement).
//! - [`device`]: the device side of each protocol (sans-IO encoders and reply parsers in
//!   `device/{teltonika,wialon,gt06}.rs`) and the one task per device that drives a socket.
//! - [`report`]: shared counters, the ACK latency histogram, the progress line and the
//!   [`Summary`].
//!
//! [`run`] is the library entry point: the binary and the tests call it the same way.

pub mod device;
pub mod report;
pub mod track;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use report::Summary;

/// What the devices speak: a simulator variant of a registered protocol (`teltonika8e`,
/// `wialon2`, `gt06`, ...; `avlgate simulate --help` lists them, from the registry).
#[derive(Clone, Copy)]
pub struct DeviceProtocol {
    /// The protocol the variant belongs to.
    pub module: &'static crate::protocol::ProtocolModule,
    pub sim: &'static crate::protocol::Simulator,
}

impl DeviceProtocol {
    /// The variant called `name`.
    pub fn named(name: &str) -> Option<DeviceProtocol> {
        crate::protocol::simulator(name).map(|(module, sim)| DeviceProtocol { module, sim })
    }

    /// Every variant of every registered protocol.
    pub fn all() -> Vec<DeviceProtocol> {
        crate::protocol::REGISTRY
            .iter()
            .flat_map(|m| {
                m.simulators()
                    .iter()
                    .map(move |sim| DeviceProtocol { module: m, sim })
            })
            .collect()
    }

    pub fn name(self) -> &'static str {
        self.sim.name
    }
}

impl PartialEq for DeviceProtocol {
    fn eq(&self, other: &Self) -> bool {
        self.sim.name == other.sim.name
    }
}

impl Eq for DeviceProtocol {}

impl std::fmt::Debug for DeviceProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sim.name)
    }
}

impl serde::Serialize for DeviceProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.sim.name)
    }
}

impl std::str::FromStr for DeviceProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DeviceProtocol::named(s).ok_or_else(|| {
            let names: Vec<_> = DeviceProtocol::all().iter().map(|d| d.name()).collect();
            format!("no simulator `{s}` (simulators: {})", names.join(", "))
        })
    }
}

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimTransport {
    Tcp,
    Udp,
}

/// Everything a run needs. [`SimulateArgs`] builds it from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Gateway address (`host:port`, resolved once at start).
    pub target: String,
    pub protocol: DeviceProtocol,
    pub transport: SimTransport,
    pub devices: u64,
    /// Time between two frames of one device.
    pub interval: Duration,
    /// Records per frame (Teltonika AVL count, Wialon `#B#` records); GT06 sends this many
    /// one-record packets back to back.
    pub records_per_frame: u16,
    /// Stop sending after this long; `None` runs until `cancel`.
    pub duration: Option<Duration>,
    /// Local addresses to bind before connecting, used round-robin by device index. Empty: the
    /// system picks.
    pub source_ips: Vec<IpAddr>,
    /// Connect every device at once (no ramp-up, no concurrency bound).
    pub reconnect_storm: bool,
    /// Devices get IMEIs `imei_base + index` (14 digits) plus the Luhn check digit.
    pub imei_base: u64,
    /// A frame (or login) not acknowledged within this is resent.
    pub ack_timeout: Duration,
    /// Connects are spread evenly over this period (ignored in a storm).
    pub ramp_up: Duration,
    /// Connection attempts (connect + login) in progress at once, at most (ignored in a storm).
    pub max_connecting: usize,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl Options {
    /// Defaults for everything but the target and protocol.
    pub fn new(target: impl Into<String>, protocol: DeviceProtocol) -> Self {
        Options {
            target: target.into(),
            protocol,
            transport: SimTransport::Tcp,
            devices: 1,
            interval: Duration::from_millis(1000),
            records_per_frame: 1,
            duration: Some(Duration::from_secs(10)),
            source_ips: Vec::new(),
            reconnect_storm: false,
            imei_base: DEFAULT_IMEI_BASE,
            ack_timeout: Duration::from_secs(10),
            ramp_up: default_ramp_up(1),
            max_connecting: 1024,
            progress: false,
        }
    }
}

/// 14 digits: TAC `35000000`, serial from 0.
pub const DEFAULT_IMEI_BASE: u64 = 35_000_000_000_000;

/// One millisecond per device, at most ten seconds: 100,000 devices connect at 10,000/s.
pub fn default_ramp_up(devices: u64) -> Duration {
    Duration::from_millis(devices.min(10_000))
}

/// `avlgate simulate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Gateway address, HOST:PORT.
    #[arg(long)]
    pub target: String,
    /// Device protocol: a simulator variant (`avlgate protocols` lists them).
    #[arg(long)]
    pub protocol: DeviceProtocol,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: SimTransport,
    /// Number of virtual devices.
    #[arg(long, default_value_t = 1)]
    pub devices: u64,
    /// Milliseconds between two frames of one device.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Records per frame (1..=255). GT06 packets hold one record: it sends K packets at once.
    #[arg(long, default_value_t = 1)]
    pub records_per_frame: u16,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub duration_secs: u64,
    /// Source addresses to spread connections over: a range `127.0.0.2-127.0.0.200`, a
    /// comma-separated list, or both (`10.0.0.1-10.0.0.9,10.0.1.1`).
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Connect all devices at once (no ramp-up); report the time until every first frame was
    /// acknowledged.
    #[arg(long)]
    pub reconnect_storm: bool,
    /// IMEI base: device i gets the 14 digits `base + i` and a Luhn check digit.
    #[arg(long, default_value_t = DEFAULT_IMEI_BASE)]
    pub imei_base: u64,
    /// Milliseconds to wait for an ACK before resending the same bytes.
    #[arg(long, default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    /// Spread connects over this many milliseconds (default: 1 ms per device, at most 10 s).
    #[arg(long)]
    pub ramp_up_ms: Option<u64>,
    /// Connection attempts in progress at once, at most.
    #[arg(long, default_value_t = 1024)]
    pub max_connecting: usize,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

impl SimulateArgs {
    pub fn options(&self) -> Result<Options, SimulateError> {
        Ok(Options {
            target: self.target.clone(),
            protocol: self.protocol,
            transport: self.transport,
            devices: self.devices,
            interval: Duration::from_millis(self.interval_ms),
            records_per_frame: self.records_per_frame,
            duration: (self.duration_secs > 0).then(|| Duration::from_secs(self.duration_secs)),
            source_ips: match &self.source_ips {
                Some(s) => parse_source_ips(s)?,
                None => Vec::new(),
            },
            reconnect_storm: self.reconnect_storm,
            imei_base: self.imei_base,
            ack_timeout: Duration::from_millis(self.ack_timeout_ms),
            ramp_up: self
                .ramp_up_ms
                .map_or_else(|| default_ramp_up(self.devices), Duration::from_millis),
            max_connecting: self.max_connecting,
            progress: !self.quiet,
        })
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("cannot resolve {target}: {source}")]
    Resolve {
        target: String,
        source: std::io::Error,
    },
}

fn invalid(why: impl Into<String>) -> SimulateError {
    SimulateError::Invalid(why.into())
}

/// Most addresses one `--source-ips` may expand to.
const MAX_SOURCE_IPS: usize = 65_536;

/// Parses `a.b.c.d-a.b.c.e` ranges (IPv4) and single addresses (v4 or v6), comma-separated.
pub fn parse_source_ips(s: &str) -> Result<Vec<IpAddr>, SimulateError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('-') {
            Some((a, b)) => {
                let parse = |x: &str| {
                    x.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| invalid(format!("{x:?} in range {item:?} is not IPv4")))
                };
                let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if b < a {
                    return Err(invalid(format!("range {item:?} runs backwards")));
                }
                if (b - a) as usize >= MAX_SOURCE_IPS.saturating_sub(out.len()) {
                    return Err(invalid(format!(
                        "more than {MAX_SOURCE_IPS} source addresses"
                    )));
                }
                out.extend((a..=b).map(|n| IpAddr::V4(Ipv4Addr::from(n))));
            }
            None => {
                let ip = item
                    .parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{item:?} is not an IP address")))?;
                if out.len() >= MAX_SOURCE_IPS {
                    return Err(invalid(format!(
                        "more than {MAX_SOURCE_IPS} source addresses"
                    )));
                }
                out.push(ip);
            }
        }
    }
    if out.is_empty() {
        return Err(invalid("--source-ips lists no address"));
    }
    Ok(out)
}

/// Device `index`'s IMEI: the 14 digits of `base + index`, then the Luhn check digit.
/// `None` when that does not fit 14 digits.
pub fn imei(base: u64, index: u64) -> Option<String> {
    let body = base.checked_add(index)?;
    if body >= 100_000_000_000_000 {
        return None;
    }
    let digits = format!("{body:014}");
    Some(format!("{digits}{}", crate::device_id::luhn_digit(&digits)))
}

/// What every device task shares.
pub(crate) struct Ctx {
    pub opts: Options,
    pub target: SocketAddr,
    pub stats: Arc<report::Stats>,
    /// Cancelled at the end of the run: no new frames; frames in flight may still be acked.
    pub stop_sending: CancellationToken,
    /// Cancelled when the drain deadline passes: every task ends now.
    pub hard_stop: CancellationToken,
    pub connect_limit: Arc<Semaphore>,
    pub start: Instant,
}

fn validate(o: &Options) -> Result<(), SimulateError> {
    if o.devices == 0 || o.devices > 10_000_000 {
        return Err(invalid("--devices must be 1..=10000000"));
    }
    if o.interval.is_zero() {
        return Err(invalid("--interval-ms must be at least 1"));
    }
    if !(1..=255).contains(&o.records_per_frame) {
        return Err(invalid("--records-per-frame must be 1..=255"));
    }
    if o.ack_timeout.is_zero() {
        return Err(invalid("--ack-timeout-ms must be at least 1"));
    }
    if imei(o.imei_base, o.devices - 1).is_none() {
        return Err(invalid("--imei-base + --devices does not fit 14 digits"));
    }
    if o.max_connecting == 0 {
        return Err(invalid("--max-connecting must be at least 1"));
    }
    Ok(())
}

/// Runs the simulation until `options.duration` passes or `cancel` fires, then lets frames in
/// flight be acknowledged (at most one ACK timeout more) and returns the summary.
pub async fn run(options: Options, cancel: CancellationToken) -> Result<Summary, SimulateError> {
    validate(&options)?;
    let target = tokio::net::lookup_host(&options.target)
        .await
        .map_err(|source| SimulateError::Resolve {
            target: options.target.clone(),
            source,
        })?
        .find(|a| {
            // Pick the address family the source addresses can reach.
            options
                .source_ips
                .first()
                .is_none_or(|s| s.is_ipv4() == a.is_ipv4())
        })
        .ok_or_else(|| {
            invalid(format!(
                "{} has no address of the source IPs' family",
                options.target
            ))
        })?;
    if options
        .source_ips
        .iter()
        .any(|s| s.is_ipv4() != target.is_ipv4())
    {
        return Err(invalid("source addresses and target mix IPv4 and IPv6"));
    }

    warn_if_frames_exceed_gateway_caps(&options);

    let stats = Arc::new(report::Stats::new(options.devices));
    let stop_sending = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let permits = if options.reconnect_storm {
        Semaphore::MAX_PERMITS
    } else {
        options.max_connecting
    };
    let start = Instant::now();
    let ctx = Arc::new(Ctx {
        opts: options.clone(),
        target,
        stats: stats.clone(),
        stop_sending: stop_sending.clone(),
        hard_stop: hard_stop.clone(),
        connect_limit: Arc::new(Semaphore::new(permits)),
        start,
    });

    let progress = options.progress.then(|| {
        let (stats, stop) = (stats.clone(), hard_stop.clone());
        tokio::spawn(report::progress(stats, start, stop))
    });

    let tracker = TaskTracker::new();
    let n = options.devices;
    for i in 0..n {
        let delay = if options.reconnect_storm {
            Duration::ZERO
        } else {
            // Even spacing; u128 so 10M devices × a long ramp cannot overflow.
            let nanos = options.ramp_up.as_nanos() * u128::from(i) / u128::from(n);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        tracker.spawn(device::run(ctx.clone(), i, delay));
    }
    tracker.close();

    let ran_to_end = async {
        match options.duration {
            Some(d) => tokio::time::sleep_until(start + d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = ran_to_end => {}
        // Every device gave up on its own (cannot happen today: devices retry until stopped).
        _ = tracker.wait() => {}
    }
    let sending_window = start.elapsed();
    stop_sending.cancel();
    // Frames in flight get one more ACK timeout; then everything stops.
    let drain = options.ack_timeout + Duration::from_millis(500);
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        hard_stop.cancel();
        tracker.wait().await;
    }
    hard_stop.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    Ok(stats.summary(&options, target, sending_window))
}

/// A frame larger than the gateway's default cap is refused and the connection closed:
/// say so before the run rather than after thousands of reconnects.
fn warn_if_frames_exceed_gateway_caps(o: &Options) {
    let cap = crate::protocol::ProtocolConfig::default()
        .settings(o.protocol.module.name())
        .max_frame_bytes();
    let Some(imei) = imei(o.imei_base, 0) else {
        return;
    };
    let mut codec = device::codec(o.protocol, o.transport, &imei);
    let t = track::Track::new(0, track::now_ms());
    let fixes: Vec<_> = (0..u64::from(o.records_per_frame))
        .map(|i| t.at(track::now_ms() + i))
        .collect();
    let largest = codec
        .batch(&fixes)
        .units
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    if largest > cap {
        tracing::warn!(
            frame_bytes = largest,
            gateway_default_cap = cap,
            "frames are larger than the gateway accepts by default; lower --records-per-frame or raise the gateway's cap"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imeis_are_15_digits_with_a_luhn_check_digit() {
        // The Luhn example IMEI from the GSMA/Wikipedia, and Teltonika's example device.
        assert_eq!(crate::device_id::luhn_digit("49015420323751"), 8);
        assert_eq!(crate::device_id::luhn_digit("35630704244101"), 3);
        assert_eq!(imei(49015420323750, 1).as_deref(), Some("490154203237518"));
        assert_eq!(imei(0, 0).as_deref(), Some("000000000000000"));
        assert_eq!(imei(DEFAULT_IMEI_BASE, 0).unwrap().len(), 15);
        assert_eq!(imei(99_999_999_999_999, 1), None);
        assert_eq!(imei(u64::MAX, 1), None);
    }

    #[test]
    fn source_ip_ranges_and_lists() {
        let v = parse_source_ips("127.0.0.2-127.0.0.4, 10.0.0.1,::1").unwrap();
        assert_eq!(
            v,
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "127.0.0.3".parse().unwrap(),
                "127.0.0.4".parse().unwrap(),
                "10.0.0.1".parse().unwrap(),
                "::1".parse().unwrap(),
            ]
        );
        assert_eq!(
            parse_source_ips("10.0.0.255-10.0.1.0").unwrap().len(),
            2,
            "ranges cross octet boundaries"
        );
        assert!(parse_source_ips("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_source_ips("0.0.0.0-255.255.255.255").is_err());
        assert!(parse_source_ips("foo").is_err());
        assert!(parse_source_ips(" , ").is_err());
    }

    #[test]
    fn options_are_validated() {
        let ok = Options::new("127.0.0.1:1", DeviceProtocol::named("gt06").unwrap());
        assert!(validate(&ok).is_ok());
        for bad in [
            Options {
                devices: 0,
                ..ok.clone()
            },
            Options {
                records_per_frame: 256,
                ..ok.clone()
            },
            Options {
                interval: Duration::ZERO,
                ..ok.clone()
            },
            Options {
                imei_base: 99_999_999_999_999,
                devices: 2,
                ..ok.clone()
            },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
