//! The control socket: a Unix stream socket (mode 0600) speaking JSON
//! lines. One request per line, one reply per line.

/// The protocol's types live in `pmip-control`, shared with the harness.
pub use pmip_control::{Reply, Request};

/// Longest request line a client may send; past it the daemon answers
/// with an error and hangs up.
pub const MAX_LINE: usize = 1 << 20;
/// Most control connections open at once; a new one past it closes the
/// oldest, so a client that holds connections cannot lock others out.
pub const MAX_CONNECTIONS: usize = 64;

/// Set when a shutdown request arrives; told when its reply is written.
static SHUTDOWN_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SHUTDOWN_ANSWERED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Called as a daemon exits: if a shutdown request stopped it, waits until
/// that request's reply is written, at most half a second (a daemon that
/// exits before lost it, and its caller read an empty reply); otherwise
/// (SIGTERM) returns at once.
pub(crate) async fn shutdown_answered() {
    if SHUTDOWN_ASKED.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = tokio::time::timeout(Duration::from_millis(500), SHUTDOWN_ANSWERED.notified()).await;
    }
}

/// A request and where its reply goes.
pub(crate) type ControlMsg = (Request, tokio::sync::oneshot::Sender<Reply>);

enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// Reads one line of at most `max` octets (newline excluded); `None` at
/// the end of the stream.
async fn read_line_capped<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Option<Line>> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok((!line.is_empty()).then_some(Line::Text(line)));
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            if line.len() + i > max {
                r.consume(i + 1);
                return Ok(Some(Line::TooLong));
            }
            line.extend_from_slice(&avail[..i]);
            r.consume(i + 1);
            return Ok(Some(Line::Text(line)));
        }
        let n = avail.len();
        if line.len() + n > max {
            r.consume(n);
            return Ok(Some(Line::TooLong));
        }
        line.extend_from_slice(avail);
        r.consume(n);
    }
}

/// Serves one control connection: a reply per request line.
async fn serve(stream: tokio::net::UnixStream, tx: tokio::sync::mpsc::Sender<ControlMsg>) {
    use tokio::io::AsyncWriteExt;
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    loop {
        let mut shutdown = false;
        let (reply, close) = match read_line_capped(&mut read, MAX_LINE).await {
            Ok(None) | Err(_) => return,
            Ok(Some(Line::TooLong)) => {
                (Reply::error(format!("control line too long (more than {MAX_LINE} octets); closing")), true)
            }
            Ok(Some(Line::Text(line))) => match serde_json::from_slice::<Request>(&line) {
                Ok(req) => {
                    shutdown = matches!(req, Request::Shutdown);
                    if shutdown {
                        SHUTDOWN_ASKED.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    let (rtx, rrx) = tokio::sync::oneshot::channel();
                    if tx.send((req, rtx)).await.is_err() {
                        return;
                    }
                    (rrx.await.unwrap_or_else(|_| Reply::error("the node stopped")), false)
                }
                Err(e) => (Reply::error(format!("not a request: {e}")), false),
            },
        };
        // A state reply can be tens of megabytes: it is written out on a
        // thread of its own, away from the signalling loop's.
        let text = tokio::task::spawn_blocking(move || {
            let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{\"ok\":false}".into());
            text.push('\n');
            text
        })
        .await
        .unwrap_or_else(|_| "{\"ok\":false}\n".into());
        let written = write.write_all(text.as_bytes()).await;
        if shutdown {
            SHUTDOWN_ANSWERED.notify_one();
        }
        if written.is_err() || close {
            return;
        }
    }
}

/// Accepts control connections for as long as the daemon runs: at most
/// `MAX_CONNECTIONS` at once (a new one closes the oldest); when the
/// process or the system is out of descriptors (EMFILE, ENFILE) or
/// memory, it closes the oldest connection, backs off and goes on.
pub(crate) async fn accept_loop(listener: tokio::net::UnixListener, tx: tokio::sync::mpsc::Sender<ControlMsg>) {
    let mut live: std::collections::VecDeque<tokio::task::AbortHandle> = std::collections::VecDeque::new();
    let mut backoff = Duration::from_millis(5);
    let mut failures = 0u64;
    loop {
        live.retain(|h| !h.is_finished());
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                if live.len() >= MAX_CONNECTIONS {
                    if let Some(oldest) = live.pop_front() {
                        oldest.abort();
                    }
                }
                live.push_back(tokio::spawn(serve(stream, tx.clone())).abort_handle());
            }
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!("accepting a control connection failed ({failures} times so far): {e}");
                }
                let exhausted =
                    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
                if exhausted {
                    if let Some(oldest) = live.pop_front() {
                        oldest.abort();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

use std::time::Duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_past_the_cap_are_refused_and_shorter_ones_read() {
        let data = b"short\nxxxxxxxxxxxxxxxxxxxx\nlast";
        let mut r = tokio::io::BufReader::with_capacity(4, &data[..]);
        assert!(matches!(read_line_capped(&mut r, 10).await.unwrap(), Some(Line::Text(l)) if l == b"short"));
        assert!(matches!(read_line_capped(&mut r, 10).await.unwrap(), Some(Line::TooLong)));
    }

    /// A daemon's loop on a runtime of its own, as `pmip-node` runs it,
    /// that answers one shutdown request and returns (waiting for the
    /// reply to be written when `wait` says so); the runtime is dropped
    /// with it, as at the daemon's exit. Returns what the client read.
    fn shut_down(wait: bool) -> String {
        use std::io::{BufRead, Write};
        let dir = std::env::temp_dir().join(format!("pmip-control-test-{}-{wait}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let std_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        client.write_all(b"{\"cmd\":\"shutdown\"}\n").unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::from_std(std_listener).unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<ControlMsg>(4);
            tokio::spawn(accept_loop(listener, tx));
            let (req, reply) = rx.recv().await.unwrap();
            assert!(matches!(req, Request::Shutdown));
            let _ = reply.send(Reply::ok());
            if wait {
                shutdown_answered().await;
            }
        });
        drop(rt);
        let mut line = String::new();
        let _ = std::io::BufReader::new(client).read_line(&mut line);
        let _ = std::fs::remove_dir_all(&dir);
        line
    }

    #[test]
    fn a_shutdown_reply_is_written_before_the_daemon_exits() {
        assert_eq!(shut_down(false), "", "without waiting, the reply is lost with the runtime");
        assert!(shut_down(true).starts_with("{\"ok\":true"), "waiting, the reply is written");
    }
}
