//! Mapping rules: how one device value (a Teltonika IO id, a Wialon parameter, a GT06 status
//! field) becomes a normalized field or an alarm. A [`Profile`] is a set of rules keyed by the
//! value's numeric id or name; each protocol ships its profiles as data in its own
//! `mapping.rs`, and operators extend or override them in the profile file
//! (`vocab::profiles`) without code.
//!
//! The [`Mapper`] runs once per record: feed it every device value, then [`Mapper::finish`]
//! writes `telemetry`, `alarms` and the position's quality fields into the event.
//!
//! One value may feed several fields (a status byte whose bits are ignition, armed, an
//! alarm code, ...). Its rules are keyed `<name>.<label>` (`terminal_info.acc`): a named value
//! goes through the rule keyed by its name and every rule keyed `<name>.<anything>`. The label
//! only tells the rules apart, so operators can override or drop each one.

use std::borrow::Cow;

use crate::proto::{Alarm, Protocol, Telemetry, TelemetryEvent};

use super::field::{self, Converted, Field, Kind, PositionExtras};

/// How a device keys its values.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A numeric id (Teltonika IO id, JT/T 808 item id).
    Id(u32),
    /// A name (Wialon IPS parameter, GT06 status field).
    Name(Cow<'static, str>),
}

/// A device value as the mapper sees it: typed, borrowed, with the width of unsigned values
/// (a signed reading needs it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// An unsigned integer of `bytes` bytes (1, 2, 4 or 8).
    Uint(u64, u8),
    Int(i64),
    Double(f64),
    Text(&'a [u8]),
    Bytes(&'a [u8]),
}

impl Value<'_> {
    /// The value as a signed integer when `signed` (two's complement of its width), else as
    /// an unsigned one; text that spells a number counts too (Wialon sends numbers as text).
    fn number(&self, signed: bool) -> Option<f64> {
        match *self {
            Value::Uint(v, bytes) if signed => {
                let bits = u32::from(bytes.clamp(1, 8)) * 8;
                let shift = 64 - bits;
                Some((((v << shift) as i64) >> shift) as f64)
            }
            Value::Uint(v, _) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            Value::Double(v) => v.is_finite().then_some(v),
            Value::Text(t) => std::str::from_utf8(t)
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite()),
            Value::Bytes(b) if !b.is_empty() && b.len() <= 8 => {
                Some(b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)) as f64)
            }
            Value::Bytes(_) => None,
        }
    }

    /// The integer bits of the value, for bit extraction and code tables.
    fn bits(&self) -> Option<u64> {
        match *self {
            Value::Uint(v, _) => Some(v),
            Value::Int(v) => Some(v as u64),
            Value::Double(v) if v.is_finite() && v.fract() == 0.0 => Some(v as i64 as u64),
            Value::Text(t) => std::str::from_utf8(t).ok()?.trim().parse::<u64>().ok(),
            Value::Bytes(b) if !b.is_empty() && b.len() <= 8 => {
                Some(b.iter().fold(0u64, |a, &x| a << 8 | u64::from(x)))
            }
            _ => None,
        }
    }

    /// "Off": zero, or text that is empty, a zero number or `false` (devices send flags as
    /// text too).
    fn is_zero(&self) -> bool {
        match *self {
            Value::Uint(v, _) => v == 0,
            Value::Int(v) => v == 0,
            Value::Double(v) => v == 0.0,
            Value::Text(t) => {
                let t = t.trim_ascii();
                t.is_empty() || t.eq_ignore_ascii_case(b"false") || self.number(false) == Some(0.0)
            }
            Value::Bytes(b) => b.iter().all(|&x| x == 0),
        }
    }
}

/// How a value becomes text (driver ids, ICCIDs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Numbers in decimal; text as it is (lossy UTF-8); bytes as upper-case hex.
    #[default]
    Plain,
    /// Upper-case hex of the value's bytes, big-endian, zero-padded to its width.
    Hex,
    /// Upper-case hex of the value's bytes in reverse order (iButton ids sent little-endian).
    HexLe,
    /// The value's bytes as ASCII text, NULs and padding trimmed.
    Ascii,
}

/// What a rule writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A field; `index` (1-based) for indexed fields, 0 otherwise.
    Field {
        field: Field,
        index: u32,
    },
    /// One part of a text field assembled from several values, joined in part order
    /// (a tachograph card number sent as two 8-byte halves).
    TextPart {
        field: Field,
        part: u8,
    },
    /// Digital input / output `n` (1-based): the value is its state.
    Input(u8),
    Output(u8),
    /// Raised when the value is non-zero.
    Alarm(Alarm),
    /// The value is a code; each listed code raises its alarm.
    AlarmCodes(Cow<'static, [(u64, Alarm)]>),
    /// Known, deliberately not mapped (it stays in `raw` only). Lets a profile drop what
    /// the profile it extends maps.
    Ignore,
}

/// One mapping rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub target: Target,
    /// Numeric fields: value × scale + offset.
    pub scale: f64,
    pub offset: f64,
    /// Read `(shift, width)` bits of the integer value first.
    pub bits: Option<(u8, u8)>,
    /// Read an unsigned value as two's complement of its width.
    pub signed: bool,
    /// Text fields: how to write the value.
    pub format: Format,
    /// A zero value means "nothing" (iButton 0 = no key attached): skip it.
    pub zero_is_absent: bool,
    /// Apply only in the record this value triggered (Teltonika's event IO id): for values
    /// that say "entered" or "left" only at the moment it happened.
    pub event_only: bool,
    /// The device's valid range (inclusive, before scaling): a value outside it means "not
    /// known" (CSQ 99) and is skipped.
    pub valid: Option<(f64, f64)>,
    /// Apply only when this bit of the (integer) value is set: a flag bit that says whether
    /// the other bits mean anything (GT06's course word: bit 14 says bit 15 is ACC).
    pub when_bit: Option<u8>,
}

impl Rule {
    pub const fn new(target: Target) -> Rule {
        Rule {
            target,
            scale: 1.0,
            offset: 0.0,
            bits: None,
            signed: false,
            format: Format::Plain,
            zero_is_absent: false,
            event_only: false,
            valid: None,
            when_bit: None,
        }
    }

    /// A field, value as is.
    pub const fn field(field: Field) -> Rule {
        Rule::new(Target::Field { field, index: 0 })
    }

    /// An indexed field (analog input `index`, temperature sensor `index`).
    pub const fn indexed(field: Field, index: u32) -> Rule {
        Rule::new(Target::Field { field, index })
    }

    pub const fn alarm(alarm: Alarm) -> Rule {
        Rule::new(Target::Alarm(alarm))
    }

    pub const fn alarm_codes(codes: &'static [(u64, Alarm)]) -> Rule {
        Rule::new(Target::AlarmCodes(Cow::Borrowed(codes)))
    }

    pub const fn input(n: u8) -> Rule {
        Rule::new(Target::Input(n))
    }

    pub const fn output(n: u8) -> Rule {
        Rule::new(Target::Output(n))
    }

    pub const fn scale(mut self, scale: f64) -> Rule {
        self.scale = scale;
        self
    }

    pub const fn offset(mut self, offset: f64) -> Rule {
        self.offset = offset;
        self
    }

    pub const fn bits(mut self, shift: u8, width: u8) -> Rule {
        self.bits = Some((shift, width));
        self
    }

    pub const fn bit(self, n: u8) -> Rule {
        self.bits(n, 1)
    }

    pub const fn signed(mut self) -> Rule {
        self.signed = true;
        self
    }

    pub const fn format(mut self, format: Format) -> Rule {
        self.format = format;
        self
    }

    pub const fn zero_is_absent(mut self) -> Rule {
        self.zero_is_absent = true;
        self
    }

    pub const fn event_only(mut self) -> Rule {
        self.event_only = true;
        self
    }

    /// Values outside `min..=max` (before scaling) are "not known".
    pub const fn valid(mut self, min: f64, max: f64) -> Rule {
        self.valid = Some((min, max));
        self
    }

    /// Applies only when bit `n` of the value is set.
    pub const fn when_bit(mut self, n: u8) -> Rule {
        self.when_bit = Some(n);
        self
    }

    /// The value after bit extraction (integers only; other values pass through).
    fn extract<'a>(&self, v: Value<'a>) -> Option<Value<'a>> {
        match self.bits {
            None => Some(v),
            Some((shift, width)) => {
                let raw = v.bits()?;
                let shifted = raw.checked_shr(u32::from(shift)).unwrap_or(0);
                let mask = if width >= 64 {
                    u64::MAX
                } else {
                    (1u64 << width) - 1
                };
                Some(Value::Uint(shifted & mask, 8))
            }
        }
    }
}

/// Ids below this are looked up in a table rather than searched.
const DENSE_IDS: usize = 1024;

/// A named set of rules for one protocol: a device family's IO meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub protocol: Protocol,
    /// Sorted by key, one rule per key.
    rules: Vec<(Key, Rule)>,
    /// Ids below [`DENSE_IDS`]: index + 1 into `rules` (0 = no rule). The hot path looks
    /// every Teltonika IO element up here.
    dense: Vec<u16>,
    /// The alarm a Teltonika record of panic priority raises when none of its values raised
    /// a more specific one. `None`: priority raises nothing.
    pub panic_alarm: Option<Alarm>,
    /// The texts this device model takes for typed commands, applied before the protocol's
    /// built-in encoding (`[profiles.<name>.commands]`, see [`crate::command::template`]).
    pub commands: crate::command::template::Templates,
}

impl Profile {
    /// A profile from rules; a later rule for the same key replaces an earlier one.
    pub fn new(
        name: impl Into<String>,
        protocol: Protocol,
        rules: impl IntoIterator<Item = (Key, Rule)>,
    ) -> Profile {
        let mut p = Profile {
            name: name.into(),
            protocol,
            rules: Vec::new(),
            dense: Vec::new(),
            panic_alarm: None,
            commands: Default::default(),
        };
        p.extend(rules);
        p
    }

    pub fn with_panic_alarm(mut self, alarm: Option<Alarm>) -> Profile {
        self.panic_alarm = alarm;
        self
    }

    /// Adds or replaces rules.
    pub fn extend(&mut self, rules: impl IntoIterator<Item = (Key, Rule)>) {
        for (key, rule) in rules {
            match self.rules.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => self.rules[i].1 = rule,
                Err(i) => self.rules.insert(i, (key, rule)),
            }
        }
        self.dense = vec![0; DENSE_IDS];
        for (i, (k, _)) in self.rules.iter().enumerate() {
            if let (Key::Id(id), Ok(slot)) = (k, u16::try_from(i + 1)) {
                if let Some(d) = self.dense.get_mut(*id as usize) {
                    *d = slot;
                }
            }
        }
    }

    /// The rule for a numeric id.
    pub fn by_id(&self, id: u32) -> Option<&Rule> {
        if let Some(&slot) = self.dense.get(id as usize) {
            return (slot != 0).then(|| &self.rules[usize::from(slot) - 1].1);
        }
        // Ids sort before names, so this is a plain binary search over the id prefix.
        self.rules
            .binary_search_by(|(k, _)| match k {
                Key::Id(i) => i.cmp(&id),
                Key::Name(_) => std::cmp::Ordering::Greater,
            })
            .ok()
            .map(|i| &self.rules[i].1)
    }

    /// The rules a value called `name` goes through: the one keyed `name` and every one keyed
    /// `name.<label>`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        // Ids sort before names, and every key that starts with `name` follows it.
        let start = self.rules.partition_point(|(k, _)| match k {
            Key::Id(_) => true,
            Key::Name(n) => n.as_ref() < name,
        });
        self.rules[start..]
            .iter()
            .map_while(move |(k, r)| match k {
                Key::Name(n) => n.strip_prefix(name).map(|rest| (rest, r)),
                Key::Id(_) => None,
            })
            .filter(|(rest, _)| rest.is_empty() || rest.starts_with('.'))
            .map(|(_, r)| r)
    }

    /// The rule keyed exactly `name`.
    pub fn by_name(&self, name: &str) -> Option<&Rule> {
        self.rules
            .binary_search_by(|(k, _)| match k {
                Key::Id(_) => std::cmp::Ordering::Less,
                Key::Name(n) => n.as_ref().cmp(name),
            })
            .ok()
            .map(|i| &self.rules[i].1)
    }

    pub fn rules(&self) -> &[(Key, Rule)] {
        &self.rules
    }
}

/// Maps the values of one record.
pub struct Mapper<'p> {
    profile: &'p Profile,
    /// Allocated on the first normalized value.
    telemetry: Option<Box<Telemetry>>,
    position: PositionExtras,
    alarms: Vec<i32>,
    parts: Vec<(Field, u8, String)>,
    inputs: u32,
    inputs_seen: u32,
    outputs: u32,
    outputs_seen: u32,
    /// The id that triggered this record (Teltonika event IO), for `event_only` rules.
    event_id: Option<u32>,
}

impl<'p> Mapper<'p> {
    pub fn new(profile: &'p Profile) -> Self {
        Mapper {
            profile,
            telemetry: None,
            position: PositionExtras::default(),
            alarms: Vec::new(),
            parts: Vec::new(),
            inputs: 0,
            inputs_seen: 0,
            outputs: 0,
            outputs_seen: 0,
            event_id: None,
        }
    }

    /// The numeric id of the value that triggered this record.
    pub fn triggered_by(&mut self, id: u32) {
        self.event_id = Some(id);
    }

    /// A value keyed by a numeric id.
    pub fn id(&mut self, id: u32, v: Value<'_>) {
        if let Some(rule) = self.profile.by_id(id) {
            if rule.event_only && self.event_id != Some(id) {
                return;
            }
            self.apply(rule, v);
        }
    }

    /// A value keyed by a name: through the rule of that name and its labelled rules.
    pub fn name(&mut self, name: &str, v: Value<'_>) {
        let profile = self.profile;
        for rule in profile.named(name) {
            self.apply(rule, v);
        }
    }

    /// Raises an alarm directly (protocol facts that are not values: a packet type that
    /// is itself an alarm).
    pub fn raise(&mut self, alarm: Alarm) {
        let a = alarm as i32;
        if !self.alarms.contains(&a) {
            self.alarms.push(a);
        }
    }

    /// Sets a field directly (protocol facts that are not values of the device's own list,
    /// e.g. a Wialon record's inputs bitmask).
    pub fn set(&mut self, field: Field, index: u32, v: Converted) {
        let t = self.telemetry.get_or_insert_with(Box::default);
        field::set(t, &mut self.position, field, index, v);
    }

    pub fn alarms(&self) -> &[i32] {
        &self.alarms
    }

    pub fn profile(&self) -> &'p Profile {
        self.profile
    }

    fn apply(&mut self, rule: &Rule, v: Value<'_>) {
        if let Some(bit) = rule.when_bit {
            if v.bits()
                .is_none_or(|b| b.checked_shr(bit.into()).unwrap_or(0) & 1 == 0)
            {
                return;
            }
        }
        // The range is the device's, before any bit extraction or scaling.
        if let Some((min, max)) = rule.valid {
            if !v
                .number(rule.signed)
                .is_some_and(|n| (min..=max).contains(&n))
            {
                return;
            }
        }
        let Some(v) = rule.extract(v) else {
            return;
        };
        if rule.zero_is_absent && v.is_zero() {
            return;
        }
        match &rule.target {
            Target::Ignore => {}
            Target::Alarm(a) => {
                if !v.is_zero() {
                    self.raise(*a);
                }
            }
            Target::AlarmCodes(codes) => {
                if let Some(code) = v.bits() {
                    if let Some((_, a)) = codes.iter().find(|(c, _)| *c == code) {
                        self.raise(*a);
                    }
                }
            }
            Target::Input(n) | Target::Output(n) => {
                let Some(bit) = n.checked_sub(1).filter(|b| *b < 32) else {
                    return;
                };
                let on = !v.is_zero();
                let (state, seen) = if matches!(rule.target, Target::Input(_)) {
                    (&mut self.inputs, &mut self.inputs_seen)
                } else {
                    (&mut self.outputs, &mut self.outputs_seen)
                };
                *seen |= 1 << bit;
                if on {
                    *state |= 1 << bit;
                } else {
                    *state &= !(1 << bit);
                }
            }
            Target::Field { field, index } => {
                let (field, index) = (*field, *index);
                match field.kind() {
                    Kind::Flag => {
                        let t = self.telemetry.get_or_insert_with(Box::default);
                        field::set_flag(t, field, !v.is_zero());
                    }
                    Kind::Text | Kind::TextList => {
                        if let Some(s) = text(rule.format, v) {
                            let t = self.telemetry.get_or_insert_with(Box::default);
                            field::set_text(t, field, s);
                        }
                    }
                    Kind::Number | Kind::Indexed | Kind::Count | Kind::Mask => {
                        let Some(n) = v.number(rule.signed) else {
                            return;
                        };
                        let n = scaled(n, rule.scale) + rule.offset;
                        if n.is_finite() {
                            let t = self.telemetry.get_or_insert_with(Box::default);
                            field::set_number(t, &mut self.position, field, index, n);
                        }
                    }
                }
            }
            Target::TextPart { field, part } => {
                if let Some(s) = text(rule.format, v) {
                    self.parts.push((*field, *part, s));
                }
            }
        }
    }

    /// Writes what was mapped into `e`: `telemetry` (absent when nothing mapped), `alarms`
    /// (kind becomes ALARM when there is one), and HDOP/PDOP/accuracy into the position.
    pub fn finish(mut self, e: &mut TelemetryEvent) {
        if !self.parts.is_empty() {
            self.parts.sort_by_key(|(f, p, _)| (*f, *p));
            let mut i = 0;
            while i < self.parts.len() {
                let f = self.parts[i].0;
                let mut text = String::new();
                while i < self.parts.len() && self.parts[i].0 == f {
                    text.push_str(&self.parts[i].2);
                    i += 1;
                }
                if !text.is_empty() {
                    self.set(f, 0, Converted::Text(text));
                }
            }
        }
        // Single inputs / outputs combine with a whole mask when the device sent one too
        // (then every bit was reported: `*_reported` stays absent).
        if self.inputs_seen != 0 {
            let t = self.telemetry.get_or_insert_with(Box::default);
            let whole = t.digital_inputs;
            t.digital_inputs = Some(whole.unwrap_or(0) & !self.inputs_seen | self.inputs);
            if whole.is_none() {
                t.digital_inputs_reported = Some(self.inputs_seen);
            }
        }
        if self.outputs_seen != 0 {
            let t = self.telemetry.get_or_insert_with(Box::default);
            let whole = t.digital_outputs;
            t.digital_outputs = Some(whole.unwrap_or(0) & !self.outputs_seen | self.outputs);
            if whole.is_none() {
                t.digital_outputs_reported = Some(self.outputs_seen);
            }
        }
        if self.telemetry.is_some() {
            e.telemetry = self.telemetry;
        }
        if let Some(p) = e.position.as_mut() {
            let x = self.position;
            p.hdop = x.hdop.or(p.hdop);
            p.pdop = x.pdop.or(p.pdop);
            p.accuracy_meters = x.accuracy_meters.or(p.accuracy_meters);
        }
        if !self.alarms.is_empty() {
            for a in self.alarms {
                if !e.alarms.contains(&a) {
                    e.alarms.push(a);
                }
            }
            e.kind = crate::proto::EventKind::Alarm as i32;
        }
    }
}

/// `n × scale`, dividing by the inverse when the scale is 1/k (0.1, 0.001): devices send tenths
/// and thousandths, and `7 / 10` is the double nearest 0.7 where `7 × 0.1` is not.
fn scaled(n: f64, scale: f64) -> f64 {
    if scale != 0.0 && scale.abs() < 1.0 {
        let inv = 1.0 / scale;
        if (inv - inv.round()).abs() < 1e-9 {
            return n / inv.round();
        }
    }
    n * scale
}

/// Upper-case hex digits of every byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xF]];
        i += 1;
    }
    t
};

/// Upper-case hex of `bytes`, in reverse order when `reversed`.
fn hex(bytes: &[u8], reversed: bool) -> String {
    let mut out = Vec::with_capacity(2 * bytes.len());
    if reversed {
        for &b in bytes.iter().rev() {
            out.extend_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
    } else {
        for &b in bytes {
            out.extend_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

fn text(format: Format, v: Value<'_>) -> Option<String> {
    let ascii = |bytes: &[u8]| {
        let s: String = bytes
            .iter()
            .filter(|b| b.is_ascii_graphic() || **b == b' ')
            .map(|&b| char::from(b))
            .collect();
        let s = s.trim().to_string();
        (!s.is_empty()).then_some(s)
    };
    match (format, v) {
        (Format::Plain, Value::Uint(n, _)) => Some(n.to_string()),
        (Format::Plain, Value::Int(n)) => Some(n.to_string()),
        (Format::Plain, Value::Double(d)) => Some(d.to_string()),
        (Format::Plain, Value::Text(t)) => {
            Some(String::from_utf8_lossy(t).trim().to_string()).filter(|s| !s.is_empty())
        }
        (Format::Plain | Format::Hex, Value::Bytes(b)) => Some(hex(b, false)),
        (Format::Hex, Value::Uint(n, w)) => {
            let bytes = n.to_be_bytes();
            Some(hex(&bytes[8 - usize::from(w.clamp(1, 8))..], false))
        }
        (Format::HexLe, Value::Uint(n, w)) => {
            let bytes = n.to_be_bytes();
            Some(hex(&bytes[8 - usize::from(w.clamp(1, 8))..], true))
        }
        (Format::HexLe, Value::Bytes(b)) => Some(hex(b, true)),
        (Format::Ascii, Value::Uint(n, w)) => {
            let bytes = n.to_be_bytes();
            ascii(&bytes[8 - usize::from(w.clamp(1, 8))..])
        }
        (Format::Ascii, Value::Bytes(b) | Value::Text(b)) => ascii(b),
        (Format::Hex | Format::HexLe, Value::Text(t)) => Some(hex(t, false)),
        (_, Value::Int(n)) => Some(n.to_string()),
        (_, Value::Double(d)) => Some(d.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Position;

    fn profile() -> Profile {
        Profile::new(
            "test",
            Protocol::Teltonika,
            [
                (Key::Id(239), Rule::field(Field::Ignition)),
                (
                    Key::Id(66),
                    Rule::field(Field::ExternalPowerVolts).scale(0.001),
                ),
                (
                    Key::Id(72),
                    Rule::indexed(Field::TemperaturesCelsius, 1)
                        .scale(0.1)
                        .signed(),
                ),
                (
                    Key::Id(78),
                    Rule::field(Field::DriverId)
                        .format(Format::HexLe)
                        .zero_is_absent(),
                ),
                (Key::Id(1), Rule::input(1)),
                (Key::Id(2), Rule::input(2)),
                (Key::Id(182), Rule::field(Field::Hdop).scale(0.1)),
                (Key::Id(246), Rule::alarm(Alarm::Tow)),
                (
                    Key::Id(253),
                    Rule::alarm_codes(&[(1, Alarm::HarshAcceleration), (2, Alarm::HarshBraking)]),
                ),
                (
                    Key::Id(175),
                    Rule::alarm_codes(&[(1, Alarm::GeofenceEnter)]).event_only(),
                ),
                (Key::Name("status".into()), Rule::field(Field::Armed).bit(0)),
                (
                    Key::Name("status".into()),
                    Rule::field(Field::Charging).bit(2),
                ),
            ],
        )
    }

    #[test]
    fn fields_scale_sign_and_format() {
        let p = profile();
        let mut m = Mapper::new(&p);
        m.id(239, Value::Uint(1, 1));
        m.id(66, Value::Uint(12_300, 2));
        m.id(72, Value::Uint((-215i32) as u32 as u64, 4));
        m.id(78, Value::Uint(0x0102_0304_0506_0708, 8));
        m.id(182, Value::Uint(12, 2));
        m.id(9999, Value::Uint(5, 1));
        let mut e = TelemetryEvent {
            position: Some(Position::default()),
            ..Default::default()
        };
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!(t.ignition, Some(true));
        assert!((t.external_power_volts.unwrap() - 12.3).abs() < 1e-9);
        assert!((t.temperatures_celsius[&1] + 21.5).abs() < 1e-9);
        assert_eq!(t.driver_id.as_deref(), Some("0807060504030201"));
        assert!((e.position.unwrap().hdop.unwrap() - 1.2).abs() < 1e-9);
        assert!(e.alarms.is_empty());
    }

    #[test]
    fn a_zero_ibutton_is_no_driver_and_nothing_mapped_is_no_telemetry() {
        let p = profile();
        let mut m = Mapper::new(&p);
        m.id(78, Value::Uint(0, 8));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn inputs_build_a_mask_with_what_was_reported() {
        let p = profile();
        let mut m = Mapper::new(&p);
        m.id(2, Value::Uint(1, 1));
        m.id(1, Value::Uint(0, 1));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!(t.digital_inputs, Some(0b10));
        assert_eq!(t.digital_inputs_reported, Some(0b11));
    }

    #[test]
    fn alarms_and_codes_set_the_kind_once_each() {
        let p = profile();
        let mut m = Mapper::new(&p);
        m.id(246, Value::Uint(1, 1));
        m.id(253, Value::Uint(2, 1));
        m.id(253, Value::Uint(7, 1));
        m.raise(Alarm::Tow);
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert_eq!(
            e.alarms,
            vec![Alarm::Tow as i32, Alarm::HarshBraking as i32]
        );
        assert_eq!(e.kind, crate::proto::EventKind::Alarm as i32);
    }

    #[test]
    fn event_only_rules_need_the_triggering_id() {
        let p = profile();
        let mut m = Mapper::new(&p);
        m.id(175, Value::Uint(1, 1));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert!(e.alarms.is_empty());
        let mut m = Mapper::new(&p);
        m.triggered_by(175);
        m.id(175, Value::Uint(1, 1));
        m.finish(&mut e);
        assert_eq!(e.alarms, vec![Alarm::GeofenceEnter as i32]);
    }

    #[test]
    fn a_later_rule_for_a_key_replaces_the_earlier_and_bits_extract() {
        let p = profile();
        // The second `status` rule replaced the first.
        assert_eq!(
            p.by_name("status"),
            Some(&Rule::field(Field::Charging).bit(2))
        );
        let mut m = Mapper::new(&p);
        m.name("status", Value::Uint(0b100, 1));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!(t.charging, Some(true));
        assert_eq!(t.armed, None);
    }

    #[test]
    fn text_numbers_convert_and_garbage_does_not() {
        let p = Profile::new(
            "w",
            Protocol::WialonIps,
            [(
                Key::Name("pwr_ext".into()),
                Rule::field(Field::ExternalPowerVolts),
            )],
        );
        let mut m = Mapper::new(&p);
        m.name("pwr_ext", Value::Text(b" 12.3 "));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert_eq!(e.telemetry.unwrap().external_power_volts, Some(12.3));
        let mut m = Mapper::new(&p);
        m.name("pwr_ext", Value::Text(b"abc"));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert_eq!(e.telemetry, None);
    }

    #[test]
    fn a_whole_mask_with_single_inputs_reports_every_bit() {
        let p = Profile::new(
            "w",
            Protocol::WialonIps,
            [
                (
                    Key::Name("inputs".into()),
                    Rule::field(Field::DigitalInputs),
                ),
                (Key::Name("in3".into()), Rule::input(3)),
            ],
        );
        let mut m = Mapper::new(&p);
        m.name("inputs", Value::Uint(0b001, 8));
        m.name("in3", Value::Uint(1, 8));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!(t.digital_inputs, Some(0b101));
        assert_eq!(t.digital_inputs_reported, None);
    }

    #[test]
    fn out_of_range_values_are_unknown_and_false_text_is_off() {
        let p = Profile::new(
            "w",
            Protocol::WialonIps,
            [
                (
                    Key::Name("csq".into()),
                    Rule::field(Field::GsmSignalPercent)
                        .valid(0.0, 31.0)
                        .scale(100.0 / 31.0),
                ),
                (Key::Name("ign".into()), Rule::field(Field::Ignition)),
            ],
        );
        let mut m = Mapper::new(&p);
        m.name("csq", Value::Uint(99, 8));
        m.name("ign", Value::Text(b"false"));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!(t.gsm_signal_percent, None);
        assert_eq!(t.ignition, Some(false));
        let mut m = Mapper::new(&p);
        m.name("csq", Value::Uint(31, 8));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert!((e.telemetry.unwrap().gsm_signal_percent.unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn labelled_rules_read_the_whole_value_and_gates_hold() {
        let p = Profile::new(
            "g",
            Protocol::Gt06,
            [
                (
                    Key::Name("info.acc".into()),
                    Rule::field(Field::Ignition).bit(1),
                ),
                (
                    Key::Name("info.armed".into()),
                    Rule::field(Field::Armed).bit(0),
                ),
                (Key::Name("info-other".into()), Rule::field(Field::Charging)),
                (Key::Name("infox".into()), Rule::field(Field::Motion)),
                (
                    Key::Name("word.acc".into()),
                    Rule::field(Field::DoorOpen).bit(15).when_bit(14),
                ),
                (
                    Key::Name("level".into()),
                    Rule::field(Field::BatteryPercent).valid(0.0, 6.0),
                ),
            ],
        );
        assert_eq!(p.named("info").count(), 2);
        let mut m = Mapper::new(&p);
        m.name("info", Value::Uint(0b11, 1));
        m.name("word", Value::Uint(0x8000, 2));
        m.name("level", Value::Uint(7, 1));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        let t = e.telemetry.unwrap();
        assert_eq!((t.ignition, t.armed), (Some(true), Some(true)));
        assert_eq!((t.charging, t.motion), (None, None));
        assert_eq!(t.door_open, None, "bit 14 clear: bit 15 means nothing");
        assert_eq!(t.battery_percent, None, "7 is outside 0..=6");
        let mut m = Mapper::new(&p);
        m.name("word", Value::Uint(0xC000, 2));
        let mut e = TelemetryEvent::default();
        m.finish(&mut e);
        assert_eq!(e.telemetry.unwrap().door_open, Some(true));
    }

    #[test]
    fn tenths_and_thousandths_are_the_nearest_doubles() {
        assert_eq!(scaled(7.0, 0.1), 0.7);
        assert_eq!(scaled(12_345.0, 0.001), 12.345);
        assert_eq!(scaled(3.0, 25.0), 75.0);
        assert_eq!(scaled(4.0, 100.0 / 6.0), 4.0 * (100.0 / 6.0));
    }

    #[test]
    fn signed_reads_use_the_width() {
        assert_eq!(Value::Uint(0xFF, 1).number(true), Some(-1.0));
        assert_eq!(Value::Uint(0xFF, 2).number(true), Some(255.0));
        assert_eq!(Value::Uint(0x8000, 2).number(true), Some(-32768.0));
        assert_eq!(Value::Uint(u64::MAX, 8).number(true), Some(-1.0));
    }
}
