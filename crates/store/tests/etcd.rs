//! What only the etcd backend has: several stores (replicas) on one etcd, lists paged at one
//! revision, an unreachable cluster, the shared key set. On a real etcd cluster.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokenwarden_core::keys::Algorithm;
use tokenwarden_core::{Error, Object, Resource, Timestamp};
use tokenwarden_store::etcd::{EtcdOptions, EtcdStore};
use tokenwarden_store::etcd_keys::{KeyEncryptionKey, SharedKeys};
use tokenwarden_store::{EventType, ListOptions, ManualClock, Store, StoreError};
use tokenwarden_testkit::etcd::EtcdCluster;

const SA: Resource = Resource::SERVICE_ACCOUNTS;
const T0: Timestamp = Timestamp(1_757_035_663);

fn sa(ns: &str, name: &str) -> Object {
    Object::from_value(json!({"metadata": {"name": name, "namespace": ns}})).unwrap()
}

/// Creates the Namespaces `names`: a namespaced create needs its namespace.
async fn namespaces(store: &dyn Store, names: &[&str]) {
    for name in names {
        store.create(&Resource::NAMESPACES, Object::from_value(json!({"metadata": {"name": name}})).unwrap()).await.unwrap();
    }
}

fn prefix(test: &str) -> String {
    format!("/etcd-test-{}-{test}", std::process::id())
}

async fn store(cluster: &EtcdCluster, prefix: &str) -> EtcdStore {
    let mut options = EtcdOptions::new(cluster.endpoints());
    options.prefix = prefix.to_owned();
    EtcdStore::connect(options, Arc::new(ManualClock::new(T0))).await.unwrap()
}

fn api(result: Result<impl std::fmt::Debug, StoreError>) -> Error {
    match result {
        Err(StoreError::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn replicas_share_objects_the_feed_and_conflicts() {
    let cluster = EtcdCluster::shared();
    let (a, b) = (store(cluster, &prefix("share")).await, store(cluster, &prefix("share")).await);
    let mut feed_b = b.subscribe();

    // The namespace (a namespaced create needs it), written through A, is B's first event.
    let ns = a.create(&Resource::NAMESPACES, Object::from_value(json!({"metadata": {"name": "ns"}})).unwrap()).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), feed_b.recv()).await.unwrap().unwrap();
    assert_eq!((event.event_type, &*event.prefix, &*event.object), (EventType::Added, "/namespaces", &ns));
    assert_eq!(event.revision.to_string(), ns.resource_version());

    let created = a.create(&SA, sa("ns", "bot")).await.unwrap();
    assert_eq!(b.get(&SA, "ns", "bot").await.unwrap(), created);
    let event = tokio::time::timeout(Duration::from_secs(5), feed_b.recv()).await.unwrap().unwrap();
    assert_eq!((event.event_type, &*event.object), (EventType::Added, &created));
    assert_eq!(event.revision.to_string(), created.resource_version());

    // Both replicas hold the same version; the second update is a 409 with kube's message.
    a.update(&SA, created.clone()).await.unwrap();
    let err = api(b.update(&SA, created.clone()).await);
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));
    assert_eq!(
        err.to_string(),
        r#"Operation cannot be fulfilled on serviceaccounts "bot": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(api(b.create(&SA, sa("ns", "bot")).await).to_string(), r#"serviceaccounts "bot" already exists"#);

    // A delete through A reaches B's feed with the last state.
    let deleted = a.delete(&SA, "ns", "bot", &Default::default()).await.unwrap();
    let last = loop {
        let event = tokio::time::timeout(Duration::from_secs(5), feed_b.recv()).await.unwrap().unwrap();
        if event.event_type == EventType::Deleted {
            break event;
        }
    };
    assert_eq!(*last.object, deleted);
    assert_eq!(last.object.uid(), created.uid());
}

#[tokio::test]
async fn concurrent_read_modify_writes_through_two_replicas_lose_nothing() {
    let cluster = EtcdCluster::shared();
    let (a, b) = (store(cluster, &prefix("counter")).await, store(cluster, &prefix("counter")).await);
    namespaces(&a, &["ns"]).await;
    a.create(&SA, Object::from_value(json!({"metadata": {"name": "c", "namespace": "ns"}, "count": 0})).unwrap()).await.unwrap();
    const PER_REPLICA: u64 = 10;
    let increment = |store: Arc<EtcdStore>| async move {
        let mut conflicts = 0;
        for _ in 0..PER_REPLICA {
            loop {
                let mut object = store.get(&SA, "ns", "c").await.unwrap();
                let count = object.value()["count"].as_u64().unwrap();
                object.0.insert("count".into(), json!(count + 1));
                match store.update(&SA, object).await {
                    Ok(_) => break,
                    Err(StoreError::Api(Error::Conflict { .. })) => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        conflicts
    };
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (ca, cb) = tokio::join!(tokio::spawn(increment(Arc::clone(&a))), tokio::spawn(increment(Arc::clone(&b))));
    let conflicts = ca.unwrap() + cb.unwrap();
    let count = a.get(&SA, "ns", "c").await.unwrap().value()["count"].as_u64().unwrap();
    assert_eq!(count, 2 * PER_REPLICA, "updates were lost ({conflicts} conflicts answered)");
}

#[tokio::test]
async fn pages_are_read_at_the_first_pages_revision_until_compacted() {
    // Its own cluster: compaction is cluster-wide and would disturb the other tests.
    let cluster = EtcdCluster::start(1);
    let store = store(&cluster, &prefix("pages")).await;
    namespaces(&store, &["ns"]).await;
    for name in ["a", "b", "c", "d"] {
        store.create(&SA, sa("ns", name)).await.unwrap();
    }
    let first = store.list(&SA, &ListOptions { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(first.items.iter().map(Object::name).collect::<Vec<_>>(), ["a", "b"]);
    store.delete(&SA, "ns", "c", &Default::default()).await.unwrap();
    store.create(&SA, sa("ns", "e")).await.unwrap();
    let next = ListOptions { limit: 2, continue_token: first.continue_token.clone(), ..Default::default() };
    let second = store.list(&SA, &next).await.unwrap();
    assert_eq!(second.items.iter().map(Object::name).collect::<Vec<_>>(), ["c", "d"]);
    assert_eq!(second.revision, first.revision);

    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let err = api(store.list(&SA, &next).await);
    assert_eq!((err.code(), err.reason()), (410, "Expired"));
    assert!(err.to_string().starts_with("The provided continue parameter is too old"), "{err}");
    // A new list sees the latest state.
    let fresh = store.list(&SA, &ListOptions::default()).await.unwrap();
    assert_eq!(fresh.items.iter().map(Object::name).collect::<Vec<_>>(), ["a", "b", "d", "e"]);
}

#[tokio::test]
async fn an_unreachable_cluster_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = EtcdOptions::new(vec![format!("http://127.0.0.1:{port}")]);
    match EtcdStore::connect(options, Arc::new(ManualClock::new(T0))).await {
        Err(StoreError::Unavailable(_)) => {}
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[tokio::test]
async fn racing_replicas_make_one_key_set() {
    let cluster = EtcdCluster::shared();
    let kek = || KeyEncryptionKey::from_base64("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let (a, b) = (store(cluster, &prefix("keys")).await, store(cluster, &prefix("keys")).await);
    let (ka, kb) = (SharedKeys::new(&a, kek()), SharedKeys::new(&b, kek()));
    let (keys_a, keys_b) = tokio::join!(ka.load_or_create(Algorithm::Es256, T0), kb.load_or_create(Algorithm::Es256, T0));
    let (keys_a, keys_b) = (keys_a.unwrap(), keys_b.unwrap());
    assert_eq!(keys_a.signing().kid(), keys_b.signing().kid());
    // The key set is not an object: lists and the feed never show it.
    assert!(a.list(&Resource::SECRETS, &ListOptions::default()).await.unwrap().items.is_empty());

    // Another key encryption key cannot open them.
    let wrong = KeyEncryptionKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let err = SharedKeys::new(&a, wrong).load_or_create(Algorithm::Es256, T0).await.unwrap_err().to_string();
    assert!(err.contains("cannot be decrypted"), "{err}");

    // Shared secrets (the CA, the admin credential): made once, the same for every replica,
    // sealed under the key encryption key.
    let (made_a, made_b) = tokio::join!(ka.shared_secret("ca", || b"from a".to_vec()), kb.shared_secret("ca", || b"from b".to_vec()));
    let (made_a, made_b) = (made_a.unwrap(), made_b.unwrap());
    assert_eq!(made_a, made_b, "two replicas made different secrets");
    assert_eq!(ka.shared_secret("ca", || b"again".to_vec()).await.unwrap(), made_a);
    let wrong = KeyEncryptionKey::from_base64("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap();
    let err = SharedKeys::new(&a, wrong).shared_secret("ca", Vec::new).await.unwrap_err().to_string();
    assert_eq!(err, "ca in etcd cannot be decrypted: is the key encryption key the one the first replica used?");
}
