//! The files atc-bt writes: whose they are, how they are replaced, and
//! how the temporaries of a killed command are recognised and removed.
//!
//! - [`owner`]: temporary names that identify their writer (pid, start
//!   time, machine), so a later command removes only those whose writer is
//!   gone.
//! - [`out`]: result directories and output files: an existing `--out` is
//!   replaced only when atc-bt wrote everything in it.

pub mod out;
pub mod owner;
