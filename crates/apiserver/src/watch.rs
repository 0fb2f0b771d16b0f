//! Watch: a chunked `application/json` stream of newline-delimited
//! `{"type":"ADDED|MODIFIED|DELETED|ERROR","object":{...}}` events, as kube-apiserver sends.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokenwarden_core::selector::{FieldSelector, LabelSelector};
use tokenwarden_core::{Error, Object, Resource};
use tokenwarden_store::{Clock, Event, EventType, ListOptions, Revision, Store, StoreError};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::table::{self, IncludeObject, Rendering, TableOptions};

/// What one watch follows and how it renders events.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    pub resource: Resource,
    /// Only this namespace (`None`: all namespaces, or a cluster-scoped resource).
    pub namespace: Option<String>,
    /// Only the object of this name (`/watch/.../<name>` or a name in the path).
    pub name: Option<String>,
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub rendering: Rendering,
    pub include: IncludeObject,
    /// The stream ends after this long (`timeoutSeconds`, at most a year, or 30-60 min).
    pub timeout: Duration,
    /// `sendInitialEvents=true` (client-go's WatchList): ADDED for every current object, then
    /// (with `allowWatchBookmarks`) a BOOKMARK annotated `k8s.io/initial-events-end`.
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
}

impl WatchSpec {
    fn matches_object(&self, object: &Object) -> bool {
        self.in_scope(object) && self.selected(object)
    }

    /// Namespace and name: what no update can change.
    fn in_scope(&self, object: &Object) -> bool {
        if self.resource.namespaced
            && let Some(ns) = &self.namespace
            && object.namespace() != ns
        {
            return false;
        }
        if let Some(name) = &self.name
            && object.name() != name
        {
            return false;
        }
        true
    }

    fn selected(&self, object: &Object) -> bool {
        self.label_selector.matches(object) && self.field_selector.matches(object)
    }

    fn selective(&self) -> bool {
        !self.label_selector.is_empty() || !self.field_selector.is_empty()
    }
}

type Key = (String, String);

fn key_of(object: &Object) -> Key {
    (object.namespace().to_owned(), object.name().to_owned())
}

/// The event type a watcher sees, as kube's cacher decides with selectors: an object updated
/// into the selection is ADDED, one updated out of it DELETED. `known` holds the objects the
/// watcher currently sees (only tracked when the watch has selectors). Events up to `unsure`
/// (a watch resumed from a revision replays them) are of objects the watcher may have seen at
/// that revision, which the store cannot tell: one of them that is out of the selection is
/// DELETED, so that a watcher that had it drops it (one that did not ignores the delete).
fn event_type(spec: &WatchSpec, event: &Event, known: &mut HashSet<Key>, unsure: Revision) -> Option<&'static str> {
    if *event.prefix != *spec.resource.key_prefix() || !spec.in_scope(&event.object) {
        return None;
    }
    let selected = spec.selected(&event.object);
    if !spec.selective() {
        return selected.then(|| event.event_type.as_str());
    }
    let key = key_of(&event.object);
    let was = known.contains(&key) || event.revision <= unsure;
    match event.event_type {
        EventType::Deleted => {
            known.remove(&key);
            (was || selected).then_some("DELETED")
        }
        EventType::Added if selected => {
            known.insert(key);
            Some("ADDED")
        }
        EventType::Added => None,
        EventType::Modified if selected => {
            known.insert(key);
            Some(if was { "MODIFIED" } else { "ADDED" })
        }
        EventType::Modified => {
            known.remove(&key);
            was.then_some("DELETED")
        }
    }
}

/// Renders watch events, tracking whether the Table headers were sent.
struct Renderer {
    spec: WatchSpec,
    clock: Arc<dyn Clock>,
    headers_sent: bool,
}

impl Renderer {
    fn line(&mut self, event_type: &str, object: &Object) -> Bytes {
        let object = match &self.spec.rendering {
            Rendering::Plain => object.clone().into_value(),
            Rendering::Table { version } => {
                let mut metadata = Map::new();
                metadata.insert("resourceVersion".into(), json!(object.resource_version()));
                let options = TableOptions {
                    version,
                    include: self.spec.include,
                    no_headers: self.headers_sent,
                    now: self.clock.now(),
                };
                self.headers_sent = true;
                table::table(&self.spec.resource, std::slice::from_ref(object), metadata, &options)
            }
        };
        event_line(event_type, object)
    }
}

fn event_line(event_type: &str, object: Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn error_line(err: &ApiError) -> Bytes {
    event_line("ERROR", err.status())
}

fn streaming(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let mut response = (StatusCode::OK, Body::from_stream(stream)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Starts a watch. `resource_version` absent, empty or `"0"`: every current object is sent as
/// ADDED first (from a list), then changes after the list's revision; otherwise changes after
/// that revision (`sendInitialEvents=true` always lists first). A compacted revision answers
/// one `ERROR` event with a 410 `Expired` Status.
pub async fn serve(store: Arc<dyn Store>, clock: Arc<dyn Clock>, spec: WatchSpec, resource_version: Option<&str>) -> ApiResult<Response> {
    let rv = if spec.send_initial_events { "" } else { resource_version.unwrap_or("") };
    let from = match rv {
        "" | "0" => None,
        rv => Some(rv.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?),
    };
    let mut initial = Vec::new();
    let mut known = HashSet::new();
    let mut unsure: Revision = 0;
    let mut after = from.unwrap_or(0);
    if from.is_none() || spec.selective() {
        let options = ListOptions {
            namespace: spec.namespace.clone(),
            label_selector: spec.label_selector.clone(),
            field_selector: spec.field_selector.clone(),
            ..ListOptions::default()
        };
        let list = store.list(&spec.resource, &options).await?;
        let items: Vec<Object> = list.items.into_iter().filter(|o| spec.matches_object(o)).collect();
        // From a revision, the current selection is the best estimate of what the watcher
        // saw then (the store keeps no history of objects); `unsure` covers the rest.
        known = items.iter().map(key_of).collect();
        if from.is_none() {
            initial = items;
            after = list.revision;
        } else {
            unsure = list.revision;
        }
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let mut events = match tokenwarden_store::feed::watch(Arc::clone(&store), after).await {
        Ok(events) => events,
        Err(err @ StoreError::Api(Error::Gone(_))) => {
            let _ = tx.try_send(error_line(&err.into()));
            drop(tx);
            return Ok(streaming(rx));
        }
        Err(err) => return Err(err.into()),
    };
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let end_bookmark = (spec.send_initial_events && spec.allow_bookmarks).then(|| {
        event_line(
            "BOOKMARK",
            json!({
                "kind": spec.resource.kind,
                "apiVersion": spec.resource.api_version(),
                "metadata": {"resourceVersion": after.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}},
            }),
        )
    });
    let mut renderer = Renderer { spec, clock, headers_sent: false };
    tokio::spawn(async move {
        for object in &initial {
            if tx.send(renderer.line(EventType::Added.as_str(), object)).await.is_err() {
                return;
            }
        }
        if let Some(bookmark) = end_bookmark
            && tx.send(bookmark).await.is_err()
        {
            return;
        }
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                () = &mut sleep => return,
                () = tx.closed() => return,
            };
            let (line, last) = match next {
                None => return,
                // The feed fell behind: the client re-lists, as after etcd's compaction.
                Some(Err(err)) => (error_line(&err.into()), true),
                Some(Ok(event)) => match event_type(&renderer.spec, &event, &mut known, unsure) {
                    Some(event_type) => (renderer.line(event_type, &event.object), false),
                    None => continue,
                },
            };
            if tx.send(line).await.is_err() || last {
                return;
            }
        }
    });
    Ok(streaming(rx))
}
