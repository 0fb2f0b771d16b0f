//! AuthConfigs from a directory of YAML files (`--authconfig-dir`): `*.yaml` and `*.yml`, each
//! possibly holding several documents (`---`); documents that are not AuthConfigs (other kinds,
//! empty ones) are skipped. The directory is polled (modification times and sizes, every
//! second by default) and reloaded when anything changed. An AuthConfig that does not parse or
//! validate is logged with its file and reason and skipped; the others stay in force, and so
//! does its own last valid version, if it had one.
//!
//! Order, for host collisions: `metadata.creationTimestamp` when set, then file name, then
//! position in the file. A document without `metadata.namespace` is in `default`, as
//! `kubectl apply` would put it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokenwarden_core::authconfig::{AuthConfig, HostIndex};

use crate::Authorizer;

/// An AuthConfig document that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub file: PathBuf,
    /// `namespace/name` when the document names one.
    pub authconfig: Option<String>,
    pub reason: String,
}

/// What a directory holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Valid AuthConfigs, in collision order (oldest first).
    pub configs: Vec<Arc<AuthConfig>>,
    /// Where each of `configs` was read, which sets that order.
    pub places: Vec<Place>,
    pub skipped: Vec<Skipped>,
}

/// Where an AuthConfig was read: `metadata.creationTimestamp` (or empty), file, position in
/// the file; older places win host collisions.
pub type Place = (String, PathBuf, usize);

/// A file's identity for change detection.
type Stamp = BTreeMap<PathBuf, (SystemTime, u64)>;

fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e == "yaml" || e == "yml");
        // Editors' and kubectl's hidden temporaries are not configuration.
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if is_yaml && !hidden && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn stamp(dir: &Path) -> std::io::Result<Stamp> {
    let mut out = Stamp::new();
    for path in yaml_files(dir)? {
        // A file removed between the listing and here is simply gone.
        if let Ok(metadata) = std::fs::metadata(&path) {
            out.insert(path, (metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len()));
        }
    }
    Ok(out)
}

fn is_authconfig(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("AuthConfig")
        && doc.get("apiVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("authorino.kuadrant.io/"))
}

/// Reads and parses every AuthConfig in `dir` (no logging: see [`Loaded::skipped`]).
pub fn load_dir(dir: &Path) -> std::io::Result<Loaded> {
    let mut found: Vec<(String, PathBuf, usize, AuthConfig)> = Vec::new();
    let mut skipped = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for file in yaml_files(dir)? {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                skipped.push(Skipped { file, authconfig: None, reason: e.to_string() });
                continue;
            }
        };
        let docs: Vec<Value> = match serde_saphyr::from_multiple(&text) {
            Ok(docs) => docs,
            Err(e) => {
                let reason = e.to_string().lines().next().unwrap_or_default().to_owned();
                skipped.push(Skipped { file, authconfig: None, reason: format!("invalid YAML: {reason}") });
                continue;
            }
        };
        for (position, mut doc) in docs.into_iter().enumerate() {
            if !is_authconfig(&doc) {
                continue;
            }
            if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut)
                && meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty)
            {
                meta.insert("namespace".into(), Value::from("default"));
            }
            let name = doc.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned);
            let key = name.as_ref().map(|n| format!("{}/{n}", doc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default")));
            match AuthConfig::parse(&doc) {
                Ok(config) => {
                    let key = config.key();
                    if !seen.insert(key.clone()) {
                        skipped.push(Skipped { file: file.clone(), authconfig: Some(key), reason: "defined more than once; the first definition is used".into() });
                        continue;
                    }
                    let created = doc.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_owned();
                    found.push((created, file.clone(), position, config));
                }
                Err(e) => skipped.push(Skipped { file: file.clone(), authconfig: key, reason: e.to_string() }),
            }
        }
    }
    found.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    let (places, configs) = found.into_iter().map(|(created, file, position, config)| ((created, file, position), Arc::new(config))).unzip();
    Ok(Loaded { configs, places, skipped })
}

/// The loaded AuthConfigs, and the last valid version of each that failed this time (as
/// Authorino keeps enforcing one whose update it cannot translate): those whose document was
/// refused, and, when a whole file could not be read (half written, say), every one missing
/// now, since which file held it is not known. Each keeps its place from the last load
/// (`places`, updated here), so host collisions resolve as before.
fn with_last_valid(loaded: Loaded, previous: &HostIndex, places: &mut HashMap<String, Place>) -> Vec<Arc<AuthConfig>> {
    let a_file_failed = loaded.skipped.iter().any(|s| s.authconfig.is_none());
    let refused: HashSet<&str> = loaded.skipped.iter().filter_map(|s| s.authconfig.as_deref()).collect();
    let loaded_keys: HashSet<String> = loaded.configs.iter().map(|c| c.key()).collect();
    let mut entries: Vec<(Place, Arc<AuthConfig>)> = loaded.places.into_iter().zip(loaded.configs).collect();
    for config in previous.configs() {
        let key = config.key();
        if !loaded_keys.contains(&key) && (a_file_failed || refused.contains(key.as_str())) {
            entries.push((places.get(&key).cloned().unwrap_or_default(), Arc::clone(config)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    *places = entries.iter().map(|(place, config)| (config.key(), place.clone())).collect();
    entries.into_iter().map(|(_, config)| config).collect()
}

fn publish(dir: &Path, authorizer: &Authorizer, places: &Mutex<HashMap<String, Place>>) -> std::io::Result<()> {
    let loaded = load_dir(dir)?;
    for skipped in &loaded.skipped {
        tracing::warn!(
            file = %skipped.file.display(),
            authconfig = skipped.authconfig.as_deref().unwrap_or_default(),
            reason = %skipped.reason,
            "invalid AuthConfig skipped"
        );
    }
    let mut places = places.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let index = HostIndex::build(with_last_valid(loaded, &authorizer.configs(), &mut places));
    tracing::info!(dir = %dir.display(), authconfigs = index.len(), "authconfigs loaded");
    authorizer.set_configs(index);
    Ok(())
}

/// Loads `dir` into `authorizer` (an unreadable directory is an error), then polls it every
/// `interval` in a background task and reloads on any change.
pub fn watch_dir(dir: PathBuf, authorizer: Arc<Authorizer>, interval: Duration) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut last = stamp(&dir).map_err(|e| std::io::Error::new(e.kind(), format!("AuthConfig directory {}: {e}", dir.display())))?;
    let places = Arc::new(Mutex::new(HashMap::new()));
    publish(&dir, &authorizer, &places)?;
    Ok(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let polled = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || stamp(&dir)).await
            };
            match polled {
                Ok(Ok(current)) if current != last => {
                    let loaded = {
                        let (dir, authorizer, places) = (dir.clone(), Arc::clone(&authorizer), Arc::clone(&places));
                        tokio::task::spawn_blocking(move || publish(&dir, &authorizer, &places)).await
                    };
                    match loaded {
                        Ok(Ok(())) => last = current,
                        Ok(Err(e)) => tracing::warn!(dir = %dir.display(), error = %e, "cannot read the AuthConfig directory"),
                        Err(e) => tracing::warn!(error = %e, "AuthConfig reload failed"),
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(dir = %dir.display(), error = %e, "cannot read the AuthConfig directory"),
                Err(e) => tracing::warn!(error = %e, "AuthConfig poll failed"),
            }
        }
    }))
}

/// [`watch_dir`] polling every second.
pub fn watch_dir_default(dir: PathBuf, authorizer: Arc<Authorizer>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    watch_dir(dir, authorizer, Duration::from_secs(1))
}
