//! The change feed as a watch client sees it: every event after a revision, in order, once.
//!
//! [`watch`] subscribes to the live broadcast *before* replaying the stored events, so no
//! event committed in between is missed; live events already replayed are skipped by
//! revision. A receiver that falls behind the broadcast gets one `Gone` (410) and the stream
//! ends: the client re-lists and watches again, as with etcd.

use std::collections::VecDeque;
use std::sync::Arc;

use tokenwarden_core::Error;
use tokio::sync::broadcast;

use crate::{Event, Result, Revision, Store};

/// An ordered, gap-free, duplicate-free stream of events.
pub struct EventStream {
    replay: VecDeque<Event>,
    live: Option<broadcast::Receiver<Event>>,
    last: Revision,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("pending_replay", &self.replay.len())
            .field("live", &self.live.is_some())
            .field("last", &self.last)
            .finish()
    }
}

/// Every event with a revision greater than `after`, then live events as they are written.
/// `Err(Gone)` right away when `after` is older than the compacted revision.
pub async fn watch(store: Arc<dyn Store>, after: Revision) -> Result<EventStream> {
    let live = store.subscribe();
    let replay = store.events_since(after).await?;
    Ok(EventStream { replay: replay.into(), live: Some(live), last: after })
}

impl EventStream {
    /// The next event; `None` once the stream ended (store dropped, or after a `Gone`).
    pub async fn next(&mut self) -> Option<Result<Event>> {
        while let Some(event) = self.replay.pop_front() {
            if event.revision > self.last {
                self.last = event.revision;
                return Some(Ok(event));
            }
        }
        let live = self.live.as_mut()?;
        loop {
            match live.recv().await {
                Ok(event) if event.revision <= self.last => {}
                Ok(event) => {
                    self.last = event.revision;
                    return Some(Ok(event));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.live = None;
                    return Some(Err(Error::Gone(format!(
                        "too old resource version: {} (watch fell {missed} events behind)",
                        self.last
                    ))
                    .into()));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.live = None;
                    return None;
                }
            }
        }
    }

    /// The revision of the last event delivered (or the starting revision).
    pub fn last_revision(&self) -> Revision {
        self.last
    }
}
