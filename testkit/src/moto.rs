//! moto's EC2 server (installed by scripts/ci-setup-moto.sh) on a free loopback port, killed on
//! drop. Without moto, [`start_moto`] fails the test and says how to install it: never skipped.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to listen (its first start imports a lot of Python).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server; `url` is its endpoint (`http://127.0.0.1:PORT`).
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto (`python3 -m moto.server`, else `moto_server`) and waits until it listens.
pub fn start_moto() -> Moto {
    start_moto_with_env(&[])
}

/// [`start_moto`] with extra environment for moto, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0` to
/// make it check credentials (S3 then refuses unknown access keys).
pub fn start_moto_with_env(env: &[(&str, &str)]) -> Moto {
    let port = crate::free_port();
    let p = port.to_string();
    let spawn = |prog: &str, args: &[&str]| {
        Command::new(prog).args(args).envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()
    };
    let child = spawn("python3", &["-m", "moto.server", "-H", "127.0.0.1", "-p", &p])
        .or_else(|_| spawn("moto_server", &["-H", "127.0.0.1", "-p", &p]))
        .unwrap_or_else(|e| panic!("cannot start moto ({e}): run scripts/ci-setup-moto.sh to install moto[server]"));
    let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return moto;
        }
        if let Ok(Some(status)) = moto.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = moto.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "moto server exited ({status}): {}\nmoto is not installed or broken: run scripts/ci-setup-moto.sh",
                err.lines().last().unwrap_or("")
            );
        }
        assert!(
            Instant::now() < deadline,
            "moto did not listen on port {port} within {} s: run scripts/ci-setup-moto.sh",
            START_TIMEOUT.as_secs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Points this process's AWS SDK at the EC2 endpoint `endpoint` (moto, or a proxy in front of
/// it) with moto's fake keys, and no profile. It sets the process environment: call it only
/// from the one test of its binary that reads the AWS environment.
pub fn use_fake_aws(endpoint: &str) {
    std::env::set_var("AWS_ENDPOINT_URL_EC2", endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    std::env::remove_var("AWS_PROFILE");
}
