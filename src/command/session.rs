//! The session's side of commands, sans IO: a small queue, the commands written and awaiting
//! an answer, matching answers (in order for Teltonika Codec 12, by server flag for GT06), and
//! the reply timeout. The TCP session loop feeds it and writes what it returns.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dispatcher::Commands;
use crate::proto::command_result;
use crate::protocol::{AnswerOutcome, CommandAnswer, CommandRequest, ProtocolSession};

/// The dispatcher's channel to a session. Commands travel boxed: a channel allocates its first
/// block of slots up front, and every logged-in session has one, so its slots stay pointer-sized.
pub type CommandSender = tokio::sync::mpsc::Sender<Box<SessionCommand>>;
pub type CommandReceiver = tokio::sync::mpsc::Receiver<Box<SessionCommand>>;

/// A command won by this pod, for this session.
#[derive(Debug)]
pub struct SessionCommand {
    pub command: crate::proto::Command,
    pub updates: Commands,
}

/// What happened to a command in a session.
#[derive(Debug)]
pub enum Update {
    /// Written to the socket; `awaiting_reply` when the protocol's devices answer.
    Written {
        command_id: String,
        awaiting_reply: bool,
    },
    Replied {
        command_id: String,
        response: command_result::Response,
    },
    /// Written, and the device refused it.
    Refused { command_id: String, reason: String },
    /// Written, but no answer came within `after`.
    NoReply { command_id: String, after: Duration },
    /// The protocol cannot carry it.
    Rejected { command_id: String, reason: String },
    /// The session ended before the write.
    NotWritten { command_id: String },
}

struct Waiting {
    cmd: Box<SessionCommand>,
    tag: Option<u32>,
    since: Instant,
}

/// Commands queued on a session and awaiting answers.
pub struct Outstanding {
    queue: VecDeque<Box<SessionCommand>>,
    waiting: Vec<Waiting>,
    reply_timeout: Duration,
}

/// Queued commands per session, at most (the dispatcher holds the rest as pending claims).
const MAX_QUEUED: usize = 16;
/// Commands awaiting a tagged answer at once (untagged protocols: one).
const MAX_TAGGED_IN_FLIGHT: usize = 4;

fn id(sc: &SessionCommand) -> String {
    sc.command.command_id.clone()
}

impl Outstanding {
    pub fn new(reply_timeout: Duration) -> Self {
        Outstanding {
            queue: VecDeque::new(),
            waiting: Vec::new(),
            reply_timeout,
        }
    }

    /// Queues a command; a full queue gives it back unwritten.
    pub fn push(&mut self, sc: Box<SessionCommand>) {
        if self.queue.len() >= MAX_QUEUED {
            let u = Update::NotWritten {
                command_id: id(&sc),
            };
            sc.updates.update(u);
        } else {
            self.queue.push_back(sc);
        }
    }

    /// The next command to write now, encoded, if the protocol allows another in flight.
    /// Commands the protocol cannot carry are rejected on the way. Call [`Self::written`]
    /// once the bytes are on the socket.
    pub fn next_write(&mut self, session: &mut dyn ProtocolSession) -> Option<Bytes> {
        loop {
            let untagged_busy = self.waiting.iter().any(|w| w.tag.is_none());
            if untagged_busy || self.waiting.len() >= MAX_TAGGED_IN_FLIGHT {
                return None;
            }
            let sc = self.queue.front()?;
            let encoded = CommandRequest::from_command(&sc.command)
                .map_err(crate::protocol::CommandError::Invalid)
                .and_then(|request| session.encode_command(&request));
            match encoded {
                Ok(bytes) => return Some(bytes),
                Err(e) => {
                    let sc = self.queue.pop_front()?;
                    let u = Update::Rejected {
                        command_id: id(&sc),
                        reason: e.to_string(),
                    };
                    sc.updates.update(u);
                }
            }
        }
    }

    /// The bytes from [`Self::next_write`] are on the socket.
    pub fn written(&mut self, session: &dyn ProtocolSession, now: Instant) {
        let Some(sc) = self.queue.pop_front() else {
            return;
        };
        let awaiting_reply = session.command_answered();
        sc.updates.update(Update::Written {
            command_id: id(&sc),
            awaiting_reply,
        });
        if awaiting_reply {
            self.waiting.push(Waiting {
                tag: session.last_command_tag(),
                cmd: sc,
                since: now,
            });
        }
    }

    /// Matches the device's answers carried by a delivered frame.
    pub fn on_answers(&mut self, answers: &[CommandAnswer]) {
        for a in answers {
            if self.waiting.is_empty() {
                return;
            }
            let pos = match a.tag {
                Some(t) => self.waiting.iter().position(|w| w.tag == Some(t)),
                None => self.waiting.iter().position(|w| w.tag.is_none()),
            };
            let Some(pos) = pos else {
                continue;
            };
            let w = self.waiting.remove(pos);
            let response = match &a.outcome {
                AnswerOutcome::Refused(reason) => {
                    w.cmd.updates.update(Update::Refused {
                        command_id: id(&w.cmd),
                        reason: reason.clone(),
                    });
                    continue;
                }
                AnswerOutcome::Text(t) => command_result::Response::ResponseText(t.clone()),
                AnswerOutcome::Bytes(b) => command_result::Response::ResponseBytes(b.clone()),
            };
            w.cmd.updates.update(Update::Replied {
                command_id: id(&w.cmd),
                response,
            });
        }
    }

    /// When the oldest answer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .map(|w| w.since + self.reply_timeout)
            .min()
    }

    /// Gives up on answers past the reply timeout.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.reply_timeout;
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.since + timeout <= now);
        self.waiting = keep;
        for w in late {
            w.cmd.updates.update(Update::NoReply {
                command_id: id(&w.cmd),
                after: timeout,
            });
        }
    }

    /// The session ended: queued commands go back unwritten; written ones will get no answer.
    pub fn close(&mut self) {
        for sc in self.queue.drain(..) {
            let u = Update::NotWritten {
                command_id: id(&sc),
            };
            sc.updates.update(u);
        }
        for w in self.waiting.drain(..) {
            w.cmd.updates.update(Update::NoReply {
                command_id: id(&w.cmd),
                after: Duration::ZERO,
            });
        }
    }

    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::dispatcher::ToDispatcher;
    use crate::proto::{command, Protocol, Transport};
    use crate::protocol::teltonika::{command as tcmd, frame as tframe};
    use crate::protocol::{module, ProtocolConfig};
    use bytes::BytesMut;
    use tokio::sync::mpsc::Receiver;

    fn sc(id: &str, text: &str, updates: &Commands) -> Box<SessionCommand> {
        Box::new(SessionCommand {
            command: crate::proto::Command {
                command_id: id.into(),
                imei: "356307042441013".into(),
                body: Some(command::Body::Text(text.into())),
                ..Default::default()
            },
            updates: updates.clone(),
        })
    }

    fn next(rx: &mut Receiver<ToDispatcher>) -> Update {
        match rx.try_recv() {
            Ok(ToDispatcher::Update(u)) => u,
            other => panic!("expected an update, got {other:?}"),
        }
    }

    fn logged_in(limits: &ProtocolConfig) -> Box<dyn ProtocolSession> {
        let mut s = module(Protocol::Teltonika)
            .unwrap()
            .new_session(Transport::Tcp, limits);
        let mut b = BytesMut::from(&tframe::encode_login("356307042441013")[..]);
        s.decode(&mut b, std::time::SystemTime::now()).unwrap();
        s
    }

    fn answer(text: &str, session: &mut dyn ProtocolSession) -> Vec<CommandAnswer> {
        let mut b =
            BytesMut::from(&tframe::encode_tcp(&tcmd::encode_codec12(0x06, text.as_bytes()))[..]);
        session
            .decode(&mut b, std::time::SystemTime::now())
            .unwrap()
            .unwrap()
            .answers
    }

    #[test]
    fn teltonika_one_command_in_flight_answers_in_order_then_timeout() {
        let (cmds, mut rx) = Commands::channel(16);
        let mut s = logged_in(&ProtocolConfig::default());
        let mut o = Outstanding::new(Duration::from_secs(5));
        let t0 = Instant::now();
        o.push(sc("a", "getinfo", &cmds));
        o.push(sc("b", "getver", &cmds));
        let bytes = o.next_write(s.as_mut()).unwrap();
        assert_eq!(bytes[8], 0x0C, "Codec 12");
        o.written(s.as_ref(), t0);
        assert!(
            matches!(next(&mut rx), Update::Written { ref command_id, awaiting_reply: true } if command_id == "a")
        );
        assert!(
            o.next_write(s.as_mut()).is_none(),
            "one Codec 12 command at a time"
        );
        o.on_answers(&answer("INFO", s.as_mut()));
        match next(&mut rx) {
            Update::Replied {
                command_id,
                response,
            } => {
                assert_eq!(command_id, "a");
                assert_eq!(
                    response,
                    command_result::Response::ResponseText("INFO".into())
                );
            }
            u => panic!("{u:?}"),
        }
        assert!(o.next_write(s.as_mut()).is_some());
        o.written(s.as_ref(), t0);
        next(&mut rx);
        assert_eq!(o.next_deadline(), Some(t0 + Duration::from_secs(5)));
        o.expire(t0 + Duration::from_secs(4));
        assert!(rx.try_recv().is_err());
        o.expire(t0 + Duration::from_secs(5));
        assert!(
            matches!(next(&mut rx), Update::NoReply { ref command_id, .. } if command_id == "b")
        );
        assert!(o.is_idle());
    }

    #[test]
    fn codec14_commands_are_addressed_and_a_nack_refuses_them() {
        let (cmds, mut rx) = Commands::channel(16);
        let limits = ProtocolConfig::default().with("teltonika", "command_codec", "14");
        let mut s = logged_in(&limits);
        let mut o = Outstanding::new(Duration::from_secs(5));
        o.push(sc("a", "getinfo", &cmds));
        let bytes = o.next_write(s.as_mut()).unwrap();
        assert_eq!(bytes[8], 0x0E, "Codec 14");
        o.written(s.as_ref(), Instant::now());
        next(&mut rx);
        // The device's nACK (type 0x11) for the IMEI.
        let mut nack = vec![0x0E, 0x01, 0x11, 0x00, 0x00, 0x00, 0x08];
        nack.extend_from_slice(&[0x03, 0x56, 0x30, 0x70, 0x42, 0x44, 0x10, 0x13]);
        nack.push(0x01);
        let mut b = BytesMut::from(&tframe::encode_tcp(&nack)[..]);
        let answers = s
            .decode(&mut b, std::time::SystemTime::now())
            .unwrap()
            .unwrap()
            .answers;
        o.on_answers(&answers);
        assert!(
            matches!(next(&mut rx), Update::Refused { ref command_id, .. } if command_id == "a")
        );
    }

    #[test]
    fn a_closed_session_gives_queued_commands_back_and_reports_written_ones() {
        let (cmds, mut rx) = Commands::channel(64);
        let mut s = logged_in(&ProtocolConfig::default());
        let mut o = Outstanding::new(Duration::from_secs(5));
        o.push(sc("a", "x", &cmds));
        o.push(sc("b", "y", &cmds));
        o.next_write(s.as_mut()).unwrap();
        o.written(s.as_ref(), Instant::now());
        next(&mut rx);
        o.close();
        assert!(
            matches!(next(&mut rx), Update::NotWritten { ref command_id } if command_id == "b")
        );
        assert!(
            matches!(next(&mut rx), Update::NoReply { ref command_id, .. } if command_id == "a")
        );
        // A full queue hands commands straight back.
        for i in 0..(MAX_QUEUED + 1) {
            o.push(sc(&format!("q{i}"), "z", &cmds));
        }
        assert!(
            matches!(next(&mut rx), Update::NotWritten { ref command_id } if command_id == "q16")
        );
    }
}
