//! The TLS handshake and the WebSocket upgrade count against the login
//! deadline: a peer that stalls there is dropped when it passes, while
//! `accept` keeps returning other connections at once.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Outcome, PROMPTLY, ReportingServer, echo_round_trip, listener_config, read_to_close};
use session_transport::{TransportError, TransportKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The login deadline in these tests: short, so that the tests are quick.
const DEADLINE: Duration = Duration::from_millis(200);

async fn server(kind: TransportKind) -> ReportingServer {
    ReportingServer::start(listener_config(kind), DEADLINE).await
}

async fn expect_timeout(server: &mut ReportingServer, stage: &str) {
    match server.next_failure().await {
        Outcome::Handshake(TransportError::TimedOut { stage: got }) => assert_eq!(got, stage),
        other => panic!("expected a timeout during {stage}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_peer_on_tls_is_dropped_at_the_deadline() {
    for kind in [TransportKind::Tls, TransportKind::Wss] {
        let mut server = server(kind).await;
        let mut staller = TcpStream::connect(server.addr).await.expect("connect");
        // Meanwhile, others connect and work.
        echo_round_trip(&server.url).await;
        expect_timeout(&mut server, "TLS handshake").await;
        read_to_close(&mut staller).await;
    }
}

#[tokio::test]
async fn a_peer_stalling_inside_the_client_hello_is_dropped_at_the_deadline() {
    let mut server = server(TransportKind::Tls).await;
    let mut staller = TcpStream::connect(server.addr).await.expect("connect");
    // A handshake record header announcing 512 bytes, then nothing.
    staller
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    echo_round_trip(&server.url).await;
    expect_timeout(&mut server, "TLS handshake").await;
    read_to_close(&mut staller).await;
}

#[tokio::test]
async fn a_peer_stalling_inside_the_upgrade_request_is_dropped_at_the_deadline() {
    let mut server = server(TransportKind::Ws).await;
    let mut staller = TcpStream::connect(server.addr).await.expect("connect");
    staller
        .write_all(b"GET /session HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
        .await
        .expect("write");
    echo_round_trip(&server.url).await;
    expect_timeout(&mut server, "WebSocket upgrade").await;
    read_to_close(&mut staller).await;
}

#[tokio::test]
async fn a_peer_stalling_after_tls_before_the_upgrade_is_dropped_at_the_deadline() {
    let mut server = server(TransportKind::Wss).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&common::pki().client));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = "localhost".try_into().expect("server name");
    let mut staller = connector.connect(name, tcp).await.expect("TLS handshake");
    echo_round_trip(&server.url).await;
    expect_timeout(&mut server, "WebSocket upgrade").await;
    read_to_close(&mut staller).await;
}

#[tokio::test]
async fn many_stalled_peers_do_not_hold_up_accept() {
    let mut server = server(TransportKind::Wss).await;
    let mut stallers = Vec::new();
    for _ in 0..50 {
        stallers.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    tokio::time::timeout(PROMPTLY, echo_round_trip(&server.url))
        .await
        .expect("a good peer is served while 50 others stall");
    for _ in 0..50 {
        expect_timeout(&mut server, "TLS handshake").await;
    }
}

#[tokio::test]
async fn a_deadline_already_past_fails_at_once() {
    let listener = common::listener(TransportKind::Ws).await;
    let _peer = TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let accepted = listener.accept().await.expect("accept");
    let started = std::time::Instant::now();
    let error = accepted
        .handshake(std::time::Instant::now())
        .await
        .expect_err("no time left");
    assert!(matches!(error, TransportError::TimedOut { .. }), "{error}");
    assert!(started.elapsed() < PROMPTLY);
}

/// Awaiting a handshake costs a plain TCP connection's login task no room
/// for the handshakes it does not run: the TLS handshake and the WebSocket
/// upgrade (about 12 KB) are boxed, behind one await of a boxed future.
/// Every login in flight holds this future, and what they leave behind
/// shows in the server's memory per idle session (`docs/benchmarks.md`,
/// S2). An earlier shape, with an await in each handshake's arm, made it
/// 272 B, and S2 about 20–30 B per session dearer.
#[tokio::test]
async fn awaiting_a_handshake_stays_small() {
    let listener = common::listener(TransportKind::Tcp).await;
    let addr = listener.local_addr().expect("address");
    let (accepted, _client) = tokio::join!(listener.accept(), TcpStream::connect(addr));
    let handshake = accepted
        .expect("accepted")
        .handshake(std::time::Instant::now() + DEADLINE);
    let size = size_of_val(&handshake);
    assert!(size <= 200, "the handshake future is {size} B");
    handshake.await.expect("plain TCP has no handshake to fail");
}
