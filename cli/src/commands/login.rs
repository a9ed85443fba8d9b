//! `skycat login`: saves an API token for a `skycat serve` and pins that server's certificate.
//!
//! Over `https://` the server's certificate is fetched first without sending anything; its
//! SHA-256 must equal `--fingerprint` (what `skycat serve` prints at start), or be confirmed at
//! the terminal (as ssh asks about a new host key). Then the token is tried over the pinned
//! connection and, if the server accepts it, saved with the URL and the fingerprint in
//! `$SKYCAT_HOME/credentials` (0600). Later commands (`skycat jobs …`) use that server and refuse
//! any other certificate.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use skycat_tls_pin::Fingerprint;

use crate::commands::credentials::{self, Credentials};
use crate::commands::server_client::{self, Target};

#[derive(Args)]
pub struct LoginArgs {
    /// The server, e.g. https://10.0.0.5:8080.
    #[arg(long, env = "SKYCAT_SERVER_URL")]
    pub server_url: String,
    /// The certificate's SHA-256 fingerprint as `skycat serve` printed it (hex, colons allowed).
    /// Without it, the fingerprint is shown and must be confirmed at the terminal.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Read the API token from standard input (else `$SKYCAT_API_TOKEN`, else the saved one).
    #[arg(long)]
    pub token_stdin: bool,
}

fn token(a: &LoginArgs, saved: Option<&Credentials>) -> Result<String> {
    if a.token_stdin {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t).context("reading the API token from standard input")?;
        let t = t.trim().to_string();
        if t.is_empty() {
            bail!("--token-stdin: standard input held no token");
        }
        return Ok(t);
    }
    if let Some(t) = credentials::env_token() {
        return Ok(t);
    }
    match saved {
        Some(c) if c.are_for(&a.server_url) => Ok(c.token.clone()),
        _ => bail!("no API token: pass it on standard input with --token-stdin, or set SKYCAT_API_TOKEN (an admin makes one with `skycat serve token create --name NAME`)"),
    }
}

/// The fingerprint to pin: the presented one, once it matches `--fingerprint` or is confirmed.
async fn trusted_fingerprint(a: &LoginArgs) -> Result<Fingerprint> {
    let url = &a.server_url;
    let presented = server_client::probe_fingerprint(url).await?;
    if let Some(want) = &a.fingerprint {
        let want: Fingerprint = want.parse().context("--fingerprint")?;
        if want != presented {
            bail!("{url} presented a certificate with SHA-256 {presented}, not the --fingerprint {want}: refusing to log in (someone may be intercepting the connection)");
        }
        return Ok(presented);
    }
    if a.token_stdin || !std::io::stdin().is_terminal() {
        bail!("{url} presented a certificate with SHA-256 {presented}; confirm it is the one `skycat serve` printed by passing --fingerprint {presented}");
    }
    eprintln!("The server at {url} presented a certificate with SHA-256 fingerprint\n  {presented}");
    eprint!("Is this the fingerprint `skycat serve` printed at start? Trust it [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        bail!("not trusted: nothing saved");
    }
    Ok(presented)
}

pub async fn run(a: LoginArgs) -> Result<()> {
    let home = skycat_controller::home::Home::from_env();
    home.ensure().with_context(|| format!("creating {}", home.root.display()))?;
    let (scheme, _) = server_client::scheme_and_host(&a.server_url)?;
    let saved = credentials::load(&home.root)?;
    let token = token(&a, saved.as_ref())?;
    let pin = match scheme {
        "https" => Some(trusted_fingerprint(&a).await?),
        _ if a.fingerprint.is_some() => bail!("--fingerprint: {} is plain http://; there is no certificate to pin", a.server_url),
        _ => None,
    };
    // Refuses a token in clear off loopback before anything is sent.
    let target = Target { url: a.server_url.trim_end_matches('/').to_string(), pin, token: Some(token.clone()) }.checked()?;
    let client = target.client()?;
    client.call(client.get("/v1/jobs")).await.context("the server refused the API token")?;
    let creds = Credentials { token, server_url: Some(target.url.clone()), server_cert_sha256: pin.map(|p| p.to_string()) };
    let p = credentials::save(&home.root, &creds)?;
    match pin {
        Some(p_) => println!("Logged in to {}; certificate SHA-256 {p_} pinned; saved to {}.", target.url, p.display()),
        None => println!("Logged in to {}; saved to {}.", target.url, p.display()),
    }
    Ok(())
}
