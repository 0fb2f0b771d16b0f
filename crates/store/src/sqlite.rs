//! The embedded durable backend: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! write is on disk when the call returns. Each write is one transaction holding the object
//! change, the event and the revision counter; events are published on the broadcast after
//! the commit, under the same lock, hence in revision order.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokenwarden_core::{Object, ObjectKey, Resource};
use tokio::sync::broadcast;

use crate::memory::{DEFAULT_BROADCAST_CAPACITY, DEFAULT_KEEP_EVENTS};
use crate::write::{self, Txn};
use crate::{Clock, Event, EventType, ListOptions, ObjectList, Preconditions, Result, Revision, Store, StoreError};

/// Tuning of a [`SqliteStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Events kept before automatic compaction (default 100 000).
    pub keep_events: usize,
    /// Capacity of the live broadcast (default 1024).
    pub broadcast_capacity: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { keep_events: DEFAULT_KEEP_EVENTS, broadcast_capacity: DEFAULT_BROADCAST_CAPACITY }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    prefix    TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    PRIMARY KEY (prefix, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY,
    type     TEXT    NOT NULL,
    prefix   TEXT    NOT NULL,
    body     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// A [`Store`] in one SQLite database file.
pub struct SqliteStore {
    clock: Arc<dyn Clock>,
    db: Arc<Mutex<Db>>,
    live: broadcast::Sender<Event>,
    path: PathBuf,
}

struct Db {
    conn: Connection,
    revision: Revision,
    compacted: Revision,
    keep_events: usize,
    live: broadcast::Sender<Event>,
}

fn db_err(e: impl Display) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

fn to_sql(revision: Revision) -> Result<i64> {
    i64::try_from(revision).map_err(|_| StoreError::Backend(format!("revision {revision} out of range")))
}

fn from_sql(value: i64) -> Result<Revision> {
    Revision::try_from(value).map_err(|_| StoreError::Backend(format!("stored revision {value} is negative")))
}

fn parse_object(body: &str) -> Result<Object> {
    write::parse_stored(body.as_bytes())
}

fn body(object: &Object) -> Result<String> {
    serde_json::to_string(&object.0).map_err(|e| StoreError::Backend(format!("serializing object: {e}")))
}

fn read_meta(conn: &Connection, key: &str) -> Result<Revision> {
    let value: Option<i64> =
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(db_err)?;
    from_sql(value.unwrap_or(0))
}

fn write_meta(conn: &Connection, key: &str, value: Revision) -> Result<()> {
    let value = to_sql(value)?;
    conn.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
        .and_then(|mut s| s.execute(params![key, value]))
        .map_err(db_err)?;
    Ok(())
}

/// Forgets events up to `target` (already clamped) inside the caller's transaction.
fn delete_events_through(conn: &Connection, target: Revision) -> Result<()> {
    let target_sql = to_sql(target)?;
    conn.prepare_cached("DELETE FROM events WHERE revision <= ?1")
        .and_then(|mut s| s.execute([target_sql]))
        .map_err(db_err)?;
    write_meta(conn, META_COMPACTED, target)
}

/// One write transaction.
struct SqlTxn<'c> {
    tx: rusqlite::Transaction<'c>,
    revision: Revision,
    compacted: Revision,
    keep_events: usize,
}

impl Txn for SqlTxn<'_> {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<Object>> {
        get_object(&self.tx, key)
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn apply(&mut self, key: &ObjectKey, event: &Event) -> Result<()> {
        let revision = to_sql(event.revision)?;
        let json = body(&event.object)?;
        match event.event_type {
            EventType::Deleted => self
                .tx
                .prepare_cached("DELETE FROM objects WHERE prefix = ?1 AND namespace = ?2 AND name = ?3")
                .and_then(|mut s| s.execute(params![key.prefix, key.namespace, key.name])),
            EventType::Added | EventType::Modified => self
                .tx
                .prepare_cached(
                    "INSERT INTO objects (prefix, namespace, name, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(prefix, namespace, name) DO UPDATE SET revision = excluded.revision, body = excluded.body",
                )
                .and_then(|mut s| s.execute(params![key.prefix, key.namespace, key.name, revision, json])),
        }
        .map_err(db_err)?;
        self.tx
            .prepare_cached("INSERT INTO events (revision, type, prefix, body) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![revision, event.event_type.as_str(), &*event.prefix, json]))
            .map_err(db_err)?;
        write_meta(&self.tx, META_REVISION, event.revision)?;
        self.revision = event.revision;
        if let Some(target) = write::auto_compaction(self.revision, self.compacted, self.keep_events) {
            delete_events_through(&self.tx, target)?;
            self.compacted = target;
        }
        Ok(())
    }
}

fn get_object(conn: &Connection, key: &ObjectKey) -> Result<Option<Object>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM objects WHERE prefix = ?1 AND namespace = ?2 AND name = ?3")
        .and_then(|mut s| s.query_row(params![key.prefix, key.namespace, key.name], |r| r.get(0)).optional())
        .map_err(db_err)?;
    body.as_deref().map(parse_object).transpose()
}

impl Db {
    /// Runs one write in a transaction, commits, then publishes the event.
    fn write(&mut self, f: impl FnOnce(&mut SqlTxn<'_>) -> Result<Event>) -> Result<Object> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        let mut txn = SqlTxn { tx, revision: self.revision, compacted: self.compacted, keep_events: self.keep_events };
        // On error the transaction is dropped, which rolls it back.
        let event = f(&mut txn)?;
        let compacted = txn.compacted;
        txn.tx.commit().map_err(db_err)?;
        self.revision = event.revision;
        self.compacted = compacted;
        let object = (*event.object).clone();
        // No receivers is not an error.
        let _ = self.live.send(event);
        Ok(object)
    }

    fn list(&self, scan: &write::ListScan, options: &ListOptions) -> Result<ObjectList> {
        let (after_ns, after_name) = match &scan.after {
            Some((ns, name)) => (Some(ns.as_str()), Some(name.as_str())),
            None => (None, None),
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT body FROM objects
                 WHERE prefix = ?1 AND (?2 IS NULL OR namespace = ?2)
                   AND (?3 IS NULL OR (namespace, name) > (?3, ?4))
                 ORDER BY namespace, name",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![scan.prefix, scan.namespace, after_ns, after_name], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        let scanned = rows.map(|row| row.map_err(db_err).and_then(|b| parse_object(&b)));
        // Later pages say the first page's revision, as kube's do: a watch from the last page's
        // then replays what changed meanwhile, instead of missing it.
        write::collect_list(scanned, options, scan.revision.map_or(self.revision, |first| first.min(self.revision)))
    }

    fn events_since(&self, after: Revision) -> Result<Vec<Event>> {
        write::check_since(after, self.compacted)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT revision, type, prefix, body FROM events WHERE revision > ?1 ORDER BY revision")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([to_sql(after).unwrap_or(i64::MAX)], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(db_err)?;
        let mut events = Vec::new();
        for row in rows {
            let (revision, event_type, prefix, body) = row.map_err(db_err)?;
            let event_type = write::parse_event_type(&event_type)
                .ok_or_else(|| StoreError::Backend(format!("stored event has unknown type {event_type:?}")))?;
            events.push(Event {
                event_type,
                revision: from_sql(revision)?,
                prefix: Arc::from(prefix),
                object: Arc::new(parse_object(&body)?),
            });
        }
        Ok(events)
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        let target = write::compaction_target(revision, self.compacted, self.revision);
        if target == self.compacted {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        delete_events_through(&tx, target)?;
        tx.commit().map_err(db_err)?;
        self.compacted = target;
        Ok(())
    }
}

/// Opens the connection, sets durability pragmas, creates the schema and recovers the
/// revision counter and compacted revision.
fn open_db(path: &Path) -> Result<(Connection, Revision, Revision)> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(db_err)? {
        return Err(StoreError::Backend("database is read-only".to_owned()));
    }
    conn.busy_timeout(Duration::from_secs(5)).map_err(db_err)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(db_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!("could not enable WAL journal mode (got {mode:?})")));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(db_err)?;
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    let max = |sql: &str| -> Result<Revision> {
        let value: Option<i64> = conn.query_row(sql, [], |r| r.get(0)).map_err(db_err)?;
        from_sql(value.unwrap_or(0))
    };
    let revision = read_meta(&conn, META_REVISION)?
        .max(max("SELECT MAX(revision) FROM events")?)
        .max(max("SELECT MAX(revision) FROM objects")?);
    let compacted = read_meta(&conn, META_COMPACTED)?;
    Ok((conn, revision, compacted))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with default options.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(path, clock, SqliteOptions::default())
    }

    /// Opens the database file at `path`. Errors (unwritable path, not a database) are
    /// `StoreError::Backend` naming the path.
    pub fn open_with(path: &Path, clock: Arc<dyn Clock>, options: SqliteOptions) -> Result<Self> {
        let (conn, revision, compacted) = open_db(path).map_err(|e| {
            let detail = match e {
                StoreError::Backend(detail) | StoreError::Unavailable(detail) => detail,
                StoreError::Api(e) => e.to_string(),
            };
            StoreError::Backend(format!("opening {}: {detail}", path.display()))
        })?;
        let (live, _) = broadcast::channel(options.broadcast_capacity.max(1));
        let mut db = Db { conn, revision, compacted, keep_events: options.keep_events, live: live.clone() };
        // Apply a smaller retention right away.
        if let Some(target) = write::auto_compaction(revision, compacted, options.keep_events) {
            db.compact(target)?;
        }
        Ok(Self { clock, db: Arc::new(Mutex::new(db)), live, path: path.to_owned() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection in Tokio's blocking pool.
    async fn run<R: Send + 'static>(&self, f: impl FnOnce(&mut Db) -> Result<R> + Send + 'static) -> Result<R> {
        let db = Arc::clone(&self.db);
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| StoreError::Backend(format!("SqliteStore used outside a Tokio runtime: {e}")))?;
        runtime.spawn_blocking(move || {
            let mut db = db.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut db)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create(&self, resource: &Resource, object: Object) -> Result<Object> {
        let (resource, now) = (*resource, self.clock.now());
        self.run(move |db| db.write(|txn| write::create(txn, &resource, object, now))).await
    }

    async fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Object> {
        let resource = *resource;
        let key = ObjectKey::new(&resource, namespace, name);
        self.run(move |db| write::found(&resource, &key.name, get_object(&db.conn, &key)?)).await
    }

    async fn list(&self, resource: &Resource, options: &ListOptions) -> Result<ObjectList> {
        let scan = write::ListScan::new(resource, options)?;
        let options = options.clone();
        self.run(move |db| db.list(&scan, &options)).await
    }

    async fn update(&self, resource: &Resource, object: Object) -> Result<Object> {
        let resource = *resource;
        self.run(move |db| db.write(|txn| write::update(txn, &resource, object))).await
    }

    async fn delete(&self, resource: &Resource, namespace: &str, name: &str, preconditions: &Preconditions) -> Result<Object> {
        let (resource, namespace, name, preconditions) =
            (*resource, namespace.to_owned(), name.to_owned(), preconditions.clone());
        self.run(move |db| db.write(|txn| write::delete(txn, &resource, &namespace, &name, &preconditions))).await
    }

    async fn events_since(&self, after: Revision) -> Result<Vec<Event>> {
        self.run(move |db| db.events_since(after)).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.run(|db| Ok(db.revision)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.run(move |db| db.compact(revision)).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
