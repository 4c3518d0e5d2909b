//! `tls://` and `wss://`: the client trusts the roots it is given (and no
//! others), then logs in, makes requests, resumes and logs out as over
//! plain TCP and WebSocket.

mod common;

use std::path::PathBuf;

use common::{Recorder, credentials};
use session_client::{Client, ClientOptions, ConnectError, TransportError};
use session_server::demo::UserTable;
use session_server::{Listen, Server, TlsFiles};

/// A CA and a server certificate for 127.0.0.1, written as PEM files;
/// returns the server's files and the CA's certificate.
fn pki() -> (TlsFiles, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("session-client-pki-{}", std::process::id()));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_tls_and_wss() {
    let (files, ca_pem) = pki();
    let app = common::TestApp::default();
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
        .options(common::server_options())
        .authenticator(UserTable::demo())
        .request_handler(app)
        .start()
        .await
        .unwrap();
    let urls = [
        format!("tls://{}", server.local_addr("tls").unwrap()),
        format!("wss://{}/session", server.local_addr("wss").unwrap()),
    ];
    for url in urls {
        // Without roots there is nothing to trust.
        match Client::connect(&url, ClientOptions::default()).await {
            Err(ConnectError::Transport(TransportError::MissingTlsConfig { .. })) => {}
            other => panic!("{url}: {other:?}"),
        }

        let recorder = Recorder::default();
        let options = recorder.options().with_tls_roots(&ca_pem).unwrap();
        let client = Client::connect(&url, options).await.unwrap();
        client.login(credentials("alice", &url)).await.unwrap();
        assert_eq!(client.request("secret").await.unwrap(), "secret");
        client.drop_connection().await;
        assert!(client.resume().await.unwrap().resumed);
        client.logout().await.unwrap();
        assert_eq!(
            recorder.shapes(),
            [
                "connected",
                "online",
                "disconnected: Lost",
                "connected",
                "online: resumed",
                "offline: logged out",
                "disconnected: Closed"
            ],
            "{url}"
        );
    }
}
