//! `trainer`: parses the command line and runs the subcommand (each in its own module of
//! [`cli`]; the steps they share are in the library).

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => cli::train::train(cli.train),
        Some(Command::Train(args)) => cli::train::train(args),
        Some(Command::Eval(args)) => cli::eval::eval(args),
        Some(Command::Predict(args)) => match cli::predict::predict(args) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Some(Command::Inspect(args)) => cli::inspect::inspect(args),
        Some(Command::Export(args)) => cli::export::export(args),
        Some(Command::Import(args)) => cli::import::import(args),
        Some(Command::Demo(args)) => cli::demo::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
