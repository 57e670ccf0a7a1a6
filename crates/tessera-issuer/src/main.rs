//! `tessera-issuer`: Tessera's token issuer and its operator CLI.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
