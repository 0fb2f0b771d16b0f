//! One behaviour suite run against every backend (memory, SQLite, a real etcd cluster),
//! plus SQLite's durability specifics.

// Test helpers outside `#[test]` functions unwrap too (allow-unwrap-in-tests covers only the latter).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::json;
use tempfile::TempDir;
use tokenwarden_core::selector::{FieldSelector, LabelSelector};
use tokenwarden_core::{Error, Object, Resource, Timestamp};
use tokenwarden_store::feed::watch;
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::sqlite::{SqliteOptions, SqliteStore};
use tokenwarden_store::etcd::{EtcdOptions, EtcdStore};
use tokenwarden_store::{EventType, ListOptions, ManualClock, Preconditions, Revision, Store, StoreError};
use tokenwarden_testkit::etcd::EtcdCluster;

const SA: Resource = Resource::SERVICE_ACCOUNTS;
const T0: Timestamp = Timestamp(1_757_035_663);

struct Fixture {
    store: Arc<dyn Store>,
    clock: ManualClock,
    _dir: Option<TempDir>,
    _serial: Option<tokio::sync::MutexGuard<'static, ()>>,
}

fn memory() -> Fixture {
    let clock = ManualClock::new(T0);
    Fixture { store: Arc::new(MemoryStore::new(Arc::new(clock.clone()))), clock, _dir: None, _serial: None }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = SqliteStore::open(&dir.path().join("store.db"), Arc::new(clock.clone())).unwrap();
    Fixture { store: Arc::new(store), clock, _dir: Some(dir), _serial: None }
}

/// The etcd fixtures share one three-member cluster and run one at a time: each gets its own
/// key prefix and counts revisions from its start (`revision_base`), so the exact revisions
/// the suite asserts hold as on a fresh store; etcd's revision is cluster-wide, so two
/// tests writing at once would see each other's revisions.
static ETCD_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static ETCD_FIXTURES: AtomicUsize = AtomicUsize::new(0);

async fn etcd() -> Fixture {
    let cluster = EtcdCluster::shared();
    let serial = ETCD_SERIAL.lock().await;
    let clock = ManualClock::new(T0);
    let n = ETCD_FIXTURES.fetch_add(1, Ordering::SeqCst);
    let mut options = EtcdOptions::new(cluster.endpoints());
    options.prefix = format!("/conformance-{}-{n}", std::process::id());
    let probe = EtcdStore::connect(options.clone(), Arc::new(clock.clone())).await.unwrap();
    options.revision_base = probe.current_revision().await.unwrap();
    let store = EtcdStore::with_clients(probe.clients().clone(), options, Arc::new(clock.clone())).await.unwrap();
    Fixture { store: Arc::new(store), clock, _dir: None, _serial: Some(serial) }
}

fn obj(v: serde_json::Value) -> Object {
    Object::from_value(v).unwrap()
}

fn sa(ns: &str, name: &str) -> Object {
    obj(json!({"metadata": {"name": name, "namespace": ns}}))
}

/// Creates the Namespaces `names` (a namespaced create needs its namespace) and returns the
/// revision after them, which the writes that follow count from.
async fn namespaces(store: &dyn Store, names: &[&str]) -> Revision {
    for name in names {
        store.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": name}}))).await.unwrap();
    }
    store.current_revision().await.unwrap()
}

fn api_err(result: Result<impl std::fmt::Debug, StoreError>) -> Error {
    match result {
        Err(StoreError::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn api(err: StoreError) -> Error {
    match err {
        StoreError::Api(e) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names(items: &[Object]) -> Vec<String> {
    items.iter().map(|o| format!("{}/{}", o.namespace(), o.name())).collect()
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory_backend {
            $(#[tokio::test] async fn $test() { super::$test(super::memory()).await; })*
        }
        mod sqlite_backend {
            $(#[tokio::test] async fn $test() { super::$test(super::sqlite()).await; })*
        }
        mod etcd_backend {
            $(#[tokio::test] async fn $test() { super::$test(super::etcd().await).await; })*
        }
    };
}

conformance!(
    create_and_get,
    create_errors,
    list_filters_and_pages,
    update_semantics,
    delete_preconditions,
    events_in_order,
    compaction_makes_old_revisions_gone,
    watch_replays_then_follows,
    creates_need_a_live_namespace,
);

async fn create_and_get(f: Fixture) {
    // Cluster-scoped, and first (a namespaced create needs its namespace): namespace dropped,
    // get ignores the namespace argument; the first write is revision 1.
    let ns = f.store.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "ns", "namespace": "junk"}}))).await.unwrap();
    assert_eq!(ns.namespace(), "");
    assert_eq!(ns.resource_version(), "1");
    assert_eq!(f.store.get(&Resource::NAMESPACES, "", "ns").await.unwrap(), ns);
    assert_eq!(f.store.get(&Resource::NAMESPACES, "other", "ns").await.unwrap(), ns);

    let sent = obj(json!({
        "metadata": {"name": "bot", "namespace": "ns", "labels": {"app": "x"}, "uid": "client-uid",
                     "resourceVersion": "99", "x-unknown-meta": [1, 2]},
        "automountServiceAccountToken": false,
        "secrets": [{"name": "s"}],
        "x-extension": {"nested": {"deep": true}},
    }));
    let created = f.store.create(&SA, sent).await.unwrap();
    let uid = created.uid().to_owned();
    assert_eq!(uid.len(), 36);
    assert_ne!(uid, "client-uid");
    assert_eq!(&uid[14..15], "4");
    assert_eq!(created.resource_version(), "2");
    assert_eq!(created.creation_timestamp(), Some(T0));
    assert_eq!(created.value()["metadata"]["creationTimestamp"], "2025-09-05T01:27:43Z");
    assert_eq!(created.value()["apiVersion"], "v1");
    assert_eq!(created.value()["kind"], "ServiceAccount");
    assert_eq!(created.value()["automountServiceAccountToken"], false);
    assert_eq!(created.value()["x-extension"], json!({"nested": {"deep": true}}));
    assert_eq!(created.value()["metadata"]["x-unknown-meta"], json!([1, 2]));
    assert_eq!(created.label("app"), Some("x"));
    assert_eq!(created.service_account_secret_count(), 1);

    let got = f.store.get(&SA, "ns", "bot").await.unwrap();
    assert_eq!(got, created);

    // Resources with the same name are distinct.
    f.store.create(&Resource::SECRETS, sa("ns", "bot")).await.unwrap();
    assert_eq!(f.store.get(&SA, "ns", "bot").await.unwrap().uid(), uid);

    // generateName.
    let generated = f.store.create(&SA, obj(json!({"metadata": {"generateName": "tok-", "namespace": "ns"}}))).await.unwrap();
    assert!(generated.name().starts_with("tok-") && generated.name().len() == 9, "{}", generated.name());
    assert_eq!(f.store.get(&SA, "ns", generated.name()).await.unwrap(), generated);
    assert_eq!(f.store.current_revision().await.unwrap(), 4);
}

async fn create_errors(f: Fixture) {
    let base = namespaces(&*f.store, &["ns"]).await;
    f.store.create(&SA, sa("ns", "a")).await.unwrap();
    let err = api_err(f.store.create(&SA, sa("ns", "a")).await);
    assert_eq!(err.to_string(), r#"serviceaccounts "a" already exists"#);
    assert_eq!((err.code(), err.reason()), (409, "AlreadyExists"));

    let err = api_err(f.store.create(&SA, obj(json!({"metadata": {"namespace": "ns"}}))).await);
    assert_eq!(err.to_string(), r#"ServiceAccount "" is invalid: metadata.name: Required value: name or generateName is required"#);
    assert_eq!(err.code(), 422);

    let err = api_err(f.store.create(&SA, obj(json!({"metadata": {"name": "b"}}))).await);
    assert_eq!(err.to_string(), "namespace is required");
    assert_eq!(err.code(), 400);

    let err = api_err(f.store.create(&SA, obj(json!({"metadata": "not a map", "spec": 1}))).await);
    assert_eq!(err.code(), 422);

    let err = api_err(f.store.get(&SA, "ns", "nope").await);
    assert_eq!(err.to_string(), r#"serviceaccounts "nope" not found"#);
    assert_eq!(err.code(), 404);
    // Failed writes consume no revision.
    assert_eq!(f.store.current_revision().await.unwrap(), base + 1);
}

async fn list_filters_and_pages(f: Fixture) {
    let base = namespaces(&*f.store, &["a", "b", "c"]).await;
    for (ns, name, app) in [("b", "y", "web"), ("a", "z", "db"), ("a", "x", "web"), ("b", "w", "db"), ("c", "v", "web")] {
        let o = obj(json!({"metadata": {"name": name, "namespace": ns, "labels": {"app": app}}, "tier": ns}));
        f.store.create(&SA, o).await.unwrap();
    }
    f.store.create(&Resource::SECRETS, sa("a", "secret")).await.unwrap();

    let all = f.store.list(&SA, &ListOptions::default()).await.unwrap();
    assert_eq!(names(&all.items), ["a/x", "a/z", "b/w", "b/y", "c/v"]);
    assert_eq!(all.revision, base + 6);
    assert_eq!(all.continue_token, None);

    let in_b = ListOptions { namespace: Some("b".into()), ..Default::default() };
    assert_eq!(names(&f.store.list(&SA, &in_b).await.unwrap().items), ["b/w", "b/y"]);
    let empty_ns = ListOptions { namespace: Some(String::new()), ..Default::default() };
    assert_eq!(f.store.list(&SA, &empty_ns).await.unwrap().items.len(), 5);

    let web = ListOptions { label_selector: LabelSelector::parse("app in (web)").unwrap(), ..Default::default() };
    assert_eq!(names(&f.store.list(&SA, &web).await.unwrap().items), ["a/x", "b/y", "c/v"]);
    let not_web_in_a = ListOptions {
        namespace: Some("a".into()),
        label_selector: LabelSelector::parse("app!=web").unwrap(),
        ..Default::default()
    };
    assert_eq!(names(&f.store.list(&SA, &not_web_in_a).await.unwrap().items), ["a/z"]);
    let by_field = ListOptions { field_selector: FieldSelector::parse("metadata.name=y").unwrap(), ..Default::default() };
    assert_eq!(names(&f.store.list(&SA, &by_field).await.unwrap().items), ["b/y"]);
    let by_path = ListOptions {
        field_selector: FieldSelector::parse("tier!=a,metadata.namespace!=c").unwrap(),
        ..Default::default()
    };
    assert_eq!(names(&f.store.list(&SA, &by_path).await.unwrap().items), ["b/w", "b/y"]);

    // Paging: every item exactly once, in order; the last page carries no token.
    let mut options = ListOptions { limit: 2, ..Default::default() };
    let mut pages = Vec::new();
    loop {
        let page = f.store.list(&SA, &options).await.unwrap();
        assert!(page.items.len() <= 2);
        pages.push(names(&page.items));
        match page.continue_token {
            Some(token) => options.continue_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, [vec!["a/x", "a/z"], vec!["b/w", "b/y"], vec!["c/v"]]);

    // An exact fit leaves no token; paging composes with selectors.
    let exact = ListOptions { limit: 5, ..Default::default() };
    assert_eq!(f.store.list(&SA, &exact).await.unwrap().continue_token, None);
    let mut web_paged = ListOptions { limit: 1, ..web.clone() };
    let first = f.store.list(&SA, &web_paged).await.unwrap();
    assert_eq!(names(&first.items), ["a/x"]);
    web_paged.continue_token = first.continue_token;
    assert_eq!(names(&f.store.list(&SA, &web_paged).await.unwrap().items), ["b/y"]);

    let bad = ListOptions { continue_token: Some("%%%not-a-token".into()), ..Default::default() };
    let err = api_err(f.store.list(&SA, &bad).await);
    assert_eq!(err.code(), 400);
    assert!(err.to_string().starts_with("continue key is not valid"), "{err}");

    // A list in one namespace never reaches another, whatever its token says: a token from a
    // cluster-wide list (its next item in namespace a), or one made up to start before every
    // namespace, is refused rather than read from where it points.
    let cluster_wide = f.store.list(&SA, &ListOptions { limit: 1, ..Default::default() }).await.unwrap();
    let made_up = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"["",""]"#);
    for token in [cluster_wide.continue_token.unwrap(), made_up] {
        let elsewhere = ListOptions { namespace: Some("b".into()), continue_token: Some(token), ..Default::default() };
        let err = api_err(f.store.list(&SA, &elsewhere).await);
        assert_eq!(err.code(), 400);
        assert!(err.to_string().starts_with("continue key is not valid"), "{err}");
    }
    // A token from the namespace's own list still pages it.
    let first_in_b = f.store.list(&SA, &ListOptions { limit: 1, ..in_b.clone() }).await.unwrap();
    let rest = ListOptions { continue_token: first_in_b.continue_token, ..in_b.clone() };
    assert_eq!(names(&f.store.list(&SA, &rest).await.unwrap().items), ["b/y"]);

    let nodes = f.store.list(&Resource::NODES, &ListOptions::default()).await.unwrap();
    assert!(nodes.items.is_empty());
    assert_eq!(nodes.revision, base + 6);

    // Every page says the first page's revision, whatever changed meanwhile, so that a watch
    // from the last page's replays the change (kube's lists are one snapshot).
    let first = f.store.list(&SA, &ListOptions { limit: 2, ..Default::default() }).await.unwrap();
    f.store.create(&SA, sa("a", "late")).await.unwrap();
    let next = f.store.list(&SA, &ListOptions { limit: 2, continue_token: first.continue_token.clone(), ..Default::default() }).await.unwrap();
    assert_eq!(next.revision, first.revision);
}

async fn update_semantics(f: Fixture) {
    let base = namespaces(&*f.store, &["ns"]).await;
    let created = f.store.create(&SA, sa("ns", "a")).await.unwrap();
    f.clock.advance(3600);

    let mut changed = created.clone();
    changed.0.insert("x-new".into(), json!({"k": "v"}));
    changed.set_meta("creationTimestamp", "2000-01-01T00:00:00Z");
    let updated = f.store.update(&SA, changed.clone()).await.unwrap();
    assert_eq!(updated.resource_version(), (base + 2).to_string());
    assert_eq!(updated.uid(), created.uid());
    assert_eq!(updated.creation_timestamp(), Some(T0));
    assert_eq!(updated.value()["x-new"], json!({"k": "v"}));
    assert_eq!(f.store.get(&SA, "ns", "a").await.unwrap(), updated);

    // Stale resourceVersion.
    let err = api_err(f.store.update(&SA, changed).await);
    assert_eq!(
        err.to_string(),
        r#"Operation cannot be fulfilled on serviceaccounts "a": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));

    // No resourceVersion: unconditional.
    let blind = f.store.update(&SA, obj(json!({"metadata": {"name": "a", "namespace": "ns"}, "v": 2}))).await.unwrap();
    assert_eq!(blind.resource_version(), (base + 3).to_string());
    assert_eq!(blind.uid(), created.uid());
    assert_eq!(blind.value()["kind"], "ServiceAccount");
    assert!(blind.value().get("x-new").is_none());

    // Another uid: the implicit uid precondition fails.
    let err = api_err(f.store.update(&SA, obj(json!({"metadata": {"name": "a", "namespace": "ns", "uid": "other"}}))).await);
    assert_eq!(
        err.to_string(),
        format!(
            r#"Operation cannot be fulfilled on serviceaccounts "a": Precondition failed: UID in precondition: other, UID in object meta: {}"#,
            created.uid()
        )
    );

    let err = api_err(f.store.update(&SA, sa("ns", "missing")).await);
    assert_eq!(err.to_string(), r#"serviceaccounts "missing" not found"#);
    assert_eq!(f.store.current_revision().await.unwrap(), base + 3);
}

async fn delete_preconditions(f: Fixture) {
    let base = namespaces(&*f.store, &["ns"]).await;
    let created = f.store.create(&SA, sa("ns", "a")).await.unwrap();
    let err = api_err(f.store.delete(&SA, "ns", "missing", &Preconditions::default()).await);
    assert_eq!((err.to_string().as_str(), err.code()), (r#"serviceaccounts "missing" not found"#, 404));

    let wrong_uid = Preconditions { uid: Some("nope".into()), resource_version: None };
    let err = api_err(f.store.delete(&SA, "ns", "a", &wrong_uid).await);
    assert_eq!(
        err.to_string(),
        format!(
            r#"Operation cannot be fulfilled on serviceaccounts "a": Precondition failed: UID in precondition: nope, UID in object meta: {}"#,
            created.uid()
        )
    );
    assert_eq!(err.code(), 409);

    let wrong_rv = Preconditions { uid: Some(created.uid().into()), resource_version: Some("7".into()) };
    let err = api_err(f.store.delete(&SA, "ns", "a", &wrong_rv).await);
    assert_eq!(
        err.to_string(),
        format!(
            r#"Operation cannot be fulfilled on serviceaccounts "a": Precondition failed: ResourceVersion in precondition: 7, ResourceVersion in object meta: {}"#,
            base + 1
        )
    );

    let right = Preconditions { uid: Some(created.uid().into()), resource_version: Some((base + 1).to_string()) };
    let deleted = f.store.delete(&SA, "ns", "a", &right).await.unwrap();
    assert_eq!(deleted.resource_version(), (base + 2).to_string());
    assert_eq!(deleted.uid(), created.uid());
    assert_eq!(api_err(f.store.get(&SA, "ns", "a").await).code(), 404);
    assert_eq!(api_err(f.store.delete(&SA, "ns", "a", &Preconditions::default()).await).code(), 404);

    // The name is free again; the new object has a new uid.
    let again = f.store.create(&SA, sa("ns", "a")).await.unwrap();
    assert_ne!(again.uid(), created.uid());
    assert_eq!(again.resource_version(), (base + 3).to_string());
}

async fn events_in_order(f: Fixture) {
    // The namespace first: a namespaced create needs it.
    f.store.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "ns"}}))).await.unwrap();
    let a = f.store.create(&SA, sa("ns", "a")).await.unwrap();
    let a2 = f.store.update(&SA, a.clone()).await.unwrap();
    let gone = f.store.delete(&SA, "ns", "a", &Preconditions::default()).await.unwrap();

    let events = f.store.events_since(0).await.unwrap();
    let summary: Vec<_> = events.iter().map(|e| (e.revision, e.event_type, &*e.prefix, e.object.name())).collect();
    assert_eq!(
        summary,
        [
            (1, EventType::Added, "/namespaces", "ns"),
            (2, EventType::Added, "/serviceaccounts", "a"),
            (3, EventType::Modified, "/serviceaccounts", "a"),
            (4, EventType::Deleted, "/serviceaccounts", "a"),
        ]
    );
    assert_eq!(*events[1].object, a);
    assert_eq!(*events[2].object, a2);
    assert_eq!(*events[3].object, gone);
    assert_eq!(events[3].object.resource_version(), "4");
    assert_eq!(EventType::Deleted.as_str(), "DELETED");

    let tail = f.store.events_since(2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.revision).collect::<Vec<_>>(), [3, 4]);
    assert!(f.store.events_since(4).await.unwrap().is_empty());
    assert!(f.store.events_since(100).await.unwrap().is_empty());
    assert_eq!(f.store.current_revision().await.unwrap(), 4);
}

async fn compaction_makes_old_revisions_gone(f: Fixture) {
    let base = namespaces(&*f.store, &["ns"]).await;
    for name in ["a", "b", "c", "d"] {
        f.store.create(&SA, sa("ns", name)).await.unwrap();
    }
    f.store.compact(base + 2).await.unwrap();
    let err = api_err(f.store.events_since(base + 1).await);
    assert_eq!(err.to_string(), format!("too old resource version: {} ({})", base + 1, base + 2));
    assert_eq!((err.code(), err.reason()), (410, "Expired"));
    assert_eq!(f.store.events_since(base + 2).await.unwrap().iter().map(|e| e.revision).collect::<Vec<_>>(), [base + 3, base + 4]);

    // Compaction never goes backwards nor past the current revision.
    f.store.compact(base + 1).await.unwrap();
    assert!(f.store.events_since(base + 1).await.is_err());
    f.store.compact(1000).await.unwrap();
    assert!(f.store.events_since(base + 4).await.unwrap().is_empty());
    assert_eq!(
        api_err(f.store.events_since(base + 3).await).to_string(),
        format!("too old resource version: {} ({})", base + 3, base + 4)
    );
    // Objects are untouched.
    assert_eq!(f.store.list(&SA, &ListOptions::default()).await.unwrap().items.len(), 4);
    f.store.create(&SA, sa("ns", "e")).await.unwrap();
    assert_eq!(f.store.events_since(base + 4).await.unwrap().len(), 1);
}

async fn watch_replays_then_follows(f: Fixture) {
    let base = namespaces(&*f.store, &["ns"]).await;
    f.store.create(&SA, sa("ns", "a")).await.unwrap();
    f.store.create(&SA, sa("ns", "b")).await.unwrap();
    let mut stream = watch(Arc::clone(&f.store), 0).await.unwrap();
    let mut tail = watch(Arc::clone(&f.store), base + 2).await.unwrap();
    // From 0 the replay is every revision: the namespace's (`base`), then a's and b's.
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!((first.revision, first.event_type, &*first.prefix, first.object.name()), (base, EventType::Added, "/namespaces", "ns"));
    assert_eq!(stream.next().await.unwrap().unwrap().revision, base + 1);
    assert_eq!(stream.next().await.unwrap().unwrap().revision, base + 2);

    let store = Arc::clone(&f.store);
    let writer = tokio::spawn(async move {
        for name in ["c", "d", "e"] {
            store.create(&SA, sa("ns", name)).await.unwrap();
        }
        store.delete(&SA, "ns", "c", &Preconditions::default()).await.unwrap();
    });
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.unwrap().unwrap().unwrap();
        seen.push((event.revision, event.event_type, event.object.name().to_owned()));
    }
    writer.await.unwrap();
    assert_eq!(
        seen,
        [
            (base + 3, EventType::Added, "c".to_owned()),
            (base + 4, EventType::Added, "d".to_owned()),
            (base + 5, EventType::Added, "e".to_owned()),
            (base + 6, EventType::Deleted, "c".to_owned()),
        ]
    );
    let mut tail_revisions = Vec::new();
    for _ in 0..4 {
        tail_revisions.push(tail.next().await.unwrap().unwrap().revision);
    }
    assert_eq!(tail_revisions, [base + 3, base + 4, base + 5, base + 6]);
    assert_eq!(stream.last_revision(), base + 6);

    f.store.compact(base + 5).await.unwrap();
    let err = watch(Arc::clone(&f.store), base + 4).await.unwrap_err();
    assert_eq!(api(err).code(), 410);
}

async fn creates_need_a_live_namespace(f: Fixture) {
    let secret = |ns: &str, name: &str| obj(json!({"metadata": {"name": name, "namespace": ns}, "type": "Opaque"}));
    // No such namespace: NotFound for the namespace, and no revision consumed.
    let err = api_err(f.store.create(&Resource::SECRETS, secret("x", "s")).await);
    assert_eq!((err.to_string().as_str(), err.code(), err.reason()), (r#"namespaces "x" not found"#, 404, "NotFound"));
    assert_eq!(f.store.current_revision().await.unwrap(), 0);
    let err = api_err(f.store.create(&Resource::SECRETS, obj(json!({"metadata": {"generateName": "s-", "namespace": "x"}}))).await);
    assert_eq!((err.to_string().as_str(), err.code()), (r#"namespaces "x" not found"#, 404));

    // Another namespace existing does not admit it.
    let base = namespaces(&*f.store, &["ns"]).await;
    let err = api_err(f.store.create(&Resource::SECRETS, secret("x", "s")).await);
    assert_eq!((err.to_string().as_str(), err.code()), (r#"namespaces "x" not found"#, 404));
    let kept = f.store.create(&Resource::SECRETS, secret("ns", "kept")).await.unwrap();
    assert_eq!(kept.resource_version(), (base + 1).to_string());

    // Terminating, as a namespace delete marks it first: creates in it are refused (403), and
    // consume no revision.
    let mut ns = f.store.get(&Resource::NAMESPACES, "", "ns").await.unwrap();
    ns.0.insert("status".into(), json!({"phase": "Terminating"}));
    let ns = f.store.update(&Resource::NAMESPACES, ns).await.unwrap();
    assert_eq!(ns.resource_version(), (base + 2).to_string());
    let err = api_err(f.store.create(&Resource::SECRETS, secret("ns", "s")).await);
    assert_eq!((err.code(), err.reason()), (403, "Forbidden"));
    assert_eq!(err.to_string(), r#"secrets "s" is forbidden: unable to create new content in namespace ns because it is being terminated"#);
    let Error::Forbidden { causes, .. } = &err else { panic!("{err:?}") };
    assert_eq!((causes[0].reason, causes[0].field.as_str()), ("NamespaceTerminating", "metadata.namespace"));
    let err = api_err(f.store.create(&SA, obj(json!({"metadata": {"generateName": "s-", "namespace": "ns"}}))).await);
    assert_eq!((err.code(), err.reason()), (403, "Forbidden"));
    // Named as asked, before a name is generated (kube's admission runs first).
    assert_eq!(err.to_string(), r#"serviceaccounts "s-" is forbidden: unable to create new content in namespace ns because it is being terminated"#);
    // Even a name that is taken: the namespace is checked first.
    assert_eq!(api_err(f.store.create(&Resource::SECRETS, secret("ns", "kept")).await).code(), 403);
    assert_eq!(f.store.current_revision().await.unwrap(), base + 2);
    assert_eq!(api_err(f.store.get(&Resource::SECRETS, "ns", "s").await).code(), 404);

    // What is already in it can still be updated and deleted (kube allows both).
    let mut changed = kept.clone();
    changed.0.insert("type".into(), json!("kubernetes.io/service-account-token"));
    let updated = f.store.update(&Resource::SECRETS, changed).await.unwrap();
    assert_eq!(updated.resource_version(), (base + 3).to_string());
    assert_eq!(updated.value()["type"], "kubernetes.io/service-account-token");
    let deleted = f.store.delete(&Resource::SECRETS, "ns", "kept", &Preconditions::default()).await.unwrap();
    assert_eq!((deleted.uid(), deleted.resource_version()), (kept.uid(), (base + 4).to_string().as_str()));
    assert_eq!(api_err(f.store.get(&Resource::SECRETS, "ns", "kept").await).code(), 404);
    assert_eq!(f.store.current_revision().await.unwrap(), base + 4);
}

#[tokio::test]
async fn lagging_watch_is_gone_then_ends() {
    let f = memory();
    // Watching from the namespace's revision: nothing to replay, as from 0 on an empty store.
    let base = namespaces(&*f.store, &["ns"]).await;
    let mut stream = watch(Arc::clone(&f.store), base).await.unwrap();
    for i in 0..1100 {
        f.store.create(&SA, sa("ns", &format!("o{i}"))).await.unwrap();
    }
    let err = api(stream.next().await.unwrap().unwrap_err());
    assert_eq!(err.code(), 410);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn sqlite_lagging_watch_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { broadcast_capacity: 2, ..Default::default() };
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_with(&dir.path().join("s.db"), Arc::new(ManualClock::new(T0)), options).unwrap());
    // Watching from the namespace's revision: nothing to replay, as from 0 on an empty store.
    let base = namespaces(&*store, &["ns"]).await;
    let mut stream = watch(Arc::clone(&store), base).await.unwrap();
    for name in ["a", "b", "c", "d"] {
        store.create(&SA, sa("ns", name)).await.unwrap();
    }
    assert_eq!(api(stream.next().await.unwrap().unwrap_err()).code(), 410);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn sqlite_reopen_keeps_objects_revisions_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let clock = ManualClock::new(T0);
    let (base, a, b) = {
        let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
        assert_eq!(store.path(), path);
        let base = namespaces(&store, &["ns"]).await;
        let a = store.create(&SA, obj(json!({"metadata": {"name": "a", "namespace": "ns"}, "x": [1]}))).await.unwrap();
        let b = store.create(&SA, sa("ns", "b")).await.unwrap();
        let b = store.update(&SA, b).await.unwrap();
        store.create(&SA, sa("ns", "c")).await.unwrap();
        store.delete(&SA, "ns", "c", &Preconditions::default()).await.unwrap();
        (base, a, b)
    };
    let store = SqliteStore::open(&path, Arc::new(clock)).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), base + 5);
    assert_eq!(store.get(&SA, "ns", "a").await.unwrap(), a);
    assert_eq!(store.get(&SA, "ns", "b").await.unwrap(), b);
    assert_eq!(api_err(store.get(&SA, "ns", "c").await).code(), 404);
    let events = store.events_since(0).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| (e.revision, e.event_type)).collect();
    // Every event since 0: the namespace's creation (`base`), then the ServiceAccounts' writes.
    assert_eq!(
        types,
        [
            (base, EventType::Added),
            (base + 1, EventType::Added),
            (base + 2, EventType::Added),
            (base + 3, EventType::Modified),
            (base + 4, EventType::Added),
            (base + 5, EventType::Deleted)
        ]
    );
    assert_eq!((&*events[0].prefix, events[0].object.name()), ("/namespaces", "ns"));
    assert_eq!(*events[1].object, a);
    let d = store.create(&SA, sa("ns", "d")).await.unwrap();
    assert_eq!(d.resource_version(), (base + 6).to_string());

    // Compaction survives a reopen, even when every event is compacted away.
    store.compact(base + 6).await.unwrap();
    drop(store);
    let store = SqliteStore::open(&path, Arc::new(ManualClock::new(T0))).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), base + 6);
    assert_eq!(api_err(store.events_since(base + 5).await).code(), 410);
    assert_eq!(store.create(&SA, sa("ns", "e")).await.unwrap().resource_version(), (base + 7).to_string());
}

#[tokio::test]
async fn sqlite_keeps_the_last_n_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let options = SqliteOptions { keep_events: 3, ..Default::default() };
    let store = SqliteStore::open_with(&path, Arc::new(ManualClock::new(T0)), options).unwrap();
    let base = namespaces(&store, &["ns"]).await;
    for name in ["a", "b", "c", "d", "e"] {
        store.create(&SA, sa("ns", name)).await.unwrap();
    }
    assert_eq!(store.events_since(base + 2).await.unwrap().iter().map(|e| e.revision).collect::<Vec<_>>(), [base + 3, base + 4, base + 5]);
    assert_eq!(api_err(store.events_since(base + 1).await).to_string(), format!("too old resource version: {} ({})", base + 1, base + 2));
    drop(store);
    // A smaller retention applies at open.
    let options = SqliteOptions { keep_events: 1, ..Default::default() };
    let store = SqliteStore::open_with(&path, Arc::new(ManualClock::new(T0)), options).unwrap();
    assert_eq!(store.events_since(base + 4).await.unwrap().len(), 1);
    assert_eq!(api_err(store.events_since(base + 3).await).code(), 410);
}

#[tokio::test]
async fn memory_keeps_the_last_n_events() {
    let store = MemoryStore::with_keep_events(Arc::new(ManualClock::new(T0)), 2);
    let base = namespaces(&store, &["ns"]).await;
    for name in ["a", "b", "c"] {
        store.create(&SA, sa("ns", name)).await.unwrap();
    }
    assert_eq!(store.events_since(base + 1).await.unwrap().len(), 2);
    assert_eq!(api_err(store.events_since(base).await).to_string(), format!("too old resource version: {base} ({})", base + 1));
}

fn open_error(path: &std::path::Path) -> String {
    match SqliteStore::open(path, Arc::new(ManualClock::new(T0))) {
        Err(StoreError::Backend(msg)) => msg,
        Err(other) => panic!("expected a backend error, got {other:?}"),
        Ok(_) => panic!("opening {} should fail", path.display()),
    }
}

#[test]
fn sqlite_open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing_parent = dir.path().join("no/such/dir/store.db");
    let msg = open_error(&missing_parent);
    assert!(msg.contains(&missing_parent.display().to_string()), "{msg}");

    let msg = open_error(dir.path());
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");

    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, b"this is definitely not an SQLite database, just some bytes ........").unwrap();
    let msg = open_error(&corrupt);
    assert!(msg.contains("corrupt.db"), "{msg}");

    let mut header = b"SQLite format 3\0".to_vec();
    header.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(&corrupt, header).unwrap();
    let msg = open_error(&corrupt);
    assert!(msg.contains("corrupt.db"), "{msg}");
}
