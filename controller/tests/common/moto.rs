//! moto's EC2 server on a free loopback port (installed by scripts/ci-setup-moto.sh), killed on
//! drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

pub fn start_moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let p = port.to_string();
    let spawn = |prog: &str, args: &[&str]| Command::new(prog).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let child = spawn("python3", &["-m", "moto.server", "-H", "127.0.0.1", "-p", &p])
        .or_else(|_| spawn("moto_server", &["-H", "127.0.0.1", "-p", &p]))
        .unwrap_or_else(|e| panic!("cannot start moto ({e}): run scripts/ci-setup-moto.sh to install moto[server]"));
    let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return moto;
        }
        if let Ok(Some(status)) = moto.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = moto.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            panic!("moto server exited ({status}): {} — run scripts/ci-setup-moto.sh", err.lines().last().unwrap_or(""));
        }
        assert!(Instant::now() < deadline, "moto did not listen on port {port} within 60 s: run scripts/ci-setup-moto.sh");
        std::thread::sleep(Duration::from_millis(100));
    }
}
