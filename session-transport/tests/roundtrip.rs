//! Frames go both ways over loopback on all four kinds, in order and
//! unchanged, and a close on either side ends the other side's stream cleanly.
// The shared helpers build TLS listeners and clients too.
#![cfg(feature = "tls")]

mod common;

use bytes::Bytes;
use common::{next_frame, pair, request_frame, request_id};
use futures_util::SinkExt;
use session_transport::TransportKind;

async fn frames_go_both_ways(kind: TransportKind) {
    let (mut server, mut client) = pair(kind).await;
    assert_eq!((server.kind(), client.kind()), (kind, kind));
    assert_eq!(server.peer_addr(), client.local_addr());
    assert_eq!(client.peer_addr(), server.local_addr());
    assert_eq!(server.max_frame_len(), 4096, "pre-login limit");
    assert_eq!(client.max_frame_len(), 1024 * 1024);

    // Client to server: several frames in one flush, the last one empty.
    for id in 1..=3 {
        client.feed(request_frame(id, 1000)).await.expect("feed");
    }
    client
        .feed(Bytes::new())
        .await
        .expect("feed an empty frame");
    client.flush().await.expect("flush");
    for id in 1..=3 {
        let frame = next_frame(&mut server).await.expect("a frame").expect("ok");
        assert_eq!(request_id(&frame), id);
        assert_eq!(frame, request_frame(id, 1000));
    }
    assert_eq!(
        next_frame(&mut server).await.expect("a frame").expect("ok"),
        Bytes::new()
    );

    // Server to client, up to the client's limit.
    for (id, len) in [(10, 10), (11, 100_000), (12, 1024 * 1024 - 16)] {
        server.send(request_frame(id, len)).await.expect("send");
        let frame = next_frame(&mut client).await.expect("a frame").expect("ok");
        assert_eq!(frame, request_frame(id, len));
    }

    // The server closes: the client's stream ends without an error.
    let linger = tokio::spawn(server.close_with_linger(common::PROMPTLY));
    assert!(
        next_frame(&mut client).await.is_none(),
        "clean end on {kind}"
    );
    drop(client);
    linger.await.expect("task").expect("close");
}

async fn client_close_ends_the_server_stream(kind: TransportKind) {
    let (mut server, mut client) = pair(kind).await;
    client.send(request_frame(1, 10)).await.expect("send");
    client.close().await.expect("close");
    assert!(next_frame(&mut server).await.expect("a frame").is_ok());
    assert!(
        next_frame(&mut server).await.is_none(),
        "clean end on {kind}"
    );
    assert!(client.send(request_frame(2, 10)).await.is_err(), "closed");
}

macro_rules! per_kind {
    ($($name:ident: $kind:ident,)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn frames_go_both_ways() {
                super::frames_go_both_ways(TransportKind::$kind).await;
            }

            #[tokio::test]
            async fn client_close_ends_the_server_stream() {
                super::client_close_ends_the_server_stream(TransportKind::$kind).await;
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

/// A listener on a wildcard address reports each connection's own local
/// address (it depends on the connection), and one on a specific address
/// reports that address.
#[tokio::test]
async fn local_addresses_of_accepted_connections() {
    use session_transport::{Listener, ListenerConfig};

    for bind in ["0.0.0.0:0", "127.0.0.1:0"] {
        let config = ListenerConfig::new(TransportKind::Tcp, bind.parse().expect("address"));
        let listener = Listener::bind(config).await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let (server, client) = tokio::join!(
            common::accept(&listener),
            tokio::net::TcpStream::connect(to)
        );
        let (server, client) = (server.expect("accept"), client.expect("connect"));
        assert_eq!(server.local_addr(), to, "listener on {bind}");
        assert_eq!(server.peer_addr(), client.local_addr().expect("address"));
    }
}
