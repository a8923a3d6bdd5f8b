//! Starting and stopping the sidecar: kernel, admin token, listener, connection
//! handling with timeouts, hot reload, graceful shutdown.

use crate::api::{AppState, router};
use crate::auth::{AdminAuth, AuthError, TokenSource};
use crate::config::{ServerConfig, TrustSettings, TrustStoreKind};
use crate::identity::{IdentityService, IdentitySetupError};
use crate::metrics::Metrics;
use crate::reload::{PolicySource, Reloader};
use crate::store::AuditAccess;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use warden_identity::trust::SyncHandle;
use warden_identity::{IdentityError, TrustBook, TrustConfig};
use warden_kernel::Kernel;
use warden_policy::{PolicyHandle, PolicySet};

/// Most connections served at once; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time in-flight requests get to finish on shutdown.
pub const DRAIN: Duration = Duration::from_secs(10);

/// The sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The policy failed to load (no policy, no server: fail closed).
    #[error("policy: {0}")]
    Policy(#[from] warden_policy::PolicyError),
    /// The kernel (data directory, audit log, kill switch) failed to open.
    #[error("kernel: {0}")]
    Kernel(#[from] warden_kernel::KernelError),
    /// The admin token could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Binding the listen address failed.
    #[error("listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Unix-domain socket could not be set up.
    #[error("unix socket {}: {reason}", path.display())]
    UnixSocket {
        /// The socket path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The policy watcher failed to start.
    #[error("watching policy files: {0}")]
    Watch(#[from] notify::Error),
    /// The configured audit store failed to open.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The identity block is unusable (key file, anchors).
    #[error(transparent)]
    Identity(#[from] IdentitySetupError),
    /// The trust store failed to open (unreachable, unreadable, corrupt).
    #[error("trust store: {0}")]
    Trust(#[from] IdentityError),
    /// A startup task failed.
    #[error("startup: {0}")]
    Startup(String),
}

/// Opens the configured trust book: `<data_dir>/trust.json` or the
/// PostgreSQL table. Fails closed on a corrupt or unreachable store.
pub fn open_trust(
    settings: &TrustSettings,
    data_dir: &std::path::Path,
) -> Result<Arc<TrustBook>, IdentityError> {
    match (settings.store, &settings.url) {
        (TrustStoreKind::File, _) => {
            std::fs::create_dir_all(data_dir).map_err(|e| IdentityError::KeyFile {
                path: data_dir.to_path_buf(),
                reason: e.to_string(),
            })?;
            Ok(Arc::new(TrustBook::open(data_dir, TrustConfig::default())?))
        }
        #[cfg(feature = "postgres")]
        (TrustStoreKind::Postgres, Some(url)) => {
            let store = warden_identity::trust_pg::PgTrustStore::open(url, &settings.schema)?;
            Ok(Arc::new(TrustBook::with_store(
                Box::new(store),
                TrustConfig::default(),
            )?))
        }
        #[cfg(feature = "postgres")]
        (TrustStoreKind::Postgres, None) => Err(IdentityError::Malformed(
            "trust.url: `store: postgres` needs a connection URL".to_owned(),
        )),
        #[cfg(not(feature = "postgres"))]
        (TrustStoreKind::Postgres, _) => Err(IdentityError::Malformed(
            "this binary was built without PostgreSQL support; rebuild with `--features postgres` or use `trust: {store: file}`".to_owned(),
        )),
    }
}

/// A running sidecar.
pub struct RunningServer {
    addr: SocketAddr,
    unix_socket: Option<PathBuf>,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    trust: Option<Arc<TrustBook>>,
    trust_sync: Option<SyncHandle>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What startup builds before listening.
struct Built {
    kernel: Arc<Kernel>,
    source: PolicySource,
    audit: AuditAccess,
    identity: Option<Arc<IdentityService>>,
    trust: Option<Arc<TrustBook>>,
}

fn build_kernel(config: &ServerConfig) -> Result<Built, ServerError> {
    let (handle, source) = if config.policy.is_empty() {
        let set = PolicySet::from_sources(&crate::pack::default_pack())?;
        (PolicyHandle::new(set), PolicySource::Builtin)
    } else {
        (
            PolicyHandle::load(&config.policy)?,
            PolicySource::Paths(config.policy.clone()),
        )
    };
    let (mut builder, audit) = crate::store::open(Kernel::builder(handle), config)?;
    let identity = match &config.identity {
        Some(i) => {
            let service = Arc::new(IdentityService::open(i, &config.data_dir)?);
            builder = builder.stage(Box::new(warden_kernel::IdentityStage::new(Arc::clone(
                service.gate(),
            ))));
            Some(service)
        }
        None => None,
    };
    // After the audit sink is chosen: the feed wraps it.
    let trust = open_trust(&config.trust, &config.data_dir)?;
    builder = builder.trust_feed(
        Arc::clone(&trust),
        identity.as_ref().map(|i| Arc::clone(i.gate())),
    );
    Ok(Built {
        kernel: Arc::new(builder.build()?),
        source,
        audit,
        identity,
        trust: Some(trust),
    })
}

impl RunningServer {
    /// Opens the kernel and starts serving on `config.listen` (port 0 picks a free port).
    pub async fn start(config: ServerConfig) -> Result<RunningServer, ServerError> {
        let built = {
            let c = config.clone();
            tokio::task::spawn_blocking(move || build_kernel(&c))
                .await
                .map_err(|e| ServerError::Startup(e.to_string()))??
        };
        Self::listen(built, &config).await
    }

    /// Serves the API for a kernel built elsewhere (e.g. the MCP gateway's,
    /// so approvers and operators reach the gateway's approvals and kill
    /// switch). `config` must describe that kernel: its `policy` paths (for
    /// reload; empty means nothing to reload), `data_dir` and `audit` store
    /// (for head and proofs); `identity` is not applied to an attached kernel.
    pub async fn attach(
        kernel: Arc<Kernel>,
        config: &ServerConfig,
    ) -> Result<RunningServer, ServerError> {
        let source = if config.policy.is_empty() {
            PolicySource::Builtin
        } else {
            PolicySource::Paths(config.policy.clone())
        };
        let audit = match &config.audit {
            crate::config::AuditStore::File => AuditAccess::File(config.data_dir.clone()),
            crate::config::AuditStore::Postgres { .. } => {
                return Err(ServerError::Startup(
                    "attaching to a kernel with a PostgreSQL store is not supported".to_owned(),
                ));
            }
        };
        let built = Built {
            kernel,
            source,
            audit,
            identity: None,
            trust: None,
        };
        Self::listen(built, config).await
    }

    async fn listen(built: Built, config: &ServerConfig) -> Result<RunningServer, ServerError> {
        let Built {
            kernel,
            source,
            audit,
            identity,
            trust,
        } = built;
        let admin = match &config.admin_token {
            Some(t) => AdminAuth::from_token(t)?,
            None => AdminAuth::from_file(
                &config
                    .admin_token_file
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("admin.token")),
            )?,
        };
        let metrics = Arc::new(Metrics::new());
        let reloader = Arc::new(Reloader::new(
            Arc::clone(&kernel),
            Arc::clone(&metrics),
            source,
        ));
        let watcher = if config.watch {
            reloader.watch()?
        } else {
            None
        };
        let state = Arc::new(AppState {
            kernel,
            metrics,
            admin,
            limits: config.limits.clone(),
            audit,
            identity,
            durability: config.durability,
            reloader,
            ready: AtomicBool::new(true),
        });
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let unix = match &config.unix_socket {
            Some(path) => Some(bind_unix(path)?),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, unix, Arc::clone(&state), stopped));
        let trust_sync = match &trust {
            Some(book) => Some(book.spawn_sync(config.trust.refresh(), |e| {
                tracing::warn!(error = %e, "trust scores not saved; signals stay queued");
            })?),
            None => None,
        };
        Ok(RunningServer {
            addr,
            unix_socket: config.unix_socket.clone(),
            state,
            stop,
            task,
            _watcher: watcher,
            trust,
            trust_sync,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Unix-domain socket the API is also served on, if configured.
    pub fn unix_socket(&self) -> Option<&Path> {
        self.unix_socket.as_deref()
    }

    /// Where the admin token is (for the startup banner).
    pub fn admin_token_source(&self) -> &TokenSource {
        self.state.admin.source()
    }

    /// The kernel behind the API (for embedding and tests).
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.state.kernel
    }

    /// The sidecar's did:key, when identity is configured.
    pub fn identity_did(&self) -> Option<String> {
        self.state.identity.as_ref().map(|i| i.did().to_string())
    }

    /// The trust book the kernel feeds (`None` for an attached kernel).
    pub fn trust(&self) -> Option<&Arc<TrustBook>> {
        self.trust.as_ref()
    }

    /// Reloads the policy as `SIGHUP` does.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.state.reloader
    }

    /// Stops accepting, lets in-flight requests finish (up to [`DRAIN`]) and
    /// flushes the audit log, so every decision returned is durable, and
    /// saves trust scores.
    pub async fn shutdown(mut self) -> Result<(), warden_kernel::KernelError> {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        if let Some(path) = &self.unix_socket {
            // Only ours: bind_unix refused to start over anything else.
            let _ = std::fs::remove_file(path);
        }
        let kernel = Arc::clone(&self.state.kernel);
        let sync = self.trust_sync.take();
        tokio::task::spawn_blocking(move || {
            // The kernel's flush saves the trust book too (its feed is a sink).
            let flushed = kernel.flush();
            if let Some(sync) = sync {
                sync.stop();
            }
            flushed
        })
        .await
        .map_err(|e| warden_kernel::KernelError::Audit(format!("flush task: {e}")))?
    }
}

/// Binds the Unix-domain socket at `path` (mode 0660: the owner and its
/// group, e.g. the agent's container sharing a volume). A socket file left
/// by a server that is gone is replaced; a live server's socket or any other
/// kind of file is never touched.
fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let fail = |reason: String| ServerError::UnixSocket {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(fail("another server is listening on it".into()));
            }
            std::fs::remove_file(path).map_err(|e| fail(format!("removing stale socket: {e}")))?;
        }
        Ok(_) => return Err(fail("exists and is not a socket".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| fail(format!("setting mode 0660: {e}")))?;
    Ok(listener)
}

/// Accepts from the TCP listener and the optional Unix-domain one, serving
/// every connection with the same router, limits and graceful shutdown.
async fn accept_loop(
    listener: TcpListener,
    unix: Option<UnixListener>,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(Arc::clone(&state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.limits.header_timeout())
        .keep_alive(true);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (Conn::Tcp(stream), peer.to_string())
            }),
            a = accept_unix(unix.as_ref()) => a.map(|(stream, _)| (Conn::Unix(stream), "unix".to_owned())),
            _ = stop.changed() => break,
        };
        let (conn, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning or exiting.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        match conn {
            Conn::Tcp(s) => serve(&http, &graceful, s, service, peer, permit),
            Conn::Unix(s) => serve(&http, &graceful, s, service, peer, permit),
        }
    }
    drop(unix);
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// An accepted connection of either listener.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Accepts on `unix`, or never resolves when there is none.
async fn accept_unix(
    unix: Option<&UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match unix {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection until it closes or the server drains.
fn serve<I, S>(
    http: &hyper::server::conn::http1::Builder,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    io: I,
    service: S,
    peer: String,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(permit);
    });
}
