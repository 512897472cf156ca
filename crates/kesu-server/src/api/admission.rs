//! Admission control for model inference: at most `max_concurrent` requests
//! run the model at once; up to `max_queued` more wait at most `wait` for a
//! turn; everything beyond is refused at once (503 + Retry-After). Nothing
//! waits without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

pub struct Admission {
    sem: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    wait: Duration,
}

impl Admission {
    pub fn new(max_concurrent: usize, max_queued: usize, wait: Duration) -> Self {
        Admission {
            sem: Arc::new(Semaphore::new(max_concurrent.max(1))),
            queued: AtomicUsize::new(0),
            max_queued,
            wait,
        }
    }

    /// A permit to run the model; hold it until the model work is done.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::overloaded());
        }
        let r = tokio::time::timeout(self.wait, self.sem.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match r {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ApiError::overloaded()),
        }
    }

    /// Requests waiting for a turn now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

/// Admission for the routes without the model (`/v1/flags`, `/v1/segment`):
/// a budget of text characters in flight. A request costs its characters
/// (at least 1; a request larger than the whole budget costs the whole
/// budget, so it runs alone); it waits at most `wait` for room, then 503.
/// Memory of these routes grows with the text they hold (segmentation
/// answers ~20 bytes per input byte), so this bounds it whatever the
/// number of concurrent requests.
pub struct TextBudget {
    sem: Arc<Semaphore>,
    max: usize,
    wait: Duration,
}

impl TextBudget {
    pub fn new(max_chars: usize, wait: Duration) -> Self {
        let max = max_chars.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        TextBudget { sem: Arc::new(Semaphore::new(max)), max, wait }
    }

    /// Room for `chars` characters of work; hold it until the work is done.
    pub async fn admit(&self, chars: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let cost = chars.clamp(1, self.max) as u32;
        match tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(cost)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(ApiError::overloaded()),
        }
    }

    /// Characters of work admitted now.
    pub fn in_flight(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::ErrorCode;

    #[tokio::test]
    async fn refuses_beyond_queue_and_after_wait() {
        let a = Arc::new(Admission::new(1, 1, Duration::from_millis(50)));
        let held = a.admit().await.unwrap();
        // one may wait; it times out because the permit is held
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit().await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        // queue full: refused at once
        match a.admit().await {
            Err(e) if e.code == ErrorCode::Overloaded => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(waiter.await.unwrap(), Err(ApiError { code: ErrorCode::Overloaded, .. })));
        drop(held);
        assert!(a.admit().await.is_ok());
        assert_eq!(a.queued(), 0);
    }

    #[tokio::test]
    async fn the_text_budget_bounds_characters_in_flight() {
        let b = Arc::new(TextBudget::new(100, Duration::from_millis(50)));
        let a = b.admit(60).await.unwrap();
        assert_eq!(b.in_flight(), 60);
        // 60 + 50 > 100: waits, then refused
        assert!(matches!(b.admit(50).await, Err(ApiError { code: ErrorCode::Overloaded, .. })));
        let c = b.admit(40).await.unwrap();
        assert_eq!(b.in_flight(), 100);
        drop((a, c));
        // larger than the whole budget: costs all of it, runs alone
        let big = b.admit(1_000).await.unwrap();
        assert_eq!(b.in_flight(), 100);
        assert!(b.admit(1).await.is_err());
        // a waiter gets in when room is freed within the wait
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.admit(10).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(big);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(b.in_flight(), 0);
        // zero-cost requests still take one unit
        let _z = b.admit(0).await.unwrap();
        assert_eq!(b.in_flight(), 1);
    }
}
