//! The vocabulary: every normalized field once ([`field`]), the rules that map a device's own
//! values onto it ([`rules`]), and the device profiles that pick the rules per device and let
//! operators extend them without code ([`profiles`]).
//!
//! Where does a field come from? Each protocol maps its values in one file,
//! `src/protocol/<name>/mapping.rs`; `docs/schema.md` tables every field against every
//! protocol (generated from those files: `avlgate vocabulary`, [`doc`]).

pub mod doc;
pub mod field;
pub mod profiles;
pub mod rules;

pub use field::{Converted, Field, Kind};
pub use profiles::{ProfileCache, Profiles};
pub use rules::{Format, Key, Mapper, Profile, Rule, Target, Value};
