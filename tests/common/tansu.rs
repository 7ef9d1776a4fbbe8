//! A real Kafka-compatible broker process for the tests: tansu 0.6.0 (Apache-2.0 per its
//! crates.io metadata), memory storage, on a free loopback port. It is a test tool only:
//! `.ci/run` installs its binary under `~/.cache/avlgate-tansu` and nothing of it is linked
//! into avlgate, whatever its license.
//!
//! The binary is `$AVLGATE_TANSU`, else `${XDG_CACHE_HOME:-~/.cache}/avlgate-tansu/bin/tansu`. Under CI
//! (`CI=true`) a missing binary fails the test; elsewhere the test is skipped with a message.
//!
//! Faults are real process faults: `stall` (SIGSTOP: the broker keeps its sockets and answers
//! nothing), `resume` (SIGCONT), `kill` (SIGKILL) and `restart` (same port, memory storage:
//! it comes back empty, like a broker that lost its disk).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// The tansu binary, if installed.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AVLGATE_TANSU") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(cache.join("avlgate-tansu/bin/tansu")).filter(|p| p.exists())
}

/// A running tansu broker.
pub struct Tansu {
    pub addr: SocketAddr,
    bin: PathBuf,
    child: Option<Child>,
    /// The broker's log (stderr and stdout), for a failing test to show.
    pub log: PathBuf,
}

impl Tansu {
    /// Starts a broker on a free loopback port, or `None` (with a message) when tansu is not
    /// installed outside CI.
    pub fn start() -> Option<Tansu> {
        let Some(bin) = binary() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("tansu is not installed; .ci/run installs it (or set AVLGATE_TANSU)");
            }
            eprintln!(
                "tansu not installed; skipping this real-broker test \
                 (cargo install --locked --features dynostore --root ~/.cache/avlgate-tansu tansu@0.6.0, as .ci/run does)"
            );
            return None;
        };
        let addr: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!("avlgate-tansu-{}.log", addr.port()));
        let mut t = Tansu {
            addr,
            bin,
            child: None,
            log,
        };
        t.spawn();
        Some(t)
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg("memory://tansu/")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        for _ in 0..400 {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "tansu did not listen on {} (log: {})",
            self.addr,
            self.log.display()
        );
    }

    /// Creates `topics` with `partitions` each, through the Kafka admin API.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("admin client");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .expect("create topics");
        for r in results {
            if let Err((t, e)) = r {
                panic!("creating topic {t}: {e}");
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {pid}");
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn stall(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen broker go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the broker (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: memory storage).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
