//! The tuner's side of the farm: [`NatsRunner`].

use super::{
    check_url, connect, ensure_streams, fetch, fresh_name, parse, runtime, FarmTarget, Heartbeat,
    ResultItem, Subjects, WorkItem, FARM_VERSION, HEARTBEAT_LOST_AFTER, MSG_ID,
};
use crate::candidate::Candidate;
use crate::error::{ErrorClass, HarnessError};
use crate::options::MeasureOptions;
use crate::result::MeasureResult;
use crate::runner::Runner;
use crate::target::Target;
use async_nats::jetstream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a [`NatsRunner`] reaches the farm.
#[derive(Clone, Debug)]
pub struct FarmRunnerConfig {
    /// The broker, `nats://HOST:PORT`.
    pub url: String,
    /// The CPU the candidates must be measured on (a name; made a token by
    /// [`super::cpu_token`]); `None`: this machine's.
    pub cpu: Option<String>,
    /// Subject prefix (`tessel`).
    pub prefix: String,
    /// How long to wait while no worker serves the target before the rest of a batch is
    /// failed ([`ErrorClass::WorkerLost`]) and withdrawn from the queue.
    pub no_worker_timeout: Duration,
    /// Print worker counts and waits on stderr.
    pub verbose: bool,
}

impl FarmRunnerConfig {
    /// The defaults for `url`: this machine's CPU, prefix `tessel`, 120 s without a worker.
    pub fn new(url: &str) -> FarmRunnerConfig {
        FarmRunnerConfig {
            url: url.to_string(),
            cpu: None,
            prefix: "tessel".to_string(),
            no_worker_timeout: Duration::from_secs(120),
            verbose: true,
        }
    }

    /// Reads `nats://HOST:PORT[?cpu=NAME&wait=SECONDS]` (the `--measure` value).
    pub fn parse(spec: &str) -> Result<FarmRunnerConfig, HarnessError> {
        let (url, query) = match spec.split_once('?') {
            Some((u, q)) => (u, Some(q)),
            None => (spec, None),
        };
        check_url(url)?;
        let mut config = FarmRunnerConfig::new(url);
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("cpu", cpu)) if !cpu.is_empty() => config.cpu = Some(cpu.to_string()),
                Some(("wait", secs)) => {
                    let s: u64 = secs.parse().map_err(|_| {
                        HarnessError::Farm(format!("bad wait={secs:?}: give whole seconds"))
                    })?;
                    config.no_worker_timeout = Duration::from_secs(s);
                }
                _ => {
                    return Err(HarnessError::Farm(format!(
                        "unknown option {pair:?} in {spec:?} (known: cpu=NAME, wait=SECONDS)"
                    )))
                }
            }
        }
        Ok(config)
    }
}

/// Live workers of a target: name → when last heard.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Counters of a [`NatsRunner`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FarmStats {
    /// Candidates published.
    pub published: u64,
    /// Results taken (one per candidate).
    pub results: u64,
    /// Results dropped because their candidate already had one (redeliveries).
    pub duplicates: u64,
    /// Candidates failed because no worker served the target in time.
    pub abandoned: u64,
}

/// Measures on the farm: publishes each candidate on its target's work subject and waits
/// for the results. The broker connection lives on a private tokio runtime.
pub struct NatsRunner {
    rt: tokio::runtime::Runtime,
    config: FarmRunnerConfig,
    options: MeasureOptions,
    subjects: Subjects,
    run: String,
    next_id: u64,
    js: jetstream::Context,
    seen: Seen,
    stats: FarmStats,
    last_target: Option<Target>,
    machines: Vec<Option<Target>>,
    shown_workers: Option<usize>,
}

impl std::fmt::Debug for NatsRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRunner")
            .field("url", &self.config.url)
            .field("run", &self.run)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl NatsRunner {
    /// Connects to the broker (waiting while it is down), creates the streams if needed, and
    /// listens to the heartbeats of the workers of the target `options` select.
    pub fn connect(
        config: FarmRunnerConfig,
        options: MeasureOptions,
    ) -> Result<NatsRunner, HarnessError> {
        check_url(&config.url)?;
        let subjects = Subjects::new(&config.prefix)?;
        let rt = runtime()?;
        let seen: Seen = Arc::default();
        let client = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), connect(&config.url))
                .await
                .map_err(|_| {
                    HarnessError::Farm(format!(
                        "no broker at {} after 30 s (is `nats-server -js` running?)",
                        config.url
                    ))
                })?
        })?;
        // The context spawns its acknowledgement task: make it inside the runtime.
        let js = rt.block_on(async { jetstream::new(client.clone()) });
        rt.block_on(ensure_streams(&js, &subjects))?;
        let mut runner = NatsRunner {
            rt,
            config,
            options,
            subjects,
            run: fresh_name(),
            next_id: 0,
            js,
            seen,
            stats: FarmStats::default(),
            last_target: None,
            machines: Vec::new(),
            shown_workers: None,
        };
        runner.listen(client)?;
        Ok(runner)
    }

    /// Starts the task that records heartbeats of the current target's workers.
    fn listen(&mut self, client: async_nats::Client) -> Result<(), HarnessError> {
        let subject = self.subjects.heartbeat(&self.target());
        let seen = self.seen.clone();
        let mut sub = self
            .rt
            .block_on(client.subscribe(subject.clone()))
            .map_err(|e| HarnessError::Farm(format!("cannot subscribe to {subject}: {e}")))?;
        self.rt.spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Ok(hb) = parse::<Heartbeat>(&msg.payload) {
                    if let Ok(mut s) = seen.lock() {
                        s.insert(hb.worker, Instant::now());
                    }
                }
            }
        });
        Ok(())
    }

    /// The target candidates are published for.
    pub fn target(&self) -> FarmTarget {
        match &self.config.cpu {
            Some(cpu) => FarmTarget::new(cpu, &self.options),
            None => FarmTarget::host(&self.options),
        }
    }

    /// Workers of the target heard from within [`HEARTBEAT_LOST_AFTER`].
    pub fn live_workers(&self) -> usize {
        self.seen.lock().map_or(0, |s| {
            s.values()
                .filter(|t| t.elapsed() < HEARTBEAT_LOST_AFTER)
                .count()
        })
    }

    /// Waits up to `timeout` until at least `n` workers serve the target; their number.
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        self.rt.block_on(async {
            loop {
                let live = self.live_workers();
                if live >= n || Instant::now() >= deadline {
                    return live;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    /// This runner's counters.
    pub fn stats(&self) -> FarmStats {
        self.stats
    }

    /// The machine the last result was measured on (the worker's, not this one's).
    pub fn last_target(&self) -> Option<&Target> {
        self.last_target.as_ref()
    }

    /// The run's name (its results subject's last token).
    pub fn run_name(&self) -> &str {
        &self.run
    }

    fn say(&self, text: &str) {
        if self.config.verbose {
            eprintln!("farm: {text}");
        }
    }

    /// Shows the number of live workers when it changed.
    fn show_workers(&mut self) {
        let live = self.live_workers();
        if self.shown_workers != Some(live) && live > 0 {
            self.say(&format!(
                "{live} worker{} serve{} {}",
                if live == 1 { "" } else { "s" },
                if live == 1 { "s" } else { "" },
                self.target()
            ));
        }
        self.shown_workers = Some(live);
    }

    async fn run_batch(&mut self, batch: &[Candidate]) -> Result<Vec<MeasureResult>, HarnessError> {
        use jetstream::consumer::{pull, AckPolicy};
        let target = self.target();
        let work_subject = self.subjects.work(&target);
        let reply = self.subjects.result(&self.run);
        let consumer_name = self.subjects.result_consumer(&self.run);
        let stream = self
            .js
            .get_stream(self.subjects.result_stream())
            .await
            .map_err(|e| HarnessError::Farm(format!("no result stream: {e}")))?;
        let consumer: jetstream::consumer::Consumer<pull::Config> = stream
            .get_or_create_consumer(
                &consumer_name,
                pull::Config {
                    durable_name: Some(consumer_name.clone()),
                    filter_subject: reply.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| HarnessError::Farm(format!("cannot create {consumer_name}: {e}")))?;

        // Publish every candidate (a retried publication is dropped by its message id).
        let mut pending: HashMap<u64, (usize, u64)> = HashMap::new();
        for (index, candidate) in batch.iter().enumerate() {
            self.next_id += 1;
            let id = self.next_id;
            let item = WorkItem {
                v: FARM_VERSION,
                run: self.run.clone(),
                id,
                reply: reply.clone(),
                options: self.options.clone(),
                candidate: candidate.clone(),
            };
            let payload = serde_json::to_vec(&item)
                .map_err(|e| HarnessError::Farm(format!("cannot encode a candidate: {e}")))?;
            let seq = publish(
                &self.js,
                &work_subject,
                &format!("{}-{id}", self.run),
                payload,
            )
            .await?;
            pending.insert(id, (index, seq));
            self.stats.published += 1;
        }

        let mut results: Vec<Option<MeasureResult>> = vec![None; batch.len()];
        let mut idle_since: Option<Instant> = None;
        let mut waited_said = false;
        while !pending.is_empty() {
            self.show_workers();
            if self.live_workers() > 0 {
                idle_since = None;
                waited_said = false;
            } else {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if !waited_said && since.elapsed() > HEARTBEAT_LOST_AFTER {
                    self.say(&format!(
                        "no worker serves {target}; waiting up to {} s \
                         (start `tessel worker --nats {}` on such a machine)",
                        self.config.no_worker_timeout.as_secs(),
                        self.config.url
                    ));
                    waited_said = true;
                }
                if since.elapsed() >= self.config.no_worker_timeout {
                    self.abandon(&mut pending, &mut results, &target).await;
                    break;
                }
            }
            let max = batch.len().clamp(1, 256);
            let Some(mut messages) = fetch(&consumer, max, Duration::from_millis(250)).await else {
                continue;
            };
            while let Some(next) = messages.next().await {
                let Ok(msg) = next else { break };
                match parse::<ResultItem>(&msg.payload) {
                    Ok(item) if item.run == self.run => match pending.remove(&item.id) {
                        Some((index, _)) => {
                            results[index] = Some(item.result);
                            if let Some(slot) = self.machines.get_mut(index) {
                                *slot = Some(item.target.clone());
                            }
                            self.last_target = Some(item.target);
                            self.stats.results += 1;
                        }
                        None => self.stats.duplicates += 1,
                    },
                    Ok(_) => {}
                    Err(e) => self.say(&format!("ignored a result: {e}")),
                }
                // A lost ack only brings the result again, and it is then a duplicate.
                let _ = msg.ack().await;
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| MeasureResult::error(ErrorClass::WorkerLost, "no result")))
            .collect())
    }

    /// Fails the candidates still pending and withdraws them from the queue.
    async fn abandon(
        &mut self,
        pending: &mut HashMap<u64, (usize, u64)>,
        results: &mut [Option<MeasureResult>],
        target: &FarmTarget,
    ) {
        let secs = self.config.no_worker_timeout.as_secs();
        self.say(&format!(
            "no worker served {target} for {secs} s: failing {} candidate(s)",
            pending.len()
        ));
        let stream = self.js.get_stream(self.subjects.work_stream()).await.ok();
        for (_, (index, seq)) in pending.drain() {
            if let Some(s) = &stream {
                let _ = s.delete_message(seq).await;
            }
            results[index] = Some(MeasureResult::error(
                ErrorClass::WorkerLost,
                format!("no farm worker served target {target} for {secs} s"),
            ));
            self.stats.abandoned += 1;
        }
    }
}

/// Publishes `payload` on `subject` with message id `msg_id`, retrying while the broker is
/// away (up to a minute); the stream sequence it got.
pub(super) async fn publish(
    js: &jetstream::Context,
    subject: &str,
    msg_id: &str,
    payload: Vec<u8>,
) -> Result<u64, HarnessError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(MSG_ID, msg_id);
        let sent = js
            .publish_with_headers(subject.to_string(), headers, payload.clone().into())
            .await;
        match sent {
            Ok(ack) => match tokio::time::timeout(Duration::from_secs(5), ack).await {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no acknowledgement in 5 s".to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(HarnessError::Farm(format!(
        "cannot publish on {subject} for 60 s: {last}"
    )))
}

impl Runner for NatsRunner {
    /// Publishes the batch and waits for every result; a broker that stays away for a
    /// minute fails the rest of the batch ([`ErrorClass::WorkerLost`]).
    fn measure(&mut self, batch: &[Candidate]) -> Vec<MeasureResult> {
        self.machines = vec![None; batch.len()];
        if batch.is_empty() {
            return Vec::new();
        }
        let rt = runtime_handle(&self.rt);
        match rt.block_on(self.run_batch(batch)) {
            Ok(r) => r,
            Err(e) => {
                self.say(&e.to_string());
                batch
                    .iter()
                    .map(|_| MeasureResult::error(ErrorClass::WorkerLost, e.to_string()))
                    .collect()
            }
        }
    }

    fn options(&self) -> &MeasureOptions {
        &self.options
    }

    fn name(&self) -> &'static str {
        "farm"
    }

    fn set_run_timeout_ms(&mut self, ms: u64) {
        self.options.run_timeout_ms = ms;
    }

    /// The worker's machine for every result a worker sent (none for a result this side
    /// made up: a lost worker, a broker that stayed away).
    fn machines(&self) -> &[Option<Target>] {
        &self.machines
    }
}

/// A handle to block on while `self` is borrowed mutably by the future (the runtime's own
/// thread drives the connection meanwhile).
fn runtime_handle(rt: &tokio::runtime::Runtime) -> tokio::runtime::Handle {
    rt.handle().clone()
}

impl Drop for NatsRunner {
    /// Removes the run's result consumer (its results are all taken).
    fn drop(&mut self) {
        let name = self.subjects.result_consumer(&self.run);
        let stream = self.subjects.result_stream();
        let js = self.js.clone();
        let _ = self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(2), async move {
                if let Ok(s) = js.get_stream(stream).await {
                    let _ = s.delete_consumer(&name).await;
                }
            })
            .await
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_specs_are_read() {
        let c = FarmRunnerConfig::parse("nats://127.0.0.1:4222").unwrap();
        assert_eq!(c.url, "nats://127.0.0.1:4222");
        assert_eq!(c.cpu, None);
        assert_eq!(c.no_worker_timeout, Duration::from_secs(120));
        let c = FarmRunnerConfig::parse("nats://h:1?cpu=board&wait=5").unwrap();
        assert_eq!(c.cpu.as_deref(), Some("board"));
        assert_eq!(c.no_worker_timeout, Duration::from_secs(5));
        let e = FarmRunnerConfig::parse("nats://h:1?x=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option \"x=1\""), "{e}");
        let e = FarmRunnerConfig::parse("nats://h:1?wait=soon")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad wait"), "{e}");
        assert!(FarmRunnerConfig::parse("127.0.0.1:4222").is_err());
    }
}
