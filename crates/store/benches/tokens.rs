//! Token costs against raw aws-lc-rs in the same run.
//!
//! Targets (issue: token authority core): mint within 1.2× of the raw sign of the same key;
//! an uncached review within 1.5× of the raw RSA verify; a cached review under 2 µs.
//! `cargo bench -p tokenwarden-store --bench tokens`

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokenwarden_core::keys::{Algorithm, KeySet, SigningKey};
use tokenwarden_core::lookup::{ObjectMeta, StaticLookup};
use tokenwarden_core::token_request::{self, IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp, review};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock, keystore};

const NOW: Timestamp = Timestamp(1_800_000_000);

fn input() -> TokenRequestInput {
    TokenRequestInput {
        namespace: "default".into(),
        service_account: "bot".into(),
        spec: TokenRequestSpec { audiences: vec!["talker-api".into()], ..TokenRequestSpec::default() },
        ..TokenRequestInput::default()
    }
}

fn lookup() -> StaticLookup {
    let mut lookup = StaticLookup::default();
    lookup.service_accounts.insert("default/bot".into(), ObjectMeta { uid: "0e79c2ec-1b2f-4a4e-9c55-5d2a8b6f3c10".into(), deletion_timestamp: None });
    lookup
}

/// The JWS signing input and signature of a real token (for the raw baselines).
fn parts(token: &str) -> (Vec<u8>, Vec<u8>) {
    use base64::Engine as _;
    let dot = token.rfind('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token[dot + 1..]).unwrap();
    (token.as_bytes()[..dot].to_vec(), sig)
}

/// Signs a message with a pre-parsed key.
type RawSigner = Box<dyn Fn(&[u8]) -> Vec<u8>>;

fn raw_signer(alg: Algorithm, key: &SigningKey) -> RawSigner {
    // The same PKCS#8 key, parsed once, driven through aws-lc-rs directly.
    let pem = key.to_pkcs8_pem();
    let der: Vec<u8> = {
        use base64::Engine as _;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    };
    match alg {
        Algorithm::Rs256 => {
            let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).unwrap();
            let rng = aws_lc_rs::rand::SystemRandom::new();
            Box::new(move |msg| {
                let mut sig = vec![0; rsa.public_modulus_len()];
                rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig
            })
        }
        Algorithm::Es256 => {
            let ec = signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
            let rng = aws_lc_rs::rand::SystemRandom::new();
            Box::new(move |msg| ec.sign(&rng, msg).unwrap().as_ref().to_vec())
        }
    }
}

fn mint(c: &mut Criterion) {
    let config = IssuerConfig::new("https://tokenwarden.example");
    let lookup = lookup();
    for alg in [Algorithm::Rs256, Algorithm::Es256] {
        let keys = KeySet::new(keystore::generate(alg).unwrap(), Vec::new());
        let token = token_request::issue(input(), &config, &keys, &lookup, NOW, [1; 16]).unwrap().token;
        let (signing_input, _) = parts(&token);
        let raw = raw_signer(alg, keys.signing());
        let mut group = c.benchmark_group(format!("mint/{}", alg.as_str()));
        group.bench_function("raw aws-lc-rs sign", |b| b.iter(|| raw(black_box(&signing_input))));
        // The request arrives parsed from the API edge: building it is not part of minting.
        group.bench_function("TokenRequest issue", |b| {
            b.iter_batched(input, |i| token_request::issue(black_box(i), &config, &keys, &lookup, NOW, [1; 16]).unwrap(), BatchSize::SmallInput)
        });
        group.finish();
    }
}

fn verify(c: &mut Criterion) {
    let config = IssuerConfig::new("https://tokenwarden.example");
    let lookup = lookup();
    for alg in [Algorithm::Rs256, Algorithm::Es256] {
        let keys = KeySet::new(keystore::generate(alg).unwrap(), Vec::new());
        let token = token_request::issue(input(), &config, &keys, &lookup, NOW, [1; 16]).unwrap().token;
        let (signing_input, sig) = parts(&token);
        let verification: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        let parsed = ParsedPublicKey::new(verification, keys.signing().verifying_key().spki_der()).unwrap();
        let audiences = vec!["talker-api".to_owned()];
        let mut group = c.benchmark_group(format!("review/{}", alg.as_str()));
        group.bench_function("raw aws-lc-rs verify", |b| b.iter(|| parsed.verify_sig(black_box(&signing_input), black_box(&sig)).unwrap()));
        group.bench_function("review uncached", |b| {
            b.iter(|| review::review(black_box(&token), &audiences, &keys, &config, &lookup, NOW).unwrap())
        });
        group.finish();
    }
}

fn cached(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let clock = ManualClock::new(NOW);
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let config = IssuerConfig::new("https://tokenwarden.example");
    let keys = KeySet::new(keystore::generate(Algorithm::Rs256).unwrap(), Vec::new());
    let (authority, token) = runtime.block_on(async {
        let authority = Authority::start(store, keys, config, Arc::new(clock), None).await.unwrap();
        let ns = Object::from_value(serde_json::json!({"metadata": {"name": "ns"}})).unwrap();
        authority.create(&Resource::NAMESPACES, ns).await.unwrap();
        let mut input = input();
        input.namespace = "ns".into();
        input.service_account = "default".into();
        let token = authority.request_token(input).await.unwrap().token;
        (authority, token)
    });
    let audiences = vec!["talker-api".to_owned()];
    authority.review(&token, &audiences).result.unwrap();
    c.bench_function("review/RS256/review cached (Authority)", |b| b.iter(|| authority.review(black_box(&token), &audiences).result.unwrap()));
}

criterion_group!(benches, mint, verify, cached);
criterion_main!(benches);
