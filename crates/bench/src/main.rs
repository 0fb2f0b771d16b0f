//! `tokenwarden-bench`: what `bench/run` needs beside wrk, nginx and Apache.
//!
//! - `http` and `grpc`: keep-alive load generators (one request in flight per connection)
//!   that print one JSON line: requests, errors, requests/s, p50/p99 latency and the count of
//!   each status; tokens come from a file (each used once with `--once`) or are minted on the
//!   fly from a template.
//! - `passthrough`: the bare pass-through proxy, built from the same server and client stack
//!   as tokenwarden's proxy (axum-server, hyper-util's pooled client), with no authorization:
//!   the ceiling for any gateway on the machine.
//! - `noop-check`: an ext_authz `Check` server on the same tonic stack that allows everything.
//! - Both baselines as floors (`--hash-token`, `--verify-key`): the least any authorizer must
//!   do with each bearer token, and nothing else.
//! - `mint`: tokens like the server's own (the template's header and claims, a distinct
//!   `jti` each), signed with the server's key file; `--expired` moves them into the past.

mod baselines;
mod load;
mod mint;

use clap::{Parser, Subcommand};

/// The allocator tokenwarden uses, so the baselines share its stack (crates/cli/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tokenwarden-bench", about = "tokenwarden's benchmark helpers (see bench/run)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP/1.1 keep-alive load; prints one JSON line.
    Http(load::HttpArgs),
    /// ext_authz gRPC `Check` load; prints one JSON line.
    Grpc(load::GrpcArgs),
    /// The bare pass-through proxy (no authorization).
    Passthrough(baselines::PassthroughArgs),
    /// The no-op ext_authz `Check` server (allows everything).
    NoopCheck(baselines::NoopArgs),
    /// Mints tokens from a template token and the signing key, one per line.
    Mint(mint::MintArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mint(args) => mint::run(&args),
        command => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(async move {
                match command {
                    Command::Http(args) => load::http(args).await,
                    Command::Grpc(args) => load::grpc(args).await,
                    Command::Passthrough(args) => baselines::passthrough(args).await,
                    Command::NoopCheck(args) => baselines::noop_check(args).await,
                    Command::Mint(_) => Ok(()),
                }
            }),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
    };
    if let Err(message) = result {
        eprintln!("tokenwarden-bench: {message}");
        std::process::exit(1);
    }
}
