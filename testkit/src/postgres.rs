//! A throwaway PostgreSQL cluster for the state-store and replica tests: Debian's server binaries
//! (`/usr/lib/postgresql/<version>/bin`, installed by scripts/ci-setup-postgres.sh), `initdb` in a
//! fresh directory, `pg_ctl start` on a free loopback port, trust authentication for the
//! `postgres` role over TCP, stopped and removed on drop. Test binaries running at once each get
//! their own directory and port.
//!
//! Tests run as root on CI and `initdb` refuses root: the cluster then belongs to the `postgres`
//! system user (`runuser -u postgres --`), in a directory that user owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

/// The newest server binaries Debian installed.
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
                .filter(|(_, b)| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, b)| b).expect("PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/ci-setup-postgres.sh)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    /// Creates and starts a cluster; panics naming what failed.
    pub fn start() -> Postgres {
        let bin = server_bin();
        let as_postgres_user = is_root();
        let dir = std::env::temp_dir().join(format!("skycat-pg-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        let mut pg = Postgres { dir, bin, port: 0, as_postgres_user };
        if as_postgres_user {
            let st = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&pg.dir).status().expect("run chown");
            assert!(st.success(), "chown postgres {}", pg.dir.display());
        }
        let data = pg.data_dir();
        let out = pg.run("initdb", &["-D", path_str(&data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        // Another binary may take the free port between our probe and the server's bind: retry.
        for _ in 0..5 {
            pg.port = crate::free_port();
            if pg.start_server() {
                return pg;
            }
        }
        panic!("PostgreSQL did not start: {}", std::fs::read_to_string(pg.log()).unwrap_or_default());
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args).current_dir(&self.dir).output().unwrap_or_else(|e| panic!("run {tool}: {e}"))
    }

    /// `pg_ctl start` on `self.port`; whether the server came up.
    fn start_server(&self) -> bool {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = self.run("pg_ctl", &["-D", path_str(&self.data_dir()), "-l", path_str(&self.log()), "-o", &opts, "-w", "-t", "60", "start"]);
        out.status.success() && self.accepting(Duration::from_secs(30))
    }

    fn accepting(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as the `postgres` superuser.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database (one per test, so tests of one binary share the cluster); its URL.
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let out = self.run("createdb", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name]);
        assert!(out.status.success(), "createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        self.url_of(name)
    }

    /// Runs one SQL statement with `psql` (`/usr/bin/psql`, or the server's own) in `db`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run("psql", &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are cut), keeping its data.
    pub fn stop(&self) {
        let out = self.run("pg_ctl", &["-D", path_str(&self.data_dir()), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&self) {
        assert!(self.start_server(), "PostgreSQL did not restart: {}", std::fs::read_to_string(self.log()).unwrap_or_default());
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", path_str(&self.data_dir()), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
