//! Meitrack (MVT100/340/380/600/800, T1, T3, T311, T322X, T333, T355, T366, T622, TC68 and
//! kin): `$$` frames over TCP and UDP, text and binary.
//!
//! - `frame`: framing by the length field, the sum checksum, server frames.
//! - `text`: the `AAA`/`AFF` position report.
//! - `binary`: the `CCC` and `CCE` batches.
//! - `record`: one decoded record; `mapping`: records onto events and the vocabulary.
//! - `command`: commands and how answers are matched.
//!
//! This module is the session: which message is answered how, photo uploads, commands.
//!
//! # Messages and replies
//!
//! There is no login: the IMEI is in every frame, and the first frame identifies the device
//! (`Frame::login`); a different IMEI later on the same connection (a UDP peer reused) starts
//! afresh. Replies are written only after the events were confirmed (the session layer):
//!
//! | from the device | published | reply |
//! | --- | --- | --- |
//! | `AAA`, `AFF` report | one POSITION (STATUS without coordinates; ALARM on an alarm event) | none |
//! | `CCC` batch | one event per record | `CCC,<records>`: the device deletes them |
//! | `CCE` batch | one event per record | none (the reference server sends none) |
//! | `D00` photo chunk | a FILE event with the last chunk | `D00,<file>,<next>` after every run of 8 chunks |
//! | `AAC` | UNKNOWN, with its data | `AAC,1` |
//! | anything else | COMMAND_RESPONSE (`text`: `<command>,<data>`), a typed answer | none; a `D03` answer gets `D00,<file>,0` (send the photo) |
//!
//! Replies reuse the flag of what they answer, as the protocol requires (`D00` requests use
//! `O`, as Meitrack's examples and the reference server do). An `AAA` of event 34 is the answer
//! to `A10` as well as a position.
//!
//! # Refusals
//!
//! A wrong checksum, a length that does not land on `*<checksum>\r\n`, an unusable IMEI or
//! command, a report or batch that does not parse: a [`DecodeError`] with
//! [`Action::Continue`], nothing published and nothing answered (so a `CCC` batch stays on the
//! device and is sent again). Framing resynchronises on the next `$$`. A checksum is never
//! relaxed; lower-case hex digits are the same checksum and accepted as such.
//!
//! # Lenient input
//!
//! One quirk is tolerated and counted (`Frame::lenient`): `cce_record_length` — a `CCE` record
//! whose parameter groups end before or run past the record's own length field (seen on
//! firmware that writes a 258-byte parameter's length in one byte). The record length still
//! bounds the record, so every other record is read right; the bytes the groups did not
//! account for are kept in `raw` as `trailing_bytes`.

pub mod binary;
pub mod command;
pub mod frame;
pub mod mapping;
pub mod record;
pub mod sim;
pub mod text;

use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::{Protocol, Transport};
use crate::protocol::settings::{self, SettingKind};
use crate::protocol::wialon::file;
use crate::protocol::{
    digest, no_reply, Action, AnswerOutcome, CommandAnswer, CommandError, CommandRequest,
    DecodeError, ErrorKind, Frame, Probe, ProtocolConfig, ProtocolModule, ProtocolSession, Setting,
    Simulator,
};
use crate::vocab::{Key, ProfileCache};

use frame::{RawFrame, Reject, Split};
use record::V;

const NAME: &str = "meitrack";
/// One frame (a `CCE` batch of a few records is ~1.1 KiB, a `D00` chunk ~1 KiB).
const DEFAULT_MAX_FRAME_BYTES: u64 = 16 * 1024;
/// A photo across its `D00` chunks.
const MAX_FILE_BYTES: &str = "max_file_bytes";
/// The flag of the server's `D00` requests.
const PHOTO_FLAG: u8 = b'O';
/// `D00` chunks come in runs of this many; the server asks for the next run.
const PHOTO_RUN: u32 = 8;
/// The file a `D03` answer refers to when no `D03` command of ours named one.
const DEFAULT_PHOTO_FILE: &str = "camera_picture.jpg";
/// Lenient-input label (see the module doc).
pub const LENIENT_CCE_RECORD_LENGTH: &str = "cce_record_length";

static SETTINGS: &[Setting] = &[
    settings::max_frame_bytes(
        DEFAULT_MAX_FRAME_BYTES,
        "largest frame, `$$` to CR LF (binary batches and photo chunks included)",
    ),
    Setting {
        key: MAX_FILE_BYTES,
        kind: SettingKind::Bytes {
            default: 8 * 1024 * 1024,
            min: 1,
            max: 256 * 1024 * 1024,
        },
        doc: "largest photo a device may upload with `D00`, across its chunks",
    },
    settings::IDLE_TIMEOUT,
];

static SIMULATORS: &[Simulator] = &[Simulator {
    name: "meitrack",
    doc: "Meitrack device: `CCC` binary batches, each confirmed with its record count; answers commands",
    transports: &[Transport::Tcp, Transport::Udp],
    make: |imei, udp| Box::new(sim::Meitrack::new(imei, udp)),
}];

/// The registry entry.
pub static MODULE: ProtocolModule = ProtocolModule {
    protocol: Protocol::Meitrack,
    name: NAME,
    describe: "`$$` frames with sum checksum: `AAA`/`AFF` reports, `CCC`/`CCE` binary batches, `D00` photos, command answers",
    transports: &[Transport::Tcp, Transport::Udp],
    probe,
    settings: SETTINGS,
    new_session: |transport, config| Box::new(Session::new(transport, config)),
    simulators: SIMULATORS,
    profiles: mapping::profiles,
    login_rejected_reply: no_reply,
    // Meitrack devices take `@@` commands in a datagram to the address they report from (Traccar's Meitrack encoder serves its UDP server too).
    command_transports: &[Transport::Tcp, Transport::Udp],
};

/// Where the comma after the length may be, at the latest: `$$`, the flag and four digits.
const PROBE_COMMA_BY: usize = 7;

/// `$$`, a flag byte `A`–`z`, ASCII digits and a comma within the first 8 bytes.
///
/// H02's binary frames start with `$` and BCD, and an H02 id that starts with BCD `24` gives
/// `$$` too, followed by BCD bytes that can look like a flag (`41`–`49`) and digits (`30`–`39`);
/// but a comma (`2C`) is never a BCD byte, so an H02 frame is refused by its 8th byte at the
/// latest. Meiligao also starts `$$`, then a binary length: no flag.
pub fn probe(prefix: &[u8], transport: Transport) -> Probe {
    let undecided = if transport == Transport::Udp {
        // A datagram is all there is.
        Probe::No
    } else {
        Probe::NeedMore
    };
    for (i, &b) in prefix.iter().enumerate().take(PROBE_COMMA_BY + 1) {
        let ok = match i {
            0 | 1 => b == b'$',
            2 => frame::FLAGS.contains(&b),
            3 => b.is_ascii_digit(),
            _ if b == b',' => return Probe::Yes,
            _ => b.is_ascii_digit() && i < PROBE_COMMA_BY,
        };
        if !ok {
            return Probe::No;
        }
    }
    undecided
}

/// Per-connection (TCP) or per-peer (UDP) state.
pub struct Session {
    udp: bool,
    max_frame: usize,
    max_file: usize,
    imei: Option<String>,
    /// Set once the current IMEI was reported in a `Frame.login`.
    announced: bool,
    profile: ProfileCache,
    photo: Option<file::Upload>,
    /// The file the next `D03` answer refers to.
    photo_file: String,
    next_flag: u8,
    last_tag: Option<u32>,
}

impl Session {
    pub fn new(transport: Transport, config: &ProtocolConfig) -> Self {
        let settings = config.settings(NAME);
        Session {
            udp: transport == Transport::Udp,
            max_frame: settings.max_frame_bytes().max(64),
            max_file: settings.bytes(MAX_FILE_BYTES),
            imei: None,
            announced: false,
            profile: ProfileCache::new(config.profiles.clone(), Protocol::Meitrack),
            photo: None,
            photo_file: DEFAULT_PHOTO_FILE.into(),
            next_flag: *frame::FLAGS.start(),
            last_tag: None,
        }
    }

    fn refuse(kind: ErrorKind, detail: impl Into<String>) -> DecodeError {
        DecodeError::new(kind, Action::Continue, detail)
    }

    fn handle(&mut self, f: RawFrame) -> Result<Frame, DecodeError> {
        if self.imei.as_deref() != Some(f.imei.as_str()) {
            // A new device behind the same connection or address: nothing of the old one's
            // carries over.
            self.imei = Some(f.imei.clone());
            self.announced = false;
            self.photo = None;
        }
        // The flag and the checksum are left out: a device may resend the same content
        // under another flag, and it must get the same event ids.
        let content = digest(
            Protocol::Meitrack,
            &[f.imei.as_bytes(), &f.command, &f.data],
        );
        let mut out = match &f.command {
            b"AAA" | b"AFF" => self.report(&f)?,
            b"CCC" => self.ccc(&f)?,
            b"CCE" => self.cce(&f)?,
            b"D00" => self.photo_chunk(&f)?,
            b"AAC" => Frame {
                events: vec![mapping::unknown_event(vec![
                    (mapping::name::COMMAND, V::Text("AAC".into())),
                    (
                        mapping::name::DATA,
                        V::Text(String::from_utf8_lossy(&f.data).into()),
                    ),
                ])],
                reply: Some(frame::encode(f.flag, &f.imei, b"AAC,1")),
                ..Default::default()
            },
            _ => self.answer(&f),
        };
        out.digest = match out.events.first().and_then(|e| e.file.as_ref()) {
            // A completed file's digest covers the whole file, not only its last chunk, so
            // two photos that end alike still get distinct event ids.
            Some(file) => digest(Protocol::Meitrack, &[&content.to_be_bytes(), &file.data]),
            None => content,
        };
        if !self.announced {
            out.login = Some(f.imei.clone());
            self.announced = true;
        }
        Ok(out)
    }

    fn profile(&mut self) -> &crate::vocab::Profile {
        self.profile.get(self.imei.as_deref())
    }

    /// `AAA`/`AFF`: one record; event 34 also answers `A10`.
    fn report(&mut self, f: &RawFrame) -> Result<Frame, DecodeError> {
        let rec = text::parse(&f.data, &f.command == b"AFF")
            .map_err(|e| Self::refuse(ErrorKind::BadValue, e.to_string()))?;
        let event = rec
            .get(&Key::Name(mapping::name::EVENT_CODE.into()))
            .cloned();
        let mut out = Frame {
            events: vec![mapping::record_event(rec, self.profile())],
            ..Default::default()
        };
        if event == Some(V::Uint(command::LOCATE_EVENT, 8)) && &f.command == b"AAA" {
            let text = mapping::answer_text(f.command_str(), &String::from_utf8_lossy(&f.data));
            out.answers.push(CommandAnswer {
                tag: Some(command::tag(f.flag, command::LOCATE)),
                outcome: AnswerOutcome::Text(text),
            });
        }
        Ok(out)
    }

    /// `CCC`: every record, confirmed by count.
    fn ccc(&mut self, f: &RawFrame) -> Result<Frame, DecodeError> {
        let batch = binary::parse_ccc(&f.data)
            .map_err(|e| Self::refuse(ErrorKind::Malformed, e.to_string()))?;
        let count = batch.records.len();
        let mut events = Vec::with_capacity(count);
        for r in batch.records {
            events.push(match r {
                binary::CccRecord::Known(rec) => mapping::record_event(rec, self.profile()),
                binary::CccRecord::Unknown(bytes) => mapping::unknown_event(vec![
                    (mapping::name::CCC_VERSION, V::Uint(batch.version.into(), 2)),
                    (
                        mapping::name::REMAINING_CACHE,
                        V::Uint(batch.remaining.into(), 4),
                    ),
                    (mapping::name::RECORD, V::Bytes(bytes)),
                ]),
            });
        }
        Ok(Frame {
            events,
            reply: Some(frame::encode(
                f.flag,
                &f.imei,
                format!("CCC,{count}").as_bytes(),
            )),
            ..Default::default()
        })
    }

    /// `CCE`: every record; not confirmed.
    fn cce(&mut self, f: &RawFrame) -> Result<Frame, DecodeError> {
        let batch = binary::parse_cce(&f.data)
            .map_err(|e| Self::refuse(ErrorKind::Malformed, e.to_string()))?;
        let profile = self.profile();
        let events = batch
            .records
            .into_iter()
            .map(|r| mapping::record_event(r, profile))
            .collect();
        Ok(Frame {
            events,
            lenient: vec![LENIENT_CCE_RECORD_LENGTH; batch.inconsistent],
            ..Default::default()
        })
    }

    /// `D00,<file>,<total>,<index>,<bytes>`: one chunk of a photo.
    fn photo_chunk(&mut self, f: &RawFrame) -> Result<Frame, DecodeError> {
        let malformed = |why: &str| Self::refuse(ErrorKind::Malformed, format!("D00 {why}"));
        let mut parts = f.data.splitn(4, |&b| b == b',');
        let (Some(name), Some(total), Some(index), Some(chunk)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("fields"));
        };
        let number = |b: &[u8]| -> Option<u32> {
            (!b.is_empty() && b.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(b).ok()?.parse().ok())
                .flatten()
        };
        let (Some(total), Some(index)) = (number(total), number(index)) else {
            return Err(malformed("chunk numbers"));
        };
        let name_ok = !name.is_empty()
            && name.len() <= 255
            && name
                .iter()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'*'));
        if !name_ok || total == 0 || index >= total {
            return Err(malformed("file name or chunk numbers"));
        }
        let file_name = String::from_utf8_lossy(name).into_owned();
        let imei = f.imei.as_str();
        let request = |next: u32| {
            frame::encode(
                PHOTO_FLAG,
                imei,
                format!("D00,{file_name},{next}").as_bytes(),
            )
        };
        let last = total - 1;
        let end_of_run = (index + 1) % PHOTO_RUN == 0 && index < last;
        match file::push(
            &mut self.photo,
            name,
            index,
            last,
            None,
            chunk,
            self.max_file,
        ) {
            Ok(file::Progress::Stored | file::Progress::Duplicate) => Ok(Frame {
                reply: end_of_run.then(|| request(index + 1)),
                ..Default::default()
            }),
            Ok(file::Progress::Complete(up)) => Ok(Frame {
                events: vec![mapping::file_event(file_name, up.data)],
                ..Default::default()
            }),
            Err(file::Refused::OutOfOrder { expected, .. }) => {
                // A chunk was lost: at the end of a run (or of the file) ask again from the
                // first one missing, once per run rather than once per chunk.
                let mut e = Self::refuse(
                    ErrorKind::BadValue,
                    format!("D00 chunk {index} out of order (expected {expected})"),
                );
                if (index + 1) % PHOTO_RUN == 0 || index == last {
                    e = e.with_reply(request(expected));
                }
                Err(e)
            }
            Err(refused) => {
                self.photo = None;
                Err(Self::refuse(ErrorKind::BadValue, format!("D00: {refused}")))
            }
        }
    }

    /// Any other command: the device's answer to one of ours.
    fn answer(&mut self, f: &RawFrame) -> Frame {
        let command = f.command_str();
        let event = mapping::answer_event(f.flag, command, &f.data);
        let outcome = match &event.text {
            Some(t) => AnswerOutcome::Text(t.clone()),
            None => AnswerOutcome::Bytes(f.data.clone()),
        };
        let mut reply = None;
        if &f.command == command::PHOTO {
            // The photo is taken: ask for it from its first chunk.
            self.photo = None;
            reply = Some(frame::encode(
                PHOTO_FLAG,
                &f.imei,
                format!("D00,{},0", self.photo_file).as_bytes(),
            ));
        }
        Frame {
            events: vec![event],
            reply,
            answers: vec![CommandAnswer {
                tag: Some(command::tag(f.flag, &f.command)),
                outcome,
            }],
            ..Default::default()
        }
    }
}

impl ProtocolSession for Session {
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        _now: SystemTime,
    ) -> Result<Option<Frame>, DecodeError> {
        match frame::split(buf, self.max_frame) {
            Split::Incomplete => {
                if self.udp {
                    return DecodeError::datagram_leftover(buf, "frame");
                }
                Ok(None)
            }
            Split::Skip(n, why) => {
                buf.advance(n.min(buf.len()));
                let (kind, detail) = match why {
                    Reject::Garbage => (
                        ErrorKind::Malformed,
                        format!("skipped {n} bytes before the next `$$`"),
                    ),
                    Reject::BadChecksum => (
                        ErrorKind::BadChecksum,
                        format!("checksum mismatch in a {n}-byte frame; not answered"),
                    ),
                    Reject::BadLength => (
                        ErrorKind::BadLength,
                        "the length does not land on `*<checksum>\\r\\n`; resynchronising"
                            .to_string(),
                    ),
                    Reject::TooLarge => (
                        ErrorKind::TooLarge,
                        format!(
                            "the length exceeds the {}-byte frame cap; resynchronising",
                            self.max_frame
                        ),
                    ),
                    Reject::Malformed => (
                        ErrorKind::Malformed,
                        "unusable device id or command".to_string(),
                    ),
                };
                Err(Self::refuse(kind, detail))
            }
            Split::Frame(f, total) => {
                buf.advance(total.min(buf.len()));
                self.handle(f).map(Some)
            }
        }
    }

    fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn last_command_tag(&self) -> Option<u32> {
        self.last_tag
    }

    fn encode_command(&mut self, request: &CommandRequest) -> Result<Bytes, CommandError> {
        let Some(imei) = self.imei.clone() else {
            return Err(CommandError::Invalid(
                "the device has not identified itself yet".into(),
            ));
        };
        let content = command::content(request)?;
        let name = command::name_of(&content);
        let flag = self.next_flag;
        let out = frame::encode(flag, &imei, content.as_bytes());
        if out.len() > self.max_frame {
            return Err(CommandError::Invalid(
                "command longer than the frame cap".into(),
            ));
        }
        if &name == command::PHOTO {
            self.photo_file = command::photo_file(&content)
                .unwrap_or(DEFAULT_PHOTO_FILE)
                .to_string();
        }
        self.next_flag = command::next_flag(flag);
        self.last_tag = Some(command::tag(flag, &name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
