//! Session tests: exact `+SACK` replies per message kind and per `sack` setting, identity,
//! checksums of both binary forms (a corrupted frame is refused and answered with nothing),
//! framing whole / byte by byte / split at every point, UDP datagrams, event ids of buffered
//! replays, and commands with their answers matched by serial.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

use super::*;
use crate::protocol::AnswerOutcome;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_217_550)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn session(transport: Transport) -> Session {
    Session::new(transport, &ProtocolConfig::default())
}

fn with(key: &str, value: &str) -> Session {
    Session::new(
        Transport::Tcp,
        &ProtocolConfig::default().with(NAME, key, value),
    )
}

/// Everything `decode` gives for `bytes` fed in chunks of `size` (0 = all at once).
fn feed(s: &mut Session, bytes: &[u8], size: usize) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let step = if size == 0 { bytes.len().max(1) } else { size };
    for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match s.decode(&mut buf, now()) {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(f)),
                Err(e) => out.push(Err(e)),
            }
            if buf.is_empty() || (buf.len() == before && out.last().is_some_and(Result::is_err)) {
                break;
            }
        }
    }
    out
}

fn one(s: &mut Session, bytes: &[u8]) -> Frame {
    let mut out = feed(s, bytes, 0);
    assert_eq!(out.len(), 1, "{out:?}");
    out.remove(0).expect("decodes")
}

fn reply(f: &Frame) -> Option<&str> {
    f.reply.as_deref().map(|b| std::str::from_utf8(b).unwrap())
}

const HBD: &str = "+ACK:GTHBD,1A0401,135790246811220,,20100214093254,11F0$";
const FRI: &str = "+RESP:GTFRI,DF0200,868487004353181,cv100,14051,10,1,0,0.0,0,264.1,114.015515,22.537178,20210608064328,0460,0001,25F8,061A7D02,,0.0,,,,100,21,,,,20210608144354,32DB$";
/// The same record replayed from the device's buffer.
const FRI_BUFF: &str = "+BUFF:GTFRI,DF0200,868487004353181,cv100,14051,10,1,0,0.0,0,264.1,114.015515,22.537178,20210608064328,0460,0001,25F8,061A7D02,,0.0,,,,100,21,,,,20210608144354,32DB$";
/// Compact (Protocol Pro) report, CRC-8 `f8`.
const COMPACT: &str = "2b000038000865134050947226820300030000216a3ed6f101895000521629fa8b28f402ac1a8e6a3ed6f100001600000010f505010ff824";
/// Classic binary `+EVT`, CRC-16 `5c6e`.
const CLASSIC: &str = "2b4556540c00fc1fbf005c4501010108563254030003430564312a41090100000000003f007dff75a11a025c6a7807e1070a14041202680003189c1ac500000000000000000000000000000000000007e1070b041134054e5c6e0d0a";

#[test]
fn heartbeat_is_answered_with_its_version_and_count_and_identifies_the_device() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, HBD.as_bytes());
    assert_eq!(reply(&f), Some("+SACK:GTHBD,1A0401,11F0$"));
    assert_eq!(f.login.as_deref(), Some("135790246811220"));
    assert_eq!(s.imei(), Some("135790246811220"));
    // Even with SACKs limited to heartbeats.
    let mut s = with(SACK, "heartbeat");
    assert_eq!(
        reply(&one(&mut s, HBD.as_bytes())),
        Some("+SACK:GTHBD,1A0401,11F0$")
    );
}

#[test]
fn reports_are_sacked_with_their_count_unless_sacks_are_for_heartbeats_only() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, FRI.as_bytes());
    assert_eq!(reply(&f), Some("+SACK:32DB$"));
    assert_eq!(f.login.as_deref(), Some("868487004353181"));
    assert_eq!(f.events.len(), 1);
    let p = f.events[0].position.as_ref().expect("a position");
    assert!((p.latitude - 22.537178).abs() < 1e-9 && (p.longitude - 114.015515).abs() < 1e-9);
    // The next message of the same device is no new login.
    assert_eq!(one(&mut s, FRI_BUFF.as_bytes()).login, None);

    let mut s = with(SACK, "heartbeat");
    let f = one(&mut s, FRI.as_bytes());
    assert_eq!(f.reply, None);
    assert_eq!(f.events.len(), 1);
}

#[test]
fn a_buffered_replay_gets_the_event_ids_of_the_real_time_report() {
    let mut s = session(Transport::Tcp);
    let live = one(&mut s, FRI.as_bytes());
    let replay = one(&mut s, FRI_BUFF.as_bytes());
    assert_eq!(live.digest, replay.digest);
    assert_eq!(reply(&replay), Some("+SACK:32DB$"));
}

#[test]
fn compact_frames_are_checked_by_crc8_and_sacked() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, &h(COMPACT));
    assert_eq!(reply(&f), Some("+SACK:010F$"));
    assert!(!f.events.is_empty());
    assert_eq!(f.login.as_deref(), Some("865134050947226"));

    let mut bad = h(COMPACT);
    let crc = bad.len() - 2;
    bad[crc] ^= 0x01;
    let mut s = session(Transport::Tcp);
    let out = feed(&mut s, &bad, 0);
    let err = out.iter().find_map(|r| r.as_ref().err()).expect("refused");
    assert_eq!(err.kind, ErrorKind::BadChecksum);
    assert_eq!(err.reply, None);
    assert!(out.iter().all(|r| r.as_ref().is_err()), "{out:?}");
    assert_eq!(s.imei(), None);
}

#[test]
fn classic_binary_is_checked_by_crc16_and_never_answered() {
    let mut s = session(Transport::Tcp);
    let f = one(&mut s, &h(CLASSIC));
    assert_eq!(
        f.reply, None,
        "the classic form has no server acknowledgement"
    );
    assert!(f.events.iter().any(|e| e.position.is_some()));

    // A flipped payload byte (the CRC no longer matches).
    let mut bad = h(CLASSIC);
    bad[40] ^= 0x10;
    let mut s = session(Transport::Tcp);
    let out = feed(&mut s, &bad, 0);
    assert!(
        out.iter()
            .any(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::BadChecksum)),
        "{out:?}"
    );
    assert!(out.iter().all(|r| r.is_err()), "{out:?}");
}

#[test]
fn a_stream_splits_the_same_at_every_chunk_size() {
    let mut stream = Vec::new();
    stream.extend_from_slice(HBD.as_bytes());
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(FRI.as_bytes());
    stream.extend_from_slice(&h(COMPACT));
    stream.extend_from_slice(FRI_BUFF.as_bytes());
    let whole: Vec<_> = feed(&mut session(Transport::Tcp), &stream, 0)
        .into_iter()
        .map(|r| reply(&r.unwrap()).map(str::to_string))
        .collect();
    assert_eq!(
        whole,
        [
            Some("+SACK:GTHBD,1A0401,11F0$".to_string()),
            Some("+SACK:32DB$".into()),
            Some("+SACK:010F$".into()),
            Some("+SACK:32DB$".into()),
        ]
    );
    for size in 1..=17 {
        let got: Vec<_> = feed(&mut session(Transport::Tcp), &stream, size)
            .into_iter()
            .map(|r| reply(&r.unwrap()).map(str::to_string))
            .collect();
        assert_eq!(got, whole, "chunks of {size}");
    }
}

#[test]
fn a_datagram_is_one_message_and_one_without_its_count_is_not_acknowledged() {
    let mut s = session(Transport::Udp);
    assert_eq!(reply(&one(&mut s, FRI.as_bytes())), Some("+SACK:32DB$"));
    // Over UDP the datagram ends the message, `$` or not (devices omit it there); without the
    // count field there is nothing to echo, so nothing is written and the device resends.
    let cut = &FRI.as_bytes()[..FRI.len() - 10];
    let mut s = session(Transport::Udp);
    let f = one(&mut s, cut);
    assert_eq!(f.reply, None);
    // Over TCP the same bytes wait for their end.
    let mut s = session(Transport::Tcp);
    assert!(feed(&mut s, cut, 0).is_empty());
}

#[test]
fn a_binary_message_without_an_imei_before_identification_is_refused() {
    // `+ACK` classic: carries the device name, not the IMEI (report mask without bit 1).
    let ack = "2b41434b017f244501010108676231303000000000ffff07e1070b03112d054dfe030d0a";
    let mut s = session(Transport::Tcp);
    let out = feed(&mut s, &h(ack), 0);
    assert!(
        matches!(out.as_slice(), [Err(e)] if e.kind == ErrorKind::NotLoggedIn && e.reply.is_none()),
        "{out:?}"
    );
    // After a message that names the device, the same frame is the device's.
    one(&mut s, HBD.as_bytes());
    let f = one(&mut s, &h(ack));
    assert_eq!(f.login, None);
    assert_eq!(f.answers.len(), 1, "a command answer");
}

#[test]
fn typed_commands_carry_a_serial_that_the_answer_echoes() {
    // A GV300 (`06` in its protocol version) identifies itself.
    let mut s = session(Transport::Tcp);
    let fri = "+RESP:GTFRI,060402,862894021808798,,,10,1,1,0.0,349,394.3,-63.287717,-17.662410,20160116234031,0736,0003,6ABA,8305,00,3326.8,,,,94,220100,,,,20160116194035,4D83$";
    assert_eq!(reply(&one(&mut s, fri.as_bytes())), Some("+SACK:4D83$"));
    let cmd = s
        .encode_command(&CommandRequest::OutputSet { index: 1, on: true })
        .unwrap();
    assert_eq!(&cmd[..], b"AT+GTOUT=gv300,1,0,0,,,,,,,,,,,,,,0001$");
    assert_eq!(s.last_command_tag(), Some(1));
    let next = s.encode_command(&CommandRequest::PositionRequest).unwrap();
    assert!(next.ends_with(b",0002$"), "{next:?}");
    assert_eq!(s.last_command_tag(), Some(2));

    // The device's answer echoes the serial: matched, and SACKed after delivery.
    let answer = "+ACK:GTOUT,060402,862894021808798,,0002,20160116194040,4D84$";
    let f = one(&mut s, answer.as_bytes());
    assert_eq!(reply(&f), Some("+SACK:4D84$"));
    assert_eq!(f.answers.len(), 1);
    assert_eq!(f.answers[0].tag, Some(2));
    assert!(
        matches!(&f.answers[0].outcome, AnswerOutcome::Text(t) if t.contains("GTOUT")),
        "{:?}",
        f.answers[0].outcome
    );
}

#[test]
fn a_personal_tracker_refuses_output_commands_with_a_reason() {
    // A GL300 (`1A`): no digital outputs.
    let mut s = session(Transport::Tcp);
    one(&mut s, HBD.as_bytes());
    let err = s.encode_command(&CommandRequest::EngineStop).unwrap_err();
    assert!(err.to_string().contains("GTOUT"), "{err}");
    assert_eq!(s.last_command_tag(), None);
}
