//! Tokens for the benchmark, signed like the server signs them.
//!
//! The template is a token the server minted (its header names the key's `kid` and `alg`);
//! every minted token keeps its header and claims and gets a distinct `jti`, so each is a
//! distinct cache key and costs a full verification the first time it is seen. Signing one
//! costs what the server's own signing costs (same key, same library), without an HTTP
//! round trip per token. `--expired` moves `iat` and `nbf` two hours and `exp` one hour into the past:
//! the only honest way to an expired token, since TokenRequest lifetimes are at least 10 min.

use std::io::Write as _;
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokenwarden_core::keys::SigningKey;

#[derive(clap::Args)]
pub struct MintArgs {
    /// A file holding one token minted by the server.
    #[arg(long)]
    pub template: PathBuf,
    /// The server's signing key (PKCS#8 PEM, from DATA_DIR/keys/).
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub count: usize,
    /// Issue the tokens expired: iat and nbf two hours, exp one hour before the template's iat.
    #[arg(long)]
    pub expired: bool,
    /// Signing threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Output file (one token per line, mode 0600).
    #[arg(long)]
    pub out: PathBuf,
}

/// A template token taken apart: its encoded header and its claims.
pub struct Minter {
    header_b64: String,
    claims: serde_json::Map<String, Value>,
    key: SigningKey,
    expired: bool,
}

impl Minter {
    pub fn new(template: &str, key_pem: &str, expired: bool) -> Result<Self, String> {
        let mut parts = template.trim().split('.');
        let (Some(header_b64), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("the template is not a JWS compact token".into());
        };
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|e| format!("template payload: {e}"))?;
        let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
            return Err("the template's payload is not a JSON object".into());
        };
        let key = SigningKey::from_pem(key_pem).map_err(|e| format!("signing key: {e}"))?;
        Ok(Self { header_b64: header_b64.to_owned(), claims, key, expired })
    }

    /// The `n`th token.
    pub fn token(&self, n: u64) -> Result<String, String> {
        let mut claims = self.claims.clone();
        claims.insert("jti".into(), Value::String(format!("bench-{n:012}")));
        if self.expired {
            for (name, shift) in [("iat", -7200), ("nbf", -7200), ("exp", -3600)] {
                let base = self.claims.get("iat").and_then(Value::as_i64).ok_or("the template has no iat")?;
                if name == "exp" || claims.contains_key(name) {
                    claims.insert(name.into(), Value::from(base + shift));
                }
            }
        }
        let payload = serde_json::to_vec(&Value::Object(claims)).map_err(|e| e.to_string())?;
        let input = format!("{}.{}", self.header_b64, URL_SAFE_NO_PAD.encode(payload));
        let signature = self.key.sign(input.as_bytes()).map_err(|e| format!("signing: {e}"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

pub fn minter(template: &PathBuf, key: &PathBuf, expired: bool) -> Result<Minter, String> {
    let template = std::fs::read_to_string(template).map_err(|e| format!("{}: {e}", template.display()))?;
    let key = std::fs::read_to_string(key).map_err(|e| format!("{}: {e}", key.display()))?;
    Minter::new(&template, &key, expired)
}

pub fn run(args: &MintArgs) -> Result<(), String> {
    let minter = minter(&args.template, &args.key, args.expired)?;
    let threads = args.threads.max(1);
    let chunks: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let minter = &minter;
                scope.spawn(move || {
                    let mut out = String::new();
                    let mut n = t;
                    while n < args.count {
                        out.push_str(&minter.token(n as u64)?);
                        out.push('\n');
                        n += threads;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a signing thread failed".into()))).collect()
    });
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&args.out)
    }
    .map_err(|e| format!("{}: {e}", args.out.display()))?;
    for chunk in chunks {
        file.write_all(chunk?.as_bytes()).map_err(|e| format!("{}: {e}", args.out.display()))?;
    }
    Ok(())
}
