//! The kernel auditing into the shared PostgreSQL log (feature `postgres`;
//! needs the local PostgreSQL that scripts/services.sh starts).
#![cfg(feature = "postgres")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use warden_audit::pg::{PgAuditLog, execute_sql, pg_verify};
use warden_audit::{AuditConfig, Durability};
use warden_core::{Action, Verdict};
use warden_kernel::{AuditEvent, Kernel};
use warden_policy::{PolicyHandle, PolicySet};

const URL: &str = "postgres://root@127.0.0.1:5432/test";
const POLICY: &str = "apiVersion: warden.dev/v1\nkind: Policy\nname: pg\ndefault: allow\nrules:\n  - id: no-rm\n    tools: [rm]\n    effect: deny\n";

#[test]
fn two_kernels_share_one_verifiable_log() {
    let schema = format!(
        "warden_kernel_test_{}_{}",
        std::process::id(),
        warden_core::Decision::new_id().replace('-', "")[20..].to_owned()
    );
    let keys = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let kernels: Vec<Kernel> = keys
        .iter()
        .map(|k| {
            let log = PgAuditLog::<AuditEvent>::open(
                URL,
                &schema,
                k.path(),
                AuditConfig {
                    durability: Durability::Batched,
                    ..AuditConfig::default()
                },
            )
            .unwrap();
            Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(POLICY).unwrap()))
                .audit(Arc::new(log))
                .build()
                .unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for k in &kernels {
            s.spawn(move || {
                for i in 0..200 {
                    let d = k.decide(
                        &Action::tool_call("bot", if i % 4 == 0 { "rm" } else { "ls" }).unwrap(),
                    );
                    assert_eq!(
                        d.verdict,
                        if i % 4 == 0 {
                            Verdict::Deny
                        } else {
                            Verdict::Allow
                        }
                    );
                }
            });
        }
    });
    for k in &kernels {
        k.flush().unwrap();
    }
    drop(kernels);
    let report = pg_verify(URL, &schema, None).unwrap();
    assert_eq!(report.records, 402, "2 policy_loaded + 400 decisions");
    execute_sql(URL, &format!("DROP SCHEMA {schema} CASCADE")).unwrap();
}
