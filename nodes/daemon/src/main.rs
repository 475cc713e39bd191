//! The node daemon. Its I/O shell (raw MH sockets, userspace tunnel,
//! rtnetlink, control socket) is issue #4 and not built yet.

fn main() -> std::process::ExitCode {
    eprintln!(
        "pmip-node: the node daemon is not implemented yet (see issue #4); nothing was started"
    );
    std::process::ExitCode::from(2)
}
