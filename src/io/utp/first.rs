//! The peers to dial over uTP directly: their TCP dial failed before and a uTP dial then
//! worked. Bounded (the oldest are forgotten); shared by every worker.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

/// Peers most recently remembered at once.
const UTP_FIRST_MAX: usize = 4096;

/// Peers whose TCP dial failed and whose uTP dial then worked: the next dial goes straight to
/// uTP (bounded: the oldest are forgotten; a failed uTP dial forgets the peer).
#[derive(Default)]
pub struct UtpFirst(std::sync::Mutex<(HashSet<SocketAddr>, VecDeque<SocketAddr>)>);

impl UtpFirst {
    pub fn contains(&self, a: SocketAddr) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .contains(&a)
    }

    pub(super) fn insert(&self, a: SocketAddr) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *g;
        if set.insert(a) {
            order.push_back(a);
            while order.len() > UTP_FIRST_MAX {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
        }
    }

    pub(super) fn remove(&self, a: SocketAddr) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.remove(&a) {
            g.1.retain(|x| *x != a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utp_first_is_bounded_and_forgets_failures() {
        let first = UtpFirst::default();
        let a = |i: u32| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881));
        for i in 0..(UTP_FIRST_MAX as u32 + 10) {
            first.insert(a(i));
        }
        assert!(!first.contains(a(0)) && !first.contains(a(9)));
        assert!(first.contains(a(10)) && first.contains(a(UTP_FIRST_MAX as u32 + 9)));
        first.remove(a(10));
        assert!(!first.contains(a(10)));
        let g = first.0.lock().unwrap();
        assert_eq!(
            (g.0.len(), g.1.len()),
            (UTP_FIRST_MAX - 1, UTP_FIRST_MAX - 1)
        );
    }
}
