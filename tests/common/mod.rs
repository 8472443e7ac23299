//! Shared by the tests that run the `gpuwatch` binary.

use std::process::Command;

/// The binary with `args` and a clean environment: the caller's
/// DATABASE_URL, GPUWATCH_* and RUST_LOG are removed, so only what the
/// test passes counts.
pub fn gpuwatch_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpuwatch"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("GPUWATCH_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}
