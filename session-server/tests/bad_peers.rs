//! Bad peers: a stalled unauthenticated connection, a length-prefix bomb,
//! an oversized frame before login. Each gets the right close code, and
//! other sessions are untouched.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{KINDS, Recorder, TestClient, fast_options, start, url};
use futures_util::SinkExt;
use session_core::CloseCode;
use session_transport::ConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_stalled_unauthenticated_peer_is_closed_with_login_timeout() {
    for kind in KINDS {
        let mut options = fast_options();
        options.core.login_timeout = Duration::from_millis(300);
        let server = start(options, Recorder::default()).await;
        let mut bystander = TestClient::online(&url(&server, kind), "bob", "web").await;
        let mut stalled =
            session_transport::connect(&url(&server, kind), &ConnectOptions::default())
                .await
                .unwrap();
        assert_eq!(
            common::read_close_signal(&mut stalled).await,
            Some(CloseCode::LoginTimeout)
        );
        assert_eq!(bystander.request("ok?").await.unwrap(), "ok?".as_bytes());
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_length_prefix_bomb_gets_policy_violation_and_nothing_is_reserved() {
    let server = start(fast_options(), Recorder::default()).await;
    let mut bystander = TestClient::online(&url(&server, "tcp"), "bob", "web").await;
    let mut raw = tokio::net::TcpStream::connect(server.local_addr("tcp").unwrap())
        .await
        .unwrap();
    // Declares a 4 GiB frame.
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 0x0f])
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(common::SOON, raw.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    // One delimited CloseSignal frame: decode it.
    use session_core::proto::prost::Message;
    let frame = session_core::proto::v1::ServerFrame::decode_length_delimited(answer.as_slice())
        .expect("a close signal");
    let Some(session_core::proto::v1::server_frame::Kind::CloseSignal(signal)) = frame.kind else {
        panic!("expected a close signal: {frame:?}");
    };
    assert_eq!(
        CloseCode::from_wire(signal.code),
        CloseCode::PolicyViolation
    );
    assert_eq!(bystander.request("ok?").await.unwrap(), "ok?".as_bytes());
    server.shutdown().await;
}

#[tokio::test]
async fn an_oversized_frame_before_login_gets_policy_violation() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let mut bystander = TestClient::online(&url(&server, kind), "bob", "web").await;
        let mut peer = session_transport::connect(&url(&server, kind), &ConnectOptions::default())
            .await
            .unwrap();
        peer.send(Bytes::from(vec![0u8; 5000])).await.unwrap();
        assert_eq!(
            common::read_close_signal(&mut peer).await,
            Some(CloseCode::PolicyViolation)
        );
        assert_eq!(bystander.request("ok?").await.unwrap(), "ok?".as_bytes());
        common::close_and_shut_down(server, (bystander, peer)).await;
    }
}

#[tokio::test]
async fn garbage_before_login_gets_protocol_error() {
    for kind in KINDS {
        let server = start(fast_options(), Recorder::default()).await;
        let mut peer = session_transport::connect(&url(&server, kind), &ConnectOptions::default())
            .await
            .unwrap();
        peer.send(Bytes::from_static(&[0x0a, 0xff, 0xff, 0xff]))
            .await
            .unwrap();
        assert_eq!(
            common::read_close_signal(&mut peer).await,
            Some(CloseCode::ProtocolError)
        );
        common::close_and_shut_down(server, peer).await;
    }
}
