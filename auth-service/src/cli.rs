//! The command line: `serve` (the default), `migrate`, and the operator commands `user add`,
//! `user list`, `user update`, `user disable`, `user enable`, `client add`,
//! `keys list|rotate|revoke` and `sessions stats`. The commands open (and if need be create and
//! migrate) the same database and key store as the server, so they work on a fresh data
//! directory and next to running servers, which pick up key changes at their next reload
//! (`AUTH_KEY_RELOAD_INTERVAL`) or, for a revocation, from the revocation feed at once.
//!
//! `migrate` applies the database migrations to `DATABASE_URL` and exits, touching nothing else
//! (no signing keys, no Redis): for a Kubernetes Job run before a rollout, whatever
//! `DATABASE_MIGRATE` says. The server and the other commands apply them at start as well
//! unless `DATABASE_MIGRATE=false`, under sqlx's migration lock, so running both is safe; with
//! `false` they only check that every migration of this release is applied.

use std::io::{Read, Write};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::zeroize::Zeroize as _;

use crate::accounts;
use crate::app::{self, App};
use crate::clients::{self, Registration};
use crate::config::Config;
use crate::db;
use crate::keys::{KeyListing, KeyManager, KeySettings, KeyState, KeyStoreError, Outcome};
use crate::passwords::{ExposeSecret as _, Passwords, SecretString};
use crate::scope::{self, ScopeSet};
use crate::users::{self, NewUser};

/// Longest password read from standard input, in bytes.
const MAX_STDIN_PASSWORD: u64 = 4096;

#[derive(Debug, Parser)]
#[command(
    name = "auth-service",
    version,
    about = "The token issuer: users, sessions, signing keys, JWKS."
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and gRPC (the default when no command is given).
    Serve,
    /// Apply the database migrations to `DATABASE_URL` and exit.
    Migrate,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage clients (service clients, and clients of the authorization code flow).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Manage the signing keys (docs/KEYS.md).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Inspect the sessions.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Count the active sessions and users, by client and by the UTC day they began (the last
    /// 7), store-wide: the same numbers as `GET /v1/admin/sessions/stats`.
    Stats {
        /// Print the JSON of `GET /v1/admin/sessions/stats` instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys, their states and when they change.
    List,
    /// Start a rotation: a new key is published now and signs after the pre-publication window.
    Rotate {
        /// Sign with the new key at once. Verifiers that have not refetched the JWKS refuse its
        /// tokens until they do (an unknown kid makes them refetch, at most once per their
        /// minimum refetch interval).
        #[arg(long)]
        immediate: bool,
        /// The new key's algorithm: RS256, ES256 or EdDSA. Default: AUTH_SIGNING_ALG.
        #[arg(long)]
        alg: Option<authn::jwk::Algorithm>,
    },
    /// Revoke a key at once (a leaked key): withdrawn from the JWKS and pushed to hybrid
    /// verifiers. The active key is first replaced by an immediate rotation.
    Revoke {
        /// The key id, as `keys list` shows it (base64url: it may begin with `-`).
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add(UserAdd),
    /// Disable a user: refuse its logins and refreshes and end all its sessions (pushed to
    /// `hybrid` verifiers like any revocation).
    Disable(UserName),
    /// Enable a disabled user again. Its old sessions stay ended.
    Enable(UserName),
    /// List the users: id, username, state, roles and scopes.
    List,
    /// Replace a user's roles and/or scopes. Its older tokens are then refused as stale (by
    /// `stateful` verifiers at once, `hybrid` ones when the push arrives); its sessions stay, and
    /// a refresh gets a token with the new claims.
    Update(UserUpdate),
}

#[derive(Debug, Args)]
pub struct UserUpdate {
    #[arg(long)]
    pub username: String,
    /// Roles, separated by commas or spaces (`admin,user`); an empty string removes them all.
    #[arg(long)]
    pub roles: Option<String>,
    /// Scopes, separated by spaces (`"orders:read orders:write"`); an empty string removes them.
    #[arg(long)]
    pub scopes: Option<String>,
}

#[derive(Debug, Args)]
pub struct UserName {
    #[arg(long)]
    pub username: String,
}

#[derive(Debug, Args)]
pub struct UserAdd {
    /// 1-64 characters of `[A-Za-z0-9._@-]`.
    #[arg(long)]
    pub username: String,
    /// Roles, separated by commas or spaces (`admin,user`).
    #[arg(long, default_value = "user")]
    pub roles: String,
    /// Scopes, separated by spaces (`"orders:read orders:write"`).
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Read the password from standard input (one trailing newline is removed). Required:
    /// passwords on the command line leak into shell history and the process list.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client. A confidential client's generated secret is printed once, alone on
    /// the last line of standard output; a public client (`--public`) gets none.
    Add(ClientAdd),
}

#[derive(Debug, Args)]
pub struct ClientAdd {
    /// 1-64 characters of `[A-Za-z0-9._@-]`.
    #[arg(long)]
    pub id: String,
    /// Scopes, separated by spaces.
    #[arg(long, default_value = "")]
    pub scopes: String,
    /// Roles, separated by commas or spaces.
    #[arg(long, default_value = "")]
    pub roles: String,
    /// A redirect URI of the authorization code flow (repeatable), matched as an exact string:
    /// absolute, https (or http://localhost, http://127.0.0.1), no fragment.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back (repeatable), same rules.
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (a browser or native app): no secret, PKCE required. Needs at least one
    /// `--redirect-uri`.
    #[arg(long)]
    pub public: bool,
}

/// Runs the parsed command line. `stdin` and `stdout` are the operator's terminal (tests pass
/// buffers); logs go to stderr through `tracing`.
pub async fn run(
    cli: Cli,
    stdin: impl Read + Send + 'static,
    stdout: &mut (impl Write + Send),
) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(&cli.config, stdout).await,
        Command::User {
            command: UserCommand::Add(add),
        } => user_add(&cli.config, add, stdin, stdout).await,
        Command::User {
            command: UserCommand::Disable(user),
        } => user_disable(&cli.config, &user.username, stdout).await,
        Command::User {
            command: UserCommand::Enable(user),
        } => user_enable(&cli.config, &user.username, stdout).await,
        Command::User {
            command: UserCommand::List,
        } => user_list(&cli.config, stdout).await,
        Command::User {
            command: UserCommand::Update(update),
        } => user_update(&cli.config, update, stdout).await,
        Command::Client {
            command: ClientCommand::Add(add),
        } => client_add(&cli.config, add, stdout).await,
        Command::Keys { command } => keys_command(&cli.config, command, stdout).await,
        Command::Sessions {
            command: SessionsCommand::Stats { json },
        } => sessions_stats(&cli.config, json, stdout).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    tracing::info!(
        http = %app.http_addr(),
        grpc = %app.grpc_addr(),
        metrics = %app.metrics_addr(),
        kid = %app.kid(),
        "auth-service listening"
    );
    app.run(platform::shutdown::signal()).await?;
    tracing::info!("auth-service stopped");
    Ok(())
}

async fn migrate(config: &Config, stdout: &mut impl Write) -> anyhow::Result<()> {
    let pool =
        db::connect_and_migrate(&config.database_url, config.database_max_connections).await?;
    pool.close().await;
    let migrations = db::MIGRATOR.iter().count();
    tracing::info!(migrations, "database schema is up to date");
    writeln!(
        stdout,
        "database schema is up to date ({migrations} migrations)"
    )?;
    Ok(())
}

async fn user_add(
    config: &Config,
    add: UserAdd,
    stdin: impl Read + Send + 'static,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    if !add.password_stdin {
        bail!("pass the password on standard input with --password-stdin");
    }
    users::validate_username(&add.username)?;
    let roles = scope::parse_roles(&add.roles)?;
    let scopes = ScopeSet::parse(&add.scopes)?;
    let password = read_password(stdin).await?;
    let pool = db::open(config).await?;
    let passwords = Passwords::new().await?;
    let user = users::create(
        &pool,
        &passwords,
        NewUser {
            username: add.username,
            password,
            roles,
            scopes,
        },
    )
    .await?;
    writeln!(
        stdout,
        "created user {} (id {}) with roles [{}] and scopes [{}]",
        user.username,
        user.id,
        scope::roles_to_string(&user.roles),
        user.scopes
    )?;
    pool.close().await;
    Ok(())
}

async fn find_user(pool: &sqlx::AnyPool, username: &str) -> anyhow::Result<users::User> {
    users::validate_username(username)?;
    users::find_by_username(pool, username)
        .await?
        .with_context(|| format!("no user named {username:?}"))
}

async fn user_disable(
    config: &Config,
    username: &str,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let pool = db::open(config).await?;
    let user = find_user(&pool, username).await?;
    // The same store and feed as the server: sessions end where they live, and the server's
    // watchers get the events (through Redis at once, or at the server's next poll of the table).
    let (sessions, log) = app::session_backend(&pool, config).await?;
    let disabled = accounts::disable_user(&pool, sessions.as_ref(), &log, &user.id)
        .await?
        .with_context(|| format!("user {username:?} vanished"))?;
    writeln!(
        stdout,
        "disabled user {} (id {}){}; {} session(s) ended",
        user.username,
        user.id,
        if disabled.newly {
            ""
        } else {
            ", already disabled"
        },
        disabled.ended_sessions.len()
    )?;
    pool.close().await;
    Ok(())
}

async fn sessions_stats(
    config: &Config,
    json: bool,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let pool = db::open(config).await?;
    // The server's store: Redis when `REDIS_URL` is set, the database otherwise.
    let (sessions, _log) = app::session_backend(&pool, config).await?;
    let stats = sessions.stats(db::now()).await?;
    pool.close().await;
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&stats)?)?;
    } else {
        print_session_stats(stdout, &stats)?;
    }
    Ok(())
}

fn print_session_stats(
    stdout: &mut impl Write,
    stats: &crate::sessions::SessionStats,
) -> anyhow::Result<()> {
    writeln!(stdout, "at {}", time(Some(stats.at)))?;
    writeln!(stdout, "active sessions  {}", stats.active_sessions)?;
    writeln!(stdout, "active users     {}", stats.active_users)?;
    writeln!(stdout)?;
    writeln!(stdout, "{:<36}  {:>10}", "CLIENT", "SESSIONS")?;
    for client in &stats.by_client {
        let name = client.client_id.as_deref().unwrap_or("(none)");
        writeln!(stdout, "{name:<36}  {:>10}", client.sessions)?;
    }
    writeln!(stdout)?;
    writeln!(stdout, "{:<36}  {:>10}", "BEGAN (UTC DAY)", "SESSIONS")?;
    for day in &stats.by_day {
        writeln!(stdout, "{:<36}  {:>10}", day.day, day.started)?;
    }
    writeln!(stdout, "{:<36}  {:>10}", "earlier", stats.started_earlier)?;
    Ok(())
}

async fn user_enable(
    config: &Config,
    username: &str,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let pool = db::open(config).await?;
    let user = find_user(&pool, username).await?;
    accounts::enable_user(&pool, &user.id).await?;
    writeln!(stdout, "enabled user {} (id {})", user.username, user.id)?;
    pool.close().await;
    Ok(())
}

async fn user_list(config: &Config, stdout: &mut impl Write) -> anyhow::Result<()> {
    let pool = db::open(config).await?;
    let users = users::list(&pool).await?;
    pool.close().await;
    writeln!(
        stdout,
        "{:<36}  {:<24}  {:<8}  {:<16}  scopes",
        "id", "username", "state", "roles"
    )?;
    for user in users {
        writeln!(
            stdout,
            "{:<36}  {:<24}  {:<8}  {:<16}  {}",
            user.id,
            user.username,
            if user.is_disabled() {
                "disabled"
            } else {
                "enabled"
            },
            user.roles.join(","),
            user.scopes
        )?;
    }
    Ok(())
}

async fn user_update(
    config: &Config,
    update: UserUpdate,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    if update.roles.is_none() && update.scopes.is_none() {
        bail!("nothing to change: pass --roles and/or --scopes");
    }
    // Refused before the database is opened.
    users::validate_username(&update.username)?;
    let change = accounts::GrantChange {
        roles: update
            .roles
            .as_deref()
            .map(scope::parse_roles)
            .transpose()?,
        scopes: update.scopes.as_deref().map(ScopeSet::parse).transpose()?,
    };
    let pool = db::open(config).await?;
    let user = find_user(&pool, &update.username).await?;
    // The same store and feed as the server (see `user_disable`).
    let (sessions, log) = app::session_backend(&pool, config).await?;
    let before = (user.roles.clone(), user.scopes.clone());
    let user = accounts::change_user(&pool, sessions.as_ref(), &log, &user.id, change)
        .await?
        .with_context(|| format!("user {:?} vanished", update.username))?;
    let unchanged = before == (user.roles.clone(), user.scopes.clone());
    writeln!(
        stdout,
        "{} user {} (id {}): roles [{}] and scopes [{}]",
        if unchanged { "unchanged" } else { "updated" },
        user.username,
        user.id,
        scope::roles_to_string(&user.roles),
        user.scopes
    )?;
    pool.close().await;
    Ok(())
}

async fn client_add(
    config: &Config,
    add: ClientAdd,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let registration = Registration {
        id: add.id,
        scopes: ScopeSet::parse(&add.scopes)?,
        roles: scope::parse_roles(&add.roles)?,
        public: add.public,
        redirect_uris: add.redirect_uris,
        post_logout_redirect_uris: add.post_logout_redirect_uris,
    };
    // Refused before the database is opened: a typo never leaves a half-made data directory.
    clients::validate_registration(&registration)?;
    let pool = db::open(config).await?;
    let passwords = Passwords::new().await?;
    let (client, secret) = clients::register(&pool, &passwords, registration).await?;
    // The secret alone on stdout, so that `SECRET=$(auth-service client add ...)` works; the
    // explanation for a person goes to stderr.
    match secret {
        Some(secret) => {
            eprintln!(
                "created client {} with scopes [{}] and {} redirect URI(s); its secret follows, shown this once",
                client.id,
                client.scopes,
                client.redirect_uris.len()
            );
            writeln!(stdout, "{}", secret.expose_secret())?;
        }
        None => eprintln!(
            "created public client {} with scopes [{}] and {} redirect URI(s); it has no secret and must use PKCE",
            client.id,
            client.scopes,
            client.redirect_uris.len()
        ),
    }
    pool.close().await;
    Ok(())
}

async fn keys_command(
    config: &Config,
    command: KeysCommand,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let pool = db::open(config).await?;
    // The same feed as the server: a revocation reaches the servers' watchers through Redis at
    // once, or at their next poll of the table.
    let (_, log) = app::session_backend(&pool, config).await?;
    let keys = KeyManager::open(pool.clone(), &KeySettings::from_config(config), log)
        .await
        .context("cannot open the signing keys")?;
    let now = db::now();
    let mut immediately_activated = None;
    match command {
        KeysCommand::List => {}
        KeysCommand::Rotate { immediate, alg } => {
            let outcome = keys.rotate_as(now, immediate, alg).await?;
            immediately_activated = outcome.activated.first().cloned();
            if outcome.is_empty() {
                writeln!(
                    stdout,
                    "nothing to do: a rotation is already pending (see below)"
                )?;
            }
            describe(stdout, &outcome)?;
        }
        KeysCommand::Revoke { kid } => {
            let outcome = keys.revoke(&kid, now).await.map_err(|e| match e {
                KeyStoreError::UnknownKey => {
                    anyhow::anyhow!("no signing key {kid:?} (see `auth-service keys list`)")
                }
                other => other.into(),
            })?;
            if outcome.revoked.is_none() {
                writeln!(stdout, "key {kid} was already revoked")?;
            }
            describe(stdout, &outcome)?;
        }
    }
    let listing = KeyListing::load(&keys).await?;
    if let Some(kid) = immediately_activated.as_deref() {
        describe_immediate(stdout, kid, &listing)?;
    }
    print_listing(stdout, &listing)?;
    pool.close().await;
    Ok(())
}

fn describe(stdout: &mut impl Write, outcome: &Outcome) -> anyhow::Result<()> {
    if let Some(kid) = &outcome.revoked {
        writeln!(stdout, "revoked key {kid}")?;
    }
    if let Some(kid) = &outcome.created {
        writeln!(stdout, "created key {kid}")?;
    }
    if let Some(kid) = &outcome.rescheduled {
        writeln!(stdout, "brought the activation of key {kid} forward")?;
    }
    for kid in &outcome.activated {
        writeln!(stdout, "key {kid} signs now")?;
    }
    Ok(())
}

/// After an immediate rotation: how many connected verifiers do not hold the key that signs now.
fn describe_immediate(
    stdout: &mut impl Write,
    kid: &str,
    listing: &KeyListing,
) -> anyhow::Result<()> {
    let missing = listing.verifiers_without_signing_key;
    let connected = listing.connected_verifiers;
    if connected == 0 {
        writeln!(
            stdout,
            "no connected verifier reports its keys: nothing is known of who holds key {kid}"
        )?;
    } else if missing == 0 {
        writeln!(stdout, "all {connected} connected verifiers hold key {kid}")?;
    } else {
        writeln!(
            stdout,
            "{missing} of {connected} connected verifiers do not hold key {kid} yet: they refuse \
             its tokens until they fetch the JWKS (hybrid verifiers at once, on the KeyAdded \
             event; others at their next refresh or first unknown kid)"
        )?;
    }
    Ok(())
}

fn verifiers(coverage: Option<crate::keys::KeyCoverage>) -> String {
    coverage.map_or_else(
        || "-".to_owned(),
        |c| format!("{}/{}", c.holding, c.connected),
    )
}

fn time(at: Option<i64>) -> String {
    at.and_then(|at| u64::try_from(at).ok())
        .map(|at| {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
            humantime::format_rfc3339_seconds(at).to_string()
        })
        .unwrap_or_else(|| "-".to_owned())
}

fn print_listing(stdout: &mut impl Write, listing: &KeyListing) -> anyhow::Result<()> {
    writeln!(
        stdout,
        "store: {}; signing: {}; connected verifiers: {}",
        listing.store, listing.signing_kid, listing.connected_verifiers
    )?;
    writeln!(
        stdout,
        "{:<43}  {:<7}  {:<20}  {:<20}  {:<20}  {:<20}  {:<9}  {:<5}",
        "KID", "STATE", "CREATED", "ACTIVATES", "RETIRED/REVOKED", "REMOVED", "VERIFIERS", "ALG"
    )?;
    for key in &listing.keys {
        let info = &key.info;
        let stopped = if info.state == KeyState::Revoked {
            info.revoked_at
        } else {
            info.retired_at
        };
        writeln!(
            stdout,
            "{:<43}  {:<7}  {:<20}  {:<20}  {:<20}  {:<20}  {:<9}  {:<5}",
            info.kid,
            info.state.as_str(),
            time(Some(info.created_at)),
            time(Some(info.activates_at)),
            time(stopped),
            time(key.removed_at),
            verifiers(key.verifiers),
            key.alg.unwrap_or("-"),
        )?;
    }
    Ok(())
}

/// Reads the password from `stdin`, removing one trailing newline (`\n` or `\r\n`).
async fn read_password(stdin: impl Read + Send + 'static) -> anyhow::Result<SecretString> {
    let mut raw = tokio::task::spawn_blocking(move || {
        let mut raw = String::new();
        stdin
            .take(MAX_STDIN_PASSWORD + 1)
            .read_to_string(&mut raw)
            .map(|_| raw)
    })
    .await?
    .context("cannot read the password from standard input (it must be UTF-8)")?;
    let too_long = raw.len() as u64 > MAX_STDIN_PASSWORD;
    let password = SecretString::from(trim_newline(&raw));
    // The secret lives on in `password` only (wiped when dropped); its source is wiped now.
    raw.zeroize();
    if too_long {
        bail!("the password on standard input is longer than {MAX_STDIN_PASSWORD} bytes");
    }
    if password.expose_secret().is_empty() {
        bail!("the password on standard input is empty");
    }
    Ok(password)
}

fn trim_newline(raw: &str) -> &str {
    let line = raw.strip_suffix('\n').unwrap_or(raw);
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_flags_apply_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "user",
            "add",
            "--username",
            "alice",
            "--password-stdin",
            "--keys-dir",
            "/tmp/k",
        ])
        .expect("parse");
        assert_eq!(cli.config.keys_dir, std::path::Path::new("/tmp/k"));
        assert!(matches!(
            cli.command,
            Some(Command::User {
                command: UserCommand::Add(UserAdd {
                    password_stdin: true,
                    ..
                })
            })
        ));
    }

    #[test]
    fn migrate_is_a_command_that_takes_the_database_url() {
        let cli =
            Cli::try_parse_from(["auth-service", "migrate", "--database-url", "sqlite://x.db"])
                .expect("parse");
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert_eq!(cli.config.database_url, "sqlite://x.db");
    }

    #[test]
    fn a_kid_may_begin_with_a_hyphen() {
        let cli =
            Cli::try_parse_from(["auth-service", "keys", "revoke", "-7abc_DEF"]).expect("parse");
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::Revoke { kid }
            }) if kid == "-7abc_DEF"
        ));
    }

    #[test]
    fn one_trailing_newline_is_removed() {
        assert_eq!(trim_newline("secret\n"), "secret");
        assert_eq!(trim_newline("secret\r\n"), "secret");
        assert_eq!(trim_newline("secret"), "secret");
        assert_eq!(trim_newline("secret \n\n"), "secret \n");
    }

    #[tokio::test]
    async fn password_from_stdin() {
        let password = read_password(std::io::Cursor::new(b"hunter2!\n".to_vec()))
            .await
            .expect("password");
        assert_eq!(password.expose_secret(), "hunter2!");
        assert!(
            read_password(std::io::Cursor::new(b"\n".to_vec()))
                .await
                .is_err()
        );
        assert!(
            read_password(std::io::Cursor::new(vec![b'a'; 5000]))
                .await
                .is_err()
        );
    }
}
