//! Writes that must fail whole and change nothing: a namespace delete whose preconditions do
//! not hold, and JSON patches over kube-apiserver's limits or deeper than the store reads back.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokenwarden_apiserver::{AdminCredential, ApiState, router};
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::IssuerConfig;
use tokenwarden_store::sqlite::SqliteStore;
use tokenwarden_store::{Authority, ManualClock};

use common::{ADMIN, Server, assert_status, names, server};

const JSON_PATCH: &str = "application/json-patch+json";
const BOT: &str = "/api/v1/namespaces/team/serviceaccounts/bot";

async fn delete_with(s: &Server, uri: &str, options: Value) -> common::Reply {
    s.call(Method::DELETE, uri, &[("content-type", "application/json")], Some(options)).await
}

#[tokio::test]
async fn a_namespace_delete_whose_preconditions_fail_deletes_nothing() {
    let s = server().await;
    s.namespace("team").await;
    s.service_account("team", "bot", json!({})).await;
    let secret = s.post("/api/v1/namespaces/team/secrets", json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})).await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.body);
    let namespace = s.get("/api/v1/namespaces/team").await.body;
    let (uid, rv) = (namespace["metadata"]["uid"].as_str().unwrap(), namespace["metadata"]["resourceVersion"].as_str().unwrap());

    let wrong_uid = delete_with(&s, "/api/v1/namespaces/team", json!({"preconditions": {"uid": "wrong"}})).await;
    assert_status(
        &wrong_uid,
        409,
        "Conflict",
        &format!(r#"Operation cannot be fulfilled on namespaces "team": Precondition failed: UID in precondition: wrong, UID in object meta: {uid}"#),
    );
    let stale = delete_with(&s, "/api/v1/namespaces/team", json!({"preconditions": {"resourceVersion": "1"}})).await;
    assert_status(
        &stale,
        409,
        "Conflict",
        &format!(r#"Operation cannot be fulfilled on namespaces "team": Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta: {rv}"#),
    );
    assert_eq!(s.get(BOT).await.status, StatusCode::OK);
    assert_eq!(s.get("/api/v1/namespaces/team/secrets/s").await.status, StatusCode::OK);
    assert_eq!(names(&s.get("/api/v1/namespaces/team/serviceaccounts").await.body), vec!["bot", "default"]);
    assert_eq!(s.get("/api/v1/namespaces/team").await.body, namespace);

    // Preconditions that hold: the namespace goes, and everything in it.
    let deleted = delete_with(&s, "/api/v1/namespaces/team", json!({"preconditions": {"uid": uid, "resourceVersion": rv}})).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(s.get(BOT).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/api/v1/namespaces/team/secrets/s").await.status, StatusCode::NOT_FOUND);
}

async fn team_bot(s: &Server) -> Value {
    s.namespace("team").await;
    s.service_account("team", "bot", json!({})).await
}

#[tokio::test]
async fn a_json_patch_has_at_most_10000_operations() {
    let s = server().await;
    let bot = team_bot(&s).await;
    let test = json!({"op": "test", "path": "/kind", "value": "ServiceAccount"});
    let too_many = s.patch(BOT, JSON_PATCH, Value::Array(vec![test.clone(); 10_001])).await;
    assert_status(&too_many, 413, "RequestEntityTooLarge", "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001");
    assert_eq!(s.get(BOT).await.body, bot);
    let most = s.patch(BOT, JSON_PATCH, Value::Array(vec![test; 10_000])).await;
    assert_eq!(most.status, StatusCode::OK, "{}", most.body);
}

/// `add /x {}`, then 40 copies of `/x` into itself: each doubles the document.
fn doubling_copies() -> Value {
    let mut ops = vec![json!({"op": "add", "path": "/x", "value": {}})];
    ops.extend((0..40).map(|n| json!({"op": "copy", "from": "/x", "path": format!("/x/k{n}")})));
    Value::Array(ops)
}

#[tokio::test]
async fn json_patch_copies_add_at_most_3_mib() {
    let s = server().await;
    let bot = team_bot(&s).await;
    for uri in [BOT.to_owned(), format!("{BOT}?dryRun=All")] {
        let reply = s.patch(&uri, JSON_PATCH, doubling_copies()).await;
        assert_eq!(reply.status.as_u16(), 422, "{}", reply.body);
        assert_eq!(reply.body["reason"], "Invalid");
        let message = reply.body["message"].as_str().unwrap();
        let prefix = "the server rejected our request due to an error in our request: Unable to complete the copy, the accumulated size increase of copy is ";
        assert!(message.starts_with(prefix) && message.ends_with(", exceeding the limit 3145728"), "{message}");
        let accumulated: u64 = message[prefix.len()..].split(',').next().unwrap().parse().unwrap();
        assert!(accumulated > 3 * 1024 * 1024 && accumulated < 7 * 1024 * 1024, "{message}");
    }
    assert_eq!(s.get(BOT).await.body, bot);

    // Copies count together: each adds 1 MiB (the string and its quotes); three reach the
    // limit, a fourth passes it.
    let big = "a".repeat(1024 * 1024 - 2);
    let mut ops = vec![json!({"op": "add", "path": "/big", "value": big})];
    ops.extend((0..3).map(|n| json!({"op": "copy", "from": "/big", "path": format!("/copy{n}")})));
    let three = s.patch(BOT, JSON_PATCH, Value::Array(ops.clone())).await;
    assert_eq!(three.status, StatusCode::OK, "{}", three.body);
    ops.push(json!({"op": "copy", "from": "/big", "path": "/copy3"}));
    let four = s.patch(BOT, JSON_PATCH, Value::Array(ops)).await;
    assert_status(
        &four,
        422,
        "Invalid",
        "the server rejected our request due to an error in our request: Unable to complete the copy, the accumulated size increase of copy is 4194304, exceeding the limit 3145728",
    );
}

/// `{"a": {"a": ... {}}}`: `depth` objects, nested.
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!({}), |inner, _| json!({"a": inner}))
}

/// Adds a 120-deep `/x`, then copies it under `/x/a/.../a/b` (`levels` a's): the patched
/// object nests 122 + `levels` deep (the object itself is the first level).
fn add_and_copy(levels: usize) -> Value {
    json!([
        {"op": "add", "path": "/x", "value": nested(120)},
        {"op": "copy", "from": "/x", "path": format!("/x{}/b", "/a".repeat(levels))},
    ])
}

/// A database file removed when the test ends, passed or failed.
struct TempDb(std::path::PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

async fn sqlite_server(name: &str) -> (Server, TempDb) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!("tokenwarden-{name}-{}-{}.db", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let clock = ManualClock::new(Timestamp(1_757_035_663));
    let store = SqliteStore::open(&path, Arc::new(clock.clone())).unwrap();
    let keys = KeySet::new(tokenwarden_store::keystore::generate(Algorithm::Es256).unwrap(), vec![]);
    let authority =
        Authority::start(Arc::new(store), keys, IssuerConfig::new("https://127.0.0.1:6443"), Arc::new(clock.clone()), None).await.unwrap();
    authority.bootstrap_policy().await.unwrap();
    let state = ApiState::new(Arc::clone(&authority), AdminCredential::from_token(ADMIN), "https://127.0.0.1:6443");
    (Server { router: router(Arc::new(state)), clock, authority }, TempDb(path))
}

#[tokio::test]
async fn a_json_patch_cannot_nest_an_object_deeper_than_the_store_reads_back() {
    let (s, _db) = sqlite_server("depth").await;
    let bot = team_bot(&s).await;
    for uri in [format!("{BOT}?dryRun=All"), BOT.to_owned()] {
        let reply = s.patch(&uri, JSON_PATCH, add_and_copy(4)).await;
        assert_status(
            &reply,
            422,
            "Invalid",
            r#"the server rejected our request due to an error in our request: copy to "/x/a/a/a/a/b" would nest the object 126 levels deep, over the 125 it may nest"#,
        );
    }
    let got = s.get(BOT).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, bot);
    assert_eq!(names(&s.get("/api/v1/namespaces/team/serviceaccounts").await.body), vec!["bot", "default"]);

    // The brief's own copy of a copy, ~240 deep.
    let deep = json!([
        {"op": "add", "path": "/x", "value": nested(120)},
        {"op": "copy", "from": "/x", "path": format!("/x{}/b", "/a".repeat(119))},
    ]);
    assert_eq!(s.patch(BOT, JSON_PATCH, deep).await.status.as_u16(), 422);

    // As deep as a list of it reads back is fine, and reads back, alone and in a list.
    let deepest = s.patch(BOT, JSON_PATCH, add_and_copy(3)).await;
    assert_eq!(deepest.status, StatusCode::OK, "{}", deepest.body);
    let got = s.get(BOT).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, deepest.body);
    let listed = s.get("/api/v1/namespaces/team/serviceaccounts").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(names(&listed.body), vec!["bot", "default"], "the list parses with serde_json's limit, as a follower reads it");
    // ...and a merge patch can neither go deeper (the body parser stops it) nor break it.
    let merged = s.patch(BOT, "application/merge-patch+json", json!({"metadata": {"labels": {"a": "b"}}})).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    assert_eq!(s.get(BOT).await.status, StatusCode::OK);
}
