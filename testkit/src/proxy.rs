//! A TCP proxy a test controls: it spreads connections over one or more upstreams, and can cut
//! every open connection or refuse new ones, the way a crashed server, a restarted database or
//! a broken network does to its clients.
//!
//! Written here rather than taken from a crate: the fault tests need exactly three controls
//! (cut, refuse, change upstreams) on a loopback listener, which is a few dozen lines over
//! `tokio::io::copy_bidirectional`; the proxy crates on crates.io are HTTP-aware or
//! configuration-file driven.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy on `127.0.0.1:0`; stops accepting when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstreams: Mutex<Vec<SocketAddr>>,
    next: AtomicUsize,
    refusing: AtomicBool,
    /// Bumped by [`TcpProxy::cut`]: every connection opened before ends.
    cuts: watch::Sender<u64>,
    accepted: AtomicU64,
}

impl TcpProxy {
    /// A proxy to `upstreams`, taken in turn for each new connection (one that does not
    /// answer is skipped).
    pub async fn start(upstreams: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstreams: Mutex::new(upstreams),
            next: AtomicUsize::new(0),
            refusing: AtomicBool::new(false),
            cuts: watch::channel(0).0,
            accepted: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Self { addr, shared, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{scheme}://127.0.0.1:{port}{rest}`, e.g. `url("http", "")`.
    pub fn url(&self, scheme: &str, rest: &str) -> String {
        format!("{scheme}://{}{rest}", self.addr)
    }

    /// Ends every open connection at once (both directions), as a crash or a network cut
    /// would; new connections are accepted as before.
    pub fn cut(&self) {
        self.shared.cuts.send_modify(|cuts| *cuts += 1);
    }

    /// Cuts every open connection and refuses new ones (accepted, then closed at once) until
    /// [`TcpProxy::restore`]: the upstream is down.
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Accepts and forwards new connections again.
    pub fn restore(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// Replaces the upstreams (a restarted server on a new port).
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        *self.shared.upstreams.lock().expect("upstreams") = upstreams;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, Arc::clone(&shared)));
    }
}

async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    cuts.mark_unchanged();
    let Some(mut upstream) = connect_upstream(&shared).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cuts.changed() => {}
    }
}

async fn connect_upstream(shared: &Shared) -> Option<TcpStream> {
    let upstreams = shared.upstreams.lock().expect("upstreams").clone();
    for _ in 0..upstreams.len() {
        let index = shared.next.fetch_add(1, Ordering::SeqCst) % upstreams.len();
        if let Ok(stream) = TcpStream::connect(upstreams[index]).await {
            return Some(stream);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_refuses_and_restores() {
        let proxy = TcpProxy::start(vec![echo_server().await]).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream).await.unwrap(), b"ping");

        proxy.cut();
        assert!(
            round_trip(&mut stream).await.is_err(),
            "a cut ends open connections"
        );
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again).await.unwrap(), b"ping");

        proxy.refuse();
        let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(round_trip(&mut refused).await.is_err());
        assert!(round_trip(&mut again).await.is_err());

        proxy.restore();
        let mut restored = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut restored).await.unwrap(), b"ping");
        assert_eq!(proxy.accepted(), 4);
    }

    #[tokio::test]
    async fn spreads_connections_and_skips_a_dead_upstream() {
        let dead = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let proxy = TcpProxy::start(vec![dead, echo_server().await]).await;
        for _ in 0..3 {
            let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
            assert_eq!(round_trip(&mut stream).await.unwrap(), b"ping");
        }
    }
}
