//! The service's listening socket and the process limits it needs to hold many
//! connections at once.

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel queues before the service accepts them. Tokio's default of
/// 1,024 overflows when a thousand dashboards or SSE followers connect at once, and each
/// dropped connection attempt is retried only after the kernel's 1 s SYN timeout. The
/// kernel caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4_096;

/// Listens on the first address `addr` resolves to that can be bound.
pub(super) async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restarted service rebinds at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(resolved) {
            Ok(()) => return socket.listen(ACCEPT_BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "resolves to no address")
    }))
}

/// Raises the soft limit on open files to the hard limit (at most 65,536). Every SSE
/// follower, poller and in-flight provider request holds a descriptor, and the usual soft
/// limit of 1,024 would fail `accept` or `connect` well below the concurrency a run may
/// ask for; the hard limit stays the operator's. Returns the soft limit in force after
/// (`None` when it cannot be read).
pub(super) fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with a valid, initialised struct.
    let raised = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let wanted = limit.rlim_max.min(65_536);
        if limit.rlim_cur >= wanted {
            return Some(limit.rlim_cur);
        }
        let previous = limit.rlim_cur;
        limit.rlim_cur = wanted;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some(previous)
    };
    match raised {
        Some(previous) => {
            tracing::debug!(
                from = previous,
                to = limit.rlim_cur,
                "open file limit raised"
            );
            Some(limit.rlim_cur)
        }
        None => {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot raise the open file limit"
            );
            // SAFETY: as above.
            (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
                .then_some(limit.rlim_cur)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// 1,500 clients connecting at once to a service that has not accepted yet all get in
    /// without waiting for a SYN retry; with tokio's backlog of 1,024, about 475 wait 1 s.
    #[tokio::test]
    async fn a_burst_of_connections_waits_for_no_retry() {
        raise_open_file_limit();
        let listener = listen("127.0.0.1:0").await.expect("listen");
        let addr = listener.local_addr().expect("address");
        let connects: Vec<_> = (0..1_500)
            .map(|_| {
                tokio::spawn(tokio::time::timeout(
                    Duration::from_millis(700),
                    tokio::net::TcpStream::connect(addr),
                ))
            })
            .collect();
        let mut late = 0;
        let mut streams = Vec::new();
        for connect in connects {
            match connect.await.expect("task") {
                Ok(stream) => streams.push(stream.expect("connect")),
                Err(_) => late += 1,
            }
        }
        assert_eq!(late, 0, "connections that waited for a SYN retry");
        drop(listener);
    }

    #[tokio::test]
    async fn an_address_that_resolves_to_nothing_is_an_error() {
        assert!(listen("256.0.0.1:80").await.is_err());
    }

    #[test]
    fn the_soft_open_file_limit_reaches_the_hard_one() {
        let reported = raise_open_file_limit();
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert!(limit.rlim_cur >= limit.rlim_max.min(65_536));
        assert_eq!(reported, Some(limit.rlim_cur));
    }
}
