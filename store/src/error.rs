use thiserror::Error;
use tokio_postgres::error::SqlState;

/// Everything the store can fail with. Messages name the failing thing and,
/// where the user can fix it, how.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The server could not be reached at all.
    #[error("cannot reach the database at {target}: {reason}; is the server running, and is database.url (DATABASE_URL) right?")]
    Unreachable {
        /// host:port/dbname, password redacted
        target: String,
        /// what the socket said
        reason: String,
    },
    /// The server refused our credentials.
    #[error("the database at {target} rejected user {user:?}: {reason}; check the user and password in database.url (DATABASE_URL)")]
    AuthFailed {
        /// host:port/dbname
        target: String,
        /// the role we tried
        user: String,
        /// server message
        reason: String,
    },
    /// The named database does not exist.
    #[error("database {dbname:?} does not exist at {target}; create it (createdb {dbname}) or fix database.url (DATABASE_URL)")]
    NoSuchDatabase {
        /// host:port
        target: String,
        /// the missing database
        dbname: String,
    },
    /// The TLS handshake with the server failed or was refused: a
    /// connection failure, with what to change in `database.url`.
    #[error("database TLS: {0}")]
    Tls(String),
    /// `database.url` is not a valid PostgreSQL connection string.
    #[error("database.url is not a valid PostgreSQL URL or key=value string: {0}")]
    BadUrl(String),
    /// A required extension could not be created.
    #[error("cannot create extension {extension} in database {dbname:?}: {reason}; {hint}")]
    Extension {
        /// extension name
        extension: String,
        /// database
        dbname: String,
        /// server message
        reason: String,
        /// how to fix it
        hint: String,
    },
    /// A migration statement failed.
    #[error("migration {file} failed at statement {statement} (line {line}: {snippet}): {reason}")]
    Migration {
        /// file name in migrations/
        file: String,
        /// 1-based statement number in the file
        statement: usize,
        /// 1-based line where the statement starts
        line: usize,
        /// first line of the statement
        snippet: String,
        /// server message (with detail/hint)
        reason: String,
    },
    /// An applied migration's file changed afterwards.
    #[error("migration {file} was applied with checksum {applied} but the file now has {current}; never edit an applied migration, add a new one")]
    MigrationChanged {
        /// file name
        file: String,
        /// checksum in the database
        applied: String,
        /// checksum of the embedded file
        current: String,
    },
    /// The database holds migrations newer than this binary knows.
    #[error("the database has migration {version} applied, newer than this gpuwatch knows (latest {latest}); upgrade gpuwatch")]
    MigrationFromFuture {
        /// newest version in the database
        version: i32,
        /// newest version embedded here
        latest: i32,
    },
    /// The server is too old or lacks what the chosen backend needs.
    #[error("unsupported database server: {0}")]
    Unsupported(String),
    /// Writing a batch failed.
    #[error("copy into {table} failed: {source}")]
    Copy {
        /// target table
        table: &'static str,
        /// underlying error
        #[source]
        source: tokio_postgres::Error,
    },
    /// Any other query failed.
    #[error("{what} failed: {source}")]
    Query {
        /// what we were doing
        what: String,
        /// underlying error
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection could be taken from the pool.
    #[error("no database connection available: {0}")]
    Pool(String),
    /// The server refused a write because it is read-only (SQLSTATE 25006):
    /// a standby, or a primary being demoted or promoted. Temporary: the
    /// connection is evicted from the pool and the next try reconnects.
    #[error("{what} failed: the database server is read-only ({reason}); it is a standby or a failover is under way, and the next try reconnects to the primary (database.url should list every node with target_session_attrs=read-write)")]
    ReadOnly {
        /// what we were doing
        what: String,
        /// server message
        reason: String,
    },
    /// The caller sent something the schema forbids; each problem names its
    /// field by JSON path. Nothing was written.
    #[error("{} problem(s) in the batch; nothing was stored: {}", problems.len(), problems.join("; "))]
    Rejected {
        /// One line per problem, `path: what is wrong`.
        problems: Vec<String>,
    },
    /// The request contradicts what is stored (a GPU UUID that belongs to
    /// another host). Nothing was written.
    #[error("{0}")]
    Conflict(String),
}

/// Whose fault an error is, which decides the answer and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The caller's input is wrong (4xx): fix it, do not retry it.
    Invalid,
    /// The input contradicts stored state (409): resolve it, do not retry it.
    Conflict,
    /// The database is unreachable, overloaded, read-only or failing over
    /// (503): the same call may succeed later.
    Temporary,
    /// Anything else is a bug of gpuwatch (500).
    Internal,
}

impl StoreError {
    /// The class of this error. A server error is classed by its SQLSTATE:
    /// data exceptions (22) and integrity violations (23) are the caller's
    /// (a unique or exclusion violation is a conflict), connection, resource
    /// and failover states (08, 53, 57P0x, 40001/40P01, 25006) are
    /// temporary. Connection set-up failures are temporary for the caller:
    /// the server is what is unavailable, not their request.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Rejected { .. } => ErrorClass::Invalid,
            StoreError::Conflict(_) => ErrorClass::Conflict,
            StoreError::Unreachable { .. }
            | StoreError::AuthFailed { .. }
            | StoreError::NoSuchDatabase { .. }
            | StoreError::Tls(_)
            | StoreError::Pool(_)
            | StoreError::ReadOnly { .. } => ErrorClass::Temporary,
            StoreError::Copy { source, .. } | StoreError::Query { source, .. } => {
                sqlstate_class(source)
            }
            _ => ErrorClass::Internal,
        }
    }

    /// For an input the database refused: the constraint or column it
    /// names and the server's message, for an answer that tells the caller
    /// what to change.
    pub fn input_problem(&self) -> Option<String> {
        let (StoreError::Copy { source, .. } | StoreError::Query { source, .. }) = self else {
            return None;
        };
        let db = source.as_db_error()?;
        let mut s = db.message().to_string();
        if let Some(c) = db.constraint() {
            s.push_str(&format!(" (constraint {c})"));
        } else if let Some(c) = db.column() {
            s.push_str(&format!(" (column {c})"));
        }
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        Some(s)
    }

    /// Wraps a query error with what we were doing. A read-only refusal
    /// becomes [`StoreError::ReadOnly`] and marks the pool's connections
    /// for eviction ([`crate::pool`]).
    pub fn query(what: impl Into<String>, source: tokio_postgres::Error) -> Self {
        if is_read_only(&source) {
            return StoreError::ReadOnly {
                what: what.into(),
                reason: db_message(&source),
            };
        }
        StoreError::Query {
            what: what.into(),
            source,
        }
    }

    /// Wraps an error of a COPY into `table`, as [`StoreError::query`] does.
    pub fn copy(table: &'static str, source: tokio_postgres::Error) -> Self {
        if is_read_only(&source) {
            return StoreError::ReadOnly {
                what: format!("copy into {table}"),
                reason: db_message(&source),
            };
        }
        StoreError::Copy { table, source }
    }

    /// True when the same call may succeed later without any change by the
    /// caller: the server is down, restarting, read-only or failing over.
    /// A retrying client retries these and only these.
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::Pool(_) | StoreError::ReadOnly { .. } => {
                true
            }
            StoreError::Copy { source, .. } | StoreError::Query { source, .. } => {
                temporary_sqlstate(source)
            }
            _ => false,
        }
    }
}

fn sqlstate_class(e: &tokio_postgres::Error) -> ErrorClass {
    if temporary_sqlstate(e) {
        return ErrorClass::Temporary;
    }
    match e.code().map(SqlState::code) {
        Some("23505" | "23P01") => ErrorClass::Conflict,
        Some(c) if c.starts_with("22") || c.starts_with("23") => ErrorClass::Invalid,
        _ => ErrorClass::Internal,
    }
}

/// SQLSTATE 25006, read_only_sql_transaction. Seeing one records the moment,
/// so the pool drops every connection that was in use then.
fn is_read_only(e: &tokio_postgres::Error) -> bool {
    let ro = e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION);
    if ro {
        crate::pool::note_read_only();
    }
    ro
}

/// Errors of the connection or of the server's state, never of the input:
/// class 08 (connection), 53 (insufficient resources: disk full, too many
/// connections), 57P01-57P03 (shutdown, cannot connect now), 25006
/// (read-only), 40001/40P01 (serialization, deadlock), and a closed or
/// failed socket. An error without SQLSTATE that is neither (a value that
/// does not convert) is a bug, not temporary.
fn temporary_sqlstate(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
        Some(c) => {
            let c = c.code();
            c.starts_with("08")
                || c.starts_with("53")
                || matches!(c, "57P01" | "57P02" | "57P03" | "25006" | "40001" | "40P01")
        }
    }
}

/// Renders a server error with its detail and hint, which tokio-postgres'
/// Display leaves out and which usually say what to do.
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(&format!(": {inner}"));
                src = inner.source();
            }
            s
        }
    }
}
