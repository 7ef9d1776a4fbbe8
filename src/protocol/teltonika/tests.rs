//! Session-level tests: the spec's example frames fed whole, byte by byte and split at every
//! point; bad CRC; absurd lengths; several frames in one read; UDP.

use std::time::SystemTime;

use bytes::BytesMut;

use super::samples::{CODEC16, CODEC8, CODEC8E, LOGIN};
use super::*;
use crate::proto::raw_value::Value;

const IMEI: &str = "356307042441013";

fn tcp() -> Box<dyn ProtocolSession> {
    MODULE.new_session(Transport::Tcp, &ProtocolConfig::default())
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Feeds `input` in the given chunk sizes and collects every outcome.
fn feed(
    s: &mut dyn ProtocolSession,
    input: &[u8],
    chunk: usize,
) -> Vec<Result<Frame, DecodeError>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for part in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(part);
        loop {
            match s.decode(&mut buf, SystemTime::now()) {
                Ok(None) => break,
                Ok(Some(f)) => out.push(Ok(f)),
                Err(e) => {
                    let close = e.action == Action::Close;
                    out.push(Err(e));
                    if close {
                        return out;
                    }
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

fn ok(r: &Result<Frame, DecodeError>) -> &Frame {
    r.as_ref().expect("frame decodes")
}

#[test]
fn login_then_each_spec_example_gets_its_record_count_ack() {
    for (frame, count) in [(CODEC8, 1u32), (CODEC8E, 1), (CODEC16, 2)] {
        let mut s = tcp();
        let input = [h(LOGIN), h(frame)].concat();
        let out = feed(s.as_mut(), &input, input.len());
        assert_eq!(out.len(), 2);
        assert_eq!(ok(&out[0]).login.as_deref(), Some(IMEI));
        assert_eq!(ok(&out[0]).reply.as_deref(), Some(&[1u8][..]));
        let f = ok(&out[1]);
        assert_eq!(f.reply.as_deref(), Some(&count.to_be_bytes()[..]));
        assert_eq!(f.events.len(), count as usize);
        assert_eq!(s.imei(), Some(IMEI));
    }
}

#[test]
fn every_split_point_and_byte_by_byte_give_the_same_result() {
    let input = [h(LOGIN), h(CODEC8E), h(CODEC16), h(CODEC8)].concat();
    let whole: Vec<_> = feed(tcp().as_mut(), &input, input.len())
        .iter()
        .map(|r| ok(r).events.clone())
        .collect();
    assert_eq!(whole.len(), 4);
    for chunk in 1..input.len() {
        let got: Vec<_> = feed(tcp().as_mut(), &input, chunk)
            .iter()
            .map(|r| ok(r).events.clone())
            .collect();
        assert_eq!(got, whole, "chunk size {chunk}");
    }
}

#[test]
fn codec8_example_values() {
    let out = feed(tcp().as_mut(), &[h(LOGIN), h(CODEC8)].concat(), 4096);
    let e = &ok(&out[1]).events[0];
    assert_eq!(e.device_time.as_ref().unwrap().seconds, 1_560_161_086);
    assert_eq!(e.raw_named("priority"), Some(&Value::UintValue(1)));
    assert_eq!(e.raw_named("event_io"), Some(&Value::UintValue(1)));
    assert_eq!(e.raw_id(21), Some(&Value::UintValue(3)));
    assert_eq!(e.raw_id(1), Some(&Value::UintValue(1)));
    assert_eq!(e.raw_id(66), Some(&Value::UintValue(0x5E0F)));
    assert_eq!(e.raw_id(241), Some(&Value::UintValue(0x601A)));
    assert_eq!(e.raw_id(78), Some(&Value::UintValue(0)));
    // The vocabulary (FMB profile): GSM 3 of 5, DIN1 high, 24.079 V, operator 24602.
    let t = e.telemetry();
    assert_eq!(t.gsm_signal_percent, Some(60.0));
    assert_eq!(t.digital_inputs, Some(1));
    assert!((t.external_power_volts.unwrap() - 24.079).abs() < 1e-9);
    assert_eq!(t.gsm_operator.as_deref(), Some("24602"));
    assert_eq!(t.driver_id, None, "iButton 0 is no key");
    // Teltonika's documented sample has no fix since power-up: zero coordinates.
    assert!(e.position.is_none());
    assert_eq!(e.kind, EventKind::Status as i32);
}

#[test]
fn codec16_generation_type_is_recorded() {
    let out = feed(tcp().as_mut(), &[h(LOGIN), h(CODEC16)].concat(), 4096);
    let e = &ok(&out[1]).events[0];
    assert_eq!(e.raw_named("generation_type"), Some(&Value::UintValue(5)));
    assert_eq!(e.raw_named("event_io"), Some(&Value::UintValue(11)));
    assert_eq!(e.raw_id(11), Some(&Value::UintValue(0x27)));
}

#[test]
fn bad_crc_gets_no_ack_and_the_next_frame_still_decodes() {
    let mut bad = h(CODEC8);
    let n = bad.len();
    bad[n - 1] ^= 0xFF;
    let out = feed(tcp().as_mut(), &[h(LOGIN), bad, h(CODEC8)].concat(), 7);
    assert_eq!(out.len(), 3);
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadChecksum);
    assert_eq!(e.action, Action::Continue);
    assert!(e.reply.is_none(), "a bad CRC is never acknowledged");
    assert_eq!(ok(&out[2]).events.len(), 1);
}

#[test]
fn absurd_length_closes_before_buffering() {
    let mut s = tcp();
    let mut buf = BytesMut::from(&h(LOGIN)[..]);
    s.decode(&mut buf, SystemTime::now()).unwrap().unwrap();
    buf.extend_from_slice(&[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
    let e = s.decode(&mut buf, SystemTime::now()).unwrap_err();
    assert_eq!((e.kind, e.action), (ErrorKind::TooLarge, Action::Close));
}

#[test]
fn bad_login_is_refused_with_zero() {
    let mut s = tcp();
    let mut buf = BytesMut::from(&[0x00, 0x03, b'a', b'b', b'c'][..]);
    let e = s.decode(&mut buf, SystemTime::now()).unwrap_err();
    assert_eq!(e.reply.as_deref(), Some(&[0u8][..]));
    assert_eq!(e.action, Action::Close);
}

#[test]
fn keepalive_byte_is_swallowed() {
    let out = feed(
        tcp().as_mut(),
        &[h(LOGIN), vec![0xFF], h(CODEC8)].concat(),
        4096,
    );
    assert_eq!(out.len(), 3);
    assert!(ok(&out[1]).reply.is_none() && ok(&out[1]).events.is_empty());
}

#[test]
fn same_frame_twice_has_the_same_digest() {
    let out = feed(
        tcp().as_mut(),
        &[h(LOGIN), h(CODEC8), h(CODEC8), h(CODEC8E)].concat(),
        4096,
    );
    assert_eq!(ok(&out[1]).digest, ok(&out[2]).digest);
    assert_ne!(ok(&out[1]).digest, ok(&out[3]).digest);
}

#[test]
fn codec12_response_becomes_a_command_response_event_without_ack() {
    let data = command::encode_codec12(0x06, b"DOUT1:1 Timeout:INFINITY");
    let out = feed(
        tcp().as_mut(),
        &[h(LOGIN), frame::encode_tcp(&data)].concat(),
        4096,
    );
    let f = ok(&out[1]);
    assert!(f.reply.is_none());
    assert_eq!(f.events[0].kind, EventKind::CommandResponse as i32);
    assert_eq!(
        f.events[0].text.as_deref(),
        Some("DOUT1:1 Timeout:INFINITY")
    );
    assert_eq!(f.events[0].raw_named("codec"), Some(&Value::UintValue(12)));
    assert_eq!(
        f.answers,
        vec![crate::protocol::CommandAnswer {
            tag: None,
            outcome: crate::protocol::AnswerOutcome::Text("DOUT1:1 Timeout:INFINITY".into())
        }]
    );
}

#[test]
fn encode_command_is_codec12() {
    let mut s = tcp();
    let b = s
        .encode_command(&CommandRequest::Text("getinfo".into()))
        .unwrap();
    assert_eq!(
        hex::encode(b),
        "000000000000000f0c010500000007676574696e666f0100004312"
    );
}

#[test]
fn typed_commands_over_tcp_codec14_and_udp() {
    // TCP, Codec 12: ENGINE_STOP is `setdigout 1` in the TCP envelope.
    let mut s = tcp();
    let b = s.encode_command(&CommandRequest::EngineStop).unwrap();
    assert_eq!(
        hex::encode(b),
        "00000000000000130c01050000000b7365746469676f7574203101000087a2"
    );
    // Codec 14: the same text, addressed to the IMEI (8 bytes BCD, leading zero nibble).
    let limits = ProtocolConfig::default().with("teltonika", "command_codec", "14");
    let mut s14 = MODULE.new_session(Transport::Tcp, &limits);
    let mut login = BytesMut::from(&h(LOGIN)[..]);
    s14.decode(&mut login, SystemTime::now()).unwrap();
    let b = s14.encode_command(&CommandRequest::Reboot).unwrap();
    let data = &b[8..b.len() - 4];
    assert_eq!(
        hex::encode(data),
        format!(
            "0e0105{:08x}0356307042441013{}01",
            8 + 8,
            hex::encode("cpureset")
        )
    );
    // UDP: the UDP channel header (length, packet id, 0x01, packet id, IMEI), then the Codec 12
    // data without the TCP envelope's preamble and CRC.
    let dg = frame::encode_udp(0x0001, 0x01, IMEI, &h(CODEC8)[8..h(CODEC8).len() - 4]);
    let mut u = MODULE.new_session(Transport::Udp, &ProtocolConfig::default());
    u.decode(&mut BytesMut::from(&dg[..]), SystemTime::now())
        .unwrap()
        .unwrap();
    let b = u.encode_command(&CommandRequest::PositionRequest).unwrap();
    let mut want = vec![
        0x00,
        (2 + 1 + 1 + 2 + 15 + 14) as u8,
        0x00,
        0x01,
        0x01,
        0x01,
        0x00,
        0x0F,
    ];
    want.extend_from_slice(IMEI.as_bytes());
    want.extend_from_slice(&[0x0C, 0x01, 0x05, 0, 0, 0, 6]);
    want.extend_from_slice(b"getgps");
    want.push(0x01);
    assert_eq!(hex::encode(&b), hex::encode(&want));
    // The next datagram gets the next packet id.
    let b2 = u.encode_command(&CommandRequest::Reboot).unwrap();
    assert_eq!(&b2[2..4], &[0x00, 0x02]);
    // The device's Codec 12 answer over UDP is decoded, unacknowledged, as an answer.
    let answer = frame::encode_udp(
        0x0007,
        0x07,
        IMEI,
        &command::encode_codec12(0x06, b"GPS:1 Sat:7"),
    );
    let f = u
        .decode(&mut BytesMut::from(&answer[..]), SystemTime::now())
        .unwrap()
        .unwrap();
    assert_eq!(f.reply, None, "command answers are not acknowledged");
    assert_eq!(
        f.answers,
        vec![CommandAnswer {
            tag: None,
            outcome: crate::protocol::AnswerOutcome::Text("GPS:1 Sat:7".into())
        }]
    );
}

#[test]
fn udp_datagram_is_acked_with_its_packet_ids() {
    let data = &h(CODEC8)[8..h(CODEC8).len() - 4];
    let d = frame::encode_udp(0xCAFE, 0x05, IMEI, data);
    let mut s = MODULE.new_session(Transport::Udp, &ProtocolConfig::default());
    let mut buf = BytesMut::from(&d[..]);
    let f = s.decode(&mut buf, SystemTime::now()).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(f.login.as_deref(), Some(IMEI));
    assert_eq!(
        f.reply.as_deref(),
        Some(&[0x00, 0x05, 0xCA, 0xFE, 0x01, 0x05, 0x01][..])
    );
    assert_eq!(f.events.len(), 1);
    // The same device again: no second login.
    let mut buf = BytesMut::from(&d[..]);
    assert!(s
        .decode(&mut buf, SystemTime::now())
        .unwrap()
        .unwrap()
        .login
        .is_none());
    // A truncated datagram is refused without a reply.
    let mut buf = BytesMut::from(&d[..d.len() - 3]);
    let e = s.decode(&mut buf, SystemTime::now()).unwrap_err();
    assert!(e.reply.is_none());
    assert!(buf.is_empty());
}

proptest::proptest! {
    #[test]
    fn random_bytes_after_login_never_panic_and_never_leave_a_stuck_buffer(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let mut s = tcp();
        let mut buf = BytesMut::from(&h(LOGIN)[..]);
        s.decode(&mut buf, SystemTime::now()).unwrap();
        buf.extend_from_slice(&data);
        for _ in 0..data.len() + 1 {
            match s.decode(&mut buf, SystemTime::now()) {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) if e.action == Action::Close => break,
                Err(_) => {}
            }
        }
        // Whatever is left is less than one capped frame: nothing grows without bound.
        proptest::prop_assert!(buf.len() <= ProtocolConfig::default().settings("teltonika").max_frame_bytes());
    }
}

#[test]
fn a_frame_with_zero_records_is_acknowledged_with_zero() {
    // Codec 8, no records: devices send it and wait for the ACK `00000000`.
    let data = avl::encode(avl::Codec::C8, &[]);
    assert_eq!(data, [0x08, 0x00, 0x00]);
    let out = feed(
        tcp().as_mut(),
        &[h(LOGIN), frame::encode_tcp(&data)].concat(),
        4096,
    );
    assert_eq!(out.len(), 2, "{out:?}");
    let f = ok(&out[1]);
    assert!(f.events.is_empty());
    assert_eq!(f.reply.as_deref(), Some(&[0u8, 0, 0, 0][..]));
}
