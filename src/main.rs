//! The `atc-bt` binary: the command line ([`cli`]) over the library
//! [`atc_bt`]. `main` only runs the command and exits with its code.

#[macro_use]
extern crate atc_bt;

mod cli;

fn main() {
    std::process::exit(cli::main());
}
