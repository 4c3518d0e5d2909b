//! A test PKI made with rcgen, shared by the server's and the client's TLS
//! tests (the client's includes this file by path).

use std::path::PathBuf;

use session_server::TlsFiles;

/// A CA and a server certificate for 127.0.0.1, written as PEM files in a
/// folder named after `who` and the process; returns the server's files
/// and the CA's certificate.
pub(crate) fn pki(who: &str) -> (TlsFiles, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{who}-pki-{}", std::process::id()));
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
