//! `warden._warden`: the Warden kernel embedded in a Python process.
//!
//! The Python package `warden` (bindings/python/python/warden) re-exports
//! these classes and adds `govern()` and the framework adapters on top. The
//! kernel is built once per `Kernel(...)` (policies compiled at load, never
//! re-parsed); `decide` converts the action dict straight into the strict
//! wire form (`warden_core::Action`, unknown fields rejected) and releases
//! the GIL while the kernel decides.

mod convert;

use convert::{from_py, to_py};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use std::path::PathBuf;
use std::time::Duration;
use warden_core::{Action, Decision as CoreDecision, Obligation};
use warden_kernel::{ArgsMode, Kernel as CoreKernel, KernelError, Outcome};
use warden_runtime::{KillTarget, Usage};

create_exception!(
    _warden,
    WardenError,
    PyException,
    "Base class of every error raised by warden."
);
create_exception!(
    _warden,
    PolicyError,
    WardenError,
    "A policy could not be loaded or reloaded."
);
create_exception!(
    _warden,
    ApprovalError,
    WardenError,
    "An approval could not be resolved (unknown, expired, not an approver, ...)."
);
create_exception!(
    _warden,
    AuditError,
    WardenError,
    "The audit log could not be read, verified or flushed."
);

/// `InvalidAction(WardenError, ValueError)`: built at import because a
/// `create_exception!` type has a single base.
static INVALID_ACTION: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn invalid_action_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_ACTION
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<WardenError>().into_any(),
                    py.get_type::<PyValueError>().into_any(),
                ],
            )?;
            let ns = PyDict::new(py);
            ns.set_item("__module__", "warden")?;
            ns.set_item(
                "__doc__",
                "The action is not a valid wire-form Action (a WardenError and a ValueError).",
            )?;
            let t = py
                .get_type::<PyType>()
                .call1(("InvalidAction", bases, ns))?;
            Ok(t.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// An `InvalidAction` error with `msg`.
fn invalid_action(py: Python<'_>, msg: String) -> PyErr {
    match invalid_action_type(py) {
        Ok(t) => PyErr::from_type(t.clone(), msg),
        Err(e) => e,
    }
}

/// Longest wait `decide_and_wait` accepts; the rule's own timeout bounds it further.
const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

fn kernel_err(e: KernelError) -> PyErr {
    match e {
        KernelError::Policy(e) => PolicyError::new_err(e.to_string()),
        KernelError::Approval(e) => ApprovalError::new_err(e.to_string()),
        KernelError::Audit(e) => AuditError::new_err(e),
        e @ KernelError::Kill(_) => WardenError::new_err(e.to_string()),
    }
}

fn audit_err(e: warden_audit::AuditError) -> PyErr {
    AuditError::new_err(e.to_string())
}

/// Converts a Python object into a validated [`Action`].
fn action_from(obj: &Bound<'_, PyAny>) -> PyResult<Action> {
    let py = obj.py();
    let value = from_py(obj).map_err(|e| invalid_action(py, format!("invalid action: {e}")))?;
    serde_json::from_value(value).map_err(|e| invalid_action(py, format!("invalid action: {e}")))
}

/// The answer for one action: `verdict`, `reasons`, `rule_ids`,
/// `obligations`, `policy_hash`, `decision_id` (the JSON wire form).
#[pyclass(frozen, module = "warden._warden", name = "Decision")]
struct Decision {
    inner: CoreDecision,
}

#[pymethods]
impl Decision {
    /// Builds a Decision from its wire form (a dict or a JSON string), as
    /// returned by `warden serve`. Raises `ValueError` if it is not one.
    #[staticmethod]
    fn from_wire(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let inner: CoreDecision = if let Ok(s) = obj.cast::<PyString>() {
            serde_json::from_str(s.to_str()?)
                .map_err(|e| PyValueError::new_err(format!("invalid decision: {e}")))?
        } else {
            let v = from_py(obj)
                .map_err(|e| PyValueError::new_err(format!("invalid decision: {e}")))?;
            serde_json::from_value(v)
                .map_err(|e| PyValueError::new_err(format!("invalid decision: {e}")))?
        };
        Ok(Decision { inner })
    }

    /// A fail-closed deny carrying `reasons` (first reason should be a
    /// reserved one such as `runtime_error:internal`).
    #[staticmethod]
    #[pyo3(signature = (reasons, policy_hash = String::new()))]
    fn deny(reasons: Vec<String>, policy_hash: String) -> Self {
        Decision {
            inner: CoreDecision {
                verdict: warden_core::Verdict::Deny,
                reasons,
                rule_ids: Vec::new(),
                obligations: Vec::new(),
                policy_hash,
                decision_id: CoreDecision::new_id(),
            },
        }
    }

    /// `"allow"`, `"warn"`, `"deny"`, `"escalate"` or `"transform"`.
    #[getter]
    fn verdict(&self) -> &'static str {
        self.inner.verdict.as_str()
    }

    /// Human-readable reasons (fail-closed denies start with a reserved `runtime_error:*`).
    #[getter]
    fn reasons(&self) -> Vec<String> {
        self.inner.reasons.clone()
    }

    /// Ids of the deciding rules (empty when the policy default applied).
    #[getter]
    fn rule_ids(&self) -> Vec<String> {
        self.inner.rule_ids.clone()
    }

    /// UUIDv7 of this decision (the approval id on escalate; pass it to `record_outcome`).
    #[getter]
    fn decision_id(&self) -> &str {
        &self.inner.decision_id
    }

    /// `sha256:` hash of the policy set that decided.
    #[getter]
    fn policy_hash(&self) -> &str {
        &self.inner.policy_hash
    }

    /// Obligations as wire-form dicts (`{"type": "redact", "path": ...}`, ...).
    #[getter]
    fn obligations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v = serde_json::to_value(&self.inner.obligations)
            .map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// Whether the action may go ahead without a human (allow, warn, transform).
    #[getter]
    fn proceeds(&self) -> bool {
        self.inner.verdict.proceeds()
    }

    /// Applies the `redact` and `replace` obligations to an action dict and
    /// returns the rewritten action (the input is not modified). Raises
    /// `InvalidAction` if the action is invalid and `WardenError` if an
    /// obligation cannot be applied (callers must then not proceed).
    fn apply<'py>(
        &self,
        py: Python<'py>,
        action: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut action = action_from(action)?;
        for o in &self.inner.obligations {
            if matches!(o, Obligation::Redact { .. } | Obligation::Replace { .. }) {
                o.apply(&mut action)
                    .map_err(|e| WardenError::new_err(e.to_string()))?;
            }
        }
        let v = serde_json::to_value(&action).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// The wire form as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let v =
            serde_json::to_value(&self.inner).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// The wire form as JSON text.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| WardenError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Decision(verdict={:?}, reasons={:?}, rule_ids={:?}, decision_id={:?})",
            self.inner.verdict.as_str(),
            self.inner.reasons,
            self.inner.rule_ids,
            self.inner.decision_id
        )
    }
}

/// The Warden kernel in-process: kill switch → identity → ring → quotas →
/// policy → escalation, then the audit record.
///
/// `Kernel(policy, data_dir=None, durability="batched", args_mode="digest")`
/// loads and compiles the policy files or directories once. With `data_dir`,
/// the kill switch is shared through `data_dir/killswitch.json` and every
/// decision, outcome, approval and kill is written to the signed audit log in
/// `data_dir/audit/` (one process at a time may write a data directory).
#[pyclass(frozen, module = "warden._warden", name = "Kernel")]
struct Kernel {
    inner: CoreKernel,
    data_dir: Option<PathBuf>,
}

fn policy_paths(policy: &Bound<'_, PyAny>) -> PyResult<Vec<PathBuf>> {
    if policy.is_instance_of::<PyString>() {
        return Ok(vec![policy.extract()?]);
    }
    if let Ok(p) = policy.extract::<PathBuf>() {
        return Ok(vec![p]);
    }
    let mut out = Vec::new();
    for item in policy.try_iter()? {
        out.push(item?.extract::<PathBuf>()?);
    }
    if out.is_empty() {
        return Err(PyValueError::new_err(
            "policy: at least one path is required",
        ));
    }
    Ok(out)
}

fn kill_target(agent: Option<String>, session: Option<String>, all: bool) -> PyResult<KillTarget> {
    match (agent, session, all) {
        (Some(a), None, false) if !a.is_empty() => Ok(KillTarget::Agent(a)),
        (None, Some(s), false) if !s.is_empty() => Ok(KillTarget::Session(s)),
        (None, None, true) => Ok(KillTarget::All),
        _ => Err(PyValueError::new_err(
            "give exactly one of agent=<id>, session=<id> or all=True",
        )),
    }
}

impl Kernel {
    fn data_dir(&self) -> PyResult<&PathBuf> {
        self.data_dir
            .as_ref()
            .ok_or_else(|| AuditError::new_err("this kernel has no data_dir: nothing is audited"))
    }
}

#[pymethods]
impl Kernel {
    #[new]
    #[pyo3(signature = (policy, data_dir = None, durability = "batched", args_mode = "digest"))]
    fn new(
        py: Python<'_>,
        policy: &Bound<'_, PyAny>,
        data_dir: Option<PathBuf>,
        durability: &str,
        args_mode: &str,
    ) -> PyResult<Self> {
        let paths = policy_paths(policy)?;
        let durability = match durability {
            "batched" => warden_audit::Durability::Batched,
            "sync" => warden_audit::Durability::Sync,
            other => {
                return Err(PyValueError::new_err(format!(
                    "durability must be \"batched\" or \"sync\", not {other:?}"
                )));
            }
        };
        let args_mode = match args_mode {
            "digest" => ArgsMode::Digest,
            "raw" => ArgsMode::Raw,
            other => {
                return Err(PyValueError::new_err(format!(
                    "args_mode must be \"digest\" or \"raw\", not {other:?}"
                )));
            }
        };
        let dir = data_dir.clone();
        let inner = py
            .detach(move || -> Result<CoreKernel, KernelError> {
                let handle = warden_policy::PolicyHandle::load(&paths)?;
                let mut b = CoreKernel::builder(handle).args_mode(args_mode);
                if let Some(dir) = &dir {
                    b = b.data_dir(dir, durability)?;
                }
                b.build()
            })
            .map_err(kernel_err)?;
        Ok(Kernel { inner, data_dir })
    }

    /// `sha256:` hash of the policy set in force.
    #[getter]
    fn policy_hash(&self) -> String {
        self.inner.policy().hash().to_owned()
    }

    /// Decides one action (a dict in the JSON wire form: `point`, `agent`,
    /// `session`, `tool`, `args`, `context`). Never allows on error: an
    /// invalid action raises `InvalidAction` (a `ValueError`), every failure
    /// inside the kernel is a deny with a reason. The GIL is released while
    /// the kernel decides. An `escalate` opens a pending approval.
    fn decide(&self, py: Python<'_>, action: &Bound<'_, PyAny>) -> PyResult<Decision> {
        let action = action_from(action)?;
        let inner = py.detach(|| self.inner.decide(&action));
        Ok(Decision { inner })
    }

    /// As `decide`, with the action given as JSON text.
    fn decide_json(&self, py: Python<'_>, action: &str) -> PyResult<Decision> {
        let action: Action = serde_json::from_str(action)
            .map_err(|e| invalid_action(py, format!("invalid action: {e}")))?;
        let inner = py.detach(|| self.inner.decide(&action));
        Ok(Decision { inner })
    }

    /// Decides and, on `escalate`, blocks (GIL released) until an approver
    /// answers, the rule's timeout passes, or `timeout` seconds pass
    /// (`None`: the rule's timeout). Returns the final decision with the same
    /// id: `allow` when approved, `deny` (`approval:denied` /
    /// `approval:timeout`) otherwise.
    #[pyo3(signature = (action, timeout = None))]
    fn decide_and_wait(
        &self,
        py: Python<'_>,
        action: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<Decision> {
        let wait = match timeout {
            None => MAX_WAIT,
            Some(t) if t.is_finite() && t >= 0.0 => {
                Duration::try_from_secs_f64(t).map_or(MAX_WAIT, |d| d.min(MAX_WAIT))
            }
            Some(t) => {
                return Err(PyValueError::new_err(format!(
                    "timeout must be a non-negative number of seconds, not {t}"
                )));
            }
        };
        let action = action_from(action)?;
        let inner = py.detach(|| self.inner.decide_and_wait(&action, wait));
        Ok(Decision { inner })
    }

    /// Records how an executed action went (audited) and charges `tokens`
    /// and `cost` to the policy's budgets. `error=None` means success.
    #[pyo3(signature = (decision_id, error = None, latency_s = 0.0, output_digest = None, tokens = 0, cost = 0.0))]
    // The Python keyword signature mirrors the wire fields of an outcome.
    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &self,
        py: Python<'_>,
        decision_id: &str,
        error: Option<String>,
        latency_s: f64,
        output_digest: Option<String>,
        tokens: u64,
        cost: f64,
    ) -> PyResult<()> {
        if !cost.is_finite() || cost < 0.0 {
            return Err(PyValueError::new_err(
                "cost must be a finite non-negative number",
            ));
        }
        let latency = if latency_s.is_finite() && latency_s >= 0.0 {
            Duration::try_from_secs_f64(latency_s).unwrap_or(Duration::MAX)
        } else {
            return Err(PyValueError::new_err(
                "latency_s must be a finite non-negative number",
            ));
        };
        let outcome = Outcome {
            error,
            latency,
            output_digest,
            usage: Usage { tokens, cost },
        };
        py.detach(|| self.inner.record_outcome(decision_id, outcome))
            .map_err(kernel_err)
    }

    /// Pending approvals as dicts (`id`, `agent`, `session`, `point`, `tool`,
    /// `reasons`, `rule_ids`, `approvers`, `created_ms`, `deadline_ms`).
    fn pending_approvals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let pending = py.detach(|| self.inner.pending_approvals());
        let v = serde_json::to_value(&pending).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// An approver's answer to a pending escalation (audited with the
    /// approver's identity). Returns the resolution as a dict; raises
    /// `ApprovalError` for unknown/expired approvals or non-listed approvers.
    #[pyo3(signature = (decision_id, approve, approver, reason = None))]
    fn resolve_approval<'py>(
        &self,
        py: Python<'py>,
        decision_id: &str,
        approve: bool,
        approver: &str,
        reason: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let r = py
            .detach(|| {
                self.inner
                    .resolve_approval(decision_id, approver, approve, reason)
            })
            .map_err(kernel_err)?;
        let v = serde_json::to_value(&r).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// Kills an agent, a session or everything (exactly one of `agent=`,
    /// `session=`, `all=True`): effective for the next decision. Audited.
    #[pyo3(signature = (*, agent = None, session = None, all = false, reason, by = None))]
    fn kill(
        &self,
        agent: Option<String>,
        session: Option<String>,
        all: bool,
        reason: &str,
        by: Option<&str>,
    ) -> PyResult<()> {
        let target = kill_target(agent, session, all)?;
        self.inner.kill(target, reason, by).map_err(kernel_err)
    }

    /// Lifts a kill (same targets as `kill`). Audited. Returns whether one was active.
    #[pyo3(signature = (*, agent = None, session = None, all = false, by = None))]
    fn unkill(
        &self,
        agent: Option<String>,
        session: Option<String>,
        all: bool,
        by: Option<&str>,
    ) -> PyResult<bool> {
        let target = kill_target(agent, session, all)?;
        self.inner.unkill(target, by).map_err(kernel_err)
    }

    /// Reloads the policy files; on error the old policy stays in force
    /// (raises `PolicyError`). Returns the new policy hash.
    fn reload_policy(&self, py: Python<'_>) -> PyResult<String> {
        let set = py
            .detach(|| self.inner.reload_policy())
            .map_err(kernel_err)?;
        Ok(set.hash().to_owned())
    }

    /// Waits until every audit record handed over so far is durable (and signed).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush()).map_err(kernel_err)
    }

    /// Flushes, then returns the latest signed tree head of the audit log
    /// (`size`, `root`, `timestamp`, `key_id`, `signature`), signature
    /// checked; `None` if none was written. Needs `data_dir`.
    fn audit_head<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dir = self.data_dir()?;
        let sth = py.detach(|| -> PyResult<_> {
            self.inner.flush().map_err(kernel_err)?;
            let mut reader = warden_audit::LogReader::open(dir).map_err(audit_err)?;
            reader.latest_sth().map_err(audit_err)
        })?;
        let v = serde_json::to_value(&sth).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// Flushes, then verifies the whole audit log (signatures, frames,
    /// Merkle roots). Returns the report as a dict; raises `AuditError`
    /// naming the first violation. Needs `data_dir`.
    fn audit_verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let dir = self.data_dir()?;
        let report = py.detach(|| -> PyResult<_> {
            self.inner.flush().map_err(kernel_err)?;
            warden_audit::verify(dir, &warden_audit::VerifyOptions::default()).map_err(audit_err)
        })?;
        let v = serde_json::to_value(&report).map_err(|e| WardenError::new_err(e.to_string()))?;
        to_py(py, &v)
    }

    /// Flushes, then returns the audit records from index `start` on, as
    /// dicts (`type`: `policy_loaded`, `decision`, `outcome`, `approval`,
    /// `kill`, `unkill`). Needs `data_dir`.
    #[pyo3(signature = (start = 0))]
    fn audit_records<'py>(&self, py: Python<'py>, start: u64) -> PyResult<Bound<'py, PyList>> {
        let dir = self.data_dir()?;
        let values = py.detach(|| -> PyResult<Vec<serde_json::Value>> {
            self.inner.flush().map_err(kernel_err)?;
            let mut out = Vec::new();
            for r in warden_audit::records(dir, start).map_err(audit_err)? {
                let r = r.map_err(audit_err)?;
                out.push(r.json().map_err(|e| AuditError::new_err(e.to_string()))?);
            }
            Ok(out)
        })?;
        let list = PyList::empty(py);
        for v in &values {
            list.append(to_py(py, v)?)?;
        }
        Ok(list)
    }

    /// Benchmark support (bench.py): decides `action` `n` times in a Rust
    /// loop (GIL released) and returns the elapsed nanoseconds, so the
    /// binding's per-call overhead can be told apart from the kernel's.
    fn _rust_decide_loop(
        &self,
        py: Python<'_>,
        action: &Bound<'_, PyAny>,
        n: u64,
    ) -> PyResult<u64> {
        let action = action_from(action)?;
        let elapsed = py.detach(|| {
            let start = std::time::Instant::now();
            for _ in 0..n {
                std::hint::black_box(self.inner.decide(std::hint::black_box(&action)));
            }
            start.elapsed()
        });
        Ok(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX))
    }

    fn __repr__(&self) -> String {
        format!(
            "Kernel(policy_hash={:?}, data_dir={:?})",
            self.inner.policy().hash(),
            self.data_dir
        )
    }
}

/// The native module.
#[pymodule]
fn _warden(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Kernel>()?;
    m.add_class::<Decision>()?;
    m.add("WardenError", py.get_type::<WardenError>())?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("InvalidAction", invalid_action_type(py)?)?;
    m.add("ApprovalError", py.get_type::<ApprovalError>())?;
    m.add("AuditError", py.get_type::<AuditError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
