//! The session's side of commands, sans IO: the commands this pod handed the session, the
//! ones written and awaiting an answer, matching answers (in order for Teltonika Codec 12, by
//! tag for GT06's server flag), and the reply timeout. Every method returns the [`Update`]s it
//! decided on; the session loop sends them to the dispatcher and writes the bytes
//! [`Tracker::next_write`] returns. Nothing here touches a socket, a channel or a clock.
//!
//! A command is written only after the dispatcher said [`super::messages::SessionMsg::Go`]: the
//! tracker encodes the next command, announces it ([`Update::Ready`]), and the dispatcher puts
//! a WRITING claim in the log first, so the log tells whether a command can have been written.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::messages::Update;
use super::template::Templates;
use crate::proto::{command_result, Command};
use crate::protocol::{AnswerOutcome, CommandAnswer, CommandRequest, ProtocolSession};

/// Commands queued on a session at most (the dispatcher holds the rest as pending claims).
pub const MAX_QUEUED: usize = super::ledger::MAX_HELD_PER_DEVICE;
/// Commands awaiting a tagged answer at once (untagged protocols: one).
const MAX_TAGGED_IN_FLIGHT: usize = 4;

/// A command handed to the session and not yet written.
struct Queued {
    command: Command,
    encoded: Option<Encoded>,
    /// [`Update::Ready`] was sent.
    announced: bool,
    /// The dispatcher said go.
    armed: bool,
}

/// A command as the protocol encoded it.
struct Encoded {
    bytes: Bytes,
    /// How its answer is recognised (see [`ProtocolSession::last_command_tag`]).
    tag: Option<u32>,
    /// Whether the device answers it at all.
    answered: bool,
}

struct Waiting {
    command_id: String,
    tag: Option<u32>,
    since: Instant,
}

/// Commands queued on a session and awaiting answers.
pub struct Tracker {
    /// `None` while the session holds no command. Every session carries a tracker and almost
    /// none has a command: boxed, it costs an idle session's task 8 bytes instead of 56
    /// (memory per session, docs/load-runs.md).
    held: Option<Box<Held>>,
    reply_timeout: Duration,
}

#[derive(Default)]
struct Held {
    queue: VecDeque<Queued>,
    waiting: Vec<Waiting>,
}

impl Tracker {
    pub fn new(reply_timeout: Duration) -> Self {
        Tracker {
            held: None,
            reply_timeout,
        }
    }

    /// Lets go of the box once the session holds no command any more.
    fn tidy(&mut self) {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.queue.is_empty() && h.waiting.is_empty())
        {
            self.held = None;
        }
    }

    fn waiting(&self) -> &[Waiting] {
        self.held.as_ref().map_or(&[], |h| &h.waiting)
    }

    /// Queues a command this pod won; a full queue gives it back unwritten.
    pub fn push(&mut self, command: Command) -> Vec<Update> {
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.queue.len() >= MAX_QUEUED)
        {
            return vec![Update::NotWritten {
                command_id: command.command_id,
            }];
        }
        self.held.get_or_insert_default().queue.push_back(Queued {
            command,
            encoded: None,
            announced: false,
            armed: false,
        });
        Vec::new()
    }

    /// The WRITING claim on `command_id` is in force: it may be written.
    pub fn go(&mut self, command_id: &str) {
        if let Some(q) = self.held.as_mut().and_then(|h| {
            h.queue
                .iter_mut()
                .find(|q| q.command.command_id == command_id)
        }) {
            q.armed = true;
        }
    }

    /// Forgets a command without an update: another pod or a newer session settles it.
    pub fn withdraw(&mut self, command_id: &str) {
        if let Some(h) = self.held.as_mut() {
            h.queue.retain(|q| q.command.command_id != command_id);
            h.waiting.retain(|w| w.command_id != command_id);
        }
        self.tidy();
    }

    /// A newer session of the device took over: every command not yet written goes back.
    pub fn give_back(&mut self) -> Vec<Update> {
        let Some(h) = self.held.as_mut() else {
            return Vec::new();
        };
        let back = h
            .queue
            .drain(..)
            .map(|q| Update::NotWritten {
                command_id: q.command.command_id,
            })
            .collect();
        self.tidy();
        back
    }

    /// The next command to write now, encoded, if the protocol allows another in flight and
    /// the dispatcher said go; and the updates decided on the way (the next command announced
    /// [`Update::Ready`], commands the protocol cannot carry [`Update::Rejected`]). Call
    /// [`Self::written`] once the bytes are on the wire.
    pub fn next_write(
        &mut self,
        session: &mut dyn ProtocolSession,
        templates: Option<&Templates>,
    ) -> (Option<Bytes>, Vec<Update>) {
        let mut updates = Vec::new();
        let Some(h) = self.held.as_mut() else {
            return (None, updates);
        };
        let bytes = loop {
            let untagged_busy = h.waiting.iter().any(|w| w.tag.is_none());
            if untagged_busy || h.waiting.len() >= MAX_TAGGED_IN_FLIGHT {
                break None;
            }
            let Some(head) = h.queue.front_mut() else {
                break None;
            };
            if head.encoded.is_none() {
                match encode(&head.command, session, templates) {
                    Ok(e) => head.encoded = Some(e),
                    Err(reason) => {
                        let command_id = head.command.command_id.clone();
                        h.queue.pop_front();
                        updates.push(Update::Rejected { command_id, reason });
                        continue;
                    }
                }
            }
            if head.armed {
                break head.encoded.as_ref().map(|e| e.bytes.clone());
            }
            if !head.announced {
                head.announced = true;
                updates.push(Update::Ready {
                    command_id: head.command.command_id.clone(),
                });
            }
            break None;
        };
        self.tidy();
        (bytes, updates)
    }

    /// The bytes from [`Self::next_write`] are on the wire.
    pub fn written(&mut self, now: Instant) -> Vec<Update> {
        let Some(h) = self.held.as_mut() else {
            return Vec::new();
        };
        let Some(q) = h.queue.pop_front() else {
            return Vec::new();
        };
        let (tag, answered) = q
            .encoded
            .as_ref()
            .map_or((None, false), |e| (e.tag, e.answered));
        if answered {
            h.waiting.push(Waiting {
                command_id: q.command.command_id.clone(),
                tag,
                since: now,
            });
        }
        self.tidy();
        vec![Update::Written {
            command_id: q.command.command_id,
            awaiting_reply: answered,
        }]
    }

    /// Matches the device's answers carried by a frame (as soon as it is decoded: a device
    /// does not send an answer twice, whatever becomes of the frame's events).
    pub fn on_answers(&mut self, answers: &[CommandAnswer]) -> Vec<Update> {
        let mut updates = Vec::new();
        let Some(h) = self.held.as_mut() else {
            return updates;
        };
        for a in answers {
            let pos = match a.tag {
                Some(t) => h.waiting.iter().position(|w| w.tag == Some(t)),
                None => h.waiting.iter().position(|w| w.tag.is_none()),
            };
            let Some(pos) = pos else {
                continue;
            };
            let command_id = h.waiting.remove(pos).command_id;
            updates.push(match &a.outcome {
                AnswerOutcome::Refused(reason) => Update::Refused {
                    command_id,
                    reason: reason.clone(),
                },
                AnswerOutcome::Text(t) => Update::Replied {
                    command_id,
                    response: command_result::Response::ResponseText(t.clone()),
                },
                AnswerOutcome::Bytes(b) => Update::Replied {
                    command_id,
                    response: command_result::Response::ResponseBytes(b.clone()),
                },
            });
        }
        self.tidy();
        updates
    }

    /// When the oldest answer is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting()
            .iter()
            .map(|w| w.since + self.reply_timeout)
            .min()
    }

    /// Gives up on answers past the reply timeout.
    pub fn expire(&mut self, now: Instant) -> Vec<Update> {
        let timeout = self.reply_timeout;
        let Some(h) = self.held.as_mut() else {
            return Vec::new();
        };
        let (late, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut h.waiting)
            .into_iter()
            .partition(|w| w.since + timeout <= now);
        h.waiting = keep;
        self.tidy();
        late.into_iter()
            .map(|w| Update::timed_out(w.command_id, timeout))
            .collect()
    }

    /// The session ends: queued commands go back unwritten; written ones will get no answer
    /// (`why` says why, in the terminal result's reason).
    pub fn close(&mut self, why: &str) -> Vec<Update> {
        let mut updates = self.give_back();
        if let Some(h) = self.held.take() {
            updates.extend(h.waiting.into_iter().map(|w| Update::NoReply {
                command_id: w.command_id,
                reason: format!("written, but {why} before the device answered"),
            }));
        }
        updates
    }

    /// Whether written commands await the device's answer.
    pub fn awaiting_answers(&self) -> bool {
        !self.waiting().is_empty()
    }

    pub fn is_idle(&self) -> bool {
        self.held
            .as_ref()
            .is_none_or(|h| h.queue.is_empty() && h.waiting.is_empty())
    }
}

/// The command as the device's protocol writes it: its typed request, through the device
/// profile's template when it has one for the type, then the protocol's encoder. `Err` is the
/// REJECTED reason.
fn encode(
    command: &Command,
    session: &mut dyn ProtocolSession,
    templates: Option<&Templates>,
) -> Result<Encoded, String> {
    let mut request = CommandRequest::from_command(command)?;
    if let Some(text) = templates.and_then(|t| t.render(&request)) {
        request = CommandRequest::Text(text);
    }
    let bytes = session
        .encode_command(&request)
        .map_err(|e| e.to_string())?;
    Ok(Encoded {
        bytes,
        tag: session.last_command_tag(),
        answered: session.command_answered(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{command, CommandType, Protocol, Transport};
    use crate::protocol::teltonika::{command as tcmd, frame as tframe};
    use crate::protocol::{module, ProtocolConfig};
    use bytes::BytesMut;

    fn cmd(id: &str, text: &str) -> Command {
        Command {
            command_id: id.into(),
            imei: "356307042441013".into(),
            body: Some(command::Body::Text(text.into())),
            ..Default::default()
        }
    }

    fn logged_in(protocol: Protocol, limits: &ProtocolConfig) -> Box<dyn ProtocolSession> {
        let mut s = module(protocol)
            .unwrap()
            .new_session(Transport::Tcp, limits);
        let login = match protocol {
            Protocol::Teltonika => tframe::encode_login("356307042441013"),
            Protocol::WialonIps => b"#L#356307042441013;NA\r\n".to_vec(),
            _ => unreachable!(),
        };
        let mut b = BytesMut::from(&login[..]);
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

    /// Runs the announce-then-go handshake: the next command is announced, armed, returned.
    fn write_next(t: &mut Tracker, s: &mut dyn ProtocolSession) -> Bytes {
        let (bytes, updates) = t.next_write(s, None);
        assert!(bytes.is_none(), "nothing is written before the go");
        let [Update::Ready { command_id }] = &updates[..] else {
            panic!("{updates:?}")
        };
        t.go(command_id);
        let (bytes, again) = t.next_write(s, None);
        assert!(again.is_empty(), "announced once: {again:?}");
        bytes.expect("written after the go")
    }

    #[test]
    fn teltonika_one_command_in_flight_answers_in_order_then_timeout() {
        let mut s = logged_in(Protocol::Teltonika, &ProtocolConfig::default());
        let mut t = Tracker::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(t.push(cmd("a", "getinfo")).is_empty());
        assert!(t.push(cmd("b", "getver")).is_empty());
        let bytes = write_next(&mut t, s.as_mut());
        assert_eq!(bytes[8], 0x0C, "Codec 12");
        assert_eq!(
            t.written(t0),
            vec![Update::Written {
                command_id: "a".into(),
                awaiting_reply: true
            }]
        );
        let (none, updates) = t.next_write(s.as_mut(), None);
        assert!(
            none.is_none() && updates.is_empty(),
            "one Codec 12 command at a time, not even announced"
        );
        assert_eq!(
            t.on_answers(&answer("INFO", s.as_mut())),
            vec![Update::Replied {
                command_id: "a".into(),
                response: command_result::Response::ResponseText("INFO".into())
            }]
        );
        write_next(&mut t, s.as_mut());
        t.written(t0);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(t.expire(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            t.expire(t0 + Duration::from_secs(5)),
            vec![Update::timed_out("b".into(), Duration::from_secs(5))]
        );
        assert!(t.is_idle());
    }

    #[test]
    fn codec14_commands_are_addressed_and_a_nack_refuses_them() {
        let limits = ProtocolConfig::default().with("teltonika", "command_codec", "14");
        let mut s = logged_in(Protocol::Teltonika, &limits);
        let mut t = Tracker::new(Duration::from_secs(5));
        t.push(cmd("a", "getinfo"));
        let bytes = write_next(&mut t, s.as_mut());
        assert_eq!(bytes[8], 0x0E, "Codec 14");
        t.written(Instant::now());
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
        assert!(matches!(
            &t.on_answers(&answers)[..],
            [Update::Refused { command_id, .. }] if command_id == "a"
        ));
    }

    #[test]
    fn a_closed_session_gives_queued_commands_back_and_reports_written_ones() {
        let mut s = logged_in(Protocol::Teltonika, &ProtocolConfig::default());
        let mut t = Tracker::new(Duration::from_secs(5));
        t.push(cmd("a", "x"));
        t.push(cmd("b", "y"));
        write_next(&mut t, s.as_mut());
        t.written(Instant::now());
        let closed = t.close("the gateway drained");
        assert_eq!(
            closed,
            vec![
                Update::NotWritten {
                    command_id: "b".into()
                },
                Update::NoReply {
                    command_id: "a".into(),
                    reason: "written, but the gateway drained before the device answered".into()
                }
            ]
        );
        // A full queue hands commands straight back.
        for i in 0..MAX_QUEUED {
            assert!(t.push(cmd(&format!("q{i}"), "z")).is_empty());
        }
        assert_eq!(
            t.push(cmd("over", "z")),
            vec![Update::NotWritten {
                command_id: "over".into()
            }]
        );
    }

    #[test]
    fn withdrawn_commands_are_never_written_and_uncarried_ones_are_rejected() {
        let mut s = logged_in(Protocol::WialonIps, &ProtocolConfig::default());
        let mut t = Tracker::new(Duration::from_secs(5));
        let mut typed = cmd("typed", "");
        typed.body = None;
        typed.r#type = CommandType::EngineStop as i32;
        t.push(typed);
        t.push(cmd("a", "hello"));
        t.push(cmd("b", "again"));
        // The typed one is rejected on the way, "a" announced.
        let (bytes, updates) = t.next_write(s.as_mut(), None);
        assert!(bytes.is_none());
        assert!(
            matches!(&updates[0], Update::Rejected { command_id, reason }
                if command_id == "typed" && reason.contains("ENGINE_STOP")),
            "{updates:?}"
        );
        assert_eq!(
            updates[1],
            Update::Ready {
                command_id: "a".into()
            }
        );
        // Another pod settled "a": it is dropped; "b" comes next.
        t.withdraw("a");
        t.go("a");
        let (bytes, updates) = t.next_write(s.as_mut(), None);
        assert!(bytes.is_none());
        assert_eq!(
            updates,
            vec![Update::Ready {
                command_id: "b".into()
            }]
        );
        t.go("b");
        let (bytes, _) = t.next_write(s.as_mut(), None);
        assert_eq!(&bytes.unwrap()[..], b"#M#again\r\n");
        // Wialon's devices do not answer: written and done.
        assert_eq!(
            t.written(Instant::now()),
            vec![Update::Written {
                command_id: "b".into(),
                awaiting_reply: false
            }]
        );
        assert!(t.is_idle());
    }

    #[test]
    fn a_profile_template_replaces_the_built_in_text() {
        let mut s = logged_in(Protocol::WialonIps, &ProtocolConfig::default());
        let mut t = Tracker::new(Duration::from_secs(5));
        let templates = Templates::parse(
            &[("reboot".to_string(), "reboot now".to_string())]
                .into_iter()
                .collect(),
        )
        .unwrap();
        let mut typed = cmd("r", "");
        typed.body = None;
        typed.r#type = CommandType::Reboot as i32;
        t.push(typed);
        let (_, updates) = t.next_write(s.as_mut(), Some(&templates));
        assert_eq!(
            updates,
            vec![Update::Ready {
                command_id: "r".into()
            }]
        );
        t.go("r");
        let (bytes, _) = t.next_write(s.as_mut(), Some(&templates));
        assert_eq!(&bytes.unwrap()[..], b"#M#reboot now\r\n");
    }
}
