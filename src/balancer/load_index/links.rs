//! The links from a server's state to the indexes it is a leaf of, through
//! which its in-flight, health and drain changes reach the trees.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::LoadIndex;
use crate::balancer::ServerLoad;

/// One index a server is in, and its leaf there.
struct Link {
    index: Arc<LoadIndex>,
    leaf: usize,
}

/// The least-connections indexes a server is in, notified of every change
/// of its in-flight count, health or drain. Usually none (groups of other
/// algorithms: a change costs one load of a flag) or one; two while a
/// reloaded group's old snapshot still serves.
#[derive(Default)]
pub struct IndexLinks {
    any: AtomicBool,
    links: ArcSwapOption<Vec<Link>>,
    /// Serializes attach and detach (config builds and drops only).
    edit: Mutex<()>,
}

impl fmt::Debug for IndexLinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let links = self.links.load();
        f.debug_struct("IndexLinks")
            .field("indexes", &links.as_ref().map_or(0, |l| l.len()))
            .finish()
    }
}

impl IndexLinks {
    /// Tells every index this server is in that `state` (the server's own)
    /// changed.
    #[inline]
    pub(crate) fn changed<S: ServerLoad>(&self, state: &S) {
        if self.any.load(SeqCst) {
            self.notify(state);
        }
    }

    #[inline(never)]
    fn notify<S: ServerLoad>(&self, state: &S) {
        if let Some(links) = &*self.links.load() {
            for link in links.iter() {
                link.index.refresh_leaf(link.leaf, state);
            }
        }
    }

    /// Adds `index`, where this server is leaf `leaf`.
    pub(crate) fn attach(&self, index: &Arc<LoadIndex>, leaf: usize) {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut links: Vec<Link> = self.copy();
        links.push(Link {
            index: Arc::clone(index),
            leaf,
        });
        self.links.store(Some(Arc::new(links)));
        self.any.store(true, SeqCst);
    }

    /// Removes `index` (its balancer is being dropped).
    pub(crate) fn detach(&self, index: &Arc<LoadIndex>) {
        let _edit = self.edit.lock().unwrap_or_else(|e| e.into_inner());
        let mut links = self.copy();
        links.retain(|l| !Arc::ptr_eq(&l.index, index));
        self.any.store(!links.is_empty(), SeqCst);
        self.links
            .store((!links.is_empty()).then(|| Arc::new(links)));
    }

    fn copy(&self) -> Vec<Link> {
        self.links.load().as_ref().map_or_else(Vec::new, |l| {
            l.iter()
                .map(|l| Link {
                    index: Arc::clone(&l.index),
                    leaf: l.leaf,
                })
                .collect()
        })
    }

    /// Number of indexes this server is in.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.links.load().as_ref().map_or(0, |l| l.len())
    }
}
