//! `tls://` and `wss://`: the client trusts the roots it is given (and no
//! others), then logs in, makes requests, resumes and logs out as over
//! plain TCP and WebSocket.

mod common;
#[path = "../../session-server/tests/pki/mod.rs"]
mod pki;

use common::{Recorder, credentials};
use session_client::{Client, ClientOptions, ConnectError, TransportError};
use session_server::demo::UserTable;
use session_server::{Listen, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_over_tls_and_wss() {
    let (files, ca_pem) = pki::pki("session-client");
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
