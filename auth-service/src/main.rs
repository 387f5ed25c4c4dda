//! `auth-service`: the token issuer. See `docs/ISSUER.md` for the design and
//! `auth-service --help` for the commands and their configuration.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    platform::telemetry::init("auth-service");
    return_freed_buffers_to_the_system();
    let cli = auth_service::cli::Cli::parse();
    match auth_service::cli::run(cli, std::io::stdin(), &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every login hashes with Argon2id in a 19 MiB buffer. glibc's malloc serves such a buffer
/// from mmap, but after the first one is freed it raises its mmap threshold to that size, and
/// from then on keeps freed buffers in the heap: an idle issuer stayed at 75-175 MB of RSS
/// after a burst of logins. A fixed threshold (which also turns the raising off) sends every
/// allocation over 128 KiB to mmap and back to the system on free: idle RSS stays near 15 MB,
/// for a page-fault cost of about a millisecond on a login that takes tens.
///
/// No allocator crate does this: mimalloc returned the buffers but idled at 30-40 MB, and the
/// `MALLOC_MMAP_THRESHOLD_` variable only works if every way of starting the service sets it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn return_freed_buffers_to_the_system() {
    const THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: `mallopt` only sets a parameter of glibc's allocator, under its own lock; it
    // touches no memory of ours.
    let applied = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) };
    if applied != 1 {
        tracing::warn!(
            "mallopt(M_MMAP_THRESHOLD) failed: freed password-hash buffers stay resident"
        );
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_freed_buffers_to_the_system() {}
