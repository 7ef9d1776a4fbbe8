//! Optional TLS on the device port. A connection whose first byte is a TLS handshake record
//! (`0x16`; no device protocol starts with it) is handed to rustls; protocol detection then
//! runs inside the TLS stream. The certificate and key come from PEM files and are reloaded
//! when the files change (cert-manager renewals, a rotated Kubernetes secret) without a
//! restart: [`ReloadingCert`] is the `ResolvesServerCert` every handshake asks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use super::watch::FileWatch;

/// The first byte of a TLS record carrying a handshake message (the ClientHello).
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate chain {0}: {1}")]
    Cert(PathBuf, String),
    #[error("reading the private key {0}: {1}")]
    Key(PathBuf, String),
    #[error("the certificate chain in {0} is empty")]
    NoCert(PathBuf),
    #[error("unusable key or certificate: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads a PEM certificate chain and private key and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert(cert.into(), e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.into()));
    }
    let der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key(key.into(), e.to_string()))?;
    let signing = provider::sign::any_supported_type(&der)?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()?;
    Ok(ck)
}

/// The current certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    watch: FileWatch,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Loads the files; an error here is a configuration error (the gateway does not start).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let watch = FileWatch::new(vec![cert_path.into(), key_path.into()]);
        let ck = load(cert_path, key_path)?;
        Ok(ReloadingCert {
            watch,
            current: RwLock::new(Arc::new(ck)),
        })
    }

    /// Reloads when either file changed and the change has settled (one call after it was
    /// seen). `Ok(true)`: a new certificate is in use. On error the old one stays, and the
    /// pair is read again when a file changes again (a renewal may write the two files one
    /// after the other: a certificate that does not match the old key waits for the new key).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let [cert, key] = self.watch.paths() else {
            unreachable!("a certificate and a key are watched")
        };
        let Some(ck) = self.watch.poll(|| load(cert, key))? else {
            return Ok(false);
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        Ok(true)
    }

    /// The certificate handshakes get now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS acceptor (TLS 1.2 and 1.3, ring) serving whatever `cert` holds at handshake time.
/// Trackers do not present client certificates.
pub fn acceptor(cert: Arc<ReloadingCert>) -> Result<TlsAcceptor, TlsError> {
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
        (cert, key, c.cert.der().to_vec())
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("avlgate-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loads_and_reloads_on_change_and_keeps_the_old_on_a_bad_pair() {
        let dir = tempdir("reload");
        let (cert, key, der1) = write_pair(&dir, "one.example");
        let r = ReloadingCert::load(&cert, &key).unwrap();
        assert_eq!(r.current().cert[0].as_ref(), &der1[..]);
        assert!(!r.reload_if_changed().unwrap(), "unchanged files");

        // Only the certificate rewritten: it does not match the key; the old pair stays.
        let other = rcgen::generate_simple_self_signed(vec!["x.example".into()]).unwrap();
        std::fs::write(&cert, format!("{}\n", other.cert.pem())).unwrap();
        assert!(!r.reload_if_changed().unwrap(), "seen, settling");
        assert!(r.reload_if_changed().is_err());
        assert_eq!(r.current().cert[0].as_ref(), &der1[..]);

        // Then the key too: the new pair is served.
        let (_, _, der2) = write_pair(&dir, "two.example");
        assert!(!r.reload_if_changed().unwrap(), "seen, settling");
        assert!(r.reload_if_changed().unwrap());
        assert_eq!(r.current().cert[0].as_ref(), &der2[..]);
        assert_ne!(der1, der2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_or_garbage_files_are_errors() {
        let dir = tempdir("bad");
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        assert!(load(&cert, &key).is_err());
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        assert!(matches!(load(&cert, &key), Err(TlsError::NoCert(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
