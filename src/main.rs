//! The `atc-bt` binary: a thin layer over [`atc_bt::cli`].

fn main() {
    std::process::exit(atc_bt::cli::main());
}
