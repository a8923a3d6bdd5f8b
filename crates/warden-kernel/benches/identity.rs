//! What the identity stage adds to `Kernel::decide` on the session-credential
//! path: `kernel-full/100-rules/no-audit` without and with the stage, same
//! policy and action (the action's agent is the session's did:key).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use warden_identity::{Gate, GateConfig, Identity, Scope, handshake};
use warden_kernel::{IdentityStage, Kernel};
use warden_policy::{PolicyHandle, PolicySet, workloads};

fn policy() -> PolicyHandle {
    PolicyHandle::new(PolicySet::from_yaml(&workloads::policy_n_yaml(100)).unwrap())
}

fn identity(c: &mut Criterion) {
    let server = Identity::generate().unwrap();
    let gate = Arc::new(Gate::new(GateConfig::new(server.did().as_str())));
    let agent = Identity::generate().unwrap();
    gate.add_anchor(agent.did(), Scope::tools(&["action_*"]).unwrap())
        .unwrap();
    let (a, s) = UnixStream::pair().unwrap();
    let credential = std::thread::scope(|sc| {
        let client = sc.spawn(|| handshake::connect(a, &agent, None, None).unwrap());
        handshake::serve(s, &server, &gate).unwrap();
        client.join().unwrap().credential
    });
    let mut action = workloads::action_for("action_99").unwrap();
    action.agent = agent.did().to_string();
    action.credential = Some(credential);

    let mut g = c.benchmark_group("kernel");
    let bare = Kernel::builder(policy()).build().unwrap();
    g.bench_function("kernel-full/100-rules/no-audit/identity-off", |b| {
        b.iter(|| black_box(bare.decide(black_box(&action))))
    });
    let with = Kernel::builder(policy())
        .stage(Box::new(IdentityStage::new(Arc::clone(&gate))))
        .build()
        .unwrap();
    let decided = with.decide(&action);
    assert!(
        !decided.reasons.iter().any(|r| r.starts_with("identity:")),
        "{decided:?}"
    );
    assert_eq!(decided.verdict, bare.decide(&action).verdict);
    g.bench_function("kernel-full/100-rules/no-audit/identity-session", |b| {
        b.iter(|| black_box(with.decide(black_box(&action))))
    });
    g.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
