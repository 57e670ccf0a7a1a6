//! `tessera-issuer`: Tessera's token issuer and its operator CLI.

mod cli;
mod clients_cli;
mod keys_cli;
mod users;

fn main() -> std::process::ExitCode {
    cli::main()
}
