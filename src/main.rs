//! The `runner` front end. It handles `list`, `validate` and `--help` itself, without
//! loading libtorch, and replaces itself with `runner-engine` (built beside it) for every
//! command that trains or times a model.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;

use runner_spec::cli::{dry_run, print_list, report, status, validate, Cli, Command};

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, which turns `runner list | head` into a panic on the next print.
    // SAFETY: restoring the default handler before any output is written has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::List) => {
            print_list();
            ExitCode::SUCCESS
        }
        Some(Command::Validate(args)) => validate(&args),
        Some(Command::Report(args)) => report(&args),
        Some(Command::Status(args)) => status(&args),
        Some(Command::Run(args)) if args.dry_run => dry_run(&args),
        None if cli.run.dry_run => dry_run(&cli.run),
        None if cli.run.spec.spec.is_none() => {
            eprintln!(
                "error: no spec given\n\n\
                 Usage: runner SPEC [--set KEY=VALUE]... | runner validate SPEC | runner list"
            );
            ExitCode::from(2)
        }
        _ => exec_engine(),
    }
}

/// Replaces this process with `runner-engine` and the same arguments; returns only when
/// that fails.
fn exec_engine() -> ExitCode {
    let engine = std::env::current_exe()
        .ok()
        .and_then(|path| path.parent().map(|dir| dir.join("runner-engine")))
        .unwrap_or_else(|| "runner-engine".into());
    let error = std::process::Command::new(&engine)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!(
        "error: cannot start {}: {error}. It is built beside `runner` by `cargo build --release`.",
        engine.display()
    );
    ExitCode::FAILURE
}
