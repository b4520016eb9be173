//! A minimal HTTP/1.1 client (keep-alive, `Content-Length` bodies) for the heartbeat POSTs
//! of the latency benchmark: enough for the local stack, and no extra dependency.

use crate::BenchError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct HttpClient {
    host: String,
    stream: BufReader<TcpStream>,
}

impl HttpClient {
    /// Connects to `http://host:port` (the scheme is optional).
    pub async fn connect(base_url: &str) -> Result<Self, BenchError> {
        let host = base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            host,
            stream: BufReader::new(stream),
        })
    }

    /// `POST path` with a JSON body and a bearer token; returns the status and body.
    pub async fn post_json(
        &mut self,
        path: &str,
        token: &str,
        body: &str,
    ) -> Result<(u16, String), BenchError> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut status_line = String::new();
        self.stream.read_line(&mut status_line).await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err("connection closed in headers".into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
