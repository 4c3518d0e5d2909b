//! Client-side connection failures are typed and say what happened:
//! refused, timed out (at the stage that stalled), missing or failed TLS,
//! a server that does not speak `session.v1`, a bad URL.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use std::time::{Duration, Instant};

use common::{PROMPTLY, client_options};
use session_transport::{ConnectOptions, TransportError, TransportKind, connect};
use tokio::net::TcpListener;

/// A TCP listener that accepts and then never answers.
async fn silent_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (addr, task)
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("address");
    // The listener is dropped: nothing listens there now.
    for scheme in ["tcp", "tls", "ws", "wss"] {
        let error = connect(&format!("{scheme}://{addr}"), &client_options())
            .await
            .expect_err("refused");
        assert!(
            matches!(&error, TransportError::Refused { addr: a } if *a == addr.to_string()),
            "{scheme}: {error}"
        );
    }
}

#[tokio::test]
async fn a_silent_server_times_out_at_the_stage_that_stalled() {
    let (addr, _server) = silent_server().await;
    let mut options = client_options();
    options.connect_timeout = Duration::from_millis(200);
    for (scheme, stage) in [
        ("tls", "TLS handshake"),
        ("ws", "WebSocket upgrade"),
        ("wss", "TLS handshake"),
    ] {
        let started = Instant::now();
        let error = connect(&format!("{scheme}://{addr}"), &options)
            .await
            .expect_err("timeout");
        assert!(
            matches!(error, TransportError::TimedOut { stage: s } if s == stage),
            "{scheme}: {error}"
        );
        assert!(started.elapsed() < PROMPTLY);
    }
}

#[tokio::test]
async fn tls_without_roots_is_refused_before_connecting() {
    for scheme in ["tls", "wss"] {
        let error = connect(
            &format!("{scheme}://127.0.0.1:1"),
            &ConnectOptions::default(),
        )
        .await
        .expect_err("no roots");
        assert!(
            matches!(error, TransportError::MissingTlsConfig { kind } if kind.scheme() == scheme),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let listener = common::listener(TransportKind::Tls).await;
    let url = listener.url().expect("url");
    let server = tokio::spawn(async move { common::accept(&listener).await });

    // Trust a different CA.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = params
        .self_signed(&rcgen::KeyPair::generate().expect("key"))
        .expect("certificate");
    let mut roots = session_transport::rustls::RootCertStore::empty();
    roots.add(other_ca.der().clone()).expect("add the root");
    let mut options = client_options();
    options.tls = Some(session_transport::tls::client_config(roots).expect("config"));

    let error = connect(&url, &options).await.expect_err("untrusted");
    assert!(matches!(error, TransportError::Tls(_)), "{error}");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    // The server sees the handshake fail too.
    let server_error = server.await.expect("task").expect_err("handshake fails");
    assert!(
        matches!(
            server_error,
            TransportError::Tls(_) | TransportError::PeerClosed
        ),
        "{server_error}"
    );
}

#[tokio::test]
async fn a_server_that_does_not_choose_session_v1_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        // A WebSocket server that ignores subprotocols.
        let _ws = tokio_tungstenite::accept_async(stream).await;
        tokio::time::sleep(PROMPTLY).await;
    });
    let error = connect(&format!("ws://{addr}/session"), &client_options())
        .await
        .expect_err("no subprotocol");
    assert!(matches!(error, TransportError::Upgrade(_)), "{error}");
}

#[tokio::test]
async fn a_wrong_path_is_refused_with_the_status() {
    let listener = common::listener(TransportKind::Ws).await;
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { common::accept(&listener).await });
    let error = connect(&format!("ws://{addr}/elsewhere"), &client_options())
        .await
        .expect_err("404");
    assert!(matches!(error, TransportError::Upgrade(_)), "{error}");
    assert!(error.to_string().contains("404"), "{error}");
}

#[tokio::test]
async fn a_bad_url_says_what_is_wrong() {
    let error = connect("http://127.0.0.1:80", &client_options())
        .await
        .expect_err("bad scheme");
    assert_eq!(
        error.to_string(),
        "invalid url \"http://127.0.0.1:80\": the scheme must be tcp, tls, ws or wss"
    );
}
