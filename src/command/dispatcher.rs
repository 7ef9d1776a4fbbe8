//! The dispatcher task: runs the [`Ledger`] against the bus, the local sessions and the
//! clock, hands won commands to sessions and publishes results through the sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::bus::{ClaimWriter, Entry};
use super::ledger::{Action, Ledger, LedgerConfig};
use super::session::{CommandSender, SessionCommand, Update};
use crate::event::timestamp;
use crate::metrics as m;
use crate::proto::{command_result, Command, CommandResult, CommandStatus, Protocol};
use crate::sink::{OutMessage, Publisher, Stream};

/// Messages to the dispatcher.
#[derive(Debug)]
pub enum ToDispatcher {
    /// A device logged in on this pod; commands for it go to `tx`.
    Up {
        imei: String,
        session: u64,
        tx: CommandSender,
    },
    /// That session ended.
    Down { imei: String, session: u64 },
    /// What a session did with a command.
    Update(Update),
}

/// The sessions' handle on the dispatcher. Cheap to clone; sends never block a session.
#[derive(Clone, Debug)]
pub struct Commands {
    tx: mpsc::Sender<ToDispatcher>,
}

impl Commands {
    /// A handle whose messages go to `rx` (tests of the session side).
    pub fn channel(capacity: usize) -> (Commands, mpsc::Receiver<ToDispatcher>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Commands { tx }, rx)
    }

    pub fn session_up(&self, imei: &str, session: u64, tx: CommandSender) {
        self.send(ToDispatcher::Up {
            imei: imei.into(),
            session,
            tx,
        });
    }

    pub fn session_down(&self, imei: &str, session: u64) {
        self.send(ToDispatcher::Down {
            imei: imei.into(),
            session,
        });
    }

    pub fn update(&self, u: Update) {
        self.send(ToDispatcher::Update(u));
    }

    fn send(&self, m: ToDispatcher) {
        if let Err(e) = self.tx.try_send(m) {
            warn!(error = %e, "command dispatcher is behind; message dropped");
        }
    }
}

struct Local {
    session: u64,
    tx: CommandSender,
}

/// What the dispatcher remembers of a command a local session holds.
struct Held {
    command: Command,
    sent_at: Option<SystemTime>,
}

/// Starts the dispatcher; returns the sessions' handle.
pub fn start(
    cfg: LedgerConfig,
    writer: Arc<dyn ClaimWriter>,
    entries: mpsc::Receiver<Entry>,
    publisher: Arc<Publisher>,
    shutdown: CancellationToken,
) -> (Commands, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(64 * 1024);
    let d = Dispatcher {
        ledger: Ledger::new(cfg),
        writer,
        publisher,
        local: HashMap::new(),
        held: HashMap::new(),
        commands: Commands { tx: tx.clone() },
    };
    let handle = tokio::spawn(d.run(entries, rx, shutdown));
    (Commands { tx }, handle)
}

struct Dispatcher {
    ledger: Ledger,
    writer: Arc<dyn ClaimWriter>,
    publisher: Arc<Publisher>,
    local: HashMap<String, Local>,
    held: HashMap<String, Held>,
    commands: Commands,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut entries: mpsc::Receiver<Entry>,
        mut rx: mpsc::Receiver<ToDispatcher>,
        shutdown: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let instance = self.ledger_instance();
        loop {
            let actions = tokio::select! {
                _ = shutdown.cancelled() => break,
                e = entries.recv() => match e {
                    None => break,
                    Some(Entry::Command(c)) => {
                        metrics::counter!(m::COMMANDS, "status" => "received").increment(1);
                        self.ledger.on_command(c, SystemTime::now())
                    }
                    Some(Entry::Rejected(c, reason)) => {
                        metrics::counter!(m::COMMANDS, "status" => "received").increment(1);
                        warn!(command_id = %c.command_id, imei = %c.imei, %reason, "command refused");
                        self.ledger.on_rejected(c, &reason, SystemTime::now())
                    }
                    Some(Entry::Claim(c)) => self.ledger.on_claim(c, SystemTime::now()),
                    Some(Entry::Invalid(reason)) => {
                        metrics::counter!(m::COMMANDS, "status" => "unreadable").increment(1);
                        warn!(%reason, "unreadable command ignored");
                        Vec::new()
                    }
                },
                m = rx.recv() => match m {
                    None => break,
                    Some(m) => self.on_message(m).await,
                },
                _ = tick.tick() => {
                    let now = SystemTime::now();
                    self.ledger.tick(now, |id| jitter(&instance, id))
                }
            };
            self.act(actions).await;
        }
        debug!("command dispatcher stopped");
    }

    fn ledger_instance(&self) -> String {
        self.ledger.instance().to_string()
    }

    async fn on_message(&mut self, m: ToDispatcher) -> Vec<Action> {
        let now = SystemTime::now();
        match m {
            ToDispatcher::Up { imei, session, tx } => {
                self.local.insert(imei.clone(), Local { session, tx });
                self.ledger.session_up(&imei, now)
            }
            ToDispatcher::Down { imei, session } => {
                if self.local.get(&imei).is_some_and(|l| l.session == session) {
                    self.local.remove(&imei);
                    self.ledger.session_down(&imei);
                }
                Vec::new()
            }
            ToDispatcher::Update(u) => {
                self.on_update(u, now).await;
                Vec::new()
            }
        }
    }

    async fn on_update(&mut self, u: Update, now: SystemTime) {
        match u {
            Update::Written {
                command_id,
                awaiting_reply,
            } => {
                let Some(h) = self.held.get_mut(&command_id) else {
                    return;
                };
                h.sent_at = Some(now);
                let mut r =
                    self.ledger
                        .result(&h.command, CommandStatus::Sent, "", !awaiting_reply, now);
                r.sent_at = Some(timestamp(now));
                if !awaiting_reply {
                    self.held.remove(&command_id);
                }
                self.publish(r).await;
            }
            Update::Replied {
                command_id,
                response,
            } => {
                let Some(h) = self.held.remove(&command_id) else {
                    return;
                };
                let mut r = self
                    .ledger
                    .result(&h.command, CommandStatus::Responded, "", true, now);
                r.sent_at = h.sent_at.map(timestamp);
                r.response = Some(response);
                self.publish(r).await;
            }
            Update::NoReply { command_id, after } => {
                let Some(h) = self.held.remove(&command_id) else {
                    return;
                };
                let mut r = self.ledger.result(
                    &h.command,
                    CommandStatus::Expired,
                    &format!("written, but the device did not answer within {after:?}"),
                    true,
                    now,
                );
                r.sent_at = h.sent_at.map(timestamp);
                self.publish(r).await;
            }
            Update::Rejected { command_id, reason } => {
                let Some(h) = self.held.remove(&command_id) else {
                    return;
                };
                let r = self
                    .ledger
                    .result(&h.command, CommandStatus::Rejected, &reason, true, now);
                self.publish(r).await;
            }
            Update::Refused { command_id, reason } => {
                let Some(h) = self.held.remove(&command_id) else {
                    return;
                };
                let mut r =
                    self.ledger
                        .result(&h.command, CommandStatus::Rejected, &reason, true, now);
                r.sent_at = h.sent_at.map(timestamp);
                self.publish(r).await;
            }
            Update::NotWritten { command_id } => {
                // The session ended before the write: give the claim back so the next session
                // (here or on another pod) can take it.
                if let Some(h) = self.held.remove(&command_id) {
                    let claim = self.ledger.release(&h.command, now);
                    self.writer.propose(claim);
                }
            }
        }
    }

    async fn act(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Propose(claim) => {
                    debug!(command_id = %claim.command_id, purpose = claim.purpose, "proposing claim");
                    self.writer.propose(claim);
                }
                Action::Publish(r) => self.publish(r).await,
                Action::Deliver(c) => self.deliver(c).await,
            }
        }
    }

    async fn deliver(&mut self, c: Command) {
        let now = SystemTime::now();
        let id = c.command_id.clone();
        let Some(local) = self.local.get(&c.imei) else {
            // The session ended between the proposal and the claim coming back.
            let claim = self.ledger.release(&c, now);
            self.writer.propose(claim);
            return;
        };
        let sc = SessionCommand {
            command: c.clone(),
            updates: self.commands.clone(),
        };
        match local.tx.try_send(Box::new(sc)) {
            Ok(()) => {
                info!(command_id = %id, imei = %c.imei, "command handed to the session");
                self.held.insert(
                    id,
                    Held {
                        command: c,
                        sent_at: None,
                    },
                );
            }
            Err(_) => {
                let claim = self.ledger.release(&c, now);
                self.writer.propose(claim);
            }
        }
    }

    /// Publishes a result, retrying a failed delivery a few times (results are small and
    /// rare; a lost one is worse than a slow one).
    async fn publish(&self, r: CommandResult) {
        let status = CommandStatus::try_from(r.status)
            .unwrap_or(CommandStatus::Unspecified)
            .as_str_name()
            .trim_start_matches("COMMAND_STATUS_")
            .to_ascii_lowercase();
        metrics::counter!(m::COMMANDS, "status" => status).increment(1);
        let payload = self.publisher.format().encode_result(&r);
        let msg = OutMessage {
            stream: Stream::CommandResults,
            key: r.imei.as_str().into(),
            payload,
            protocol: Protocol::Unspecified,
        };
        for attempt in 0..5 {
            match self.publisher.send(Arc::from([msg.clone()])).await {
                Ok(()) => return,
                Err(e) => {
                    warn!(command_id = %r.command_id, attempt, error = %e, "command result not delivered; retrying");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
            }
        }
        warn!(command_id = %r.command_id, "command result lost after retries");
    }
}

/// Up to 2 s, different per pod and command, so pods rarely race to expire the same command.
fn jitter(instance: &str, command_id: &str) -> Duration {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{instance}/{command_id}").as_bytes());
    Duration::from_millis(h % 2000)
}

/// Shorthand used by sessions for text responses.
pub fn text_response(t: String) -> command_result::Response {
    command_result::Response::ResponseText(t)
}
