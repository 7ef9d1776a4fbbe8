//! An index from a device to a few keys of its own (the ledger's command ids, the dispatcher's
//! session ids), so that what concerns one device costs that device's keys, not the pod's or
//! the fleet's (docs/load-runs.md, the command path at fleet scale).

use std::collections::HashMap;

/// Device → its keys, in the order they were added. A device almost always has one: it is held
/// inline, with no allocation of its own (memory per session).
#[derive(Debug)]
pub(crate) struct ByDevice<T> {
    map: HashMap<String, Keys<T>>,
}

#[derive(Debug)]
enum Keys<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> Default for ByDevice<T> {
    fn default() -> Self {
        ByDevice {
            map: HashMap::new(),
        }
    }
}

impl<T: Clone + PartialEq> ByDevice<T> {
    /// The keys of `device`, oldest first (empty if none).
    pub(crate) fn get(&self, device: &str) -> &[T] {
        match self.map.get(device) {
            None => &[],
            Some(Keys::One(k)) => std::slice::from_ref(k),
            Some(Keys::Many(v)) => v,
        }
    }

    pub(crate) fn add(&mut self, device: &str, key: T) {
        let Some(keys) = self.map.get_mut(device) else {
            self.map.insert(device.to_string(), Keys::One(key));
            return;
        };
        match keys {
            Keys::One(first) => *keys = Keys::Many(vec![first.clone(), key]),
            Keys::Many(v) => v.push(key),
        }
    }

    pub(crate) fn remove(&mut self, device: &str, key: &T) {
        let Some(keys) = self.map.get_mut(device) else {
            return;
        };
        match keys {
            Keys::One(k) if k == key => {
                self.map.remove(device);
            }
            Keys::One(_) => {}
            Keys::Many(v) => {
                // Oldest first: keep the order.
                if let Some(i) = v.iter().position(|k| k == key) {
                    v.remove(i);
                }
                match v[..] {
                    [] => {
                        self.map.remove(device);
                    }
                    [ref one] => *keys = Keys::One(one.clone()),
                    _ => {}
                }
            }
        }
    }

    /// The devices that have keys.
    pub(crate) fn devices(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_in_order_and_empty_devices_go() {
        let mut b = ByDevice::default();
        b.add("A", 1);
        b.add("B", 2);
        b.add("A", 3);
        b.add("A", 4);
        assert_eq!(b.get("A"), [1, 3, 4]);
        assert_eq!(b.get("B"), [2]);
        assert!(b.get("C").is_empty());
        b.remove("A", &3);
        assert_eq!(b.get("A"), [1, 4]);
        b.remove("A", &1);
        assert_eq!(b.get("A"), [4]);
        b.remove("A", &9);
        assert_eq!(b.get("A"), [4], "an unknown key changes nothing");
        b.remove("A", &4);
        b.remove("B", &2);
        assert_eq!(b.len(), 0);
        assert_eq!(b.devices().count(), 0);
    }
}
