//! The optional IMEI allow-list: a text file, one device per line, `#` starts a comment. When
//! it is configured, a device whose id is not listed gets its protocol's login refusal and is
//! disconnected (UDP: its datagrams are neither published nor acknowledged).
//!
//! A line may pin its device to source networks: `IMEI CIDR...` (whitespace or commas between;
//! a bare address is a /32 or /128). Such a device is accepted only from those networks, over
//! TCP and UDP alike (behind a PROXY-protocol balancer, the address in the header counts). A
//! line `* [CIDR...]` lets every device that has no line of its own in, from anywhere or from
//! those networks. Several lines for one id add up: a line without networks means anywhere.
//!
//! The file is re-read when it changes, once the change has settled ([`FileWatch`]: a file
//! caught half-written must not lock devices out); a file that cannot be read or parsed on
//! reload leaves the previous list in force.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::net::watch::FileWatch;

/// Larger files are refused: a list of a few million IMEIs is ~50 MB; anything beyond is a
/// mistake (a wrong path), and reading it would only waste memory.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    #[error("reading the IMEI allow-list {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the IMEI allow-list {0} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
    #[error("{0}:{1}: not a device id (letters, digits, `-`, `_`, `.`, up to 32) or `*`: {2:?}")]
    Syntax(PathBuf, usize, String),
    #[error(
        "{0}:{1}: not a network (CIDR such as 10.0.0.0/8 or 2001:db8::/32, or an address): {2:?}"
    )]
    Network(PathBuf, usize, String),
}

/// Where a listed device may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Anywhere,
    Networks(Vec<IpNet>),
}

impl Origin {
    fn admits(&self, ip: IpAddr) -> bool {
        match self {
            Origin::Anywhere => true,
            Origin::Networks(nets) => {
                // A dual-stack socket reports IPv4 devices as ::ffff:a.b.c.d.
                let ip = ip.to_canonical();
                nets.iter().any(|n| n.contains(&ip))
            }
        }
    }

    /// Several lines for one id add up.
    fn add(&mut self, more: Origin) {
        match (self, more) {
            (Origin::Anywhere, _) => {}
            (s, Origin::Anywhere) => *s = Origin::Anywhere,
            (Origin::Networks(a), Origin::Networks(b)) => a.extend(b),
        }
    }
}

/// The parsed file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries {
    ids: HashMap<String, Origin>,
    /// The `*` line: every id without a line of its own.
    others: Option<Origin>,
}

/// What the list says about a device at an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Not on the list (and no `*` line).
    NotListed,
    /// Listed, but pinned to networks the address is not in.
    WrongNetwork,
}

impl Entries {
    pub fn check(&self, id: &str, ip: IpAddr) -> Verdict {
        match self.ids.get(id).or(self.others.as_ref()) {
            None => Verdict::NotListed,
            Some(from) if from.admits(ip) => Verdict::Allowed,
            Some(_) => Verdict::WrongNetwork,
        }
    }

    /// Device ids listed (the `*` line not counted).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.others.is_none()
    }
}

/// The allow-list and the file it came from.
#[derive(Debug)]
pub struct AllowList {
    watch: FileWatch,
    entries: RwLock<Arc<Entries>>,
}

/// Parses the file format.
pub fn parse(path: &Path, text: &str) -> Result<Entries, AllowListError> {
    let mut out = Entries::default();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or_default();
        let mut words = entry
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty());
        let Some(id) = words.next() else {
            continue;
        };
        if id != "*" && !crate::device_id::is_valid(id) {
            return Err(AllowListError::Syntax(
                path.into(),
                i + 1,
                id.chars().take(40).collect(),
            ));
        }
        let mut nets = Vec::new();
        for w in words {
            let net = w
                .parse::<IpNet>()
                .or_else(|_| w.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    AllowListError::Network(path.into(), i + 1, w.chars().take(60).collect())
                })?;
            nets.push(net.trunc());
        }
        let from = if nets.is_empty() {
            Origin::Anywhere
        } else {
            Origin::Networks(nets)
        };
        let slot = if id == "*" {
            &mut out.others
        } else {
            match out.ids.get_mut(id) {
                Some(f) => {
                    f.add(from);
                    continue;
                }
                None => {
                    out.ids.insert(id.to_string(), from);
                    continue;
                }
            }
        };
        match slot {
            Some(f) => f.add(from),
            None => *slot = Some(from),
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Entries, AllowListError> {
    let meta = std::fs::metadata(path).map_err(|e| AllowListError::Read(path.into(), e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(AllowListError::TooLarge(path.into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| AllowListError::Read(path.into(), e))?;
    parse(path, &text)
}

impl AllowList {
    /// Reads the file; an error here stops the gateway from starting.
    pub fn load(path: &Path) -> Result<Self, AllowListError> {
        let watch = FileWatch::new(vec![path.into()]);
        let entries = read(path)?;
        Ok(AllowList {
            watch,
            entries: RwLock::new(Arc::new(entries)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.watch.paths()[0]
    }

    fn current(&self) -> Arc<Entries> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether device `id` may log in from `ip`.
    pub fn check(&self, id: &str, ip: IpAddr) -> Verdict {
        self.current().check(id, ip)
    }

    /// Device ids on the list now.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Re-reads the file if it changed and the change has settled (one call after it was
    /// seen). `Ok(true)`: the new list is in force. `Err`: reported once per change; the
    /// previous list stays.
    pub fn reload_if_changed(&self) -> Result<bool, AllowListError> {
        let Some(entries) = self.watch.poll(|| read(self.path()))? else {
            return Ok(false);
        };
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(entries);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const ANY: &str = "203.0.113.9";

    #[test]
    fn comments_blanks_and_spaces_are_ignored() {
        let s = parse(
            Path::new("x"),
            "# fleet A\n356307042441013\n  862123456789012  # truck 7\n\n#\nSN-42.a\n",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        for id in ["356307042441013", "862123456789012", "SN-42.a"] {
            assert_eq!(s.check(id, ip(ANY)), Verdict::Allowed, "{id}");
        }
        assert_eq!(s.check("356307042441099", ip(ANY)), Verdict::NotListed);
    }

    #[test]
    fn a_bad_line_is_reported_with_its_number() {
        let e = parse(Path::new("list"), "1\n2\nab/c\n").unwrap_err();
        assert!(e.to_string().starts_with("list:3:"), "{e}");
        assert!(parse(Path::new("l"), &"9".repeat(33)).is_err());
        let e = parse(Path::new("list"), "1 10.0.0.0/8\n2 10.0.0.0/33\n").unwrap_err();
        assert!(e.to_string().starts_with("list:2:"), "{e}");
        assert!(parse(Path::new("l"), "1 not-a-net").is_err());
    }

    #[test]
    fn pinned_devices_are_allowed_only_from_their_networks() {
        let s = parse(
            Path::new("x"),
            "356307042441013 10.20.0.0/16, 192.0.2.7\n\
             862123456789012 2001:db8::/32\n\
             350000000000006\n",
        )
        .unwrap();
        let t = "356307042441013";
        assert_eq!(s.check(t, ip("10.20.3.4")), Verdict::Allowed);
        assert_eq!(s.check(t, ip("192.0.2.7")), Verdict::Allowed);
        assert_eq!(s.check(t, ip("192.0.2.8")), Verdict::WrongNetwork);
        assert_eq!(s.check(t, ip("10.21.0.1")), Verdict::WrongNetwork);
        // An IPv4 device seen by a dual-stack socket.
        assert_eq!(s.check(t, ip("::ffff:10.20.0.1")), Verdict::Allowed);
        assert_eq!(
            s.check("862123456789012", ip("2001:db8::1")),
            Verdict::Allowed
        );
        assert_eq!(
            s.check("862123456789012", ip("10.20.0.1")),
            Verdict::WrongNetwork
        );
        assert_eq!(s.check("350000000000006", ip(ANY)), Verdict::Allowed);
    }

    #[test]
    fn the_star_line_covers_unlisted_devices_and_lines_add_up() {
        let s = parse(
            Path::new("x"),
            "* 100.64.0.0/10\n356307042441013 10.0.0.0/8\n356307042441013 192.0.2.0/24\n",
        )
        .unwrap();
        assert_eq!(
            s.check("862000000000001", ip("100.64.1.1")),
            Verdict::Allowed
        );
        assert_eq!(s.check("862000000000001", ip(ANY)), Verdict::WrongNetwork);
        // A device with its own lines is not covered by `*`.
        let t = "356307042441013";
        assert_eq!(s.check(t, ip("100.64.1.1")), Verdict::WrongNetwork);
        assert_eq!(s.check(t, ip("10.1.1.1")), Verdict::Allowed);
        assert_eq!(s.check(t, ip("192.0.2.1")), Verdict::Allowed);
        let s = parse(Path::new("x"), "1 10.0.0.0/8\n1\n").unwrap();
        assert_eq!(
            s.check("1", ip(ANY)),
            Verdict::Allowed,
            "a line without networks"
        );
    }

    #[test]
    fn reload_picks_up_changes_and_keeps_the_old_list_on_error() {
        let dir = std::env::temp_dir().join(format!("avlgate-allow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("imeis.txt");
        std::fs::write(&path, "111\n").unwrap();
        let l = AllowList::load(&path).unwrap();
        let a = ip(ANY);
        assert_eq!(l.check("111", a), Verdict::Allowed);
        assert_eq!(l.check("222", a), Verdict::NotListed);
        assert!(!l.reload_if_changed().unwrap());
        std::fs::write(&path, "111\n222 10.0.0.0/8\n").unwrap();
        assert!(!l.reload_if_changed().unwrap(), "seen, settling");
        assert!(l.reload_if_changed().unwrap());
        assert_eq!(l.check("222", a), Verdict::WrongNetwork);
        assert_eq!(l.check("222", ip("10.9.9.9")), Verdict::Allowed);
        std::fs::write(&path, "111\n222\nnot an imei\n").unwrap();
        assert!(!l.reload_if_changed().unwrap());
        assert!(l.reload_if_changed().is_err());
        assert!(!l.reload_if_changed().unwrap(), "reported once");
        assert_eq!(
            l.check("222", a),
            Verdict::WrongNetwork,
            "the previous list stays in force"
        );
        assert_eq!(l.len(), 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
