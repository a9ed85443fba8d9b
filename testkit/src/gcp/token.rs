//! The emulated OAuth token endpoint (`POST {token_uri}`, RFC 7523 jwt-bearer grant) and the
//! TEST-ONLY service-account keys it verifies against.
//!
//! The two RSA keys under testkit/fixtures/gcp-TEST-ONLY-service-account-*.pem were generated for
//! these tests (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`); they belong to no
//! Google account and must never be used for anything else. Key 2 stands in for a forged or
//! rotated key: an assertion it signs must be refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// TEST-ONLY private key 1 (PKCS#8 PEM): the emulated account's key.
pub const TEST_ONLY_KEY_1: &str = include_str!("../../fixtures/gcp-TEST-ONLY-service-account-1.pem");
/// TEST-ONLY private key 2: a key the emulated account does not have.
pub const TEST_ONLY_KEY_2: &str = include_str!("../../fixtures/gcp-TEST-ONLY-service-account-2.pem");

/// The account the token endpoint knows.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    /// PKCS#1 RSAPublicKey DER of the account's key.
    pub public_key_der: Vec<u8>,
}

impl ServiceAccount {
    /// The account whose key is `private_pem` (one of the TEST-ONLY keys).
    pub fn for_key(client_email: &str, private_key_id: &str, private_pem: &str) -> ServiceAccount {
        ServiceAccount { client_email: client_email.into(), private_key_id: private_key_id.into(), public_key_der: public_key_der(private_pem) }
    }
}

/// The public half (PKCS#1 DER) of a PKCS#8 PEM RSA key.
pub fn public_key_der(private_pem: &str) -> Vec<u8> {
    let body: String = private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("TEST-ONLY key PEM");
    let kp = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("TEST-ONLY key is PKCS#8 RSA");
    kp.public().as_ref().to_vec()
}

/// A service-account key file (the fields Google writes) for `private_pem`, its token endpoint at
/// `token_uri`.
pub fn key_file_json(project: &str, client_email: &str, private_key_id: &str, private_pem: &str, token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": private_key_id,
        "private_key": private_pem,
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{client_email}"),
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

/// Checks a grant body; `Ok(())` when the assertion is one Google would accept for `sa`,
/// else the `error_description` of Google's 400 `invalid_grant` answer.
pub fn check_grant(sa: &ServiceAccount, body: &[u8], token_url: &str, now: u64) -> Result<(), String> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err(format!("Invalid grant_type: {}", get("grant_type").unwrap_or("")));
    }
    let Some(jwt) = get("assertion") else { return Err("Missing required parameter: assertion".into()) };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts.as_slice() else { return Err("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into()) };
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(p).map_err(|_| "Invalid JWT: not base64url".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "Invalid JWT: not JSON".to_string())
    };
    let header = decode(h)?;
    let claims = decode(c)?;
    if header["alg"] != "RS256" {
        return Err(format!("Invalid JWT: alg {} (RS256 required)", header["alg"]));
    }
    if header.get("kid").is_some_and(|k| k.as_str() != Some(sa.private_key_id.as_str())) {
        return Err("Invalid JWT Signature.".into());
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| "Invalid JWT Signature.".to_string())?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &sa.public_key_der)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    if claims["iss"] != sa.client_email.as_str() {
        return Err("Invalid JWT Signature.".into());
    }
    let aud = claims["aud"].as_str().unwrap_or("");
    if aud != "https://oauth2.googleapis.com/token" && aud != token_url {
        return Err(format!("Invalid JWT: Failed audience check. The right audience is {token_url}"));
    }
    if claims["scope"].as_str().is_none_or(|s| s.trim().is_empty()) {
        return Err("Invalid JWT: no scope".into());
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err("Invalid JWT: iat and exp are required".into());
    };
    if exp <= iat || exp - iat > 3600 || iat > now + 300 || exp < now {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into());
    }
    Ok(())
}
