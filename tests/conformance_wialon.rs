//! The Wialon IPS frames of Traccar's test suite (`tests/data/traccar-frames.json`, 27 of
//! them), replayed per test method and transport, in `seq` order, on one session each, through
//! the public session API, the way a device would send them (with `\r\n`).
//!
//! - **Checksums are strict.** Every 2.0 checksum is recomputed here (CRC-16/ARC, bit by bit,
//!   independent of the gateway's): a frame whose checksum does not match must be refused with
//!   the spec's checksum code and publish nothing (Traccar never checks; one 2.0 login of its
//!   suite has a wrong one). The replay then does what the device does after `#AL#10`: it logs
//!   in again with a correct checksum, so the frames after it still have a session.
//! - **Every other frame is answered as the spec says** (`#AL#1`, `#AP#`, `#ASD#1`, `#AD#1`,
//!   `#AB#<records>`; the expected bytes are built here) and yields the events it should: one
//!   per record (POSITION with coordinates, STATUS or LBS without), a HEARTBEAT per ping.
//! - **Traccar's asserts** are checked against our event: position keys against `position` and
//!   `device_time`; keys that name a normalized value against `telemetry` / `cell_towers` after
//!   unit conversion; keys that are the device's own parameter name against `raw`. The score is
//!   printed and asserted; a miss is a failure unless listed in [`KNOWN_GAPS`] with its reason,
//!   and a listed gap that starts matching fails too (so the list stays true).
//! - **Nothing is lost:** every value of every record (parameters under their own names with
//!   their declared types, inputs, outputs, ADCs, iButton, motion fields of records without
//!   coordinates) is re-parsed here from the frame text and looked up in `raw`.
//!
//! `cargo test --test conformance_wialon -- --nocapture` prints the figures.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{EventKind, TelemetryEvent};
use avlgate::protocol::wialon::MODULE;
use avlgate::protocol::{Action, DecodeError, ErrorKind, Frame, ProtocolConfig, ProtocolSession};
use common::conformance::{self as conf, Ledger, Place, Tally, Verdict};
use serde_json::Value;

/// Traccar asserts (seq, key) we do not match, and why. Empty: every assert matches.
const KNOWN_GAPS: &[(u64, &str, &str)] = &[];

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// CRC-16/ARC, bit by bit (the gateway uses a table).
fn crc16_arc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Whether a packet body's CRC field matches what precedes it; `None` when the body has no CRC
/// field. Presence follows the spec's layout: an SD with 11 fields, a D with 17, a 2.0 login
/// with 4, a `#B#` whose last `|` segment is not a record.
fn crc_matches(ty: &str, body: &str) -> Option<bool> {
    let fields = body.split(';').count();
    let (sep, present) = match ty {
        "SD" => (';', fields == 11),
        "D" => (';', fields == 17),
        "L" => (';', fields == 4 && body.starts_with("2.0;")),
        "B" => (
            '|',
            body.rsplit('|')
                .next()
                .is_some_and(|l| !l.is_empty() && !l.contains(';')),
        ),
        _ => (';', false),
    };
    if !present {
        return None;
    }
    let i = body.rfind(sep)?;
    let field = &body[i + 1..];
    let hex = field.trim_start_matches("0x").trim_start_matches("0X");
    let Ok(want) = u16::from_str_radix(hex, 16) else {
        return Some(false);
    };
    Some(want == crc16_arc(&body.as_bytes()[..=i]))
}

fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    conf::decode_all(s, bytes, now()).drained().results
}

/// One record body of a frame (CRC removed), as the spec lays it out.
fn records(ty: &str, body: &str, version2: bool) -> Vec<Vec<String>> {
    let body = match (ty, version2) {
        ("B", true) => &body[..body.rfind('|').unwrap()],
        (_, true) => &body[..body.rfind(';').unwrap()],
        _ => body,
    };
    let segs: Vec<&str> = if ty == "B" {
        body.split('|').filter(|s| !s.is_empty()).collect()
    } else {
        vec![body]
    };
    segs.iter()
        .map(|s| s.split(';').map(str::to_string).collect())
        .collect()
}

fn is_na(f: &str) -> bool {
    f.is_empty() || f == "NA"
}

/// Every value of one record, re-parsed here, looked up in `raw`. Returns (checked, problems).
fn raw_survives(fields: &[String], e: &TelemetryEvent) -> (usize, Vec<String>) {
    let mut expect: Vec<(String, RawV)> = Vec::new();
    let num = |f: &str| f.trim().parse::<f64>().unwrap();
    if is_na(&fields[2]) {
        for (i, n) in [(6, "speed"), (7, "course"), (8, "altitude")] {
            if !is_na(&fields[i]) {
                expect.push((n.into(), RawV::DoubleValue(num(&fields[i]))));
            }
        }
        if !is_na(&fields[9]) {
            expect.push(("sats".into(), RawV::UintValue(num(&fields[9]) as u64)));
        }
        if fields.len() == 16 && !is_na(&fields[10]) {
            expect.push(("hdop".into(), RawV::DoubleValue(num(&fields[10]))));
        }
    }
    if fields.len() == 16 {
        for (i, n) in [(11, "inputs"), (12, "outputs")] {
            if !is_na(&fields[i]) {
                expect.push((n.into(), RawV::UintValue(fields[i].parse().unwrap())));
            }
        }
        if !is_na(&fields[13]) {
            for (i, v) in fields[13].split(',').enumerate() {
                if !is_na(v) {
                    expect.push((format!("adc{}", i + 1), RawV::DoubleValue(num(v))));
                }
            }
        }
        if !is_na(&fields[14]) {
            expect.push(("ibutton".into(), RawV::StringValue(fields[14].clone())));
        }
        if !is_na(&fields[15]) {
            for p in fields[15].split(',') {
                let mut parts = p.splitn(3, ':');
                let (n, t, v) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let v = match t {
                    "1" => RawV::IntValue(v.parse().unwrap()),
                    "2" => RawV::DoubleValue(v.parse().unwrap()),
                    _ => RawV::StringValue(v.into()),
                };
                expect.push((n.into(), v));
            }
        }
    }
    let problems = conf::raw_exactly(e, &expect, &[]);
    (expect.len(), problems)
}

/// One Traccar assert against our event.
fn check(e: &TelemetryEvent, key: &str, want: &Value) -> (Place, Result<(), String>) {
    let t = e.telemetry();
    let num = want.as_f64();
    let close =
        |g: Option<f64>, w: Option<f64>| g.zip(w).is_some_and(|(g, w)| (g - w).abs() < 1e-6);
    let (place, ok) = match key {
        _ if conf::position_assert(e, key, want).is_some() => (
            Place::Position,
            conf::position_assert(e, key, want) == Some(true),
        ),
        "motion" => (Place::Normalized, t.motion == want.as_bool()),
        // Traccar renames Wialon `temp` to deviceTemp (°C) and `bat` to batteryLevel (%).
        "deviceTemp" => (Place::Normalized, close(t.device_temperature_celsius, num)),
        "batteryLevel" => (Place::Normalized, close(t.battery_percent, num)),
        "network" => {
            let want: Vec<(u64, u64, u64, u64)> = want["cellTowers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    let f = |k: &str| c[k].as_u64().unwrap();
                    (f("mcc"), f("mnc"), f("lac"), f("cid"))
                })
                .collect();
            let got: Vec<(u64, u64, u64, u64)> = e
                .cell_towers
                .iter()
                .map(|c| (c.mcc.into(), c.mnc.into(), c.lac, c.cell_id))
                .collect();
            (Place::Normalized, got == want)
        }
        // Anything else is a parameter Traccar keeps under the device's own name: ours is raw.
        other => {
            let got = match e.raw_named(other) {
                Some(RawV::IntValue(v)) => Some(*v as f64),
                Some(RawV::DoubleValue(v)) => Some(*v),
                Some(RawV::UintValue(v)) => Some(*v as f64),
                _ => None,
            };
            (Place::Raw, close(got, num))
        }
    };
    (place, conf::outcome(ok, e, key, want))
}

#[derive(Default)]
struct Figures {
    frames: usize,
    answered: usize,
    crc_refused: usize,
    crc_checked_ok: usize,
    records: usize,
    heartbeats: usize,
    lenient_frames: usize,
    raw_values_checked: usize,
    asserts: Tally,
}

#[test]
fn traccar_wialon_frames() {
    let all = conf::entries(conf::FRAMES, "wialon");
    let groups = conf::groups(&all, |e| {
        (
            conf::test_of(e),
            e["transport"].as_str().unwrap().to_string(),
        )
    });
    let mut fig = Figures::default();
    let mut failures: Vec<String> = Vec::new();
    let mut gaps = Ledger::new(
        KNOWN_GAPS
            .iter()
            .map(|(seq, key, why)| (format!("#{seq} {key}"), *why)),
    );
    for ((test, _), entries) in groups {
        let transport = conf::transport_of(entries[0]);
        let mut s = MODULE.new_session(transport, &ProtocolConfig::default());
        for entry in entries {
            fig.frames += 1;
            let seq = conf::seq_of(entry);
            let name = format!("{test}#{seq}");
            let frame_text = entry["frame"].as_str().unwrap();
            let wire = &entry["wire"];
            let ty = wire["type"].as_str().unwrap();
            let body = &frame_text[frame_text.find(&format!("#{ty}#")).unwrap() + ty.len() + 2..];
            let crc = crc_matches(ty, body);
            // The file's own verdict and ours agree (the file is not trusted blindly).
            assert_eq!(
                crc.map(|ok| if ok { "ok" } else { "mismatch" }),
                wire["crc"].as_str().filter(|c| *c != "absent"),
                "{name}: CRC"
            );
            let out = decode_all(s.as_mut(), format!("{frame_text}\r\n").as_bytes());
            let [outcome] = &out[..] else {
                failures.push(format!("{name}: {} outcomes: {out:?}", out.len()));
                continue;
            };
            if crc == Some(false) {
                // Strict: refused with the checksum code, nothing published, the session kept.
                match outcome {
                    Err(e)
                        if e.kind == ErrorKind::BadChecksum
                            && e.action == Action::Continue
                            && e.reply.as_deref() == Some(b"#AL#10\r\n".as_slice()) =>
                    {
                        fig.crc_refused += 1;
                    }
                    other => failures.push(format!("{name}: bad CRC not refused: {other:?}")),
                }
                // The device retries with a good checksum.
                let head = &body[..body.rfind(';').unwrap() + 1];
                let retry = format!("#L#{head}{:X}\r\n", crc16_arc(head.as_bytes()));
                let out = decode_all(s.as_mut(), retry.as_bytes());
                assert!(
                    matches!(&out[..], [Ok(f)] if f.reply.as_deref() == Some(b"#AL#1\r\n".as_slice())),
                    "{name}: retry {out:?}"
                );
                continue;
            }
            if crc == Some(true) {
                fig.crc_checked_ok += 1;
            }
            let f = match outcome {
                Ok(f) => f,
                Err(e) => {
                    failures.push(format!("{name}: refused: {e} ({:?})", e.reply));
                    continue;
                }
            };
            fig.answered += 1;
            if !f.lenient.is_empty() {
                fig.lenient_frames += 1;
                eprintln!("  {name}: accepted with quirks {:?}", f.lenient);
            }
            let recs = if matches!(ty, "SD" | "D" | "B") {
                records(ty, body, crc.is_some())
            } else {
                Vec::new()
            };
            let want_reply = match ty {
                "L" => "#AL#1\r\n".to_string(),
                "P" => "#AP#\r\n".to_string(),
                "SD" => "#ASD#1\r\n".to_string(),
                "D" => "#AD#1\r\n".to_string(),
                "B" => format!("#AB#{}\r\n", recs.len()),
                other => panic!("{name}: unexpected packet type {other}"),
            };
            if f.reply.as_deref() != Some(want_reply.as_bytes()) {
                failures.push(format!("{name}: reply {:?}, want {want_reply:?}", f.reply));
            }
            match ty {
                "L" => {
                    if !f.events.is_empty() {
                        failures.push(format!("{name}: a login published {:?}", f.events));
                    }
                    continue;
                }
                "P" => {
                    if f.events.len() == 1 && f.events[0].kind == EventKind::Heartbeat as i32 {
                        fig.heartbeats += 1;
                    } else {
                        failures.push(format!("{name}: ping gave {:?}", f.events));
                    }
                    continue;
                }
                _ => {}
            }
            if f.events.len() != recs.len() {
                failures.push(format!(
                    "{name}: {} events for {} records",
                    f.events.len(),
                    recs.len()
                ));
                continue;
            }
            for (fields, e) in recs.iter().zip(&f.events) {
                fig.records += 1;
                let located = !is_na(&fields[2]);
                let kind_ok = if located {
                    e.kind == EventKind::Position as i32 && e.position.is_some()
                } else {
                    (e.kind == EventKind::Status as i32 && e.cell_towers.is_empty())
                        || (e.kind == EventKind::Lbs as i32 && !e.cell_towers.is_empty())
                };
                if !kind_ok {
                    failures.push(format!("{name}: kind {} for {fields:?}", e.kind));
                }
                let (n, problems) = raw_survives(fields, e);
                fig.raw_values_checked += n;
                failures.extend(problems.into_iter().map(|p| format!("{name}: {p}")));
            }
            let e = &f.events[0];
            for (key, want) in conf::asserts(entry) {
                let (place, result) = check(e, key, want);
                let problems: Vec<String> = result.err().into_iter().collect();
                let verdict = gaps.record(
                    &format!("{name} {key}"),
                    &format!("#{seq} {key}"),
                    &problems,
                    &mut failures,
                );
                fig.asserts.count(place, verdict == Verdict::Matched);
            }
        }
    }
    gaps.finish(&mut failures);
    let (matched, asserted) = fig.asserts.total();
    eprintln!("Wialon IPS conformance (Traccar frames):");
    eprintln!(
        "  frames: {} = {} answered positively + {} refused for a bad checksum (2.0 CRCs that match: {})",
        fig.frames, fig.answered, fig.crc_refused, fig.crc_checked_ok
    );
    eprintln!(
        "  records: {} published (each checked for kind and raw), heartbeats: {}, frames accepted with tolerated quirks: {}",
        fig.records, fig.heartbeats, fig.lenient_frames
    );
    eprintln!(
        "  raw values re-parsed from the frames and found in raw: {}",
        fig.raw_values_checked
    );
    eprintln!(
        "  Traccar asserts matched: {matched}/{asserted} (position {:?}, normalized {:?}, raw {:?}; known gaps {})",
        fig.asserts.get(Place::Position),
        fig.asserts.get(Place::Normalized),
        fig.asserts.get(Place::Raw),
        KNOWN_GAPS.len()
    );
    conf::fail_on(&failures);
    // The figures themselves, so a regression slipping past the per-frame checks fails.
    assert_eq!(fig.frames, 27);
    assert_eq!(fig.crc_refused, 1);
    assert_eq!(fig.answered, 26);
    assert_eq!(fig.heartbeats, 1);
    assert_eq!(fig.records, 24);
    assert_eq!(fig.lenient_frames, 2);
    assert_eq!(matched + KNOWN_GAPS.len(), asserted);
    assert_eq!(
        fig.asserts.get(Place::Normalized),
        (4, 4),
        "motion, network, deviceTemp, batteryLevel"
    );
}
