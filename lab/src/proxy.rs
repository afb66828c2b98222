//! A small TCP fault proxy for drills and tests (there is no `tc netem` or toxiproxy here):
//! it forwards a local port to an upstream address and can, on command, delay every
//! chunk, black-hole traffic (connections stay open, nothing passes: a silent partition),
//! refuse new connections, or cut every open connection.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every chunk waits this long before it is forwarded.
    Delay(Duration),
    /// Connections are accepted and kept, but nothing is forwarded either way.
    Blackhole,
    /// New connections are closed at once (open ones keep working).
    Refuse,
}

#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    /// Bumped by [`FaultProxy::cut`]; every connection ends when it changes.
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut.send_modify(|g| *g += 1);
    }
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let (cut, _) = watch::channel(0u64);
        let task = {
            let mode = mode.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let current = *mode
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if current == Mode::Refuse {
                        drop(client);
                        continue;
                    }
                    let mode = mode.clone();
                    let cut_rx = cut.subscribe();
                    tokio::spawn(async move {
                        if let Ok(server) = TcpStream::connect(upstream).await {
                            let _ = client.set_nodelay(true);
                            let _ = server.set_nodelay(true);
                            pipe(client, server, mode, cut_rx).await;
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            mode,
            cut,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: Mode) {
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    /// Closes every open connection (new ones follow the mode).
    pub fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mode: Arc<Mutex<Mode>>,
    mut cut: watch::Receiver<u64>,
) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = forward(cr, sw, mode.clone());
    let down = forward(sr, cw, mode);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = cut.changed() => {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<Mutex<Mode>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match current {
            Mode::Blackhole => continue,
            Mode::Delay(d) => tokio::time::sleep(d).await,
            Mode::Pass | Mode::Refuse => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(addr: SocketAddr, timeout: Duration) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(timeout, s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn passes_delays_blackholes_refuses_and_cuts() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let t = Duration::from_millis(500);
        assert_eq!(
            roundtrip(proxy.addr(), t).await.as_deref(),
            Some(&b"ping"[..])
        );
        proxy.set(Mode::Blackhole);
        assert_eq!(roundtrip(proxy.addr(), t).await, None);
        proxy.set(Mode::Refuse);
        assert_eq!(roundtrip(proxy.addr(), t).await, None);
        proxy.set(Mode::Delay(Duration::from_millis(150)));
        let started = std::time::Instant::now();
        assert!(
            roundtrip(proxy.addr(), Duration::from_secs(2))
                .await
                .is_some()
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "delayed both ways"
        );

        proxy.set(Mode::Pass);
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        proxy.cut();
        let n = tokio::time::timeout(t, open.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "a cut connection is closed");
    }
}
