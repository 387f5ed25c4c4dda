//! TLS servers of a test's own: a throwaway certificate authority ([`TestPki`], made with
//! rcgen), a Redis server listening with TLS only ([`TlsRedis`]) and a PostgreSQL cluster with
//! `ssl=on` ([`TlsPostgres`]), each in a temporary directory and gone when dropped.
//!
//! They need the servers' binaries: `redis-server` (built with TLS, as Debian's is) on `PATH`,
//! and PostgreSQL's `initdb` and `pg_ctl` on `PATH` or in `/usr/lib/postgresql/*/bin`. The tests
//! that use them are `#[ignore = "needs ..."]`; run with `-- --include-ignored` on a machine
//! without a binary, they fail here saying which, rather than pass without having run. As root,
//! the PostgreSQL cluster runs as the `postgres` user (`initdb` refuses root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A certificate authority of its own and a server certificate it signed, as PEM files in a
/// temporary directory.
pub struct TestPki {
    dir: TempDir,
    /// The CA's certificate: what a client trusts.
    pub ca_file: PathBuf,
    /// The server's certificate (signed by the CA) and its private key (PKCS#8).
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestPki {
    /// A new CA, and a server certificate for `names` (DNS names or IP addresses, each a subject
    /// alternative name) signed by it.
    pub fn new(names: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: another TestPki's certificates are then of an unknown issuer.
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("token platform test CA {}", uuid::Uuid::new_v4().simple()),
        );
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let mut server =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server parameters");
        server.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("server certificate");

        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server.key");
        std::fs::write(&ca_file, ca_cert.pem()).expect("CA file");
        std::fs::write(&cert_file, server_cert.pem()).expect("certificate file");
        std::fs::write(&key_file, server_key.serialize_pem()).expect("key file");
        Self {
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `name` on `PATH`, else in the highest `/usr/lib/postgresql/*/bin` for PostgreSQL's tools.
fn find_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|candidate| candidate.is_file())
            .collect();
        versions.sort_by_key(|p| {
            p.components()
                .nth(4)
                .and_then(|v| v.as_os_str().to_str()?.parse::<u32>().ok())
        });
        versions.pop()
    })
}

fn require_binary(name: &str, what: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH{}: this test needs {what}",
            if name == "redis-server" {
                ""
            } else {
                " or in /usr/lib/postgresql/*/bin"
            }
        )
    })
}

/// Waits until something accepts TCP connections on `port`, failing after 10 s with `log`.
fn wait_for_port(port: u16, what: &str, mut log: impl FnMut() -> String) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} does not listen on port {port}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Redis server that accepts TLS connections only (`--port 0`), with the certificate of a
/// [`TestPki`], not asking clients for certificates.
pub struct TlsRedis {
    child: Child,
    _dir: TempDir,
    /// The TLS port, on 127.0.0.1.
    pub port: u16,
}

impl TlsRedis {
    pub fn start(pki: &TestPki) -> Self {
        let binary = require_binary("redis-server", "a Redis server built with TLS");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = dir.path().join("redis.log");
        let arg = |path: &Path| path.display().to_string();
        let child = Command::new(binary)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &arg(&pki.cert_file)])
            .args(["--tls-key-file", &arg(&pki.key_file)])
            .args(["--tls-ca-cert-file", &arg(&pki.ca_file)])
            .args(["--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &arg(dir.path())])
            .args(["--logfile", &arg(&log)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let mut redis = Self {
            child,
            _dir: dir,
            port,
        };
        wait_for_port(port, "redis-server (with TLS)", || {
            let exited = redis.child.try_wait().ok().flatten();
            format!(
                "exit status {exited:?} (a redis-server built without TLS refuses --tls-port)\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        redis
    }

    /// `rediss://{host}:{port}`.
    pub fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of its own with `ssl=on` and the certificate of a [`TestPki`],
/// listening on 127.0.0.1 (and a Unix socket in its directory), user `postgres` trusted without
/// a password.
pub struct TlsPostgres {
    dir: TempDir,
    pg_ctl: PathBuf,
    /// As root: the `postgres` user's uid and gid, which the cluster runs as.
    run_as: Option<(u32, u32)>,
    /// The TCP port, on 127.0.0.1.
    pub port: u16,
}

impl TlsPostgres {
    pub fn start(pki: &TestPki) -> Self {
        let initdb = require_binary("initdb", "PostgreSQL's initdb");
        let pg_ctl = require_binary("pg_ctl", "PostgreSQL's pg_ctl");
        let dir = tempfile::tempdir().expect("tempdir");
        let run_as = is_root().then(postgres_user);
        let data = dir.path().join("data");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::copy(&pki.cert_file, &cert).expect("certificate copied");
        std::fs::copy(&pki.key_file, &key).expect("key copied");
        // PostgreSQL refuses a key file others can read.
        set_mode(&key, 0o600);
        if let Some((uid, gid)) = run_as {
            for path in [dir.path(), &cert, &key] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut cluster = Self {
            dir,
            pg_ctl,
            run_as,
            port: free_port(),
        };
        cluster.run(
            &initdb,
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} \
             -c ssl_key_file={} -c fsync=off -c max_connections=20",
            cluster.port,
            cluster.dir.path().display(),
            cert.display(),
            key.display(),
        );
        let log = cluster.dir.path().join("postgres.log");
        let pg_ctl = cluster.pg_ctl.clone();
        cluster.run(
            &pg_ctl,
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
            ],
        );
        wait_for_port(cluster.port, "PostgreSQL", || {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        cluster
    }

    /// `postgres://postgres@{host}:{port}/postgres?{query}`.
    pub fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.port)
    }

    /// Runs `program` with `args` (as `postgres` when root), failing the test if it fails.
    fn run(&mut self, program: &Path, args: &[&std::ffi::OsStr]) {
        let mut command = match self.run_as {
            Some(_) => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} failed ({}):\n{}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let pg_ctl = self.pg_ctl.clone();
        let mut command = match self.run_as {
            Some(_) => {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(&pg_ctl);
                command
            }
            None => Command::new(&pg_ctl),
        };
        let _ = command
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    id(&["-u"]) == 0
}

/// The uid and gid of the `postgres` user.
fn postgres_user() -> (u32, u32) {
    (id(&["-u", "postgres"]), id(&["-g", "postgres"]))
}

fn id(args: &[&str]) -> u32 {
    let output = Command::new("id").args(args).output().expect("id runs");
    assert!(
        output.status.success(),
        "id {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a numeric id")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
