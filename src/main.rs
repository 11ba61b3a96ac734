//! The `portcullis` command: see `portcullis --help`.

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
