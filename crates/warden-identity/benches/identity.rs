//! Criterion benches: envelope verification (single and a batch of 64),
//! delegation chain verification cold vs cached, and the per-call
//! session-credential check (the identity stage's hot path; target ≤150 ns).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::os::unix::net::UnixStream;
use warden_core::Point;
use warden_identity::{
    ChainCache, ChainLimits, Claims, EnvelopeVerifier, Gate, GateConfig, Identity, Request, Scope,
    Validation, delegate, handshake, jws, now_secs, verify_chain,
};

fn envelope(signer: &Identity) -> String {
    let c = Claims::new(signer, "svc", 60, now_secs())
        .unwrap()
        .with_payload(serde_json::json!({"point": "pre_tool_call", "tool": "fs.read"}));
    jws::sign(signer, &c).unwrap()
}

fn envelopes(c: &mut Criterion) {
    let signer = Identity::generate().unwrap();
    let mut g = c.benchmark_group("identity");
    let v = EnvelopeVerifier::new(Validation::new("svc"), 1 << 24);
    g.bench_function("envelope-verify/single", |b| {
        b.iter_batched(
            || envelope(&signer),
            |t| black_box(v.verify(&t, now_secs()).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("envelope-verify/batch-64", |b| {
        b.iter_batched(
            || (0..64).map(|_| envelope(&signer)).collect::<Vec<_>>(),
            |ts| {
                let refs: Vec<&str> = ts.iter().map(String::as_str).collect();
                let r = v.verify_batch(&refs, now_secs());
                assert!(r.iter().all(Result::is_ok));
                black_box(r)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn chains(c: &mut Criterion) {
    let ids: Vec<Identity> = (0..4).map(|_| Identity::generate().unwrap()).collect();
    let l = ChainLimits::default();
    let now = now_secs();
    let mut token = delegate(
        &ids[0],
        ids[1].did(),
        Scope::tools(&["fs.*", "net.*"]).unwrap(),
        3600,
        None,
        &l,
        now,
    )
    .unwrap();
    token = delegate(
        &ids[1],
        ids[2].did(),
        Scope::tools(&["fs.*"]).unwrap(),
        1800,
        Some(&token),
        &l,
        now,
    )
    .unwrap();
    token = delegate(
        &ids[2],
        ids[3].did(),
        Scope::tools(&["fs.read"]).unwrap(),
        900,
        Some(&token),
        &l,
        now,
    )
    .unwrap();
    let mut g = c.benchmark_group("identity");
    g.bench_function("chain-verify/depth-3/cold", |b| {
        b.iter(|| black_box(verify_chain(black_box(&token), &l, now_secs()).unwrap()))
    });
    let cache = ChainCache::new(l, 1024);
    cache.get_or_verify(&token, now).unwrap();
    g.bench_function("chain-verify/depth-3/cached", |b| {
        b.iter(|| black_box(cache.get_or_verify(black_box(&token), now_secs()).unwrap()))
    });
    g.finish();
}

fn sessions(c: &mut Criterion) {
    let server = Identity::generate().unwrap();
    let gate = Gate::new(GateConfig::new(server.did().as_str()));
    let agent = Identity::generate().unwrap();
    gate.add_anchor(
        agent.did(),
        Scope::tools(&["fs.*", "net.get", "search.*"]).unwrap(),
    )
    .unwrap();
    let (a, s) = UnixStream::pair().unwrap();
    let credential = std::thread::scope(|sc| {
        let client = sc.spawn(|| handshake::connect(a, &agent, None, None).unwrap());
        handshake::serve(s, &server, &gate).unwrap();
        client.join().unwrap().credential
    });
    let did = agent.did().to_string();
    let req = Request {
        agent: &did,
        point: Point::PreToolCall,
        tool: Some("fs.read"),
    };
    let mut g = c.benchmark_group("identity");
    // Includes reading the clock, as the kernel stage does per call.
    g.bench_function("session-check", |b| {
        b.iter(|| {
            gate.authenticate(black_box(&credential), black_box(&req), now_secs())
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, envelopes, chains, sessions);
criterion_main!(benches);
