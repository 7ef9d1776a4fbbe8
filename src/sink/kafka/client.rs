//! librdkafka clients that outlive a fatal error, and what readiness learns from them.
//!
//! librdkafka calls some errors *fatal*: the client instance can never work again. The
//! idempotent producer raises one when it cannot keep its sequence guarantees, typically after
//! a broker stalled long enough for in-flight records to time out and the broker then refused
//! to bump the producer epoch (`ProducerFenced`, `OutOfOrderSequenceNumber`, …). From then on
//! every produce call fails with `_FATAL`; nothing recovers by itself.
//!
//! Some brokers condemn a producer without librdkafka calling it fatal: after a stall, every
//! later record fails with `PRODUCER_FENCED`; a broker that lost its producer state answers
//! `UNKNOWN_PRODUCER_ID`, and librdkafka bumps its epoch and retries forever. Those producers
//! are just as dead ([`unrecoverable`], [`Deliveries`]).
//!
//! Each client here (the events producer, the command flow's claims producer and its reader)
//! is therefore a *generation*: when it dies the supervisor retires it and builds the next
//! generation from the same settings, in place.
//!
//! - **Readiness.** From the death until the next generation is in place, [`Health`]
//!   reports not ready and `avlgate_kafka_client_failed{client}` is 1. The events producer's
//!   health also watches deliveries: records outstanding with no confirmation for a while (a
//!   stalled broker still holds its TCP connections, so librdkafka sees it "up" for a minute)
//!   or recent delivery timeouts make it not ready too.
//! - **Nothing unconfirmed is acknowledged.** On a fatal error librdkafka purges the records
//!   still queued in the client (`_PURGE_QUEUE`: never sent, so the sink hands them to the
//!   next generation) and keeps the true delivery report of those already sent. The retired
//!   producer is flushed for up to its message timeout on a thread of its own, then dropped
//!   (which fails whatever is left); every report it gives is the truth about its record.
//! - **Giving up.** A rebuild whose client cannot be created, or a new generation that dies
//!   again within [`HEALTHY_LIFE`], counts against [`MAX_CONSECUTIVE`] attempts with a growing
//!   pause; past them the process is asked to drain and exit non-zero ([`Abort`]), so the
//!   orchestrator restarts it and the crash loop is visible.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::producer::{
    DeliveryResult, FutureProducer, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::abort::Abort;
use crate::metrics as m;

/// Rebuild attempts in a row (creation failures, or generations that died young) before the
/// process gives up.
pub const MAX_CONSECUTIVE: u32 = 5;
/// A generation that lived this long was healthy: its fatal error starts a fresh count.
pub const HEALTHY_LIFE: Duration = Duration::from_secs(60);
/// Epoch bumps of the idempotent producer with nothing confirmed, while records wait past
/// the stall threshold, that condemn the producer ([`Deliveries::bumping_in_vain`]). A
/// healthy producer bumps its epoch once per recovery; the loop seen against a broker that
/// lost its producer state bumps several times a second.
const MAX_BUMPS_WITHOUT_DELIVERY: i64 = 5;
/// Pause before rebuild attempt n (n = 0 first): immediate, then growing, 7.5 s in all.
const BACKOFF_MS: [u64; MAX_CONSECUTIVE as usize] = [0, 500, 1000, 2000, 4000];

/// How long records may stay unconfirmed before the brokers count as stalled (not ready):
/// a third of the message timeout, between 2 and 10 s. A healthy cluster confirms within
/// milliseconds; a stalled broker keeps its TCP connections, so librdkafka's own view ("up")
/// would take a minute (`socket.timeout.ms`) to change.
pub fn stall_after(message_timeout: Duration) -> Duration {
    (message_timeout / 3).clamp(Duration::from_secs(2), Duration::from_secs(10))
}

/// Which client: the `client` label of the metrics and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The sink's producer: events and command results.
    Events,
    /// The command flow's producer of claims.
    CommandClaims,
    /// The command flow's reader of the commands topic.
    CommandReader,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Events => "events",
            Role::CommandClaims => "command_claims",
            Role::CommandReader => "command_reader",
        }
    }

    fn not_ready(self) -> &'static str {
        match self {
            Role::Events => "the Kafka producer hit a fatal error and is being rebuilt",
            Role::CommandClaims => {
                "the command flow's Kafka producer hit a fatal error and is being rebuilt"
            }
            Role::CommandReader => {
                "the command flow's Kafka reader hit a fatal error and is being rebuilt"
            }
        }
    }
}

/// What is known about one client across its generations. Shared by its callbacks (on
/// librdkafka's threads), its owner and readiness.
pub struct Health {
    role: Role,
    /// The generation in use; callbacks of older ones are ignored.
    generation: AtomicU64,
    /// A broker connection is up (statistics of the generation in use).
    connected: AtomicBool,
    /// The generation in use hit a fatal error and is not replaced yet.
    failed: AtomicBool,
    /// Rebuilding was given up.
    gave_up: AtomicBool,
    /// Set when the supervisor should look at the client now (an error was reported).
    poked: Mutex<bool>,
    /// Why the generation in use was found unusable, when librdkafka did not call it fatal.
    unusable: Mutex<Option<String>>,
    wake: Condvar,
    /// `(generation in use, gave up)`, for senders waiting for a successor.
    replaced: watch::Sender<(u64, bool)>,
    deliveries: Arc<Deliveries>,
}

impl Health {
    /// `stall_after`: how long records may stay unconfirmed before the broker counts as
    /// stalled (only producers whose deliveries are tracked use it).
    pub fn new(role: Role, stall_after: Duration) -> Arc<Health> {
        metrics::gauge!(m::KAFKA_CLIENT_FAILED, "client" => role.label()).set(0.0);
        Arc::new(Health {
            role,
            generation: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            gave_up: AtomicBool::new(false),
            poked: Mutex::new(false),
            unusable: Mutex::new(None),
            wake: Condvar::new(),
            replaced: watch::Sender::new((0, false)),
            deliveries: Arc::new(Deliveries::new(stall_after)),
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A broker connection is up, as the last statistics of the generation in use said.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The generation in use is dead and not replaced yet (or will never be).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Readiness of this client alone: not ready while it is being rebuilt.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.failed() {
            Err(self.role.not_ready())
        } else {
            Ok(())
        }
    }

    /// Records are outstanding and none was confirmed for a while, or a delivery timed out
    /// with no confirmation since (while records are outstanding, or recently).
    pub fn stalled(&self) -> bool {
        self.deliveries.stalled()
    }

    pub fn deliveries(&self) -> &Arc<Deliveries> {
        &self.deliveries
    }

    fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Ordering::Relaxed);
        // One client's view is enough in the log: the events producer's.
        if was != up && self.role == Role::Events {
            if up {
                info!(client = self.role.label(), "Kafka brokers reachable");
            } else {
                warn!(client = self.role.label(), "no Kafka broker reachable");
            }
        }
        self.publish_connected();
    }

    /// `avlgate_sink_connected` follows the events producer: reachable, alive and delivering.
    fn publish_connected(&self) {
        if self.role == Role::Events {
            let ok = self.connected() && !self.failed() && !self.stalled();
            metrics::gauge!(m::SINK_CONNECTED).set(if ok { 1.0 } else { 0.0 });
        }
    }

    /// Generation `generation` is known dead (a produce call or a delivery failed with
    /// `_FATAL`, or the client reports a fatal error). Idempotent; stale generations are
    /// ignored.
    pub fn fatal(&self, generation: u64) {
        if generation != self.generation() {
            return;
        }
        if !self.failed.swap(true, Ordering::SeqCst) {
            metrics::gauge!(m::KAFKA_CLIENT_FAILED, "client" => self.role.label()).set(1.0);
            self.publish_connected();
        }
        self.poke();
    }

    /// Generation `generation` answers every record with an error that no retry of the same
    /// producer can cure (see [`unrecoverable`]) although librdkafka did not raise a fatal
    /// error: it is replaced like a dead one.
    pub fn unusable(&self, generation: u64, error: &KafkaError) {
        self.condemn(generation, format!("unrecoverable delivery error: {error}"));
    }

    fn condemn(&self, generation: u64, reason: String) {
        if generation != self.generation() {
            return;
        }
        {
            let mut why = self.unusable.lock().unwrap_or_else(|p| p.into_inner());
            if why.is_none() {
                *why = Some(reason);
            }
        }
        self.fatal(generation);
    }

    /// Asks the supervisor to look at the client now. librdkafka's error callback gives a
    /// fatal error's underlying code (`ProducerFenced`, …), not whether it is fatal: only the
    /// client can say (`fatal_error()`), and the supervisor holds the client.
    fn poke(&self) {
        let mut poked = self.poked.lock().unwrap_or_else(|p| p.into_inner());
        *poked = true;
        self.wake.notify_all();
    }

    /// Waits up to `wait` for a poke; true if there was one.
    fn wait_poke(&self, wait: Duration) -> bool {
        let poked = self.poked.lock().unwrap_or_else(|p| p.into_inner());
        let (mut poked, _) = self
            .wake
            .wait_timeout_while(poked, wait, |p| !*p)
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *poked)
    }

    /// The next generation is in place.
    pub fn replaced_by(&self, generation: u64) {
        self.generation.store(generation, Ordering::SeqCst);
        self.connected.store(false, Ordering::Relaxed);
        *self.unusable.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.deliveries.epochs.store(0, Ordering::Relaxed);
        self.deliveries
            .epochs_at_confirm
            .store(0, Ordering::Relaxed);
        self.failed.store(false, Ordering::SeqCst);
        metrics::gauge!(m::KAFKA_CLIENT_FAILED, "client" => self.role.label()).set(0.0);
        self.publish_connected();
        self.replaced.send_replace((generation, false));
    }

    fn give_up(&self) {
        self.gave_up.store(true, Ordering::SeqCst);
        let generation = self.generation();
        self.replaced.send_replace((generation, true));
    }

    /// Waits until a generation newer than `generation` is in place. `false` when there will
    /// be none: `generation` did not fail, or rebuilding was given up.
    pub async fn successor(&self, generation: u64) -> bool {
        if self.generation() == generation && !self.failed() {
            return false;
        }
        let mut rx = self.replaced.subscribe();
        let outcome = match rx
            .wait_for(|(g, gave_up)| *g > generation || *gave_up)
            .await
        {
            Ok(v) => v.0 > generation,
            Err(_) => false,
        };
        outcome
    }
}

impl crate::ops::Check for Health {
    fn check(&self) -> Result<(), &'static str> {
        Health::check(self)
    }
}

/// Delivery progress of a producer, for stall detection.
pub struct Deliveries {
    epoch: Instant,
    stall_after: Duration,
    /// Records handed to the producer whose report is not in yet.
    outstanding: AtomicUsize,
    /// Since when outstanding records wait with no confirmation (ms since `epoch`).
    waiting_since_ms: AtomicU64,
    /// When a record last failed by timing out (ms since `epoch` + 1; 0: none since the last
    /// confirmation).
    timed_out_at_ms: AtomicU64,
    /// The idempotent producer's epoch (statistics), now and at the last confirmation.
    epochs: AtomicI64,
    epochs_at_confirm: AtomicI64,
}

impl Deliveries {
    fn new(stall_after: Duration) -> Self {
        Deliveries {
            epoch: Instant::now(),
            stall_after,
            outstanding: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(0),
            timed_out_at_ms: AtomicU64::new(0),
            epochs: AtomicI64::new(0),
            epochs_at_confirm: AtomicI64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `n` records are handed to the producer; the guard settles what is left of them when
    /// the waiting side goes away (a passed deadline counts as a timeout).
    pub fn begin(self: &Arc<Self>, n: usize) -> Outstanding {
        if self.outstanding.fetch_add(n, Ordering::SeqCst) == 0 {
            self.waiting_since_ms
                .store(self.now_ms(), Ordering::Relaxed);
        }
        Outstanding {
            deliveries: self.clone(),
            left: n,
        }
    }

    fn confirmed(&self) {
        self.waiting_since_ms
            .store(self.now_ms(), Ordering::Relaxed);
        self.timed_out_at_ms.store(0, Ordering::Relaxed);
        self.epochs_at_confirm
            .store(self.epochs.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The producer keeps bumping its epoch and confirms nothing: the broker refuses its id
    /// over and over (`UNKNOWN_PRODUCER_ID` from a broker that lost its producer state, say)
    /// and librdkafka retries that forever without an error. Only a new producer (a new id)
    /// gets out.
    fn bumping_in_vain(&self) -> Option<i64> {
        let bumps =
            self.epochs.load(Ordering::Relaxed) - self.epochs_at_confirm.load(Ordering::Relaxed);
        (bumps >= MAX_BUMPS_WITHOUT_DELIVERY && self.stalled()).then_some(bumps)
    }

    fn timed_out(&self) {
        self.timed_out_at_ms
            .store(self.now_ms() + 1, Ordering::Relaxed);
    }

    /// See [`Health::stalled`].
    pub fn stalled(&self) -> bool {
        let now = self.now_ms();
        let limit = self.stall_after.as_millis() as u64;
        let waiting = self.outstanding.load(Ordering::SeqCst) > 0
            && now.saturating_sub(self.waiting_since_ms.load(Ordering::Relaxed)) > limit;
        // A timeout with no confirmation since: stalled while anything is outstanding (the
        // next record has no better prospect), and for a while after, when nothing is.
        let t = self.timed_out_at_ms.load(Ordering::Relaxed);
        let timed_out = t != 0
            && (self.outstanding.load(Ordering::SeqCst) > 0 || now.saturating_sub(t - 1) <= limit);
        waiting || timed_out
    }
}

/// Records of one batch still waiting for their report.
pub struct Outstanding {
    deliveries: Arc<Deliveries>,
    left: usize,
}

impl Outstanding {
    /// One record was confirmed.
    pub fn confirmed(&mut self) {
        self.settle(1);
        self.deliveries.confirmed();
    }

    /// One record failed; `timed_out` when the broker did not answer in time.
    pub fn failed(&mut self, timed_out: bool) {
        self.settle(1);
        if timed_out {
            self.deliveries.timed_out();
        }
    }

    fn settle(&mut self, n: usize) {
        let n = n.min(self.left);
        self.left -= n;
        self.deliveries.outstanding.fetch_sub(n, Ordering::SeqCst);
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        if self.left > 0 {
            // The batch was abandoned at its delivery deadline.
            let left = self.left;
            self.settle(left);
            self.deliveries.timed_out();
        }
    }
}

/// The callbacks of one generation of a client.
pub struct Context {
    health: Arc<Health>,
    generation: u64,
}

impl Context {
    fn current(&self) -> bool {
        self.generation == self.health.generation()
    }
}

impl ClientContext for Context {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        let client = self.health.role.label();
        match level {
            // The reader gets every `--kafka-option` on purpose (security settings), producer
            // ones included, and librdkafka warns that it ignores those.
            L::Warning if fac == "CONFWARN" && self.health.role == Role::CommandReader => {
                debug!(target: "librdkafka", client, "{fac} {message}")
            }
            L::Emerg | L::Alert | L::Critical | L::Error => {
                error!(target: "librdkafka", client, "{fac} {message}")
            }
            L::Warning => warn!(target: "librdkafka", client, "{fac} {message}"),
            L::Notice | L::Info => info!(target: "librdkafka", client, "{fac} {message}"),
            L::Debug => debug!(target: "librdkafka", client, "{fac} {message}"),
        }
    }

    fn stats(&self, s: Statistics) {
        // Only the producer with statistics enabled gets here; never log the object itself.
        if !self.current() {
            return;
        }
        // Bootstrap entries have nodeid -1; a real broker connection shows state UP.
        let up = s.brokers.values().any(|b| b.nodeid >= 0 && b.state == "UP");
        self.health.set_connected(up);
        if let Some(eos) = &s.eos {
            let d = &self.health.deliveries;
            // `producer_epoch`, not `epoch_cnt`: librdkafka's local epoch bumps (its answer
            // to UNKNOWN_PRODUCER_ID) raise the former only.
            d.epochs.store(eos.producer_epoch, Ordering::Relaxed);
            if let Some(bumps) = d.bumping_in_vain() {
                self.health.condemn(
                    self.generation,
                    format!(
                        "the broker keeps refusing the producer ({bumps} epoch bumps, nothing \
                         delivered; state {})",
                        eos.idemp_state
                    ),
                );
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let role = self.health.role.label();
        if !self.current() {
            debug!(client = role, generation = self.generation, %error, reason, "retired Kafka client");
            return;
        }
        // Whatever the error, the supervisor checks whether the client is now dead.
        self.health.poke();
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Fatal) => {
                error!(client = role, %error, reason, "Kafka client hit a fatal error");
                self.health.fatal(self.generation);
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                debug!(client = role, %error, reason, "kafka client error");
                self.health.set_connected(false);
            }
            // Connection churn: reachability is logged once per change above, and delivery
            // failures where they matter (the frame not acknowledged).
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::MessageTimedOut
                | RDKafkaErrorCode::OperationTimedOut,
            ) => debug!(client = role, %error, reason, "kafka client error"),
            _ => warn!(client = role, %error, reason, "kafka client error"),
        }
    }
}

impl ConsumerContext for Context {}

/// The events producer's reports: each record's batch settles it ([`super::batch`]).
impl ProducerContext for Context {
    type DeliveryOpaque = Arc<super::batch::Batch>;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: Self::DeliveryOpaque) {
        batch.report(self.generation, &self.health, result);
    }
}

/// A librdkafka producer as [`Producer`] needs it: made from settings and a generation's
/// context, and watched and retired by the supervisor.
pub trait Client: Clone + Send + Sync + 'static {
    fn create(config: &ClientConfig, context: Context) -> KafkaResult<Self>;
    /// librdkafka's fatal error, if the client has hit one.
    fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)>;
    fn in_flight_count(&self) -> i32;
    fn flush(&self, timeout: Duration) -> KafkaResult<()>;
}

/// The same for both kinds of producer: the claims producer (a future per record) and the
/// events producer (reports settle each record's batch).
macro_rules! librdkafka_producer {
    ($producer:ty) => {
        impl Client for $producer {
            fn create(config: &ClientConfig, context: Context) -> KafkaResult<Self> {
                config.create_with_context(context)
            }
            fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
                self.client().fatal_error()
            }
            fn in_flight_count(&self) -> i32 {
                rdkafka::producer::Producer::in_flight_count(self)
            }
            fn flush(&self, timeout: Duration) -> KafkaResult<()> {
                rdkafka::producer::Producer::flush(self, timeout)
            }
        }
    };
}
librdkafka_producer!(FutureProducer<Context>);
librdkafka_producer!(ThreadedProducer<Context>);

/// Counts rebuilds of one client and decides when to stop trying.
pub struct Rebuilds {
    role: Role,
    abort: Abort,
    /// Attempts since the last generation that proved healthy.
    consecutive: u32,
    /// When the generation in use was created.
    born: Instant,
    next_generation: u64,
    /// Pauses between attempts (shortened by tests through [`Rebuilds::with_backoff`]).
    backoff: Vec<Duration>,
}

impl Rebuilds {
    pub fn new(role: Role, abort: Abort) -> Self {
        Rebuilds {
            role,
            abort,
            consecutive: 0,
            born: Instant::now(),
            next_generation: 1,
            backoff: BACKOFF_MS
                .iter()
                .map(|ms| Duration::from_millis(*ms))
                .collect(),
        }
    }

    /// The context of the first generation.
    pub fn first_context(health: &Arc<Health>) -> Context {
        Context {
            health: health.clone(),
            generation: health.generation(),
        }
    }

    /// Builds the next generation with `make` (given its context), pausing and retrying as
    /// the policy says. `None`: given up, the process was asked to stop.
    pub fn rebuild<T>(
        &mut self,
        health: &Arc<Health>,
        mut make: impl FnMut(Context) -> KafkaResult<T>,
    ) -> Option<(u64, T)> {
        let client = self.role.label();
        if self.born.elapsed() >= HEALTHY_LIFE {
            self.consecutive = 0;
        }
        loop {
            let Some(pause) = self.backoff.get(self.consecutive as usize).copied() else {
                self.give_up(
                    health,
                    format!(
                        "the Kafka {client} client could not be rebuilt after {} attempts",
                        self.consecutive
                    ),
                );
                return None;
            };
            std::thread::sleep(pause);
            self.consecutive += 1;
            let generation = self.next_generation;
            self.next_generation += 1;
            let context = Context {
                health: health.clone(),
                generation,
            };
            match make(context) {
                Ok(c) => {
                    metrics::counter!(m::KAFKA_CLIENT_REBUILDS, "client" => client, "outcome" => "ok")
                        .increment(1);
                    self.born = Instant::now();
                    info!(client, generation, "Kafka client rebuilt");
                    return Some((generation, c));
                }
                Err(e) => {
                    metrics::counter!(m::KAFKA_CLIENT_REBUILDS, "client" => client, "outcome" => "failed")
                        .increment(1);
                    warn!(client, attempt = self.consecutive, error = %e, "Kafka client not rebuilt; retrying");
                }
            }
        }
    }

    /// Stops rebuilding this client for good and asks the process to stop.
    pub fn give_up(&self, health: &Health, reason: String) {
        error!(
            client = self.role.label(),
            "{reason}; stopping the gateway so it is restarted"
        );
        health.give_up();
        self.abort.request(reason);
    }

    /// Uses `backoff` as the pauses before attempts (its length is the number of attempts).
    pub fn with_backoff(mut self, backoff: Vec<Duration>) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Errors that condemn the producer, not the record: the broker no longer accepts this
/// producer's id or epoch. librdkafka raises a fatal error for some of these paths, but not
/// for all: after a long stall, a broker may answer every later produce request with
/// `PRODUCER_FENCED` while the client stays "healthy" and fails each record. A new producer
/// gets a new id. The broker refused the batch, so the record was not written.
pub fn unrecoverable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::Fenced
    )
}

/// Why a client is dead: librdkafka's fatal error, else what [`Health::unusable`] recorded.
pub fn death_reason<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    health: &Health,
) -> Option<String> {
    death_reason_of(client.fatal_error(), health)
}

fn death_reason_of(fatal: Option<(RDKafkaErrorCode, String)>, health: &Health) -> Option<String> {
    if let Some((code, reason)) = fatal {
        return Some(format!("fatal error {code:?}: {reason}"));
    }
    if !health.failed() {
        return None;
    }
    let why = health.unusable.lock().unwrap_or_else(|p| p.into_inner());
    Some(why.clone().unwrap_or_else(|| "fatal error".into()))
}

/// A producer that is rebuilt in place after a fatal error. Cheap to clone.
pub struct Producer<P: Client = FutureProducer<Context>> {
    inner: Arc<ProducerInner<P>>,
}

impl<P: Client> Clone for Producer<P> {
    fn clone(&self) -> Self {
        Producer {
            inner: self.inner.clone(),
        }
    }
}

struct ProducerInner<P> {
    slot: RwLock<(u64, P)>,
    health: Arc<Health>,
}

impl<P: Client> Producer<P> {
    /// Creates the first generation from `config` and starts its supervisor thread, which
    /// rebuilds it as `rebuilds` says. `settle`: how long a retired generation may take to
    /// report on its in-flight records.
    pub fn with_rebuilds(
        config: ClientConfig,
        health: Arc<Health>,
        settle: Duration,
        rebuilds: Rebuilds,
    ) -> KafkaResult<Producer<P>> {
        let first = P::create(&config, Rebuilds::first_context(&health))?;
        let inner = Arc::new(ProducerInner {
            slot: RwLock::new((health.generation(), first)),
            health: health.clone(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name(format!("avlgate-kafka-{}", health.role.label()))
            .spawn(move || supervise(weak, health, config, settle, rebuilds))
            .map_err(|e| {
                KafkaError::ClientCreation(format!("starting the supervisor thread: {e}"))
            })?;
        Ok(Producer { inner })
    }

    /// The generation in use and its producer.
    pub fn current(&self) -> (u64, P) {
        let slot = self.inner.slot.read().unwrap_or_else(|p| p.into_inner());
        (slot.0, slot.1.clone())
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.inner.health
    }
}

/// Watches the producer in `inner` for a fatal error (when poked, and every second) and
/// replaces it; ends when the producer is dropped or rebuilding is given up.
fn supervise<P: Client>(
    inner: Weak<ProducerInner<P>>,
    health: Arc<Health>,
    config: ClientConfig,
    settle: Duration,
    mut rebuilds: Rebuilds,
) {
    loop {
        health.wait_poke(Duration::from_secs(1));
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (generation, old) = {
            let slot = inner.slot.read().unwrap_or_else(|p| p.into_inner());
            (slot.0, slot.1.clone())
        };
        let Some(why) = death_reason_of(old.fatal_error(), &health) else {
            continue;
        };
        health.fatal(generation);
        error!(client = health.role.label(), generation, error = %why, "rebuilding the Kafka producer");
        let Some((next, producer)) =
            rebuilds.rebuild(&health, |context| P::create(&config, context))
        else {
            return;
        };
        {
            let mut slot = inner.slot.write().unwrap_or_else(|p| p.into_inner());
            *slot = (next, producer);
        }
        health.replaced_by(next);
        retire(old, settle);
    }
}

/// Lets a dead producer report on the records it had sent, then drops it (which fails what is
/// left), away from the async runtime: both can block for seconds.
fn retire<P: Client>(old: P, settle: Duration) {
    let spawned = std::thread::Builder::new()
        .name("avlgate-kafka-retire".into())
        .spawn(move || {
            let left = old.in_flight_count();
            if left > 0 && old.flush(settle).is_err() {
                debug!(
                    left = old.in_flight_count(),
                    "retired Kafka producer still had records in flight; they fail"
                );
            }
            drop(old);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "no thread to retire the Kafka producer; dropping it here");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_detection_needs_outstanding_records_without_confirmation() {
        let d = Arc::new(Deliveries::new(Duration::from_millis(50)));
        assert!(!d.stalled(), "nothing outstanding");
        let mut batch = d.begin(2);
        assert!(!d.stalled(), "just sent");
        std::thread::sleep(Duration::from_millis(80));
        assert!(d.stalled(), "unconfirmed past the limit");
        batch.confirmed();
        assert!(!d.stalled(), "a confirmation is progress");
        batch.failed(true);
        assert!(d.stalled(), "a timeout just now");
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            !d.stalled(),
            "the timeout is old and nothing is outstanding"
        );
        let mut next = d.begin(1);
        assert!(
            d.stalled(),
            "no confirmation since the timeout: a new record waits in vain"
        );
        next.confirmed();
        assert!(!d.stalled());
        drop(next);
        let abandoned = d.begin(1);
        drop(abandoned);
        assert!(d.stalled(), "an abandoned batch counts as a timeout");
        assert_eq!(d.outstanding.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_fatal_error_fails_readiness_until_the_next_generation_is_in_place() {
        let h = Health::new(Role::CommandReader, Duration::from_secs(5));
        h.fatal(7);
        assert!(
            h.check().is_ok(),
            "a stale generation's fatal error is ignored"
        );
        h.fatal(0);
        assert!(h.failed());
        assert!(h.check().unwrap_err().contains("reader"));
        assert!(
            h.wait_poke(Duration::from_millis(10)),
            "the supervisor is woken"
        );
        assert!(!h.wait_poke(Duration::from_millis(10)), "once");
        h.replaced_by(1);
        assert!(h.check().is_ok());
        assert_eq!(h.generation(), 1);
    }

    #[test]
    fn rebuilding_gives_up_after_consecutive_failures_and_asks_the_process_to_stop() {
        let abort = Abort::new();
        let h = Health::new(Role::CommandClaims, Duration::from_secs(5));
        let mut r =
            Rebuilds::new(Role::CommandClaims, abort.clone()).with_backoff(vec![Duration::ZERO; 3]);
        let mut attempts = 0;
        let built = r.rebuild(&h, |_| -> KafkaResult<()> {
            attempts += 1;
            Err(KafkaError::ClientCreation("refused".into()))
        });
        assert!(built.is_none());
        assert_eq!(attempts, 3);
        assert!(abort.reason().unwrap().contains("command_claims"));
        // Waiters for a successor are released.
        h.fatal(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert!(!rt.block_on(h.successor(0)));
    }

    #[test]
    fn a_generation_that_lived_long_starts_a_fresh_count() {
        let h = Health::new(Role::Events, Duration::from_secs(5));
        let mut r = Rebuilds::new(Role::Events, Abort::new()).with_backoff(vec![Duration::ZERO; 2]);
        assert_eq!(r.rebuild(&h, |c| Ok(c.generation)).map(|v| v.0), Some(1));
        assert_eq!(r.rebuild(&h, |c| Ok(c.generation)).map(|v| v.0), Some(2));
        // Two quick deaths used the budget; a generation that lived past HEALTHY_LIFE resets it.
        r.born = Instant::now() - HEALTHY_LIFE;
        assert_eq!(r.rebuild(&h, |c| Ok(c.generation)).map(|v| v.0), Some(3));
    }
}
