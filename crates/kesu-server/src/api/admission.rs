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
}
