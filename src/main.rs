//! The `atc-bt` binary: the command line ([`cli`]) over the library
//! [`atc_bt`]. `main` only sets the allocator's policy, runs the command
//! and exits with its code.

#[macro_use]
extern crate atc_bt;

mod cli;

fn main() {
    keep_freed_memory();
    std::process::exit(cli::main());
}

/// glibc's allocator hands a freed block of 128 KB or more back to the
/// kernel at once (`munmap`, raising that size up to 32 MB as such blocks
/// are freed), and gives back the free top of a heap beyond twice that.
/// A run's result buffers (a few MB a column for each chunk of symbols)
/// were mapped, faulted in page by page and unmapped again for every
/// chunk. With blocks under 32 MB kept in the heap and 256 MB of free
/// heap kept before trimming, `run --no-report` at 4,000 × 2,500 bars
/// takes 53,000 page faults instead of 79,000 and 5–8% less time, with a
/// peak resident size 16 MB larger (20 MB at 10,000 symbols). Set in the
/// binary only: the library leaves a host process's allocator alone.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets two of the allocator's parameters; it is
    // called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
