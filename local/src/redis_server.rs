//! A private `redis-server` for the local stack, the tests and the benchmarks: loopback
//! only, no persistence, on a free port.

use std::net::TcpListener;
use std::process::{Command, Stdio};

/// A port nobody listens on now (the OS picks it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The command that starts a private `redis-server` on `port`: bound to 127.0.0.1, no RDB
/// snapshots, no AOF, output discarded. Add arguments (e.g. `--cluster-enabled yes`) before
/// spawning.
pub fn command(port: u16) -> Command {
    let mut c = Command::new("redis-server");
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}
