//! The server's TLS and secure WebSocket listeners, from PEM files: login,
//! request and resume over each.

mod common;
mod pki;

use common::{TestClient, fast_options};
use session_core::{ClientConfig, ClientEvent, ClientState, Credentials};
use session_server::demo::{DemoApp, UserTable};
use session_server::{Listen, Server, TlsFiles};
use session_transport::ConnectOptions;

#[tokio::test]
async fn login_request_and_resume_over_tls_and_wss() {
    let (files, ca_pem) = pki::pki("session-server");
    let server = Server::builder()
        .listen(Listen::Tls {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: files.clone(),
        })
        .listen(Listen::Wss {
            addr: "127.0.0.1:0".parse().unwrap(),
            path: "/session".into(),
            tls: files,
        })
        .options(fast_options())
        .authenticator(UserTable::demo())
        .request_handler(DemoApp)
        .start()
        .await
        .unwrap();
    let mut options = ConnectOptions::default();
    options.tls = Some(session_transport::tls::client_config_from_pem(&ca_pem).unwrap());
    for url in [
        format!("tls://{}", server.local_addr("tls").unwrap()),
        format!("wss://{}/session", server.local_addr("wss").unwrap()),
    ] {
        let mut client =
            TestClient::connect_with(&url, ClientConfig::default(), options.clone()).await;
        client
            .session
            .login(
                std::time::Instant::now(),
                Credentials {
                    user_id: "alice".into(),
                    credential: "alice-secret".into(),
                    device: url.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        client.until(|e| matches!(e, ClientEvent::Online(_))).await;
        assert_eq!(
            client.request("over tls").await.unwrap(),
            "over tls".as_bytes()
        );
        client.drop_connection();
        client.resume().await;
        assert_eq!(client.session.state(), ClientState::Online, "{url}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_certificate_file_is_a_start_error() {
    let result = Server::builder()
        .listen(Listen::Tls {
            addr: "127.0.0.1:0".parse().unwrap(),
            tls: TlsFiles {
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            },
        })
        .start()
        .await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("tls://"), "{error}");
}
