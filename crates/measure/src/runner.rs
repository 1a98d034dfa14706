//! Runners: measure a batch of candidates, giving one result per candidate ([`Runner`]).
//!
//! * [`InProcessRunner`]: measures in this process (tests, `--isolation none`). A crash of a
//!   kernel crashes the caller.
//! * [`LocalWorkerRunner`]: measures in a persistent worker process started from a
//!   [`WorkerCommand`]. If the worker dies or exceeds a timeout, the candidate it was on is
//!   charged (runtime crash, compile error or timeout), the worker is restarted, and the
//!   rest of the batch is measured in the new one.
//!
//! A remote runner (the same protocol over a socket) would be a third implementation.

use crate::candidate::Candidate;
use crate::engine::{Engine, FaultMode, NoEvents};
use crate::error::{ErrorClass, HarnessError};
use crate::options::MeasureOptions;
use crate::protocol::{decode, encode, Request, Response, PROTOCOL_VERSION};
use crate::result::MeasureResult;
use crate::target::Target;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Measures batches of candidates.
pub trait Runner {
    /// Measures every candidate of `batch`; one result per candidate, in order. Never fails
    /// as a whole: every problem is recorded in the results.
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult>;

    /// The options candidates are measured with.
    fn options(&self) -> &MeasureOptions;

    /// A short name for messages (`"in-process"`, `"local worker"`).
    fn name(&self) -> &'static str;

    /// Sets the run timeout (milliseconds) for the candidates measured next, where the
    /// runner enforces one (a worker); the default ignores it (the in-process runner cannot
    /// stop a kernel).
    fn set_run_timeout_ms(&mut self, _ms: u64) {}

    /// The machine each result of the last [`measure`](Runner::measure) call was measured on,
    /// in batch order, where that is not this process's host (a farm's workers); empty, or
    /// `None` for a result, when it was measured on this machine. Records take their key's
    /// [`Target`] from here, so a cost stays tied to the CPU that produced it.
    fn machines(&self) -> &[Option<Target>] {
        &[]
    }
}

/// Measures in this process. Test-only faults that would abort or hang are simulated.
#[derive(Debug)]
pub struct InProcessRunner {
    engine: Engine,
}

impl InProcessRunner {
    /// A runner measuring with `options`.
    pub fn new(options: MeasureOptions) -> Result<InProcessRunner, HarnessError> {
        Ok(InProcessRunner {
            engine: Engine::new(options, FaultMode::Simulated)?,
        })
    }
}

impl Runner for InProcessRunner {
    /// Measures in this process, refusing (as an invalid schedule) every candidate whose
    /// workload does more than [`crate::limits::MAX_IN_PROCESS_FLOP`] per call: nothing
    /// could stop its kernel here, as a worker's run timeout does.
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        let refused: Vec<Option<MeasureResult>> = batch
            .iter()
            .map(|c| {
                let flop = self.engine.resolve(&c.workload).ok()?.dag.flop_count();
                (flop > crate::limits::MAX_IN_PROCESS_FLOP).then(|| {
                    MeasureResult::error(
                        ErrorClass::InvalidSchedule,
                        format!(
                            "the workload does {flop} FLOP per call, more than the in-process \
                             runner's limit of {} (measure it in a worker: --isolation worker)",
                            crate::limits::MAX_IN_PROCESS_FLOP
                        ),
                    )
                })
            })
            .collect();
        if refused.iter().all(Option::is_none) {
            return self.engine.measure(batch, &NoEvents);
        }
        let rest: Vec<Candidate> = batch
            .iter()
            .zip(&refused)
            .filter(|(_, r)| r.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let mut measured = self.engine.measure(&rest, &NoEvents).into_iter();
        refused
            .into_iter()
            .map(|r| {
                r.or_else(|| measured.next())
                    .unwrap_or_else(|| MeasureResult::error(ErrorClass::Compile, "not measured"))
            })
            .collect()
    }

    fn options(&self) -> &MeasureOptions {
        self.engine.options()
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

/// How to start a worker: a program and its arguments (e.g. the `tessel` binary and
/// `["worker"]`, or `tessel-measure-worker` and no arguments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// `program args...`.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> WorkerCommand {
        WorkerCommand {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The running executable with `args` (the driver's `current_exe() worker`).
    pub fn current_exe(args: &[&str]) -> Result<WorkerCommand, HarnessError> {
        let exe = std::env::current_exe()
            .map_err(|e| HarnessError::io("cannot find the running executable", e))?;
        Ok(WorkerCommand::new(exe, args))
    }
}

/// How long to wait for a new worker's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of a worker's stderr kept for error messages.
const STDERR_TAIL: usize = 2048;

/// What the reader thread passes on.
enum Line {
    /// A line of stdout.
    Text(String),
    /// Stdout closed (the worker exited or died).
    Eof,
}

/// A running worker process.
struct WorkerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    stderr: Arc<Mutex<String>>,
    target: Target,
}

impl WorkerProcess {
    /// Starts a worker and waits for its hello.
    fn start(cmd: &WorkerCommand) -> Result<WorkerProcess, HarnessError> {
        let mut command = Command::new(&cmd.program);
        // Its own process group: a Ctrl-C in the terminal reaches only the parent, which
        // finishes the candidate in flight before it stops (the worker exits when its
        // stdin closes).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .args(&cmd.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::io(format!("cannot start {}", cmd.program.display()), e))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let (tx, lines) = mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(Line::Text(l)).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Line::Eof);
            });
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = stderr_pipe {
            let tail = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push_str(&String::from_utf8_lossy(&buf[..n]));
                        if t.len() > STDERR_TAIL {
                            let cut = t.len() - STDERR_TAIL;
                            let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                            t.drain(..cut);
                        }
                    }
                }
            });
        }
        let mut w = WorkerProcess {
            child,
            stdin,
            lines,
            stderr,
            target: Target::host(),
        };
        let deadline = Instant::now() + HELLO_TIMEOUT;
        loop {
            match w.next(deadline) {
                Next::Message(Response::Hello {
                    protocol, target, ..
                }) => {
                    if protocol != PROTOCOL_VERSION {
                        w.kill();
                        return Err(HarnessError::Worker(format!(
                            "the worker speaks protocol {protocol}, not {PROTOCOL_VERSION}"
                        )));
                    }
                    w.target = target;
                    return Ok(w);
                }
                Next::Garbage(text) => {
                    // A worker of another protocol version: its hello does not decode, but
                    // says which version it speaks.
                    if let Some(protocol) = hello_protocol(&text) {
                        w.kill();
                        return Err(HarnessError::Worker(format!(
                            "the worker speaks protocol {protocol}, not {PROTOCOL_VERSION}"
                        )));
                    }
                    continue;
                }
                Next::Message(_) => continue,
                Next::Timeout => {
                    w.kill();
                    return Err(HarnessError::Worker("no hello from the worker".into()));
                }
                Next::Eof => {
                    let why = w.reap();
                    return Err(HarnessError::Worker(format!(
                        "the worker exited at start-up ({why})"
                    )));
                }
            }
        }
    }

    /// Sends one request.
    fn send(&mut self, req: &Request) -> Result<(), std::io::Error> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        let line = encode(req);
        stdin.write_all(line.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()
    }

    /// The next message, waiting until `deadline`.
    fn next(&mut self, deadline: Instant) -> Next {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(wait) {
            Ok(Line::Text(t)) => match decode::<Response>(&t) {
                Ok(r) => Next::Message(r),
                Err(e) => {
                    // Stray output (a print to stdout, a message of another version): keep it
                    // for the error message if the worker is lost, and go on.
                    if let Ok(mut tail) = self.stderr.lock() {
                        tail.push_str(&format!("[stdout, ignored: {e}] {t}\n"));
                    }
                    Next::Garbage(t)
                }
            },
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => Next::Eof,
            Err(RecvTimeoutError::Timeout) => Next::Timeout,
        }
    }

    /// Kills the process (by its handle) and waits for it.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        self.reap()
    }

    /// Waits for the process to end; says how it ended, with the tail of its stderr.
    fn reap(&mut self) -> String {
        self.stdin = None;
        let status = self.child.wait();
        let mut why = match status {
            Ok(s) => describe_status(s),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        // Give the stderr reader a moment to drain what the process wrote last.
        std::thread::sleep(Duration::from_millis(5));
        let tail = self
            .stderr
            .lock()
            .map(|t| t.trim().to_string())
            .unwrap_or_default();
        if !tail.is_empty() {
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            let last: Vec<&str> = last.into_iter().rev().collect();
            why.push_str("; stderr: ");
            why.push_str(&last.join(" | "));
        }
        why
    }

    /// Asks the worker to exit, and kills it if it has not within a short while.
    fn shutdown(mut self) {
        let _ = self.send(&Request::Shutdown);
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
    }
}

/// The protocol version a line announces, if it is a worker's hello of another version
/// (`{"v":1,"type":"hello","protocol":1,...}`).
fn hello_protocol(line: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("type")?.as_str()? != "hello" {
        return None;
    }
    let protocol = v.get("protocol")?.as_u64()?;
    (protocol != u64::from(PROTOCOL_VERSION)).then_some(protocol)
}

/// What [`WorkerProcess::next`] got.
enum Next {
    Message(Response),
    /// A line that is not a message of this protocol version (kept for the hello check).
    Garbage(String),
    Timeout,
    Eof,
}

#[cfg(unix)]
fn describe_status(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}{}", signal_name(sig)),
        _ => s.to_string(),
    }
}

#[cfg(not(unix))]
fn describe_status(s: ExitStatus) -> String {
    s.to_string()
}

#[cfg(unix)]
fn signal_name(sig: i32) -> &'static str {
    match sig {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

/// Counters of a [`LocalWorkerRunner`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Workers started (the first one included).
    pub started: usize,
    /// Workers that died or were killed while measuring.
    pub lost: usize,
}

/// Measures in a persistent worker process, restarting it when a candidate kills it or
/// exceeds a timeout.
pub struct LocalWorkerRunner {
    command: WorkerCommand,
    options: MeasureOptions,
    worker: Option<WorkerProcess>,
    next_id: u64,
    stats: WorkerStats,
}

impl std::fmt::Debug for LocalWorkerRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWorkerRunner")
            .field("command", &self.command)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// How a request to a worker ended.
enum Outcome {
    /// Every candidate has a result.
    Done,
    /// The worker died or was killed: `running` is the candidate it was verifying or timing,
    /// if any.
    Lost {
        running: Option<usize>,
        timed_out: bool,
        why: String,
    },
}

impl LocalWorkerRunner {
    /// A runner that starts workers with `command` (lazily, on the first batch).
    pub fn new(command: WorkerCommand, options: MeasureOptions) -> LocalWorkerRunner {
        LocalWorkerRunner {
            command,
            options,
            worker: None,
            next_id: 1,
            stats: WorkerStats::default(),
        }
    }

    /// Starts the worker now if none is running.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.worker.is_none() {
            self.worker = Some(WorkerProcess::start(&self.command)?);
            self.stats.started += 1;
        }
        Ok(())
    }

    /// How many workers were started and lost.
    pub fn stats(&self) -> WorkerStats {
        self.stats
    }

    /// The target the worker reported (the host's, before a worker was started).
    pub fn target(&self) -> Target {
        self.worker
            .as_ref()
            .map_or_else(Target::host, |w| w.target.clone())
    }

    /// One ping round trip to the worker (starting it if needed).
    pub fn ping(&mut self) -> Result<Duration, HarnessError> {
        self.start()?;
        let id = self.fresh_id();
        let w = self
            .worker
            .as_mut()
            .ok_or_else(|| HarnessError::Worker("no worker".into()))?;
        let t = Instant::now();
        w.send(&Request::Ping { id })
            .map_err(|e| HarnessError::io("cannot write to the worker", e))?;
        let deadline = t + HELLO_TIMEOUT;
        loop {
            match w.next(deadline) {
                Next::Message(Response::Pong { id: got }) if got == id => return Ok(t.elapsed()),
                Next::Message(_) | Next::Garbage(_) => continue,
                Next::Timeout | Next::Eof => {
                    let why = w.kill();
                    self.worker = None;
                    return Err(HarnessError::Worker(format!("no pong ({why})")));
                }
            }
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `job` (indices into `batch`) to the worker and collects results into `results`.
    fn run_job(
        &mut self,
        batch: &[Candidate],
        job: &[usize],
        results: &mut [Option<MeasureResult>],
    ) -> Result<Outcome, HarnessError> {
        self.start()?;
        let id = self.fresh_id();
        let request = Request::Measure {
            id,
            options: self.options.clone(),
            candidates: job.iter().map(|&i| batch[i].clone()).collect(),
        };
        let build_timeout = Duration::from_millis(self.options.build_timeout_ms.max(1));
        let run_timeout = Duration::from_millis(self.options.run_timeout_ms.max(1));
        let Some(w) = self.worker.as_mut() else {
            return Err(HarnessError::Worker("no worker".into()));
        };
        if let Err(e) = w.send(&request) {
            // The worker died while idle: start another and try once more.
            let why = w.kill();
            self.worker = None;
            self.start().map_err(|e2| {
                HarnessError::Worker(format!(
                    "the worker died ({why}; {e}) and cannot be restarted: {e2}"
                ))
            })?;
            let Some(w) = self.worker.as_mut() else {
                return Err(HarnessError::Worker("no worker".into()));
            };
            w.send(&request)
                .map_err(|e| HarnessError::io("cannot write to a fresh worker", e))?;
        }
        let Some(w) = self.worker.as_mut() else {
            return Err(HarnessError::Worker("no worker".into()));
        };
        let mut running: Option<usize> = None;
        let mut deadline = Instant::now() + build_timeout;
        loop {
            match w.next(deadline) {
                Next::Message(Response::Built { id: got, .. }) if got == id => {
                    deadline = Instant::now() + build_timeout;
                }
                Next::Message(Response::Preparing { id: got, .. }) if got == id => {
                    deadline = Instant::now() + build_timeout;
                }
                Next::Message(Response::Running { id: got, index }) if got == id => {
                    running = Some(index);
                    deadline = Instant::now() + run_timeout;
                }
                Next::Message(Response::Result {
                    id: got,
                    index,
                    result,
                }) if got == id => {
                    if let Some(&i) = job.get(index) {
                        results[i] = Some(result);
                    }
                    running = None;
                    deadline = Instant::now() + build_timeout;
                }
                Next::Message(Response::Done { id: got }) if got == id => {
                    return Ok(Outcome::Done);
                }
                Next::Message(Response::Error { id: got, message }) if got == Some(id) => {
                    let why = format!("the worker refused the request: {message}");
                    w.kill();
                    self.worker = None;
                    return Err(HarnessError::Worker(why));
                }
                // Stale messages of an earlier request, stray output: ignore.
                Next::Message(_) | Next::Garbage(_) => {}
                Next::Timeout => {
                    let why = w.kill();
                    self.worker = None;
                    self.stats.lost += 1;
                    return Ok(Outcome::Lost {
                        running: running.and_then(|k| job.get(k).copied()),
                        timed_out: true,
                        why,
                    });
                }
                Next::Eof => {
                    let why = w.reap();
                    self.worker = None;
                    self.stats.lost += 1;
                    return Ok(Outcome::Lost {
                        running: running.and_then(|k| job.get(k).copied()),
                        timed_out: false,
                        why,
                    });
                }
            }
        }
    }
}

impl Runner for LocalWorkerRunner {
    fn set_run_timeout_ms(&mut self, ms: u64) {
        self.options.run_timeout_ms = ms.max(1);
    }

    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        let mut results: Vec<Option<MeasureResult>> = vec![None; batch.len()];
        let mut queue: VecDeque<Vec<usize>> = VecDeque::new();
        if !batch.is_empty() {
            queue.push_back((0..batch.len()).collect());
        }
        let build_s = self.options.build_timeout_ms as f64 / 1e3;
        let run_s = self.options.run_timeout_ms as f64 / 1e3;
        while let Some(job) = queue.pop_front() {
            let outcome = self.run_job(batch, &job, &mut results);
            let unfinished: Vec<usize> = job
                .iter()
                .copied()
                .filter(|&i| results[i].is_none())
                .collect();
            match outcome {
                Ok(Outcome::Done) => {
                    for i in unfinished {
                        results[i] = Some(MeasureResult::error(
                            ErrorClass::WorkerLost,
                            "the worker finished the request without a result for it",
                        ));
                    }
                }
                Err(e) => {
                    for i in unfinished {
                        results[i] =
                            Some(MeasureResult::error(ErrorClass::WorkerLost, e.to_string()));
                    }
                }
                Ok(Outcome::Lost {
                    running: Some(culprit),
                    timed_out,
                    why,
                }) => {
                    results[culprit] = Some(if timed_out {
                        MeasureResult::error(
                            ErrorClass::Timeout,
                            format!("verifying and timing took more than {run_s} s; worker killed ({why})"),
                        )
                    } else {
                        MeasureResult::error(
                            ErrorClass::RuntimeCrash,
                            format!("the worker died while running the kernel ({why})"),
                        )
                    });
                    let rest: Vec<usize> =
                        unfinished.into_iter().filter(|&i| i != culprit).collect();
                    if !rest.is_empty() {
                        queue.push_front(rest);
                    }
                }
                Ok(Outcome::Lost {
                    running: None,
                    timed_out,
                    why,
                }) => {
                    if unfinished.len() == 1 && job.len() == 1 {
                        // Alone in its request: the build of this candidate is to blame.
                        let i = unfinished[0];
                        results[i] = Some(if timed_out {
                            MeasureResult::error(
                                ErrorClass::Timeout,
                                format!(
                                    "building took more than {build_s} s; worker killed ({why})"
                                ),
                            )
                        } else {
                            MeasureResult::error(
                                ErrorClass::Compile,
                                format!("the worker died while building it ({why})"),
                            )
                        });
                    } else {
                        // Lost while building several: retry them one by one to find the culprit.
                        for i in unfinished.into_iter().rev() {
                            queue.push_front(vec![i]);
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| MeasureResult::error(ErrorClass::WorkerLost, "not measured"))
            })
            .collect()
    }

    fn options(&self) -> &MeasureOptions {
        &self.options
    }

    fn name(&self) -> &'static str {
        "local worker"
    }
}

impl Drop for LocalWorkerRunner {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown();
        }
    }
}
