//! Certificate pinning for clients of `skycat serve`.
//!
//! The server's certificate is usually self-signed, so CA and hostname checks can't apply.
//! Instead a client holds the SHA-256 of the server's end-entity certificate (DER), received out
//! of band: the agent at bootstrap, the CLI at `skycat login` or from the first start of
//! `skycat serve` on the same machine. [`PinVerifier`] accepts exactly that certificate; the
//! handshake signatures are still verified with the ring provider. A [`PinVerifier::probe`]
//! accepts nothing and only records what the server presented, so that a login can show the
//! fingerprint before anything (a token) is sent.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PinError {
    #[error("a certificate fingerprint is a SHA-256: 64 hex digits, optionally colon-separated (got {0} characters)")]
    Malformed(usize),
}

impl Fingerprint {
    /// SHA-256 of a certificate's DER bytes.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        let mut out = [0u8; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        Fingerprint(out)
    }
}

/// 64 hex digits, or `AB:CD:…` as openssl prints it; any case, surrounding blanks ignored.
impl FromStr for Fingerprint {
    type Err = PinError;
    fn from_str(s: &str) -> Result<Fingerprint, PinError> {
        let hex: Vec<u8> = s.trim().bytes().filter(|c| *c != b':').collect();
        if hex.len() != 64 {
            return Err(PinError::Malformed(s.len()));
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or(PinError::Malformed(s.len()));
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = (digit(hex[2 * i])? << 4 | digit(hex[2 * i + 1])?) as u8;
        }
        Ok(Fingerprint(out))
    }
}

/// Lowercase hex, no separators.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Trusts the one certificate whose fingerprint is pinned (or none, for a probe), and remembers
/// the fingerprint the server presented, for a clear error after a failed handshake.
#[derive(Debug)]
pub struct PinVerifier {
    pin: Option<Fingerprint>,
    provider: Arc<CryptoProvider>,
    presented: Mutex<Option<Fingerprint>>,
}

impl PinVerifier {
    pub fn pinned(pin: Fingerprint) -> Arc<PinVerifier> {
        Arc::new(PinVerifier { pin: Some(pin), provider: provider(), presented: Mutex::new(None) })
    }

    /// Refuses every server; afterwards [`presented`](Self::presented) tells which certificate
    /// it showed. Nothing is sent over a probe's connection.
    pub fn probe() -> Arc<PinVerifier> {
        Arc::new(PinVerifier { pin: None, provider: provider(), presented: Mutex::new(None) })
    }

    /// The fingerprint of the last certificate a server presented.
    pub fn presented(&self) -> Option<Fingerprint> {
        self.presented.lock().ok().and_then(|p| *p)
    }

    /// Why the last handshake was refused, when it was for the certificate: names both
    /// fingerprints.
    pub fn mismatch(&self) -> Option<String> {
        let (pin, got) = (self.pin?, self.presented()?);
        (pin != got).then(|| format!("server certificate pin mismatch: the server presented SHA-256 {got}, the pin is {pin}"))
    }

    /// A rustls client configuration trusting only this verifier.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, rustls::Error> {
        Ok(ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth())
    }
}

/// An explicit provider: the workspace may also compile aws-lc-rs into rustls (other crates'
/// features), and the process-wide default would then be ambiguous.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = Fingerprint::of_der(end_entity.as_ref());
        if let Ok(mut p) = self.presented.lock() {
            *p = Some(got);
        }
        if self.pin == Some(got) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_both_spellings_and_print_as_hex() {
        let hex = "ab".repeat(32);
        let colon = vec!["AB"; 32].join(":");
        assert_eq!(hex.parse::<Fingerprint>().unwrap(), Fingerprint([0xab; 32]));
        assert_eq!(colon.parse::<Fingerprint>().unwrap(), Fingerprint([0xab; 32]));
        assert_eq!(format!(" {hex}\n").parse::<Fingerprint>().unwrap().to_string(), hex);
        assert_eq!("abcd".parse::<Fingerprint>(), Err(PinError::Malformed(4)));
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
        assert_eq!(
            Fingerprint::of_der(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_probe_trusts_nothing_and_a_pin_only_its_certificate() {
        let cert = CertificateDer::from(b"not really DER".to_vec());
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        let probe = PinVerifier::probe();
        assert!(probe.verify_server_cert(&cert, &[], &name, &[], now).is_err());
        let seen = probe.presented().unwrap();
        assert_eq!(seen, Fingerprint::of_der(b"not really DER"));
        assert!(probe.mismatch().is_none());
        let pinned = PinVerifier::pinned(seen);
        assert!(pinned.verify_server_cert(&cert, &[], &name, &[], now).is_ok());
        assert!(pinned.mismatch().is_none());
        let other = PinVerifier::pinned(Fingerprint([7; 32]));
        assert!(other.verify_server_cert(&cert, &[], &name, &[], now).is_err());
        let m = other.mismatch().unwrap();
        assert!(m.contains(&seen.to_string()) && m.contains(&"07".repeat(32)), "{m}");
        assert!(other.client_config().is_ok());
    }
}
