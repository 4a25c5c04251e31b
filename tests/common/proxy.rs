//! A fault-injecting TCP proxy in front of the emulator: forwards connections until `cut`,
//! which drops every open connection and refuses new ones until `restore`. The emulator
//! itself cannot be taken away and brought back with its state (it keeps none across
//! restarts), so an outage is simulated here, between the relay and the emulator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub endpoint: String,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let (upstream, listener, endpoint) = listen(upstream).await;
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let task = {
            let cut = Arc::clone(&cut);
            let generation = generation.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if cut.load(Ordering::SeqCst) {
                        drop(client); // refused: closed at once
                        continue;
                    }
                    let upstream = upstream.clone();
                    let mut cuts = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut client, mut server) = (client, server);
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {} // dropped mid-flight
                        }
                    });
                }
            })
        };
        Self {
            endpoint,
            cut,
            generation,
            task,
        }
    }

    /// Listens on a free loopback port and forwards to `upstream`, holding every chunk the
    /// client sends (in practice, every HTTP request) for a random time in `0..max_delay`.
    /// Answers flow back at once.
    pub async fn delaying(upstream: &str, max_delay: Duration) -> Self {
        let (endpoint, task) = inspecting(upstream, move || {
            move |_: &[u8]| max_delay.mul_f64(rand::random::<f64>())
        })
        .await;
        let (generation, _) = watch::channel(0u64);
        Self {
            endpoint,
            cut: Arc::new(AtomicBool::new(false)),
            generation,
            task,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A proxy that forwards everything at once and counts the requests naming `target` (an
/// `X-Amz-Target` value such as `DynamoDBStreams_20120810.GetRecords`) on their way up: how
/// many calls of one operation relays made, across restarts and kills.
pub struct CountingProxy {
    pub endpoint: String,
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(upstream: &str, target: &'static str) -> Self {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let (endpoint, task) = inspecting(upstream, move || {
            let count = Arc::clone(&counter);
            let needle = target.as_bytes();
            // The last bytes of the previous chunk: a name split across two reads is still
            // found, and never counted twice (the tail is shorter than the name).
            let mut window: Vec<u8> = Vec::new();
            move |chunk: &[u8]| {
                window.extend_from_slice(chunk);
                let found = window
                    .windows(needle.len())
                    .filter(|w| w.eq_ignore_ascii_case(needle))
                    .count();
                count.fetch_add(found, Ordering::Relaxed);
                let keep = needle.len() - 1;
                if window.len() > keep {
                    window.drain(..window.len() - keep);
                }
                Duration::ZERO
            }
        })
        .await;
        Self {
            endpoint,
            count,
            task,
        }
    }

    /// Requests naming the target so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on a free loopback port and forwards every connection to `upstream`; each chunk a
/// client sends passes through the connection's own `per_connection()` inspector first, and
/// waits as long as it answers. Answers flow back at once.
async fn inspecting<F, G>(
    upstream: &str,
    per_connection: F,
) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn() -> G + Send + Sync + 'static,
    G: FnMut(&[u8]) -> Duration + Send + 'static,
{
    let (upstream, listener, endpoint) = listen(upstream).await;
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let upstream = upstream.clone();
            let mut inspect = per_connection();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upward = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let wait = inspect(&buf[..n]);
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let downward = tokio::io::copy(&mut server_read, &mut client_write);
                tokio::select! {
                    () = upward => {}
                    _ = downward => {}
                }
            });
        }
    });
    (endpoint, task)
}

/// The upstream's address (`upstream` is `http://127.0.0.1:PORT`), a listener on a free
/// loopback port, and its endpoint URL.
async fn listen(upstream: &str) -> (String, TcpListener, String) {
    let upstream = upstream
        .strip_prefix("http://")
        .expect("http endpoint")
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    (upstream, listener, endpoint)
}
