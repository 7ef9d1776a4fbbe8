//! The harness of the conformance tests (`tests/conformance_*.rs`): what replaying Traccar's
//! test frames through a protocol session takes whatever the protocol.
//!
//! - **The frame vectors** ([`entries`], [`groups`], [`bytes_of`]): the entries of one
//!   protocol from `tests/data/traccar-frames*.json`, grouped (by test method, transport…) and
//!   in `seq` order within a group.
//! - **Decoding** ([`decode_all`]): a byte string through a session until it asks for more
//!   bytes or an error closes the stream, with what is left over.
//! - **The known-gap ledger** ([`Ledger`]): a frame or an assert we do not match is a failure
//!   unless listed with its reason; a listed one that matches fails too ("matches now"), and
//!   so does a listed one never met, so the list stays true.
//! - **Traccar's asserts** that read the same everywhere ([`position_assert`],
//!   [`verify_position`], [`same_alarms`], [`traccar_alarm`], [`parse_iso`]), and the score of
//!   asserts checked frame by frame ([`Score`]) or key by key ([`Tally`]).
//! - **Raw survival** ([`RawCheck`], [`raw_exactly`]): values re-read from the frame bytes by
//!   the test, looked up in the event's `raw`.
//!
//! Everything here reads the frames independently of the gateway: nothing of the decoders,
//! encoders or mappings is used.

use std::collections::BTreeMap;
use std::time::SystemTime;

use avlgate::proto::raw_value::Value as RawV;
use avlgate::proto::{Alarm, TelemetryEvent, Transport};
use avlgate::protocol::{Action, DecodeError, Frame, ProtocolSession};
use bytes::BytesMut;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The frame vectors

/// Traccar's frames of Teltonika, Wialon IPS and GT06.
pub const FRAMES: &str = "traccar-frames.json";
/// Traccar's frames of the protocols added later.
pub const MORE_FRAMES: &str = "traccar-frames-more.json";

/// Every entry of `protocol` in `tests/data/<file>`, in file order.
pub fn entries(file: &str, protocol: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let all: Vec<Value> = serde_json::from_str(&text).unwrap();
    all.into_iter()
        .filter(|e| e["protocol"] == protocol)
        .collect()
}

/// `entries` grouped by `key`, each group in `seq` order (file order among equal ones).
pub fn groups<'a, K: Ord>(
    entries: impl IntoIterator<Item = &'a Value>,
    key: impl Fn(&Value) -> K,
) -> BTreeMap<K, Vec<&'a Value>> {
    let mut out: BTreeMap<K, Vec<&Value>> = BTreeMap::new();
    for e in entries {
        out.entry(key(e)).or_default().push(e);
    }
    for list in out.values_mut() {
        list.sort_by_key(|e| e["seq"].as_u64());
    }
    out
}

/// The entry's test method (`Gt06ProtocolDecoderTest.testDecode`).
pub fn test_of(e: &Value) -> String {
    e["test"].as_str().unwrap().to_string()
}

/// The entry's transport (`udp`, else TCP).
pub fn transport_of(e: &Value) -> Transport {
    if e["transport"] == "udp" {
        Transport::Udp
    } else {
        Transport::Tcp
    }
}

pub fn seq_of(e: &Value) -> u64 {
    e["seq"].as_u64().unwrap()
}

/// The entry's frame: hex-decoded when its encoding is `hex`, else its text.
pub fn bytes_of(e: &Value) -> Vec<u8> {
    let f = e["frame"].as_str().unwrap();
    if e["encoding"] == "hex" {
        hex::decode(f).unwrap()
    } else {
        f.as_bytes().to_vec()
    }
}

/// Traccar's asserts of the entry, by key.
pub fn asserts(e: &Value) -> impl Iterator<Item = (&String, &Value)> {
    e["asserts"].as_object().into_iter().flatten()
}

/// How many asserts the entry has.
pub fn assert_count(e: &Value) -> usize {
    e["asserts"].as_object().map_or(0, |a| a.len())
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// What decoding a byte string on one session gave.
#[derive(Debug)]
pub struct Decoded {
    /// Every frame and every refusal, in order.
    pub results: Vec<Result<Frame, DecodeError>>,
    /// Bytes the session left waiting for more.
    pub left: usize,
    /// Whether an error closed the stream (decoding stopped there).
    pub closed: bool,
}

/// Decodes `bytes` on `s` at `now` until the session asks for more bytes or an error closes
/// the stream.
pub fn decode_all(s: &mut dyn ProtocolSession, bytes: &[u8], now: SystemTime) -> Decoded {
    let mut buf = BytesMut::from(bytes);
    let mut results = Vec::new();
    let mut closed = false;
    loop {
        match s.decode(&mut buf, now) {
            Ok(None) => break,
            Ok(Some(f)) => results.push(Ok(f)),
            Err(e) => {
                closed = e.action == Action::Close;
                results.push(Err(e));
                if closed {
                    break;
                }
            }
        }
    }
    Decoded {
        results,
        left: buf.len(),
        closed,
    }
}

impl Decoded {
    /// Panics when an error closed the stream.
    pub fn continued(self) -> Self {
        assert!(
            !self.closed,
            "an error closed the stream: {:?}",
            self.results
        );
        self
    }

    /// Panics when bytes were left waiting.
    pub fn drained(self) -> Self {
        assert_eq!(self.left, 0, "bytes left over: {:?}", self.results);
        self
    }

    pub fn frames(&self) -> Vec<&Frame> {
        self.results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .collect()
    }

    pub fn errors(&self) -> Vec<&DecodeError> {
        self.results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .collect()
    }
}

/// The frame of a well-formed message: exactly one, and no error; otherwise a failure.
pub fn only_frame<'a>(
    name: &str,
    frames: &[&'a Frame],
    errors: &[&DecodeError],
    failures: &mut Vec<String>,
) -> Option<&'a Frame> {
    let [f] = frames else {
        failures.push(format!(
            "{name}: valid frame gave {} frames, errors {errors:?}",
            frames.len()
        ));
        return None;
    };
    if !errors.is_empty() {
        failures.push(format!("{name}: valid frame gave errors {errors:?}"));
        return None;
    }
    Some(f)
}

/// Whether a damaged message was refused: no frame, an error for it, and no reply.
pub fn refused_silently(frames: &[&Frame], errors: &[&DecodeError]) -> bool {
    frames.is_empty() && !errors.is_empty() && errors.iter().all(|e| e.reply.is_none())
}

// ---------------------------------------------------------------------------------------------
// The known-gap ledger

/// The verdict on one frame or assert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It matches (and is not listed).
    Matched,
    /// It does not match, and is listed with its reason.
    Gap,
    /// A failure: it does not match and is not listed, or it is listed and matches now.
    Failed,
}

/// Frames or asserts we do not match, each with its reason, kept true: every listed key must
/// be met as a gap.
pub struct Ledger {
    listed: Vec<(String, &'static str)>,
    /// Keys met as gaps, or met matching (each already a failure).
    met: Vec<String>,
}

impl Ledger {
    /// `listed`: (key, reason); a key is whatever the test records under (`#12`,
    /// `testDecode#12 fuel`).
    pub fn new(listed: impl IntoIterator<Item = (String, &'static str)>) -> Self {
        Ledger {
            listed: listed.into_iter().collect(),
            met: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.listed.len()
    }

    /// The verdict on `key` (`name` in messages) given what is wrong with it (nothing: it
    /// matches). A gap is printed with its reason; a failure is added to `failures`.
    pub fn record(
        &mut self,
        name: &str,
        key: &str,
        problems: &[String],
        failures: &mut Vec<String>,
    ) -> Verdict {
        let reason = self.listed.iter().find(|(k, _)| k == key).map(|(_, r)| *r);
        match (reason, problems.is_empty()) {
            (None, true) => Verdict::Matched,
            (None, false) => {
                failures.push(format!("{name}: {}", problems.join("; ")));
                Verdict::Failed
            }
            (Some(why), false) => {
                self.met.push(key.to_string());
                eprintln!("  gap {name}: {why} [{}]", problems.join("; "));
                Verdict::Gap
            }
            (Some(why), true) => {
                self.met.push(key.to_string());
                failures.push(format!(
                    "{name} matches now: remove it from KNOWN_GAPS ({why})"
                ));
                Verdict::Failed
            }
        }
    }

    /// Adds a failure for every listed key never met.
    pub fn finish(&self, failures: &mut Vec<String>) {
        for (k, why) in &self.listed {
            if !self.met.contains(k) {
                failures.push(format!("KNOWN_GAPS lists {k} ({why}) but it was not met"));
            }
        }
    }
}

/// Prints the failures and fails when there are any.
pub fn fail_on(failures: &[String]) {
    for f in failures {
        eprintln!("  FAIL {f}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
}

// ---------------------------------------------------------------------------------------------
// Traccar's asserts

pub fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps
}

/// `2015-10-20T14:21:11.000Z` → seconds since the epoch (H. Hinnant's days from civil).
pub fn parse_iso(s: &str) -> i64 {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

/// (y, m, d, hh, mm, ss) of seconds since the epoch (H. Hinnant's civil from days).
pub fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

/// The asserts on the position every protocol checks the same way: `latitude` and
/// `longitude` (to 10⁻⁵ °, as Traccar compares), `valid`, `fixTime` (our `device_time`),
/// `course`, `altitude`, and `speed` (Traccar's knots, ours km/h, to 0.01). `None`: not a
/// position key.
pub fn position_assert(e: &TelemetryEvent, key: &str, want: &Value) -> Option<bool> {
    let p = e.position.as_ref();
    let num = want.as_f64();
    let near = |got: Option<f64>, eps: f64| got.zip(num).is_some_and(|(g, w)| (g - w).abs() < eps);
    Some(match key {
        "latitude" => near(p.map(|p| p.latitude), 1e-5),
        "longitude" => near(p.map(|p| p.longitude), 1e-5),
        "valid" => p.map(|p| p.valid) == want.as_bool(),
        "fixTime" => e.device_time.as_ref().map(|t| t.seconds) == want.as_str().map(parse_iso),
        "course" => near(p.and_then(|p| p.course), 1e-6),
        "altitude" => near(p.and_then(|p| p.altitude), 1e-6),
        "speed" => p
            .and_then(|p| p.speed)
            .zip(num)
            .is_some_and(|(g, w)| close(g, w * 1.852, 0.01)),
        _ => return None,
    })
}

/// An assert's outcome: `Ok`, or what the event holds instead of `want`.
pub fn outcome(ok: bool, e: &TelemetryEvent, key: &str, want: &Value) -> Result<(), String> {
    if ok {
        return Ok(());
    }
    Err(format!(
        "{key}: want {want}, got position {:?} time {:?} telemetry {:?} alarms {:?} towers {:?} raw {:?}",
        e.position,
        e.device_time,
        e.telemetry,
        alarm_names(e),
        e.cell_towers,
        e.raw
    ))
}

/// Whether the event has what Traccar's `verifyPosition` asks: a fix in range with a time.
pub fn has_fix_with_time(e: &TelemetryEvent) -> bool {
    e.position
        .as_ref()
        .is_some_and(|p| p.latitude.abs() <= 90.0 && p.longitude.abs() <= 180.0)
        && e.device_time.is_some()
}

/// Traccar's `verifyPosition` on one event, with what is missing.
pub fn verify_position(e: &TelemetryEvent) -> Result<(), String> {
    if has_fix_with_time(e) {
        Ok(())
    } else {
        Err(format!(
            "no position/time: {:?} {:?}",
            e.position, e.device_time
        ))
    }
}

/// A Traccar alarm name (`hardBraking`, `lowBattery`, `sos`) as our enum.
pub fn traccar_alarm(s: &str) -> Option<Alarm> {
    let snake = match s {
        // Traccar says "hard", the schema "harsh"; Traccar's one lowercase compound.
        "hardAcceleration" => "HARSH_ACCELERATION".to_string(),
        "hardBraking" => "HARSH_BRAKING".to_string(),
        "hardCornering" => "HARSH_CORNERING".to_string(),
        "lowspeed" => "LOW_SPEED".to_string(),
        _ => {
            let mut out = String::new();
            for c in s.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    };
    Alarm::from_str_name(&format!("ALARM_{snake}"))
}

/// Traccar's comma-joined `alarm` against our list: the same set.
pub fn same_alarms(e: &TelemetryEvent, want: &Value) -> bool {
    let want: Option<Vec<Alarm>> = want
        .as_str()
        .and_then(|s| s.split(',').map(traccar_alarm).collect::<Option<Vec<_>>>());
    let mut ours: Vec<i32> = e.alarms.clone();
    ours.sort_unstable();
    want.is_some_and(|w| {
        let mut w: Vec<i32> = w.into_iter().map(|a| a as i32).collect();
        w.sort_unstable();
        w.dedup();
        w == ours
    })
}

/// Our alarms by name, for failure messages.
pub fn alarm_names(e: &TelemetryEvent) -> Vec<&'static str> {
    e.alarms
        .iter()
        .map(|a| Alarm::try_from(*a).map_or("?", |a| a.as_str_name()))
        .collect()
}

pub fn raw_uint(e: &TelemetryEvent, k: &str) -> Option<u64> {
    match e.raw_named(k)? {
        RawV::UintValue(v) => Some(*v),
        _ => None,
    }
}

pub fn raw_str<'a>(e: &'a TelemetryEvent, k: &str) -> Option<&'a str> {
    match e.raw_named(k)? {
        RawV::StringValue(s) => Some(s),
        _ => None,
    }
}

/// A raw value by id, as bytes.
pub fn raw_id_bytes(e: &TelemetryEvent, id: u32) -> Option<&[u8]> {
    match e.raw_id(id)? {
        RawV::BytesValue(b) => Some(b),
        _ => None,
    }
}

/// A numeric raw value (unsigned, signed or double) as a number.
pub fn number(v: &RawV) -> Option<f64> {
    match v {
        RawV::UintValue(u) => Some(*u as f64),
        RawV::IntValue(i) => Some(*i as f64),
        RawV::DoubleValue(d) => Some(*d),
        _ => None,
    }
}

/// The score of the frames Traccar checks as positions, each matching every assert or not.
#[derive(Default, Debug)]
pub struct Score {
    /// Frames scored.
    pub positions: usize,
    /// Frames matching every assert (and whatever else the caller checked).
    pub matched: usize,
    /// Frames that do not, listed in the ledger.
    pub known_gaps: usize,
    pub asserts: usize,
    pub asserts_matched: usize,
    /// Asserts on keys we have no counterpart for, listed with the reason.
    pub excluded_asserts: usize,
    /// Asserts missed in known-gap frames.
    pub asserts_in_gaps: usize,
}

impl Score {
    /// Scores one frame: every assert of `entry` against `ev` with `check` (`None` from it:
    /// the key has no counterpart, a miss unless `excluded` lists it). `ev` is `Err(why)` when
    /// there is nothing to compare (every assert missed); `problems` is what else the caller
    /// found wrong. The frame is recorded in `ledger` under `gap_key`.
    #[allow(clippy::too_many_arguments)]
    pub fn frame(
        &mut self,
        name: &str,
        gap_key: &str,
        entry: &Value,
        ev: Result<&TelemetryEvent, String>,
        mut problems: Vec<String>,
        check: impl Fn(&TelemetryEvent, &str, &Value) -> Option<Result<(), String>>,
        excluded: &[(&str, &str)],
        ledger: &mut Ledger,
        failures: &mut Vec<String>,
    ) -> Verdict {
        self.positions += 1;
        let n = assert_count(entry);
        self.asserts += n;
        let mut missed = 0;
        match ev {
            Err(why) => {
                missed = n;
                problems.push(why);
            }
            Ok(ev) => {
                for (k, v) in asserts(entry) {
                    match check(ev, k, v) {
                        Some(Ok(())) => self.asserts_matched += 1,
                        Some(Err(why)) => {
                            missed += 1;
                            problems.push(why);
                        }
                        None if excluded.iter().any(|(x, _)| x == k) => self.excluded_asserts += 1,
                        None => {
                            missed += 1;
                            problems.push(format!("unmapped assert {k}"));
                        }
                    }
                }
            }
        }
        let verdict = ledger.record(name, gap_key, &problems, failures);
        match verdict {
            Verdict::Matched => self.matched += 1,
            Verdict::Gap => {
                self.known_gaps += 1;
                self.asserts_in_gaps += missed;
            }
            Verdict::Failed => {}
        }
        verdict
    }

    /// The summary line of the asserts (matched against `against`, e.g. `our vocabulary`).
    pub fn print_asserts(&self, against: &str) {
        eprintln!(
            "  asserted values matching {against}: {}/{} ({} on excluded keys, {} missed in known-gap frames)",
            self.asserts_matched, self.asserts, self.excluded_asserts, self.asserts_in_gaps
        );
    }

    /// The figures add up: every frame matched or is a listed gap, every listed gap was met,
    /// every assert matched, was excluded or missed in a gap.
    pub fn assert_consistent(&self, ledger: &Ledger) {
        assert_eq!(self.matched + self.known_gaps, self.positions);
        assert_eq!(self.known_gaps, ledger.len());
        assert_eq!(
            self.asserts_matched + self.excluded_asserts + self.asserts_in_gaps,
            self.asserts
        );
    }
}

/// Which part of our events an assert is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// That the frame decoded at all (`not_null`).
    Decoded,
    Position,
    Normalized,
    Alarm,
    Raw,
}

/// Asserts checked key by key: (matched, asserted) per place.
#[derive(Default, Debug)]
pub struct Tally(pub BTreeMap<Place, (usize, usize)>);

impl Tally {
    pub fn count(&mut self, place: Place, matched: bool) {
        let t = self.0.entry(place).or_default();
        t.1 += 1;
        t.0 += usize::from(matched);
    }

    pub fn get(&self, place: Place) -> (usize, usize) {
        self.0.get(&place).copied().unwrap_or_default()
    }

    /// (matched, asserted) over every place.
    pub fn total(&self) -> (usize, usize) {
        self.0
            .values()
            .fold((0, 0), |(m, a), (mm, aa)| (m + mm, a + aa))
    }
}

// ---------------------------------------------------------------------------------------------
// Raw survival

/// Checks raw values of one event against values the test re-read from the frame.
pub struct RawCheck<'a> {
    pub e: &'a TelemetryEvent,
    /// Values looked up.
    pub checked: usize,
    pub problems: Vec<String>,
}

impl<'a> RawCheck<'a> {
    pub fn new(e: &'a TelemetryEvent) -> Self {
        RawCheck {
            e,
            checked: 0,
            problems: Vec::new(),
        }
    }

    /// Whether `raw` holds `want` under the name `k` (a name may repeat).
    pub fn named(&mut self, k: &str, want: RawV) {
        self.checked += 1;
        let found = self
            .e
            .raw
            .iter()
            .any(|r| r.id.is_none() && r.name == k && r.value.as_ref() == Some(&want));
        if !found {
            self.problems.push(format!(
                "{k}: frame has {want:02x?}, raw {:02x?}",
                self.e.raw_named(k)
            ));
        }
    }

    /// Whether `raw` holds `want` under the id `id`.
    pub fn id(&mut self, id: u32, want: RawV) {
        self.checked += 1;
        let found = self
            .e
            .raw
            .iter()
            .any(|r| r.id == Some(id) && r.value.as_ref() == Some(&want));
        if !found {
            self.problems.push(format!(
                "{id:#x}: frame has {want:02x?}, raw {:02x?}",
                self.e.raw_id(id)
            ));
        }
    }

    /// An unsigned value under `k`; `None`: the frame is too short to hold it (a problem).
    pub fn uint(&mut self, k: &str, want: Option<u64>) {
        match want {
            Some(v) => self.named(k, RawV::UintValue(v)),
            None => self.problems.push(format!("{k}: not in the frame")),
        }
    }

    /// Bytes under `k`; `None`: the frame is too short to hold them (a problem).
    pub fn bytes(&mut self, k: &str, want: Option<&[u8]>) {
        match want {
            Some(v) => self.named(k, RawV::BytesValue(v.to_vec())),
            None => self.problems.push(format!("{k}: not in the frame")),
        }
    }

    /// Whether `raw` starts with the unsigned `first` and ends with the unsigned `last` (what
    /// frames every event of a message: its type, its serial).
    pub fn framed(&mut self, first: (&str, u64), last: (&str, u64)) {
        self.checked += 2;
        fn at(r: Option<&avlgate::proto::RawValue>) -> Option<(&str, Option<RawV>)> {
            r.map(|r| (r.name.as_str(), r.value.clone()))
        }
        let (got_first, got_last) = (at(self.e.raw.first()), at(self.e.raw.last()));
        if got_first != Some((first.0, Some(RawV::UintValue(first.1)))) {
            self.problems.push(format!("first raw {got_first:?}"));
        }
        if got_last != Some((last.0, Some(RawV::UintValue(last.1)))) {
            self.problems.push(format!("last raw {got_last:?}"));
        }
    }

    /// The big-endian unsigned number `b` under `k`.
    pub fn be(&mut self, k: &str, b: &[u8]) {
        self.named(k, RawV::UintValue(be(b)));
    }
}

/// A big-endian unsigned number.
pub fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x))
}

/// `raw` holds exactly `named` (by name) and `numbered` (by id), nothing else. Returns the
/// problems.
pub fn raw_exactly(
    e: &TelemetryEvent,
    named: &[(String, RawV)],
    numbered: &[(u32, RawV)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (n, v) in named {
        let found = e
            .raw
            .iter()
            .any(|r| r.id.is_none() && r.name == *n && r.value.as_ref() == Some(v));
        if !found {
            problems.push(format!("raw {n} = {v:?} missing (raw: {:?})", e.raw));
        }
    }
    for (id, v) in numbered {
        if !e
            .raw
            .iter()
            .any(|r| r.id == Some(*id) && r.value.as_ref() == Some(v))
        {
            problems.push(format!("raw id {id:#x} = {v:?} missing (raw: {:?})", e.raw));
        }
    }
    if e.raw.len() != named.len() + numbered.len() {
        problems.push(format!(
            "raw holds {} values, the frame {}: {:?}",
            e.raw.len(),
            named.len() + numbered.len(),
            e.raw
        ));
    }
    problems
}
