//! The live conversations: a map with an idle time-to-live, a hard cap, and
//! a broadcast channel per conversation for subscribers.
//!
//! Memory is bounded three ways: at most `max_conversations` live
//! conversations (a new one beyond that is refused with [`OpenError::Full`]
//! after expired ones are swept; live conversations are never evicted to make
//! room, so an agent never loses a conversation they are following), at most
//! `max_messages` messages kept per conversation, and at most
//! `max_subscribers` subscribers per conversation, each with a bounded event
//! buffer (a subscriber that falls behind is re-sent a snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use super::{Conversation, Recorded, View};

/// Events pushed to a conversation's subscribers, in order.
// Sent through a bounded channel per conversation; boxing would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The whole state with the kept messages: sent first to every new
    /// subscriber (under the conversation's lock, so no message falls between
    /// it and the next event) and again to a subscriber that fell behind.
    Snapshot(View),
    /// A new message and the state after it.
    Message(Recorded),
    /// The conversation was deleted or expired; the stream ends.
    Closed { reason: String },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::Snapshot(_) => "snapshot",
            Event::Message(_) => "message",
            Event::Closed { .. } => "closed",
        }
    }
}

/// Why a conversation could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{max} conversations are live; none has been idle long enough to expire")]
    Full { max: usize },
}

/// One live conversation: its state behind an async lock (held while a
/// message is classified, so messages of one conversation are recorded in
/// arrival order) and its event channel.
pub struct Live {
    pub conversation: tokio::sync::Mutex<Conversation>,
    events: broadcast::Sender<Event>,
    last_active: Mutex<Instant>,
    subscribers: Arc<AtomicUsize>,
    /// Bumped to make every subscriber's stream write at once (see [`Live::probe`]).
    probe: tokio::sync::watch::Sender<u64>,
}

/// A subscription: the event receiver plus a guard that frees the
/// subscriber slot when dropped.
pub struct Subscription {
    pub events: broadcast::Receiver<Event>,
    /// Changes when the stream should write a probe comment.
    pub probe: tokio::sync::watch::Receiver<u64>,
    _slot: SlotGuard,
}

struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Live {
    /// Send `event` to every subscriber (none listening is fine).
    pub fn publish(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// Subscribe, unless `max` subscribers already are. Call with the
    /// conversation's lock held to pair the subscription with a snapshot.
    pub fn subscribe(&self, max: usize) -> Option<Subscription> {
        let n = self.subscribers.fetch_add(1, Ordering::SeqCst);
        let slot = SlotGuard(self.subscribers.clone());
        (n < max).then(|| Subscription { events: self.events.subscribe(), probe: self.probe.subscribe(), _slot: slot })
    }

    /// Make every subscriber's stream write a comment now. A stream whose
    /// client has gone learns it only by writing (the first write after a
    /// disconnect may still succeed, the next fails), and frees its slot
    /// then: without probes that takes up to two keep-alive periods.
    pub fn probe(&self) {
        self.probe.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::SeqCst)
    }

    fn touch(&self, now: Instant) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn idle_since(&self) -> Instant {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sizes and lifetimes of the registry.
#[derive(Debug, Clone)]
pub struct RegistryLimits {
    pub ttl: Duration,
    pub max_conversations: usize,
    pub max_messages: usize,
    pub max_alerts: usize,
    /// Events buffered per subscriber before it counts as behind.
    pub channel_capacity: usize,
    /// Most bytes of messages kept per conversation (older ones go first).
    pub max_conversation_bytes: usize,
    /// Most bytes of messages kept by all conversations together (a message
    /// beyond it is refused: [`Registry::has_room`]).
    pub max_total_bytes: usize,
}

/// All live conversations.
pub struct Registry {
    map: Mutex<HashMap<String, Arc<Live>>>,
    limits: RegistryLimits,
    /// Bytes every conversation's kept messages hold together.
    bytes: Arc<AtomicUsize>,
}

impl Registry {
    pub fn new(limits: RegistryLimits) -> Registry {
        Registry { map: Mutex::new(HashMap::new()), limits, bytes: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn limits(&self) -> &RegistryLimits {
        &self.limits
    }

    /// Bytes all live conversations' kept messages hold now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::SeqCst)
    }

    /// Whether a message of `bytes` (see [`super::message_bytes`]) fits under
    /// the total byte limit. Checked before a message is classified.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.bytes().saturating_add(bytes) <= self.limits.max_total_bytes
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Live>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The conversation `id`, created if it does not exist (or has expired).
    /// Counts as activity.
    pub fn open(&self, id: &str) -> Result<Arc<Live>, OpenError> {
        let now = Instant::now();
        let mut map = self.map();
        if let Some(live) = map.get(id) {
            if now.duration_since(live.idle_since()) < self.limits.ttl {
                live.touch(now);
                return Ok(live.clone());
            }
        }
        if !map.contains_key(id) && map.len() >= self.limits.max_conversations {
            self.sweep_locked(&mut map, now);
            if map.len() >= self.limits.max_conversations {
                return Err(OpenError::Full { max: self.limits.max_conversations });
            }
        }
        let (events, _) = broadcast::channel(self.limits.channel_capacity.max(1));
        let live = Arc::new(Live {
            conversation: tokio::sync::Mutex::new(
                Conversation::new(id, self.limits.max_messages, self.limits.max_alerts, OffsetDateTime::now_utc())
                    .with_byte_limit(self.limits.max_conversation_bytes, self.bytes.clone()),
            ),
            events,
            last_active: Mutex::new(now),
            subscribers: Arc::new(AtomicUsize::new(0)),
            probe: tokio::sync::watch::channel(0).0,
        });
        if let Some(old) = map.insert(id.to_string(), live.clone()) {
            close(&old, "expired");
        }
        Ok(live)
    }

    /// The conversation `id` if it is live (does not count as activity).
    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        let map = self.map();
        map.get(id).filter(|l| l.idle_since().elapsed() < self.limits.ttl).cloned()
    }

    /// End conversation `id` now; its subscribers get `closed`. False if it was not live.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self.map().remove(id);
        match removed {
            Some(live) => {
                close(&live, "deleted");
                true
            }
            None => false,
        }
    }

    /// Drop every conversation idle for the TTL or longer; returns how many.
    pub fn sweep(&self) -> usize {
        let mut map = self.map();
        self.sweep_locked(&mut map, Instant::now())
    }

    fn sweep_locked(&self, map: &mut HashMap<String, Arc<Live>>, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let before = map.len();
        map.retain(|_, live| {
            // a conversation whose lock is held is recording a message right now: not idle
            let idle = now.duration_since(live.idle_since()) >= ttl && live.conversation.try_lock().is_ok();
            if idle {
                close(live, "expired");
            }
            !idle
        });
        before - map.len()
    }

    /// Live conversations now (including expired ones not swept yet).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn close(live: &Live, reason: &str) {
    if let Ok(mut c) = live.conversation.try_lock() {
        c.close();
    }
    live.publish(Event::Closed { reason: reason.to_string() });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(ttl_ms: u64, max: usize) -> Registry {
        Registry::new(RegistryLimits {
            ttl: Duration::from_millis(ttl_ms),
            max_conversations: max,
            max_messages: 10,
            max_alerts: 10,
            channel_capacity: 4,
            max_conversation_bytes: 1 << 20,
            max_total_bytes: 3 * 1024 + 30,
        })
    }

    #[tokio::test]
    async fn the_byte_total_counts_kept_messages_and_frees_them_with_the_conversation() {
        let r = reg(60_000, 10);
        let rules = crate::conversation::AlertRules::default();
        let add = |id: &str, text: &str| {
            let live = r.open(id).unwrap();
            let mut c = live.conversation.try_lock().unwrap();
            c.record(super::super::Speaker::Agent, text.into(), None, None, &rules, OffsetDateTime::UNIX_EPOCH);
        };
        assert!(r.has_room(1024 + 10));
        add("a", "0123456789");
        add("b", "0123456789");
        assert_eq!(r.bytes(), 2 * (1024 + 10));
        assert!(r.has_room(1024 + 10) && !r.has_room(1024 + 11));
        assert!(r.remove("a"));
        assert_eq!(r.bytes(), 1024 + 10, "a deleted conversation's bytes are freed");
        assert!(r.has_room(2 * 1024));
    }

    #[test]
    fn open_returns_the_same_conversation_until_it_expires() {
        let r = reg(60_000, 10);
        let a = r.open("a").unwrap();
        assert!(Arc::ptr_eq(&a, &r.open("a").unwrap()));
        assert!(Arc::ptr_eq(&a, &r.get("a").unwrap()));
        assert!(r.get("b").is_none());
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn full_registry_refuses_new_ids_but_keeps_live_ones() {
        let r = reg(60_000, 2);
        r.open("a").unwrap();
        r.open("b").unwrap();
        assert!(matches!(r.open("c"), Err(OpenError::Full { max: 2 })));
        assert!(r.open("a").is_ok(), "existing ids still open");
        assert!(r.remove("a"));
        assert!(!r.remove("a"));
        assert!(r.open("c").is_ok());
    }

    #[tokio::test]
    async fn idle_conversations_expire_and_subscribers_hear_it() {
        let r = reg(30, 1);
        let a = r.open("a").unwrap();
        let mut sub = a.subscribe(4).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(r.get("a").is_none(), "expired conversations are not returned");
        // the cap counts it until swept; opening another id sweeps it
        let b = r.open("b").unwrap();
        assert_eq!(r.len(), 1);
        match sub.events.recv().await.unwrap() {
            Event::Closed { reason } => assert_eq!(reason, "expired"),
            e => panic!("{e:?}"),
        }
        assert!(a.conversation.lock().await.is_closed());
        assert!(!b.conversation.lock().await.is_closed());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(r.sweep(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn subscriber_slots_are_capped_and_freed() {
        let r = reg(60_000, 1);
        let a = r.open("a").unwrap();
        let s1 = a.subscribe(2).unwrap();
        let _s2 = a.subscribe(2).unwrap();
        assert!(a.subscribe(2).is_none());
        drop(s1);
        assert!(a.subscribe(2).is_some());
    }
}
