//! Device profiles: which rules map a device's values, chosen by IMEI, extensible by operators
//! without code.
//!
//! Every protocol ships built-in profiles (its `mapping.rs`; the first is the protocol's
//! default). The optional operator file (`--device-profiles FILE`, TOML) adds profiles that
//! extend a built-in or another file profile, overrides rules of a built-in in place, and
//! assigns profiles to devices by IMEI list or range:
//!
//! ```toml
//! [profiles.fm6xx-fuel]            # a new profile
//! extends = "fm6xx"                # a built-in or another profile of this file
//! [profiles.fm6xx-fuel.ids.201]    # Teltonika IO 201 (ids: numeric keys; names: named values)
//! field = "fuel_level_percent"
//! scale = 0.1
//!
//! [profiles.fmb.ids.247]           # a built-in's name: changes that built-in for everyone
//! ignore = true
//!
//! [[devices]]                      # first match wins; unmatched devices use the default
//! profile = "fm6xx-fuel"
//! imeis = ["356307042441013"]
//! ranges = ["356307042440000-356307042449999"]
//! ```
//!
//! A rule table takes `field` (+ `index` for indexed fields, `part` for text assembled from
//! parts), `input` / `output` (a 1-based number), `alarm` (raised when the value is non-zero),
//! `alarms` (a table code → alarm) or `ignore = true`; and `scale`, `offset`, `signed`,
//! `bits = [shift, width]`, `format` (`plain`, `hex`, `hex_le`, `ascii`), `zero_is_absent`,
//! `event_only`, `valid = [min, max]` (the device's range before scaling; other values are
//! "not known"), `when_bit` (apply only when that bit of the value is set). A named value
//! also goes through the rules keyed `<name>.<label>`: one value, several fields
//! (`[profiles.gt06.names."terminal_info.acc"]`). Field names are the schema's (`docs/schema.md`); alarm names are the enum's
//! without prefix, any case (`tow`, `ALARM_TOW`).
//!
//! A `[profiles.<name>.commands]` table maps typed commands to the text that device model
//! takes, applied before the protocol's built-in encoding (`engine_stop = "DYD,000000#"`; see
//! [`crate::command::template`]); a profile that extends another inherits its templates.
//!
//! The file is re-read when it changes; a file that does not load keeps the previous one in
//! force. Sessions notice a reload through [`Profiles::generation`] and re-resolve.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::net::watch::FileWatch;
use crate::proto::{Alarm, Protocol};
use crate::protocol::REGISTRY;

use super::field::{Field, Kind};
use super::rules::{Format, Key, Profile, Rule, Target};

/// Larger files are refused (a wrong path, not a profile file).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("reading the device profiles {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the device profiles {0} are larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("the device profiles {0}: {1}")]
    Syntax(PathBuf, String),
    #[error("the device profiles {0}: profile `{1}`: {2}")]
    Profile(PathBuf, String, String),
    #[error("the device profiles {0}: device entry {1}: {2}")]
    Device(PathBuf, usize, String),
}

/// An alarm by name: `tow`, `TOW`, `ALARM_TOW`.
pub fn parse_alarm(s: &str) -> Option<Alarm> {
    let up = s.trim().to_ascii_uppercase();
    let full = if up.starts_with("ALARM_") {
        up
    } else {
        format!("ALARM_{up}")
    };
    Alarm::from_str_name(&full).filter(|a| *a != Alarm::Unspecified)
}

/// The short name of an alarm (`tow`), as docs and the profile file write it.
pub fn alarm_name(a: Alarm) -> String {
    a.as_str_name()
        .trim_start_matches("ALARM_")
        .to_ascii_lowercase()
}

/// Which profile a set of devices uses.
#[derive(Debug)]
struct Assignment {
    profile: Arc<Profile>,
    imeis: HashSet<String>,
    /// Inclusive numeric ranges of all-digit IMEIs.
    ranges: Vec<(u128, u128)>,
}

impl Assignment {
    fn matches(&self, imei: &str) -> bool {
        if self.imeis.contains(imei) {
            return true;
        }
        if self.ranges.is_empty() || imei.is_empty() || imei.len() > 38 {
            return false;
        }
        let Ok(n) = imei.parse::<u128>() else {
            return false;
        };
        self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&n))
    }
}

/// One loaded configuration: every profile by name, each protocol's default, the assignments.
#[derive(Debug)]
pub struct ProfileSet {
    by_name: HashMap<String, Arc<Profile>>,
    defaults: HashMap<i32, Arc<Profile>>,
    assignments: Vec<Assignment>,
}

impl ProfileSet {
    /// The built-in profiles of every registered protocol.
    pub fn builtin() -> ProfileSet {
        let mut by_name = HashMap::new();
        let mut defaults = HashMap::new();
        for m in REGISTRY {
            for (i, p) in m.profiles().into_iter().enumerate() {
                let p = Arc::new(p);
                if i == 0 {
                    defaults.insert(m.protocol() as i32, p.clone());
                }
                by_name.insert(p.name.clone(), p);
            }
        }
        ProfileSet {
            by_name,
            defaults,
            assignments: Vec::new(),
        }
    }

    /// The built-ins with an operator file applied.
    pub fn from_toml(path: &Path, text: &str) -> Result<ProfileSet, ProfileError> {
        let doc: FileDoc =
            toml::from_str(text).map_err(|e| ProfileError::Syntax(path.into(), e.to_string()))?;
        let mut set = ProfileSet::builtin();
        let builtin: HashSet<String> = set.by_name.keys().cloned().collect();
        // Resolve `extends` in dependency order; a cycle or an unknown parent is an error.
        // A file profile named like a built-in changes that built-in (it is its own parent).
        let parent_of = |name: &str, p: &ProfileDoc| {
            p.extends
                .clone()
                .or_else(|| builtin.contains(name).then(|| name.to_string()))
        };
        let mut pending: BTreeMap<String, ProfileDoc> = doc.profiles;
        while !pending.is_empty() {
            let ready = pending
                .iter()
                .find(|(name, p)| match parent_of(name, p) {
                    None => true,
                    Some(parent) => {
                        set.by_name.contains_key(&parent)
                            && (parent == **name || !pending.contains_key(&parent))
                    }
                })
                .map(|(n, _)| n.clone());
            let Some(name) = ready else {
                let (name, p) = pending.iter().next().expect("not empty");
                let parent = parent_of(name, p).unwrap_or_default();
                return Err(ProfileError::Profile(
                    path.into(),
                    name.clone(),
                    format!("extends `{parent}`, which is not defined (or the chain loops)"),
                ));
            };
            let p = pending.remove(&name).expect("found above");
            let err = |why: String| ProfileError::Profile(path.into(), name.clone(), why);
            let parent = parent_of(&name, &p).and_then(|n| set.by_name.get(&n).cloned());
            let protocol = match (&p.protocol, &parent) {
                (Some(proto), parent) => {
                    let proto = protocol_by_name(proto)
                        .ok_or_else(|| err(format!("unknown protocol `{proto}`")))?;
                    if parent.as_ref().is_some_and(|pp| pp.protocol != proto) {
                        return Err(err("`protocol` differs from the profile it extends".into()));
                    }
                    proto
                }
                (None, Some(pp)) => pp.protocol,
                (None, None) => return Err(err("needs `protocol` or `extends`".into())),
            };
            let mut profile = match &parent {
                Some(pp) => Profile::clone(pp),
                None => Profile::new(name.clone(), protocol, []),
            };
            profile.name = name.clone();
            if let Some(a) = &p.panic_alarm {
                profile.panic_alarm = if a.eq_ignore_ascii_case("none") {
                    None
                } else {
                    Some(parse_alarm(a).ok_or_else(|| err(format!("unknown alarm `{a}`")))?)
                };
            }
            let mut rules = Vec::new();
            for (id, r) in &p.ids {
                let id: u32 = id
                    .parse()
                    .map_err(|_| err(format!("`ids.{id}`: not a number")))?;
                rules.push((
                    Key::Id(id),
                    r.to_rule().map_err(|w| err(format!("`ids.{id}`: {w}")))?,
                ));
            }
            for (n, r) in &p.names {
                rules.push((
                    Key::Name(Cow::Owned(n.clone())),
                    r.to_rule().map_err(|w| err(format!("`names.{n}`: {w}")))?,
                ));
            }
            profile.extend(rules);
            let templates = crate::command::template::Templates::parse(&p.commands).map_err(err)?;
            profile.commands.extend(&templates);
            let profile = Arc::new(profile);
            if builtin.contains(&name) {
                // A changed built-in: the protocol's default follows it.
                if let Some(d) = set.defaults.get_mut(&(protocol as i32)) {
                    if d.name == name {
                        *d = profile.clone();
                    }
                }
            }
            set.by_name.insert(name, profile);
        }
        for (i, d) in doc.devices.iter().enumerate() {
            let err = |why: String| ProfileError::Device(path.into(), i + 1, why);
            let profile = set
                .by_name
                .get(&d.profile)
                .cloned()
                .ok_or_else(|| err(format!("no profile `{}`", d.profile)))?;
            let mut ranges = Vec::new();
            for r in &d.ranges {
                let (lo, hi) = r
                    .split_once('-')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                    .filter(|(a, b): &(u128, u128)| a <= b)
                    .ok_or_else(|| err(format!("range `{r}` is not `FIRST-LAST` (digits)")))?;
                ranges.push((lo, hi));
            }
            if d.imeis.is_empty() && ranges.is_empty() {
                return Err(err("lists no `imeis` and no `ranges`".into()));
            }
            set.assignments.push(Assignment {
                profile,
                imeis: d.imeis.iter().cloned().collect(),
                ranges,
            });
        }
        Ok(set)
    }

    /// The profile of a device of `protocol` (`imei` unknown yet: the default).
    pub fn resolve(&self, protocol: Protocol, imei: Option<&str>) -> Option<Arc<Profile>> {
        if let Some(imei) = imei {
            if let Some(a) = self
                .assignments
                .iter()
                .find(|a| a.profile.protocol == protocol && a.matches(imei))
            {
                return Some(a.profile.clone());
            }
        }
        self.defaults.get(&(protocol as i32)).cloned()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Profile>> {
        self.by_name.get(name)
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

fn protocol_by_name(name: &str) -> Option<Protocol> {
    REGISTRY
        .iter()
        .find(|m| m.name() == name)
        .map(|m| m.protocol())
}

/// The profiles in force, shared by every session; reloaded from the operator file.
#[derive(Debug)]
pub struct Profiles {
    set: RwLock<Arc<ProfileSet>>,
    generation: AtomicU64,
    file: Option<FileWatch>,
}

impl Profiles {
    /// The built-in profiles only.
    pub fn builtin() -> Arc<Profiles> {
        Arc::new(Profiles {
            set: RwLock::new(Arc::new(ProfileSet::builtin())),
            generation: AtomicU64::new(0),
            file: None,
        })
    }

    /// Built-ins plus an operator file; an error here stops the gateway from starting.
    pub fn load(path: &Path) -> Result<Arc<Profiles>, ProfileError> {
        let watch = FileWatch::new(vec![path.into()]);
        let set = read(path)?;
        Ok(Arc::new(Profiles {
            set: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
            file: Some(watch),
        }))
    }

    /// Re-reads the file when it changed and the change has settled (one call after it was
    /// seen). `Ok(true)`: a new set is in force. `Err`: the file did not load (reported once;
    /// the next edit is read again); the previous set stays.
    pub fn reload_if_changed(&self) -> Result<bool, ProfileError> {
        let Some(watch) = &self.file else {
            return Ok(false);
        };
        let Some(set) = watch.poll(|| read(&watch.paths()[0]))? else {
            return Ok(false);
        };
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::Release);
        Ok(true)
    }

    /// Bumped on every successful reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<ProfileSet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|w| w.paths()[0].as_path())
    }

    /// The profile of a device.
    pub fn resolve(&self, protocol: Protocol, imei: Option<&str>) -> Arc<Profile> {
        self.current()
            .resolve(protocol, imei)
            .unwrap_or_else(|| Arc::new(Profile::new("none", protocol, [])))
    }
}

fn read(path: &Path) -> Result<ProfileSet, ProfileError> {
    let meta = std::fs::metadata(path).map_err(|e| ProfileError::Read(path.into(), e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ProfileError::TooLarge(path.into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError::Read(path.into(), e))?;
    ProfileSet::from_toml(path, &text)
}

/// A session's view of its device's profile: resolved at login and again after a reload.
#[derive(Debug, Clone)]
pub struct ProfileCache {
    profiles: Arc<Profiles>,
    protocol: Protocol,
    generation: u64,
    imei: Option<String>,
    current: Arc<Profile>,
}

impl ProfileCache {
    pub fn new(profiles: Arc<Profiles>, protocol: Protocol) -> Self {
        let generation = profiles.generation();
        let current = profiles.resolve(protocol, None);
        ProfileCache {
            profiles,
            protocol,
            generation,
            imei: None,
            current,
        }
    }

    /// The profile for `imei`, re-resolved when the IMEI or the file changed.
    pub fn get(&mut self, imei: Option<&str>) -> &Profile {
        let generation = self.profiles.generation();
        if generation != self.generation || imei != self.imei.as_deref() {
            self.generation = generation;
            self.imei = imei.map(str::to_string);
            self.current = self.profiles.resolve(self.protocol, imei);
        }
        &self.current
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    profiles: BTreeMap<String, ProfileDoc>,
    #[serde(default)]
    devices: Vec<DeviceDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileDoc {
    protocol: Option<String>,
    extends: Option<String>,
    panic_alarm: Option<String>,
    #[serde(default)]
    ids: BTreeMap<String, RuleDoc>,
    #[serde(default)]
    names: BTreeMap<String, RuleDoc>,
    /// Command type → the text this model takes (`engine_stop = "DYD,000000#"`).
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceDoc {
    profile: String,
    #[serde(default)]
    imeis: Vec<String>,
    #[serde(default)]
    ranges: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    field: Option<String>,
    index: Option<u32>,
    part: Option<u8>,
    input: Option<u8>,
    output: Option<u8>,
    alarm: Option<String>,
    alarms: Option<BTreeMap<String, String>>,
    #[serde(default)]
    ignore: bool,
    scale: Option<f64>,
    offset: Option<f64>,
    bits: Option<[u8; 2]>,
    #[serde(default)]
    signed: bool,
    format: Option<String>,
    #[serde(default)]
    zero_is_absent: bool,
    #[serde(default)]
    event_only: bool,
    valid: Option<[f64; 2]>,
    when_bit: Option<u8>,
}

impl RuleDoc {
    fn to_rule(&self) -> Result<Rule, String> {
        let targets = [
            self.field.is_some(),
            self.input.is_some(),
            self.output.is_some(),
            self.alarm.is_some(),
            self.alarms.is_some(),
            self.ignore,
        ];
        if targets.iter().filter(|t| **t).count() != 1 {
            return Err(
                "needs exactly one of `field`, `input`, `output`, `alarm`, `alarms`, `ignore`"
                    .into(),
            );
        }
        let target = if let Some(name) = &self.field {
            let field = Field::from_name(name).ok_or_else(|| format!("unknown field `{name}`"))?;
            match (field.kind(), self.index, self.part) {
                (_, _, Some(part)) => {
                    if field.kind() != Kind::Text {
                        return Err(format!("`part` needs a text field, `{name}` is not"));
                    }
                    Target::TextPart { field, part }
                }
                (Kind::Indexed, Some(i), None) if i >= 1 => Target::Field { field, index: i },
                (Kind::Indexed, _, None) => {
                    return Err(format!("`{name}` needs `index` (1 = the first)"))
                }
                (_, Some(_), None) => return Err(format!("`{name}` takes no `index`")),
                (_, None, None) => Target::Field { field, index: 0 },
            }
        } else if let Some(n) = self.input {
            if !(1..=32).contains(&n) {
                return Err("`input` is 1..=32".into());
            }
            Target::Input(n)
        } else if let Some(n) = self.output {
            if !(1..=32).contains(&n) {
                return Err("`output` is 1..=32".into());
            }
            Target::Output(n)
        } else if let Some(a) = &self.alarm {
            Target::Alarm(parse_alarm(a).ok_or_else(|| format!("unknown alarm `{a}`"))?)
        } else if let Some(codes) = &self.alarms {
            let mut v = Vec::new();
            for (code, a) in codes {
                let code: u64 = code
                    .parse()
                    .map_err(|_| format!("alarm code `{code}` is not a number"))?;
                v.push((
                    code,
                    parse_alarm(a).ok_or_else(|| format!("unknown alarm `{a}`"))?,
                ));
            }
            Target::AlarmCodes(Cow::Owned(v))
        } else {
            Target::Ignore
        };
        let mut rule = Rule::new(target);
        rule.scale = self.scale.unwrap_or(1.0);
        rule.offset = self.offset.unwrap_or(0.0);
        if !rule.scale.is_finite() || !rule.offset.is_finite() {
            return Err("`scale` and `offset` must be finite".into());
        }
        if let Some([shift, width]) = self.bits {
            if shift > 63 || width == 0 || width > 64 {
                return Err("`bits` is [shift 0..=63, width 1..=64]".into());
            }
            rule.bits = Some((shift, width));
        }
        rule.signed = self.signed;
        rule.zero_is_absent = self.zero_is_absent;
        rule.event_only = self.event_only;
        if let Some([min, max]) = self.valid {
            if min
                .partial_cmp(&max)
                .is_none_or(|o| o == std::cmp::Ordering::Greater)
            {
                return Err("`valid` is [min, max] with min <= max".into());
            }
            rule.valid = Some((min, max));
        }
        if let Some(b) = self.when_bit {
            if b > 63 {
                return Err("`when_bit` is 0..=63".into());
            }
            rule.when_bit = Some(b);
        }
        rule.format = match self.format.as_deref() {
            None | Some("plain") => Format::Plain,
            Some("hex") => Format::Hex,
            Some("hex_le") => Format::HexLe,
            Some("ascii") => Format::Ascii,
            Some(f) => return Err(format!("unknown format `{f}` (plain, hex, hex_le, ascii)")),
        };
        Ok(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> Result<ProfileSet, ProfileError> {
        ProfileSet::from_toml(Path::new("profiles.toml"), text)
    }

    #[test]
    fn builtins_give_each_protocol_a_default() {
        let s = ProfileSet::builtin();
        for m in REGISTRY {
            let p = s.resolve(m.protocol(), Some("356307042441013")).unwrap();
            assert_eq!(p.protocol, m.protocol(), "{}", m.name());
        }
    }

    #[test]
    fn devices_select_profiles_by_imei_and_range() {
        let s = set(r#"
            [profiles.mine]
            extends = "fm6xx"
            [[devices]]
            profile = "mine"
            imeis = ["123456789012345"]
            ranges = ["356307042440000-356307042449999"]
        "#)
        .unwrap();
        let name = |imei: &str| {
            s.resolve(Protocol::Teltonika, Some(imei))
                .unwrap()
                .name
                .clone()
        };
        assert_eq!(name("123456789012345"), "mine");
        assert_eq!(name("356307042441013"), "mine");
        assert_eq!(name("356307042450000"), "fmb");
        assert_eq!(name("abc"), "fmb");
        // A Teltonika profile is not applied to another protocol's device of that IMEI.
        assert_ne!(
            s.resolve(Protocol::Gt06, Some("123456789012345"))
                .unwrap()
                .protocol,
            Protocol::Teltonika
        );
    }

    #[test]
    fn a_profile_overrides_concept_scale_and_offset() {
        let s = set(r#"
            [profiles.mine]
            extends = "fmb"
            [profiles.mine.ids.9]
            field = "fuel_level_percent"
            scale = 0.1
            offset = -1.5
            [profiles.mine.ids.246]
            ignore = true
            [profiles.mine.ids.500]
            alarms = { 1 = "harsh_braking", 2 = "ALARM_SOS" }
        "#)
        .unwrap();
        let p = s.get("mine").unwrap();
        let r = p.by_id(9).unwrap();
        assert_eq!(
            r.target,
            Target::Field {
                field: Field::FuelLevelPercent,
                index: 0
            }
        );
        assert_eq!((r.scale, r.offset), (0.1, -1.5));
        assert_eq!(p.by_id(246).unwrap().target, Target::Ignore);
        assert!(matches!(&p.by_id(500).unwrap().target, Target::AlarmCodes(c) if c.len() == 2));
        // The rest comes from the built-in, which itself is unchanged.
        assert_eq!(p.by_id(239), s.get("fmb").unwrap().by_id(239));
        assert_ne!(
            s.get("fmb").unwrap().by_id(246).unwrap().target,
            Target::Ignore
        );
    }

    #[test]
    fn overriding_a_builtin_by_name_changes_the_default() {
        let s = set(r#"
            [profiles.fmb.ids.66]
            field = "external_power_volts"
            scale = 0.01
        "#)
        .unwrap();
        let p = s.resolve(Protocol::Teltonika, Some("1")).unwrap();
        assert_eq!(p.by_id(66).unwrap().scale, 0.01);
        assert!(p.by_id(239).is_some());
    }

    #[test]
    fn broken_files_are_refused_with_a_reason() {
        for (text, want) in [
            ("[profiles.x]\nextends = \"nope\"", "nope"),
            ("[profiles.x]\nprotocol = \"teltonika\"\n[profiles.x.ids.1]\nfield = \"warp\"", "warp"),
            ("[profiles.x]\nprotocol = \"teltonika\"\n[profiles.x.ids.1]\nfield = \"rpm\"\ninput = 1", "exactly one"),
            ("[profiles.x]\nprotocol = \"teltonika\"\n[profiles.x.ids.1]\nalarm = \"meteor\"", "meteor"),
            ("[profiles.x]\nprotocol = \"teltonika\"\n[profiles.x.ids.1]\nfield = \"temperatures_celsius\"", "index"),
            ("[profiles.a]\nextends = \"b\"\n[profiles.b]\nextends = \"a\"", "loops"),
            ("[[devices]]\nprofile = \"fmb\"\nranges = [\"9-1\"]", "range"),
            ("[[devices]]\nprofile = \"ghost\"\nimeis = [\"1\"]", "ghost"),
            ("unknown = 1", "unknown"),
        ] {
            let e = set(text).err().unwrap_or_else(|| panic!("accepted: {text}"));
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn reload_swaps_the_set_and_a_broken_file_keeps_the_previous_one() {
        let dir = std::env::temp_dir().join(format!("avlgate-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("profiles.toml");
        let version = std::cell::Cell::new(0);
        let write = |text: &str| {
            version.set(version.get() + 1);
            crate::net::watch::write_versioned(&path, text, version.get());
        };
        write("[profiles.fmb.ids.66]\nfield = \"battery_volts\"\nscale = 0.001\n");
        let profiles = Profiles::load(&path).unwrap();
        let mut cache = ProfileCache::new(profiles.clone(), Protocol::Teltonika);
        let target = |c: &mut ProfileCache| c.get(Some("1")).by_id(66).unwrap().target.clone();
        assert_eq!(target(&mut cache), Rule::field(Field::BatteryVolts).target);
        assert!(!profiles.reload_if_changed().unwrap());

        write("[profiles.fmb.ids.66]\nfield = \"external_power_volts\"\nscale = 0.001\n");
        assert!(!profiles.reload_if_changed().unwrap(), "seen, settling");
        assert!(profiles.reload_if_changed().unwrap());
        assert_eq!(profiles.generation(), 1);
        assert_eq!(
            target(&mut cache),
            Rule::field(Field::ExternalPowerVolts).target
        );

        write("[profiles.fmb.ids.66]\nfield = \"no_such_field\"\n");
        assert!(!profiles.reload_if_changed().unwrap(), "seen, settling");
        assert!(profiles.reload_if_changed().is_err());
        assert_eq!(profiles.generation(), 1);
        assert_eq!(
            target(&mut cache),
            Rule::field(Field::ExternalPowerVolts).target
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The example in docs/schema.md loads.
    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("../../docs/schema.md");
        let start = doc.find("```toml\n[profiles.fm6xx-fuel]").expect("example") + 8;
        let len = doc[start..].find("```").expect("end");
        let s = set(&doc[start..start + len]).unwrap();
        assert_eq!(
            s.resolve(Protocol::Teltonika, Some("356307042441013"))
                .unwrap()
                .name,
            "fm6xx-fuel"
        );
        assert_eq!(
            s.get("fmb").unwrap().by_id(247).unwrap().target,
            Target::Ignore
        );
    }

    #[test]
    fn command_templates_come_from_the_profile_and_are_inherited() {
        let s = set(r#"
            [profiles.gt06-dyd]
            extends = "gt06"
            [profiles.gt06-dyd.commands]
            engine_stop = "DYD,000000#"
            engine_resume = "HFYD,000000#"
            [profiles.gt06-dyd-timer]
            extends = "gt06-dyd"
            [profiles.gt06-dyd-timer.commands]
            set_report_interval = "TIMER,{seconds},180#"
            [[devices]]
            profile = "gt06-dyd-timer"
            imeis = ["864717003283581"]
        "#)
        .unwrap();
        let p = s.resolve(Protocol::Gt06, Some("864717003283581")).unwrap();
        use crate::protocol::CommandRequest as R;
        assert_eq!(
            p.commands.render(&R::EngineStop).as_deref(),
            Some("DYD,000000#")
        );
        assert_eq!(
            p.commands
                .render(&R::SetReportInterval { seconds: 60 })
                .as_deref(),
            Some("TIMER,60,180#")
        );
        // The built-in keeps the protocol's own encoding.
        assert!(s.get("gt06").unwrap().commands.is_empty());
        let e =
            set("[profiles.x]\nextends = \"gt06\"\n[profiles.x.commands]\nengine_start = \"x\"")
                .err()
                .unwrap();
        assert!(e.to_string().contains("engine_start"), "{e}");
    }

    #[test]
    fn alarm_names() {
        assert_eq!(parse_alarm("tow"), Some(Alarm::Tow));
        assert_eq!(parse_alarm("ALARM_POWER_CUT"), Some(Alarm::PowerCut));
        assert_eq!(parse_alarm("Harsh_Braking"), Some(Alarm::HarshBraking));
        assert_eq!(parse_alarm("unspecified"), None);
        assert_eq!(alarm_name(Alarm::GpsAntennaCut), "gps_antenna_cut");
    }
}
