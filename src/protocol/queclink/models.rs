//! Queclink device types: which model a `<Protocol Version>` (text) or a device-type byte
//! (classic binary) names, and what that decides for the decoder and the command encoder.
//!
//! The text `<Protocol Version>` is `XXMMmm`: a 2-hex-digit device type then the protocol's
//! major and minor version; newer models use a 6-digit type (`802004MMmm`, always starting
//! `80`). The table is Traccar's `PROTOCOL_MODELS` (the decoder's map, not a vendor
//! catalogue): prefixes outside it are routine, so an unknown type is never an error, only
//! "no model-specific reading".
//!
//! The model decides:
//! - the **family** ([`Family`]), which picks the layout of the fields after the positions of a
//!   report (vehicle trackers end with mileage / hour meter / analog inputs / battery / device
//!   status; personal trackers with a battery percentage; GL5xx and GT501 with their own);
//! - the **default command password**: the model name in lower case (`gl300`, `gv300w`), as
//!   Queclink ships them (see [`Model::default_password`]);
//! - the few per-model quirks the decoder must know (a VIN before the device name on the GV500
//!   OBD family, the CV200's inverted `GTIGL` polarity and its extra fields, GV200's
//!   input/output bytes in place of the battery and status).

/// What the fields after a report's positions look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Hard-wired vehicle trackers (GV, GMT, CV): mileage, hour meter, analog inputs,
    /// backup battery %, device status.
    Vehicle,
    /// GV200: mileage, hour meter, three analog inputs, digital input and output bytes.
    Gv200,
    /// Personal / asset trackers (GL200, GL300, GL320M, GB100): a battery percentage.
    Personal,
    /// GL500 / GL530 / GL50x: CSQ RSSI in the position's last field, then CSQ BER, battery
    /// voltage and percentage, mode, motion, temperature.
    Gl5,
    /// GT501 / GT500MA: CSQ RSSI and battery percentage.
    Gt501,
}

/// One known device type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// Upper-case hex device type as the protocol version starts (`1A`, `802004`).
    pub code: &'static str,
    /// The model's name as Queclink writes it.
    pub name: &'static str,
    pub family: Family,
}

const fn m(code: &'static str, name: &'static str, family: Family) -> Model {
    Model { code, name, family }
}

use Family::{Gl5, Gt501, Gv200, Personal, Vehicle};

/// The known device types (Traccar's map, plus the Protocol Pro GV500CNA's `8203`).
pub static MODELS: &[Model] = &[
    m("02", "GL200", Personal),
    m("04", "GV200", Gv200),
    m("06", "GV300", Vehicle),
    m("08", "GMT100", Vehicle),
    m("09", "GV50P", Vehicle),
    m("0F", "GV55", Vehicle),
    m("10", "GV55LITE", Vehicle),
    m("11", "GL500", Gl5),
    m("1A", "GL300", Personal),
    m("1F", "GV500", Vehicle),
    m("21", "GL200", Personal),
    m("25", "GV300", Vehicle),
    m("27", "GV300W", Vehicle),
    m("28", "GL300VC", Personal),
    m("2C", "GL300W", Personal),
    m("2D", "GV500VC", Vehicle),
    m("2F", "GV55", Vehicle),
    m("30", "GL300", Personal),
    m("31", "GV65", Vehicle),
    m("35", "GV200", Gv200),
    m("36", "GV500", Vehicle),
    m("3F", "GMT100", Vehicle),
    m("40", "GL500", Gl5),
    m("41", "GV75W", Vehicle),
    m("42", "GT501", Gt501),
    m("44", "GL530", Gl5),
    m("45", "GB100", Personal),
    m("4B", "GV300CAN", Vehicle),
    m("4F", "GV56", Vehicle),
    m("50", "GV55W", Vehicle),
    m("52", "GL50", Gl5),
    m("55", "GL50B", Gl5),
    m("5E", "GV500MAP", Vehicle),
    m("6E", "GV310LAU", Vehicle),
    m("74", "GV350CEU", Vehicle),
    m("BD", "CV200", Vehicle),
    m("C2", "GV600M", Vehicle),
    m("C3", "GL320M", Personal),
    m("DC", "GV600MG", Vehicle),
    m("DE", "GL500M", Gl5),
    m("DF", "CV100LG", Vehicle),
    m("F1", "GV350M", Vehicle),
    m("F8", "GV800W", Vehicle),
    m("FC", "GV600W", Vehicle),
    m("802004", "GV58LAU", Vehicle),
    m("802005", "GV355CEU", Vehicle),
    m("80201E", "GV30CEU", Vehicle),
    m("8203", "GV500CNA", Vehicle),
];

/// The model a text `<Protocol Version>` names: the first 6 characters of a 10-character
/// version, the first 2 otherwise.
pub fn from_version(version: &str) -> Option<&'static Model> {
    let code = if version.len() > 6 {
        version.get(..6)?
    } else {
        version.get(..2)?
    };
    by_code(code)
}

/// The model of a device-type code (`1A`, `802004`), case-insensitive.
pub fn by_code(code: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.code.eq_ignore_ascii_case(code))
}

impl Model {
    /// The password Queclink ships the model with: its name in lower case (`gl300`,
    /// `gv300w`). Operators who changed it set `queclink.command_password`.
    pub fn default_password(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// GV500-family OBD trackers put the VIN before the device name.
    pub fn has_vin(&self) -> bool {
        matches!(self.name, "GV500" | "GV500VC" | "GV500MAP")
    }

    /// CV200: two extra fields before `GTIGN`/`GTIGF`'s duration, and `GTIGL`'s report type
    /// inverted (1 = ignition on).
    pub fn is_cv200(&self) -> bool {
        self.name == "CV200"
    }

    /// Vehicle trackers with digital outputs (`AT+GTOUT`); personal trackers have none.
    pub fn has_outputs(&self) -> bool {
        matches!(self.family, Family::Vehicle | Family::Gv200)
    }

    /// Digital outputs `AT+GTOUT` addresses: four on the GV200, three elsewhere.
    pub fn outputs(&self) -> u8 {
        if self.family == Family::Gv200 {
            4
        } else {
            3
        }
    }
}

/// The distinct default passwords, for the `command_password` setting's choices.
pub fn passwords() -> Vec<String> {
    let mut v: Vec<String> = MODELS.iter().map(Model::default_password).collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_resolve_by_two_or_six_digit_type() {
        assert_eq!(from_version("1A0800").map(|m| m.name), Some("GL300"));
        assert_eq!(from_version("8020040703").map(|m| m.name), Some("GV58LAU"));
        assert_eq!(from_version("df0200").map(|m| m.name), Some("CV100LG"));
        // A 10-character version whose 6-digit type is unknown is not read by its first two.
        assert_eq!(from_version("8020990100"), None);
        assert_eq!(from_version("ZZ0100"), None);
        assert_eq!(from_version(""), None);
        assert_eq!(from_version("1"), None);
        assert_eq!(by_code("1A").unwrap().default_password(), "gl300");
        assert_eq!(by_code("27").unwrap().default_password(), "gv300w");
    }

    #[test]
    fn codes_are_unique_upper_case_hex() {
        for (i, a) in MODELS.iter().enumerate() {
            assert!(a
                .code
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
            assert!(
                MODELS[i + 1..].iter().all(|b| b.code != a.code),
                "{}",
                a.code
            );
        }
        let p = passwords();
        assert!(p.contains(&"gv300".to_string()) && p.windows(2).all(|w| w[0] < w[1]));
    }
}
