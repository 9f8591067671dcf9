//! A TCP proxy in front of a `themis` server that can sever the event streams going
//! through it, like a network drop, while other requests pass untouched. It records the
//! `Last-Event-ID` each events request carried, so a test can see a client resume.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct StreamProxy {
    /// `http://127.0.0.1:{port}`: the server's base URL through the proxy.
    pub base: String,
    severed: watch::Sender<u32>,
    resumes: Arc<Mutex<Vec<Option<u64>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl StreamProxy {
    /// Proxies to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> StreamProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// base URL")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let (severed, watching) = watch::channel(0);
        let resumes = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let resumes = resumes.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let Ok(outbound) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    tokio::spawn(pipe(inbound, outbound, watching.clone(), resumes.clone()));
                }
            }
        });
        StreamProxy {
            base,
            severed,
            resumes,
            accept,
        }
    }

    /// Closes every connection that carries an event stream now (mid-frame, as it is).
    pub fn sever(&self) {
        self.severed.send_modify(|n| *n += 1);
    }

    /// The `Last-Event-ID` of each events request so far (None: from the start).
    pub fn resumes(&self) -> Vec<Option<u64>> {
        self.resumes.lock().expect("resumes lock").clone()
    }
}

impl Drop for StreamProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes, or until a sever while this connection
/// carries an event stream (dropping both sockets then closes them).
async fn pipe(
    inbound: TcpStream,
    outbound: TcpStream,
    mut severed: watch::Receiver<u32>,
    resumes: Arc<Mutex<Vec<Option<u64>>>>,
) {
    let (mut from_client, mut to_client) = inbound.into_split();
    let (mut from_server, mut to_server) = outbound.into_split();
    let (streaming_tx, mut streaming) = watch::channel(false);
    let requests = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if let Some(last_event_id) = events_request(&buffer[..n]) {
                resumes.lock().expect("resumes lock").push(last_event_id);
                let _ = streaming_tx.send(true);
            }
            if to_server.write_all(&buffer[..n]).await.is_err() {
                return;
            }
        }
    };
    let answers = async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    };
    let cut = async move {
        loop {
            if severed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            if *streaming.borrow_and_update() {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(requests, answers) } => {}
        () = cut => {}
    }
}

/// For the head of a `GET …/events` request: its `Last-Event-ID` (None when absent).
/// Assumes the head arrives in one read, as a browser's small GET does.
fn events_request(head: &[u8]) -> Option<Option<u64>> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let path = request_line.strip_prefix("GET ")?.split(' ').next()?;
    if !path.split('?').next()?.ends_with("/events") {
        return None;
    }
    let last_event_id = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("last-event-id"))
        .and_then(|(_, value)| value.trim().parse().ok());
    Some(last_event_id)
}
