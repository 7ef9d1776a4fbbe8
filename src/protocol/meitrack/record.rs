//! One decoded Meitrack record, whatever message it came in (`AAA`/`AFF` text, `CCC` or `CCE`
//! binary): its fix, its cells, and its values, before `mapping` turns it into an event.
//!
//! A value is either **raw** (published in `TelemetryEvent.raw` exactly as sent, keyed by the
//! protocol's name or numeric id) or **derived**: a component the decoder read out of a compound
//! raw value (one sensor of the `AAA` temperature list, the level of battery 2 in `CCE`'s
//! `0xFEA8`). Derived values are fed to the device profile's rules by name, so operators can
//! map or drop them like any other, but they are not published: the compound value they come
//! from is, whole.

use std::borrow::Cow;

use crate::proto::{CellTower, Position, WifiAccessPoint};
use crate::vocab::Key;

/// A value as the decoder read it.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// An unsigned integer of `.1` bytes (1, 2, 4 or 8; text numbers count as 8).
    Uint(u64, u8),
    Int(i64),
    Double(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// One value of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub key: Key,
    pub value: V,
    /// Published in `raw` (else derived: fed to the rules only).
    pub raw: bool,
}

/// A decoded record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Seconds since the epoch (UTC), when the record has a time.
    pub time: Option<i64>,
    /// The fix; `None` when the device reported no coordinates (both exactly zero, or none).
    pub position: Option<Position>,
    pub values: Vec<Value>,
    pub cells: Vec<CellTower>,
    pub wifi: Vec<WifiAccessPoint>,
}

impl Record {
    /// A raw value keyed by name.
    pub fn named(&mut self, name: impl Into<Cow<'static, str>>, value: V) {
        self.values.push(Value {
            key: Key::Name(name.into()),
            value,
            raw: true,
        });
    }

    /// A raw value keyed by the protocol's numeric id.
    pub fn id(&mut self, id: u32, value: V) {
        self.values.push(Value {
            key: Key::Id(id),
            value,
            raw: true,
        });
    }

    /// A derived value (see the module doc).
    pub fn derived(&mut self, name: impl Into<Cow<'static, str>>, value: V) {
        self.values.push(Value {
            key: Key::Name(name.into()),
            value,
            raw: false,
        });
    }

    /// A text value, or nothing when the device left the field empty.
    pub fn text(&mut self, name: impl Into<Cow<'static, str>>, s: &str) {
        if !s.is_empty() {
            self.named(name, V::Text(s.to_string()));
        }
    }

    /// The first value under `key`, raw or derived.
    pub fn get(&self, key: &Key) -> Option<&V> {
        self.values.iter().find(|v| &v.key == key).map(|v| &v.value)
    }
}

/// Seconds between the Unix epoch and 2000-01-01, the epoch of the binary messages' times.
pub const EPOCH_2000: i64 = 946_684_800;
