//! The registry: service name → entry, and who depends on whom, kept as services register, are
//! replaced with other dependencies, and leave.

use std::collections::HashMap;
use std::sync::Arc;

use super::Entry;
use crate::runtime::graph::{self, Names};

#[derive(Default)]
pub(crate) struct Registry {
    entries: HashMap<Arc<str>, Entry, Names>,
    /// Name → the registered services that list it as a dependency (it may not be registered
    /// itself): a service's dependants are found without a pass over every service, so that
    /// stopping services one by one, or reporting failures, costs what those services' edges do.
    dependants: HashMap<Arc<str>, Vec<Arc<str>>, Names>,
}

impl Registry {
    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Entry)> {
        self.entries.iter()
    }

    /// Enters a service that is not registered.
    pub(crate) fn insert(&mut self, name: Arc<str>, entry: Entry) {
        self.link(&name, &entry.deps);
        self.entries.insert(name, entry);
    }

    /// Removes a service; services that depend on it keep listing it.
    pub(crate) fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.entries.remove(name)?;
        self.unlink(name, &entry.deps);
        Some(entry)
    }

    /// Records a registered service's new dependencies.
    pub(crate) fn set_deps(&mut self, name: &str, deps: Arc<[String]>) {
        let Some((name, entry)) = self.entries.get_key_value(name) else {
            return;
        };
        let (name, old) = (Arc::clone(name), Arc::clone(&entry.deps));
        self.unlink(&name, &old);
        self.link(&name, &deps);
        if let Some(entry) = self.entries.get_mut(&name) {
            entry.deps = deps;
        }
    }

    /// The registered services that list `name` as a dependency, in no particular order.
    pub(crate) fn dependants(&self, name: &str) -> impl Iterator<Item = (&Arc<str>, &Entry)> {
        let names = self.dependants.get(name).map_or(&[][..], Vec::as_slice);
        graph::visited(1 + names.len());
        names.iter().filter_map(|n| self.entries.get_key_value(n))
    }

    fn link(&mut self, name: &Arc<str>, deps: &[String]) {
        for dep in deps {
            match self.dependants.get_mut(dep.as_str()) {
                // A dependency listed twice is linked once: its name was pushed just before.
                Some(names) if names.last() == Some(name) => {}
                Some(names) => names.push(Arc::clone(name)),
                None => {
                    // The dependency's own name if it is registered: no second copy of it.
                    let key = self
                        .entries
                        .get_key_value(dep.as_str())
                        .map_or_else(|| dep.as_str().into(), |(key, _)| Arc::clone(key));
                    self.dependants.insert(key, vec![Arc::clone(name)]);
                }
            }
        }
    }

    fn unlink(&mut self, name: &str, deps: &[String]) {
        for dep in deps {
            if let Some(names) = self.dependants.get_mut(dep.as_str()) {
                names.retain(|n| **n != *name);
                if names.is_empty() {
                    self.dependants.remove(dep.as_str());
                }
            }
        }
    }
}
