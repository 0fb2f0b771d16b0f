//! AuthConfigs from a directory of YAML files: multi-document files, other kinds skipped,
//! invalid AuthConfigs skipped with their file and reason, and files added, changed and
//! removed taking effect within two seconds (polled every second).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokenwarden_authz::Authorizer;
use tokenwarden_authz::dir::{load_dir, watch_dir_default};
use tokenwarden_authz::identity::Identities;

fn authconfig(name: &str, host: &str) -> String {
    format!(
        "apiVersion: authorino.kuadrant.io/v1beta3\nkind: AuthConfig\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  hosts:\n  - {host}\n  authentication:\n    anyone:\n      anonymous: {{}}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    // Write then rename, as kubectl and editors do, so a poll never sees half a file.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) {
    let started = tokio::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn load_dir_reads_multi_document_files_and_reports_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    let multi = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: not-me\n---\n{}---\n# empty\n---\n{}",
        authconfig("one", "one.example.com"),
        authconfig("two", "two.example.com").replace("  namespace: apps\n", "")
    );
    write(dir.path(), "a.yaml", &multi);
    write(dir.path(), "b.yml", &authconfig("three", "three.example.com"));
    write(dir.path(), "notes.txt", &authconfig("ignored", "ignored.example.com"));
    write(dir.path(), "bad.yaml", &authconfig("broken", "broken.example.com").replace("  hosts:\n  - broken.example.com\n", "  hosts: 7\n"));
    write(dir.path(), "syntax.yaml", "kind: AuthConfig\n  : [\n");
    write(dir.path(), "dup.yaml", &authconfig("one", "dup.example.com"));

    let loaded = load_dir(dir.path()).unwrap();
    let names: Vec<String> = loaded.configs.iter().map(|c| c.key()).collect();
    assert_eq!(names, vec!["apps/one", "default/two", "apps/three"]);

    let skipped: Vec<(String, Option<String>)> =
        loaded.skipped.iter().map(|s| (s.file.file_name().unwrap().to_string_lossy().into_owned(), s.authconfig.clone())).collect();
    assert_eq!(
        skipped,
        vec![
            ("bad.yaml".to_owned(), Some("apps/broken".to_owned())),
            ("dup.yaml".to_owned(), Some("apps/one".to_owned())),
            ("syntax.yaml".to_owned(), None),
        ]
    );
    assert!(loaded.skipped[0].reason.contains("hosts"), "{}", loaded.skipped[0].reason);
    assert!(loaded.skipped[2].reason.starts_with("invalid YAML"), "{}", loaded.skipped[2].reason);
}

#[tokio::test]
async fn changes_take_effect_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &authconfig("a", "a.example.com"));
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let watcher = watch_dir_default(dir.path().to_path_buf(), Arc::clone(&authorizer)).unwrap();
    let configs = || authorizer.configs();
    // Loaded before `watch_dir` returns.
    assert!(configs().lookup("a.example.com").is_some());
    let within = Duration::from_secs(2);

    write(dir.path(), "b.yml", &authconfig("b", "b.example.com"));
    eventually("added", within, || configs().lookup("b.example.com").is_some()).await;

    write(dir.path(), "a.yaml", &authconfig("a", "a2.example.com"));
    eventually("changed", within, || configs().lookup("a2.example.com").is_some() && configs().lookup("a.example.com").is_none()).await;

    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    eventually("removed", within, || configs().lookup("b.example.com").is_none()).await;

    // An invalid file is skipped; the others stay in force, and a fix is picked up.
    write(dir.path(), "c.yaml", &authconfig("c", "c.example.com").replace("anonymous: {}", "anonymous: 5"));
    write(dir.path(), "d.yaml", &authconfig("d", "d.example.com"));
    eventually("valid next to invalid", within, || configs().lookup("d.example.com").is_some()).await;
    assert!(configs().lookup("c.example.com").is_none());
    assert!(configs().lookup("a2.example.com").is_some());
    write(dir.path(), "c.yaml", &authconfig("c", "c.example.com"));
    eventually("fixed", within, || configs().lookup("c.example.com").is_some()).await;
    assert!(!watcher.is_finished());
    watcher.abort();
}

#[tokio::test]
async fn an_update_that_fails_keeps_the_last_valid_version_in_force() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &authconfig("a", "admin.example.com"));
    write(dir.path(), "z.yaml", &authconfig("z", "'*'"));
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let watcher = watch_dir_default(dir.path().to_path_buf(), Arc::clone(&authorizer)).unwrap();
    let answering = |host: &str| authorizer.configs().lookup(host).map(|c| c.name.clone());
    assert_eq!(answering("admin.example.com").as_deref(), Some("a"));
    let within = Duration::from_secs(2);

    // A bad update of `a` (a reload happened: `b` is in) leaves `a` answering its host, as
    // Authorino keeps enforcing what it last translated; the catch-all does not take it over.
    write(dir.path(), "a.yaml", &authconfig("a", "admin.example.com").replace("anonymous: {}", "anonymous: 5"));
    write(dir.path(), "b.yaml", &authconfig("b", "b.example.com"));
    eventually("reloaded", within, || answering("b.example.com").as_deref() == Some("b")).await;
    assert_eq!(answering("admin.example.com").as_deref(), Some("a"));
    // So does a file that is not YAML at all (half written, say).
    write(dir.path(), "a.yaml", "kind: AuthConfig\n  : [\n");
    write(dir.path(), "c.yaml", &authconfig("c", "c.example.com"));
    eventually("reloaded", within, || answering("c.example.com").as_deref() == Some("c")).await;
    assert_eq!(answering("admin.example.com").as_deref(), Some("a"));
    // Removed, it is gone: the catch-all answers.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    eventually("removed", within, || answering("admin.example.com").as_deref() == Some("z")).await;
    watcher.abort();
}

#[tokio::test]
async fn a_missing_directory_is_an_error_naming_it() {
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let error = watch_dir_default("/nonexistent/authconfigs".into(), authorizer).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/authconfigs"), "{error}");
}
