//! A NATS JetStream broker on this machine's loopback, for trying the farm on one machine,
//! for tests and for benches: [`LoopbackBroker`] starts `nats-server -js` on a free port
//! with a store of its own, and stops it (and removes the store) when dropped.

use crate::error::HarnessError;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting `nats-server` may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `nats-server -js` of this process's own on `127.0.0.1`.
#[derive(Debug)]
pub struct LoopbackBroker {
    binary: PathBuf,
    port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl LoopbackBroker {
    /// The `nats-server` binary on `PATH` (or in `/usr/sbin`, `/usr/bin`, `/usr/local/bin`).
    pub fn binary() -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
        dirs.into_iter()
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    }

    /// Starts a broker on a free loopback port and waits until it accepts connections.
    /// Fails, saying what to install, when `nats-server` is missing.
    pub fn start() -> Result<LoopbackBroker, HarnessError> {
        let binary = LoopbackBroker::binary().ok_or_else(|| {
            HarnessError::Farm(
                "`nats-server` (JetStream) is not installed: `apt-get install nats-server`".into(),
            )
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| HarnessError::io("cannot find a free loopback port", e))?;
        let store = std::env::temp_dir().join(format!("tessel-nats-{}-{port}", std::process::id()));
        let mut broker = LoopbackBroker {
            binary,
            port,
            store,
            child: None,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts it again (same port, same store) after [`LoopbackBroker::stop`]; does nothing
    /// while it runs.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| HarnessError::io(format!("cannot start {}", self.binary.display()), e))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError::Farm(format!(
                    "nats-server did not accept connections on port {} within {} s",
                    self.port,
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops it gracefully (SIGTERM: it writes its store) and waits up to 5 s, then kills it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LoopbackBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
