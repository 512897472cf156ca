use clap::Parser;

fn main() {
    let cli = kesu::cli::Cli::parse();
    std::process::exit(kesu::cli::run(cli));
}
