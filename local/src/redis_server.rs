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

/// Starts a private `redis-server` (killed when the child is dropped) and waits until it
/// listens. Returns it with its URL.
pub async fn spawn() -> std::io::Result<(tokio::process::Child, String)> {
    let port = free_port()?;
    let child = tokio::process::Command::from(command(port))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start redis-server (install it, or set REDIS_URL): {e}"),
            )
        })?;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok((child, format!("redis://127.0.0.1:{port}")));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis-server did not start listening",
    ))
}
