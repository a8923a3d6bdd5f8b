//! One upstream MCP server as a gateway holds it: the running generation
//! (its input queue and reader task), restarts with back-off, the requests
//! the gateway sends it itself, and the client's handshake replayed to a
//! restarted server. The single-server gateway (conn.rs) has one slot, the
//! multi-upstream hub (multi.rs) one per upstream; how a generation is
//! started (a stdio process, an HTTP session) is the caller's.

use crate::calls::{MAX_PAGES, next_cursor, page_params};
use crate::conn::{OWN_ID_PREFIX, OWN_REQUEST_TIMEOUT};
use crate::gate::REASON_UPSTREAM_DOWN;
use crate::jsonrpc::{id_key, line};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// First delay before restarting a crashed server; doubles per crash up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between restart attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A server that stayed up this long starts the next crash at the initial backoff.
const STABLE_UPTIME: Duration = Duration::from_secs(10);

/// A started generation: the queue its messages are written to and the
/// task that reads (and finally reaps) it.
pub(crate) type Started = (mpsc::Sender<Vec<u8>>, JoinHandle<()>);

/// When a crashed server may be restarted: [`INITIAL_BACKOFF`] after the
/// first crash, doubling per crash up to [`MAX_BACKOFF`], back to the
/// initial delay once a server stayed up [`STABLE_UPTIME`].
#[derive(Debug)]
struct Restarts {
    next_attempt: Instant,
    backoff: Duration,
}

impl Restarts {
    fn new() -> Self {
        Restarts {
            next_attempt: Instant::now(),
            backoff: INITIAL_BACKOFF,
        }
    }

    /// `Err(text)` while the back-off runs.
    fn may_start(&self) -> Result<(), String> {
        let now = Instant::now();
        if now < self.next_attempt {
            return Err(format!(
                "{REASON_UPSTREAM_DOWN}: the MCP server exited; next restart attempt in {} ms",
                (self.next_attempt - now).as_millis()
            ));
        }
        Ok(())
    }

    /// A start failed (or a server exited): wait before the next attempt.
    fn failed(&mut self) {
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// A server that had been up for `uptime` exited.
    fn exited(&mut self, uptime: Duration) {
        if uptime > STABLE_UPTIME {
            self.backoff = INITIAL_BACKOFF;
        }
        self.failed();
    }
}

struct Running {
    tx: mpsc::Sender<Vec<u8>>,
    generation: u64,
    started: Instant,
}

type Waiter = oneshot::Sender<Result<Value, String>>;

struct SlotState {
    running: Option<Running>,
    generation: u64,
    restarts: Restarts,
    reader: Option<JoinHandle<()>>,
    /// The gateway's own requests to this server, by id.
    own: HashMap<String, Waiter>,
    /// The client's `initialize` params and `initialized` notification,
    /// replayed to a restarted server.
    init: Option<Value>,
    initialized: Option<Vec<u8>>,
}

/// One upstream server slot (see the module doc).
pub(crate) struct Slot {
    /// `None`: the single gateway's only server; else the upstream's name (in messages).
    name: Option<String>,
    /// Source of the numbers in own request ids; shared with whatever else
    /// issues `warden-gw-` ids to the same server, so they never collide.
    ids: Arc<AtomicU64>,
    st: Mutex<SlotState>,
    /// Held while a restart (start and handshake replay) is under way.
    restart: tokio::sync::Mutex<()>,
}

fn lock(m: &Mutex<SlotState>) -> MutexGuard<'_, SlotState> {
    // Plain data: a panic elsewhere cannot leave it unsafe to read.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    /// An empty slot (nothing started yet, a start allowed at once).
    pub(crate) fn new(name: Option<String>, ids: Arc<AtomicU64>) -> Self {
        Slot {
            name,
            ids,
            st: Mutex::new(SlotState {
                running: None,
                generation: 0,
                restarts: Restarts::new(),
                reader: None,
                own: HashMap::new(),
                init: None,
                initialized: None,
            }),
            restart: tokio::sync::Mutex::new(()),
        }
    }

    /// The server as named in the gateway's messages.
    fn who(&self) -> String {
        match &self.name {
            Some(n) => format!("upstream `{n}`"),
            None => "the MCP server".to_owned(),
        }
    }

    /// `mcp:upstream_unavailable` text for a failed (re)start.
    fn down(&self, e: &str) -> String {
        match &self.name {
            Some(n) => format!("{REASON_UPSTREAM_DOWN}: upstream `{n}`: {e}"),
            None => format!("{REASON_UPSTREAM_DOWN}: {e}"),
        }
    }

    /// Starts the next generation with `spawn(generation)`. The slot stays
    /// locked meanwhile, so a generation that ends at once is recorded as
    /// running before its exit is seen (and not left behind as running).
    /// A failed start counts towards the back-off.
    pub(crate) fn start(
        &self,
        spawn: impl FnOnce(u64) -> Result<Started, String>,
    ) -> Result<(), String> {
        let mut st = lock(&self.st);
        st.generation += 1;
        let generation = st.generation;
        match spawn(generation) {
            Ok((tx, reader)) => {
                st.running = Some(Running {
                    tx,
                    generation,
                    started: Instant::now(),
                });
                st.reader = Some(reader);
                Ok(())
            }
            Err(e) => {
                st.restarts.failed();
                Err(e)
            }
        }
    }

    /// The running generation's input and number, if one runs.
    fn current(&self) -> Option<(mpsc::Sender<Vec<u8>>, u64)> {
        lock(&self.st)
            .running
            .as_ref()
            .map(|r| (r.tx.clone(), r.generation))
    }

    /// The running server's input and generation, restarting a crashed
    /// server with `spawn` (with back-off; the client's handshake replayed,
    /// the server's `initialize` result handed to `on_init`) if needed.
    pub(crate) async fn running(
        &self,
        spawn: impl FnOnce(u64) -> Result<Started, String>,
        on_init: impl FnOnce(&Value),
    ) -> Result<(mpsc::Sender<Vec<u8>>, u64), String> {
        if let Some(r) = self.current() {
            return Ok(r);
        }
        let _restart = self.restart.lock().await;
        let (init, initialized) = {
            let st = lock(&self.st);
            if let Some(r) = &st.running {
                return Ok((r.tx.clone(), r.generation));
            }
            st.restarts.may_start().map_err(|e| match &self.name {
                Some(n) => format!("{e} (upstream `{n}`)"),
                None => e,
            })?;
            (st.init.clone(), st.initialized.clone())
        };
        match &self.name {
            Some(n) => eprintln!("warden mcp: starting upstream `{n}`"),
            None => eprintln!("warden mcp: restarting the MCP server"),
        }
        self.start(spawn).map_err(|e| self.down(&e))?;
        if let Some(params) = init {
            match self.request("initialize", params).await {
                Ok(r) => on_init(&r),
                Err(e) => {
                    let mut st = lock(&self.st);
                    st.running = None;
                    st.restarts.failed();
                    return Err(self.down(&format!("restarted server failed to initialize: {e}")));
                }
            }
            if let Some(mut note) = initialized {
                note.push(b'\n');
                if let Some((tx, _)) = self.current() {
                    let _ = tx.send(note).await;
                }
            }
        }
        self.current()
            .ok_or_else(|| self.down("the restarted server exited"))
    }

    /// Remembers the client's `initialize` params for restarts.
    pub(crate) fn remember_init(&self, params: Value) {
        lock(&self.st).init = Some(params);
    }

    /// Remembers the client's `notifications/initialized` message for restarts.
    pub(crate) fn remember_initialized(&self, bytes: Vec<u8>) {
        lock(&self.st).initialized = Some(bytes);
    }

    /// Sends a request of the gateway's own to the running server (no
    /// restart) and waits for its result, at most [`OWN_REQUEST_TIMEOUT`].
    pub(crate) async fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{OWN_ID_PREFIX}{n}"));
        let key = id_key(&id);
        let (wtx, rx) = oneshot::channel();
        let tx = {
            // Registered under the same lock that saw the server running:
            // its exit then answers the waiter instead of leaving it to time out.
            let mut st = lock(&self.st);
            let tx = st
                .running
                .as_ref()
                .map(|r| r.tx.clone())
                .ok_or("the MCP server is not running")?;
            st.own.insert(key.clone(), wtx);
            tx
        };
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if tx.send(line(&msg)).await.is_err() {
            lock(&self.st).own.remove(&key);
            return Err("the MCP server is not running".to_owned());
        }
        match tokio::time::timeout(OWN_REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the MCP server exited".to_owned()),
            Err(_) => {
                lock(&self.st).own.remove(&key);
                Err(format!(
                    "no answer to {method} within {OWN_REQUEST_TIMEOUT:?}"
                ))
            }
        }
    }

    /// Every page of the list `method` from the running server (requests of
    /// the gateway's own carrying the client's `_meta`), each result handed
    /// to `page` in order with whether it is the first.
    pub(crate) async fn pages(
        &self,
        method: &str,
        meta: Option<&Value>,
        mut page: impl FnMut(Value, bool),
    ) -> Result<(), String> {
        let mut cursor: Option<Value> = None;
        for n in 0..MAX_PAGES {
            let params = page_params(cursor.as_ref(), meta);
            let result = self.request(method, params).await?;
            cursor = next_cursor(&result);
            page(result, n == 0);
            if cursor.is_none() {
                return Ok(());
            }
        }
        Err(format!("more than {MAX_PAGES} pages of {method}"))
    }

    /// If `msg` (whose id is `key`) answers one of the gateway's own
    /// requests, hands it to the waiter and says so.
    pub(crate) fn answer(&self, key: &str, msg: &Value) -> bool {
        let Some(waiter) = lock(&self.st).own.remove(key) else {
            return false;
        };
        let r = match msg.get("result") {
            Some(r) => Ok(r.clone()),
            None => Err(msg.get("error").map(|e| e.to_string()).unwrap_or_default()),
        };
        let _ = waiter.send(r);
        true
    }

    /// If `key` is one of the gateway's own requests, fails it with `why`
    /// (the server will not answer it) and says so.
    pub(crate) fn fail_own(&self, key: &str, why: &str) -> bool {
        let Some(waiter) = lock(&self.st).own.remove(key) else {
            return false;
        };
        let _ = waiter.send(Err(why.to_owned()));
        true
    }

    /// The server of `generation` is gone. When that is the running one it
    /// is let go (the back-off counts its uptime), the gateway's own requests
    /// fail, and `true` says the caller has its requests to fail; a stale
    /// generation changes nothing.
    pub(crate) fn exited(&self, generation: u64) -> bool {
        {
            let mut st = lock(&self.st);
            let Some(r) = &st.running else { return false };
            if r.generation != generation {
                return false;
            }
            let uptime = r.started.elapsed();
            st.running = None;
            st.restarts.exited(uptime);
            for (_, waiter) in st.own.drain() {
                let _ = waiter.send(Err("the MCP server exited".to_owned()));
            }
        }
        eprintln!("warden mcp: {} exited", self.who());
        true
    }

    /// Lets go of the running server (a stdio server's stdin closes, asking
    /// it to exit; an HTTP session is deleted) and waits up to 5 s for its
    /// reader to finish (reaping it), then aborts the reader.
    pub(crate) async fn stop(&self) {
        let reader = {
            let mut st = lock(&self.st);
            st.running = None;
            st.reader.take()
        };
        if let Some(mut reader) = reader
            && tokio::time::timeout(Duration::from_secs(5), &mut reader)
                .await
                .is_err()
        {
            reader.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn slot() -> Arc<Slot> {
        Arc::new(Slot::new(None, Arc::new(AtomicU64::new(1))))
    }

    /// A slot running generation 1, and what is written to that server.
    fn running_slot() -> (Arc<Slot>, mpsc::Receiver<Vec<u8>>) {
        let s = slot();
        let (tx, rx) = mpsc::channel(8);
        s.start(|_| Ok((tx, tokio::spawn(async {})))).unwrap();
        (s, rx)
    }

    /// A request of the gateway's own on its way, and the message the server got.
    async fn pending(
        s: &Arc<Slot>,
        rx: &mut mpsc::Receiver<Vec<u8>>,
        method: &'static str,
    ) -> (JoinHandle<Result<Value, String>>, Value) {
        let me = Arc::clone(s);
        let task = tokio::spawn(async move { me.request(method, json!({})).await });
        let sent = serde_json::from_slice(&rx.recv().await.unwrap()).unwrap();
        (task, sent)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_generation_that_ends_at_once_is_not_left_running() {
        let s = slot();
        let (tx, _rx) = mpsc::channel(8);
        let me = Arc::clone(&s);
        s.start(|generation| {
            let reader = tokio::spawn(async move {
                me.exited(generation);
            });
            // The reader reports its exit while the start is still under way.
            std::thread::sleep(Duration::from_millis(50));
            Ok((tx, reader))
        })
        .unwrap();
        let reader = lock(&s.st).reader.take().unwrap();
        reader.await.unwrap();
        assert!(s.current().is_none(), "an exited generation stayed running");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn own_requests_fail_on_exit_and_the_back_off_holds_restarts() {
        let (s, mut rx) = running_slot();
        let (pending, sent) = pending(&s, &mut rx, "ping").await;
        assert!(sent["id"].as_str().unwrap().starts_with(OWN_ID_PREFIX));
        // A stale generation changes nothing.
        assert!(!s.exited(7));
        assert!(s.current().is_some());
        assert!(s.exited(1));
        assert_eq!(
            pending.await.unwrap(),
            Err("the MCP server exited".to_owned())
        );
        let mut started = false;
        let e = s
            .running(
                |_| {
                    started = true;
                    Err("must not start during the back-off".to_owned())
                },
                |_| {},
            )
            .await
            .unwrap_err();
        assert!(!started);
        assert!(e.starts_with(REASON_UPSTREAM_DOWN) && e.contains("next restart attempt"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_reach_only_the_request_they_name() {
        let (s, mut rx) = running_slot();
        let (ok, a) = pending(&s, &mut rx, "a").await;
        let (err, b) = pending(&s, &mut rx, "b").await;
        assert_ne!(a["id"], b["id"]);
        assert!(!s.answer(&id_key(&json!("warden-gw-99")), &json!({"result": {}})));
        let (a_id, b_id) = (id_key(&a["id"]), id_key(&b["id"]));
        assert!(s.answer(&a_id, &json!({"id": a["id"], "result": {"x": 1}})));
        assert!(s.answer(&b_id, &json!({"id": b["id"], "error": {"code": -1}})));
        // Answered once: a second answer is nobody's.
        assert!(!s.answer(&a_id, &json!({"result": {}})));
        let (ok, err) = (ok.await.unwrap(), err.await.unwrap());
        assert_eq!(ok, Ok(json!({"x": 1})));
        assert!(err.unwrap_err().contains("-1"));
    }
}
