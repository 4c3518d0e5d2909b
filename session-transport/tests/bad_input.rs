//! Bad input on each kind gets a typed error on its own connection, is
//! stopped before anything of the declared size is allocated, gets the close
//! signal where one can still be delivered, and leaves other connections
//! working.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use std::sync::Arc;

use common::{
    CLOSE_SIGNAL, Outcome, PROMPTLY, ReportingServer, echo_round_trip, listener_config,
    raw_upgrade, read_to_close, upgrade_request, ws_frame,
};
use futures_util::{SinkExt, StreamExt};
use session_core::{CloseCode, ProtocolError};
use session_transport::{TransportError, TransportKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{ClientRequestBuilder, Message};

async fn server(kind: TransportKind) -> ReportingServer {
    ReportingServer::start(listener_config(kind), PROMPTLY).await
}

/// The close signal as the byte-stream kinds frame it.
fn delimited_close_signal() -> Vec<u8> {
    let mut bytes = vec![CLOSE_SIGNAL.len() as u8];
    bytes.extend_from_slice(CLOSE_SIGNAL);
    bytes
}

/// The close signal as a server's (unmasked) binary WebSocket frame.
fn ws_close_signal() -> Vec<u8> {
    ws_frame(true, 2, CLOSE_SIGNAL.len() as u64, CLOSE_SIGNAL, false)
}

fn expect_stream_error(outcome: Outcome) -> TransportError {
    match outcome {
        Outcome::Ended(Some(error)) => error,
        other => panic!("expected a reading error, got {other:?}"),
    }
}

fn expect_handshake_error(outcome: Outcome) -> TransportError {
    match outcome {
        Outcome::Handshake(error) => error,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

/// A length prefix declaring about 4 GB: refused on its second byte.
const LENGTH_BOMB: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

#[tokio::test]
async fn tcp_length_prefix_bomb_is_refused_on_the_prefix() {
    let mut server = server(TransportKind::Tcp).await;
    let mut bomb = TcpStream::connect(server.addr).await.expect("connect");
    bomb.write_all(&LENGTH_BOMB).await.expect("write");
    // Then more bytes, as if the body were coming.
    bomb.write_all(&[0u8; 64 * 1024]).await.expect("write");

    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(
            error,
            TransportError::FrameTooLarge {
                len: 16383,
                max: 4096
            }
        ),
        "{error}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::PolicyViolation));
    // The close signal arrives, then the end of the connection.
    assert_eq!(read_to_close(&mut bomb).await, delimited_close_signal());
    // Another connection is unaffected.
    echo_round_trip(&server.url).await;
}

#[tokio::test]
async fn tls_length_prefix_bomb_is_refused_on_the_prefix() {
    let mut server = server(TransportKind::Tls).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&common::pki().client));
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let name = "localhost".try_into().expect("server name");
    let mut bomb = connector.connect(name, tcp).await.expect("TLS handshake");
    bomb.write_all(&LENGTH_BOMB).await.expect("write");
    bomb.flush().await.expect("flush");

    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(error, TransportError::FrameTooLarge { .. }),
        "{error}"
    );
    echo_round_trip(&server.url).await;
    assert_eq!(read_to_close(&mut bomb).await, delimited_close_signal());
}

#[tokio::test]
async fn an_overlong_varint_is_a_protocol_violation() {
    let mut server = server(TransportKind::Tcp).await;
    let mut peer = TcpStream::connect(server.addr).await.expect("connect");
    // Eleven continuation bytes declaring zero: too long to be a varint.
    peer.write_all(&[0x80; 11]).await.expect("write");
    let error = expect_stream_error(server.next_failure().await);
    assert_eq!(error.protocol_error(), Some(ProtocolError::BadLengthPrefix));
    assert_eq!(error.close_code(), Some(CloseCode::ProtocolError));
    assert_eq!(read_to_close(&mut peer).await, delimited_close_signal());
}

#[tokio::test]
async fn websocket_header_declaring_a_huge_message_is_refused_on_the_header() {
    let mut server = server(TransportKind::Ws).await;
    let mut bomb = raw_upgrade(server.addr).await;
    bomb.write_all(&ws_frame(true, 2, 1 << 40, b"", true))
        .await
        .expect("write");

    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(error, TransportError::FrameTooLarge { len, max: 4096 } if len == 1 << 40),
        "{error}"
    );
    echo_round_trip(&server.url).await;
    let received = read_to_close(&mut bomb).await;
    assert!(received.starts_with(&ws_close_signal()), "{received:?}");
}

#[tokio::test]
async fn websocket_header_within_the_ceiling_but_over_the_pre_login_limit_is_refused() {
    // 1 MiB is what tungstenite itself would accept (and reserve at once);
    // before login the limit is 4 KiB.
    let mut server = server(TransportKind::Ws).await;
    let mut peer = raw_upgrade(server.addr).await;
    peer.write_all(&ws_frame(true, 2, 1024 * 1024, b"", true))
        .await
        .expect("write");
    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(
            error,
            TransportError::FrameTooLarge {
                len: 1048576,
                max: 4096
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn oversized_websocket_message_in_fragments_is_refused() {
    let mut server = server(TransportKind::Ws).await;
    let mut peer = raw_upgrade(server.addr).await;
    let fragment = vec![0u8; 3000];
    peer.write_all(&ws_frame(false, 2, 3000, &fragment, true))
        .await
        .expect("write");
    peer.write_all(&ws_frame(true, 0, 3000, &fragment, true))
        .await
        .expect("write");
    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(
            error,
            TransportError::FrameTooLarge {
                len: 6000,
                max: 4096
            }
        ),
        "{error}"
    );
    let received = read_to_close(&mut peer).await;
    assert!(received.starts_with(&ws_close_signal()), "{received:?}");
}

#[tokio::test]
async fn text_message_is_a_protocol_violation() {
    let mut server = server(TransportKind::Ws).await;
    let tcp = TcpStream::connect(server.addr).await.expect("connect");
    let request =
        ClientRequestBuilder::new(server.url.parse().expect("uri")).with_sub_protocol("session.v1");
    let (mut peer, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("upgrade");
    peer.send(Message::text("hello")).await.expect("send");

    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(error, TransportError::ProtocolViolation(_)),
        "{error}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::ProtocolError));
    assert!(matches!(
        error.protocol_error(),
        Some(ProtocolError::UnexpectedFrame {
            frame: "text message",
            ..
        })
    ));
    echo_round_trip(&server.url).await;
    let message = tokio::time::timeout(PROMPTLY, peer.next())
        .await
        .expect("promptly")
        .expect("a message")
        .expect("ok");
    assert_eq!(message, Message::binary(CLOSE_SIGNAL));
}

#[tokio::test]
async fn unmasked_client_frame_is_a_websocket_violation() {
    let mut server = server(TransportKind::Ws).await;
    let mut peer = raw_upgrade(server.addr).await;
    peer.write_all(&ws_frame(true, 2, 3, b"abc", false))
        .await
        .expect("write");
    let error = expect_stream_error(server.next_failure().await);
    assert!(
        matches!(error, TransportError::WebSocketViolation(_)),
        "{error}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::ProtocolError));
}

/// A close frame RFC 6455 forbids is a WebSocket violation, not a clean
/// end, and the close signal still goes out: with one byte of payload, a
/// code that is not sent on the wire, or a reason that is not UTF-8 (which
/// is not a text message). Allowed close frames still end the stream.
#[tokio::test]
async fn a_forbidden_close_frame_is_a_websocket_violation() {
    let mut server = server(TransportKind::Ws).await;
    for close in [&b""[..], b"\x03\xe8bye", b"\x0f\x9f"] {
        let mut peer = raw_upgrade(server.addr).await;
        peer.write_all(&ws_frame(true, 8, close.len() as u64, close, true))
            .await
            .expect("write");
        let received = read_to_close(&mut peer).await;
        assert_eq!(
            received.first(),
            Some(&0x88),
            "{}: a close frame",
            close.escape_ascii()
        );
    }
    for close in [
        &b"\x03"[..],
        b"\x03\xed",
        b"\x03\xee",
        b"\x0b\xb7",
        b"\x13\x88",
        b"\x03\xe8bye \xff",
    ] {
        let what = close.escape_ascii();
        let mut peer = raw_upgrade(server.addr).await;
        peer.write_all(&ws_frame(true, 8, close.len() as u64, close, true))
            .await
            .expect("write");
        let error = expect_stream_error(server.next_failure().await);
        assert!(
            matches!(error, TransportError::WebSocketViolation(_)),
            "{what}: {error}"
        );
        assert_eq!(
            error.protocol_error(),
            Some(ProtocolError::UnexpectedFrame {
                frame: "malformed WebSocket",
                state: "reading messages"
            }),
            "{what}"
        );
        let received = read_to_close(&mut peer).await;
        assert!(
            received.starts_with(&ws_close_signal()),
            "{what}: {received:?}"
        );
    }
}

#[tokio::test]
async fn garbage_instead_of_an_upgrade_request_fails_the_handshake() {
    let mut server = server(TransportKind::Ws).await;
    let mut peer = TcpStream::connect(server.addr).await.expect("connect");
    peer.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .await
        .expect("write");
    let error = expect_handshake_error(server.next_failure().await);
    assert!(matches!(error, TransportError::Upgrade(_)), "{error}");
    assert_eq!(error.close_code(), None);
    read_to_close(&mut peer).await;
    echo_round_trip(&server.url).await;
}

#[tokio::test]
async fn an_upgrade_for_another_path_gets_404() {
    let mut server = server(TransportKind::Ws).await;
    let mut peer = TcpStream::connect(server.addr).await.expect("connect");
    let request = upgrade_request("/elsewhere", Some("session.v1"));
    peer.write_all(request.as_bytes()).await.expect("write");
    let response = read_to_close(&mut peer).await;
    assert!(
        response.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let error = expect_handshake_error(server.next_failure().await);
    assert!(matches!(error, TransportError::Upgrade(_)), "{error}");
}

#[tokio::test]
async fn an_upgrade_without_the_subprotocol_gets_400() {
    let mut server = server(TransportKind::Ws).await;
    for offered in [None, Some("chat, superchat")] {
        let mut peer = TcpStream::connect(server.addr).await.expect("connect");
        peer.write_all(upgrade_request("/session", offered).as_bytes())
            .await
            .expect("write");
        let response = read_to_close(&mut peer).await;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("session.v1 is required"), "{response}");
        let error = expect_handshake_error(server.next_failure().await);
        assert!(matches!(error, TransportError::Upgrade(_)), "{error}");
    }
}

#[tokio::test]
async fn garbage_instead_of_a_tls_hello_fails_the_handshake() {
    for kind in [TransportKind::Tls, TransportKind::Wss] {
        let mut server = server(kind).await;
        let mut peer = TcpStream::connect(server.addr).await.expect("connect");
        peer.write_all(upgrade_request("/session", Some("session.v1")).as_bytes())
            .await
            .expect("write");
        let error = expect_handshake_error(server.next_failure().await);
        assert!(matches!(error, TransportError::Tls(_)), "{kind}: {error}");
        read_to_close(&mut peer).await;
        echo_round_trip(&server.url).await;
    }
}

#[tokio::test]
async fn many_bad_peers_at_once_leave_a_good_one_working() {
    let mut server = server(TransportKind::Ws).await;
    let mut bad = Vec::new();
    for _ in 0..20 {
        let mut peer = raw_upgrade(server.addr).await;
        peer.write_all(&ws_frame(true, 2, 1 << 62, b"", true))
            .await
            .expect("write");
        bad.push(peer);
    }
    for _ in 0..20 {
        let error = expect_stream_error(server.next_failure().await);
        assert!(
            matches!(error, TransportError::FrameTooLarge { .. }),
            "{error}"
        );
    }
    echo_round_trip(&server.url).await;
    for mut peer in bad {
        assert!(
            read_to_close(&mut peer)
                .await
                .starts_with(&ws_close_signal())
        );
    }
}

#[tokio::test]
async fn a_frame_pipelined_with_the_upgrade_request_is_refused() {
    let mut server = server(TransportKind::Ws).await;
    let mut peer = TcpStream::connect(server.addr).await.expect("connect");
    let mut bytes = upgrade_request("/session", Some("session.v1")).into_bytes();
    bytes.extend(ws_frame(true, 2, 1 << 40, b"", true));
    peer.write_all(&bytes).await.expect("write");
    // tungstenite refuses bytes after the request in the same read; if the
    // kernel split them, the frame guard refuses the header instead.
    match server.next_failure().await {
        Outcome::Handshake(TransportError::Upgrade(_))
        | Outcome::Ended(Some(TransportError::FrameTooLarge { .. })) => {}
        other => panic!("{other:?}"),
    }
}
