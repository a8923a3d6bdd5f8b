//! `warden id new|show|export|sign|verify` and `warden delegate [check]`.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::io::Read as _;
use std::path::PathBuf;
use warden_core::Point;
use warden_identity::{
    ChainLimits, Claims, Did, EnvelopeVerifier, Identity, PointSet, Scope, TrustBook, TrustConfig,
    Validation, delegate, jws, now_secs, verify_chain,
};

/// Exit code for a refused token or scope.
const EXIT_REFUSED: u8 = 1;
/// Largest payload or token read from stdin.
const MAX_STDIN: u64 = 8 << 20;

/// `warden id`.
#[derive(Subcommand)]
pub(crate) enum IdCommand {
    /// Create a new Ed25519 key file (mode 0600); prints the did:key on the last line.
    New {
        /// Where to write the key (must not exist).
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the did:key of a key file.
    Show {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print the public DID document or JWK of a key file.
    Export {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
        /// Output form.
        #[arg(long, value_enum)]
        format: ExportFormat,
    },
    /// Sign a JSON payload read on stdin as a compact JWS (EdDSA) envelope.
    Sign {
        /// The signing key file.
        #[arg(long)]
        key: PathBuf,
        /// The audience (`aud`).
        #[arg(long)]
        aud: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: u64,
    },
    /// Verify a compact JWS read on stdin; prints {"iss", "payload"} (exit 0) or the reason on stderr (exit 1).
    Verify {
        /// The audience to accept.
        #[arg(long)]
        aud: String,
        /// Clock skew tolerated, seconds.
        #[arg(long, default_value_t = 30)]
        skew: u64,
        /// Longest accepted lifetime (exp - iat), seconds.
        #[arg(long, default_value_t = 3600)]
        max_lifetime: u64,
    },
}

/// `warden id export --format`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    /// The did:key DID document.
    DidDoc,
    /// The public JWK (RFC 8037).
    Jwk,
}

/// `warden delegate`: issue a delegation token, or `check` one.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct DelegateArgs {
    #[command(subcommand)]
    command: Option<DelegateCommand>,
    /// The delegating (parent) key file.
    #[arg(long, required = true)]
    key: Option<PathBuf>,
    /// The delegate's did:key.
    #[arg(long, required = true)]
    to: Option<String>,
    /// Tool globs (`*` is the only wildcard), comma-separated.
    #[arg(long, required = true, value_delimiter = ',')]
    tools: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, required = true)]
    expires: Option<u64>,
    /// The parent's own delegation token: the new token may not be wider.
    #[arg(long)]
    proof: Option<String>,
    /// Intervention points, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    points: Vec<String>,
    /// Most calls the delegate may make under the token.
    #[arg(long)]
    budget: Option<u64>,
}

/// `warden delegate check`.
#[derive(Subcommand)]
pub(crate) enum DelegateCommand {
    /// Verify a whole chain; exit 0 if TOOL is within its final scope, 1 (with the reason) if not.
    Check {
        /// The delegation token (it embeds its chain).
        #[arg(long)]
        token: String,
        /// The tool to check.
        #[arg(long)]
        tool: String,
        /// The intervention point.
        #[arg(long, default_value = "pre_tool_call")]
        point: String,
        /// Require the chain's root to be one of these did:keys (repeatable).
        #[arg(long)]
        root: Vec<String>,
    },
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_STDIN)
        .read_to_string(&mut text)
        .context("reading stdin")?;
    Ok(text)
}

fn refused(what: &str, e: &warden_identity::IdentityError) -> u8 {
    eprintln!("warden: {what}: {}: {e}", e.reason());
    EXIT_REFUSED
}

/// Runs `warden id ...`.
pub(crate) fn id(command: IdCommand) -> Result<u8> {
    match command {
        IdCommand::New { key } => {
            let id = Identity::generate()?;
            id.save(&key)?;
            println!("{}", id.did());
        }
        IdCommand::Show { key } => println!("{}", Identity::load(&key)?.did()),
        IdCommand::Export { key, format } => {
            let did = Identity::load(&key)?.did().clone();
            let value = match format {
                ExportFormat::DidDoc => did.document(),
                ExportFormat::Jwk => serde_json::to_value(did.jwk())?,
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        IdCommand::Sign { key, aud, ttl } => {
            let id = Identity::load(&key)?;
            let payload: serde_json::Value =
                serde_json::from_str(&read_stdin()?).context("stdin is not a JSON payload")?;
            let claims = Claims::new(&id, aud, ttl, now_secs())?.with_payload(payload);
            println!("{}", jws::sign(&id, &claims)?);
        }
        IdCommand::Verify {
            aud,
            skew,
            max_lifetime,
        } => {
            let token = read_stdin()?;
            let verifier = EnvelopeVerifier::new(
                Validation {
                    audiences: vec![aud],
                    skew_secs: skew,
                    max_lifetime_secs: max_lifetime,
                },
                1,
            );
            match verifier.verify(token.trim(), now_secs()) {
                Ok((signer, claims)) => println!(
                    "{}",
                    serde_json::json!({ "iss": signer.as_str(), "payload": claims.payload })
                ),
                Err(e) => return Ok(refused("token refused", &e)),
            }
        }
    }
    Ok(0)
}

/// Runs `warden delegate ...`.
pub(crate) fn delegate_cmd(args: DelegateArgs) -> Result<u8> {
    if let Some(DelegateCommand::Check {
        token,
        tool,
        point,
        root,
    }) = args.command
    {
        let point: Point = point.parse()?;
        let roots = root
            .iter()
            .map(|r| Did::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        let chain = match verify_chain(token.trim(), &ChainLimits::default(), now_secs()) {
            Ok(c) => c,
            Err(e) => return Ok(refused("chain refused", &e)),
        };
        if !roots.is_empty() && !roots.contains(&chain.root) {
            eprintln!(
                "warden: chain refused: identity:untrusted_root: root {} is not one of --root",
                chain.root
            );
            return Ok(EXIT_REFUSED);
        }
        if !chain.scope.permits(point, Some(&tool)) {
            eprintln!(
                "warden: identity:scope: {tool} at {point} is not within the delegated tools {:?}",
                chain
                    .scope
                    .tools
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
            );
            return Ok(EXIT_REFUSED);
        }
        println!(
            "{}",
            serde_json::json!({
                "root": chain.root.as_str(),
                "holder": chain.holder.as_str(),
                "depth": chain.depth(),
                "scope": chain.scope,
                "expires": chain.expires,
            })
        );
        return Ok(0);
    }
    let (Some(key), Some(to), Some(expires)) = (args.key, args.to, args.expires) else {
        bail!("--key, --to, --tools and --expires are required");
    };
    let issuer = Identity::load(&key)?;
    let to = Did::parse(&to)?;
    let mut scope = Scope::tools(&args.tools)?;
    if !args.points.is_empty() {
        let points = args
            .points
            .iter()
            .map(|p| p.parse::<Point>())
            .collect::<Result<Vec<_>, _>>()?;
        scope.points = PointSet::of(&points);
    }
    scope.budget = args.budget;
    match delegate(
        &issuer,
        &to,
        scope,
        expires,
        args.proof.as_deref().map(str::trim),
        &ChainLimits::default(),
        now_secs(),
    ) {
        Ok(token) => {
            println!("{token}");
            Ok(0)
        }
        Err(e) => Ok(refused("delegation refused", &e)),
    }
}

/// Where `warden trust` finds the scores.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
pub(crate) struct TrustStoreArgs {
    /// Data directory holding `trust.json` (safe while a server uses it:
    /// changes are read-modify-write under the file's lock).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL of a shared trust table (binaries built with `--features postgres`).
    #[arg(long)]
    database_url: Option<String>,
    /// Schema of the shared trust table.
    #[arg(long, default_value = "warden_trust")]
    schema: String,
}

impl TrustStoreArgs {
    fn open(&self) -> Result<TrustBook> {
        if let Some(dir) = &self.data_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            return Ok(TrustBook::open(dir, TrustConfig::default())?);
        }
        #[cfg(feature = "postgres")]
        if let Some(url) = &self.database_url {
            let store = warden_identity::trust_pg::PgTrustStore::open(url, &self.schema)?;
            return Ok(TrustBook::with_store(
                Box::new(store),
                TrustConfig::default(),
            )?);
        }
        let _ = &self.schema;
        bail!("--database-url needs a binary built with `--features postgres`; use --data-dir")
    }
}

/// `warden trust`.
#[derive(Subcommand)]
pub(crate) enum TrustCommand {
    /// Print agents' trust scores and tiers (one JSON line each), decayed to now.
    Show {
        #[command(flatten)]
        store: TrustStoreArgs,
        /// Only this agent (its score is the baseline if it is unknown).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Set an agent's score (0–1000). Running servers see it at their next
    /// sync; signals they persist afterwards apply on top of it.
    Set {
        #[command(flatten)]
        store: TrustStoreArgs,
        /// The agent.
        #[arg(long)]
        agent: String,
        /// The new score.
        #[arg(long)]
        score: f64,
    },
}

/// Runs `warden trust ...`.
pub(crate) fn trust(command: TrustCommand) -> Result<u8> {
    let line = |agent: &str, score: f64| {
        println!(
            "{}",
            serde_json::json!({
                "agent": agent,
                "score": (score * 10.0).round() / 10.0,
                "tier": warden_identity::Tier::of(score).as_str(),
            })
        );
    };
    let now = now_secs();
    match command {
        TrustCommand::Show { store, agent } => {
            let book = store.open()?;
            match agent {
                Some(a) => line(&a, book.score(&a, now)?),
                None => {
                    for (a, score, _) in book.list(now)? {
                        line(&a, score);
                    }
                }
            }
        }
        TrustCommand::Set {
            store,
            agent,
            score,
        } => {
            // `set` writes through to the store (under its lock or row lock).
            store.open()?.set(&agent, score, now)?;
            line(&agent, score);
        }
    }
    Ok(0)
}
