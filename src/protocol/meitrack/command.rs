//! Commands: `@@<flag><length>,<IMEI>,<command>[,<parameters>]*<checksum>\r\n`.
//!
//! The device answers with the command's name and the same flag
//! (`$$<flag>..,<IMEI>,A12,OK*..`), except for `A10` (locate now), which it answers with an
//! `AAA` report of event 34. The session gives every command the next flag (`A`, `B`, …, `z`,
//! then `A` again), and an answer is matched by its tag: the flag and the command name it
//! answers (see [`tag`]), so an unrelated report that happens to reuse a flag is not taken for
//! an answer.
//!
//! Typed commands (what the reference server sends for them, and the protocol's documents):
//!
//! | request | command |
//! | --- | --- |
//! | POSITION_REQUEST | `A10` |
//! | ENGINE_STOP / ENGINE_RESUME | `C01,0,12222` / `C01,0,02222` (output 1 on / off, the others unchanged) |
//! | OUTPUT_SET n on/off | `C01,0,<5 digits>`: `1`/`0` at position n (1–5), `2` (unchanged) elsewhere |
//! | SET_REPORT_INTERVAL s | `A12,<s / 10>`: the interval is in tens of seconds, 1–65535 of them |
//! | REBOOT | `F01`: restarts the GSM module, the only restart the protocol has (`F02` restarts the GPS receiver only) |
//! | CUSTOM | the text as the command and its parameters (`B21,1`, `D03,1,camera_picture.jpg`, `C02,0,<phone>,<text>`) |

use crate::protocol::{check_command_text, CommandError, CommandRequest};

/// Longest command (name and parameters), as the protocol's documents limit it.
pub const MAX_COMMAND_LEN: usize = 1024;
/// Outputs `C01` can set.
pub const OUTPUTS: u8 = 5;
/// The command that asks for a position; answered by an `AAA` report of this event.
pub const LOCATE: &[u8; 3] = b"A10";
pub const LOCATE_EVENT: u64 = 34;
/// The command that takes a photo; its answer starts the upload (`D00`).
pub const PHOTO: &[u8; 3] = b"D03";

/// The answer tag: the flag and the three-character command name the answer carries back.
pub fn tag(flag: u8, command: &[u8; 3]) -> u32 {
    u32::from_be_bytes([flag, command[0], command[1], command[2]])
}

/// The flag after `flag` (`A`…`z`, wrapping).
pub fn next_flag(flag: u8) -> u8 {
    if flag >= *super::frame::FLAGS.end() || flag < *super::frame::FLAGS.start() {
        *super::frame::FLAGS.start()
    } else {
        flag + 1
    }
}

/// The content of a command (what goes between `<IMEI>,` and `*`).
pub fn content(command: &CommandRequest) -> Result<String, CommandError> {
    Ok(match command {
        CommandRequest::Text(t) => custom(t)?,
        CommandRequest::Payload(p) => {
            let t = std::str::from_utf8(p).map_err(|_| {
                CommandError::Invalid("Meitrack commands are text (`A12,6`)".into())
            })?;
            custom(t)?
        }
        CommandRequest::PositionRequest => "A10".into(),
        CommandRequest::EngineStop => "C01,0,12222".into(),
        CommandRequest::EngineResume => "C01,0,02222".into(),
        CommandRequest::OutputSet { index, on } => {
            if !(1..=OUTPUTS).contains(index) {
                return Err(CommandError::Invalid(format!(
                    "Meitrack C01 sets outputs 1..={OUTPUTS}, not {index}"
                )));
            }
            let digits: String = (1..=OUTPUTS)
                .map(|i| match (i == *index, on) {
                    (true, true) => '1',
                    (true, false) => '0',
                    (false, _) => '2',
                })
                .collect();
            format!("C01,0,{digits}")
        }
        CommandRequest::SetReportInterval { seconds } => {
            let tens = seconds / 10;
            if seconds % 10 != 0 || !(1..=65_535).contains(&tens) {
                return Err(CommandError::Invalid(format!(
                    "Meitrack A12 sets the interval in tens of seconds (10..=655350 s); {seconds} s is not one"
                )));
            }
            format!("A12,{tens}")
        }
        CommandRequest::Reboot => "F01".into(),
    })
}

/// A custom command: a three-character name (`A12`, `C01`, `B21`), then `,` and its parameters.
fn custom(text: &str) -> Result<String, CommandError> {
    check_command_text(text)?;
    let b = text.as_bytes();
    let named = b.len() >= 3
        && b[..3].iter().all(u8::is_ascii_alphanumeric)
        && matches!(b.get(3), None | Some(b','));
    if !named {
        return Err(CommandError::Invalid(format!(
            "a Meitrack command starts with its three-character name (`A10`, `C01,0,12222`), not {:?}",
            crate::device_id::excerpt(text)
        )));
    }
    if b.len() > MAX_COMMAND_LEN {
        return Err(CommandError::Invalid(format!(
            "Meitrack commands are at most {MAX_COMMAND_LEN} bytes"
        )));
    }
    Ok(text.to_string())
}

/// The three-character name of a command's content.
pub fn name_of(content: &str) -> [u8; 3] {
    let b = content.as_bytes();
    [b[0], b[1], b[2]]
}

/// The file a `D03,<camera>,<file>` command names.
pub fn photo_file(content: &str) -> Option<&str> {
    let rest = content.strip_prefix("D03,")?;
    let (_, file) = rest.split_once(',')?;
    (!file.is_empty()).then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_commands() {
        let c = |r: CommandRequest| content(&r);
        assert_eq!(c(CommandRequest::PositionRequest).unwrap(), "A10");
        assert_eq!(c(CommandRequest::EngineStop).unwrap(), "C01,0,12222");
        assert_eq!(c(CommandRequest::EngineResume).unwrap(), "C01,0,02222");
        assert_eq!(c(CommandRequest::Reboot).unwrap(), "F01");
        assert_eq!(
            c(CommandRequest::OutputSet { index: 3, on: true }).unwrap(),
            "C01,0,22122"
        );
        assert_eq!(
            c(CommandRequest::OutputSet {
                index: 5,
                on: false
            })
            .unwrap(),
            "C01,0,22220"
        );
        assert!(c(CommandRequest::OutputSet { index: 6, on: true }).is_err());
        assert_eq!(
            c(CommandRequest::SetReportInterval { seconds: 60 }).unwrap(),
            "A12,6"
        );
        for bad in [5, 15, 655_360] {
            assert!(matches!(
                c(CommandRequest::SetReportInterval { seconds: bad }),
                Err(CommandError::Invalid(_))
            ));
        }
    }

    #[test]
    fn custom_commands_are_named_text() {
        assert_eq!(custom("B21,1").unwrap(), "B21,1");
        assert_eq!(custom("E91").unwrap(), "E91");
        for bad in ["", "A1", "A10x", "A1,0", "A12,6\r\n", "A12,\u{85}"] {
            assert!(
                matches!(custom(bad), Err(CommandError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(custom(&format!("C02,0,1,{}", "x".repeat(1100))).is_err());
        assert!(matches!(
            content(&CommandRequest::Payload(vec![0xff].into())),
            Err(CommandError::Invalid(_))
        ));
        assert_eq!(
            content(&CommandRequest::Payload(b"A10".to_vec().into())).unwrap(),
            "A10"
        );
    }

    #[test]
    fn flags_cycle_through_the_range_and_tags_differ_by_command() {
        let mut f = b'A';
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..58 {
            assert!(seen.insert(f));
            f = next_flag(f);
        }
        assert_eq!(f, b'A');
        assert_eq!(seen.len(), 58);
        assert_ne!(tag(b'A', b"A10"), tag(b'A', b"A11"));
        assert_ne!(tag(b'A', b"A10"), tag(b'B', b"A10"));
        assert_eq!(
            photo_file("D03,1,camera_picture.jpg"),
            Some("camera_picture.jpg")
        );
        assert_eq!(photo_file("D03,1"), None);
    }
}
