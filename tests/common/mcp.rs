//! The MCP reference server (`@modelcontextprotocol/server-everything` from npm, over
//! Streamable HTTP) started for a test, and a proxy in front of it that records the
//! headers each request carried.
//!
//! The package is installed with npm, once per pinned version, into a directory under
//! the build directory. Without `node` and `npm` the tests fail, never skip (`.ci/run`
//! installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The pinned reference server.
pub const EVERYTHING_PACKAGE: &str = "@modelcontextprotocol/server-everything@2026.8.31";

/// The installed package's entry point, installing it first if needed (one install at
/// a time within a test binary).
fn everything_entry() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-everything");
    let entry = dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let stamp = dir.join("themis-stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(EVERYTHING_PACKAGE) && entry.exists()
    {
        return entry;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the npm directory");
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
        .arg(&dir)
        .arg(EVERYTHING_PACKAGE)
        .output()
        .unwrap_or_else(|e| {
            panic!("the MCP tests need npm (and node) to install {EVERYTHING_PACKAGE}: {e}")
        });
    assert!(
        output.status.success(),
        "npm install {EVERYTHING_PACKAGE} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(entry.exists(), "npm installed no {}", entry.display());
    std::fs::write(&stamp, EVERYTHING_PACKAGE).expect("writing the npm stamp");
    entry
}

/// A running reference server; killed when dropped.
pub struct Everything {
    /// `http://127.0.0.1:{port}/mcp`.
    pub url: String,
    pub port: u16,
    child: Child,
}

impl Everything {
    /// Starts the server on a free port and waits until it accepts connections.
    pub fn start() -> Everything {
        let port = free_port();
        Self::start_on(port)
    }

    /// Starts the server on `port` (a restart on the same address).
    pub fn start_on(port: u16) -> Everything {
        let entry = everything_entry();
        let child = Command::new("node")
            .arg(&entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the MCP tests need node to run {EVERYTHING_PACKAGE}: {e}"));
        let mut server = Everything {
            url: format!("http://127.0.0.1:{port}/mcp"),
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the MCP reference server exited: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the MCP reference server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Kills the server and waits for it to be gone.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An HTTP proxy in front of an MCP server that records every request's headers.
pub struct HeaderProxy {
    /// The proxied MCP endpoint: `http://127.0.0.1:{port}/mcp`.
    pub url: String,
    seen: Arc<Mutex<Vec<reqwest::header::HeaderMap>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HeaderProxy {
    /// Proxies to `upstream` (`http://host:port/mcp`), streaming answers back.
    pub async fn start(upstream: &str) -> HeaderProxy {
        use axum::body::Body;
        use axum::extract::Request;
        use axum::response::Response;
        use futures::TryStreamExt;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let upstream = upstream.to_owned();
        let recorder = seen.clone();
        let handler = move |request: Request| {
            let (client, upstream, seen) = (client.clone(), upstream.clone(), recorder.clone());
            async move {
                let (parts, body) = request.into_parts();
                seen.lock().unwrap().push(parts.headers.clone());
                let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                let mut headers = parts.headers.clone();
                headers.remove("host");
                headers.remove("content-length");
                let answer = client
                    .request(parts.method, &upstream)
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let mut response = Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    response = response.header(name, value);
                }
                let stream = answer.bytes_stream().map_err(std::io::Error::other);
                response.body(Body::from_stream(stream)).unwrap()
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HeaderProxy { url, seen, task }
    }

    /// Values of header `name` on every request so far, in order.
    pub fn values(&self, name: &str) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| {
                h.get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            })
            .collect()
    }
}

impl Drop for HeaderProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
