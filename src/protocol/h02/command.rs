//! Commands, `*HQ,<id>,<command>,<HHmmss>[,<param>…]#`, and the device's `V4` confirmations.
//!
//! | request | sent |
//! | --- | --- |
//! | ENGINE_STOP / ENGINE_RESUME | `S20,<t>,1,1` / `S20,<t>,1,0` |
//! | SET_REPORT_INTERVAL | `S71,<t>,22,<seconds>`, or `D1,<t>,<seconds>` (setting `report_interval_command`) |
//! | CUSTOM `CMD[,params]` | `*HQ,<id>,CMD,<t>[,params]#` (arm: `SCF,0,0`; disarm: `SCF,1,1`) |
//! | CUSTOM `*…#` | sent as it is |
//!
//! `<t>` is the server's clock, `HHmmss` UTC (the session's last `now`: the protocol layer
//! reads no clock). POSITION_REQUEST, REBOOT and OUTPUT_SET have no documented H02 command
//! (Traccar sends none either): they are refused with a reason, and a model's own command can
//! go as CUSTOM. The maker is `HQ`, as Traccar sends it to every H02 device.
//!
//! The device confirms with `*XX,<id>,V4,<command>,[<result>…,]<t>,<its own time>,<fix>…#`:
//! the command name and the command's `<t>` come back, so answers are matched by tag, not in
//! order. Each command written gets a tag; a confirmation takes the tag of the oldest command
//! sent with the same name and time, or, when a firmware echoes another time, the same name.
//! A confirmation that matches none (a command sent by SMS, or before a reconnect) is
//! published but answers nothing. A result of `ERROR` is a refusal.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::protocol::{check_command_text, CommandError, CommandRequest};

use super::text::Confirmation;

/// The maker field of every command.
pub const MAKER: &str = "HQ";

/// Commands remembered for matching (the session's tracker waits for at most 4).
const REMEMBERED: usize = 16;

/// How SET_REPORT_INTERVAL is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntervalCommand {
    /// `S71,<t>,22,<seconds>` (Traccar's default).
    S71,
    /// `D1,<t>,<seconds>` (Traccar's `alternative` models).
    D1,
}

#[derive(Debug, Clone)]
struct Sent {
    tag: u32,
    name: String,
    time: String,
}

/// The commands a session sent and the tags their confirmations carry.
#[derive(Debug, Default)]
pub struct Commands {
    sent: VecDeque<Sent>,
    next_tag: u32,
    last_tag: Option<u32>,
}

/// `HHmmss` of seconds since the epoch (UTC).
pub fn time_of_day(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}{:02}{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The command name and parameters of a request, or a refusal.
fn parts(request: &CommandRequest, interval: IntervalCommand) -> Result<Parts, CommandError> {
    let text = match request {
        CommandRequest::EngineStop => return Ok(Parts::Built("S20".into(), "1,1".into())),
        CommandRequest::EngineResume => return Ok(Parts::Built("S20".into(), "1,0".into())),
        CommandRequest::SetReportInterval { seconds } => {
            return Ok(match interval {
                IntervalCommand::S71 => Parts::Built("S71".into(), format!("22,{seconds}")),
                IntervalCommand::D1 => Parts::Built("D1".into(), seconds.to_string()),
            })
        }
        CommandRequest::Text(t) => t.as_str(),
        CommandRequest::Payload(p) => std::str::from_utf8(p)
            .map_err(|_| CommandError::Invalid("an H02 command is text".into()))?,
        other => {
            return Err(CommandError::UnsupportedType(format!(
                "H02 has no documented {} command; send the model's own command as CUSTOM \
                 (`CMD,params` or a whole `*HQ,…#` message)",
                other.type_name()
            )))
        }
    };
    check_command_text(text)?;
    if !text.is_ascii() {
        return Err(CommandError::Invalid("an H02 command is ASCII".into()));
    }
    if text.starts_with('*') {
        // A whole message: sent as it is, matched by its own name and time.
        let inner = text
            .strip_suffix('#')
            .filter(|t| !t.contains('#'))
            .ok_or_else(|| {
                CommandError::Invalid("a whole H02 message ends with its only `#`".into())
            })?;
        let fields: Vec<&str> = inner.split(',').collect();
        let (Some(name), time) = (fields.get(2), fields.get(3)) else {
            return Err(CommandError::Invalid(
                "a whole H02 message is `*XX,<id>,<command>,<time>…#`".into(),
            ));
        };
        return Ok(Parts::Verbatim {
            text: text.to_string(),
            name: (*name).to_string(),
            time: time.copied().unwrap_or_default().to_string(),
        });
    }
    if text.contains(['#', '*']) {
        return Err(CommandError::Invalid(
            "`#` and `*` delimit H02 messages; they cannot be in a command's fields".into(),
        ));
    }
    let (name, params) = text.split_once(',').unwrap_or((text, ""));
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(CommandError::Invalid(
            "a CUSTOM H02 command is `CMD[,params]` with a letters-and-digits name".into(),
        ));
    }
    Ok(Parts::Built(name.to_string(), params.to_string()))
}

enum Parts {
    /// Name and parameters (joined by `,`, possibly empty).
    Built(String, String),
    Verbatim {
        text: String,
        name: String,
        time: String,
    },
}

/// `*HQ,<id>,<name>,<time>[,<params>]#`.
pub fn message(id: &str, name: &str, time: &str, params: &str) -> String {
    let mut s = format!("*{MAKER},{id},{name},{time}");
    if !params.is_empty() {
        s.push(',');
        s.push_str(params);
    }
    s.push('#');
    s
}

impl Commands {
    /// Encodes `request` for device `id` at `secs` (the server's clock), remembering it for
    /// its confirmation.
    pub fn encode(
        &mut self,
        id: &str,
        request: &CommandRequest,
        secs: u64,
        interval: IntervalCommand,
        max_len: usize,
    ) -> Result<Bytes, CommandError> {
        let (text, name, time) = match parts(request, interval)? {
            Parts::Built(name, params) => {
                let time = time_of_day(secs);
                (message(id, &name, &time, &params), name, time)
            }
            Parts::Verbatim { text, name, time } => (text, name, time),
        };
        if text.len() > max_len {
            return Err(CommandError::Invalid(format!(
                "command longer than the {max_len}-byte message cap"
            )));
        }
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let tag = self.next_tag;
        if self.sent.len() >= REMEMBERED {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent { tag, name, time });
        self.last_tag = Some(tag);
        Ok(Bytes::from(text))
    }

    /// The tag of the command last encoded.
    pub fn last_tag(&self) -> Option<u32> {
        self.last_tag
    }

    /// The tag a confirmation answers, if it answers a command this session sent (which is
    /// then forgotten).
    pub fn confirm(&mut self, c: &Confirmation) -> Option<u32> {
        let same_name = |s: &Sent| s.name.eq_ignore_ascii_case(&c.command);
        let at = self
            .sent
            .iter()
            .position(|s| same_name(s) && c.command_time.as_deref() == Some(s.time.as_str()))
            .or_else(|| self.sent.iter().position(same_name))?;
        self.sent.remove(at).map(|s| s.tag)
    }

    /// Another device on this session: its commands are not the last one's.
    pub fn forget(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::AnswerOutcome;

    const T: u64 = 3723; // 01:02:03

    fn enc(c: &mut Commands, r: CommandRequest) -> Result<String, CommandError> {
        c.encode("123456789012345", &r, T, IntervalCommand::S71, 1024)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn typed_commands_exact_bytes() {
        let mut c = Commands::default();
        let id = "*HQ,123456789012345";
        assert_eq!(
            enc(&mut c, CommandRequest::EngineStop).unwrap(),
            format!("{id},S20,010203,1,1#")
        );
        assert_eq!(
            enc(&mut c, CommandRequest::EngineResume).unwrap(),
            format!("{id},S20,010203,1,0#")
        );
        assert_eq!(
            enc(&mut c, CommandRequest::SetReportInterval { seconds: 10 }).unwrap(),
            format!("{id},S71,010203,22,10#")
        );
        let d1 = c
            .encode(
                "4210209006",
                &CommandRequest::SetReportInterval { seconds: 30 },
                T,
                IntervalCommand::D1,
                1024,
            )
            .unwrap();
        assert_eq!(&d1[..], b"*HQ,4210209006,D1,010203,30#");
        assert_eq!(
            enc(&mut c, CommandRequest::Text("SCF,0,0".into())).unwrap(),
            format!("{id},SCF,010203,0,0#")
        );
        assert_eq!(
            enc(&mut c, CommandRequest::Text("SCF,1,1".into())).unwrap(),
            format!("{id},SCF,010203,1,1#")
        );
        assert_eq!(
            enc(&mut c, CommandRequest::Payload(Bytes::from_static(b"R7"))).unwrap(),
            format!("{id},R7,010203#")
        );
        assert_eq!(
            enc(&mut c, CommandRequest::Text("*HQ,1,S20,235959,1,1#".into())).unwrap(),
            "*HQ,1,S20,235959,1,1#"
        );
        assert_eq!(time_of_day(86_399), "235959");
        assert_eq!(time_of_day(1_700_000_000), "221320");
    }

    #[test]
    fn what_cannot_be_sent_is_refused_with_a_reason() {
        let mut c = Commands::default();
        for r in [
            CommandRequest::PositionRequest,
            CommandRequest::Reboot,
            CommandRequest::OutputSet { index: 1, on: true },
        ] {
            match enc(&mut c, r.clone()) {
                Err(CommandError::UnsupportedType(why)) => {
                    assert!(why.contains(r.type_name()), "{why}")
                }
                other => panic!("{r:?}: {other:?}"),
            }
        }
        for bad in [
            "S20,1\r\n*HQ,1,S20,1#",
            "S20#",
            "S20,1*2",
            "",
            ",1",
            "S 20",
            "*HQ,1,S20,1#2#",
            "*HQ,1",
            "*HQ,1#",
            "Sé",
        ] {
            assert!(
                matches!(
                    enc(&mut c, CommandRequest::Text(bad.into())),
                    Err(CommandError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(enc(&mut c, CommandRequest::Payload(Bytes::from_static(&[0xFF]))).is_err());
        assert!(matches!(
            c.encode(
                "1",
                &CommandRequest::Text("S20,1,1".into()),
                T,
                IntervalCommand::S71,
                16
            ),
            Err(CommandError::Invalid(_))
        ));
        assert_eq!(c.last_tag(), None, "nothing refused was remembered");
    }

    fn confirmation(command: &str, time: Option<&str>) -> Confirmation {
        Confirmation {
            command: command.into(),
            command_time: time.map(str::to_string),
            outcome: AnswerOutcome::Text(command.into()),
        }
    }

    #[test]
    fn confirmations_take_the_tag_of_their_command() {
        let mut c = Commands::default();
        enc(&mut c, CommandRequest::EngineStop).unwrap();
        let stop = c.last_tag().unwrap();
        c.encode(
            "123456789012345",
            &CommandRequest::EngineStop,
            T + 1,
            IntervalCommand::S71,
            1024,
        )
        .unwrap();
        let stop2 = c.last_tag().unwrap();
        enc(&mut c, CommandRequest::SetReportInterval { seconds: 5 }).unwrap();
        let interval = c.last_tag().unwrap();
        assert!(stop != stop2 && stop2 != interval);
        // By name and time, whatever the order.
        assert_eq!(
            c.confirm(&confirmation("S71", Some("010203"))),
            Some(interval)
        );
        assert_eq!(c.confirm(&confirmation("S20", Some("010204"))), Some(stop2));
        // A firmware that echoes another time: by name, oldest first.
        assert_eq!(c.confirm(&confirmation("S20", Some("999999"))), Some(stop));
        // Nothing left to answer.
        assert_eq!(c.confirm(&confirmation("S20", Some("010203"))), None);
        assert_eq!(c.confirm(&confirmation("S17", None)), None);
        // A whole message is matched by its own name and time.
        enc(&mut c, CommandRequest::Text("*TH,1,S17,130305#".into())).unwrap();
        let s17 = c.last_tag();
        assert_eq!(c.confirm(&confirmation("S17", Some("130305"))), s17);
        enc(&mut c, CommandRequest::EngineStop).unwrap();
        c.forget();
        assert_eq!(c.confirm(&confirmation("S20", Some("010203"))), None);
    }

    #[test]
    fn at_most_a_bounded_number_are_remembered() {
        let mut c = Commands::default();
        for _ in 0..REMEMBERED + 5 {
            enc(&mut c, CommandRequest::EngineStop).unwrap();
        }
        assert_eq!(c.sent.len(), REMEMBERED);
    }
}
