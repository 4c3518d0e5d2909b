//! TLS with rustls (ring backend): PEM loading and the client and server
//! configurations for `tls://` and `wss://`.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

use crate::TransportError;

fn pem_error(path: &Path, error: impl std::fmt::Display) -> TransportError {
    TransportError::Pem {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

/// Loads every certificate of a PEM file (a chain: the leaf first, then its
/// intermediates; or a set of root certificates).
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// Loads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TransportError> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// The ring crypto provider, set explicitly so that another rustls backend
/// elsewhere in the program cannot make the choice ambiguous.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `cert_chain` (leaf first) with `key`.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TransportError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TransportError::TlsConfig)?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)
        .map_err(TransportError::TlsConfig)?;
    Ok(Arc::new(config))
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config_from_pem(
    cert_chain: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<Arc<ServerConfig>, TransportError> {
    server_config(load_certs(cert_chain)?, load_private_key(key)?)
}

/// A client configuration trusting `roots` (and nothing else).
pub fn client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TransportError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TransportError::TlsConfig)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client configuration trusting the certificates of a PEM file.
pub fn client_config_from_pem(
    roots: impl AsRef<Path>,
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut store = RootCertStore::empty();
    for cert in load_certs(roots)? {
        store.add(cert).map_err(TransportError::TlsConfig)?;
    }
    client_config(store)
}
