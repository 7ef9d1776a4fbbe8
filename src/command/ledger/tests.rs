//! The ledger's rules, with several pods fed the same log in the same order (as the broker
//! does), a clock passed in, and pods that stop.

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
        lease: Duration::from_secs(60),
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

/// The proposals of `purpose` among `a`.
fn props(a: &[Action], purpose: ClaimPurpose) -> Vec<CommandClaim> {
    a.iter()
        .filter_map(|a| match a {
            Action::Propose(c) if c.purpose == purpose as i32 => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn published(a: &[Action]) -> Vec<CommandResult> {
    a.iter()
        .filter_map(|a| match a {
            Action::Publish(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn has(a: &[Action], want: &Action) -> bool {
    a.iter().any(|x| x == want)
}

/// Pods reading one log. `alive[i]` false: pod i stopped (reads and writes nothing).
struct Log {
    pods: Vec<Ledger>,
    alive: Vec<bool>,
}

impl Log {
    fn new(names: &[&str]) -> Log {
        Log {
            pods: names.iter().map(|n| Ledger::new(cfg(n))).collect(),
            alive: vec![true; names.len()],
        }
    }

    /// What every pod did with one entry of the log: live pods read it, stopped ones nothing.
    fn each_live(&mut self, read: impl Fn(&mut Ledger) -> Vec<Action>) -> Vec<Vec<Action>> {
        self.pods
            .iter_mut()
            .zip(&self.alive)
            .map(|(p, alive)| if *alive { read(p) } else { Vec::new() })
            .collect()
    }

    /// Appends `claim` to the log: every live pod reads it; returns what each did.
    fn apply(&mut self, claim: &CommandClaim, now: SystemTime) -> Vec<Vec<Action>> {
        self.each_live(|p| p.on_claim(claim.clone(), now))
    }

    fn command(&mut self, c: &Command, now: SystemTime) -> Vec<Vec<Action>> {
        self.each_live(|p| p.on_command(c.clone(), now))
    }

    /// Every live pod's clock ticks at `now`; the beats and session announcements they propose
    /// land in the log at once. Returns each pod's other actions.
    fn tick(&mut self, now: SystemTime) -> Vec<Vec<Action>> {
        let mut out = Vec::new();
        let mut log = Vec::new();
        for (p, alive) in self.pods.iter_mut().zip(&self.alive) {
            if !alive {
                out.push(Vec::new());
                continue;
            }
            let actions = p.tick(now, |_| Duration::ZERO);
            let (beats, rest): (Vec<_>, Vec<_>) = actions.into_iter().partition(|a| {
                matches!(a, Action::Propose(c) if matches!(
                    ClaimPurpose::try_from(c.purpose),
                    Ok(ClaimPurpose::Beat | ClaimPurpose::Logout)
                ))
            });
            log.extend(beats);
            out.push(rest);
        }
        for a in log {
            if let Action::Propose(c) = a {
                for (i, extra) in self.apply(&c, now).into_iter().enumerate() {
                    out[i].extend(extra);
                }
            }
        }
        out
    }

    /// Ticks every `step` from `from` to `to` (inclusive); returns each pod's actions, all
    /// ticks together.
    fn run(&mut self, from: u64, to: u64, step: u64) -> Vec<Vec<Action>> {
        let mut all = vec![Vec::new(); self.pods.len()];
        let mut s = from;
        while s <= to {
            for (i, a) in self.tick(t(s)).into_iter().enumerate() {
                all[i].extend(a);
            }
            s += step;
        }
        all
    }

    /// A session of `imei` on pod `i`, started at `now`; its LOGIN lands in the log.
    fn session_up(&mut self, i: usize, imei: &str, now: SystemTime) -> Vec<Action> {
        let actions = self.pods[i].session_up(imei, now, now);
        let (logins, rest): (Vec<_>, Vec<_>) = actions.into_iter().partition(
            |a| matches!(a, Action::Propose(c) if c.purpose == ClaimPurpose::Login as i32),
        );
        let mut rest = rest;
        for a in logins {
            if let Action::Propose(c) = a {
                rest.extend(self.apply(&c, now).swap_remove(i));
            }
        }
        rest
    }

    /// Pod `i` proposes DELIVER, the claim lands, and it holds the command in force.
    fn deliver(&mut self, i: usize, c: &Command, proposals: &[Action], now: SystemTime) {
        let p = props(proposals, ClaimPurpose::Deliver);
        assert_eq!(p.len(), 1, "one DELIVER proposal: {proposals:?}");
        let out = self.apply(&p[0], now);
        assert_eq!(out[i].first(), Some(&Action::Deliver(c.clone())), "{out:?}");
    }

    /// Pod `i`'s session announced the command; its WRITING lands; it may write.
    fn write(&mut self, i: usize, id: &str, now: SystemTime) {
        let w = props(&self.pods[i].ready(id, now), ClaimPurpose::Writing);
        let out = self.apply(&w[0], now);
        assert!(has(&out[i], &Action::Go(id.into())), "{out:?}");
    }
}

#[test]
fn the_pod_with_the_session_claims_and_only_it_delivers() {
    let mut log = Log::new(&["a", "b"]);
    assert!(props(&log.session_up(1, "1", t(0)), ClaimPurpose::Deliver).is_empty());
    let out = log.command(&cmd("c1", "1"), t(1));
    assert!(out[0].is_empty());
    let pb = props(&out[1], ClaimPurpose::Deliver);
    assert_eq!(pb.len(), 1);
    let out = log.apply(&pb[0], t(1));
    assert!(out[0].is_empty());
    assert_eq!(out[1][0], Action::Deliver(cmd("c1", "1")));
    // Nobody expires a claimed command.
    for p in &mut log.pods {
        assert!(props(&p.tick(t(1000), |_| Duration::ZERO), ClaimPurpose::Expire).is_empty());
    }
}

#[test]
fn racing_claims_first_wins_everywhere() {
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(0));
    // Both logged in at the same instant: neither session is newer.
    log.session_up(1, "1", t(0));
    let out = log.command(&cmd("c1", "1"), t(1));
    let (pa, pb) = (
        props(&out[0], ClaimPurpose::Deliver),
        props(&out[1], ClaimPurpose::Deliver),
    );
    // The log orders b's claim first.
    let first = log.apply(&pb[0], t(1));
    let second = log.apply(&pa[0], t(1));
    assert!(first[0].is_empty());
    assert_eq!(
        first[1].len(),
        2,
        "deliver, and retain its state: {:?}",
        first[1]
    );
    assert!(second.iter().all(Vec::is_empty), "later claims are ignored");
}

#[test]
fn a_device_connecting_later_gets_its_pending_command() {
    let mut log = Log::new(&["a"]);
    assert!(log.command(&cmd("c1", "1"), t(0))[0].is_empty());
    let up = log.session_up(0, "1", t(10));
    log.deliver(0, &cmd("c1", "1"), &up, t(10));
}

#[test]
fn past_its_ttl_a_command_expires_once() {
    let mut log = Log::new(&["a", "b"]);
    let mut c = cmd("c1", "1");
    c.ttl_secs = 5;
    log.command(&c, t(0));
    let ticks = log.tick(t(4));
    assert!(ticks
        .iter()
        .all(|a| props(a, ClaimPurpose::Expire).is_empty()));
    let ticks = log.tick(t(6));
    let pa = props(&ticks[0], ClaimPurpose::Expire);
    let pb = props(&ticks[1], ClaimPurpose::Expire);
    let first = log.apply(&pa[0], t(6));
    let second = log.apply(&pb[0], t(6));
    let results: Vec<_> = first
        .iter()
        .chain(&second)
        .flat_map(|a| published(a))
        .collect();
    assert_eq!(results.len(), 1, "exactly one EXPIRED result");
    assert_eq!(results[0].status, CommandStatus::Expired as i32);
    assert!(results[0].terminal);
    assert_eq!(results[0].gateway, "a");
    // A session showing up after expiry gets nothing.
    assert!(props(&log.session_up(1, "1", t(7)), ClaimPurpose::Deliver).is_empty());
    // Once its publication is confirmed and marked, the command is done everywhere.
    let p = props(&log.pods[0].published("c1", t(8)), ClaimPurpose::Published);
    log.apply(&p[0], t(8));
    assert!(!log.pods[0].owes_work());
    assert!(!log.pods[0].may_publish("c1"));
}

#[test]
fn invalid_commands_are_rejected_once_with_a_reason() {
    let mut a = Ledger::new(cfg("a"));
    let mut bad = cmd("c1", "12/ab");
    bad.body = None;
    let p = props(&a.on_command(bad.clone(), t(0)), ClaimPurpose::Reject);
    // The claim (which an MQTT pod publishes on `command-claims/<imei>`) carries the safe
    // key, not the topic-unsafe IMEI.
    assert_eq!(p[0].imei, crate::device_id::INVALID_KEY);
    let r = published(&a.on_claim(p[0].clone(), t(0)));
    assert_eq!(r[0].status, CommandStatus::Rejected as i32);
    assert_eq!(r[0].imei, crate::device_id::INVALID_KEY);
    assert!(r[0].reason.contains("imei \"12/ab\""), "{}", r[0].reason);
    // Read again (a resend, or the log replayed): no second rejection.
    assert!(a.on_command(bad, t(1)).is_empty());
    // A typed command missing its parameter is refused the same way.
    let mut typed = cmd("c2", "1");
    typed.body = None;
    typed.r#type = crate::proto::CommandType::SetReportInterval as i32;
    let p = props(&a.on_command(typed, t(2)), ClaimPurpose::Reject);
    assert!(
        p[0].reason.contains("report_interval_secs"),
        "{}",
        p[0].reason
    );
}

#[test]
fn nothing_is_written_before_the_writing_claim_and_the_result_waits_for_complete() {
    let mut log = Log::new(&["a", "b"]);
    let up = log.session_up(0, "1", t(0));
    assert!(props(&up, ClaimPurpose::Deliver).is_empty());
    let out = log.command(&cmd("c1", "1"), t(1));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(1));
    // The session announced it: WRITING is proposed, and only its return allows the write.
    let w = log.pods[0].ready("c1", t(2));
    let w = props(&w, ClaimPurpose::Writing);
    assert_eq!(w.len(), 1);
    let out = log.apply(&w[0], t(2));
    assert!(has(&out[0], &Action::Go("c1".into())));
    assert!(out[1].is_empty());
    // The device answered: the result is published only once COMPLETE is in force.
    let r = log.pods[0].result(&cmd("c1", "1"), CommandStatus::Responded, "", true, t(3));
    let done = log.pods[0].complete("c1", r.clone(), t(3));
    assert!(published(&done).is_empty());
    let c = props(&done, ClaimPurpose::Complete);
    let out = log.apply(&c[0], t(3));
    assert_eq!(published(&out[0]), vec![r.clone()]);
    assert!(published(&out[1]).is_empty(), "only the holder publishes");
    // The same COMPLETE read twice (proposed again) publishes nothing more.
    assert!(published(&log.apply(&c[0], t(4))[0]).is_empty());
    assert!(log.pods[0].owes_work(), "published but not yet marked");
    let p = props(&log.pods[0].published("c1", t(5)), ClaimPurpose::Published);
    log.apply(&p[0], t(5));
    assert!(!log.pods[0].owes_work());
}

#[test]
fn a_release_reopens_the_command_for_the_next_session() {
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(0));
    let out = log.command(&cmd("c1", "1"), t(1));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(1));
    // The session on a ended before the write; the device is now on b.
    log.pods[0].session_down("1", t(0), None, t(2));
    let up = log.session_up(1, "1", t(2));
    assert!(props(&up, ClaimPurpose::Deliver).is_empty(), "held by a");
    let rel = props(&log.pods[0].release("c1", t(2)), ClaimPurpose::Release);
    // A release from someone else is ignored.
    let mut forged = rel[0].clone();
    forged.instance = "b-1".into();
    forged.gateway = "b".into();
    assert!(log
        .apply(&forged, t(2))
        .iter()
        .all(|a| props(a, ClaimPurpose::Deliver).is_empty()));
    let out = log.apply(&rel[0], t(2));
    assert!(props(&out[0], ClaimPurpose::Deliver).is_empty());
    log.deliver(1, &cmd("c1", "1"), &out[1], t(2));
}

#[test]
fn a_claim_read_before_its_command_still_delivers_and_lost_proposals_are_redone() {
    let mut a = Ledger::new(cfg("a"));
    a.session_up("1", t(0), t(0));
    let p = props(&a.on_command(cmd("c1", "1"), t(0)), ClaimPurpose::Deliver);
    // Lost in transit: after the proposal timeout it is made again.
    assert!(props(&a.tick(t(5), |_| Duration::ZERO), ClaimPurpose::Deliver).is_empty());
    let again = props(&a.tick(t(11), |_| Duration::ZERO), ClaimPurpose::Deliver);
    assert_eq!(again.len(), 1);
    // On a fresh reader of the same instance: claim first, then the command (different topics
    // on MQTT).
    let mut a2 = Ledger::new(cfg("a"));
    a2.session_up("1", t(0), t(0));
    assert!(a2
        .on_claim(p[0].clone(), t(0))
        .iter()
        .all(|x| !matches!(x, Action::Deliver(_))));
    assert_eq!(
        a2.on_command(cmd("c1", "1"), t(0)),
        vec![Action::Deliver(cmd("c1", "1"))]
    );
}

#[test]
fn a_resent_command_id_is_not_processed_twice() {
    let mut a = Ledger::new(cfg("a"));
    a.session_up("1", t(0), t(0));
    assert_eq!(
        props(&a.on_command(cmd("c1", "1"), t(0)), ClaimPurpose::Deliver).len(),
        1
    );
    assert!(a.on_command(cmd("c1", "1"), t(1)).is_empty());
}

/// Pod a holds two commands of one device, the first written and awaiting its answer, the
/// second not yet written; then a stops (SIGKILL). The others settle both, each exactly once,
/// within the lease: the written one EXPIRED `holder lost`, the other delivered again.
#[test]
fn a_stopped_holder_is_settled_within_the_lease() {
    let mut log = Log::new(&["a", "b", "c"]);
    log.run(0, 20, 5);
    log.session_up(0, "1", t(20));
    for id in ["w", "u"] {
        let out = log.command(&cmd(id, "1"), t(21));
        log.deliver(0, &cmd(id, "1"), &out[0], t(21));
    }
    log.write(0, "w", t(22));
    log.alive[0] = false;
    let killed = 23;
    // b and c keep beating; a is silent. Nothing happens before half the lease.
    let early = log.run(killed, killed + 25, 1);
    assert!(
        early
            .iter()
            .all(|a| props(a, ClaimPurpose::Settle).is_empty()),
        "{early:?}"
    );
    // Then both propose SETTLE for each command; the log keeps the first of each.
    let mut settles = Vec::new();
    let mut s = killed + 26;
    while settles.len() < 4 && s < killed + 60 {
        for a in log.tick(t(s)) {
            settles.extend(props(&a, ClaimPurpose::Settle));
        }
        s += 1;
    }
    assert!(s - killed <= 60, "settled within the lease");
    assert_eq!(settles.len(), 4, "b and c, both commands: {settles:?}");
    let mut results = Vec::new();
    let mut reopened = 0;
    for c in &settles {
        let out = log.apply(c, t(s));
        results.extend(out.iter().flat_map(|a| published(a)));
        reopened += out
            .iter()
            .flatten()
            .filter(|a| **a == Action::Settled("redelivered"))
            .count();
    }
    assert_eq!(
        results.len(),
        1,
        "one terminal result for the written command: {results:?}"
    );
    assert_eq!(results[0].command_id, "w");
    assert_eq!(results[0].status, CommandStatus::Expired as i32);
    assert!(
        results[0].reason.starts_with("holder lost"),
        "{}",
        results[0].reason
    );
    assert!(results[0].sent_at.is_some());
    assert_eq!(reopened, 1, "the unwritten one is open again");
    // The device reconnects to b: the unwritten command is delivered there.
    let up = log.session_up(1, "1", t(s + 1));
    log.deliver(1, &cmd("u", "1"), &up, t(s + 1));
}

/// A holder that was only slow (its beats stopped reaching the log) finds its command settled
/// when it comes back: its own COMPLETE is not in force and it publishes nothing.
#[test]
fn a_holder_taken_for_lost_lets_go_and_publishes_nothing() {
    let mut log = Log::new(&["a", "b"]);
    log.run(0, 10, 5);
    log.session_up(0, "1", t(10));
    let out = log.command(&cmd("c1", "1"), t(10));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(10));
    log.write(0, "c1", t(11));
    // a's beats stop reaching the log (it is cut off), b's go on.
    log.alive[0] = false;
    let mut settle = Vec::new();
    for s in 12..80 {
        for a in log.tick(t(s)) {
            settle.extend(props(&a, ClaimPurpose::Settle));
        }
        if !settle.is_empty() {
            break;
        }
    }
    // a comes back: it reads b's SETTLE, then its own late COMPLETE.
    log.alive[0] = true;
    let out = log.apply(&settle[0], t(80));
    assert!(has(&out[0], &Action::Withdraw("c1".into())), "{:?}", out[0]);
    let theirs = published(&out[1]);
    assert_eq!(theirs.len(), 1);
    let r = log.pods[0].result(&cmd("c1", "1"), CommandStatus::Responded, "", true, t(81));
    let late = log.pods[0].complete("c1", r, t(81));
    assert!(
        has(&late, &Action::Withdraw("c1".into())),
        "not held any more: {late:?}"
    );
    assert!(props(&late, ClaimPurpose::Complete).is_empty());
}

/// A COMPLETE in force whose publisher stopped before its PUBLISHED came: another pod
/// publishes the same result.
#[test]
fn a_result_decided_but_not_confirmed_is_published_by_another_pod() {
    let mut log = Log::new(&["a", "b"]);
    log.run(0, 10, 5);
    log.session_up(0, "1", t(10));
    let out = log.command(&cmd("c1", "1"), t(10));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(10));
    log.write(0, "c1", t(11));
    let mut r = log.pods[0].result(&cmd("c1", "1"), CommandStatus::Responded, "", true, t(12));
    r.response = Some(crate::proto::command_result::Response::ResponseText(
        "ok".into(),
    ));
    let c = props(
        &log.pods[0].complete("c1", r.clone(), t(12)),
        ClaimPurpose::Complete,
    );
    assert_eq!(published(&log.apply(&c[0], t(12))[0]), vec![r.clone()]);
    log.alive[0] = false;
    let mut settles = Vec::new();
    for s in 13..80 {
        for a in log.tick(t(s)) {
            settles.extend(props(&a, ClaimPurpose::Settle));
        }
        if !settles.is_empty() {
            break;
        }
    }
    let out = log.apply(&settles[0], t(80));
    assert_eq!(
        published(&out[1]),
        vec![r],
        "the same result, published by b"
    );
}

/// While the log carries none of this pod's own beats (a stalled broker), it judges nobody;
/// after the log comes back it waits half a lease again, so pods that beat meanwhile are
/// seen alive.
#[test]
fn nobody_is_judged_while_the_log_is_stalled() {
    let mut log = Log::new(&["a", "b"]);
    log.run(0, 10, 5);
    log.session_up(0, "1", t(10));
    let out = log.command(&cmd("c1", "1"), t(10));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(10));
    log.write(0, "c1", t(11));
    // 90 s of stall: b ticks, but nothing it proposes comes back (its beats included).
    for s in 12..102 {
        let a = log.pods[1].tick(t(s), |_| Duration::ZERO);
        assert!(
            props(&a, ClaimPurpose::Settle).is_empty(),
            "judged during the stall at {s}"
        );
    }
    // The log flows again: both pods' beats come back; a is alive.
    let after = log.run(102, 200, 5);
    assert!(after
        .iter()
        .all(|a| props(a, ClaimPurpose::Settle).is_empty()));
}

/// Two sessions of one device on two pods: the pod with the older one does not claim, and its
/// claims made before it knew of the newer session are not in force.
#[test]
fn the_newest_session_gets_the_command() {
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(0));
    log.session_up(1, "1", t(5));
    let out = log.command(&cmd("c1", "1"), t(6));
    assert!(
        props(&out[0], ClaimPurpose::Deliver).is_empty(),
        "a's session is older"
    );
    log.deliver(1, &cmd("c1", "1"), &out[1], t(6));

    // a claimed before it read b's login: its DELIVER lands after the login, not in force.
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(0));
    let out = log.command(&cmd("c2", "1"), t(1));
    let pa = props(&out[0], ClaimPurpose::Deliver);
    let up = log.session_up(1, "1", t(2));
    let out = log.apply(&pa[0], t(3));
    assert!(out
        .iter()
        .all(|a| !a.iter().any(|x| matches!(x, Action::Deliver(_)))));
    log.deliver(1, &cmd("c2", "1"), &up, t(3));

    // a won before b's login but had not written: it gives the command back, and its WRITING
    // would not be in force anyway.
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(0));
    let out = log.command(&cmd("c3", "1"), t(1));
    log.deliver(0, &cmd("c3", "1"), &out[0], t(1));
    let w = props(&log.pods[0].ready("c3", t(2)), ClaimPurpose::Writing);
    log.session_up(1, "1", t(3));
    let out = log.apply(&w[0], t(4));
    assert!(has(&out[0], &Action::Withdraw("c3".into())), "{:?}", out[0]);
    log.deliver(1, &cmd("c3", "1"), &out[1], t(4));
}

/// The sessions of a pod that stopped are announced ended by the others, so an older session
/// of the device elsewhere takes its commands again.
#[test]
fn a_lost_pods_sessions_are_logged_out_for_it() {
    let mut log = Log::new(&["a", "b"]);
    log.run(0, 10, 5);
    log.session_up(0, "1", t(10));
    log.session_up(1, "1", t(11));
    let out = log.command(&cmd("c1", "1"), t(12));
    let dead = props(&out[1], ClaimPurpose::Deliver);
    log.alive[1] = false;
    // b's claim never lands (b stopped); a's session is older: it does not claim...
    assert!(dead.len() == 1 && props(&out[0], ClaimPurpose::Deliver).is_empty());
    // ...until b is lost and a announces b's session ended.
    let after = log.run(13, 60, 1);
    let p = props(&after[0], ClaimPurpose::Deliver);
    assert!(!p.is_empty(), "{after:?}");
    let out = log.apply(&p[0], t(60));
    assert_eq!(out[0][0], Action::Deliver(cmd("c1", "1")));
}

#[test]
fn every_pod_counts_the_devices_announced_by_all() {
    let mut log = Log::new(&["a", "b"]);
    log.session_up(0, "1", t(10));
    log.session_up(1, "2", t(10));
    // A second live session of device 1, on the other pod: still one device.
    log.session_up(1, "1", t(11));
    let counts = |log: &Log| [0, 1].map(|i| log.pods[i].announced_devices());
    assert_eq!(counts(&log), [2, 2]);
    // Device 2's session ends on b; its LOGOUT lands.
    for a in log.pods[1].session_down("2", t(10), None, t(12)) {
        if let Action::Propose(c) = a {
            log.apply(&c, t(12));
        }
    }
    assert_eq!(counts(&log), [1, 1]);
}

#[test]
fn a_draining_pod_takes_no_new_work_and_reports_what_it_owes() {
    let mut log = Log::new(&["a"]);
    log.session_up(0, "1", t(0));
    let out = log.command(&cmd("c1", "1"), t(1));
    log.deliver(0, &cmd("c1", "1"), &out[0], t(1));
    log.pods[0].set_draining();
    assert!(log.pods[0].owes_work(), "it holds c1");
    assert!(props(
        &log.command(&cmd("c2", "1"), t(2))[0],
        ClaimPurpose::Deliver
    )
    .is_empty());
    let mut late = cmd("c3", "1");
    late.ttl_secs = 1;
    log.command(&late, t(2));
    assert!(props(&log.tick(t(100))[0], ClaimPurpose::Expire).is_empty());
    // Its session gave c1 back: released, and nothing is owed once the release landed.
    let rel = props(&log.pods[0].release("c1", t(3)), ClaimPurpose::Release);
    log.apply(&rel[0], t(3));
    assert!(!log.pods[0].owes_work());
}

/// A restarted pod (same name, new instance) replays its previous life's claims: those
/// commands are settled, since the old instance never beats again.
#[test]
fn a_restarted_pod_settles_its_previous_instance() {
    let mut old = Ledger::new(cfg("a"));
    old.session_up("1", t(0), t(0));
    let p = props(&old.on_command(cmd("c1", "1"), t(0)), ClaimPurpose::Deliver);
    let mut fresh_cfg = cfg("a");
    fresh_cfg.instance = "a-2".into();
    let mut log = Log {
        pods: vec![Ledger::new(fresh_cfg)],
        alive: vec![true],
    };
    log.command(&cmd("c1", "1"), t(5));
    // The log replayed: the old instance's DELIVER came first (it may have been written? no
    // WRITING followed, so it was not).
    assert!(log.apply(&p[0], t(5))[0].is_empty());
    let out = log.run(5, 60, 1);
    assert!(
        out[0].contains(&Action::Settled("redelivered"))
            || !props(&out[0], ClaimPurpose::Settle).is_empty(),
        "{out:?}"
    );
}

/// Commands queued for an offline device are proposed in the order they were read when it logs
/// in, up to the per-device cap (the log keeps that order for the session).
#[test]
fn a_device_gets_its_queued_commands_oldest_first() {
    let mut log = Log::new(&["a"]);
    let ids: Vec<String> = (0..MAX_HELD_PER_DEVICE + 4)
        .map(|i| format!("c{i:02}"))
        .collect();
    for id in &ids {
        assert!(log.command(&cmd(id, "1"), t(0))[0].is_empty());
    }
    let up = log.session_up(0, "1", t(10));
    let proposed: Vec<String> = props(&up, ClaimPurpose::Deliver)
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(proposed, ids[..MAX_HELD_PER_DEVICE]);
    // The cap holds on the next ticks too: the rest wait for room.
    let later = log.run(11, 12, 1);
    assert!(
        props(&later[0], ClaimPurpose::Deliver).is_empty(),
        "{later:?}"
    );
    for c in props(&up, ClaimPurpose::Deliver) {
        log.apply(&c, t(12));
    }
    // The oldest is written and answered: as its COMPLETE lands, the next waiting one is
    // proposed at once, not at the next sweep.
    log.write(0, &ids[0], t(13));
    let r = log.pods[0].result(
        &cmd(&ids[0], "1"),
        CommandStatus::Responded,
        "",
        true,
        t(13),
    );
    let done = log.pods[0].complete(&ids[0], r, t(13));
    let out = log.apply(&props(&done, ClaimPurpose::Complete)[0], t(13));
    let next: Vec<String> = props(&out[0], ClaimPurpose::Deliver)
        .into_iter()
        .map(|c| c.command_id)
        .collect();
    assert_eq!(next, [ids[MAX_HELD_PER_DEVICE].clone()]);
}

/// Every pod holds every pending and recently done command of the fleet (up to `max_entries`):
/// the rare parts of an entry (a proposal in flight, a decided result) are boxed. Inline they
/// made an entry 896 bytes, ~1.7 KB per command in the map (`LEDGER_MEMORY=1 cargo bench
/// --bench ledger`, docs/load-runs.md).
#[test]
fn an_entry_stays_small() {
    let size = std::mem::size_of::<super::Entry>();
    assert!(size <= 320, "Entry is {size} bytes");
}
