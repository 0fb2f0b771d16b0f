//! `tokenwarden`: Kubernetes ServiceAccount tokens, issued, reviewed and enforced.

#![forbid(unsafe_code)]

mod admin;
mod authorize;
mod client;
mod cluster;
mod duration;
mod expose;
mod listeners;
mod pki;
mod serve;
mod tools;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the hot paths allocate many small, short-lived strings and JSON nodes, which cost
/// glibc's malloc about a seventh of a proxied request's CPU (docs/benchmarks.md, Findings).
/// Built without transparent huge pages, which kept ~10 MiB more resident for nothing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tokio's blocking pool runs RSA signatures (a quarter of a millisecond each), SQLite calls and
/// file writes: all short, and none waits for another. Tokio allows 512 threads; uncapped, a
/// burst of TokenRequests starts a thread for every signature in flight (100–400 seen under 32
/// connections) and wakes one for each. Capped, the signatures queue and a thread that finishes
/// takes the next without sleeping: half the context switches, and RS256 issuance went from
/// 0.76 to 0.81 of `openssl speed` (docs/benchmarks.md, Findings).
const BLOCKING_THREADS_PER_CORE: usize = 4;

#[derive(Debug, Parser)]
#[command(name = "tokenwarden", version, about = "Kubernetes ServiceAccount tokens, issued, reviewed and enforced")]
struct Cli {
    /// Log lines as text or JSON (one object per line); the level comes from TOKENWARDEN_LOG.
    #[arg(long, global = true, value_enum, default_value = "text", env = "TOKENWARDEN_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the token authority and its Kubernetes-compatible API, with the authorizer beside it.
    Serve(Box<serve::ServeArgs>),
    /// Run the authorizer alone, against a real cluster's API server or a directory of AuthConfigs.
    Authorize(authorize::AuthorizeArgs),
    /// Expose only TokenRequest of a real cluster's API server to external clients: a filtering,
    /// rate-limiting reverse proxy that forwards the caller's own credential.
    Expose(expose::ExposeArgs),
    /// Create a resource; today a ServiceAccount token, as `kubectl create token`.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Ask the API server's TokenReview whether a token is valid (exit 0 only if it is).
    Review(tools::review::ReviewArgs),
    /// Show a token's header and claims, without verifying it.
    Decode(tools::decode::DecodeArgs),
    /// Who the API server thinks you are, as `kubectl auth whoami`.
    Whoami(tools::review::WhoamiArgs),
    /// Keep a ServiceAccount token file fresh, as the kubelet keeps a projected token.
    Project(tools::project::ProjectArgs),
    /// Call an endpoint with the token from a file, again and again, printing each status.
    Consume(tools::consume::ConsumeArgs),
    /// The echo API of the Authorino guides: answers every request with the request as JSON.
    TalkerApi(tools::talker::TalkerArgs),
    /// Sign a token offline with the authority's own key, as if at another time (for demos and
    /// tests: an expired token without waiting).
    SignToken(tools::create_token::SignTokenArgs),
}

#[derive(Debug, Subcommand)]
enum CreateCommand {
    /// Request a ServiceAccount token (kubectl's flags and checks).
    Token(tools::create_token::CreateTokenArgs),
}

/// How a command failed: bad flags or configuration (exit 64, as sysexits' EX_USAGE) or at run time (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(String),
    /// The command already said why: exit with this code and print nothing more.
    Silent(u8),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = err.print();
                return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { ExitCode::from(64) } else { ExitCode::SUCCESS };
            }
            // One line: clap's message without its usage block and tips.
            let text = err.to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("tokenwarden: {}", line.join(" ").trim_start_matches("error: "));
            return ExitCode::from(64);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENWARDEN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in files and pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if rustls::crypto::aws_lc_rs::default_provider().install_default().is_err() {
        eprintln!("tokenwarden: cannot install the TLS crypto provider");
        return ExitCode::from(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let runtime = match tokio::runtime::Builder::new_multi_thread().max_blocking_threads(BLOCKING_THREADS_PER_CORE * cores).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokenwarden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Authorize(args) => authorize::run(args).await,
            Command::Expose(args) => expose::run(args).await,
            Command::Create(CreateCommand::Token(args)) => tools::create_token::run(args).await,
            Command::Review(args) => tools::review::run(args).await,
            Command::Decode(args) => tools::decode::run(&args),
            Command::Whoami(args) => tools::review::whoami(args).await,
            Command::Project(args) => tools::project::run(args).await,
            Command::Consume(args) => tools::consume::run(args).await,
            Command::TalkerApi(args) => tools::talker::run(args).await,
            Command::SignToken(args) => tools::create_token::sign(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("tokenwarden: {message}");
            ExitCode::from(64)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("tokenwarden: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Silent(code)) => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        super::Cli::command().debug_assert();
    }
}
