//! `heald`: the heal injector service. Everything lives in [`heal::heald`].

fn main() -> std::process::ExitCode {
    let code = heal::heald::main_with_args(std::env::args_os().collect());
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
