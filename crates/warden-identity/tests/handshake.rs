//! The handshake across two real processes over loopback TCP: this test
//! binary re-executes itself as the agent (`peer_agent`, which does nothing
//! unless the parent set `WARDEN_HS_ROLE`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use warden_core::Point;
use warden_identity::{
    ChainLimits, Claims, Did, Gate, GateConfig, Identity, Request, Scope, delegate, handshake, jws,
    now_secs,
};

fn env(name: &str) -> String {
    std::env::var(name).unwrap()
}

/// The agent process. Roles: `agent` (normal handshake, prints the
/// credential), `replay` (answers a second challenge with the first
/// response, prints the server's answer).
#[test]
#[ignore = "the agent side of the two-process tests; they run it as a child process"]
fn peer_agent() {
    let Ok(role) = std::env::var("WARDEN_HS_ROLE") else {
        return;
    };
    let mut seed = [0u8; 32];
    hex::decode_to_slice(env("WARDEN_HS_SEED"), &mut seed).unwrap();
    let me = Identity::from_seed(&seed).unwrap();
    let server = Did::parse(&env("WARDEN_HS_SERVER")).unwrap();
    let proof = std::env::var("WARDEN_HS_PROOF").ok();
    let addr = env("WARDEN_HS_ADDR");
    match role.as_str() {
        "agent" => {
            let stream = TcpStream::connect(&addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            match handshake::connect(stream, &me, Some(&server), proof.as_deref()) {
                Ok(s) => println!("CREDENTIAL={}", s.credential),
                Err(e) => println!("ERROR={e}"),
            }
        }
        "replay" => {
            // First connection: a genuine response, captured.
            let mut first = None;
            for attempt in 0..2 {
                let stream = TcpStream::connect(&addr).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut w = stream;
                writeln!(w, "{}", json!({"hello": me.did().as_str()})).unwrap();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let challenge: serde_json::Value = serde_json::from_str(&line).unwrap();
                let (_, claims) =
                    jws::verify_signature(challenge["challenge"].as_str().unwrap()).unwrap();
                let response = if attempt == 0 {
                    let nonce = claims.payload.unwrap()["nonce"].clone();
                    let c = Claims::new(&me, server.as_str(), 30, now_secs())
                        .unwrap()
                        .with_payload(json!({"nonce": nonce}));
                    let r = jws::sign(&me, &c).unwrap();
                    first = Some(r.clone());
                    r
                } else {
                    first.clone().unwrap()
                };
                writeln!(w, "{}", json!({"response": response})).unwrap();
                let mut answer = String::new();
                reader.read_line(&mut answer).unwrap();
                println!("ANSWER{attempt}={}", answer.trim());
            }
        }
        other => panic!("unknown role {other}"),
    }
}

struct Peer {
    child: std::process::Child,
}

fn spawn_peer(
    role: &str,
    addr: &str,
    agent_seed: [u8; 32],
    server: &Did,
    proof: Option<&str>,
) -> Peer {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "peer_agent",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("WARDEN_HS_ROLE", role)
    .env("WARDEN_HS_ADDR", addr)
    .env("WARDEN_HS_SEED", hex::encode(agent_seed))
    .env("WARDEN_HS_SERVER", server.as_str())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(p) = proof {
        cmd.env("WARDEN_HS_PROOF", p);
    }
    Peer {
        child: cmd.spawn().unwrap(),
    }
}

impl Peer {
    fn output(self, key: &str) -> String {
        let out = self.child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .find_map(|l| {
                l.split_once(&format!("{key}="))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {key} in peer output: {text}"))
    }
}

fn setup() -> (Identity, Gate, Identity, TcpListener) {
    let server = Identity::generate().unwrap();
    let gate = Gate::new(GateConfig::new(server.did().as_str()));
    let root = Identity::generate().unwrap();
    gate.add_anchor(root.did(), Scope::tools(&["fs.*"]).unwrap())
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (server, gate, root, listener)
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn handshake_between_two_processes() {
    let (server, gate, root, listener) = setup();
    let addr = listener.local_addr().unwrap().to_string();
    let agent_seed = [7u8; 32];
    let agent = Identity::from_seed(&agent_seed).unwrap();
    let grant = delegate(
        &root,
        agent.did(),
        Scope::tools(&["fs.read"]).unwrap(),
        600,
        None,
        &ChainLimits::default(),
        now_secs(),
    )
    .unwrap();
    let peer = spawn_peer("agent", &addr, agent_seed, server.did(), Some(&grant));
    let session = handshake::serve(accept(&listener), &server, &gate).unwrap();
    assert_eq!(&session.agent, agent.did());
    let credential = peer.output("CREDENTIAL");
    assert_eq!(
        credential, session.credential,
        "both processes hold the same credential"
    );
    let req = |tool| Request {
        agent: agent.did().as_str(),
        point: Point::PreToolCall,
        tool: Some(tool),
    };
    gate.authenticate(&credential, &req("fs.read"), now_secs())
        .unwrap();
    gate.authenticate(&credential, &req("fs.read"), now_secs())
        .unwrap();
    assert_eq!(
        gate.authenticate(&credential, &req("fs.write"), now_secs())
            .unwrap_err()
            .reason(),
        "identity:scope"
    );
}

#[test]
fn untrusted_agent_gets_no_session() {
    let (server, gate, _root, listener) = setup();
    let addr = listener.local_addr().unwrap().to_string();
    let peer = spawn_peer("agent", &addr, [9u8; 32], server.did(), None);
    let e = handshake::serve(accept(&listener), &server, &gate).unwrap_err();
    assert_eq!(e.reason(), "identity:untrusted_root");
    assert!(peer.output("ERROR").contains("identity:untrusted_root"));
    assert_eq!(gate.session_count(), 0);
}

#[test]
fn replayed_response_is_refused() {
    let (server, gate, _root, listener) = setup();
    let addr = listener.local_addr().unwrap().to_string();
    let seed = [5u8; 32];
    let agent = Identity::from_seed(&seed).unwrap();
    // Make the agent an anchor so the first handshake succeeds without a proof.
    gate.add_anchor(agent.did(), Scope::tools(&["fs.read"]).unwrap())
        .unwrap();
    let peer = spawn_peer("replay", &addr, seed, server.did(), None);
    handshake::serve(accept(&listener), &server, &gate).unwrap();
    let e = handshake::serve(accept(&listener), &server, &gate).unwrap_err();
    assert!(
        ["identity:replayed", "identity:handshake"].contains(&e.reason()),
        "{e}"
    );
    let child = peer.child.wait_with_output().unwrap();
    let text = String::from_utf8(child.stdout).unwrap();
    assert!(text.contains("ANSWER0={\"session\""), "{text}");
    assert!(text.contains("ANSWER1={\"error\""), "{text}");
    assert_eq!(gate.session_count(), 1);
}
