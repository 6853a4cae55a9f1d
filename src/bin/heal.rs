//! `heal`: one remediation step against the Kubernetes API. All logic lives in the library.

fn main() {
    std::process::exit(heal::cli::main_with_args(std::env::args_os().collect()));
}
