//! Interoperability with an independent WebSocket implementation, Node's
//! `ws` package: its client talks to our server (one message whole, one in
//! fragments, a ping), and our client talks to its server (an echo, a ping
//! we must answer, then a text message we must refuse).
//!
//! Needs `node` and `npm` on the PATH. The test installs the package itself
//! (`npm ci` in `tests/node`) when `node_modules` is missing, and fails,
//! saying so, when node or npm is unavailable.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use bytes::Bytes;
use common::{PROMPTLY, client_options, next_frame, request_frame, request_id};
use futures_util::SinkExt;
use session_core::CloseCode;
use session_transport::{TransportError, TransportKind};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Installs the Node peer's dependencies once per test run.
fn install_node_peer() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = node_dir();
        let node = std::process::Command::new("node").arg("--version").output();
        assert!(
            node.as_ref().is_ok_and(|out| out.status.success()),
            "this test needs Node.js (`node` on the PATH) to run an independent WebSocket \
             peer: {node:?}"
        );
        if dir.join("node_modules/ws/package.json").exists() {
            return;
        }
        let install = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output();
        match install {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`npm ci` in {} failed: {}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(error) => panic!(
                "this test needs npm on the PATH to install the Node WebSocket peer in {}: {error}",
                dir.display()
            ),
        }
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn node_client_talks_to_our_server() {
    install_node_peer();
    let listener = common::listener(TransportKind::Ws).await;
    let url = listener.url().expect("url");
    let frame = request_frame(42, 300);

    let node = Command::new("node")
        .arg("peer.mjs")
        .arg("client")
        .arg(&url)
        .arg(hex(&frame))
        .current_dir(node_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");

    let mut server = common::accept(&listener).await.expect("handshake");
    // One message whole, the same in two fragments: both arrive whole.
    for _ in 0..2 {
        let received = next_frame(&mut server).await.expect("a frame").expect("ok");
        assert_eq!(request_id(&received), 42);
        assert_eq!(received, frame);
        server.send(received).await.expect("echo");
    }
    // Node closes with code 1000 once it has both echoes and its pong.
    assert!(next_frame(&mut server).await.is_none(), "a clean close");
    // Node waits for the server to close the TCP connection.
    server.close().await.expect("close");

    let out = tokio::time::timeout(PROMPTLY * 3, node.wait_with_output())
        .await
        .expect("node exits")
        .expect("node output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [hex(&frame), hex(&frame)]
    );
}

#[tokio::test]
async fn our_client_talks_to_a_node_server() {
    install_node_peer();
    let mut node = Command::new("node")
        .arg("peer.mjs")
        .arg("server")
        .current_dir(node_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(PROMPTLY * 3, lines.next_line())
        .await
        .expect("node starts listening")
        .expect("read stdout");
    let port = first
        .as_deref()
        .and_then(|line| line.strip_prefix("listening "))
        .unwrap_or_else(|| panic!("unexpected first line from node: {first:?}"));

    let url = format!("ws://127.0.0.1:{port}/session");
    let mut client = session_transport::connect(&url, &client_options())
        .await
        .expect("connect to node");
    let frame = request_frame(7, 5000);
    client.send(frame.clone()).await.expect("send");
    assert_eq!(
        next_frame(&mut client).await.expect("an echo").expect("ok"),
        frame
    );
    // Node pings; we answer; it then sends a text message, which is refused.
    let error = next_frame(&mut client)
        .await
        .expect("an error")
        .unwrap_err();
    assert!(
        matches!(error, TransportError::ProtocolViolation(_)),
        "{error}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::ProtocolError));
    client
        .send(Bytes::from_static(b"bye"))
        .await
        .expect("still writable");
    client.close().await.expect("close");

    let closed = tokio::time::timeout(PROMPTLY, lines.next_line())
        .await
        .expect("node sees the close")
        .expect("read stdout");
    assert!(
        closed
            .as_deref()
            .is_some_and(|line| line.starts_with("closed ")),
        "{closed:?}"
    );
    let status = tokio::time::timeout(PROMPTLY, node.wait())
        .await
        .expect("node exits")
        .expect("status");
    assert!(status.success(), "node failed: {status}");
}
