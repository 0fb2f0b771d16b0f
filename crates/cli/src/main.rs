//! `tokenwarden`: Kubernetes ServiceAccount tokens, issued, reviewed and enforced.

#![forbid(unsafe_code)]

mod admin;
mod authorize;
mod listeners;
mod pki;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Serve(serve::ServeArgs),
    /// Run the authorizer alone, against a real cluster's API server or a directory of AuthConfigs.
    Authorize(authorize::AuthorizeArgs),
}

/// How a command failed: bad flags or configuration (exit 64, as sysexits' EX_USAGE) or at run time (exit 1).
#[derive(Debug)]
pub enum Failure {
    Usage(String),
    Runtime(String),
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
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if rustls::crypto::aws_lc_rs::default_provider().install_default().is_err() {
        eprintln!("tokenwarden: cannot install the TLS crypto provider");
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokenwarden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Authorize(args) => authorize::run(args).await,
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
    }
}
