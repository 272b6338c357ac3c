//! The SQLite store: open (0600 file in a 0700 directory, WAL, busy timeout), migrate, insert,
//! finish, and query runs.

mod annotate;
pub mod archive;
mod archive_fallback;
pub mod artifacts;
pub mod attest;
mod durable;
mod environment;
pub mod filesystem;
mod gc;
mod inspect;
pub mod kept;
pub mod lineage;
pub mod liveness;
pub mod metrics;
mod migrate;
pub mod mlflow;
pub mod objects;
pub mod promotions;
pub mod query;
mod read_only;
pub mod repeat;
pub mod retention;
pub mod scheduler;
mod sweep;
mod transfer;
pub mod which;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};

use crate::error::Hinted;
use crate::record::{
    Arg, Code, Dataset, DatasetKind, Exec, ExecMode, Image, Output, OutputFile, ResolvedBy, Run,
    Status, SCHEMA_VERSION,
};

pub use durable::{spill_dir, Finished, Landed, FINISH_BUDGET, WAIT_NOTICE_AFTER};
pub use inspect::Inspection;
pub use migrate::{latest_version, normalised_schema, MIGRATIONS, SCHEMA};
pub use query::{RunFilter, RunQuery, SortKey};
pub use transfer::fuzz_import_line;
pub use transfer::{Conflict, ImportError, ImportSummary};

/// Errors of the store; each names the database path or run id involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database path {path} is a directory")]
    IsDirectory { path: PathBuf },
    #[error("{path} is not a repro database (corrupt, truncated, or another kind of file)")]
    NotADatabase {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database {path} has schema version {found}, newer than this repro understands ({supported})")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot upgrade the database {path} to schema version {version}")]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no run matches id '{0}'")]
    UnknownRun(String),
    #[error("run id prefix '{prefix}' is ambiguous: it matches {}", .candidates.join(", "))]
    AmbiguousRun {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error("'{0}' is not a valid run id (ULID characters 0-9 a-z without i, l, o, u)")]
    BadId(String),
    #[error("a run with id {0} already exists")]
    Duplicate(String),
    #[error("the database {path} is locked by another process ({what})")]
    Busy {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the disk holding the database {path} is full ({what})")]
    Full {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the database {path} is read-only ({what})")]
    ReadOnly {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the outcome of run {id} could not be recorded, nor written aside ({spill})")]
    NotRecorded {
        id: String,
        spill: std::io::Error,
        #[source]
        source: Box<StoreError>,
    },
    #[error(transparent)]
    NetworkFs(#[from] filesystem::NetworkFsError),
    #[error("the database {path} failed: {what}")]
    Sql {
        path: PathBuf,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl Hinted for StoreError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::CreateDir { .. } => {
                "choose a writable location with --db PATH or REPRO_DB".into()
            }
            StoreError::Open { .. } => {
                "check the path and its permissions, or choose another with --db PATH or REPRO_DB"
                    .into()
            }
            StoreError::IsDirectory { path } => format!(
                "point --db (or REPRO_DB) at a file, e.g. {}",
                path.join("repro.db").display()
            ),
            StoreError::NotADatabase { .. } => "restore it from a backup, or move it aside and let repro create a new one (runs can be re-imported with `repro import`)".into(),
            StoreError::TooNew { .. } => "upgrade repro to a version that knows this schema; the database was left unchanged".into(),
            StoreError::Migrate { .. } => "the database was left at its previous version; check free disk space and permissions".into(),
            StoreError::UnknownRun(_) => "list runs with `repro ls`".into(),
            StoreError::AmbiguousRun { .. } => "type more characters of the id".into(),
            StoreError::BadId(_) => "copy the id from `repro ls`".into(),
            StoreError::Duplicate(_) => return None,
            StoreError::Busy { .. } => "another repro process (an import, a gc, a migration) holds the write lock; retry when it has finished, or find it with `fuser` on the database".into(),
            StoreError::Full { .. } => "free disk space on that file system, or move the database with --db PATH / REPRO_DB".into(),
            StoreError::ReadOnly { .. } => "check the permissions of the database file and its directory (repro needs to write its -wal and -shm files there)".into(),
            StoreError::NotRecorded { source, .. } => return source.hint(),
            StoreError::NetworkFs(e) => return e.hint(),
            StoreError::Sql { .. } => "run `repro doctor` to check the database".into(),
        })
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// Where the database lives: `--db` > `REPRO_DB` > `$XDG_DATA_HOME/repro/repro.db` > `~/.local/share/repro/repro.db`.
pub fn default_db_path() -> PathBuf {
    if let Some(p) = std::env::var_os("REPRO_DB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    crate::config::default_db_path(&|k| std::env::var_os(k))
}

/// How long a statement waits for another process's write lock before failing busy.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The run store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if path.is_dir() {
            return Err(StoreError::IsDirectory { path: path.into() });
        }
        // Decided before anything is created, so a refused database is left untouched.
        let journal = journal_for(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| StoreError::CreateDir {
                        path: dir.into(),
                        source,
                    })?;
            }
        }
        if !path.exists() {
            // Create the file ourselves so it is 0600 whatever the umask.
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(StoreError::CreateDir {
                        path: path.into(),
                        source: e,
                    })
                }
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.into(),
        };
        store.configure(journal)?;
        store.migrate()?;
        // Outcomes spilled while the database was unavailable (see `finish_durably`). Best
        // effort: a failure leaves them for the next process.
        if store.pending_spills() > 0 {
            let _ = store.replay_spills();
        }
        Ok(store)
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: ":memory:".into(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: ":memory:".into(),
        };
        store.configure(filesystem::Journal::Wal)?;
        store.migrate()?;
        Ok(store)
    }

    fn configure(&mut self, journal: filesystem::Journal) -> Result<()> {
        let path = self.path.clone();
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        // The first real read tells a corrupt or foreign file apart.
        // On a network filesystem (allowed with REPRO_ALLOW_NETWORK_FS) the rollback journal
        // relies on the filesystem's locks; WAL's shared memory would not be shared across hosts.
        let (mode_sql, sync_sql) = match journal {
            filesystem::Journal::Wal => ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL;"),
            filesystem::Journal::Rollback => {
                ("PRAGMA journal_mode=DELETE", "PRAGMA synchronous=FULL;")
            }
        };
        // Switching a fresh file to WAL needs an exclusive lock, and SQLite answers BUSY at once
        // instead of calling the busy handler when another process holds it (two `repro run`s in
        // a Slurm array opening a new database together): retry for as long as a statement waits.
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let mode: std::result::Result<String, _> =
                self.conn.query_row(mode_sql, [], |r| r.get(0));
            match mode {
                Ok(_) => break,
                Err(e) if is_busy_error(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(source) => return Err(classify_open_error(&path, source)),
            }
        }
        self.conn
            .execute_batch(&format!("{sync_sql} PRAGMA foreign_keys=ON;"))
            .map_err(|source| classify_open_error(&path, source))?;
        // Every repro process is short-lived: checkpointing (and fsyncing) the WAL at each close
        // would cost more than the run's own writes. `Drop` truncates a WAL that has grown past
        // `WAL_TRUNCATE_BYTES`, so the next process does not pay to re-read it when it opens.
        let _ = self.conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        );
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        migrate::migrate(&mut self.conn, &self.path)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying connection (for the dataset hash cache and advanced queries).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    fn sql_err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
        sql_error(&self.path, what)
    }

    /// Inserts a complete run record (normally with status `running`) in one transaction.
    pub fn insert_run(&mut self, run: &Run) -> Result<()> {
        let path = self.path.clone();
        let err = |what: &'static str| sql_error(&path, what);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("begin"))?;
        let exists: Option<i64> = tx
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [&run.id], |r| r.get(0))
            .optional()
            .map_err(err("insert run"))?;
        if exists.is_some() {
            return Err(StoreError::Duplicate(run.id.clone()));
        }
        insert_rows(&tx, run).map_err(|(what, source)| sql_error(&path, what)(source))?;
        tx.commit().map_err(err("commit"))?;
        Ok(())
    }

    /// Resolves a full id or unique prefix to the full id.
    pub fn resolve_id(&self, prefix: &str) -> Result<String> {
        let p = prefix.trim().to_ascii_lowercase();
        if p.is_empty()
            || p.len() > 26
            || !p
                .chars()
                .all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"ilou".contains(c)))
        {
            return Err(StoreError::BadId(prefix.to_string()));
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM runs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT 11")
            .map_err(self.sql_err("resolve id"))?;
        let upper = format!("{p}\u{7f}");
        let ids: Vec<String> = stmt
            .query_map(params![p, upper], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("resolve id"))?;
        match ids.len() {
            0 => Err(StoreError::UnknownRun(prefix.to_string())),
            1 => Ok(ids.into_iter().next().expect("one id")),
            _ => {
                if let Some(exact) = ids.iter().find(|i| **i == p) {
                    return Ok(exact.clone());
                }
                Err(StoreError::AmbiguousRun {
                    prefix: prefix.to_string(),
                    candidates: ids,
                })
            }
        }
    }

    /// Loads one run by full id.
    pub fn get_run(&self, id: &str) -> Result<Run> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
            .map_err(self.sql_err("read run"))?;
        let run = stmt
            .query_row([id], run_from_row)
            .optional()
            .map_err(self.sql_err("read run"))?
            .ok_or_else(|| StoreError::UnknownRun(id.to_string()))?;
        let mut runs = vec![run];
        self.load_children(&mut runs)?;
        Ok(runs.pop().expect("one run"))
    }

    /// Lists runs matching a filter (newest first unless the filter says otherwise).
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let (sql, args) = filter.to_sql(RUN_COLUMNS);
        let mut stmt = self.conn.prepare(&sql).map_err(self.sql_err("list runs"))?;
        let mut runs: Vec<Run> = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.sql_err("list runs"))?;
        self.load_children(&mut runs)?;
        Ok(runs)
    }

    /// Fills datasets, outputs, env, params, tags and notes of loaded runs.
    fn load_children(&self, runs: &mut [Run]) -> Result<()> {
        for run in runs.iter_mut() {
            let id = run.id.clone();
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT name, kind, uri, version, digest, files, bytes FROM run_datasets WHERE run_id = ?1 ORDER BY pos",
                )
                .map_err(self.sql_err("read datasets"))?;
            run.datasets = st
                .query_map([&id], |r| {
                    let kind: String = r.get(1)?;
                    Ok(Dataset {
                        name: r.get(0)?,
                        kind: DatasetKind::parse(&kind).unwrap_or(DatasetKind::Label),
                        uri: r.get(2)?,
                        version: r.get(3)?,
                        digest: r.get(4)?,
                        files: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                        bytes: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("read datasets"))?;
            let mut st = self
                .conn
                .prepare_cached(
                    "SELECT path, sha256, bytes, kept, not_kept FROM run_outputs WHERE run_id = ?1 ORDER BY pos",
                )
                .map_err(self.sql_err("read outputs"))?;
            run.outputs = st
                .query_map([&id], |r| {
                    Ok(Output {
                        path: r.get(0)?,
                        sha256: r.get(1)?,
                        bytes: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                        kept: r.get(3)?,
                        not_kept: r.get(4)?,
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("read outputs"))?;
            run.env = self.kv(
                &id,
                "SELECT name, value FROM run_env WHERE run_id = ?1 ORDER BY name",
            )?;
            run.params = self.kv(
                &id,
                "SELECT key, value FROM run_params WHERE run_id = ?1 ORDER BY key",
            )?;
            run.params_from_argv = self
                .kv(
                    &id,
                    "SELECT key, '' FROM run_params WHERE run_id = ?1 AND from_argv ORDER BY key",
                )?
                .into_keys()
                .collect();
            run.params_from_job = self
                .kv(
                    &id,
                    "SELECT key, '' FROM run_params WHERE run_id = ?1 AND from_job ORDER BY key",
                )?
                .into_keys()
                .collect();
            let mut st = self
                .conn
                .prepare_cached("SELECT tag FROM run_tags WHERE run_id = ?1 ORDER BY tag")
                .map_err(self.sql_err("read tags"))?;
            run.tags = st
                .query_map([&id], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("read tags"))?;
            let mut st = self
                .conn
                .prepare_cached("SELECT text FROM run_notes WHERE run_id = ?1 ORDER BY pos")
                .map_err(self.sql_err("read notes"))?;
            run.notes = st
                .query_map([&id], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(self.sql_err("read notes"))?;
        }
        Ok(())
    }

    fn kv(&self, id: &str, sql: &str) -> Result<BTreeMap<String, String>> {
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(self.sql_err("read"))?;
        let rows = st
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.sql_err("read"))?;
        Ok(rows.into_iter().collect())
    }
}

/// The journal for the database at `path` under the network-filesystem policy
/// (`store::filesystem`): WAL on a local disk; on a network filesystem a rollback journal when
/// `REPRO_ALLOW_NETWORK_FS` allows it, else the refusal. A filesystem that cannot be examined
/// (permissions) counts as local: opening then fails with its own error if it must.
pub fn journal_for(path: &Path) -> Result<filesystem::Journal> {
    let Ok((_, fs)) = filesystem::probe(path) else {
        return Ok(filesystem::Journal::Wal);
    };
    let allow = filesystem::allowed(std::env::var(filesystem::ALLOW_ENV).ok().as_deref());
    Ok(filesystem::journal(path, &fs, allow)?)
}

/// Size of the WAL above which a closing store checkpoints and truncates it.
const WAL_TRUNCATE_BYTES: u64 = 1 << 20;

impl Drop for Store {
    fn drop(&mut self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let big = fs::metadata(&wal)
            .map(|m| m.len() > WAL_TRUNCATE_BYTES)
            .unwrap_or(false);
        if big {
            // Best effort and quick: never wait long for other readers here.
            let _ = self.conn.busy_timeout(Duration::from_millis(200));
            let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
        }
    }
}

/// The one mapper of SQLite errors met while using the database: names the database and the
/// step that failed, and tells a lock, a full disk and a read-only file apart from the rest so
/// the hint names the real cause.
pub(super) fn sql_error(path: &Path, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    move |source| {
        let (path, what) = (path.clone(), what.to_string());
        match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy { path, what, source }
            }
            Some(ErrorCode::DiskFull) => StoreError::Full { path, what, source },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path, what, source },
            _ => StoreError::Sql { path, what, source },
        }
    }
}

impl StoreError {
    /// Whether the error is another process holding the lock (worth waiting for).
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy { .. })
    }
}

/// A run's outcome, written by [`Store::finish`] / [`Store::finish_durably`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Finish {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub ended_at: String,
    pub duration_ms: i64,
    pub outputs: Vec<Output>,
    /// The files inside directory outputs (file outputs are recorded from `outputs`).
    #[serde(default)]
    pub output_files: Vec<OutputFile>,
}

/// Writes every row of a run (runs, datasets, outputs, env, annotations) inside `tx`; the error
/// says which part failed.
fn insert_rows(
    tx: &Connection,
    run: &Run,
) -> std::result::Result<(), (&'static str, rusqlite::Error)> {
    let at = |what: &'static str| move |e| (what, e);
    let argv = serde_json::to_string(&run.command).expect("argv serialises");
    let engine_args = serde_json::to_string(&run.exec.engine_args).expect("strings serialise");
    let img = run.image.as_ref();
    let code = run.code.as_ref();
    let sched = scheduler::columns(run.scheduler.as_ref());
    exec_cached(
            tx,
            "INSERT INTO runs (id, name, status, exit_code, signal, started_at, ended_at, duration_ms,
                argv, cwd, exec_mode, engine, workdir, engine_args, gpus,
                image_ref, image_digest, image_index_digest, image_platform, image_resolved_by, image_labels,
                code_repo_root, code_remote, code_commit, code_branch, code_dirty, code_untracked, code_patch, code_patch_sha256,
                host, user, platform, pid, pid_start, boot_id, rerun_of, pid_ns,
                scheduler, scheduler_job_id, scheduler_array_job_id, exec_registry)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41)",
            params![
                run.id,
                run.name,
                run.status.as_str(),
                run.exit_code,
                run.signal,
                run.started_at,
                run.ended_at,
                run.duration_ms,
                argv,
                run.cwd,
                run.exec.mode.as_str(),
                run.exec.engine,
                run.exec.workdir,
                engine_args,
                run.exec.gpus,
                img.map(|i| i.reference.clone()),
                img.and_then(|i| i.digest.clone()),
                img.and_then(|i| i.index_digest.clone()),
                img.and_then(|i| i.platform.clone()),
                img.map(|i| i.resolved_by.as_str()),
                img.map(|i| serde_json::to_string(&i.labels).expect("labels serialise")),
                code.map(|c| c.repo_root.clone()),
                code.and_then(|c| c.remote.clone()),
                code.and_then(|c| c.commit.clone()),
                code.and_then(|c| c.branch.clone()),
                code.map(|c| c.dirty),
                code.map(|c| serde_json::to_string(&c.untracked).expect("strings serialise")),
                code.and_then(|c| c.patch.as_ref().map(|p| p.0.clone())),
                code.and_then(|c| c.patch_sha256.clone()),
                run.host,
                run.user,
                run.platform,
                run.pid,
                run.pid_start,
                run.boot_id,
                run.rerun_of,
                run.pid_ns.map(|n| n as i64),
                sched.0,
                sched.1,
                sched.2,
                run.exec
                    .registry
                    .as_ref()
                    .map(|a| serde_json::to_string(a).expect("registry access serialises")),
            ],
        )
        .map_err(at("insert run"))?;
    for (pos, d) in run.datasets.iter().enumerate() {
        exec_cached(
            tx,
            "INSERT INTO run_datasets (run_id, pos, name, kind, uri, version, digest, files, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run.id,
                pos as i64,
                d.name,
                d.kind.as_str(),
                d.uri,
                d.version,
                d.digest,
                d.files.map(|v| v as i64),
                d.bytes.map(|v| v as i64)
            ],
        )
        .map_err(at("insert dataset"))?;
    }
    insert_outputs(tx, &run.id, &run.outputs).map_err(at("insert output"))?;
    for (k, v) in &run.env {
        exec_cached(
            tx,
            "INSERT INTO run_env (run_id, name, value) VALUES (?1, ?2, ?3)",
            params![run.id, k, v],
        )
        .map_err(at("insert env"))?;
    }
    for (k, v) in &run.params {
        exec_cached(
            tx,
            "INSERT INTO run_params (run_id, key, value, from_argv, from_job) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.id, k, v, run.params_from_argv.contains(k), run.params_from_job.contains(k)],
        )
        .map_err(at("insert param"))?;
    }
    for t in &run.tags {
        exec_cached(
            tx,
            "INSERT OR IGNORE INTO run_tags (run_id, tag) VALUES (?1, ?2)",
            params![run.id, t],
        )
        .map_err(at("insert tag"))?;
    }
    for (pos, n) in run.notes.iter().enumerate() {
        exec_cached(
            tx,
            "INSERT INTO run_notes (run_id, pos, text) VALUES (?1, ?2, ?3)",
            params![run.id, pos as i64, n],
        )
        .map_err(at("insert note"))?;
    }
    Ok(())
}

/// Executes through the statement cache: bulk imports insert the same few statements many times.
fn exec_cached(tx: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(p)
}

fn insert_outputs(tx: &Connection, id: &str, outputs: &[Output]) -> rusqlite::Result<()> {
    for (pos, o) in outputs.iter().enumerate() {
        exec_cached(
            tx,
            "INSERT OR REPLACE INTO run_outputs (run_id, pos, path, sha256, bytes, kept, not_kept)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                pos as i64,
                o.path,
                o.sha256,
                o.bytes.map(|b| b as i64),
                o.kept,
                o.not_kept
            ],
        )?;
        // A file output is its own one file; a directory's files come with the finish.
        if let (Some(sha), Some(bytes)) = (&o.sha256, o.bytes) {
            if !sha.starts_with("sha256:") {
                insert_output_file(
                    tx,
                    id,
                    &OutputFile {
                        pos: pos as u32,
                        rel: Vec::new(),
                        sha256: sha.clone(),
                        bytes,
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// Records one file of a run's output (see [`OutputFile`]).
fn insert_output_file(tx: &Connection, id: &str, f: &OutputFile) -> rusqlite::Result<()> {
    exec_cached(
        tx,
        "INSERT OR REPLACE INTO output_files (run_id, pos, rel, sha256, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, f.pos as i64, f.rel, f.sha256, f.bytes as i64],
    )?;
    Ok(())
}

/// Records the files inside a run's directory outputs.
fn insert_output_files(tx: &Connection, id: &str, files: &[OutputFile]) -> rusqlite::Result<()> {
    for f in files {
        insert_output_file(tx, id, f)?;
    }
    Ok(())
}

fn is_busy_error(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn classify_open_error(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            StoreError::NotADatabase {
                path: path.into(),
                source,
            }
        }
        _ => StoreError::Open {
            path: path.into(),
            source,
        },
    }
}

/// Columns of `runs` that `run_from_row` reads (by name, so their order is free).
pub const RUN_COLUMNS: &str = "id, name, status, exit_code, signal, started_at, ended_at, duration_ms, argv, cwd, \
    exec_mode, engine, workdir, engine_args, gpus, image_ref, image_digest, image_index_digest, image_platform, \
    image_resolved_by, image_labels, code_repo_root, code_remote, code_commit, code_branch, code_dirty, \
    code_untracked, code_patch, code_patch_sha256, host, user, platform, pid, boot_id, rerun_of, pid_start, pid_ns, \
    scheduler, exec_registry";

fn json_col<T: serde::de::DeserializeOwned + Default>(r: &Row, col: &str) -> rusqlite::Result<T> {
    let text: Option<String> = r.get(col)?;
    match text {
        None => Ok(T::default()),
        Some(t) => serde_json::from_str(&t).map_err(|e| {
            let i = r.as_ref().column_index(col).unwrap_or(0);
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

fn image_from_row(r: &Row) -> rusqlite::Result<Option<Image>> {
    let Some(reference) = r.get::<_, Option<String>>("image_ref")? else {
        return Ok(None);
    };
    let by: Option<String> = r.get("image_resolved_by")?;
    Ok(Some(Image {
        reference,
        digest: r.get("image_digest")?,
        index_digest: r.get("image_index_digest")?,
        platform: r.get("image_platform")?,
        resolved_by: by
            .as_deref()
            .and_then(ResolvedBy::parse)
            .unwrap_or(ResolvedBy::Unpinned),
        labels: json_col(r, "image_labels")?,
    }))
}

fn code_from_row(r: &Row) -> rusqlite::Result<Option<Code>> {
    let Some(repo_root) = r.get::<_, Option<String>>("code_repo_root")? else {
        return Ok(None);
    };
    Ok(Some(Code {
        repo_root,
        remote: r.get("code_remote")?,
        commit: r.get("code_commit")?,
        branch: r.get("code_branch")?,
        dirty: r.get::<_, Option<bool>>("code_dirty")?.unwrap_or(false),
        untracked: json_col(r, "code_untracked")?,
        patch: r.get::<_, Option<Vec<u8>>>("code_patch")?.map(Arg),
        patch_sha256: r.get("code_patch_sha256")?,
    }))
}

/// Builds a run (without its child rows) from a row selected with `RUN_COLUMNS`, and decides
/// whether a `running` row is `lost` (see `liveness`).
fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    let status: String = r.get("status")?;
    let mode: String = r.get("exec_mode")?;
    let mut run = Run {
        schema_version: SCHEMA_VERSION,
        id: r.get("id")?,
        name: r.get("name")?,
        status: Status::parse(&status).unwrap_or(Status::Lost),
        exit_code: r.get("exit_code")?,
        signal: r.get("signal")?,
        started_at: r.get("started_at")?,
        ended_at: r.get("ended_at")?,
        duration_ms: r.get("duration_ms")?,
        command: json_col(r, "argv")?,
        cwd: r.get("cwd")?,
        exec: Exec {
            mode: if mode == "container" {
                ExecMode::Container
            } else {
                ExecMode::Host
            },
            engine: r.get("engine")?,
            workdir: r.get("workdir")?,
            engine_args: json_col(r, "engine_args")?,
            gpus: r.get("gpus")?,
            registry: json_col(r, "exec_registry")?,
        },
        image: image_from_row(r)?,
        code: code_from_row(r)?,
        datasets: Vec::new(),
        outputs: Vec::new(),
        params_from_argv: Vec::new(),
        params_from_job: Vec::new(),
        params: BTreeMap::new(),
        tags: Vec::new(),
        notes: Vec::new(),
        env: BTreeMap::new(),
        host: r.get("host")?,
        user: r.get("user")?,
        platform: r.get("platform")?,
        pid: r.get("pid")?,
        boot_id: r.get("boot_id")?,
        rerun_of: r.get("rerun_of")?,
        pid_start: r.get("pid_start")?,
        pid_ns: r.get::<_, Option<i64>>("pid_ns")?.map(|n| n as u64),
        scheduler: scheduler::from_row(r)?,
    };
    liveness::apply(&mut run);
    Ok(run)
}

/// Sets a file's permission bits (used for the database and its WAL side files).
pub fn chmod(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(test)]
pub(crate) mod tests;
