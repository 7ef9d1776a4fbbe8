//! Per-model command texts: an operator's `[profiles.<name>.commands]` table maps a typed
//! command to the text a device model understands, applied before the protocol's built-in
//! encoding (the text is then framed as the protocol frames a CUSTOM text command).
//!
//! ```toml
//! [profiles.gt06-dyd]
//! extends = "gt06"
//! [profiles.gt06-dyd.commands]
//! engine_stop = "DYD,000000#"
//! engine_resume = "HFYD,000000#"
//! set_report_interval = "TIMER,{seconds},180#"
//! ```
//!
//! Keys are the command types in lower case (`engine_stop`, `engine_resume`,
//! `position_request`, `reboot`, `set_report_interval`, `output_set`). Placeholders:
//! `{seconds}` (SET_REPORT_INTERVAL), `{index}` and `{on}` (OUTPUT_SET; `{on}` is `1` or `0`).
//! A template that names a placeholder its type does not have is refused when the file loads.

use std::collections::BTreeMap;

use crate::protocol::CommandRequest;

/// The typed commands a template can stand for, by their file key.
const KEYS: &[(&str, &[&str])] = &[
    ("engine_stop", &[]),
    ("engine_resume", &[]),
    ("position_request", &[]),
    ("reboot", &[]),
    ("set_report_interval", &["seconds"]),
    ("output_set", &["index", "on"]),
];

/// A profile's command templates (empty: the protocol's built-in encoding for every type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    by_key: BTreeMap<&'static str, String>,
}

impl Templates {
    /// Checks and takes a `[profiles.<name>.commands]` table. `Err` says what is wrong.
    pub fn parse(table: &BTreeMap<String, String>) -> Result<Templates, String> {
        let mut by_key = BTreeMap::new();
        for (key, text) in table {
            let Some((known, placeholders)) = KEYS.iter().find(|(k, _)| k == key) else {
                return Err(format!(
                    "`commands.{key}`: not a command type ({})",
                    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
                ));
            };
            for name in placeholder_names(text).map_err(|e| format!("`commands.{key}`: {e}"))? {
                if !placeholders.contains(&name) {
                    return Err(format!(
                        "`commands.{key}`: unknown placeholder {{{name}}} (this type has {})",
                        if placeholders.is_empty() {
                            "none".to_string()
                        } else {
                            placeholders
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ));
                }
            }
            if text.is_empty() {
                return Err(format!("`commands.{key}` is empty"));
            }
            crate::protocol::check_command_text(text)
                .map_err(|e| format!("`commands.{key}`: {e}"))?;
            by_key.insert(*known, text.clone());
        }
        Ok(Templates { by_key })
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Adds `other`'s templates over these (a profile extending another).
    pub fn extend(&mut self, other: &Templates) {
        for (k, v) in &other.by_key {
            self.by_key.insert(k, v.clone());
        }
    }

    /// The text this profile sends for `request`, if it has a template for its type.
    pub fn render(&self, request: &CommandRequest) -> Option<String> {
        let (key, values): (&str, Vec<(&str, String)>) = match request {
            CommandRequest::Text(_) | CommandRequest::Payload(_) => return None,
            CommandRequest::EngineStop => ("engine_stop", vec![]),
            CommandRequest::EngineResume => ("engine_resume", vec![]),
            CommandRequest::PositionRequest => ("position_request", vec![]),
            CommandRequest::Reboot => ("reboot", vec![]),
            CommandRequest::SetReportInterval { seconds } => (
                "set_report_interval",
                vec![("seconds", seconds.to_string())],
            ),
            CommandRequest::OutputSet { index, on } => (
                "output_set",
                vec![
                    ("index", index.to_string()),
                    ("on", if *on { "1" } else { "0" }.to_string()),
                ],
            ),
        };
        let template = self.by_key.get(key)?;
        let mut out = template.clone();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), &value);
        }
        Some(out)
    }
}

/// The `{name}` placeholders of a template; `Err` for an unclosed brace.
fn placeholder_names(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "a `{` without its `}`".to_string())?;
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn templates_render_their_placeholders() {
        let t = Templates::parse(&table(&[
            ("engine_stop", "DYD,000000#"),
            ("set_report_interval", "TIMER,{seconds},{seconds}#"),
            ("output_set", "OUT{index}={on}"),
        ]))
        .unwrap();
        assert_eq!(
            t.render(&CommandRequest::EngineStop).as_deref(),
            Some("DYD,000000#")
        );
        assert_eq!(
            t.render(&CommandRequest::SetReportInterval { seconds: 30 })
                .as_deref(),
            Some("TIMER,30,30#")
        );
        assert_eq!(
            t.render(&CommandRequest::OutputSet {
                index: 2,
                on: false
            })
            .as_deref(),
            Some("OUT2=0")
        );
        // No template: the protocol's own encoding.
        assert_eq!(t.render(&CommandRequest::Reboot), None);
        assert_eq!(t.render(&CommandRequest::Text("x".into())), None);
    }

    #[test]
    fn bad_tables_are_refused_with_a_reason() {
        for (pairs, want) in [
            (vec![("engine_start", "x")], "not a command type"),
            (vec![("reboot", "RESET,{seconds}#")], "unknown placeholder"),
            (vec![("output_set", "OUT{index")], "without its"),
            (vec![("reboot", "")], "empty"),
            (vec![("reboot", "RESET#\r\nDYD#")], "control character"),
        ] {
            let e = Templates::parse(&table(&pairs)).unwrap_err();
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
    }
}
