//! What the dispatcher and the sessions say to each other: one module both import, so neither
//! imports the other.
//!
//! Sessions reach the dispatcher through [`Commands`] (bounded; a full queue makes the session
//! wait, nothing is dropped). The dispatcher reaches a session through its [`SessionSender`]
//! (bounded; it never waits on a session: it sends at most a known number of messages per
//! command it handed over, under the channel's capacity).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::task::Poll;

use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use tracing::debug;

use crate::metrics as m;
use crate::proto::{command_result, Command};

/// Messages to the dispatcher.
#[derive(Debug)]
pub enum ToDispatcher {
    /// A device identified itself on this pod at `started`; commands for it go to `tx`.
    Up {
        imei: String,
        session: u64,
        started: SystemTime,
        tx: SessionSender,
    },
    /// That session ended.
    Down { imei: String, session: u64 },
    /// What a session did with a command it was handed.
    Update { session: u64, update: Update },
}

/// What happened to a command in a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Encoded and next in line: the session writes it once told [`SessionMsg::Go`].
    Ready { command_id: String },
    /// Written to the device; `awaiting_reply` when the protocol's devices answer.
    Written {
        command_id: String,
        awaiting_reply: bool,
    },
    /// The device answered.
    Replied {
        command_id: String,
        response: command_result::Response,
    },
    /// Written, and the device refused it.
    Refused { command_id: String, reason: String },
    /// Written, but no answer will be matched: the reason says why (the reply timeout, the
    /// session ended, the gateway drained).
    NoReply { command_id: String, reason: String },
    /// The protocol cannot carry it (never written).
    Rejected { command_id: String, reason: String },
    /// Given back unwritten (the session ended, its queue was full, a newer session took over).
    NotWritten { command_id: String },
}

impl Update {
    pub fn command_id(&self) -> &str {
        match self {
            Update::Ready { command_id }
            | Update::Written { command_id, .. }
            | Update::Replied { command_id, .. }
            | Update::Refused { command_id, .. }
            | Update::NoReply { command_id, .. }
            | Update::Rejected { command_id, .. }
            | Update::NotWritten { command_id } => command_id,
        }
    }

    /// A written command got no answer within `after` (the reply timeout).
    pub fn timed_out(command_id: String, after: Duration) -> Update {
        Update::NoReply {
            command_id,
            reason: format!(
                "written, but the device did not answer within {}s",
                after.as_secs()
            ),
        }
    }
}

/// Messages to a session. Travel boxed, so a session's queue holds pointers.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionMsg {
    /// A command this pod won (its DELIVER claim is in force): queue it.
    Deliver(Command),
    /// The WRITING claim on this command is in force: write it.
    Go(String),
    /// Do not write this command (another pod or a newer session settles it); forget it
    /// without an update.
    Withdraw(String),
    /// A newer session of the same device took over on this pod: give back every command not
    /// yet written.
    Superseded,
}

/// Messages a session's channel holds at most. The dispatcher hands a session at most
/// [`super::ledger::MAX_HELD_PER_DEVICE`] commands and sends at most two messages per command
/// (deliver, then go or withdraw) plus one `Superseded`, so its sends never find it full.
pub const SESSION_CHANNEL: usize = 2 * super::ledger::MAX_HELD_PER_DEVICE + 4;

/// The dispatcher's channel to one session: a bounded queue with one sender and one receiver.
/// Every command-taking session holds one for its whole life, so it is one small allocation
/// and its queue only allocates while messages wait (a tokio `mpsc` channel, cache-padded and
/// with its first block of slots allocated up front, costs several times more per idle
/// session; docs/load-runs.md, memory per session).
struct Mailbox {
    queue: std::sync::Mutex<std::collections::VecDeque<Box<SessionMsg>>>,
    /// Set when the sender is gone: the receiver drains what is queued, then sees the end.
    sender_gone: AtomicBool,
    /// Set when the receiver is gone: sends fail.
    receiver_gone: AtomicBool,
    /// The receiver's waker while it waits.
    wake: AtomicWaker,
}

impl Mailbox {
    fn queue(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Box<SessionMsg>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The dispatcher's end of a session's channel.
pub struct SessionSender(Arc<Mailbox>);

/// The session's end of its channel.
pub struct SessionReceiver(Arc<Mailbox>);

impl std::fmt::Debug for SessionSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSender")
            .field("queued", &self.0.queue().len())
            .finish()
    }
}

impl std::fmt::Debug for SessionReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionReceiver")
            .field("queued", &self.0.queue().len())
            .finish()
    }
}

impl SessionSender {
    /// Queues `msg` without waiting; gives it back when the queue is full or the session is
    /// gone.
    pub fn try_send(&self, msg: Box<SessionMsg>) -> Result<(), Box<SessionMsg>> {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return Err(msg);
        }
        {
            let mut q = self.0.queue();
            if q.len() >= SESSION_CHANNEL {
                return Err(msg);
            }
            q.push_back(msg);
        }
        self.0.wake.wake();
        Ok(())
    }
}

impl Drop for SessionSender {
    fn drop(&mut self) {
        self.0.sender_gone.store(true, Ordering::Release);
        self.0.wake.wake();
    }
}

impl SessionReceiver {
    /// The next message; `None` once the sender is gone and the queue is empty. A small
    /// future: it is part of every idle session's wait.
    pub fn recv(&mut self) -> impl std::future::Future<Output = Option<Box<SessionMsg>>> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(msg) = self.take() {
                return Poll::Ready(msg);
            }
            self.0.wake.register(cx.waker());
            // Again: a message or the sender's end may have come before the registration.
            match self.take() {
                Some(msg) => Poll::Ready(msg),
                None => Poll::Pending,
            }
        })
    }

    /// `Some(Some(msg))`: a message; `Some(None)`: the end (the sender is gone and nothing is
    /// queued); `None`: nothing yet.
    fn take(&self) -> Option<Option<Box<SessionMsg>>> {
        // Read before the queue: a message queued before the sender went is still delivered.
        let gone = self.0.sender_gone.load(Ordering::Acquire);
        let mut q = self.0.queue();
        match q.pop_front() {
            Some(msg) => {
                if q.is_empty() {
                    // A session holds no queue between commands.
                    *q = std::collections::VecDeque::new();
                }
                Some(Some(msg))
            }
            None if gone => Some(None),
            None => None,
        }
    }
}

impl Drop for SessionReceiver {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        self.0.queue().clear();
    }
}

/// A channel for a session.
pub fn session_channel() -> (SessionSender, SessionReceiver) {
    let mailbox = Arc::new(Mailbox {
        queue: std::sync::Mutex::new(std::collections::VecDeque::new()),
        sender_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        wake: AtomicWaker::new(),
    });
    (SessionSender(mailbox.clone()), SessionReceiver(mailbox))
}

/// The sessions' handle on the dispatcher. Cheap to clone. Sends wait while the dispatcher's
/// queue is full (the dispatcher never waits on the broker, so the wait is short): an update is
/// never dropped for lack of room.
#[derive(Clone, Debug)]
pub struct Commands {
    tx: mpsc::Sender<ToDispatcher>,
}

impl Commands {
    /// A handle whose messages go to `rx` (the dispatcher, or a test of the session side).
    pub fn channel(capacity: usize) -> (Commands, mpsc::Receiver<ToDispatcher>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Commands { tx }, rx)
    }

    pub async fn session_up(
        &self,
        imei: &str,
        session: u64,
        started: SystemTime,
    ) -> Option<SessionReceiver> {
        let (tx, rx) = session_channel();
        let up = ToDispatcher::Up {
            imei: imei.into(),
            session,
            started,
            tx,
        };
        self.send(up).await.then_some(rx)
    }

    pub async fn session_down(&self, imei: &str, session: u64) {
        self.send(ToDispatcher::Down {
            imei: imei.into(),
            session,
        })
        .await;
    }

    pub async fn update(&self, session: u64, update: Update) {
        self.send(ToDispatcher::Update { session, update }).await;
    }

    /// Sends every update in order.
    pub async fn updates(&self, session: u64, updates: Vec<Update>) {
        for u in updates {
            self.update(session, u).await;
        }
    }

    /// False when the dispatcher is gone (the process is past its drain): the message is lost
    /// and counted, which the tests assert never happens.
    async fn send(&self, m: ToDispatcher) -> bool {
        match self.tx.send(m).await {
            Ok(()) => true,
            Err(e) => {
                metrics::counter!(m::COMMAND_DROPS, "what" => "update").increment(1);
                debug!(message = ?e.0, "command dispatcher gone; message dropped");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_channel_delivers_in_order_then_ends_with_its_sender() {
        let (tx, mut rx) = session_channel();
        tx.try_send(Box::new(SessionMsg::Go("a".into()))).unwrap();
        tx.try_send(Box::new(SessionMsg::Withdraw("b".into())))
            .unwrap();
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(m) = rx.recv().await {
                got.push(*m);
            }
            got
        });
        tokio::task::yield_now().await;
        tx.try_send(Box::new(SessionMsg::Superseded)).unwrap();
        drop(tx);
        assert_eq!(
            waiter.await.unwrap(),
            vec![
                SessionMsg::Go("a".into()),
                SessionMsg::Withdraw("b".into()),
                SessionMsg::Superseded
            ]
        );
    }

    #[test]
    fn a_session_channel_refuses_when_full_or_when_the_session_is_gone() {
        let (tx, rx) = session_channel();
        for _ in 0..SESSION_CHANNEL {
            tx.try_send(Box::new(SessionMsg::Superseded)).unwrap();
        }
        assert!(tx.try_send(Box::new(SessionMsg::Superseded)).is_err());
        drop(rx);
        let (tx, rx) = session_channel();
        drop(rx);
        assert!(tx.try_send(Box::new(SessionMsg::Superseded)).is_err());
    }
}
