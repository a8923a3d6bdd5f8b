//! Challenge–response handshake between two processes over any byte stream
//! (e.g. loopback TCP): newline-delimited JSON messages.
//!
//! ```text
//! agent  → server  {"hello": "<agent did:key>"}
//! server → agent   {"challenge": JWS(server → agent, payload {"nonce": n}, 30 s)}
//! agent  → server  {"response": JWS(agent → server did, payload {"nonce": n}[, prf])}
//! server → agent   {"session": "wsc1…", "expires": t, "agent": "<did>"} | {"error": reason, "detail": …}
//! ```
//!
//! The nonce is 256 random bits, fresh per connection and good for one
//! response; the response is an envelope (audience, lifetime and replay
//! checked by the [`Gate`]). The challenge is signed by the server, so an
//! agent that pins the server's did:key also authenticates the server.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::{BufRead as _, BufReader, Read, Write};

use crate::did::Did;
use crate::gate::{Gate, SessionGrant};
use crate::jws::{self, Claims, check_window, verify_signature};
use crate::key::Identity;
use crate::{IdentityError, b64, error::random, now_secs};

/// Longest handshake message line.
const MAX_LINE: u64 = 256 * 1024;
/// How long a challenge may be answered.
pub const CHALLENGE_TTL_SECS: u64 = 30;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    hello: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    challenge: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response {
    response: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Outcome {
    Session {
        session: String,
        expires: u64,
        agent: String,
    },
    Error {
        error: String,
        detail: String,
    },
}

/// What the agent gets from a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSession {
    /// The session credential to put in `Action.credential`.
    pub credential: String,
    /// When it expires.
    pub expires: u64,
    /// The server that signed the challenge.
    pub server: Did,
}

fn hs(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Handshake(e.to_string())
}

fn read_msg<T: for<'de> Deserialize<'de>, R: Read>(
    reader: &mut BufReader<R>,
) -> Result<T, IdentityError> {
    let mut line = String::new();
    let n = reader
        .by_ref()
        .take(MAX_LINE)
        .read_line(&mut line)
        .map_err(hs)?;
    if n == 0 {
        return Err(hs("peer closed the connection"));
    }
    if !line.ends_with('\n') {
        return Err(hs("message too long or truncated"));
    }
    serde_json::from_str(&line).map_err(|e| hs(format!("bad message: {e}")))
}

fn write_msg<T: Serialize, W: Write>(w: &mut W, msg: &T) -> Result<(), IdentityError> {
    let mut line = serde_json::to_vec(msg).map_err(hs)?;
    line.push(b'\n');
    w.write_all(&line).and_then(|()| w.flush()).map_err(hs)
}

/// A challenge the server issued and is waiting to see answered. The
/// transport keeps it (one per connection, or keyed by nonce for HTTP) and
/// uses it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChallenge {
    agent: Did,
    nonce: String,
    issued: u64,
}

impl PendingChallenge {
    /// The nonce the response must carry (the key to look the challenge up by).
    #[must_use]
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The agent that said hello.
    #[must_use]
    pub fn agent(&self) -> &Did {
        &self.agent
    }

    /// Whether the challenge can no longer be answered at `now`.
    #[must_use]
    pub fn expired(&self, now: u64) -> bool {
        now > self.issued.saturating_add(CHALLENGE_TTL_SECS)
    }

    /// Checks the agent's `response` and opens a session on `gate`: in time,
    /// an envelope answering exactly this nonce, signed by the agent that
    /// said hello.
    ///
    /// # Errors
    /// Late answers, envelope and authority failures, a response signed by
    /// another key.
    pub fn answer(
        self,
        gate: &Gate,
        response: &str,
        now: u64,
    ) -> Result<SessionGrant, IdentityError> {
        if self.expired(now) {
            return Err(hs("challenge answered too late"));
        }
        let grant = gate.open_session(response, &self.nonce, now)?;
        if grant.agent != self.agent {
            gate.end_session(&grant.credential);
            return Err(hs(
                "response signed by another key than the one that said hello",
            ));
        }
        Ok(grant)
    }
}

/// Server side, any transport: a challenge for `agent` signed by `server`
/// (a fresh 256-bit nonce, valid [`CHALLENGE_TTL_SECS`]).
///
/// # Errors
/// No randomness; signing failures.
pub fn issue_challenge(
    server: &Identity,
    agent: &Did,
    now: u64,
) -> Result<(String, PendingChallenge), IdentityError> {
    let nonce = b64::encode(&random::<32>()?);
    let challenge = jws::sign(
        server,
        &Claims::new(server, agent.as_str(), CHALLENGE_TTL_SECS, now)?
            .with_payload(json!({ "nonce": nonce })),
    )?;
    Ok((
        challenge,
        PendingChallenge {
            agent: agent.clone(),
            nonce,
            issued: now,
        },
    ))
}

/// The nonce a response claims to answer, read before it is verified (to
/// find the pending challenge); [`PendingChallenge::answer`] verifies it.
///
/// # Errors
/// A response that is not a well-formed envelope with a nonce payload.
pub fn response_nonce(response: &str) -> Result<String, IdentityError> {
    let (_, claims) = verify_signature(response)?;
    claims
        .payload
        .as_ref()
        .and_then(|p| p.get("nonce"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| hs("response without nonce"))
}

/// Agent side, any transport: checks `challenge` (signed by the server —
/// `expect_server` if given —, addressed to `identity`, fresh) and returns
/// the signed response, optionally carrying the delegation token `proof`,
/// and the server's did:key.
///
/// # Errors
/// A challenge not signed by the expected server, not addressed to this
/// agent, stale, or without a nonce.
pub fn answer_challenge(
    identity: &Identity,
    challenge: &str,
    expect_server: Option<&Did>,
    proof: Option<&str>,
) -> Result<(String, Did), IdentityError> {
    let (server, claims) = verify_signature(challenge)?;
    if let Some(expected) = expect_server
        && *expected != server
    {
        return Err(hs(format!(
            "challenge signed by {server}, expected {expected}"
        )));
    }
    if claims.aud != identity.did().as_str() {
        return Err(hs("challenge addressed to another agent"));
    }
    let now = now_secs();
    check_window(&claims, now, CHALLENGE_TTL_SECS)?;
    let nonce = claims
        .payload
        .as_ref()
        .and_then(|p| p.get("nonce"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| hs("challenge without nonce"))?;
    let mut answer = Claims::new(identity, server.as_str(), CHALLENGE_TTL_SECS, now)?
        .with_payload(json!({ "nonce": nonce }));
    if let Some(p) = proof {
        answer = answer.with_proof(p);
    }
    Ok((jws::sign(identity, &answer)?, server))
}

/// Server side: runs one handshake on `stream` and returns the issued
/// session. The gate's audience must be `server`'s did:key. Set read
/// timeouts on the stream: a silent peer otherwise holds the call.
///
/// # Errors
/// Protocol, signature, freshness, replay and authority failures (the peer
/// also receives the reason).
pub fn serve<S: Read + Write>(
    stream: S,
    server: &Identity,
    gate: &Gate,
) -> Result<SessionGrant, IdentityError> {
    let mut reader = BufReader::new(stream);
    let hello: Hello = read_msg(&mut reader)?;
    let agent = Did::parse(&hello.hello)?;
    let (challenge, pending) = issue_challenge(server, &agent, now_secs())?;
    write_msg(reader.get_mut(), &Challenge { challenge })?;
    let result = read_msg::<Response, _>(&mut reader)
        .and_then(|r| pending.answer(gate, &r.response, now_secs()));
    let outcome = match &result {
        Ok(g) => Outcome::Session {
            session: g.credential.clone(),
            expires: g.expires,
            agent: g.agent.to_string(),
        },
        Err(e) => Outcome::Error {
            error: e.reason().to_owned(),
            detail: e.to_string(),
        },
    };
    write_msg(reader.get_mut(), &outcome)?;
    result
}

/// Agent side: proves possession of `identity`'s key to the server on
/// `stream`, optionally presenting a delegation token `proof`, and
/// optionally requiring the server to be `expect_server`.
///
/// # Errors
/// Protocol errors, a challenge not signed by the expected server or not
/// addressed to this agent, and the server's refusal.
pub fn connect<S: Read + Write>(
    stream: S,
    identity: &Identity,
    expect_server: Option<&Did>,
    proof: Option<&str>,
) -> Result<ClientSession, IdentityError> {
    let mut reader = BufReader::new(stream);
    write_msg(
        reader.get_mut(),
        &Hello {
            hello: identity.did().to_string(),
        },
    )?;
    let challenge: Challenge = read_msg(&mut reader)?;
    let (response, server) =
        answer_challenge(identity, &challenge.challenge, expect_server, proof)?;
    write_msg(reader.get_mut(), &Response { response })?;
    match read_msg::<Outcome, _>(&mut reader)? {
        Outcome::Session {
            session,
            expires,
            agent,
        } => {
            if agent != identity.did().as_str() {
                return Err(hs("server bound the session to another agent"));
            }
            Ok(ClientSession {
                credential: session,
                expires,
                server,
            })
        }
        Outcome::Error { error, detail } => Err(hs(format!("refused: {error}: {detail}"))),
    }
}
