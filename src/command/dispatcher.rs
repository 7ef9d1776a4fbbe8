//! The dispatcher task: runs the [`Ledger`] against the log, the local sessions and the clock.
//! It hands won commands to sessions, turns what sessions report into claims and results, and
//! queues results in the [`Outbox`]. It never waits on the broker (claims are proposed
//! without waiting, results are queued in room reserved beforehand) nor on a session (its
//! sends to a session never find the channel full, see [`SESSION_CHANNEL`]).
//!
//! [`SESSION_CHANNEL`]: super::messages::SESSION_CHANNEL

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::bus::{ClaimWriter, Entry};
use super::by_device::ByDevice;
use super::ledger::{Action, Ledger, LedgerConfig};
use super::messages::{Commands, SessionMsg, SessionSender, ToDispatcher, Update};
use super::outbox::{Confirmed, Outbox, Reservation};
use crate::metrics as m;
use crate::proto::{ClaimPurpose, Command, CommandResult, CommandStatus};

/// Messages the dispatcher's queue holds at most (sessions wait beyond).
const QUEUE: usize = 16 * 1024;

/// A session of this pod that takes commands.
struct Local {
    imei: String,
    started: SystemTime,
    tx: SessionSender,
}

/// This pod's live sessions by id, indexed by device: a login, a logout and a delivery look up
/// one device's sessions, not every session of the pod (a login or disconnect storm of N
/// devices would cost N² otherwise).
#[derive(Default)]
struct Locals {
    by_id: HashMap<u64, Local>,
    by_imei: ByDevice<u64>,
}

impl Locals {
    fn get(&self, session: &u64) -> Option<&Local> {
        self.by_id.get(session)
    }

    fn insert(&mut self, session: u64, l: Local) {
        if let Some(old) = self.by_id.remove(&session) {
            self.by_imei.remove(&old.imei, &session);
        }
        self.by_imei.add(&l.imei, session);
        self.by_id.insert(session, l);
    }

    fn remove(&mut self, session: &u64) -> Option<Local> {
        let l = self.by_id.remove(session)?;
        self.by_imei.remove(&l.imei, session);
        Some(l)
    }

    /// The newest live session of `imei` on this pod.
    fn newest(&self, imei: &str) -> Option<(u64, SystemTime)> {
        self.by_imei
            .get(imei)
            .iter()
            .filter_map(|id| self.by_id.get(id).map(|l| (*id, l.started)))
            .max_by_key(|(id, started)| (*started, *id))
    }
}

/// A command this pod handed a session.
struct Held {
    session: u64,
    command: Command,
    sent_at: Option<SystemTime>,
    phase: Phase,
}

/// Where a held command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the session, not written.
    Handed,
    /// Written; its answer awaited.
    Written,
    /// Its terminal result was reported; the COMPLETE claim is on its way.
    Completing,
}

/// The dispatcher's running parts, for the command flow to drain and stop.
pub struct Running {
    pub commands: Commands,
    pub outbox: Arc<Outbox>,
    pub task: tokio::task::JoinHandle<()>,
    /// Asks the dispatcher to report when it owes nothing more.
    pub finish: mpsc::Sender<oneshot::Sender<()>>,
}

/// Starts the dispatcher and the outbox's task. `draining` (the gateway's shutdown) stops new
/// work; `stop` ends both tasks.
pub fn start(
    cfg: LedgerConfig,
    writer: Arc<dyn ClaimWriter>,
    entries: mpsc::Receiver<Entry>,
    publisher: Arc<crate::sink::Publisher>,
    outbox_capacity: usize,
    draining: CancellationToken,
    stop: CancellationToken,
) -> Running {
    let (commands, rx) = Commands::channel(QUEUE);
    let outbox = Outbox::new(outbox_capacity);
    let (confirmed_tx, confirmed_rx) = mpsc::channel(1024);
    tokio::spawn(super::outbox::run(
        outbox.clone(),
        publisher,
        confirmed_tx,
        stop.clone(),
    ));
    let (finish, finish_rx) = mpsc::channel(4);
    let jitter_cap = (cfg.lease / 4).min(Duration::from_secs(2));
    let d = Dispatcher {
        instance: cfg.instance.clone(),
        jitter_cap,
        ledger: Ledger::new(cfg),
        writer,
        outbox: outbox.clone(),
        sessions: Locals::default(),
        held: HashMap::new(),
        reserved: HashMap::new(),
    };
    let task = tokio::spawn(d.run(
        Inputs {
            entries,
            rx,
            confirmed: confirmed_rx,
            finish: finish_rx,
        },
        draining,
        stop,
    ));
    Running {
        commands,
        outbox,
        task,
        finish,
    }
}

struct Inputs {
    entries: mpsc::Receiver<Entry>,
    rx: mpsc::Receiver<ToDispatcher>,
    confirmed: mpsc::Receiver<Vec<Confirmed>>,
    finish: mpsc::Receiver<oneshot::Sender<()>>,
}

struct Dispatcher {
    instance: String,
    jitter_cap: Duration,
    ledger: Ledger,
    writer: Arc<dyn ClaimWriter>,
    outbox: Arc<Outbox>,
    sessions: Locals,
    held: HashMap<String, Held>,
    /// Room in the outbox for the results of commands this pod may publish.
    reserved: HashMap<String, Reservation>,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut inputs: Inputs,
        draining: CancellationToken,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut is_draining = false;
        let mut finish: Option<oneshot::Sender<()>> = None;
        loop {
            let actions = tokio::select! {
                _ = stop.cancelled() => break,
                _ = draining.cancelled(), if !is_draining => {
                    is_draining = true;
                    self.ledger.set_draining();
                    Vec::new()
                }
                e = inputs.entries.recv() => match e {
                    None => break,
                    Some(e) => self.on_entry(e),
                },
                m = inputs.rx.recv() => match m {
                    None => break,
                    Some(m) => self.on_message(m),
                },
                c = inputs.confirmed.recv() => match c {
                    None => break,
                    Some(done) => {
                        let now = SystemTime::now();
                        let mut out = Vec::new();
                        for c in done.into_iter().filter(|c| c.terminal) {
                            out.extend(self.ledger.published(&c.command_id, now));
                        }
                        out
                    }
                },
                f = inputs.finish.recv() => {
                    finish = f;
                    Vec::new()
                }
                _ = tick.tick() => {
                    let now = SystemTime::now();
                    let (instance, cap) = (self.instance.clone(), self.jitter_cap);
                    let out = self.ledger.tick(now, |id| super::ledger::jitter(&instance, id, cap));
                    self.reserved.retain(|id, _| self.ledger.may_publish(id));
                    metrics::gauge!(m::COMMAND_HELD).set(self.held.len() as f64);
                    metrics::gauge!(m::COMMAND_LEDGER_COMMANDS).set(self.ledger.len() as f64);
                    metrics::gauge!(m::COMMAND_LEDGER_MAX).set(self.ledger.max_entries() as f64);
                    metrics::gauge!(m::COMMAND_LEDGER_DEVICES)
                        .set(self.ledger.announced_devices() as f64);
                    out
                }
            };
            self.act(actions);
            if finish.is_some() && self.settled() {
                if let Some(f) = finish.take() {
                    let _ = f.send(());
                }
            }
        }
        debug!("command dispatcher stopped");
    }

    /// Nothing held, owed or queued.
    fn settled(&self) -> bool {
        self.held.is_empty() && !self.ledger.owes_work() && self.outbox.is_empty()
    }

    fn on_entry(&mut self, e: Entry) -> Vec<Action> {
        let now = SystemTime::now();
        match e {
            Entry::Command(c) => {
                metrics::counter!(m::COMMANDS, "status" => "received").increment(1);
                self.ledger.on_command(c, now)
            }
            Entry::Rejected(c, reason) => {
                metrics::counter!(m::COMMANDS, "status" => "received").increment(1);
                warn!(command_id = %c.command_id, imei = %c.imei, %reason, "command refused");
                self.ledger.on_rejected(c, &reason, now)
            }
            Entry::Claim(c) => {
                if c.purpose != ClaimPurpose::Beat as i32 {
                    debug!(command_id = %c.command_id, imei = %c.imei, gateway = %c.gateway, purpose = ?ClaimPurpose::try_from(c.purpose).unwrap_or_default(), "claim read");
                }
                self.ledger.on_claim(c, now)
            }
            Entry::State(c) => self.ledger.on_state(c, now),
            Entry::Invalid(reason) => {
                metrics::counter!(m::COMMANDS, "status" => "unreadable").increment(1);
                warn!(%reason, "unreadable command ignored");
                Vec::new()
            }
        }
    }

    fn on_message(&mut self, m: ToDispatcher) -> Vec<Action> {
        let now = SystemTime::now();
        match m {
            ToDispatcher::Up {
                imei,
                session,
                started,
                tx,
            } => {
                // A newer session of the device on this pod: the older one gives back what it
                // has not written (TCP's is usually being replaced anyway).
                if let Some((older, _)) = self.sessions.newest(&imei) {
                    if let Some(l) = self.sessions.get(&older) {
                        let _ = l.tx.try_send(Box::new(SessionMsg::Superseded));
                    }
                }
                self.sessions.insert(
                    session,
                    Local {
                        imei: imei.clone(),
                        started,
                        tx,
                    },
                );
                self.ledger.session_up(&imei, started, now)
            }
            ToDispatcher::Down { imei, session } => {
                let Some(gone) = self.sessions.remove(&session) else {
                    return Vec::new();
                };
                // Whatever that session never wrote (messages it never read) goes back; what it
                // wrote and did not report (it always reports before it goes, so only a
                // session that died mid-way) is reported as such. A command whose terminal
                // result is on its way stays until its COMPLETE is in force.
                let orphans: Vec<(String, Phase)> = self
                    .held
                    .iter()
                    .filter(|(_, h)| h.session == session && h.phase != Phase::Completing)
                    .map(|(id, h)| (id.clone(), h.phase))
                    .collect();
                let mut out = Vec::new();
                for (id, phase) in orphans {
                    let update = match phase {
                        Phase::Handed => Update::NotWritten {
                            command_id: id.clone(),
                        },
                        _ => Update::NoReply {
                            command_id: id.clone(),
                            reason: "written, but the session ended before the device answered"
                                .into(),
                        },
                    };
                    out.extend(self.on_update(session, update, now));
                }
                let still = self.sessions.newest(&imei).map(|(_, t)| t);
                out.extend(self.ledger.session_down(&imei, gone.started, still, now));
                out
            }
            ToDispatcher::Update { session, update } => self.on_update(session, update, now),
        }
    }

    fn on_update(&mut self, session: u64, u: Update, now: SystemTime) -> Vec<Action> {
        let id = u.command_id().to_string();
        let Some(h) = self.held.get_mut(&id) else {
            return Vec::new();
        };
        if h.session != session {
            return Vec::new();
        }
        let (status, reason, response) = match u {
            Update::Ready { .. } => return self.ledger.ready(&id, now),
            Update::NotWritten { .. } => {
                self.held.remove(&id);
                self.reserved.remove(&id);
                return self.ledger.release(&id, now);
            }
            Update::Written { awaiting_reply, .. } => {
                h.sent_at = Some(now);
                h.phase = Phase::Written;
                info!(command_id = %id, imei = %h.command.imei, "command written to the device");
                if awaiting_reply {
                    let mut r = self
                        .ledger
                        .result(&h.command, CommandStatus::Sent, "", false, now);
                    r.sent_at = Some(crate::event::timestamp(now));
                    self.outbox.push(r, self.reserved.get_mut(&id));
                    return Vec::new();
                }
                (CommandStatus::Sent, String::new(), None)
            }
            Update::Replied { response, .. } => {
                (CommandStatus::Responded, String::new(), Some(response))
            }
            Update::Refused { reason, .. } => (CommandStatus::Rejected, reason, None),
            Update::Rejected { reason, .. } => (CommandStatus::Rejected, reason, None),
            Update::NoReply { reason, .. } => (CommandStatus::Expired, reason, None),
        };
        if h.phase == Phase::Completing {
            return Vec::new();
        }
        h.phase = Phase::Completing;
        let mut r = self.ledger.result(&h.command, status, &reason, true, now);
        r.sent_at = h.sent_at.map(crate::event::timestamp);
        r.response = response;
        self.ledger.complete(&id, r, now)
    }

    fn act(&mut self, actions: Vec<Action>) {
        let mut work: VecDeque<Action> = actions.into();
        while let Some(a) = work.pop_front() {
            let now = SystemTime::now();
            match a {
                Action::Propose(claim) => {
                    if !self.room_for(&claim) {
                        metrics::counter!(m::COMMAND_DEFERRED).increment(1);
                        debug!(command_id = %claim.command_id, "results outbox full; claim deferred");
                        self.ledger.proposal_failed(&claim.command_id);
                        continue;
                    }
                    if claim.purpose != ClaimPurpose::Beat as i32 {
                        debug!(command_id = %claim.command_id, imei = %claim.imei, purpose = ?ClaimPurpose::try_from(claim.purpose).unwrap_or_default(), "proposing claim");
                    }
                    self.writer.propose(claim);
                }
                Action::Deliver(c) => work.extend(self.deliver(c, now)),
                Action::Go(id) => {
                    let Some(h) = self.held.get(&id) else {
                        // Its session ended meanwhile and gave it back.
                        continue;
                    };
                    let sent = self.sessions.get(&h.session).is_some_and(|l| {
                        l.tx.try_send(Box::new(SessionMsg::Go(id.clone()))).is_ok()
                    });
                    if !sent && h.phase == Phase::Handed {
                        let session = h.session;
                        work.extend(self.on_update(
                            session,
                            Update::NotWritten { command_id: id },
                            now,
                        ));
                    }
                }
                Action::Withdraw(id) => {
                    if let Some(h) = self.held.remove(&id) {
                        if let Some(l) = self.sessions.get(&h.session) {
                            let _ = l.tx.try_send(Box::new(SessionMsg::Withdraw(id.clone())));
                        }
                        info!(command_id = %id, "command withdrawn: settled by another pod or for a newer session");
                    }
                    self.reserved.remove(&id);
                }
                Action::Publish(r) => self.publish(r),
                Action::Retain {
                    imei,
                    command_id,
                    state,
                } => self.writer.retain(&imei, &command_id, &state),
                Action::Settled(outcome) => {
                    metrics::counter!(m::COMMANDS_SETTLED, "outcome" => outcome).increment(1);
                }
            }
        }
    }

    /// Reserves outbox room for the results a claim may make this pod publish; true when it
    /// has room (or needs none).
    fn room_for(&mut self, claim: &crate::proto::CommandClaim) -> bool {
        let n = match ClaimPurpose::try_from(claim.purpose) {
            // The SENT and the terminal result.
            Ok(ClaimPurpose::Deliver) => 2,
            Ok(ClaimPurpose::Expire | ClaimPurpose::Reject | ClaimPurpose::Settle) => 1,
            _ => return true,
        };
        if self.reserved.contains_key(&claim.command_id) {
            return true;
        }
        match self.outbox.try_reserve(n) {
            Some(r) => {
                self.reserved.insert(claim.command_id.clone(), r);
                true
            }
            None => false,
        }
    }

    fn deliver(&mut self, c: Command, now: SystemTime) -> Vec<Action> {
        let id = c.command_id.clone();
        let Some((session, _)) = self.sessions.newest(&c.imei) else {
            // The session ended between the proposal and the claim coming back.
            return self.ledger.release(&id, now);
        };
        let sent = self
            .sessions
            .get(&session)
            .map(|l| l.tx.try_send(Box::new(SessionMsg::Deliver(c.clone()))));
        match sent {
            Some(Ok(())) => {
                info!(command_id = %id, imei = %c.imei, "command handed to the session");
                self.held.insert(
                    id,
                    Held {
                        session,
                        command: c,
                        sent_at: None,
                        phase: Phase::Handed,
                    },
                );
                Vec::new()
            }
            _ => self.ledger.release(&id, now),
        }
    }

    fn publish(&mut self, r: CommandResult) {
        let id = r.command_id.clone();
        info!(command_id = %id, imei = %r.imei, status = super::outbox::status_label(r.status), reason = %r.reason, "command result");
        self.held.remove(&id);
        self.outbox.push(r, self.reserved.get_mut(&id));
        self.reserved.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(imei: &str, started_s: u64) -> Local {
        Local {
            imei: imei.into(),
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(started_s),
            tx: super::super::messages::session_channel().0,
        }
    }

    #[test]
    fn the_newest_session_of_a_device_is_found_by_its_index() {
        let mut l = Locals::default();
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        l.insert(1, local("A", 10));
        l.insert(2, local("B", 5));
        l.insert(3, local("A", 20));
        // Same start: the later session id wins.
        l.insert(4, local("A", 20));
        assert_eq!(l.newest("A"), Some((4, at(20))));
        assert_eq!(l.newest("B"), Some((2, at(5))));
        assert_eq!(l.newest("C"), None);
        assert_eq!(l.remove(&4).map(|x| x.imei), Some("A".into()));
        assert_eq!(l.newest("A"), Some((3, at(20))));
        l.remove(&3);
        l.remove(&1);
        assert_eq!(l.newest("A"), None);
        assert_eq!(l.by_imei.len(), 1, "no empty entry left behind for A");
        assert!(l.remove(&1).is_none());
        // A session id reused for another device moves in the index.
        l.insert(2, local("C", 7));
        assert_eq!((l.newest("B"), l.newest("C")), (None, Some((2, at(7)))));
        assert!(l.get(&2).is_some());
    }
}
