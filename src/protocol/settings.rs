//! Per-protocol settings: each protocol declares its knobs (name, kind, default, range, one
//! line of documentation) next to its code; configuration, the README's settings table and the
//! Helm chart read them from the registry.
//!
//! Every protocol declares at least [`MAX_FRAME_BYTES`]-style `max_frame_bytes` (the largest
//! frame it buffers, checked before allocating) and `idle_timeout_secs` (a silent TCP device
//! is disconnected; unset = the gateway-wide `--idle-timeout-secs`). Operators set them as
//! `[protocols.<name>] <key> = value` in the TOML file, `AVLGATE_PROTOCOLS__<NAME>__<KEY>` in
//! the environment or `--protocol-setting <name>.<key>=<value>`; an unknown protocol, an
//! unknown key or a value out of range stops the gateway at start with the valid choices.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{ProtocolModule, REGISTRY};
use crate::vocab::Profiles;

/// One declared setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub kind: SettingKind,
    /// One line for the README's settings table and `--help`.
    pub doc: &'static str,
}

/// What a setting holds, its default and its valid range.
#[derive(Debug, Clone, Copy)]
pub enum SettingKind {
    /// A size in bytes.
    Bytes {
        default: u64,
        min: u64,
        max: u64,
    },
    /// Seconds. `default: None`: unset unless configured (the caller has a documented
    /// gateway-wide value for it).
    Secs {
        default: Option<u64>,
        min: u64,
        max: u64,
    },
    /// One of a few words.
    Choice {
        default: &'static str,
        choices: &'static [&'static str],
    },
    Flag {
        default: bool,
    },
}

/// The largest frame a protocol buffers (every protocol declares one).
pub const MAX_FRAME_BYTES: &str = "max_frame_bytes";
/// Idle timeout of a TCP session (every protocol declares one).
pub const IDLE_TIMEOUT_SECS: &str = "idle_timeout_secs";

/// `max_frame_bytes` with a protocol's default.
pub const fn max_frame_bytes(default: u64, doc: &'static str) -> Setting {
    Setting {
        key: MAX_FRAME_BYTES,
        kind: SettingKind::Bytes {
            default,
            min: 64,
            max: 64 * 1024 * 1024,
        },
        doc,
    }
}

/// `idle_timeout_secs`, unset by default (the gateway-wide `--idle-timeout-secs`).
pub const IDLE_TIMEOUT: Setting = Setting {
    key: IDLE_TIMEOUT_SECS,
    kind: SettingKind::Secs {
        default: None,
        min: 1,
        max: 7 * 24 * 3600,
    },
    doc: "a TCP device silent this long is disconnected (default: --idle-timeout-secs)",
};

/// A setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingValue {
    Number(u64),
    Choice(&'static str),
    Flag(bool),
    Unset,
}

impl Setting {
    pub fn default_value(&self) -> SettingValue {
        match self.kind {
            SettingKind::Bytes { default, .. } => SettingValue::Number(default),
            SettingKind::Secs { default, .. } => {
                default.map_or(SettingValue::Unset, SettingValue::Number)
            }
            SettingKind::Choice { default, .. } => SettingValue::Choice(default),
            SettingKind::Flag { default } => SettingValue::Flag(default),
        }
    }

    /// Parses and range-checks a configured value.
    pub fn parse(&self, text: &str) -> Result<SettingValue, String> {
        let text = text.trim();
        let number = |min: u64, max: u64, unit: &str| {
            let n: u64 = text
                .parse()
                .map_err(|_| format!("`{text}` is not a whole number of {unit}"))?;
            if (min..=max).contains(&n) {
                Ok(SettingValue::Number(n))
            } else {
                Err(format!("{n} is outside {min}..={max} {unit}"))
            }
        };
        match self.kind {
            SettingKind::Bytes { min, max, .. } => number(min, max, "bytes"),
            SettingKind::Secs { min, max, .. } => number(min, max, "seconds"),
            SettingKind::Choice { choices, .. } => choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(text))
                .map(|c| SettingValue::Choice(c))
                .ok_or_else(|| format!("`{text}` is not one of {}", choices.join(", "))),
            SettingKind::Flag { .. } => match text {
                "true" | "1" | "yes" | "on" => Ok(SettingValue::Flag(true)),
                "false" | "0" | "no" | "off" => Ok(SettingValue::Flag(false)),
                _ => Err(format!("`{text}` is not true or false")),
            },
        }
    }

    /// The default as the README writes it.
    pub fn default_text(&self) -> String {
        match self.kind {
            SettingKind::Bytes { default, .. } => bytes_text(default),
            SettingKind::Secs {
                default: Some(d), ..
            } => d.to_string(),
            SettingKind::Secs { default: None, .. } => "`--idle-timeout-secs`".into(),
            SettingKind::Choice { default, .. } => default.into(),
            SettingKind::Flag { default } => default.to_string(),
        }
    }
}

fn bytes_text(n: u64) -> String {
    if n >= 1024 * 1024 && n % (1024 * 1024) == 0 {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        n.to_string()
    }
}

/// One protocol's resolved settings: every declared key has a value.
#[derive(Clone)]
pub struct ProtocolSettings {
    module: &'static ProtocolModule,
    values: BTreeMap<&'static str, SettingValue>,
}

impl std::fmt::Debug for ProtocolSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolSettings")
            .field("protocol", &self.module.name())
            .field("values", &self.values)
            .finish()
    }
}

impl ProtocolSettings {
    /// The declared defaults.
    pub fn defaults(module: &'static ProtocolModule) -> Self {
        ProtocolSettings {
            module,
            values: module
                .settings()
                .iter()
                .map(|s| (s.key, s.default_value()))
                .collect(),
        }
    }

    pub fn module(&self) -> &'static ProtocolModule {
        self.module
    }

    /// Sets a value from its text, checked against the declaration.
    pub fn set(&mut self, key: &str, text: &str) -> Result<(), String> {
        let setting = self
            .module
            .settings()
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| {
                let keys: Vec<_> = self.module.settings().iter().map(|s| s.key).collect();
                format!(
                    "protocol `{}` has no setting `{key}` (it has: {})",
                    self.module.name(),
                    keys.join(", ")
                )
            })?;
        let v = setting
            .parse(text)
            .map_err(|e| format!("{}.{key}: {e}", self.module.name()))?;
        self.values.insert(setting.key, v);
        Ok(())
    }

    pub fn get(&self, key: &str) -> SettingValue {
        // A key the protocol did not declare is a bug in the protocol, caught by its tests
        // (`every_protocol_declares_what_it_reads`); unset rather than a panic on a device's
        // connection.
        debug_assert!(self.values.contains_key(key), "undeclared setting {key}");
        self.values.get(key).copied().unwrap_or(SettingValue::Unset)
    }

    /// A number setting (bytes, seconds); 0 when unset.
    pub fn number(&self, key: &str) -> u64 {
        match self.get(key) {
            SettingValue::Number(n) => n,
            _ => 0,
        }
    }

    /// A size setting as `usize`.
    pub fn bytes(&self, key: &str) -> usize {
        usize::try_from(self.number(key)).unwrap_or(usize::MAX)
    }

    /// A seconds setting, `None` when unset.
    pub fn secs(&self, key: &str) -> Option<Duration> {
        match self.get(key) {
            SettingValue::Number(n) => Some(Duration::from_secs(n)),
            _ => None,
        }
    }

    pub fn choice(&self, key: &str) -> &'static str {
        match self.get(key) {
            SettingValue::Choice(c) => c,
            _ => "",
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), SettingValue::Flag(true))
    }

    /// The largest frame this protocol buffers.
    pub fn max_frame_bytes(&self) -> usize {
        self.bytes(MAX_FRAME_BYTES)
    }

    /// The idle timeout, when the protocol has its own.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.secs(IDLE_TIMEOUT_SECS)
    }
}

/// What protocol sessions are configured with: every protocol's settings and the device
/// profiles. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ProtocolConfig {
    settings: Arc<BTreeMap<&'static str, ProtocolSettings>>,
    /// The device profiles in force (built-ins plus the operator's file), which sessions
    /// resolve per device to map its values onto the vocabulary.
    pub profiles: Arc<Profiles>,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            settings: Arc::new(
                REGISTRY
                    .iter()
                    .map(|m| (m.name(), ProtocolSettings::defaults(m)))
                    .collect(),
            ),
            profiles: Profiles::builtin(),
        }
    }
}

impl ProtocolConfig {
    /// The settings of the protocol called `name`.
    pub fn settings(&self, name: &str) -> &ProtocolSettings {
        match self.settings.get(name) {
            Some(s) => s,
            None => unreachable_protocol(name),
        }
    }

    /// Applies `protocol.key = text` settings; an unknown protocol or key, or a bad value, is
    /// an error naming the valid choices.
    pub fn configure<'a>(
        mut self,
        entries: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, String> {
        let map = Arc::make_mut(&mut self.settings);
        for (protocol, key, text) in entries {
            let s = map.get_mut(protocol).ok_or_else(|| {
                let names: Vec<_> = REGISTRY.iter().map(|m| m.name()).collect();
                format!("no protocol `{protocol}` (protocols: {})", names.join(", "))
            })?;
            s.set(key, text)?;
        }
        Ok(self)
    }

    /// One setting, for tests and tools: `set("gt06", "max_frame_bytes", "256")`.
    pub fn with(self, protocol: &str, key: &str, text: &str) -> Self {
        match self.configure([(protocol, key, text)]) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn with_profiles(mut self, profiles: Arc<Profiles>) -> Self {
        self.profiles = profiles;
        self
    }

    /// The largest frame any protocol buffers.
    pub fn largest_frame_bytes(&self) -> usize {
        self.settings
            .values()
            .map(ProtocolSettings::max_frame_bytes)
            .max()
            .unwrap_or(0)
    }
}

#[cold]
fn unreachable_protocol(name: &str) -> ! {
    // Every registered protocol has an entry (built from the registry); callers name
    // protocols from the registry.
    panic!("protocol `{name}` is not in the registry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_declares_the_common_settings_once() {
        for m in REGISTRY {
            let keys: Vec<_> = m.settings().iter().map(|s| s.key).collect();
            for k in [MAX_FRAME_BYTES, IDLE_TIMEOUT_SECS] {
                assert_eq!(
                    keys.iter().filter(|x| **x == k).count(),
                    1,
                    "{}: {k}",
                    m.name()
                );
            }
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), keys.len(), "{}: duplicate keys", m.name());
            for s in m.settings() {
                let d = ProtocolSettings::defaults(m);
                assert_eq!(d.get(s.key), s.default_value());
                assert!(!s.doc.is_empty(), "{}.{}", m.name(), s.key);
            }
        }
    }

    #[test]
    fn configure_checks_protocol_key_and_value() {
        let c = ProtocolConfig::default();
        let name = REGISTRY[0].name();
        let c2 = c
            .clone()
            .configure([
                (name, MAX_FRAME_BYTES, "4096"),
                (name, IDLE_TIMEOUT_SECS, "60"),
            ])
            .unwrap();
        assert_eq!(c2.settings(name).max_frame_bytes(), 4096);
        assert_eq!(
            c2.settings(name).idle_timeout(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(c.settings(name).idle_timeout(), None, "unchanged original");
        for (p, k, v, want) in [
            ("nope", MAX_FRAME_BYTES, "1", "no protocol `nope`"),
            (name, "warp", "1", "has no setting `warp`"),
            (name, MAX_FRAME_BYTES, "x", "not a whole number"),
            (name, MAX_FRAME_BYTES, "1", "outside"),
        ] {
            let e = c.clone().configure([(p, k, v)]).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn defaults_read_as_documented() {
        let s = Setting {
            key: "k",
            kind: SettingKind::Choice {
                default: "12",
                choices: &["12", "14"],
            },
            doc: "d",
        };
        assert_eq!(s.parse("14"), Ok(SettingValue::Choice("14")));
        assert!(s.parse("13").is_err());
        assert_eq!(bytes_text(16 * 1024), "16 KiB");
        assert_eq!(bytes_text(8 * 1024 * 1024), "8 MiB");
        assert_eq!(bytes_text(1000), "1000");
    }
}
