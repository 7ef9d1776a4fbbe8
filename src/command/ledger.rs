//! The command ledger: what every pod knows about every pending command, sans IO.
//!
//! All pods read the same per-device ordered log (Kafka: the commands topic, key = IMEI, so
//! one partition per device; MQTT: the commands and claims topics of one broker). The log
//! holds the backends' `Command`s and the pods' `CommandClaim`s. Every pod applies the same
//! rule — **the first claim on a command wins, later ones are ignored; a RELEASE by the winner
//! reopens it** — so all pods agree on who writes a command (at most once) and who reports
//! its one terminal result, without talking to each other.
//!
//! The ledger turns log entries, local session changes and the passing of time into
//! [`Action`]s for the dispatcher: propose a claim (publish it to the log), deliver a command
//! whose claim this instance won, publish a result.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use crate::event::timestamp;
use crate::proto::{command, ClaimPurpose, Command, CommandClaim, CommandResult, CommandStatus};

/// What the dispatcher must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish this claim to the log; the ledger acts when it reads it back.
    Propose(CommandClaim),
    /// This instance won the DELIVER claim: write the command to the local session.
    Deliver(Command),
    /// Publish this result (this instance won the claim that ends the command).
    Publish(CommandResult),
}

#[derive(Debug)]
struct Entry {
    command: Option<Command>,
    imei: String,
    deadline: SystemTime,
    /// The claim in force, if any.
    claim: Option<CommandClaim>,
    /// What this instance proposed (and when) and has not yet seen decided.
    proposed: Option<ClaimPurpose>,
    proposed_at: SystemTime,
    /// When the entry may be forgotten (set once it is settled).
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
}

pub struct Ledger {
    cfg: LedgerConfig,
    entries: HashMap<String, Entry>,
    /// Devices with a live session on this pod.
    local: BTreeSet<String>,
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
    match &c.body {
        None => Err("either text or payload is required".into()),
        Some(command::Body::Text(t)) if t.is_empty() => Err("text is empty".into()),
        Some(command::Body::Text(t)) => {
            crate::protocol::check_command_text(t).map_err(|e| e.to_string())
        }
        Some(command::Body::Payload(p)) if p.is_empty() => Err("payload is empty".into()),
        Some(_) => Ok(()),
    }
}

impl Ledger {
    pub fn new(cfg: LedgerConfig) -> Self {
        Ledger {
            cfg,
            entries: HashMap::new(),
            local: BTreeSet::new(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.cfg.instance
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A claim by this instance.
    pub fn claim(
        &self,
        c: &Command,
        purpose: ClaimPurpose,
        reason: &str,
        now: SystemTime,
    ) -> CommandClaim {
        CommandClaim {
            command_id: c.command_id.clone(),
            imei: c.imei.clone(),
            gateway: self.cfg.gateway.clone(),
            instance: self.cfg.instance.clone(),
            purpose: purpose as i32,
            reason: reason.into(),
            at: Some(timestamp(now)),
        }
    }

    fn mine(&self, c: &CommandClaim) -> bool {
        c.instance == self.cfg.instance && c.gateway == self.cfg.gateway
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

    /// A backend's command read from the log.
    pub fn on_command(&mut self, c: Command, now: SystemTime) -> Vec<Action> {
        if let Some(e) = self.entries.get_mut(&c.command_id) {
            // A claim read before its command (joined mid-way, or claims on their own topic),
            // or a re-sent id.
            if e.command.is_none() {
                e.command = Some(c.clone());
                if let Some(claim) = e.claim.clone() {
                    e.claim = None;
                    return self.on_claim(claim, now);
                }
            }
            return Vec::new();
        }
        if let Err(reason) = validate(&c) {
            if c.command_id.trim().is_empty() {
                // Nothing to report it under; the dispatcher logs and counts it.
                return Vec::new();
            }
            return self.on_rejected(super::sanitized(&c), &reason, now);
        }
        if self.entries.len() >= self.cfg.max_entries {
            return self.insert_and_propose(
                c,
                now,
                ClaimPurpose::Reject,
                "too many pending commands",
            );
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
        let deadline = created + ttl;
        let imei = c.imei.clone();
        let local = self.local.contains(&imei);
        let id = c.command_id.clone();
        self.entries.insert(
            id.clone(),
            Entry {
                command: Some(c),
                imei,
                deadline,
                claim: None,
                proposed: None,
                proposed_at: SystemTime::UNIX_EPOCH,
                forget_at: None,
            },
        );
        if local && deadline > now {
            self.propose(&id, ClaimPurpose::Deliver, "", now)
        } else {
            Vec::new()
        }
    }

    /// A command refused before the ledger saw it ([`super::check`]: its ids already made
    /// safe); REJECTED once, by the first pod whose claim lands.
    pub fn on_rejected(&mut self, c: Command, reason: &str, now: SystemTime) -> Vec<Action> {
        if self.entries.contains_key(&c.command_id) {
            return Vec::new();
        }
        self.insert_and_propose(c, now, ClaimPurpose::Reject, reason)
    }

    fn insert_and_propose(
        &mut self,
        c: Command,
        now: SystemTime,
        purpose: ClaimPurpose,
        reason: &str,
    ) -> Vec<Action> {
        let id = c.command_id.clone();
        self.entries.insert(
            id.clone(),
            Entry {
                imei: c.imei.clone(),
                command: Some(c),
                deadline: now,
                claim: None,
                proposed: None,
                proposed_at: SystemTime::UNIX_EPOCH,
                forget_at: None,
            },
        );
        self.propose(&id, purpose, reason, now)
    }

    fn propose(
        &mut self,
        id: &str,
        purpose: ClaimPurpose,
        reason: &str,
        now: SystemTime,
    ) -> Vec<Action> {
        let Some(e) = self.entries.get(id) else {
            return Vec::new();
        };
        if e.claim.is_some() || e.proposed.is_some() {
            return Vec::new();
        }
        let Some(c) = e.command.as_ref() else {
            return Vec::new();
        };
        let claim = self.claim(c, purpose, reason, now);
        if let Some(e) = self.entries.get_mut(id) {
            e.proposed = Some(purpose);
            e.proposed_at = now;
        }
        vec![Action::Propose(claim)]
    }

    /// Publishing our proposal failed: it may be proposed again.
    pub fn proposal_failed(&mut self, command_id: &str) {
        if let Some(e) = self.entries.get_mut(command_id) {
            e.proposed = None;
        }
    }

    /// A claim read from the log.
    pub fn on_claim(&mut self, claim: CommandClaim, now: SystemTime) -> Vec<Action> {
        let purpose = ClaimPurpose::try_from(claim.purpose).unwrap_or(ClaimPurpose::Unspecified);
        let remember = self.cfg.remember;
        let e = self
            .entries
            .entry(claim.command_id.clone())
            .or_insert_with(|| Entry {
                command: None,
                imei: claim.imei.clone(),
                deadline: now,
                claim: None,
                proposed: None,
                proposed_at: SystemTime::UNIX_EPOCH,
                forget_at: None,
            });
        if purpose == ClaimPurpose::Release {
            // Only the holder of the DELIVER claim can give it back.
            let held_by_sender = e.claim.as_ref().is_some_and(|c| {
                c.purpose == ClaimPurpose::Deliver as i32
                    && c.instance == claim.instance
                    && c.gateway == claim.gateway
            });
            if held_by_sender {
                e.claim = None;
                e.proposed = None;
                e.forget_at = None;
                let id = claim.command_id.clone();
                let imei = e.imei.clone();
                let deadline = e.deadline;
                if self.local.contains(&imei) && deadline > now {
                    return self.propose(&id, ClaimPurpose::Deliver, "", now);
                }
            }
            return Vec::new();
        }
        if e.claim.is_some() || purpose == ClaimPurpose::Unspecified {
            // Not the first: ignored by every pod alike.
            if e.proposed == Some(purpose) && claim.instance == self.cfg.instance {
                e.proposed = None;
            }
            return Vec::new();
        }
        e.claim = Some(claim.clone());
        e.proposed = None;
        e.forget_at = Some(now.max(e.deadline) + remember);
        let Some(c) = e.command.clone() else {
            return Vec::new();
        };
        if !self.mine(&claim) {
            return Vec::new();
        }
        match purpose {
            ClaimPurpose::Deliver => vec![Action::Deliver(c)],
            ClaimPurpose::Expire => vec![Action::Publish(self.result(
                &c,
                CommandStatus::Expired,
                "no session took the command within its TTL",
                true,
                now,
            ))],
            ClaimPurpose::Reject => vec![Action::Publish(self.result(
                &c,
                CommandStatus::Rejected,
                &claim.reason,
                true,
                now,
            ))],
            ClaimPurpose::Release | ClaimPurpose::Unspecified => Vec::new(),
        }
    }

    /// A device logged in on this pod: its pending commands are proposed for delivery.
    pub fn session_up(&mut self, imei: &str, now: SystemTime) -> Vec<Action> {
        self.local.insert(imei.to_string());
        let ids = self.deliverable(now, |e| e.imei == imei);
        self.propose_deliveries(ids, now)
    }

    /// Open, unexpired commands whose entry passes `which`.
    fn deliverable(&self, now: SystemTime, which: impl Fn(&Entry) -> bool) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| {
                which(e)
                    && e.claim.is_none()
                    && e.proposed.is_none()
                    && e.command.is_some()
                    && e.deadline > now
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn propose_deliveries(&mut self, ids: Vec<String>, now: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.propose(&id, ClaimPurpose::Deliver, "", now));
        }
        out
    }

    pub fn session_down(&mut self, imei: &str) {
        self.local.remove(imei);
    }

    /// Proposes expiry for commands past their deadline and forgets settled ones. `jitter`
    /// spreads the pods' expiry proposals so usually only one is written.
    pub fn tick(&mut self, now: SystemTime, jitter: impl Fn(&str) -> Duration) -> Vec<Action> {
        self.entries
            .retain(|_, e| e.forget_at.is_none_or(|t| t > now) || e.claim.is_none());
        // A proposal that never came back through the log was lost: propose again.
        let stale = self.cfg.proposal_timeout;
        for e in self.entries.values_mut() {
            if e.proposed.is_some() && e.claim.is_none() && e.proposed_at + stale <= now {
                e.proposed = None;
            }
        }
        let ids = self.deliverable(now, |e| self.local.contains(&e.imei));
        let mut out = self.propose_deliveries(ids, now);
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(id, e)| {
                e.claim.is_none()
                    && e.proposed.is_none()
                    && e.command.is_some()
                    && e.deadline + jitter(id) <= now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            out.extend(self.propose(&id, ClaimPurpose::Expire, "", now));
        }
        out
    }

    /// The DELIVER claim this instance holds on `command_id` is given back (the session ended
    /// before the command was written).
    pub fn release(&self, c: &Command, now: SystemTime) -> CommandClaim {
        self.claim(
            c,
            ClaimPurpose::Release,
            "session ended before the write",
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str) -> LedgerConfig {
        LedgerConfig {
            gateway: name.into(),
            instance: format!("{name}-1"),
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(3600),
            max_entries: 100,
            remember: Duration::from_secs(600),
            proposal_timeout: Duration::from_secs(10),
        }
    }

    fn cmd(id: &str, imei: &str) -> Command {
        Command {
            command_id: id.into(),
            imei: imei.into(),
            body: Some(command::Body::Text("getinfo".into())),
            ..Default::default()
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn proposals(a: &[Action]) -> Vec<CommandClaim> {
        a.iter()
            .filter_map(|a| match a {
                Action::Propose(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    /// Feeds the same log to several pods, as the broker would.
    fn apply(pods: &mut [&mut Ledger], claim: &CommandClaim, now: SystemTime) -> Vec<Vec<Action>> {
        pods.iter_mut()
            .map(|p| p.on_claim(claim.clone(), now))
            .collect()
    }

    #[test]
    fn the_pod_with_the_session_claims_and_only_it_delivers() {
        let mut a = Ledger::new(cfg("a"));
        let mut b = Ledger::new(cfg("b"));
        assert!(b.session_up("1", t(0)).is_empty());
        assert!(a.on_command(cmd("c1", "1"), t(1)).is_empty());
        let pb = proposals(&b.on_command(cmd("c1", "1"), t(1)));
        assert_eq!(pb.len(), 1);
        assert_eq!(pb[0].purpose, ClaimPurpose::Deliver as i32);
        let out = apply(&mut [&mut a, &mut b], &pb[0], t(1));
        assert!(out[0].is_empty());
        assert_eq!(out[1], vec![Action::Deliver(cmd("c1", "1"))]);
        // Nobody expires a claimed command.
        assert!(a.tick(t(1000), |_| Duration::ZERO).is_empty());
        assert!(b.tick(t(1000), |_| Duration::ZERO).is_empty());
    }

    #[test]
    fn racing_claims_first_wins_everywhere() {
        let mut a = Ledger::new(cfg("a"));
        let mut b = Ledger::new(cfg("b"));
        a.session_up("1", t(0));
        b.session_up("1", t(0));
        let pa = proposals(&a.on_command(cmd("c1", "1"), t(1)));
        let pb = proposals(&b.on_command(cmd("c1", "1"), t(1)));
        // The log orders b's claim first.
        let first = apply(&mut [&mut a, &mut b], &pb[0], t(1));
        let second = apply(&mut [&mut a, &mut b], &pa[0], t(1));
        assert!(first[0].is_empty());
        assert_eq!(first[1].len(), 1);
        assert!(second.iter().all(Vec::is_empty), "later claims are ignored");
    }

    #[test]
    fn a_device_connecting_later_gets_its_pending_command() {
        let mut a = Ledger::new(cfg("a"));
        assert!(a.on_command(cmd("c1", "1"), t(0)).is_empty());
        let p = proposals(&a.session_up("1", t(10)));
        assert_eq!(p.len(), 1);
        assert_eq!(
            a.on_claim(p[0].clone(), t(10)),
            vec![Action::Deliver(cmd("c1", "1"))]
        );
    }

    #[test]
    fn past_its_ttl_a_command_expires_once() {
        let mut a = Ledger::new(cfg("a"));
        let mut b = Ledger::new(cfg("b"));
        let mut c = cmd("c1", "1");
        c.ttl_secs = 5;
        a.on_command(c.clone(), t(0));
        b.on_command(c.clone(), t(0));
        assert!(a.tick(t(4), |_| Duration::ZERO).is_empty());
        let pa = proposals(&a.tick(t(6), |_| Duration::ZERO));
        let pb = proposals(&b.tick(t(6), |_| Duration::ZERO));
        assert_eq!(pa[0].purpose, ClaimPurpose::Expire as i32);
        let first = apply(&mut [&mut a, &mut b], &pa[0], t(6));
        let second = apply(&mut [&mut a, &mut b], &pb[0], t(6));
        let published: Vec<_> = first
            .iter()
            .chain(second.iter())
            .flatten()
            .filter_map(|x| match x {
                Action::Publish(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(published.len(), 1, "exactly one EXPIRED result");
        assert_eq!(published[0].status, CommandStatus::Expired as i32);
        assert!(published[0].terminal);
        assert_eq!(published[0].gateway, "a");
        // A session showing up after expiry gets nothing.
        assert!(b.session_up("1", t(7)).is_empty());
    }

    #[test]
    fn invalid_commands_are_rejected_once_with_a_reason() {
        let mut a = Ledger::new(cfg("a"));
        let mut bad = cmd("c1", "12/ab");
        bad.body = None;
        let p = proposals(&a.on_command(bad.clone(), t(0)));
        assert_eq!(p[0].purpose, ClaimPurpose::Reject as i32);
        // The claim (which an MQTT pod publishes on `command-claims/<imei>`) carries the
        // safe key, not the topic-unsafe IMEI.
        assert_eq!(p[0].imei, crate::device_id::INVALID_KEY);
        let out = a.on_claim(p[0].clone(), t(0));
        let Action::Publish(r) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(r.status, CommandStatus::Rejected as i32);
        assert_eq!(r.imei, crate::device_id::INVALID_KEY);
        assert!(r.reason.contains("imei \"12/ab\""), "{}", r.reason);
        // Read again (a resend, or the log replayed): no second rejection.
        assert!(a.on_command(bad, t(1)).is_empty());
    }

    #[test]
    fn a_release_reopens_the_command_for_the_next_session() {
        let mut a = Ledger::new(cfg("a"));
        let mut b = Ledger::new(cfg("b"));
        a.session_up("1", t(0));
        let pa = proposals(&a.on_command(cmd("c1", "1"), t(1)));
        b.on_command(cmd("c1", "1"), t(1));
        apply(&mut [&mut a, &mut b], &pa[0], t(1));
        // The session on a ended before the write; the device is now on b.
        a.session_down("1");
        b.session_up("1", t(2));
        let rel = a.release(&cmd("c1", "1"), t(2));
        // A release from someone else is ignored.
        let mut forged = rel.clone();
        forged.instance = "b-1".into();
        forged.gateway = "b".into();
        assert!(apply(&mut [&mut a, &mut b], &forged, t(2))
            .iter()
            .all(Vec::is_empty));
        let out = apply(&mut [&mut a, &mut b], &rel, t(2));
        assert!(out[0].is_empty());
        let pb = proposals(&out[1]);
        assert_eq!(pb.len(), 1, "b proposes delivery on its session");
        let out = apply(&mut [&mut a, &mut b], &pb[0], t(2));
        assert_eq!(out[1], vec![Action::Deliver(cmd("c1", "1"))]);
    }

    #[test]
    fn a_restarted_pod_does_not_act_on_its_previous_instance_claims() {
        let mut old = Ledger::new(cfg("a"));
        old.session_up("1", t(0));
        let p = proposals(&old.on_command(cmd("c1", "1"), t(0)));
        let mut fresh_cfg = cfg("a");
        fresh_cfg.instance = "a-2".into();
        let mut fresh = Ledger::new(fresh_cfg);
        fresh.session_up("1", t(5));
        assert!(fresh.on_command(cmd("c1", "1"), t(5)).len() == 1);
        // Replaying the log: the old instance's claim came first and may have been written.
        assert!(fresh.on_claim(p[0].clone(), t(5)).is_empty());
        assert!(fresh.tick(t(10_000), |_| Duration::ZERO).is_empty());
    }

    #[test]
    fn a_claim_read_before_its_command_still_delivers_and_lost_proposals_are_redone() {
        let mut a = Ledger::new(cfg("a"));
        a.session_up("1", t(0));
        let p = proposals(&a.on_command(cmd("c1", "1"), t(0)));
        // Lost in transit: after the proposal timeout it is made again.
        assert!(a.tick(t(5), |_| Duration::ZERO).is_empty());
        let again = proposals(&a.tick(t(11), |_| Duration::ZERO));
        assert_eq!(again.len(), 1);
        let mut b = Ledger::new(cfg("b"));
        let mut mine = cfg("a");
        mine.instance = "a-1".into();
        assert!(b.on_claim(p[0].clone(), t(0)).is_empty());
        // On a itself: claim first, then the command (different topics on MQTT).
        let mut a2 = Ledger::new(mine);
        a2.session_up("1", t(0));
        assert!(a2.on_claim(p[0].clone(), t(0)).is_empty());
        assert_eq!(
            a2.on_command(cmd("c1", "1"), t(0)),
            vec![Action::Deliver(cmd("c1", "1"))]
        );
    }

    #[test]
    fn a_resent_command_id_is_not_processed_twice() {
        let mut a = Ledger::new(cfg("a"));
        a.session_up("1", t(0));
        assert_eq!(proposals(&a.on_command(cmd("c1", "1"), t(0))).len(), 1);
        assert!(a.on_command(cmd("c1", "1"), t(1)).is_empty());
    }
}
