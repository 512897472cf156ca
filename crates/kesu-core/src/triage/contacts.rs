//! Repeat-contact tracking: has this customer (`customer_ref`) been seen
//! within the window?
//!
//! [`ContactStore`] is the seam: a single process uses the bounded in-memory
//! [`MemoryContacts`]; replicas on one PostgreSQL share the complaint store's
//! `kesu_store::contacts::StoreContacts`.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// A contact store failed (e.g. its database is unreachable). The pipeline
/// then triages without repeat-contact information and logs a warning.
#[derive(Debug, thiserror::Error)]
#[error("contact store: {0}")]
pub struct ContactError(pub String);

/// Where contacts are remembered.
pub trait ContactStore: Send + Sync {
    /// Record one contact of `customer` at `at` and return how many EARLIER
    /// contacts of the same customer lie within the window, i.e. at times `t`
    /// with `at - window <= t` (the boundary counts; earlier-recorded contacts
    /// stamped after `at` count too).
    ///
    /// `event` names the contact (e.g. its scoped idempotency key): recording
    /// the same event of the same customer again (a retried or re-read item)
    /// records nothing and counts the customer's other contacts in the
    /// window, so a contact is counted once however often it is processed.
    fn record(&self, customer: &str, at: SystemTime, event: Option<&str>) -> Result<u32, ContactError>;
    /// The repeat-contact window.
    fn window(&self) -> Duration;
    /// Customers currently remembered (for `/v1/info`).
    fn tracked(&self) -> usize;
    /// Most customers remembered at once (`None`: unbounded, e.g. a database).
    fn capacity(&self) -> Option<usize>;
    /// Forget every contact of `customer` (erasure of the customer's data).
    /// The default does nothing: a store that keeps only short-lived keyed
    /// hashes lets them age out within the window.
    fn forget(&self, _customer: &str) -> Result<(), ContactError> {
        Ok(())
    }
    /// Where contacts are kept, for `/v1/info` (`memory` or `store`).
    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Timestamps kept per customer: the prior-contact count saturates here.
pub const MAX_CONTACTS_PER_CUSTOMER: usize = 16;

/// In-memory, bounded store. Keeps at most `capacity` customers; a new
/// customer beyond that evicts the customer whose latest contact was recorded
/// longest ago (least recently contacted). Per customer it keeps the times of
/// the newest [`MAX_CONTACTS_PER_CUSTOMER`] contacts within the window.
/// Customer references are kept only as 64-bit keyed hashes (random key per
/// process), never as text. Memory: about 600 bytes per customer (16 contacts of
/// 32 bytes: time and event hash, map and recency index), so about 60 MB at 100,000 customers. `capacity` 0 turns tracking off (every contact is
/// a first contact). Lives in one process: behind several replicas, route a
/// customer to one replica or use a shared store.
pub struct MemoryContacts {
    capacity: usize,
    window: Duration,
    hasher: RandomState,
    inner: Mutex<Inner>,
}

/// One remembered contact: its time and, for a named contact, its event's hash.
type Contact = (SystemTime, Option<u64>);

#[derive(Default)]
struct Inner {
    /// customer hash → (contacts, recency stamp)
    customers: HashMap<u64, (VecDeque<Contact>, u64)>,
    /// recency stamp → customer hash; the first entry is the least recently contacted
    by_recency: BTreeMap<u64, u64>,
    next_stamp: u64,
}

impl MemoryContacts {
    pub fn new(capacity: usize, window: Duration) -> MemoryContacts {
        MemoryContacts { capacity, window, hasher: RandomState::new(), inner: Mutex::new(Inner::default()) }
    }
}

impl ContactStore for MemoryContacts {
    fn record(&self, customer: &str, at: SystemTime, event: Option<&str>) -> Result<u32, ContactError> {
        if self.capacity == 0 {
            return Ok(0);
        }
        let key = self.hasher.hash_one(customer);
        let event = event.map(|e| self.hasher.hash_one((customer, e)));
        let window = self.window;
        let in_window = |(t, _): &Contact| at.duration_since(*t).map(|d| d <= window).unwrap_or(true);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *g;
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        if !inner.customers.contains_key(&key) {
            while inner.customers.len() >= self.capacity {
                let Some((_, oldest)) = inner.by_recency.pop_first() else { break };
                inner.customers.remove(&oldest);
            }
        }
        let (times, recency) = inner.customers.entry(key).or_insert_with(|| (VecDeque::new(), stamp));
        inner.by_recency.remove(recency);
        *recency = stamp;
        inner.by_recency.insert(stamp, key);
        times.retain(in_window);
        if event.is_some() && times.iter().any(|(_, e)| *e == event) {
            return Ok(times.len() as u32 - 1);
        }
        let prior = times.len() as u32;
        // make room first, so the buffer never grows past MAX_CONTACTS_PER_CUSTOMER
        while times.len() >= MAX_CONTACTS_PER_CUSTOMER {
            times.pop_front();
        }
        times.push_back((at, event));
        Ok(prior)
    }

    fn window(&self) -> Duration {
        self.window
    }

    fn tracked(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).customers.len()
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn counts_earlier_contacts_within_the_window() {
        let s = MemoryContacts::new(10, DAY);
        assert_eq!(s.record("c1", t(0), None).unwrap(), 0);
        assert_eq!(s.record("c1", t(60), None).unwrap(), 1);
        assert_eq!(s.record("c2", t(60), None).unwrap(), 0, "another customer");
        assert_eq!(s.record("c1", t(120), None).unwrap(), 2);
        assert_eq!(s.tracked(), 2);
    }

    #[test]
    fn window_boundary_is_inclusive() {
        let s = MemoryContacts::new(10, DAY);
        s.record("c", t(0), None).unwrap();
        // exactly 24 h later: still within the window
        assert_eq!(s.record("c", t(86_400), None).unwrap(), 1);
        let s = MemoryContacts::new(10, DAY);
        s.record("c", t(0), None).unwrap();
        // one second past the window: a first contact again
        assert_eq!(s.record("c", t(86_401), None).unwrap(), 0);
        // and the expired contact is forgotten, the new one counts
        assert_eq!(s.record("c", t(86_402), None).unwrap(), 1);
    }

    #[test]
    fn sub_second_precision_at_the_boundary() {
        let s = MemoryContacts::new(10, DAY);
        s.record("c", t(0), None).unwrap();
        assert_eq!(s.record("c", t(86_400) + Duration::from_millis(1), None).unwrap(), 0);
    }

    #[test]
    fn out_of_order_times_count_as_within_the_window() {
        let s = MemoryContacts::new(10, DAY);
        s.record("c", t(1_000), None).unwrap();
        assert_eq!(s.record("c", t(0), None).unwrap(), 1);
    }

    #[test]
    fn least_recently_contacted_customer_is_evicted() {
        let s = MemoryContacts::new(2, DAY);
        s.record("a", t(0), None).unwrap();
        s.record("b", t(1), None).unwrap();
        s.record("a", t(2), None).unwrap(); // a is now more recent than b
        s.record("c", t(3), None).unwrap(); // evicts b
        assert_eq!(s.tracked(), 2);
        assert_eq!(s.record("a", t(4), None).unwrap(), 2, "a kept");
        assert_eq!(s.record("b", t(5), None).unwrap(), 0, "b was evicted"); // evicts c
        assert_eq!(s.record("c", t(6), None).unwrap(), 0, "c was evicted");
        assert_eq!(s.tracked(), 2);
    }

    #[test]
    fn per_customer_history_is_bounded() {
        let s = MemoryContacts::new(10, DAY);
        for i in 0..40 {
            let n = s.record("c", t(i), None).unwrap();
            assert_eq!(n as usize, (i as usize).min(MAX_CONTACTS_PER_CUSTOMER));
        }
    }

    #[test]
    fn an_event_counts_once() {
        let s = MemoryContacts::new(10, DAY);
        assert_eq!(s.record("c", t(0), Some("k1")).unwrap(), 0);
        assert_eq!(s.record("c", t(5), Some("k1")).unwrap(), 0, "the same contact again: not counted");
        assert_eq!(s.record("c", t(10), Some("k2")).unwrap(), 1);
        assert_eq!(s.record("c", t(20), Some("k1")).unwrap(), 1, "k1 again: only k2 counts");
        assert_eq!(s.record("d", t(20), Some("k1")).unwrap(), 0, "the same event name for another customer");
        assert_eq!(s.record("c", t(30), None).unwrap(), 2);
        assert_eq!(s.record("c", t(40), None).unwrap(), 3, "contacts without an event always count");
    }

    #[test]
    fn capacity_zero_turns_tracking_off() {
        let s = MemoryContacts::new(0, DAY);
        assert_eq!(s.record("c", t(0), None).unwrap(), 0);
        assert_eq!(s.record("c", t(1), None).unwrap(), 0);
        assert_eq!(s.tracked(), 0);
    }
}
