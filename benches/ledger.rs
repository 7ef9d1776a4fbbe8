//! The command ledger at fleet scale (`cargo bench --bench ledger`).
//!
//! Every pod reads the whole fleet's command log: the session announcements (LOGIN) of every
//! device, the commands of every device and the pods' claims. The dispatcher calls
//! [`Ledger::tick`] every 250 ms and [`Ledger::session_up`] on every login, on one task that also
//! carries the pod's command traffic, so their cost must not grow with the fleet times the
//! commands. One pod of `PODS` is measured, holding its share of the fleet's sessions, with
//! commands waiting for devices that are offline (queued until they connect or expire) and
//! commands already done (remembered to ignore a re-sent id):
//!
//! - `tick/<fleet>_devices_<pending>_pending`: one tick with every pod alive, the clock still:
//!   the common tick;
//! - `ticks_250ms_apart/...`: the mean tick as the dispatcher makes them, the clock moving
//!   250 ms and every pod beating before each: every 4th also walks every command (lost
//!   proposals, expiry, lost pods) and every 20th prunes (before, every tick did both);
//! - `prune/...`: the pass that forgets old commands and announcements (every 5 s);
//! - `session_up/...`: one local login.
//!
//! Compare two builds side by side by running both bench binaries in one sitting (the figures
//! in docs/load-runs.md were taken that way).
//!
//! `LEDGER_MEMORY=1 cargo bench --bench ledger` prints instead what the ledger holds: bytes per
//! device of the fleet (every pod keeps every device's session announcement), per local
//! session, and per remembered command, as mimalloc hands them out (size classes included).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, SystemTime};

use avlgate::command::ledger::{self, Ledger, LedgerConfig};
use avlgate::event::timestamp;
use avlgate::proto::{command, ClaimPurpose, Command, CommandClaim};
use criterion::Criterion;

#[global_allocator]
static GLOBAL: Counting = Counting;

// In the mimalloc library the binary links (the `mimalloc` crate exposes it only with a
// feature of its own).
unsafe extern "C" {
    fn mi_usable_size(p: *const std::ffi::c_void) -> usize;
}

/// mimalloc, counting the bytes it has handed out and not taken back while [`COUNTING`].
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

impl Counting {
    fn count(ptr: *mut u8, sign: isize) {
        if COUNTING.load(Ordering::Relaxed) && !ptr.is_null() {
            // SAFETY: `ptr` was handed out by mimalloc and is still live.
            let n = unsafe { mi_usable_size(ptr.cast()) } as isize;
            LIVE.fetch_add(sign * n, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call goes to mimalloc unchanged; counting only reads the block's size.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
        Self::count(p, 1);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
        Self::count(p, 1);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::count(ptr, -1);
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(ptr, -1);
        let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        Self::count(p, 1);
        p
    }
}

/// The bytes `make` leaves allocated in what it returns (the value is dropped after).
fn held_by<T>(make: impl FnOnce() -> T) -> usize {
    COUNTING.store(true, Ordering::Relaxed);
    let before = LIVE.load(Ordering::Relaxed);
    let value = make();
    let held = LIVE.load(Ordering::Relaxed) - before;
    COUNTING.store(false, Ordering::Relaxed);
    drop(black_box(value));
    usize::try_from(held).unwrap_or(0)
}

/// What one pod's ledger holds for a fleet, per device, per local session and per command.
fn memory() {
    let now = SystemTime::now();
    let devices = 200_000;
    let pending = 10_000;
    let fleet_only = held_by(|| fleet(devices, 0, now));
    let with_commands = held_by(|| fleet(devices, pending, now));
    // The same fleet, none of it on this pod: what the announcements alone cost.
    let elsewhere = held_by(|| fleet_elsewhere(devices, now));
    let local = devices / PODS;
    let per_device = elsewhere as f64 / devices as f64;
    println!("one pod of {PODS}, a fleet of {devices} devices ({local} on this pod):");
    println!(
        "  announcements only (no device on this pod): {elsewhere} B = {per_device:.0} B per device"
    );
    println!(
        "  with its {local} local sessions: {fleet_only} B = {:.0} B more per local session",
        (fleet_only as f64 - elsewhere as f64) / local as f64
    );
    println!(
        "  + {pending} waiting and {pending} done commands: {with_commands} B = {:.0} B per command",
        (with_commands as f64 - fleet_only as f64) / (2 * pending) as f64
    );
    println!(
        "  projected per pod for a fleet of 1,000,000 devices: {:.0} MiB of announcements",
        per_device * 1e6 / (1024.0 * 1024.0)
    );
}

const PODS: usize = 10;
/// The dispatcher's cap (a 60 s lease: min(lease / 4, 2 s)).
const JITTER_CAP: Duration = Duration::from_secs(2);

fn imei(n: usize) -> String {
    format!("35630704{n:07}")
}

fn pod(p: usize) -> (String, String) {
    (format!("avlgate-{p}"), format!("avlgate-{p}-7f3a9c"))
}

fn claim(p: usize, imei: &str, purpose: ClaimPurpose, now: SystemTime) -> CommandClaim {
    let (gateway, instance) = pod(p);
    CommandClaim {
        imei: imei.into(),
        gateway,
        instance,
        purpose: purpose as i32,
        at: Some(timestamp(now)),
        ..Default::default()
    }
}

/// Pod 0's ledger after reading the log of a fleet of `devices` spread over `PODS` pods, with
/// `pending` commands waiting for offline devices and as many already done.
fn fleet(devices: usize, pending: usize, now: SystemTime) -> Ledger {
    fleet_on(devices, pending, now, |d| d % PODS)
}

/// The same log with every device on another pod.
fn fleet_elsewhere(devices: usize, now: SystemTime) -> Ledger {
    fleet_on(devices, 0, now, |d| 1 + d % (PODS - 1))
}

/// Pod 0's ledger after reading the log, device `d` being on pod `pod_of(d)`.
fn fleet_on(
    devices: usize,
    pending: usize,
    now: SystemTime,
    pod_of: impl Fn(usize) -> usize,
) -> Ledger {
    let (gateway, instance) = pod(0);
    let mut l = Ledger::new(LedgerConfig {
        gateway,
        instance,
        // Long enough that nothing expires or is forgotten while the clock moves 250 ms per
        // measured tick.
        default_ttl: Duration::from_secs(30 * 24 * 3600),
        max_ttl: Duration::from_secs(30 * 24 * 3600),
        max_entries: 1_000_000,
        remember: Duration::from_secs(30 * 24 * 3600),
        proposal_timeout: Duration::from_secs(10),
        lease: Duration::from_secs(60),
    });
    let started = now - Duration::from_secs(600);
    for d in 0..devices {
        let p = pod_of(d);
        let id = imei(d);
        if p == 0 {
            l.session_up(&id, started, started);
        }
        let mut login = claim(p, &id, ClaimPurpose::Login, started);
        login.session_started = Some(timestamp(started));
        l.on_claim(login, started);
    }
    // Commands for devices that are not connected anywhere (numbers past the fleet's).
    for c in 0..2 * pending {
        let c_imei = imei(devices + c);
        let id = format!("cmd-{c}");
        l.on_command(
            Command {
                command_id: id.clone(),
                imei: c_imei.clone(),
                body: Some(command::Body::Text("getinfo".into())),
                ttl_secs: 30 * 24 * 3600,
                ..Default::default()
            },
            started,
        );
        if c >= pending {
            // Expired by pod 1, published: done, remembered for a while.
            let mut e = claim(1, &c_imei, ClaimPurpose::Expire, started);
            e.command_id = id.clone();
            l.on_claim(e, started);
            let mut p = claim(1, &c_imei, ClaimPurpose::Published, started);
            p.command_id = id;
            l.on_claim(p, started);
        }
    }
    // Every pod beats, this one included: the log flows and nobody is lost.
    for p in 0..PODS {
        l.on_claim(claim(p, "", ClaimPurpose::Beat, now), now);
    }
    l
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let (_, instance) = pod(0);
    let mut g = c.benchmark_group("ledger");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (devices, pending) in [(200_000, 0), (200_000, 10_000)] {
        let mut l = fleet(devices, pending, now);
        // The first tick proposes this pod's beat and whatever setup left due; the measured
        // ones are the steady state.
        l.tick(now, |k| ledger::jitter(&instance, k, JITTER_CAP));
        let name = format!("{devices}_devices_{pending}_pending");
        g.bench_function(format!("tick/{name}"), |b| {
            b.iter(|| black_box(l.tick(now, |k| ledger::jitter(&instance, k, JITTER_CAP))))
        });
        let mut at = now;
        g.bench_function(format!("ticks_250ms_apart/{name}"), |b| {
            b.iter(|| {
                at += Duration::from_millis(250);
                for p in 0..PODS {
                    l.on_claim(claim(p, "", ClaimPurpose::Beat, at), at);
                }
                black_box(l.tick(at, |k| ledger::jitter(&instance, k, JITTER_CAP)))
            })
        });
        let now = at;
        g.bench_function(format!("prune/{name}"), |b| {
            b.iter(|| {
                l.prune(now);
                black_box(&l);
            })
        });
        let local = imei(0);
        let started = now - Duration::from_secs(600);
        g.bench_function(format!("session_up/{name}"), |b| {
            b.iter(|| black_box(l.session_up(&local, started, now)))
        });
    }
    g.finish();
}

fn main() {
    if std::env::var_os("LEDGER_MEMORY").is_some() {
        memory();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
