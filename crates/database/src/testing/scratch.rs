//! A PostgreSQL cluster of a test's own, to stop and start again: outages are tested on it,
//! never on the shared server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A cluster made with the machine's `initdb` in a temp dir, listening on 127.0.0.1 on a
/// free port, with trust authentication. Stopped (immediately) and deleted on drop.
#[derive(Debug)]
pub struct ScratchCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl ScratchCluster {
    /// initdb + start. Panics with the tool's output when the machine cannot do it.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("notesuite-scratch-pg")
            .tempdir()
            .expect("temp dir for a scratch cluster");
        let port = free_port();
        let cluster = Self { dir, bin, port };
        cluster.chown_to_postgres(cluster.dir.path());
        cluster.run(
            "initdb",
            &[
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "-D",
                &cluster.data_dir().display().to_string(),
            ],
        );
        cluster.resume();
        cluster
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server ("fast": sessions are ended, as in a restart or a failover).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-m",
                "fast",
                "-w",
                "-D",
                &self.data_dir().display().to_string(),
            ],
        );
    }

    /// Starts the (stopped) server again on the same port, waiting until it accepts
    /// connections.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &self.data_dir().display().to_string(),
                "-l",
                &self.dir.path().join("server.log").display().to_string(),
                "-o",
                &options,
            ],
        );
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// PostgreSQL's tools refuse to run as root: as root, they run as the `postgres` user.
    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn chown_to_postgres(&self, path: &Path) {
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(path)
                .status()
                .expect("chown");
            assert!(status.success(), "chown {} to postgres", path.display());
        }
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.data_dir())
            .output();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// The directory of `initdb` and `pg_ctl`: `pg_config --bindir`, or
/// `NOTESUITE_TEST_POSTGRES_BIN`.
fn postgres_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("NOTESUITE_TEST_POSTGRES_BIN") {
        return dir.into();
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("outage tests need PostgreSQL's server binaries: pg_config not found");
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}
