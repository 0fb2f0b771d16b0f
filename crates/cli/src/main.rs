//! `tokenwarden`: Kubernetes ServiceAccount tokens, issued, reviewed and enforced.

#![forbid(unsafe_code)]

mod admin;
mod pki;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tokenwarden", version, about = "Kubernetes ServiceAccount tokens, issued, reviewed and enforced")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the token authority and its Kubernetes-compatible API.
    Serve(serve::ServeArgs),
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
            // One line: clap's first line, without its usage block.
            let text = err.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("tokenwarden: {line}");
            return ExitCode::from(64);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOKENWARDEN_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
