//! Whom HTTPS trackers are trusted by: the system's CA store, as the operator keeps it
//! (rustls-native-certs: `$SSL_CERT_FILE` and/or `$SSL_CERT_DIR` when set, else the
//! distribution's bundle such as /etc/ssl/certs/ca-certificates.crt), so a tracker signed by
//! the operator's own CA works; the Mozilla roots bundled in the binary (webpki-roots) only when
//! that store is empty or unreadable. Loaded once per process, on the first HTTPS announce.
//!
//! It owns the TLS client configuration only; the HTTP exchange is [`super::http`]'s.

use std::sync::{Arc, OnceLock};

/// Where the trust roots came from, and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    System(usize),
    Bundled(usize),
}

/// The TLS configuration every HTTPS announce uses.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let (roots, source) = trust_roots(rustls_native_certs::load_native_certs());
            match source {
                RootSource::System(n) => {
                    tracing::info!(
                        "HTTPS trackers: {n} trusted CA certificates from the system store"
                    )
                }
                RootSource::Bundled(n) => tracing::warn!(
                    "HTTPS trackers: no usable CA certificate in the system store; using the {n} \
                     bundled roots (set SSL_CERT_FILE or install ca-certificates to trust your own)"
                ),
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The system store's certificates if any of them parse, else the bundled roots. Problems
/// reading the store are logged (they name files, never contents).
pub fn trust_roots(
    system: rustls_native_certs::CertificateResult,
) -> (rustls::RootCertStore, RootSource) {
    for e in &system.errors {
        tracing::warn!("HTTPS trackers: reading the system CA store: {e}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    if ignored > 0 {
        tracing::debug!("HTTPS trackers: {ignored} system CA certificate(s) could not be used");
    }
    if added > 0 {
        return (roots, RootSource::System(added));
    }
    let bundled = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let n = bundled.len();
    (bundled, RootSource::Bundled(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_unreadable_system_store_falls_back_to_the_bundled_roots() {
        let (roots, source) = trust_roots(rustls_native_certs::CertificateResult::default());
        assert!(
            matches!(source, RootSource::Bundled(n) if n > 100),
            "{source:?}"
        );
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        // Garbage is no certificate: still the bundled roots.
        let mut junk = rustls_native_certs::CertificateResult::default();
        junk.certs.push(vec![0x30, 0x03, 1, 2, 3].into());
        assert!(matches!(trust_roots(junk).1, RootSource::Bundled(_)));
    }
}
