//! The test API server's serving certificate: a CA and a certificate for `127.0.0.1` and
//! `localhost` signed by it, with the key type a real cluster's API server has.
//!
//! [`ServingKey::Rsa2048`] is the default because it is kubeadm's
//! (`ClusterConfiguration.encryptionAlgorithm` defaults to `RSA-2048`) and what
//! kube-apiserver generates for itself without `--tls-cert-file`; [`ServingKey::EcdsaP256`]
//! is kubeadm's `ECDSA-P256` and k3s's. The key type decides what a client's TLS handshake
//! costs (verifying two P-256 signatures costs far more than two RSA-2048 ones), so the
//! benchmarks say which they used.
//!
//! ring cannot generate RSA keys, so the two RSA keys are fixed, generated once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`. Like a Go server, it
//! chooses the TLS 1.3 cipher suite by its own order (AES-128-GCM first). They are test keys:
//! they protect nothing but a loopback test server. The certificates are made at run time,
//! once per process and key type.

use std::sync::{Arc, OnceLock};

/// The test CA's RSA key (test only).
const CA_RSA_2048: &str = include_str!("tls/ca-rsa-2048.pem");
/// The serving certificate's RSA key (test only).
const SERVING_RSA_2048: &str = include_str!("tls/serving-rsa-2048.pem");

/// The serving certificate's key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum ServingKey {
    /// RSA 2048 (kubeadm's default, kube-apiserver's self-signed certificate).
    #[default]
    Rsa2048,
    /// ECDSA P-256 (kubeadm's `ECDSA-P256`, k3s).
    EcdsaP256,
}

impl ServingKey {
    /// How a benchmark names it.
    pub fn describe(self) -> &'static str {
        match self {
            ServingKey::Rsa2048 => "RSA-2048 serving certificate",
            ServingKey::EcdsaP256 => "ECDSA P-256 serving certificate",
        }
    }
}

/// The acceptor and the CA's PEM.
pub(crate) type Serving = (tokio_rustls::TlsAcceptor, String);

/// The serving TLS of `key`, made once per process.
pub(crate) fn serving(key: ServingKey) -> Result<Serving, String> {
    static RSA: OnceLock<Result<Serving, String>> = OnceLock::new();
    static ECDSA: OnceLock<Result<Serving, String>> = OnceLock::new();
    let cell = match key {
        ServingKey::Rsa2048 => &RSA,
        ServingKey::EcdsaP256 => &ECDSA,
    };
    cell.get_or_init(|| make(key)).clone()
}

fn make(kind: ServingKey) -> Result<Serving, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let (ca_key, key) = match kind {
        ServingKey::Rsa2048 => (
            KeyPair::from_pem(CA_RSA_2048).map_err(|e| err(&e))?,
            KeyPair::from_pem(SERVING_RSA_2048).map_err(|e| err(&e))?,
        ),
        ServingKey::EcdsaP256 => (
            KeyPair::generate().map_err(|e| err(&e))?,
            KeyPair::generate().map_err(|e| err(&e))?,
        ),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "heal test API server CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| err(&e))?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .map_err(|e| err(&e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca).map_err(|e| err(&e))?;
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    // A Go server (kube-apiserver) picks the cipher suite by its own order, AES-128 before
    // AES-256 (Go 1.17's automatic ordering), whatever the client prefers: so does this one.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 2,
        _ => 3,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key_der)
        .map_err(|e| err(&e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_types_make_a_serving_certificate() {
        for key in [ServingKey::Rsa2048, ServingKey::EcdsaP256] {
            let (_, ca) = serving(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
            assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        }
    }
}
