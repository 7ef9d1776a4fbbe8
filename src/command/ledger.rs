//! The command ledger: what every pod knows about every pending command, sans IO.
//!
//! All pods read the same per-device ordered log (Kafka: the commands topic, key = IMEI, so
//! one partition per device; MQTT: the commands and claims topics of one broker). The log
//! holds the backends' `Command`s and the pods' `CommandClaim`s, and every pod applies the same
//! rules to it in the same order, so all pods agree on who writes a command (at most once) and
//! who reports its one terminal result, without talking to each other.
//!
//! # A command's life
//!
//! ```text
//!            DELIVER (first claim wins)        WRITING (holder)        COMPLETE (holder)
//!   Open ──────────────────────────────▶ Held ─────────────────▶ Held ─────────────────▶ Decided
//!    │ ▲        RELEASE (holder), or a newer session before WRITING,       written       │
//!    │ └──────── or SETTLE of a lost holder before WRITING ◀──┘              │            │
//!    │ EXPIRE / REJECT (first claim wins)              SETTLE of a lost holder: EXPIRED ──▶│
//!    └────────────────────────────────────────────────────────────────────────────────────▶│
//!                                     PUBLISHED (publisher) ◀── Decided ◀── SETTLE of a lost publisher
//!                                            │
//!                                           Done
//! ```
//!
//! - **Open**: the first DELIVER, EXPIRE or REJECT claim wins; later ones are ignored.
//! - **Held** by the DELIVER winner. It writes the command only once its own WRITING claim is
//!   in force, so a command whose log has no WRITING was not written. A RELEASE by the holder
//!   reopens it (its session ended first).
//! - **Decided**: the terminal result is known (the holder's COMPLETE carries it; EXPIRE and
//!   REJECT imply it) and one pod, the publisher, publishes it, then appends PUBLISHED.
//!
//! # Pods that stop
//!
//! Every pod appends a BEAT every sixth of the lease. A pod responsible for a command (its
//! holder or publisher) that has not beaten for half the lease is *lost*: the other pods
//! propose SETTLE (spread by a per-pod jitter; the first wins, as always). A SETTLE on a Held
//! command without WRITING reopens it (re-delivery: the log proves it was not written); on a
//! written one it decides EXPIRED with reason `holder lost`; on a Decided one whose PUBLISHED
//! never came it makes the claimant the publisher of the same result. The holder, if it was
//! only slow, sees the SETTLE too and drops the command: its own WRITING or COMPLETE comes
//! after it and is not in force. A pod judges others only while its own beats come back from
//! the log (a stalled broker proves nothing about anyone), and after the log stalled it waits
//! half a lease again before judging.
//!
//! # The newest session wins
//!
//! A pod announces each device session (LOGIN with the session's start, LOGOUT at its end;
//! another pod announces LOGOUT for a lost pod's sessions). A DELIVER or WRITING claim made for
//! a session older than another pod's live session of the device is not in force, so a
//! half-dead socket on one pod never takes the command from the device's new session on
//! another.
//!
//! The ledger turns log entries, local session changes and the passing of time into
//! [`Action`]s for the dispatcher.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::event::timestamp;
use crate::proto::{command, ClaimPurpose, Command, CommandClaim, CommandResult, CommandStatus};

/// Commands a pod holds for one device at most (queued on its session or awaiting answers);
/// more wait as pending claims.
pub const MAX_HELD_PER_DEVICE: usize = 16;
/// How often forgotten commands and old session announcements are pruned: their horizons are
/// minutes to hours, and a pass walks every command and the fleet's sessions.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// How often a tick walks every command (proposals lost on the way to the log, TTLs, lost pods),
/// the local devices with waiting commands and, when a pod is lost, the fleet's sessions: once
/// a second is well within the proposal timeout, the expiry jitter (up to 2 s) and the lease.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Live sessions remembered per device (the directory needs the newest ones only).
const MAX_ANNOUNCED_PER_DEVICE: usize = 8;

/// What the dispatcher must do.
// Actions live in a short Vec that the dispatcher consumes at once; most are claims and
// commands of similar size, so boxing them would add an allocation each for no saving.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish this claim to the log; the ledger acts when it reads it back.
    Propose(CommandClaim),
    /// This instance's DELIVER claim is in force: hand the command to the local session.
    Deliver(Command),
    /// This instance's WRITING claim is in force: the session may write the command.
    Go(String),
    /// This instance must not write the command (or no longer reports it): drop it.
    Withdraw(String),
    /// Publish this terminal result; call [`Ledger::published`] once the broker confirmed it.
    Publish(CommandResult),
    /// Keep the broker's retained view of the command up to date (MQTT, where a starting pod
    /// learns pending commands and their claims from retained messages; Kafka replays its log).
    Retain {
        imei: String,
        command_id: String,
        state: Retained,
    },
    /// A command of a lost pod was settled by this instance (`redelivered`, `expired`,
    /// `republished`), for the metrics.
    Settled(&'static str),
}

/// A command's retained state on the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Retained {
    /// Waiting for a session: the command itself is retained.
    Open,
    /// This claim is in force.
    InForce(Box<CommandClaim>),
    /// Reported: nothing is retained.
    Finished,
}

/// A pod instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Who {
    pub gateway: String,
    pub instance: String,
}

impl Who {
    fn of(c: &CommandClaim) -> Who {
        Who {
            gateway: c.gateway.clone(),
            instance: c.instance.clone(),
        }
    }

    /// The instance a SETTLE or LOGOUT is about: its `lost_*` fields, else its claimant.
    fn subject(c: &CommandClaim) -> Who {
        if c.lost_instance.is_empty() {
            Who::of(c)
        } else {
            Who {
                gateway: c.lost_gateway.clone(),
                instance: c.lost_instance.clone(),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Open,
    Held {
        holder: Who,
        /// The holder's session start (ms since the epoch), from its DELIVER claim.
        session_started: Option<i64>,
        /// When its WRITING claim was made, once one is in force.
        written: Option<crate::event::timestamp::Timestamp>,
    },
    Decided {
        publisher: Who,
        /// Boxed: the largest variant by far, and most commands never reach it (memory per
        /// command).
        result: Box<CommandResult>,
    },
    Done,
}

#[derive(Debug)]
struct Entry {
    command: Option<Command>,
    imei: String,
    deadline: SystemTime,
    state: State,
    /// Whether any claim was applied (a retained snapshot may describe only a fresh entry).
    claimed: bool,
    /// This instance's claim awaiting its return from the log, and when it was made.
    /// Boxed: few entries have one at a time, and inline it was half an entry's size (memory
    /// per command, docs/load-runs.md).
    proposal: Option<Box<(CommandClaim, SystemTime)>>,
    /// When the entry may be forgotten (set once it is done).
    forget_at: Option<SystemTime>,
}

/// Limits and defaults.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// This pod's name and this process's instance id.
    pub gateway: String,
    pub instance: String,
    /// TTL for commands that carry none.
    pub default_ttl: Duration,
    /// Longest TTL honoured.
    pub max_ttl: Duration,
    /// Commands tracked at most; beyond, new commands are refused (rejected).
    pub max_entries: usize,
    /// How long settled commands are remembered (to ignore a re-sent command id).
    pub remember: Duration,
    /// A proposal not read back from the log within this was lost; it is made again.
    pub proposal_timeout: Duration,
    /// The command lease: a pod silent for half of it is lost, and what it held is settled
    /// within it.
    pub lease: Duration,
}

impl LedgerConfig {
    /// How often this pod beats.
    pub fn beat_every(&self) -> Duration {
        (self.lease / 6).max(Duration::from_millis(500))
    }

    /// Silence after which a pod is lost.
    fn silence(&self) -> Duration {
        self.lease / 2
    }
}

/// Who is alive, from the beats read back.
#[derive(Debug, Default)]
struct Liveness {
    /// Instance → when its last beat was read.
    seen: HashMap<String, SystemTime>,
    /// When this instance last read its own beat back.
    own_seen: Option<SystemTime>,
    /// Since when the log has carried this instance's beats without a gap.
    flowing_since: Option<SystemTime>,
    next_beat: Option<SystemTime>,
    /// When forgotten commands and old announcements are pruned next.
    next_prune: Option<SystemTime>,
    /// When the commands are walked next for lost proposals, expiry and lost pods.
    next_sweep: Option<SystemTime>,
}

/// A device session announced in the log.
#[derive(Debug, Clone, PartialEq)]
struct Announced {
    /// Interned ([`Ledger::pods`]): every session announced by a pod shares one copy of its
    /// names (memory per session, docs/load-runs.md).
    who: Arc<Who>,
    started_ms: i64,
    /// When the announcement was read (for pruning).
    read_at: SystemTime,
}

pub struct Ledger {
    cfg: LedgerConfig,
    entries: entries::Entries,
    /// Devices with a live session on this pod, and when the newest one started.
    local: HashMap<String, SystemTime>,
    /// Device → live sessions announced by every pod (this one included).
    sessions: HashMap<String, Vec<Announced>>,
    /// The pods named by `sessions`, one copy each; pruned with it.
    pods: HashSet<Arc<Who>>,
    /// LOGOUTs this instance proposed for a lost pod's sessions, and when.
    logouts: HashMap<(String, String, i64), SystemTime>,
    liveness: Liveness,
    draining: bool,
}

/// Why a command is refused before any delivery attempt.
pub fn validate(c: &Command) -> Result<(), String> {
    if c.command_id.trim().is_empty() {
        return Err("command_id is required".into());
    }
    if !super::valid_command_id(&c.command_id) {
        return Err(format!(
            "command_id \"{}\" is not usable (1 to {} bytes, no control characters, no '/', '+', '#')",
            crate::device_id::excerpt(&c.command_id),
            super::MAX_COMMAND_ID_LEN
        ));
    }
    if !crate::device_id::is_valid(&c.imei) {
        return Err(format!(
            "imei \"{}\" is not a device id (ASCII letters, digits, '-', '_', '.'; 1 to {} bytes)",
            crate::device_id::excerpt(&c.imei),
            crate::device_id::MAX_LEN
        ));
    }
    crate::protocol::CommandRequest::from_command(c)?;
    match &c.body {
        Some(command::Body::Text(t)) if t.is_empty() => Err("text is empty".into()),
        Some(command::Body::Text(t)) => {
            crate::protocol::check_command_text(t).map_err(|e| e.to_string())
        }
        Some(command::Body::Payload(p)) if p.is_empty() => Err("payload is empty".into()),
        _ => Ok(()),
    }
}

fn millis(t: &crate::event::timestamp::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos) / 1_000_000)
}

fn millis_of(t: SystemTime) -> i64 {
    millis(&timestamp(t))
}

impl Ledger {
    pub fn new(cfg: LedgerConfig) -> Self {
        Ledger {
            cfg,
            entries: entries::Entries::default(),
            local: HashMap::new(),
            sessions: HashMap::new(),
            pods: HashSet::new(),
            logouts: HashMap::new(),
            liveness: Liveness::default(),
            draining: false,
        }
    }

    pub fn instance(&self) -> &str {
        &self.cfg.instance
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Devices with a live session announced by any pod (this one included).
    pub fn announced_devices(&self) -> usize {
        self.sessions.len()
    }

    /// The most commands tracked at once (`--command-max-pending`).
    pub fn max_entries(&self) -> usize {
        self.cfg.max_entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn is_me(&self, w: &Who) -> bool {
        w.instance == self.cfg.instance && w.gateway == self.cfg.gateway
    }

    /// A claim by this instance.
    fn claim(
        &self,
        command_id: &str,
        imei: &str,
        purpose: ClaimPurpose,
        now: SystemTime,
    ) -> CommandClaim {
        CommandClaim {
            command_id: command_id.into(),
            imei: imei.into(),
            gateway: self.cfg.gateway.clone(),
            instance: self.cfg.instance.clone(),
            purpose: purpose as i32,
            at: Some(timestamp(now)),
            ..Default::default()
        }
    }

    /// A result stamped by this pod.
    pub fn result(
        &self,
        c: &Command,
        status: CommandStatus,
        reason: &str,
        terminal: bool,
        now: SystemTime,
    ) -> CommandResult {
        CommandResult {
            command_id: c.command_id.clone(),
            imei: c.imei.clone(),
            status: status as i32,
            reason: reason.into(),
            created_at: c.created_at,
            completed_at: terminal.then(|| timestamp(now)),
            gateway: self.cfg.gateway.clone(),
            terminal,
            ..Default::default()
        }
    }

    /// A terminal result for the entry `id`, with or without its command.
    fn entry_result(
        &self,
        id: &str,
        e: &Entry,
        status: CommandStatus,
        reason: &str,
        now: SystemTime,
    ) -> CommandResult {
        let c = e.command.clone().unwrap_or_else(|| Command {
            command_id: id.into(),
            imei: e.imei.clone(),
            ..Default::default()
        });
        self.result(&c, status, reason, true, now)
    }

    /// No new work from now on (the pod drains): no deliveries, expiries or settlements are
    /// proposed; what this instance holds is finished.
    pub fn set_draining(&mut self) {
        self.draining = true;
    }

    /// Whether this instance still holds or owes something: a command held, a result to
    /// publish or to mark published, a claim of its own on the way.
    pub fn owes_work(&self) -> bool {
        self.entries.values().any(|e| {
            let mine = match &e.state {
                State::Held { holder, .. } => self.is_me(holder),
                State::Decided { publisher, .. } => self.is_me(publisher),
                State::Open | State::Done => false,
            };
            let pending = e.proposal.as_deref().is_some_and(|(c, _)| {
                matches!(
                    ClaimPurpose::try_from(c.purpose),
                    Ok(ClaimPurpose::Release | ClaimPurpose::Complete | ClaimPurpose::Published)
                )
            });
            mine || pending
        })
    }

    /// Whether this instance may still publish a result for `command_id` (it proposed a claim
    /// that would make it the publisher, or holds or publishes the command).
    pub fn may_publish(&self, command_id: &str) -> bool {
        let Some(e) = self.entries.get(command_id) else {
            return false;
        };
        match &e.state {
            State::Held { holder, .. } => self.is_me(holder),
            State::Decided { publisher, .. } => self.is_me(publisher),
            State::Open => e.proposal.is_some(),
            State::Done => false,
        }
    }

    /// A backend's command read from the log.
    pub fn on_command(&mut self, c: Command, now: SystemTime) -> Vec<Action> {
        if let Some(e) = self.entries.get_mut(&c.command_id) {
            // A claim read before its command (joined mid-way, or claims on their own topic),
            // or a re-sent id.
            if e.command.is_some() {
                return Vec::new();
            }
            e.command = Some(c.clone());
            let id = c.command_id.clone();
            return match e.state.clone() {
                State::Held {
                    holder,
                    written: None,
                    ..
                } if self.is_me(&holder) => vec![Action::Deliver(c)],
                State::Open => self.propose_delivery(&id, now),
                _ => Vec::new(),
            };
        }
        if let Err(reason) = validate(&c) {
            if c.command_id.trim().is_empty() {
                // Nothing to report it under; the dispatcher logs and counts it.
                return Vec::new();
            }
            return self.on_rejected(super::sanitized(&c), &reason, now);
        }
        if self.entries.len() >= self.cfg.max_entries {
            return self.insert_and_reject(c, now, "too many pending commands");
        }
        let ttl = match c.ttl_secs {
            0 => self.cfg.default_ttl,
            s => Duration::from_secs(s.into()).min(self.cfg.max_ttl),
        };
        let created = c
            .created_at
            .as_ref()
            .and_then(crate::event::system_time)
            .filter(|t| *t <= now + Duration::from_secs(60))
            .unwrap_or(now);
        let id = c.command_id.clone();
        self.entries.insert(
            id.clone(),
            Entry {
                imei: c.imei.clone(),
                command: Some(c),
                deadline: created + ttl,
                state: State::Open,
                claimed: false,
                proposal: None,
                forget_at: None,
            },
        );
        self.propose_delivery(&id, now)
    }

    /// A command refused before the ledger saw it ([`super::check`]: its ids already made
    /// safe); REJECTED once, by the first pod whose claim lands.
    pub fn on_rejected(&mut self, c: Command, reason: &str, now: SystemTime) -> Vec<Action> {
        if self.entries.contains_key(&c.command_id) {
            return Vec::new();
        }
        self.insert_and_reject(c, now, reason)
    }

    fn insert_and_reject(&mut self, c: Command, now: SystemTime, reason: &str) -> Vec<Action> {
        let id = c.command_id.clone();
        let mut claim = self.claim(&id, &c.imei, ClaimPurpose::Reject, now);
        claim.reason = reason.into();
        self.entries.insert(
            id.clone(),
            Entry {
                imei: c.imei.clone(),
                command: Some(c),
                deadline: now,
                state: State::Open,
                claimed: false,
                proposal: None,
                forget_at: None,
            },
        );
        self.propose(&id, claim, now)
    }

    /// Records `claim` as this instance's proposal on `id` and asks for it to be published.
    fn propose(&mut self, id: &str, claim: CommandClaim, now: SystemTime) -> Vec<Action> {
        let Some(e) = self.entries.get_mut(id) else {
            return Vec::new();
        };
        e.proposal = Some(Box::new((claim.clone(), now)));
        vec![Action::Propose(claim)]
    }

    /// The dispatcher could not take on a proposal now (no room for its results): it is made
    /// again later.
    pub fn proposal_failed(&mut self, command_id: &str) {
        if let Some(e) = self.entries.get_mut(command_id) {
            e.proposal = None;
        }
    }

    /// Whether this pod may claim a command of `imei` for delivery now: a local session that
    /// is the device's newest, room under the per-device cap, and not draining.
    fn may_deliver(&self, imei: &str) -> bool {
        let Some(started) = self.local.get(imei) else {
            return false;
        };
        if self.draining || self.superseded(imei, &self.cfg.instance, Some(millis_of(*started))) {
            return false;
        }
        let held = self
            .entries
            .of_device(imei)
            .filter(|(_, e)| {
                matches!(&e.state, State::Held { holder, .. } if self.is_me(holder))
                    || e.proposal
                        .as_deref()
                        .is_some_and(|(c, _)| c.purpose == ClaimPurpose::Deliver as i32)
            })
            .count();
        held < MAX_HELD_PER_DEVICE
    }

    /// Whether another instance announced a live session of `imei` newer than `started_ms`.
    fn superseded(&self, imei: &str, instance: &str, started_ms: Option<i64>) -> bool {
        let Some(started) = started_ms else {
            return false;
        };
        self.sessions.get(imei).is_some_and(|v| {
            v.iter()
                .any(|a| a.who.instance != instance && a.started_ms > started)
        })
    }

    /// Proposes DELIVER for `id` when it is open, unexpired, unproposed, and this pod may.
    fn propose_delivery(&mut self, id: &str, now: SystemTime) -> Vec<Action> {
        let Some(e) = self.entries.get(id) else {
            return Vec::new();
        };
        if e.state != State::Open || e.proposal.is_some() || e.deadline <= now {
            return Vec::new();
        }
        let Some(c) = e.command.as_ref() else {
            return Vec::new();
        };
        if !self.may_deliver(&c.imei) {
            return Vec::new();
        }
        let mut claim = self.claim(id, &c.imei, ClaimPurpose::Deliver, now);
        claim.session_started = self.local.get(&c.imei).map(|t| timestamp(*t));
        self.propose(id, claim, now)
    }

    /// Proposes DELIVER for the open commands of `imei`, oldest first.
    fn propose_deliveries_for(&mut self, imei: &str, now: SystemTime) -> Vec<Action> {
        let ids: Vec<String> = self
            .entries
            .of_device(imei)
            .filter(|(_, e)| e.state == State::Open && e.proposal.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.propose_delivery(&id, now));
        }
        out
    }

    /// The session holding `command_id` encoded it and will write it once told: propose the
    /// WRITING claim.
    pub fn ready(&mut self, command_id: &str, now: SystemTime) -> Vec<Action> {
        let Some(e) = self.entries.get(command_id) else {
            return vec![Action::Withdraw(command_id.into())];
        };
        match &e.state {
            State::Held {
                holder,
                written: None,
                ..
            } if self.is_me(holder) => {
                let claim = self.claim(command_id, &e.imei, ClaimPurpose::Writing, now);
                self.propose(command_id, claim, now)
            }
            // Not ours any more (settled, or a newer session took it).
            _ => vec![Action::Withdraw(command_id.into())],
        }
    }

    /// This instance's session gives the command back unwritten.
    pub fn release(&mut self, command_id: &str, now: SystemTime) -> Vec<Action> {
        let Some(e) = self.entries.get(command_id) else {
            return Vec::new();
        };
        let completing = e
            .proposal
            .as_deref()
            .is_some_and(|(c, _)| c.purpose == ClaimPurpose::Complete as i32);
        if completing {
            // Its terminal result is on its way: that settles it, not a release.
            return Vec::new();
        }
        match &e.state {
            State::Held { holder, .. } if self.is_me(holder) => {
                let mut claim = self.claim(command_id, &e.imei, ClaimPurpose::Release, now);
                claim.reason = "session ended before the write".into();
                self.propose(command_id, claim, now)
            }
            _ => Vec::new(),
        }
    }

    /// This instance's terminal result for a command it holds: proposed as COMPLETE, published
    /// once that claim is in force.
    pub fn complete(
        &mut self,
        command_id: &str,
        result: CommandResult,
        now: SystemTime,
    ) -> Vec<Action> {
        let Some(e) = self.entries.get(command_id) else {
            return Vec::new();
        };
        match &e.state {
            State::Held { holder, .. } if self.is_me(holder) => {
                let mut claim = self.claim(command_id, &e.imei, ClaimPurpose::Complete, now);
                claim.result = Some(result);
                self.propose(command_id, claim, now)
            }
            _ => vec![Action::Withdraw(command_id.into())],
        }
    }

    /// The broker confirmed the terminal result this instance published.
    pub fn published(&mut self, command_id: &str, now: SystemTime) -> Vec<Action> {
        let Some(e) = self.entries.get(command_id) else {
            return Vec::new();
        };
        match &e.state {
            State::Decided { publisher, .. } if self.is_me(publisher) => {
                let claim = self.claim(command_id, &e.imei, ClaimPurpose::Published, now);
                self.propose(command_id, claim, now)
            }
            _ => Vec::new(),
        }
    }

    /// A snapshot of a command's claim in force, from a retained message (MQTT): taken only
    /// for a command this pod knows nothing else about.
    pub fn on_state(&mut self, claim: CommandClaim, now: SystemTime) -> Vec<Action> {
        let purpose = ClaimPurpose::try_from(claim.purpose).unwrap_or(ClaimPurpose::Unspecified);
        let who = Who::of(&claim);
        let state = match purpose {
            ClaimPurpose::Deliver => State::Held {
                holder: who,
                session_started: claim.session_started.as_ref().map(millis),
                written: None,
            },
            ClaimPurpose::Writing => State::Held {
                holder: who,
                session_started: None,
                written: claim.at,
            },
            ClaimPurpose::Complete | ClaimPurpose::Settle => match &claim.result {
                Some(r) => State::Decided {
                    publisher: who,
                    result: Box::new(r.clone()),
                },
                None => return Vec::new(),
            },
            ClaimPurpose::Expire | ClaimPurpose::Reject => {
                self.entry_or_new(&claim, now);
                let status = if purpose == ClaimPurpose::Expire {
                    CommandStatus::Expired
                } else {
                    CommandStatus::Rejected
                };
                let Some(e) = self.entries.get(&claim.command_id) else {
                    return Vec::new();
                };
                State::Decided {
                    publisher: who,
                    result: Box::new(self.entry_result(
                        &claim.command_id,
                        e,
                        status,
                        &claim.reason,
                        now,
                    )),
                }
            }
            _ => return Vec::new(),
        };
        self.entry_or_new(&claim, now);
        if let Some(e) = self.entries.get_mut(&claim.command_id) {
            if !e.claimed && e.state == State::Open {
                e.state = state;
                e.claimed = true;
            }
        }
        Vec::new()
    }

    fn entry_or_new(&mut self, claim: &CommandClaim, now: SystemTime) -> &Entry {
        self.entries
            .get_or_insert_with(&claim.command_id, || Entry {
                command: None,
                imei: claim.imei.clone(),
                deadline: now,
                state: State::Open,
                claimed: false,
                proposal: None,
                forget_at: None,
            })
    }

    /// A claim read from the log.
    pub fn on_claim(&mut self, claim: CommandClaim, now: SystemTime) -> Vec<Action> {
        let purpose = ClaimPurpose::try_from(claim.purpose).unwrap_or(ClaimPurpose::Unspecified);
        match purpose {
            ClaimPurpose::Beat => {
                self.on_beat(&claim, now);
                return Vec::new();
            }
            ClaimPurpose::Login => return self.on_login(&claim, now),
            ClaimPurpose::Logout => {
                self.on_logout(&claim, now);
                return Vec::new();
            }
            ClaimPurpose::Unspecified => return Vec::new(),
            _ => {}
        }
        self.entry_or_new(&claim, now);
        let mut out = Vec::new();
        let id = claim.command_id.clone();
        let by = Who::of(&claim);
        let mine = self.is_me(&by);
        let Some(e) = self.entries.get(&id) else {
            return out;
        };
        let before = e.state.clone();
        let imei = e.imei.clone();
        let mut next = None;
        match (purpose, &before) {
            (ClaimPurpose::Deliver, State::Open) => {
                let started = claim.session_started.as_ref().map(millis);
                if !self.superseded(&imei, &by.instance, started) {
                    next = Some(State::Held {
                        holder: by.clone(),
                        session_started: started,
                        written: None,
                    });
                    if mine {
                        if let Some(c) = e.command.clone() {
                            out.push(Action::Deliver(c));
                        }
                    }
                }
            }
            (ClaimPurpose::Expire, State::Open) => {
                let r = self.entry_result(
                    &id,
                    e,
                    CommandStatus::Expired,
                    "no session took the command within its TTL",
                    now,
                );
                next = Some(State::Decided {
                    publisher: by.clone(),
                    result: Box::new(r),
                });
            }
            (ClaimPurpose::Reject, State::Open) => {
                let r = self.entry_result(&id, e, CommandStatus::Rejected, &claim.reason, now);
                next = Some(State::Decided {
                    publisher: by.clone(),
                    result: Box::new(r),
                });
            }
            (ClaimPurpose::Release, State::Held { holder, .. }) if *holder == by => {
                next = Some(State::Open);
            }
            (
                ClaimPurpose::Writing,
                State::Held {
                    holder,
                    session_started,
                    written: None,
                },
            ) if *holder == by => {
                if self.superseded(&imei, &by.instance, *session_started) {
                    // A newer session of the device came first: the command goes to it.
                    next = Some(State::Open);
                    if mine {
                        out.push(Action::Withdraw(id.clone()));
                    }
                } else {
                    next = Some(State::Held {
                        holder: holder.clone(),
                        session_started: *session_started,
                        written: claim.at.or(Some(timestamp(now))),
                    });
                    if mine {
                        out.push(Action::Go(id.clone()));
                    }
                }
            }
            // A second copy of this instance's WRITING (proposed again): already in force.
            (ClaimPurpose::Writing, State::Held { holder, .. }) if *holder == by => {}
            (ClaimPurpose::Writing, _) if mine => out.push(Action::Withdraw(id.clone())),
            (ClaimPurpose::Complete, State::Held { holder, .. }) if *holder == by => {
                if let Some(r) = claim.result.clone() {
                    next = Some(State::Decided {
                        publisher: by.clone(),
                        result: Box::new(r),
                    });
                }
            }
            // A second copy of this instance's COMPLETE: already in force.
            (ClaimPurpose::Complete, State::Decided { publisher, .. }) if *publisher == by => {}
            (ClaimPurpose::Complete, State::Done) => {}
            (ClaimPurpose::Complete, _) if mine => {
                // Another pod settled the command first (this one was taken for lost).
                out.push(Action::Withdraw(id.clone()));
            }
            (ClaimPurpose::Published, State::Decided { publisher, .. }) if *publisher == by => {
                next = Some(State::Done);
            }
            (ClaimPurpose::Settle, _) => {
                let lost = Who::subject(&claim);
                match &before {
                    State::Held {
                        holder,
                        written: None,
                        ..
                    } if *holder == lost && lost != by => {
                        next = Some(State::Open);
                        if mine {
                            out.push(Action::Settled("redelivered"));
                        }
                    }
                    State::Held {
                        holder,
                        written: Some(at),
                        ..
                    } if *holder == lost && lost != by => {
                        let mut r = match &claim.result {
                            Some(r) => r.clone(),
                            None => self.entry_result(
                                &id,
                                e,
                                CommandStatus::Expired,
                                &holder_lost_reason(&lost.gateway),
                                now,
                            ),
                        };
                        r.sent_at = r.sent_at.or(Some(*at));
                        next = Some(State::Decided {
                            publisher: by.clone(),
                            result: Box::new(r),
                        });
                        if mine {
                            out.push(Action::Settled("expired"));
                        }
                    }
                    State::Decided { publisher, result } if *publisher == lost && lost != by => {
                        next = Some(State::Decided {
                            publisher: by.clone(),
                            result: result.clone(),
                        });
                        if mine {
                            out.push(Action::Settled("republished"));
                        }
                    }
                    _ => {}
                }
                if next.is_some() && self.is_me(&lost) {
                    // This pod was taken for lost while it still ran: let go.
                    out.push(Action::Withdraw(id.clone()));
                }
            }
            _ => {}
        }
        let remember = self.cfg.remember;
        let Some(e) = self.entries.get_mut(&id) else {
            return out;
        };
        e.claimed = true;
        if mine
            && e.proposal
                .as_deref()
                .is_some_and(|(c, _)| c.purpose == claim.purpose)
        {
            e.proposal = None;
        }
        let Some(next) = next else {
            return out;
        };
        e.state = next.clone();
        if next == State::Done {
            e.forget_at = Some(now.max(e.deadline) + remember);
        }
        if mine {
            let state = match &next {
                State::Open => Retained::Open,
                State::Done => Retained::Finished,
                _ => Retained::InForce(Box::new(claim.clone())),
            };
            out.push(Action::Retain {
                imei: imei.clone(),
                command_id: id.clone(),
                state,
            });
        }
        match next {
            State::Decided { publisher, result } if self.is_me(&publisher) => {
                out.push(Action::Publish(*result));
            }
            State::Open => {
                // Reopened: the device's newest session (here or elsewhere) claims it again.
                if let Some(e) = self.entries.get_mut(&id) {
                    e.proposal = None;
                }
                out.extend(self.propose_delivery(&id, now));
                return out;
            }
            _ => {}
        }
        // A command of a device connected here moved on (held, decided, done): room under the
        // per-device cap may have come for the next one.
        if self.local.contains_key(&imei) {
            out.extend(self.propose_deliveries_for(&imei, now));
        }
        out
    }

    fn on_beat(&mut self, claim: &CommandClaim, now: SystemTime) {
        let who = Who::of(claim);
        if self.is_me(&who) {
            let gap = self.cfg.beat_every() * 2;
            let fresh = self
                .liveness
                .own_seen
                .is_some_and(|t| now.duration_since(t).unwrap_or_default() <= gap);
            if !fresh {
                // The log carries this pod's beats again (or for the first time): judge
                // nobody before a full silence has passed from now.
                self.liveness.flowing_since = Some(now);
            }
            self.liveness.own_seen = Some(now);
        }
        self.liveness.seen.insert(who.instance, now);
    }

    fn on_login(&mut self, claim: &CommandClaim, now: SystemTime) -> Vec<Action> {
        let Some(started) = claim.session_started.as_ref().map(millis) else {
            return Vec::new();
        };
        let who = Who::of(claim);
        let who = match self.pods.get(&who) {
            Some(known) => known.clone(),
            None => {
                let who = Arc::new(who);
                self.pods.insert(who.clone());
                who
            }
        };
        // Almost every device has one live session: room for one, not a growing vector's
        // first four (memory per session, docs/load-runs.md).
        let v = self
            .sessions
            .entry(claim.imei.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        if v.iter().any(|a| *a.who == *who && a.started_ms == started) {
            return Vec::new();
        }
        v.push(Announced {
            who: who.clone(),
            started_ms: started,
            read_at: now,
        });
        if v.len() > MAX_ANNOUNCED_PER_DEVICE {
            v.sort_by_key(|a| a.started_ms);
            v.remove(0);
        }
        if self.is_me(&who) {
            return Vec::new();
        }
        // A newer session elsewhere: give back what this pod holds for the device and has not
        // written (its WRITING would not be in force any more).
        let older_here = self
            .local
            .get(&claim.imei)
            .is_some_and(|t| millis_of(*t) < started);
        if !older_here {
            return Vec::new();
        }
        let ids: Vec<String> = self
            .entries
            .of_device(&claim.imei)
            .filter(|(_, e)| {
                matches!(&e.state, State::Held { holder, written: None, .. } if self.is_me(holder))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in ids {
            out.push(Action::Withdraw(id.clone()));
            out.extend(self.release(&id, now));
        }
        out
    }

    fn on_logout(&mut self, claim: &CommandClaim, now: SystemTime) {
        let Some(started) = claim.session_started.as_ref().map(millis) else {
            return;
        };
        let subject = Who::subject(claim);
        if let Some(v) = self.sessions.get_mut(&claim.imei) {
            v.retain(|a| !(a.who.instance == subject.instance && a.started_ms == started));
            if v.is_empty() {
                self.sessions.remove(&claim.imei);
            }
        }
        self.logouts
            .remove(&(claim.imei.clone(), subject.instance, started));
        // Someone's session ended: this pod's may now be the newest.
        let _ = now;
    }

    /// A device logged in on this pod at `started`: the session is announced, and its pending
    /// commands are proposed for delivery.
    pub fn session_up(&mut self, imei: &str, started: SystemTime, now: SystemTime) -> Vec<Action> {
        let newest = self.local.get(imei).is_none_or(|t| *t <= started);
        if newest {
            self.local.insert(imei.to_string(), started);
        }
        let mut login = self.claim("", imei, ClaimPurpose::Login, now);
        login.session_started = Some(timestamp(started));
        let mut out = vec![Action::Propose(login)];
        out.extend(self.propose_deliveries_for(imei, now));
        out
    }

    /// The device's session that started at `started` ended on this pod; `still_local` is the
    /// start of another live session of it here, if any.
    pub fn session_down(
        &mut self,
        imei: &str,
        started: SystemTime,
        still_local: Option<SystemTime>,
        now: SystemTime,
    ) -> Vec<Action> {
        match still_local {
            Some(t) => {
                self.local.insert(imei.to_string(), t);
            }
            None => {
                self.local.remove(imei);
            }
        }
        let mut logout = self.claim("", imei, ClaimPurpose::Logout, now);
        logout.session_started = Some(timestamp(started));
        vec![Action::Propose(logout)]
    }

    /// Whether `instance` is lost at `now`, with `extra` silence on top of the usual (the
    /// jitter that spreads the pods' proposals).
    fn lost(&self, instance: &str, now: SystemTime, extra: Duration) -> bool {
        if instance == self.cfg.instance {
            return false;
        }
        let (Some(own), Some(since)) = (self.liveness.own_seen, self.liveness.flowing_since) else {
            return false;
        };
        // Own beats read back within two intervals: the log flows for this pod now. (Less
        // than the silence that makes a pod lost, so a stall is noticed before anyone is
        // judged.)
        let gap = self.cfg.beat_every() * 2;
        if now.duration_since(own).unwrap_or_default() > gap {
            return false;
        }
        let last = self
            .liveness
            .seen
            .get(instance)
            .copied()
            .unwrap_or(since)
            .max(since);
        now.duration_since(last).unwrap_or_default() >= self.cfg.silence() + extra
    }

    /// The instance responsible for an entry now: its holder or its publisher.
    fn responsible(state: &State) -> Option<&Who> {
        match state {
            State::Held { holder, .. } => Some(holder),
            State::Decided { publisher, .. } => Some(publisher),
            State::Open | State::Done => None,
        }
    }

    /// Whether this instance's claim on `e` is still worth making.
    fn still_relevant(&self, e: &Entry, claim: &CommandClaim, now: SystemTime) -> bool {
        let purpose = ClaimPurpose::try_from(claim.purpose).unwrap_or(ClaimPurpose::Unspecified);
        let mine = |w: &Who| self.is_me(w);
        match (purpose, &e.state) {
            (ClaimPurpose::Deliver, State::Open) => e.deadline > now && self.may_deliver(&e.imei),
            (ClaimPurpose::Expire, State::Open) => !self.draining,
            (ClaimPurpose::Reject, State::Open) => true,
            (ClaimPurpose::Release | ClaimPurpose::Complete, State::Held { holder, .. }) => {
                mine(holder)
            }
            (
                ClaimPurpose::Writing,
                State::Held {
                    holder,
                    written: None,
                    ..
                },
            ) => mine(holder),
            (ClaimPurpose::Published, State::Decided { publisher, .. }) => mine(publisher),
            (ClaimPurpose::Settle, s) => {
                !self.draining
                    && Self::responsible(s).is_some_and(|w| w.instance == claim.lost_instance)
            }
            _ => false,
        }
    }

    /// The passing of time: this pod's beat, lost proposals made again, deliveries, expiries,
    /// settlements of lost pods' commands, and forgetting what is done. `jitter` spreads the
    /// pods' expiry and settlement proposals so usually only one is written.
    pub fn tick(&mut self, now: SystemTime, jitter: impl Fn(&str) -> Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if self.liveness.next_beat.is_none_or(|t| t <= now) {
            self.liveness.next_beat = Some(now + self.cfg.beat_every());
            out.push(Action::Propose(self.claim("", "", ClaimPurpose::Beat, now)));
        }
        if self.liveness.next_prune.is_none_or(|t| t <= now) {
            self.liveness.next_prune = Some(now + PRUNE_EVERY);
            self.prune(now);
        }
        // What walks every command, the local sessions or the fleet's runs every SWEEP_EVERY.
        // Deliveries are proposed as things happen (a command read, a login, a command
        // reopened or moving on); the sweep's delivery pass catches the rest (a proposal the
        // dispatcher could not take on, a newer session elsewhere that ended).
        if self.liveness.next_sweep.is_none_or(|t| t <= now) {
            self.liveness.next_sweep = Some(now + SWEEP_EVERY);
            out.extend(self.retry_lost_proposals(now));
            out.extend(self.deliver_waiting(now));
            if !self.draining {
                out.extend(self.expire_and_settle(now, &jitter));
                out.extend(self.logouts_for_lost(now, &jitter));
            }
        }
        out
    }

    /// A proposal that never came back through the log was lost: make it again, if it still
    /// makes sense.
    fn retry_lost_proposals(&mut self, now: SystemTime) -> Vec<Action> {
        let stale = self.cfg.proposal_timeout;
        let mut again = Vec::new();
        for (id, e) in self.entries.iter() {
            if let Some((claim, at)) = e.proposal.as_deref() {
                if *at + stale <= now {
                    again.push((
                        id.clone(),
                        self.still_relevant(e, claim, now).then(|| claim.clone()),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for (id, claim) in again {
            match claim {
                Some(c) => out.extend(self.propose(&id, c, now)),
                None => self.proposal_failed(&id),
            }
        }
        out
    }

    /// Commands still waiting for a device connected here, which no event proposed (a proposal
    /// the dispatcher could not take on, a newer session elsewhere that ended): walks whichever
    /// is smaller, the devices with commands or the local ones, and copies nothing for the
    /// devices with none to propose.
    fn deliver_waiting(&mut self, now: SystemTime) -> Vec<Action> {
        let waiting = |imei: &String| {
            self.entries
                .of_device(imei)
                .any(|(_, e)| e.state == State::Open && e.proposal.is_none())
        };
        let devices: Vec<String> = if self.local.len() < self.entries.device_count() {
            self.local.keys().filter(|i| waiting(i)).cloned().collect()
        } else {
            self.entries
                .devices()
                .filter(|i| self.local.contains_key(*i) && waiting(i))
                .cloned()
                .collect()
        };
        let mut out = Vec::new();
        for imei in devices {
            out.extend(self.propose_deliveries_for(&imei, now));
        }
        out
    }

    /// EXPIRE for commands past their TTL that nobody delivered; SETTLE for those held or owed
    /// by a lost pod.
    fn expire_and_settle(
        &mut self,
        now: SystemTime,
        jitter: &impl Fn(&str) -> Duration,
    ) -> Vec<Action> {
        let mut due = Vec::new();
        for (id, e) in self.entries.iter() {
            if e.proposal.is_some() {
                continue;
            }
            match &e.state {
                State::Open
                    if e.command.is_some()
                        && e.deadline <= now
                        && e.deadline + jitter(id) <= now =>
                {
                    due.push(self.claim(id, &e.imei, ClaimPurpose::Expire, now));
                }
                State::Held { .. } | State::Decided { .. } => {
                    let Some(w) = Self::responsible(&e.state) else {
                        continue;
                    };
                    // Lost without jitter first: the jitter is computed only for the lost.
                    if !self.lost(&w.instance, now, Duration::ZERO)
                        || !self.lost(&w.instance, now, jitter(id))
                    {
                        continue;
                    }
                    let mut c = self.claim(id, &e.imei, ClaimPurpose::Settle, now);
                    c.lost_gateway = w.gateway.clone();
                    c.lost_instance = w.instance.clone();
                    c.result = match &e.state {
                        State::Held {
                            written: Some(at), ..
                        } => {
                            let mut r = self.entry_result(
                                id,
                                e,
                                CommandStatus::Expired,
                                &holder_lost_reason(&w.gateway),
                                now,
                            );
                            r.sent_at = Some(*at);
                            Some(r)
                        }
                        State::Decided { result, .. } => Some((**result).clone()),
                        _ => None,
                    };
                    due.push(c);
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for c in due {
            let id = c.command_id.clone();
            out.extend(self.propose(&id, c, now));
        }
        out
    }

    /// LOGOUTs for the announced sessions of lost pods, so their devices' other sessions may
    /// take commands.
    fn logouts_for_lost(
        &mut self,
        now: SystemTime,
        jitter: &impl Fn(&str) -> Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        // The pods that announced sessions and are lost even without jitter (which only adds
        // silence): usually none, and then the fleet's sessions are not walked at all.
        let lost: HashSet<&str> = self
            .pods
            .iter()
            .map(|w| w.instance.as_str())
            .filter(|i| self.lost(i, now, Duration::ZERO))
            .collect();
        if lost.is_empty() {
            return out;
        }
        let mut due = Vec::new();
        for (imei, v) in &self.sessions {
            for a in v {
                if !lost.contains(a.who.instance.as_str())
                    || !self.lost(&a.who.instance, now, jitter(imei))
                {
                    continue;
                }
                let key = (imei.clone(), a.who.instance.clone(), a.started_ms);
                let recent = self
                    .logouts
                    .get(&key)
                    .is_some_and(|t| *t + self.cfg.proposal_timeout > now);
                if !recent {
                    due.push((key, a.who.clone()));
                }
            }
        }
        for ((imei, instance, started), lost) in due {
            let mut c = self.claim("", &imei, ClaimPurpose::Logout, now);
            c.lost_gateway = lost.gateway.clone();
            c.lost_instance = instance.clone();
            c.session_started = Some(crate::event::timestamp::Timestamp {
                seconds: started.div_euclid(1000),
                nanos: (started.rem_euclid(1000) * 1_000_000) as i32,
            });
            self.logouts.insert((imei, instance, started), now);
            out.push(Action::Propose(c));
        }
        out
    }

    /// Forgets commands done and remembered long enough, claims whose command never came, and
    /// session announcements and beats older than anything a starting pod would read. The tick
    /// does it every [`PRUNE_EVERY`]; public for `benches/ledger.rs`.
    pub fn prune(&mut self, now: SystemTime) {
        self.entries.retain(|_, e| match e.state {
            State::Done => e.forget_at.is_none_or(|t| t > now),
            // A claim whose command never came (or is long gone) and that nobody acts on.
            State::Open if e.command.is_none() => now < e.deadline + self.cfg.remember,
            _ => true,
        });
        let horizon = now
            .checked_sub(self.cfg.max_ttl)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.sessions.retain(|_, v| {
            v.retain(|a| a.read_at > horizon);
            !v.is_empty()
        });
        self.pods.retain(|who| Arc::strong_count(who) > 1);
        let busy: BTreeSet<String> = self
            .entries
            .values()
            .filter_map(|e| Self::responsible(&e.state).map(|w| w.instance.clone()))
            .collect();
        self.liveness
            .seen
            .retain(|i, t| *t > horizon || busy.contains(i));
        self.logouts.retain(|_, t| *t > horizon);
    }
}

/// Up to `cap` (2 s at most), different per pod and key (a command id, or a device id for its
/// announced sessions), so pods rarely race to expire or settle the same command.
pub fn jitter(instance: &str, key: &str, cap: Duration) -> Duration {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{instance}/{key}").as_bytes());
    let cap_ms = (cap.as_millis() as u64).max(1);
    Duration::from_millis(h % cap_ms)
}

/// The reason of the EXPIRED result a lost holder's written command gets.
fn holder_lost_reason(gateway: &str) -> String {
    format!(
        "holder lost: the gateway holding the command ({gateway}) stopped before the device's answer was reported; the command may have been written"
    )
}

mod entries;
#[cfg(test)]
mod tests;
