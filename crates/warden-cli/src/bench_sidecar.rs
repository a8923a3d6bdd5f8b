//! `warden bench sidecar`: `/v1/decide` round trips on loopback under 64
//! concurrent keep-alive connections (DESIGN.md §6 `sidecar/decide`).
//!
//! Server and load generator share this machine's cores, so the figures are
//! a lower bound for a sidecar with its own CPU.

use anyhow::{Context as _, Result};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::time::{Duration, Instant};
use warden_server::{Overrides, RunningServer, ServerConfig};

/// Concurrent connections, as in the target.
const CONNECTIONS: usize = 64;
/// Offered load of the paced run, requests per second over all connections.
/// Closed-loop runs measure capacity; with 64 requests always in flight their
/// latency is queueing (Little's law: 64 / throughput), so latency is measured
/// at a fixed offered rate below capacity, from each request's send time.
const PACED_RATE: f64 = 10_000.0;

#[derive(Serialize)]
struct Line {
    workload: &'static str,
    mode: &'static str,
    median_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    ops_per_sec: f64,
    connections: usize,
    requests: usize,
    durability: &'static str,
}

pub(crate) fn run(time_ms: u64) -> Result<()> {
    let scratch = super::bench::ScratchDir::new("sidecar")?;
    let policy = scratch.0.join("policy.yaml");
    std::fs::write(&policy, warden_policy::workloads::policy_n_yaml(100))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let body = serde_json::to_vec(&warden_policy::workloads::action_for("action_99")?)?;
    runtime.block_on(async {
        let mut config = ServerConfig::resolve(
            None,
            |_| None,
            Overrides {
                listen: Some("127.0.0.1:0".to_owned()),
                unix_socket: Some(scratch.0.join("warden.sock")),
                policy: vec![policy.clone()],
                data_dir: Some(scratch.0.join("data")),
                durability: Some(warden_audit::Durability::Batched),
            },
        )?;
        config.watch = false;
        let server = RunningServer::start(config).await?;
        let answer = serde_json::to_vec(
            &warden_policy::PolicySet::from_yaml(&std::fs::read_to_string(&policy)?)?
                .decide(&warden_policy::workloads::action_for("action_99")?),
        )?;
        let floor = Target::Tcp(start_floor(Bytes::from(answer)).await?);
        let tcp = Target::Tcp(server.local_addr());
        let unix = Target::Unix(
            server
                .unix_socket()
                .context("the bench server has no unix socket")?
                .to_path_buf(),
        );
        // Warm up connections and the policy, then measure.
        let _ = load(&tcp, &body, Duration::from_millis(200), None).await?;
        let time = Duration::from_millis(time_ms);
        for (workload, target, mode, rate) in [
            ("sidecar/http-floor", &floor, "saturated", None),
            ("sidecar/http-floor", &floor, "paced", Some(PACED_RATE)),
            ("sidecar/decide", &tcp, "saturated", None),
            ("sidecar/decide", &tcp, "paced", Some(PACED_RATE)),
            ("sidecar/decide-unix", &unix, "saturated", None),
            ("sidecar/decide-unix", &unix, "paced", Some(PACED_RATE)),
        ] {
            let (mut lat, elapsed) = load(target, &body, time, rate).await?;
            lat.sort_unstable();
            let pick = |q: f64| {
                lat.get(((lat.len().saturating_sub(1)) as f64 * q) as usize)
                    .copied()
                    .unwrap_or(0)
            };
            let line = Line {
                workload,
                mode,
                median_ns: pick(0.5),
                p99_ns: pick(0.99),
                p999_ns: pick(0.999),
                ops_per_sec: (lat.len() as f64 / elapsed.as_secs_f64()).round(),
                connections: CONNECTIONS,
                requests: lat.len(),
                durability: "batched",
            };
            println!("{}", serde_json::to_string(&line)?);
        }
        server.shutdown().await?;
        anyhow::Ok(())
    })
}

/// The floor the sidecar's figures stand on: an HTTP/1.1 server on the same
/// runtime, stack (hyper, keep-alive, `TCP_NODELAY`) and loopback that reads
/// each request body and answers a canned decision of the same size, with
/// no routing, JSON, kernel or audit. `sidecar/http-floor` is what this
/// machine's sockets and scheduler cost alone; the sidecar's own cost is the
/// difference.
async fn start_floor(answer: Bytes) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        req.into_body().collect().await?;
                        let mut resp = hyper::Response::new(Full::new(answer));
                        resp.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, hyper::Error>(resp)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Where the load goes: loopback TCP or the Unix-domain socket.
enum Target {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

/// A keep-alive HTTP/1 connection to `target`.
async fn connect(target: &Target) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    async fn handshake<I>(io: I) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }
    match target {
        Target::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            handshake(stream).await
        }
        Target::Unix(path) => handshake(tokio::net::UnixStream::connect(path).await?).await,
    }
}

/// Drives `CONNECTIONS` keep-alive connections for `time`, back to back or
/// at `rate` requests/s in total; per-request latencies in ns.
async fn load(
    target: &Target,
    body: &[u8],
    time: Duration,
    rate: Option<f64>,
) -> Result<(Vec<u64>, Duration)> {
    let start = Instant::now();
    let end = start + time;
    // Paced: an OS thread (µs-precise sleeps; tokio timers tick in
    // milliseconds and would send in bursts) hands out send slots round-robin.
    let mut slots = Vec::with_capacity(CONNECTIONS);
    let mut receivers = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        slots.push(tx);
        receivers.push(rate.map(|_| rx));
    }
    if let Some(r) = rate {
        let interval = Duration::from_secs_f64(1.0 / r);
        std::thread::spawn(move || {
            let mut next = Instant::now();
            let mut i = 0usize;
            while next < end {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                if let Some(tx) = slots.get(i % CONNECTIONS) {
                    let _ = tx.send(());
                }
                i += 1;
                next += interval;
            }
        });
    }
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for mut paced in receivers {
        let body = Bytes::copy_from_slice(body);
        let mut sender = connect(target).await?;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let req = hyper::Request::post("/v1/decide")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))?;
                if let Some(rx) = paced.as_mut()
                    && rx.recv().await.is_none()
                {
                    break;
                }
                let t = Instant::now();
                let resp = sender.send_request(req).await?;
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await?;
                lat.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                anyhow::ensure!(ok, "the sidecar answered with an error");
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, start.elapsed()))
}
