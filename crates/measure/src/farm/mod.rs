//! The measurement farm: candidates measured by many machines through a NATS JetStream
//! broker (see `docs/farm.md`).
//!
//! * [`NatsRunner`] (the tuner's side) is a [`crate::Runner`]: it publishes each candidate of
//!   a batch, with an id, to a work-queue stream on the subject of its [`FarmTarget`], and
//!   waits for the results. A result that arrives twice (a redelivery) is taken once.
//! * [`serve_farm`] (the `tessel worker --nats` side) pulls the candidates of its own target,
//!   measures each with a [`FarmMeasurer`] (normally in an isolated worker process),
//!   publishes the result, then acknowledges the candidate; it sends a heartbeat every
//!   second so that the tuner knows how many workers serve a target.
//!
//! JetStream gives the rest: a candidate not acknowledged within the ack wait (its worker
//! died) is delivered again to another worker; one delivered more than `max_attempts` times
//! is answered by the next worker that sees it with a [`crate::ErrorClass::WorkerLost`]
//! error instead of being measured (the poison candidate). The async runtime (tokio) stays
//! inside this module: both sides are synchronous to the rest of Tessel.
//!
//! ```
//! use tessel_measure::farm::{FarmTarget, Subjects};
//! use tessel_measure::MeasureOptions;
//!
//! let options = MeasureOptions::with_threads(2);
//! let target = FarmTarget::new("Intel(R) Xeon(R) 8480C", &options);
//! assert_eq!(target.cpu, "intel_r_xeon_r_8480c");
//! let subjects = Subjects::new("tessel").unwrap();
//! assert!(subjects.work(&target).starts_with("tessel.work.intel_r_xeon_r_8480c."));
//! let revision = tessel_codegen::REVISION;
//! assert!(subjects.work(&target).ends_with(&format!(".t2.r{revision}")));
//! ```

mod loopback;
mod runner;
mod worker;

pub use loopback::LoopbackBroker;
pub use runner::{FarmRunnerConfig, NatsRunner};
pub use worker::{serve_farm, FakeMeasurer, FarmMeasurer, FarmWorkerConfig, ProcessMeasurer};

use crate::candidate::Candidate;
use crate::error::HarnessError;
use crate::options::MeasureOptions;
use crate::result::MeasureResult;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The version of the farm's messages ([`WorkItem`], [`ResultItem`], [`Heartbeat`]).
pub const FARM_VERSION: u32 = 1;

/// What a candidate must be measured on: the CPU (a name token), the ISA level, the kernel
/// threads and the code generator's revision. It names the subject a candidate travels on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FarmTarget {
    /// The CPU, as a subject token (`intel_r_xeon_r_platinum_8480c`): the host's model
    /// name made safe, or a name the operator chose (`--cpu`).
    pub cpu: String,
    /// The ISA level (`avx512`, `avx2`, `generic`).
    pub isa: String,
    /// Kernel threads.
    pub threads: usize,
    /// The code generator's revision.
    pub revision: u32,
}

impl FarmTarget {
    /// The target of candidates measured with `options` on a CPU called `cpu` (any text:
    /// it is made a subject token by [`cpu_token`]).
    pub fn new(cpu: &str, options: &MeasureOptions) -> FarmTarget {
        FarmTarget {
            cpu: cpu_token(cpu),
            isa: options.codegen.isa.name().to_string(),
            threads: options.codegen.threads,
            revision: options.codegen.revision,
        }
    }

    /// The target of `options` on this machine's CPU.
    pub fn host(options: &MeasureOptions) -> FarmTarget {
        FarmTarget::new(&Target::host().cpu, options)
    }

    /// The target as dot-separated subject tokens: `cpu.isa.tN.rN`.
    pub fn tokens(&self) -> String {
        format!(
            "{}.{}.t{}.r{}",
            self.cpu, self.isa, self.threads, self.revision
        )
    }
}

impl std::fmt::Display for FarmTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} thread{} codegen r{}",
            self.cpu,
            self.isa,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.revision
        )
    }
}

/// A CPU name made a subject token: lower case ASCII letters and digits, every other run
/// of characters one `_`, at most 64 characters; `unknown` when nothing is left.
pub fn cpu_token(cpu: &str) -> String {
    let mut out = String::new();
    for c in cpu.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let mut out: String = out.trim_end_matches('_').chars().take(64).collect();
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        "unknown".to_string()
    } else {
        out
    }
}

/// The names of the farm's streams, subjects and consumers under a prefix (`tessel`; tests
/// use their own so that they can share a broker).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Subjects {
    /// The names under `prefix` (ASCII letters, digits, `_` and `-` only).
    pub fn new(prefix: &str) -> Result<Subjects, HarnessError> {
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(HarnessError::Farm(format!(
                "bad subject prefix {prefix:?}: use ASCII letters, digits, `_` and `-`"
            )));
        }
        Ok(Subjects {
            prefix: prefix.to_string(),
        })
    }

    /// The work-queue stream of candidates.
    pub fn work_stream(&self) -> String {
        format!("{}_WORK", self.prefix.to_ascii_uppercase())
    }

    /// The work-queue stream of results.
    pub fn result_stream(&self) -> String {
        format!("{}_RESULTS", self.prefix.to_ascii_uppercase())
    }

    /// The subject candidates for `target` are published on.
    pub fn work(&self, target: &FarmTarget) -> String {
        format!("{}.work.{}", self.prefix, target.tokens())
    }

    /// Every work subject (the work stream's subjects).
    pub fn work_all(&self) -> String {
        format!("{}.work.>", self.prefix)
    }

    /// The durable consumer the workers of `target` share.
    pub fn work_consumer(&self, target: &FarmTarget) -> String {
        format!("{}-work-{}", self.prefix, target.tokens().replace('.', "-"))
    }

    /// The subject the results of run `run` are published on.
    pub fn result(&self, run: &str) -> String {
        format!("{}.result.{run}", self.prefix)
    }

    /// Every result subject (the result stream's subjects).
    pub fn result_all(&self) -> String {
        format!("{}.result.>", self.prefix)
    }

    /// The durable consumer of run `run`'s results.
    pub fn result_consumer(&self, run: &str) -> String {
        format!("{}-result-{run}", self.prefix)
    }

    /// The subject the workers of `target` send heartbeats on.
    pub fn heartbeat(&self, target: &FarmTarget) -> String {
        format!("{}.heartbeat.{}", self.prefix, target.tokens())
    }
}

/// A candidate to measure, as published on the work stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    /// [`FARM_VERSION`].
    pub v: u32,
    /// The tuning run (one [`NatsRunner`]) it belongs to.
    pub run: String,
    /// The candidate's id within the run.
    pub id: u64,
    /// The subject to publish the result on.
    pub reply: String,
    /// How to measure.
    pub options: MeasureOptions,
    /// What to measure.
    pub candidate: Candidate,
}

/// A measured candidate, as published on the result stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultItem {
    /// [`FARM_VERSION`].
    pub v: u32,
    /// The run of the [`WorkItem`].
    pub run: String,
    /// The candidate's id.
    pub id: u64,
    /// The worker that measured it (`host/pid`).
    pub worker: String,
    /// The machine it was measured on.
    pub target: Target,
    /// The result.
    pub result: MeasureResult,
}

/// A worker's sign of life, sent every [`HEARTBEAT_EVERY`] on its target's heartbeat subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// [`FARM_VERSION`].
    pub v: u32,
    /// The worker (`host/pid`).
    pub worker: String,
    /// Candidates it has measured so far.
    pub measured: u64,
    /// True while it measures one.
    pub busy: bool,
}

/// How often a worker sends a [`Heartbeat`].
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A worker not heard from for this long is counted as gone.
pub const HEARTBEAT_LOST_AFTER: Duration = Duration::from_secs(3);

/// The header that makes JetStream drop a second publication of the same message.
const MSG_ID: &str = "Nats-Msg-Id";

/// The messages of one pull of `consumer`: at most `max`, waiting at most `expires` for them.
/// `None` when the broker is away, after a short pause (the client reconnects on its own;
/// the caller simply pulls again).
async fn fetch(
    consumer: &async_nats::jetstream::consumer::Consumer<
        async_nats::jetstream::consumer::pull::Config,
    >,
    max: usize,
    expires: Duration,
) -> Option<async_nats::jetstream::consumer::pull::Batch> {
    match consumer
        .fetch()
        .max_messages(max)
        .expires(expires)
        .messages()
        .await
    {
        Ok(batch) => Some(batch),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    }
}

/// Parses a farm message, checking its version.
fn parse<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Version {
        v: Option<u32>,
    }
    let v: Version =
        serde_json::from_slice(payload).map_err(|e| format!("not a farm message: {e}"))?;
    match v.v {
        Some(FARM_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "farm message version {other} is not supported (this side speaks {FARM_VERSION})"
            ))
        }
        None => return Err("farm message without a version `v`".to_string()),
    }
    serde_json::from_slice(payload).map_err(|e| format!("bad farm message: {e}"))
}

/// `user@host:port` of a `nats://` URL, checked; the URL itself is what the client takes.
fn check_url(url: &str) -> Result<(), HarnessError> {
    let rest = url.strip_prefix("nats://").ok_or_else(|| {
        HarnessError::Farm(format!(
            "{url:?} is not a NATS URL: give nats://HOST:PORT (e.g. nats://127.0.0.1:4222)"
        ))
    })?;
    let hostport = rest.split('/').next().unwrap_or("");
    let hostport = hostport.rsplit('@').next().unwrap_or("");
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(HarnessError::Farm(format!(
            "{url:?} lacks a host and port: give nats://HOST:PORT (e.g. nats://127.0.0.1:4222)"
        ))),
    }
}

/// A fresh name for a run or a worker: host, process id and time.
fn fresh_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// The process's name in heartbeats and results: `host/pid`.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    format!("{host}/{}", std::process::id())
}

/// A private tokio runtime with one thread of its own, which keeps the connection (and the
/// heartbeats) going while the caller blocks on it or does other work.
fn runtime() -> Result<tokio::runtime::Runtime, HarnessError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tessel-farm")
        .enable_all()
        .build()
        .map_err(|e| HarnessError::io("cannot start the farm's async runtime", e))
}

/// Connects to the broker, retrying (also the first connection) without end: a broker
/// restart is waited out by both sides.
async fn connect(url: &str) -> Result<async_nats::Client, HarnessError> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempt| Duration::from_millis((100 * attempt as u64).min(1000)))
        .connect(url)
        .await
        .map_err(|e| HarnessError::Farm(format!("cannot connect to {url}: {e}")))
}

/// Creates the two work-queue streams if they do not exist (file storage: a broker restart
/// keeps the queued candidates and results).
async fn ensure_streams(
    js: &async_nats::jetstream::Context,
    subjects: &Subjects,
) -> Result<(), HarnessError> {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    for (name, subject) in [
        (subjects.work_stream(), subjects.work_all()),
        (subjects.result_stream(), subjects.result_all()),
    ] {
        let created = js
            .get_or_create_stream(Config {
                name: name.clone(),
                subjects: vec![subject],
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await;
        if let Err(e) = created {
            // The tuner and its workers start together: when another client creates the
            // stream at the same moment, the broker may refuse our create ("subjects overlap
            // with an existing stream") although the stream we want is then there.
            if !stream_appears(js, &name).await {
                return Err(HarnessError::Farm(format!(
                    "cannot create the stream {name}: {e}"
                )));
            }
        }
    }
    Ok(())
}

/// True when the stream `name` exists, or appears within about a second (another client's
/// create in flight).
async fn stream_appears(js: &async_nats::jetstream::Context, name: &str) -> bool {
    for _ in 0..10 {
        if js.get_stream(name).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_tokens_and_subjects() {
        assert_eq!(
            cpu_token("Intel(R) Xeon(R) Platinum 8480C"),
            "intel_r_xeon_r_platinum_8480c"
        );
        assert_eq!(cpu_token("  ...  "), "unknown");
        assert_eq!(cpu_token("a.b>c*"), "a_b_c");
        let mut o = MeasureOptions::with_threads(4);
        o.codegen.isa = crate::options::Isa::Avx2;
        let t = FarmTarget::new("My Board", &o);
        let s = Subjects::new("tessel").unwrap();
        let rev = tessel_codegen::REVISION;
        assert_eq!(s.work(&t), format!("tessel.work.my_board.avx2.t4.r{rev}"));
        assert_eq!(
            s.work_consumer(&t),
            format!("tessel-work-my_board-avx2-t4-r{rev}")
        );
        assert_eq!(
            s.heartbeat(&t),
            format!("tessel.heartbeat.my_board.avx2.t4.r{rev}")
        );
        assert_eq!(s.work_stream(), "TESSEL_WORK");
        assert!(Subjects::new("a.b").is_err());
        assert!(Subjects::new("").is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("nats://user:pw@farm.local:4222").is_ok());
        let e = check_url("http://x:1").unwrap_err().to_string();
        assert!(e.contains("not a NATS URL"), "{e}");
        let e = check_url("nats://x").unwrap_err().to_string();
        assert!(e.contains("lacks a host and port"), "{e}");
    }

    #[test]
    fn messages_check_their_version() {
        let hb = Heartbeat {
            v: FARM_VERSION,
            worker: "h/1".into(),
            measured: 3,
            busy: false,
        };
        let bytes = serde_json::to_vec(&hb).unwrap();
        assert_eq!(parse::<Heartbeat>(&bytes).unwrap(), hb);
        let other = String::from_utf8(bytes)
            .unwrap()
            .replace("\"v\":1", "\"v\":9");
        let e = parse::<Heartbeat>(other.as_bytes()).unwrap_err();
        assert!(e.contains("version 9"), "{e}");
        assert!(parse::<Heartbeat>(b"nope").is_err());
    }
}
