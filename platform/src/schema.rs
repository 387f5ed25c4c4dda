//! The database schema at start-up: apply the embedded migrations (`DATABASE_MIGRATE=true`, the
//! default) or only check that they have been applied (`false`, production, where a Job runs
//! `<service> migrate` with DDL rights before the rollout and the servers hold DML rights only).
//!
//! Both ways tolerate migrations the binary does not know: after a release adds one, the
//! previous release must still start (`kubectl rollout undo`, an old pod restarting), so a
//! newer applied migration is logged, never refused. What refuses to start is a migration this
//! binary needs that is not applied, or one applied with different SQL (a checksum mismatch),
//! or one that failed part-way.

use std::collections::HashMap;

use sqlx::AnyPool;
use sqlx::migrate::{AppliedMigration, Migrate as _, MigrateError, Migration, Migrator};

/// What to do with the schema at start-up (`DATABASE_MIGRATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode {
    /// Apply the pending migrations (under sqlx's migration lock), then start.
    Migrate,
    /// Apply nothing; refuse to start unless every embedded migration is applied.
    Check,
}

impl SchemaMode {
    /// `DATABASE_MIGRATE`'s value as a mode.
    pub fn from_flag(migrate: bool) -> Self {
        if migrate { Self::Migrate } else { Self::Check }
    }
}

/// How the applied migrations compare with the ones a binary embeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Embedded migrations not applied yet: `(version, description)`, oldest first.
    pub pending: Vec<(i64, String)>,
    /// Embedded migrations applied with a different checksum (their SQL was changed).
    pub changed: Vec<i64>,
    /// Applied migrations this binary does not know, oldest first: a newer release applied
    /// them (this one is a rollback), harmless as long as they only added to the schema.
    pub unknown: Vec<i64>,
    /// Embedded migrations applied as they are.
    pub applied: usize,
}

impl SchemaStatus {
    /// Compares the `applied` rows of `_sqlx_migrations` with the `known` migrations (down
    /// migrations are ignored: they are never applied forward).
    pub fn compare<'a>(
        known: impl IntoIterator<Item = &'a Migration>,
        applied: &[AppliedMigration],
    ) -> Self {
        let applied_by_version: HashMap<i64, &AppliedMigration> =
            applied.iter().map(|m| (m.version, m)).collect();
        let mut status = Self::default();
        let mut up: Vec<&Migration> = known
            .into_iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .collect();
        up.sort_by_key(|m| m.version);
        for migration in &up {
            match applied_by_version.get(&migration.version) {
                Some(row) if row.checksum == migration.checksum => status.applied += 1,
                Some(_) => status.changed.push(migration.version),
                None => status
                    .pending
                    .push((migration.version, migration.description.to_string())),
            }
        }
        let mut unknown: Vec<i64> = applied
            .iter()
            .map(|m| m.version)
            .filter(|version| !up.iter().any(|m| m.version == *version))
            .collect();
        unknown.sort_unstable();
        status.unknown = unknown;
        status
    }
}

/// Why a service may not start on this database.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[source] MigrateError),
    #[error("cannot read the applied migrations from _sqlx_migrations: {0}")]
    Read(#[source] MigrateError),
    #[error(
        "the database has no schema (no _sqlx_migrations table) and DATABASE_MIGRATE=false: \
         run `{command}` first"
    )]
    NotMigrated { command: String },
    #[error(
        "migration {version} ({description}) is not applied{more} and DATABASE_MIGRATE=false: \
         run `{command}` with this release first"
    )]
    Pending {
        version: i64,
        description: String,
        /// ` (and N more)` when several are missing.
        more: String,
        command: String,
    },
    #[error(
        "migration {0} was applied with different SQL than this release embeds (checksum \
         mismatch): a migration file was edited after it shipped"
    )]
    Changed(i64),
    #[error(
        "migration {0} failed part-way (dirty in _sqlx_migrations): repair the schema and that \
         row by hand, then run the migrate command again"
    )]
    Dirty(i64),
}

/// Brings the schema of `pool` to what `migrator` embeds, or checks that it is there, as `mode`
/// says; `command` is how an operator applies them (`orders-service migrate`), for the error.
///
/// `migrator` must tolerate newer migrations ([`Migrator::set_ignore_missing`]) for a rollback
/// to start; [`apply`] and the check both log what this binary does not know.
pub async fn prepare(
    pool: &AnyPool,
    migrator: &Migrator,
    mode: SchemaMode,
    command: &str,
) -> Result<SchemaStatus, SchemaError> {
    match mode {
        SchemaMode::Migrate => apply(pool, migrator).await,
        SchemaMode::Check => {
            let status = check(pool, migrator, command).await?;
            tracing::info!(
                migrations = status.applied,
                "database schema is up to date; not migrating (DATABASE_MIGRATE=false)"
            );
            Ok(status)
        }
    }
}

/// Applies the pending migrations of `migrator` (what the `migrate` command does), and reports
/// the applied migrations it does not know.
pub async fn apply(pool: &AnyPool, migrator: &Migrator) -> Result<SchemaStatus, SchemaError> {
    migrator.run(pool).await.map_err(SchemaError::Migrate)?;
    let status = SchemaStatus::compare(migrator.iter(), &read(pool).await?);
    log_unknown(&status);
    Ok(status)
}

/// Checks, without changing anything, that every migration of `migrator` is applied as it is.
/// Needs only `SELECT` on `_sqlx_migrations`.
pub async fn check(
    pool: &AnyPool,
    migrator: &Migrator,
    command: &str,
) -> Result<SchemaStatus, SchemaError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| SchemaError::Read(MigrateError::Execute(e)))?;
    let dirty = match conn.dirty_version().await {
        Ok(dirty) => dirty,
        Err(error) if is_missing_table(&error) => {
            return Err(SchemaError::NotMigrated {
                command: command.to_owned(),
            });
        }
        Err(error) => return Err(SchemaError::Read(error)),
    };
    if let Some(version) = dirty {
        return Err(SchemaError::Dirty(version));
    }
    let applied = conn
        .list_applied_migrations()
        .await
        .map_err(SchemaError::Read)?;
    drop(conn);
    let status = SchemaStatus::compare(migrator.iter(), &applied);
    if let Some(version) = status.changed.first() {
        return Err(SchemaError::Changed(*version));
    }
    if let Some((version, description)) = status.pending.first() {
        let more = match status.pending.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(SchemaError::Pending {
            version: *version,
            description: description.clone(),
            more,
            command: command.to_owned(),
        });
    }
    log_unknown(&status);
    Ok(status)
}

async fn read(pool: &AnyPool) -> Result<Vec<AppliedMigration>, SchemaError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| SchemaError::Read(MigrateError::Execute(e)))?;
    conn.list_applied_migrations()
        .await
        .map_err(SchemaError::Read)
}

fn log_unknown(status: &SchemaStatus) {
    if !status.unknown.is_empty() {
        tracing::warn!(
            versions = ?status.unknown,
            "the database has migrations this release does not know (a newer release applied \
             them; this one is a rollback): starting anyway"
        );
    }
}

/// Whether `error` says `_sqlx_migrations` does not exist (PostgreSQL `42P01`, SQLite "no such
/// table"), as opposed to a connection or permission failure.
fn is_missing_table(error: &MigrateError) -> bool {
    let MigrateError::Execute(sqlx::Error::Database(db)) = error else {
        return false;
    };
    db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::migrate::MigrationType;

    use super::*;

    fn migration(version: i64, sql: &'static str) -> Migration {
        Migration::new(
            version,
            Cow::Owned(format!("step {version}")),
            MigrationType::Simple,
            Cow::Borrowed(sql),
            false,
        )
    }

    fn applied(migration: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: migration.version,
            checksum: migration.checksum.clone(),
        }
    }

    #[test]
    fn a_database_at_this_release_is_up_to_date() {
        let known = [migration(1, "a"), migration(2, "b")];
        let status = SchemaStatus::compare(&known, &[applied(&known[0]), applied(&known[1])]);
        assert_eq!(
            status,
            SchemaStatus {
                applied: 2,
                ..SchemaStatus::default()
            }
        );
    }

    #[test]
    fn a_newer_release_s_migration_is_unknown_not_missing() {
        let known = [migration(1, "a"), migration(2, "b")];
        let newer = migration(3, "c");
        let status = SchemaStatus::compare(
            &known,
            &[applied(&known[0]), applied(&known[1]), applied(&newer)],
        );
        assert_eq!(status.unknown, [3]);
        assert!(status.pending.is_empty() && status.changed.is_empty());
        assert_eq!(status.applied, 2);
    }

    #[test]
    fn an_unapplied_migration_is_pending_and_an_edited_one_changed() {
        let known = [migration(1, "a"), migration(2, "b"), migration(3, "c")];
        let edited = AppliedMigration {
            version: 2,
            checksum: migration(2, "b, edited").checksum,
        };
        let status = SchemaStatus::compare(&known, &[applied(&known[0]), edited]);
        assert_eq!(status.pending, [(3, "step 3".to_owned())]);
        assert_eq!(status.changed, [2]);
        assert_eq!(status.applied, 1);
    }

    #[test]
    fn down_migrations_are_never_pending() {
        let down = Migration::new(
            2,
            Cow::Borrowed("undo"),
            MigrationType::ReversibleDown,
            Cow::Borrowed("drop"),
            false,
        );
        let known = [migration(1, "a"), down];
        let status = SchemaStatus::compare(&known, &[applied(&known[0])]);
        assert!(status.pending.is_empty(), "{status:?}");
    }

    #[test]
    fn the_pending_error_names_the_version_and_the_command() {
        let error = SchemaError::Pending {
            version: 20250601000002,
            description: "authorization codes".into(),
            more: " (and 1 more)".into(),
            command: "auth-service migrate".into(),
        };
        let message = error.to_string();
        assert!(message.contains("20250601000002"), "{message}");
        assert!(message.contains("run `auth-service migrate`"), "{message}");
        assert!(message.contains("DATABASE_MIGRATE=false"), "{message}");
    }
}
