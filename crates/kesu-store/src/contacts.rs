//! Repeat contacts kept in the complaint store, so that several replicas on
//! one PostgreSQL (or one process across restarts) agree on whether a
//! customer has been in touch within the window.
//!
//! Customer references are never stored: each is keyed with HMAC-SHA256
//! under a configured secret (`KESU_CUSTOMER_KEY` / `KESU_CUSTOMER_KEY_FILE`),
//! the same for every replica, or, without one, with the database's own
//! random salt (shared by the replicas too, but kept in the same database).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use kesu_core::triage::{contacts::MAX_CONTACTS_PER_CUSTOMER, ContactError, ContactStore};

use crate::Store;

/// How long a contact lookup may wait for the database; past it the item is
/// triaged without repeat-contact information (and a warning is logged).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// After a lookup fails (timeout or database error), the following ones for
/// this long fail at once instead of each waiting [`LOOKUP_TIMEOUT`]: a batch
/// of texts during a store outage costs one wait, not one per text.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// How customer references become keys.
#[derive(Clone)]
pub enum Keying {
    /// HMAC-SHA256 under this secret (at least 16 bytes).
    Secret(Arc<Vec<u8>>),
    /// The store's salted hash ([`Store::customer_hash`]).
    DatabaseSalt,
}

/// A [`ContactStore`] over the complaint store's `contacts` table.
///
/// The trait is synchronous (the pipeline runs on blocking threads): each
/// call runs its query as a task on the runtime that owns the store's
/// connections and waits for it, at most [`LOOKUP_TIMEOUT`]. Call it from a
/// blocking thread, never from that runtime's own async tasks.
pub struct StoreContacts {
    store: Store,
    runtime: tokio::runtime::Handle,
    window: Duration,
    keying: Keying,
    tracked: Arc<AtomicUsize>,
    counted_at: Arc<AtomicI64>,
    /// Unix ms until which lookups fail at once ([`PAUSE_AFTER_FAILURE`]).
    paused_until: AtomicI64,
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl StoreContacts {
    /// Contacts in `store` within `window`, keyed by `keying`; queries run on `runtime`.
    pub fn new(store: Store, runtime: tokio::runtime::Handle, window: Duration, keying: Keying) -> StoreContacts {
        StoreContacts {
            store,
            runtime,
            window,
            keying,
            tracked: Arc::default(),
            counted_at: Arc::new(AtomicI64::new(i64::MIN)),
            paused_until: AtomicI64::new(i64::MIN),
        }
    }

    /// The key a customer reference is stored under.
    pub fn key(&self, customer: &str) -> String {
        match &self.keying {
            Keying::Secret(secret) => {
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
                mac.update(customer.as_bytes());
                format!("k:{}", hex::encode(mac.finalize().into_bytes()))
            }
            Keying::DatabaseSalt => format!("s:{}", self.store.customer_hash(customer)),
        }
    }

    /// Run `f` on the store's runtime and wait for it, unless a recent
    /// failure paused lookups ([`PAUSE_AFTER_FAILURE`]).
    fn wait<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = Result<T, crate::StoreError>> + Send + 'static,
    ) -> Result<T, ContactError> {
        let now = ms(SystemTime::now());
        let until = self.paused_until.load(Ordering::Relaxed);
        if now < until {
            return Err(ContactError(format!(
                "skipped: the store failed a lookup within the last {PAUSE_AFTER_FAILURE:?} ({} ms left)",
                until - now
            )));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        let r = match rx.recv_timeout(LOOKUP_TIMEOUT) {
            Ok(r) => r.map_err(|e| ContactError(e.to_string())),
            Err(_) => Err(ContactError(format!("no answer from the store within {LOOKUP_TIMEOUT:?}"))),
        };
        if r.is_err() {
            let pause = PAUSE_AFTER_FAILURE.as_millis() as i64;
            self.paused_until.store(ms(SystemTime::now()).saturating_add(pause), Ordering::Relaxed);
        }
        r
    }
}

impl ContactStore for StoreContacts {
    fn record(&self, customer: &str, at: SystemTime, event: Option<&str>) -> Result<u32, ContactError> {
        let (store, key, at_ms) = (self.store.clone(), self.key(customer), ms(at));
        let window_ms = self.window.as_millis().min(i64::MAX as u128) as i64;
        let event = event.map(str::to_string);
        let cap = MAX_CONTACTS_PER_CUSTOMER as u32;
        let n = self.wait(async move { store.record_contact(&key, at_ms, window_ms, cap, event.as_deref()).await })?;
        // Refresh the customer count for /v1/info at most once a minute, in the background.
        let last = self.counted_at.load(Ordering::Relaxed);
        if at_ms.saturating_sub(last) > 60_000
            && self.counted_at.compare_exchange(last, at_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let (store, tracked) = (self.store.clone(), Arc::clone(&self.tracked));
            self.runtime.spawn(async move {
                if let Ok(n) = store.contact_customers(at_ms.saturating_sub(window_ms)).await {
                    tracked.store(n, Ordering::Relaxed);
                }
            });
        }
        Ok(n)
    }

    fn window(&self) -> Duration {
        self.window
    }

    /// Customers with a contact within the window, counted at most a minute ago.
    fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> Option<usize> {
        None
    }

    fn forget(&self, customer: &str) -> Result<(), ContactError> {
        let (store, key) = (self.store.clone(), self.key(customer));
        self.wait(async move { store.delete_contacts(&key).await }).map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "store"
    }
}
