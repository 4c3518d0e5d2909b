//! The frame limit: small before login, raised on the live transport after
//! login, enforced on every kind; a frame over it ends the reading side with
//! `FrameTooLarge` while the writing side still delivers a close signal.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use bytes::Bytes;
use common::{next_frame, pair};
use futures_util::SinkExt;
use session_core::{CloseCode, ProtocolError};
use session_transport::{TransportError, TransportKind};

fn frame(len: usize) -> Bytes {
    Bytes::from(vec![0x5a; len])
}

async fn pre_login_limit_holds_then_the_close_signal_is_delivered(kind: TransportKind) {
    let (mut server, mut client) = pair(kind).await;
    client.send(frame(4096)).await.expect("send");
    assert_eq!(
        next_frame(&mut server)
            .await
            .expect("a frame")
            .expect("ok")
            .len(),
        4096
    );

    client.send(frame(4097)).await.expect("send");
    let error = next_frame(&mut server)
        .await
        .expect("an error")
        .unwrap_err();
    assert!(
        matches!(
            error,
            TransportError::FrameTooLarge {
                len: 4097,
                max: 4096
            }
        ),
        "{kind}: {error}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::PolicyViolation));
    assert_eq!(
        error.protocol_error(),
        Some(ProtocolError::FrameTooLarge {
            len: 4097,
            max: 4096
        })
    );
    assert!(
        next_frame(&mut server).await.is_none(),
        "the stream has ended"
    );

    // The close signal still goes out over the same transport.
    let close_signal = Bytes::from_static(b"close signal");
    server
        .send(close_signal.clone())
        .await
        .expect("send the close signal");
    let linger = tokio::spawn(server.close_with_linger(common::PROMPTLY));
    assert_eq!(
        next_frame(&mut client).await.expect("a frame").expect("ok"),
        close_signal
    );
    assert!(next_frame(&mut client).await.is_none());
    drop(client);
    linger.await.expect("task").expect("close");
}

async fn the_limit_is_raised_after_login(kind: TransportKind) {
    let (mut server, mut client) = pair(kind).await;
    client.send(frame(100)).await.expect("send the login");
    next_frame(&mut server).await.expect("a frame").expect("ok");
    server.set_max_frame_len(1024 * 1024);
    assert_eq!(server.max_frame_len(), 1024 * 1024);
    client.send(frame(1024 * 1024)).await.expect("send");
    assert_eq!(
        next_frame(&mut server)
            .await
            .expect("a frame")
            .expect("ok")
            .len(),
        1024 * 1024
    );
    client.send(frame(1024 * 1024 + 1)).await.expect("send");
    assert!(matches!(
        next_frame(&mut server).await.expect("an error"),
        Err(TransportError::FrameTooLarge { .. })
    ));
}

async fn the_client_enforces_its_own_limit(kind: TransportKind) {
    let listener = common::listener(kind).await;
    let url = listener.url().expect("url");
    let mut options = common::client_options();
    options.max_frame_len = 1000;
    let (server, client) = tokio::join!(
        common::accept(&listener),
        session_transport::connect(&url, &options)
    );
    let (mut server, mut client) = (server.expect("server"), client.expect("client"));
    server.send(frame(1000)).await.expect("send");
    server.send(frame(1001)).await.expect("send");
    assert_eq!(
        next_frame(&mut client)
            .await
            .expect("a frame")
            .expect("ok")
            .len(),
        1000
    );
    assert!(matches!(
        next_frame(&mut client).await.expect("an error"),
        Err(TransportError::FrameTooLarge {
            len: 1001,
            max: 1000
        })
    ));
}

macro_rules! per_kind {
    ($($name:ident: $kind:ident,)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn pre_login_limit_holds_then_the_close_signal_is_delivered() {
                super::pre_login_limit_holds_then_the_close_signal_is_delivered(
                    TransportKind::$kind,
                )
                .await;
            }

            #[tokio::test]
            async fn the_limit_is_raised_after_login() {
                super::the_limit_is_raised_after_login(TransportKind::$kind).await;
            }

            #[tokio::test]
            async fn the_client_enforces_its_own_limit() {
                super::the_client_enforces_its_own_limit(TransportKind::$kind).await;
            }
        }
    )*};
}

per_kind! {
    tcp: Tcp,
    tls: Tls,
    ws: Ws,
    wss: Wss,
}
