//! A private `redis-server` on a free loopback port, without persistence, stopped on drop.

use crate::BenchError;
use std::process::Child;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> Result<u16, BenchError> {
    Ok(presence_local::redis_server::free_port()?)
}

impl RedisServer {
    /// Starts `redis-server` (no RDB, no AOF) and waits until it answers.
    pub fn start() -> Result<Self, BenchError> {
        let port = free_port()?;
        let child = presence_local::redis_server::command(port)
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): install it (scripts/test.sh does)")
            })?;
        let server = Self { child, port };
        let start = Instant::now();
        loop {
            if let Ok(mut c) = redis::Client::open(server.url()).and_then(|c| c.get_connection()) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return Ok(server);
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!("redis-server did not answer on port {port}").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn settings(&self) -> presence::config::RedisSettings {
        presence::config::RedisSettings {
            url: self.url(),
            cluster: false,
        }
    }

    /// A plain (non-reconnecting) multiplexed connection.
    pub async fn connection(&self) -> Result<redis::aio::MultiplexedConnection, BenchError> {
        Ok(redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await?)
    }

    /// The engine's connection type.
    pub async fn engine_connection(
        &self,
    ) -> Result<presence::sessions::RedisConnection, BenchError> {
        Ok(presence::sessions::RedisConnection::connect(&self.settings()).await?)
    }

    /// CPU seconds the server used so far (`INFO cpu`).
    pub async fn cpu_seconds(&self) -> Result<f64, BenchError> {
        let mut c = self.connection().await?;
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut c).await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .unwrap_or(0.0)
        };
        Ok(field("used_cpu_user:") + field("used_cpu_sys:"))
    }

    /// `INFO commandstats`: `(command, calls, usec)` per command, busiest first.
    pub async fn command_stats(&self) -> Result<Vec<(String, u64, u64)>, BenchError> {
        let mut c = self.connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await?;
        let mut out = Vec::new();
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("cmdstat_")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            let field = |k: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(k))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            out.push((name.to_owned(), field("calls="), field("usec=")));
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.2));
        Ok(out)
    }

    /// `CONFIG RESETSTAT`.
    pub async fn reset_stats(&self) -> Result<(), BenchError> {
        let mut c = self.connection().await?;
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// `used_memory` in bytes.
    pub async fn used_memory(&self) -> Result<u64, BenchError> {
        let mut c = self.connection().await?;
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
        Ok(info
            .lines()
            .find_map(|l| {
                l.strip_prefix("used_memory:")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
