//! What a device id may be, in one place: logins of every protocol, the allow-list, commands
//! and their results are checked against [`is_valid`].
//!
//! A device id travels into places that give characters meaning: an MQTT topic level
//! (`<prefix>/events/<id>`, where `/` starts a new level, `+` and `#` are wildcards that a
//! broker refuses in a PUBLISH, and U+0000 is forbidden), a Kafka key, an event id
//! (`<id>-<digest>-<n>`), log fields, file names of operators' scripts. So the rule is a
//! whitelist, not a blacklist: **ASCII letters, digits, `-`, `_` and `.`; 1 to 32 bytes.**
//!
//! That covers what trackers send and what the protocols on the road map use: 15-digit IMEIs
//! (Teltonika, GT06, Wialon), 10-digit H02 ids, 12-digit JT/T 808 terminal phone numbers,
//! 19–20-digit ICCIDs, hex MEIDs, and the ASCII unit ids of Wialon IPS / Retranslator (serial
//! numbers such as `SN-0042.a`). 32 bytes is twice the longest of them and keeps every topic
//! and key short; anything longer is not an id but an attack or a bug.

/// Longest device id, in bytes.
pub const MAX_LEN: usize = 32;

/// Whether `id` is a usable device id.
pub fn is_valid(id: &str) -> bool {
    is_valid_bytes(id.as_bytes())
}

/// [`is_valid`] on raw bytes (protocol decoders check before building a `String`).
pub fn is_valid_bytes(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|&b| id_byte(b))
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The key under which something about an invalid device id is reported (a command's
/// REJECTED result and the claims about it): topic-safe, bounded, and never a device id
/// (`@` is not an id character), so it cannot land in a real device's topic.
pub const INVALID_KEY: &str = "@invalid";

/// A bounded, printable rendering of an untrusted id for logs and rejection reasons: at most
/// 40 characters, control and non-ASCII characters escaped, `…` when cut.
pub fn excerpt(id: &str) -> String {
    const SHOWN: usize = 40;
    let mut out = String::with_capacity(SHOWN + 8);
    for (i, c) in id.chars().enumerate() {
        if i == SHOWN {
            out.push('…');
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

/// The Luhn check digit of a string of ASCII digits (an IMEI's 15th digit).
pub fn luhn_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.saturating_sub(b'0'));
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_every_protocol_pass() {
        for id in [
            "356307042441013",      // IMEI
            "4209876543",           // H02
            "013912345678",         // JT/T 808 phone number
            "89882390000012345678", // ICCID
            "SN-0042.a_b",          // a Wialon unit id
            &"9".repeat(MAX_LEN),   // the longest
        ] {
            assert!(is_valid(id), "{id}");
        }
    }

    #[test]
    fn topic_unsafe_unbounded_and_non_ascii_ids_fail() {
        for id in [
            "",
            "a/b",
            "+",
            "#",
            "35630704244101\0",
            "3563\u{2028}",
            "356 307",
            "ünit",
            "@invalid",
            "a:b",
            &"9".repeat(MAX_LEN + 1),
            &"1".repeat(20_000),
        ] {
            assert!(!is_valid(id), "{id:?}");
        }
        assert!(!is_valid(INVALID_KEY));
    }

    #[test]
    fn excerpts_are_bounded_and_printable() {
        let long = "1".repeat(20_000);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 41);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("a\0b\u{2028}"), "a\\u{0}b\\u{2028}");
        assert_eq!(excerpt("a/b/c"), "a/b/c");
    }
}
