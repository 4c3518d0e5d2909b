//! The server's TLS and secure WebSocket listeners, from PEM files: login,
//! request and resume over each.

mod common;

use std::path::PathBuf;

use common::{TestClient, fast_options};
use session_core::{ClientConfig, ClientEvent, ClientState, Credentials};
use session_server::demo::{DemoApp, UserTable};
use session_server::{Listen, Server, TlsFiles};
use session_transport::ConnectOptions;

/// A CA and a server certificate for 127.0.0.1, written as PEM files.
fn pki() -> (TlsFiles, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("session-server-pki-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let files = TlsFiles {
        cert: dir.join("chain.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    (files, ca_pem)
}

#[tokio::test]
async fn login_request_and_resume_over_tls_and_wss() {
    let (files, ca_pem) = pki();
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
