//! Write, list and feed semantics shared by every backend, as functions over a small
//! [`Txn`] a backend implements. Backends only persist: every rule (names, uids, revisions,
//! conflicts, preconditions, selectors, paging, compaction) lives here.

use std::sync::Arc;

use base64::Engine as _;
use tokenwarden_core::{Error, FieldError, Object, ObjectKey, Resource, Timestamp, uuid_v4};

use crate::clock::random_bytes;
use crate::{Event, EventType, ListOptions, ObjectList, Preconditions, Result, Revision, StoreError};

/// What a backend offers one write: a read of the current state and one atomic apply.
pub(crate) trait Txn {
    /// The stored object at `key`.
    fn get(&mut self, key: &ObjectKey) -> Result<Option<Object>>;
    /// The last revision written.
    fn revision(&self) -> Revision;
    /// Persists `event` (revision `revision() + 1`): puts `event.object` at `key` (added,
    /// modified) or removes `key` (deleted), and appends the event. Called once per write,
    /// after every check passed.
    fn apply(&mut self, key: &ObjectKey, event: &Event) -> Result<()>;
}

const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
const GENERATE_NAME_SUFFIX: usize = 5;
const MODIFIED_DETAIL: &str = "the object has been modified; please apply your changes to the latest version and try again";

/// The longest base a generated name keeps: kube's SimpleNameGenerator cuts it so that the
/// name fits a DNS label (63 characters).
const GENERATE_NAME_MAX_BASE: usize = 63 - GENERATE_NAME_SUFFIX;

/// `base` (cut to 58 bytes) + 5 random characters, as `metadata.generateName` asks.
pub(crate) fn generated_name(base: &str) -> String {
    let bytes: [u8; GENERATE_NAME_SUFFIX] = random_bytes();
    // A base that is not ASCII is refused by validation anyway; cut it where a character ends.
    let cut = (0..=base.len().min(GENERATE_NAME_MAX_BASE)).rev().find(|&i| base.is_char_boundary(i)).unwrap_or(0);
    let mut name = base.get(..cut).unwrap_or_default().to_owned();
    for b in bytes {
        let i = usize::from(b) % GENERATE_NAME_ALPHABET.len();
        name.push(char::from(GENERATE_NAME_ALPHABET.get(i).copied().unwrap_or(b'x')));
    }
    name
}

fn conflict(resource: &Resource, name: &str, detail: String) -> StoreError {
    Error::Conflict { resource: resource.qualified(), kind: resource.kind.to_owned(), name: name.to_owned(), detail }
        .into()
}

fn not_found(resource: &Resource, name: &str) -> StoreError {
    Error::not_found(resource.qualified(), name).into()
}

fn name_required(resource: &Resource, detail: &str) -> StoreError {
    Error::Invalid {
        kind: resource.kind.to_owned(),
        group: resource.group.to_owned(),
        name: String::new(),
        causes: vec![FieldError::required("metadata.name", detail)],
    }
    .into()
}

/// Namespace rules and `apiVersion`/`kind` defaults common to create and update; returns
/// the object's key.
fn place(resource: &Resource, object: &mut Object) -> Result<ObjectKey> {
    if resource.namespaced {
        if object.namespace().is_empty() {
            return Err(Error::BadRequest("namespace is required".to_owned()).into());
        }
    } else {
        object.metadata_mut().remove("namespace");
    }
    if object.0.get("apiVersion").and_then(|v| v.as_str()).is_none_or(str::is_empty) {
        object.0.insert("apiVersion".to_owned(), resource.api_version().into());
    }
    if object.0.get("kind").and_then(|v| v.as_str()).is_none_or(str::is_empty) {
        object.0.insert("kind".to_owned(), resource.kind.into());
    }
    Ok(object_key(resource, object))
}

/// The key a create (with a name) or an update of `object` writes, for backends that read
/// it ahead of the write.
pub(crate) fn object_key(resource: &Resource, object: &Object) -> ObjectKey {
    ObjectKey::new(resource, object.namespace(), object.name())
}

fn event(event_type: EventType, revision: Revision, resource: &Resource, object: Object) -> Event {
    Event { event_type, revision, prefix: Arc::from(resource.key_prefix()), object: Arc::new(object) }
}

fn next_revision(txn: &impl Txn) -> Result<Revision> {
    txn.revision().checked_add(1).ok_or_else(|| StoreError::Backend("revision counter overflow".to_owned()))
}

/// Creates `object`: names it (or generates a name), stamps uid, creationTimestamp and
/// resourceVersion, refuses an existing key.
pub(crate) fn create(txn: &mut impl Txn, resource: &Resource, mut object: Object, now: Timestamp) -> Result<Event> {
    // Admission comes first, as in kube (before a name is generated or checked); a missing
    // namespace is `place`'s error below.
    if resource.namespaced && !object.namespace().is_empty() {
        let namespace = txn.get(&namespace_key(&object))?;
        admit_to_namespace(resource, &object, namespace.as_ref())?;
    }
    if object.name().is_empty() {
        let base = object.0.get("metadata").and_then(|m| m.get("generateName")).and_then(|g| g.as_str());
        match base {
            Some(base) if !base.is_empty() => {
                let name = generated_name(base);
                object.set_meta("name", name);
            }
            _ => return Err(name_required(resource, "name or generateName is required")),
        }
    }
    let key = place(resource, &mut object)?;
    if txn.get(&key)?.is_some() {
        return Err(Error::AlreadyExists { resource: resource.qualified(), name: key.name }.into());
    }
    let revision = next_revision(txn)?;
    object.set_meta("uid", uuid_v4(random_bytes()));
    object.set_meta("creationTimestamp", now.to_string());
    object.set_meta("resourceVersion", revision.to_string());
    let event = event(EventType::Added, revision, resource, object);
    txn.apply(&key, &event)?;
    Ok(event)
}

/// The key a namespaced create reads first: its namespace's.
pub(crate) fn namespace_key(object: &Object) -> ObjectKey {
    ObjectKey::new(&Resource::NAMESPACES, "", object.namespace())
}

/// kube's NamespaceLifecycle admission of a create of `object`, given its namespace as stored:
/// it exists and is not being deleted. A create checks it inside its own transaction, which is
/// what keeps it from landing in a namespace whose delete has already emptied it.
pub(crate) fn admit_to_namespace(resource: &Resource, object: &Object, stored: Option<&Object>) -> Result<()> {
    let namespace = object.namespace();
    match stored {
        None => Err(not_found(&Resource::NAMESPACES, namespace)),
        Some(found) if found.str_at("status.phase") == Some(NAMESPACE_TERMINATING) => {
            Err(Error::namespace_terminating(resource.qualified(), object.name_as_asked(), namespace).into())
        }
        Some(_) => Ok(()),
    }
}

/// A namespace's `status.phase` while it is not being deleted.
pub const NAMESPACE_ACTIVE: &str = "Active";

/// A namespace's `status.phase` from the start of its delete until it is gone.
pub const NAMESPACE_TERMINATING: &str = "Terminating";

/// Replaces a stored object. A non-empty `resourceVersion` must be the stored one; a
/// non-empty `uid` must be the stored one (Kubernetes' implicit update precondition).
pub(crate) fn update(txn: &mut impl Txn, resource: &Resource, mut object: Object) -> Result<Event> {
    if object.name().is_empty() {
        return Err(name_required(resource, "name is required"));
    }
    let key = place(resource, &mut object)?;
    let Some(stored) = txn.get(&key)? else {
        return Err(not_found(resource, &key.name));
    };
    check_sent_version(resource, &stored, &object)?;
    let sent_uid = object.uid();
    if !sent_uid.is_empty() && sent_uid != stored.uid() {
        return Err(conflict(resource, &key.name, uid_precondition_failed(sent_uid, stored.uid())));
    }
    let revision = next_revision(txn)?;
    object.set_meta("uid", stored.uid());
    match stored.0.get("metadata").and_then(|m| m.get("creationTimestamp")) {
        Some(created) => object.set_meta("creationTimestamp", created.clone()),
        None => {
            object.metadata_mut().remove("creationTimestamp");
        }
    }
    object.set_meta("resourceVersion", revision.to_string());
    let event = event(EventType::Modified, revision, resource, object);
    txn.apply(&key, &event)?;
    Ok(event)
}

fn uid_precondition_failed(expected: &str, actual: &str) -> String {
    format!("Precondition failed: UID in precondition: {expected}, UID in object meta: {actual}")
}

/// An update sent with a resourceVersion that is not the stored one: kube's 409, which its
/// GuaranteedUpdate answers before it validates the update.
pub fn check_sent_version(resource: &Resource, current: &Object, sent: &Object) -> Result<()> {
    let version = sent.resource_version();
    if !version.is_empty() && version != current.resource_version() {
        return Err(conflict(resource, current.name(), MODIFIED_DETAIL.to_owned()));
    }
    Ok(())
}

/// A delete's preconditions against the stored `object`: 409 Conflict, as kube-apiserver words it.
pub fn check_preconditions(resource: &Resource, object: &Object, preconditions: &Preconditions) -> Result<()> {
    if let Some(uid) = &preconditions.uid
        && uid != object.uid()
    {
        return Err(conflict(resource, object.name(), uid_precondition_failed(uid, object.uid())));
    }
    if let Some(version) = &preconditions.resource_version
        && version != object.resource_version()
    {
        return Err(conflict(
            resource,
            object.name(),
            format!(
                "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}",
                object.resource_version()
            ),
        ));
    }
    Ok(())
}

/// Deletes a stored object if the preconditions hold; the event's object is the last state
/// with `resourceVersion` set to the deleting revision.
pub(crate) fn delete(
    txn: &mut impl Txn,
    resource: &Resource,
    namespace: &str,
    name: &str,
    preconditions: &Preconditions,
) -> Result<Event> {
    let key = ObjectKey::new(resource, namespace, name);
    let Some(mut object) = txn.get(&key)? else {
        return Err(not_found(resource, name));
    };
    check_preconditions(resource, &object, preconditions)?;
    let revision = next_revision(txn)?;
    object.set_meta("resourceVersion", revision.to_string());
    let event = event(EventType::Deleted, revision, resource, object);
    txn.apply(&key, &event)?;
    Ok(event)
}

/// A stored object's JSON, as every backend reads it back.
pub(crate) fn parse_stored(bytes: &[u8]) -> Result<Object> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(Object::from_value)
        .ok_or_else(|| StoreError::Backend("stored object is not a JSON object".to_owned()))
}

/// A stored object or NotFound.
pub(crate) fn found(resource: &Resource, name: &str, object: Option<Object>) -> Result<Object> {
    object.ok_or_else(|| not_found(resource, name))
}

/// Which stored objects a list reads: keys under `prefix`, in `namespace` if set, ordered
/// by (namespace, name), strictly after `after` if set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListScan {
    pub prefix: String,
    pub namespace: Option<String>,
    pub after: Option<(String, String)>,
    /// The revision the first page was read at (from the continue token); backends with
    /// history (etcd) read the next pages at it, the others read the latest state.
    pub revision: Option<Revision>,
}

impl ListScan {
    pub(crate) fn new(resource: &Resource, options: &ListOptions) -> Result<Self> {
        let namespace = options.namespace.as_deref().filter(|ns| resource.namespaced && !ns.is_empty());
        let token = options.continue_token.as_deref().filter(|t| !t.is_empty());
        let (after, revision) = match token.map(|token| (token, decode_continue(token))) {
            // A token from another namespace's list would start the range outside this one
            // (kube-apiserver's tokens are relative to the namespace, so they cannot).
            Some((token, Ok((ns, _, _)))) if namespace.is_some_and(|namespace| namespace != ns) => return Err(invalid_continue(token)),
            Some((_, Ok((ns, name, revision)))) => (Some((ns, name)), revision),
            Some((_, Err(e))) => return Err(e),
            None => (None, None),
        };
        Ok(Self { prefix: resource.key_prefix(), namespace: namespace.map(str::to_owned), after, revision })
    }

    /// Whether `key` is in the scan (prefix, namespace, after the continue key).
    pub(crate) fn contains(&self, key: &ObjectKey) -> bool {
        key.prefix == self.prefix
            && self.namespace.as_deref().is_none_or(|ns| key.namespace == ns)
            && self.after.as_ref().is_none_or(|(ns, name)| (key.namespace.as_str(), key.name.as_str()) > (ns.as_str(), name.as_str()))
    }

    /// Whether a scan in key order has passed every key it wants.
    pub(crate) fn past_end(&self, key: &ObjectKey) -> bool {
        key.prefix != self.prefix || self.namespace.as_deref().is_some_and(|ns| key.namespace.as_str() > ns)
    }

    /// The first key a range scan may start from (inclusive).
    pub(crate) fn start_key(&self) -> ObjectKey {
        let (namespace, name) = match (&self.after, &self.namespace) {
            (Some((ns, name)), _) => (ns.clone(), name.clone()),
            (None, Some(ns)) => (ns.clone(), String::new()),
            (None, None) => (String::new(), String::new()),
        };
        ObjectKey { prefix: self.prefix.clone(), namespace, name }
    }
}

/// Filters the scanned objects (in key order) with the selectors and pages them.
pub(crate) fn collect_list(
    scanned: impl IntoIterator<Item = Result<Object>>,
    options: &ListOptions,
    revision: Revision,
) -> Result<ObjectList> {
    let mut items = Vec::new();
    let mut more = false;
    for object in scanned {
        let object = object?;
        if !options.label_selector.matches(&object) || !options.field_selector.matches(&object) {
            continue;
        }
        if options.limit > 0 && items.len() >= options.limit {
            more = true;
            break;
        }
        items.push(object);
    }
    let continue_token = match items.last() {
        Some(last) if more => Some(encode_continue(last.namespace(), last.name(), revision)),
        _ => None,
    };
    Ok(ObjectList { items, revision, continue_token })
}

/// `[namespace, name, revision]`: where the next page starts and the revision to read it at.
fn encode_continue(namespace: &str, name: &str, revision: Revision) -> String {
    let json = serde_json::json!([namespace, name, revision]).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Also accepts the older `[namespace, name]` tokens (no revision).
fn decode_continue(token: &str) -> Result<(String, String, Option<Revision>)> {
    let invalid = || invalid_continue(token);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    if let Ok((namespace, name, revision)) = serde_json::from_slice::<(String, String, Revision)>(&bytes) {
        return Ok((namespace, name, Some(revision)));
    }
    let (namespace, name) = serde_json::from_slice::<(String, String)>(&bytes).map_err(|_| invalid())?;
    Ok((namespace, name, None))
}

fn invalid_continue(token: &str) -> StoreError {
    Error::BadRequest(format!("continue key is not valid: {token:?}")).into()
}

/// `after` must not predate the compacted revision.
pub(crate) fn check_since(after: Revision, compacted: Revision) -> Result<()> {
    if after < compacted {
        return Err(Error::Gone(format!("too old resource version: {after} ({compacted})")).into());
    }
    Ok(())
}

/// The compacted revision after compacting to `requested`: never backwards, never past
/// the current revision.
pub(crate) fn compaction_target(requested: Revision, compacted: Revision, current: Revision) -> Revision {
    requested.min(current).max(compacted)
}

/// The revision to compact to so at most `keep` events remain, if any compaction is due.
pub(crate) fn auto_compaction(current: Revision, compacted: Revision, keep: usize) -> Option<Revision> {
    let keep = Revision::try_from(keep).unwrap_or(Revision::MAX);
    let target = current.saturating_sub(keep);
    (target > compacted).then_some(target)
}

/// Text of an event type as stored.
pub(crate) fn parse_event_type(s: &str) -> Option<EventType> {
    match s {
        "ADDED" => Some(EventType::Added),
        "MODIFIED" => Some(EventType::Modified),
        "DELETED" => Some(EventType::Deleted),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use serde_json::json;

    #[derive(Default)]
    struct Map {
        objects: BTreeMap<ObjectKey, Object>,
        revision: Revision,
    }

    impl Txn for Map {
        fn get(&mut self, key: &ObjectKey) -> Result<Option<Object>> {
            Ok(self.objects.get(key).cloned())
        }
        fn revision(&self) -> Revision {
            self.revision
        }
        fn apply(&mut self, key: &ObjectKey, event: &Event) -> Result<()> {
            self.revision = event.revision;
            if event.event_type == EventType::Deleted {
                self.objects.remove(key);
            } else {
                self.objects.insert(key.clone(), (*event.object).clone());
            }
            Ok(())
        }
    }

    fn sa(v: serde_json::Value) -> Object {
        Object::from_value(v).unwrap()
    }

    /// A txn holding namespace `ns`, in `phase`.
    fn with_namespace(phase: &str) -> Map {
        let mut txn = Map::default();
        create(&mut txn, &Resource::NAMESPACES, sa(json!({"metadata": {"name": "ns"}, "status": {"phase": phase}})), Timestamp(0)).unwrap();
        txn
    }

    #[test]
    fn creates_need_their_namespace_and_not_a_terminating_one() {
        let secret = || sa(json!({"metadata": {"name": "s", "namespace": "ns"}}));
        let err = create(&mut Map::default(), &Resource::SECRETS, secret(), Timestamp(0)).unwrap_err();
        assert_eq!(err, StoreError::Api(Error::not_found("namespaces", "ns")));

        let mut txn = with_namespace(NAMESPACE_TERMINATING);
        let StoreError::Api(err) = create(&mut txn, &Resource::SECRETS, secret(), Timestamp(0)).unwrap_err() else { panic!("not an API error") };
        assert_eq!(err.code(), 403);
        assert_eq!(err.to_string(), r#"secrets "s" is forbidden: unable to create new content in namespace ns because it is being terminated"#);
        let Error::Forbidden { causes, .. } = &err else { panic!("{err:?}") };
        assert_eq!((causes[0].reason, causes[0].field.as_str()), ("NamespaceTerminating", "metadata.namespace"));
        assert_eq!(causes[0].message, "namespace ns is being terminated");
        assert_eq!(txn.objects.len(), 1, "nothing written");

        let mut txn = with_namespace("Active");
        create(&mut txn, &Resource::SECRETS, secret(), Timestamp(0)).unwrap();
        assert_eq!(txn.objects.len(), 2);
    }

    #[test]
    fn generate_name_uses_the_kubernetes_alphabet() {
        let mut txn = with_namespace("Active");
        let ev = create(
            &mut txn,
            &Resource::SERVICE_ACCOUNTS,
            sa(json!({"metadata": {"generateName": "bot-", "namespace": "ns"}})),
            Timestamp(0),
        )
        .unwrap();
        let name = ev.object.name();
        assert_eq!(name.len(), 9);
        let suffix = name.strip_prefix("bot-").unwrap();
        assert!(suffix.bytes().all(|b| GENERATE_NAME_ALPHABET.contains(&b)), "{name}");
        assert_eq!(ev.object.value()["kind"], "ServiceAccount");
        assert_eq!(ev.object.value()["apiVersion"], "v1");
        assert_eq!(ev.object.value()["metadata"]["creationTimestamp"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn cluster_scoped_objects_lose_their_namespace() {
        let mut txn = Map::default();
        let ev = create(&mut txn, &Resource::NODES, sa(json!({"metadata": {"name": "n", "namespace": "x"}})), Timestamp(0))
            .unwrap();
        assert!(ev.object.value()["metadata"].get("namespace").is_none());
        assert!(txn.objects.contains_key(&ObjectKey::new(&Resource::NODES, "", "n")));
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue("ns", "a\"b", 7);
        assert_eq!(decode_continue(&token).unwrap(), ("ns".to_owned(), "a\"b".to_owned(), Some(7)));
        let old = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"["ns","n"]"#);
        assert_eq!(decode_continue(&old).unwrap(), ("ns".to_owned(), "n".to_owned(), None));
        for bad in ["!!", "e30", "bm90IGpzb24"] {
            let err = decode_continue(bad).unwrap_err();
            assert!(matches!(err, StoreError::Api(Error::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn objects_as_deep_as_the_authority_admits_read_back() {
        use crate::authority::{MAX_OBJECT_DEPTH, nesting_depth};
        let nested = |depth: usize| (1..depth).fold("{}".to_owned(), |inner, _| format!(r#"{{"a":{inner}}}"#));
        let deepest = parse_stored(nested(MAX_OBJECT_DEPTH).as_bytes()).unwrap();
        assert_eq!(nesting_depth(&deepest.into_value()), MAX_OBJECT_DEPTH);
        // In a list (`{"items": [object]}`) it is two levels deeper: still readable, not a level more.
        let list = |depth: usize| format!(r#"{{"items":[{}]}}"#, nested(depth));
        assert!(serde_json::from_str::<serde_json::Value>(&list(MAX_OBJECT_DEPTH)).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&list(MAX_OBJECT_DEPTH + 1)).is_err(), "the limit is no lower than it must be");
    }

    #[test]
    fn compaction_arithmetic() {
        assert_eq!(auto_compaction(10, 0, 100), None);
        assert_eq!(auto_compaction(101, 0, 100), Some(1));
        assert_eq!(auto_compaction(101, 1, 100), None);
        assert_eq!(auto_compaction(5, 0, usize::MAX), None);
        assert_eq!(compaction_target(50, 10, 20), 20);
        assert_eq!(compaction_target(5, 10, 20), 10);
        assert!(check_since(9, 10).is_err());
        assert!(check_since(10, 10).is_ok());
    }
}
