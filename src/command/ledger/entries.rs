//! The ledger's commands by id, indexed by device.
//!
//! Every pod tracks the whole fleet's commands (up to `max_entries`), but a login, the
//! per-device cap and a newer session elsewhere concern one device: the index makes them cost
//! that device's commands, not the fleet's (`benches/ledger.rs`).

use std::collections::HashMap;

use super::Entry;
use crate::command::by_device::ByDevice;

#[derive(Debug, Default)]
pub(super) struct Entries {
    by_id: HashMap<String, Entry>,
    /// Device → the ids of its entries, oldest first. An entry's device never changes.
    by_device: ByDevice<String>,
}

impl Entries {
    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub(super) fn get(&self, id: &str) -> Option<&Entry> {
        self.by_id.get(id)
    }

    /// For changing an entry's state; never its device.
    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.by_id.get_mut(id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.by_id.iter()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.by_id.values()
    }

    /// The entries of device `imei`, oldest first.
    pub(super) fn of_device<'a>(
        &'a self,
        imei: &str,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.by_device
            .get(imei)
            .iter()
            .filter_map(|id| self.by_id.get_key_value(id))
    }

    /// The devices that have entries, and how many there are.
    pub(super) fn devices(&self) -> impl Iterator<Item = &String> {
        self.by_device.devices()
    }

    pub(super) fn device_count(&self) -> usize {
        self.by_device.len()
    }

    /// Adds `e` as `id` (replacing an entry of that id, if any).
    pub(super) fn insert(&mut self, id: String, e: Entry) {
        let imei = e.imei.clone();
        if let Some(old) = self.by_id.insert(id.clone(), e) {
            if old.imei == imei {
                return;
            }
            self.by_device.remove(&old.imei, &id);
        }
        self.by_device.add(&imei, id);
    }

    /// The entry `id`, made by `new` if there is none.
    pub(super) fn get_or_insert_with(&mut self, id: &str, new: impl FnOnce() -> Entry) -> &Entry {
        if !self.by_id.contains_key(id) {
            self.insert(id.to_string(), new());
        }
        &self.by_id[id]
    }

    /// Keeps the entries for which `keep` is true.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, &Entry) -> bool) {
        let mut gone = Vec::new();
        self.by_id.retain(|id, e| {
            let k = keep(id, e);
            if !k {
                gone.push((std::mem::take(&mut e.imei), id.clone()));
            }
            k
        });
        for (imei, id) in gone {
            self.by_device.remove(&imei, &id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::State;
    use super::*;

    fn entry(imei: &str) -> Entry {
        Entry {
            command: None,
            imei: imei.into(),
            deadline: SystemTime::UNIX_EPOCH,
            state: State::Open,
            claimed: false,
            proposal: None,
            forget_at: None,
        }
    }

    fn ids_of(e: &Entries, imei: &str) -> Vec<String> {
        e.of_device(imei).map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn the_index_follows_inserts_and_removals_in_order() {
        let mut e = Entries::default();
        for (id, imei) in [("c1", "A"), ("c2", "B"), ("c3", "A"), ("c4", "A")] {
            e.insert(id.into(), entry(imei));
        }
        e.get_or_insert_with("c5", || entry("B"));
        // Present already: not replaced, not indexed twice.
        e.get_or_insert_with("c1", || entry("B"));
        assert_eq!(ids_of(&e, "A"), ["c1", "c3", "c4"]);
        assert_eq!(ids_of(&e, "B"), ["c2", "c5"]);
        assert_eq!((e.len(), e.device_count()), (5, 2));

        let forget = ["c3", "c2", "c5"];
        e.retain(|id, _| !forget.contains(&id));
        assert_eq!(ids_of(&e, "A"), ["c1", "c4"]);
        assert!(ids_of(&e, "B").is_empty());
        assert_eq!((e.len(), e.device_count()), (2, 1));
        assert!(!e.contains_key("c3") && e.contains_key("c4"));

        // Replacing an id with an entry of another device moves it in the index.
        e.insert("c1".into(), entry("C"));
        assert_eq!(ids_of(&e, "A"), ["c4"]);
        assert_eq!(ids_of(&e, "C"), ["c1"]);
        assert_eq!(e.devices().count(), 2);
    }
}
