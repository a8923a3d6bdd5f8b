//! The kernel on a real data directory: verifiable audit, crash safety, shared kill state.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use warden_audit::Durability;
use warden_core::{Action, Verdict};
use warden_kernel::Kernel;
use warden_policy::{PolicyHandle, PolicySet};
use warden_runtime::{KillSwitch, KillTarget};

const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: durable\ndefault: allow\nrules:\n  - id: no-rm\n    tools: [rm]\n    effect: deny\n";

fn kernel(dir: &Path, durability: Durability) -> Kernel {
    Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
        .data_dir(dir, durability)
        .unwrap()
        .build()
        .unwrap()
}

fn logged(dir: &Path) -> Vec<serde_json::Value> {
    warden_audit::records(dir, 0)
        .unwrap()
        .map(|r| r.unwrap().json().unwrap())
        .collect()
}

#[test]
fn decisions_land_in_a_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let k = kernel(dir.path(), Durability::Batched);
        for i in 0..500 {
            let tool = if i % 5 == 0 { "rm" } else { "ls" };
            let a = Action::tool_call("bot", tool)
                .unwrap()
                .with_args(json!({"i": i}).as_object().unwrap().clone());
            ids.push(k.decide(&a).decision_id);
        }
        k.flush().unwrap();
    }
    let report = warden_audit::verify(dir.path(), &Default::default()).unwrap();
    assert_eq!(report.records, 501, "policy_loaded + 500 decisions");
    let recs = logged(dir.path());
    assert_eq!(recs[0]["type"], "policy_loaded");
    let logged_ids: Vec<&str> = recs[1..]
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        logged_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "in decision order"
    );
    assert_eq!(recs[1]["verdict"], "deny");
    // Reopening continues the same log.
    let k = kernel(dir.path(), Durability::Sync);
    k.decide(&Action::tool_call("bot", "ls").unwrap());
    drop(k);
    assert_eq!(
        warden_audit::verify(dir.path(), &Default::default())
            .unwrap()
            .records,
        503
    );
}

#[test]
fn kill_from_another_process_is_enforced_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let k = kernel(dir.path(), Durability::Batched);
    let other = KillSwitch::open(dir.path(), Duration::from_secs(3600)).unwrap();
    other
        .kill(
            KillTarget::Agent("bot".into()),
            "remote stop",
            Some("oncall"),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = k.decide(&Action::tool_call("bot", "ls").unwrap());
        if d.verdict == Verdict::Deny {
            assert_eq!(d.reasons[0], "killed:agent");
            break;
        }
        assert!(Instant::now() < deadline, "kill never observed");
        std::thread::sleep(Duration::from_millis(2));
    }
    k.flush().unwrap();
    drop(k);
    let recs = logged(dir.path());
    assert!(
        recs.iter()
            .any(|r| r["type"] == "kill" && r["reason"] == "remote stop" && r["by"] == "oncall"),
        "{recs:?}"
    );
}

/// Child side of the crash test: decides forever in sync mode, printing each returned id.
#[test]
fn crash_child_entry() {
    let Ok(dir) = std::env::var("WARDEN_CRASH_CHILD_DIR") else {
        return;
    };
    let k = kernel(Path::new(&dir), Durability::Sync);
    let out = std::io::stdout();
    for i in 0u64.. {
        let a = Action::tool_call("bot", if i % 3 == 0 { "rm" } else { "ls" }).unwrap();
        let d = k.decide(&a);
        use std::io::Write;
        let mut lock = out.lock();
        writeln!(lock, "ID {}", d.decision_id).unwrap();
        lock.flush().unwrap();
    }
}

#[test]
fn sigkill_mid_load_loses_no_returned_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_entry",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("WARDEN_CRASH_CHILD_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("ID ").map(str::to_owned))
            .collect::<Vec<_>>()
    });
    // Let it get well into its load, then SIGKILL it.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(800) {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let returned = reader.join().unwrap();
    assert!(
        returned.len() > 10,
        "child made only {} decisions",
        returned.len()
    );
    // After restart the log verifies and holds every decision the child saw returned.
    let k = kernel(dir.path(), Durability::Sync);
    drop(k);
    let report = warden_audit::verify(dir.path(), &Default::default()).unwrap();
    let ids: HashSet<String> = logged(dir.path())
        .iter()
        .filter(|r| r["type"] == "decision")
        .map(|r| r["decision_id"].as_str().unwrap().to_owned())
        .collect();
    for id in &returned {
        assert!(
            ids.contains(id),
            "decision {id} was returned but is not in the log"
        );
    }
    assert!(report.records as usize >= returned.len());
}
