//! The measuring side of the farm: [`serve_farm`] and the [`FarmMeasurer`]s.

use super::runner::publish;
use super::{
    check_url, connect, ensure_streams, fetch, parse, runtime, worker_name, FarmTarget, Heartbeat,
    ResultItem, Subjects, WorkItem, FARM_VERSION, HEARTBEAT_EVERY,
};
use crate::candidate::{Candidate, Fault};
use crate::error::{ErrorClass, HarnessError};
use crate::options::{Isa, MeasureOptions};
use crate::result::{MeasureResult, PhaseTimes, Timing};
use crate::runner::{LocalWorkerRunner, Runner, WorkerCommand};
use crate::target::Target;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Measures one candidate for a farm worker.
pub trait FarmMeasurer: Send + 'static {
    /// Measures `candidate` with `options`. Never fails: problems are in the result.
    fn measure(&mut self, options: &MeasureOptions, candidate: &Candidate) -> MeasureResult;
}

/// Measures in an isolated worker process ([`LocalWorkerRunner`]): a crash or hang costs the
/// candidate (reported as its error), not the farm worker.
pub struct ProcessMeasurer {
    command: WorkerCommand,
    runner: Option<LocalWorkerRunner>,
}

impl ProcessMeasurer {
    /// Measures in worker processes started with `command`.
    pub fn new(command: WorkerCommand) -> ProcessMeasurer {
        ProcessMeasurer {
            command,
            runner: None,
        }
    }
}

impl FarmMeasurer for ProcessMeasurer {
    fn measure(&mut self, options: &MeasureOptions, candidate: &Candidate) -> MeasureResult {
        if self.runner.as_ref().map(|r| r.options()) != Some(options) {
            self.runner = Some(LocalWorkerRunner::new(
                self.command.clone(),
                options.clone(),
            ));
        }
        match self.runner.as_mut() {
            Some(r) => r
                .measure(std::slice::from_ref(candidate))
                .pop()
                .unwrap_or_else(|| MeasureResult::error(ErrorClass::WorkerLost, "no result")),
            None => MeasureResult::error(ErrorClass::WorkerLost, "no worker"),
        }
    }
}

/// **Tests and benches**: a deterministic measurement without a kernel. The cost of a
/// candidate is a function of its workload and steps alone ([`FakeMeasurer::cost`]); each
/// measurement sleeps a fixed time. The faults [`Fault::Abort`] and [`Fault::AbortBuild`]
/// abort the whole farm worker (a machine lost mid-candidate), [`Fault::Hang`] hangs it.
#[derive(Clone, Debug, Default)]
pub struct FakeMeasurer {
    /// How long each measurement takes.
    pub sleep: Duration,
}

impl FakeMeasurer {
    /// The fake cost of `candidate` in seconds: 1 to 2 ms, from a hash of its workload and
    /// steps (FNV-1a of their JSON).
    pub fn cost(candidate: &Candidate) -> f64 {
        let text =
            serde_json::to_string(&(&candidate.workload, &candidate.steps)).unwrap_or_default();
        let h = tessel_ir::dag::fnv1a(text.as_bytes());
        1e-3 * (1.0 + (h % 1000) as f64 / 1000.0)
    }
}

impl FarmMeasurer for FakeMeasurer {
    fn measure(&mut self, _options: &MeasureOptions, candidate: &Candidate) -> MeasureResult {
        match candidate.fault {
            Some(Fault::Abort | Fault::AbortBuild) => std::process::abort(),
            Some(Fault::Hang) => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Some(Fault::Panic) => {
                return MeasureResult::error(ErrorClass::RuntimeCrash, "fake panic")
            }
            Some(Fault::WrongAnswer) => {
                return MeasureResult::error(ErrorClass::WrongAnswer, "fake wrong answer")
            }
            None => {}
        }
        if !self.sleep.is_zero() {
            std::thread::sleep(self.sleep);
        }
        let cost = FakeMeasurer::cost(candidate);
        MeasureResult {
            timing: Timing::from_costs(vec![cost; 3], 1),
            error: None,
            phases: PhaseTimes::default(),
        }
    }
}

/// How a farm worker runs.
#[derive(Clone, Debug)]
pub struct FarmWorkerConfig {
    /// The broker, `nats://HOST:PORT`.
    pub url: String,
    /// Subject prefix (`tessel`).
    pub prefix: String,
    /// The CPU name it serves (made a token); `None`: this machine's model name.
    pub cpu: Option<String>,
    /// The kernel threads it serves.
    pub threads: usize,
    /// The ISA level it serves.
    pub isa: Isa,
    /// A candidate not acknowledged for this long is delivered again (to another worker).
    /// The worker extends it while it measures; set on the target's consumer when it is
    /// created (by its first worker).
    pub ack_wait: Duration,
    /// Deliveries of a candidate that may be measured; the next worker to receive it answers
    /// with a [`ErrorClass::WorkerLost`] error instead.
    pub max_attempts: u32,
    /// Stop after this many candidates (`None`: serve until killed).
    pub max_candidates: Option<u64>,
    /// **Test only**: publish every result twice, as a redelivery would.
    pub duplicate_results: bool,
    /// Print what it does on stderr.
    pub verbose: bool,
}

impl FarmWorkerConfig {
    /// Defaults for `url`: this machine's CPU, `threads` threads, its best ISA, 30 s ack
    /// wait, 3 attempts.
    pub fn new(url: &str, threads: usize) -> FarmWorkerConfig {
        FarmWorkerConfig {
            url: url.to_string(),
            prefix: "tessel".to_string(),
            cpu: None,
            threads: threads.max(1),
            isa: tessel_ir::target::CpuFeatures::host().best_isa(),
            ack_wait: Duration::from_secs(30),
            max_attempts: 3,
            max_candidates: None,
            duplicate_results: false,
            verbose: true,
        }
    }

    /// The target it serves.
    pub fn target(&self) -> FarmTarget {
        let mut options = MeasureOptions::with_threads(self.threads);
        options.codegen.isa = self.isa;
        match &self.cpu {
            Some(cpu) => FarmTarget::new(cpu, &options),
            None => FarmTarget::host(&options),
        }
    }
}

/// Serves the farm: pulls the candidates of `config`'s target one at a time, measures each
/// with `measurer`, publishes the result, then acknowledges it; sends heartbeats meanwhile.
/// Waits out a broker that is down or restarts. Returns the number of candidates answered
/// when `max_candidates` is reached; otherwise runs until killed or a fatal error.
pub fn serve_farm(
    config: FarmWorkerConfig,
    measurer: Box<dyn FarmMeasurer>,
) -> Result<u64, HarnessError> {
    check_url(&config.url)?;
    if config.max_attempts == 0 {
        return Err(HarnessError::Farm("max attempts must be at least 1".into()));
    }
    let rt = runtime()?;
    rt.block_on(serve_async(config, measurer))
}

async fn serve_async(
    config: FarmWorkerConfig,
    measurer: Box<dyn FarmMeasurer>,
) -> Result<u64, HarnessError> {
    use jetstream::consumer::{pull, AckPolicy};
    let subjects = Subjects::new(&config.prefix)?;
    let target = config.target();
    let name = worker_name();
    let say = |text: String| {
        if config.verbose {
            eprintln!("farm worker {name}: {text}");
        }
    };
    let client = connect(&config.url).await?;
    let js = jetstream::new(client.clone());
    let consumer_name = subjects.work_consumer(&target);
    let consumer: jetstream::consumer::Consumer<pull::Config> = loop {
        let made = async {
            ensure_streams(&js, &subjects).await?;
            let stream = js
                .get_stream(subjects.work_stream())
                .await
                .map_err(|e| HarnessError::Farm(e.to_string()))?;
            stream
                .get_or_create_consumer(
                    &consumer_name,
                    pull::Config {
                        durable_name: Some(consumer_name.clone()),
                        filter_subject: subjects.work(&target),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: config.ack_wait,
                        max_deliver: i64::from(config.max_attempts) + 1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| HarnessError::Farm(format!("cannot create {consumer_name}: {e}")))
        }
        .await;
        match made {
            Ok(c) => break c,
            Err(e) => {
                say(format!("{e}; trying again"));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    say(format!(
        "serving {target} on {} from {}",
        subjects.work(&target),
        config.url
    ));

    let measured = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (client, subject) = (client.clone(), subjects.heartbeat(&target));
        let (measured, busy, worker) = (measured.clone(), busy.clone(), name.clone());
        tokio::spawn(async move {
            loop {
                let hb = Heartbeat {
                    v: FARM_VERSION,
                    worker: worker.clone(),
                    measured: measured.load(Ordering::Relaxed),
                    busy: busy.load(Ordering::Relaxed),
                };
                if let Ok(bytes) = serde_json::to_vec(&hb) {
                    let _ = client.publish(subject.clone(), bytes.into()).await;
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        })
    };

    let host = Target::host();
    let mut measurer = Some(measurer);
    let mut answered: u64 = 0;
    let outcome = loop {
        if config.max_candidates.is_some_and(|m| answered >= m) {
            break Ok(answered);
        }
        let Some(mut messages) = fetch(&consumer, 1, Duration::from_millis(500)).await else {
            continue;
        };
        while let Some(next) = messages.next().await {
            let Ok(msg) = next else { break };
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1).max(1);
            let item = match parse::<WorkItem>(&msg.payload) {
                Ok(i) => i,
                Err(e) => {
                    say(format!("dropped a candidate: {e}"));
                    let _ = msg.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let result = if delivered > i64::from(config.max_attempts) {
                say(format!(
                    "candidate {}/{} given up after {} deliveries",
                    item.run,
                    item.id,
                    delivered - 1
                ));
                MeasureResult::error(
                    ErrorClass::WorkerLost,
                    format!(
                        "given up after {} deliveries: every farm worker that took this \
                         candidate was lost before it answered",
                        delivered - 1
                    ),
                )
            } else {
                busy.store(true, Ordering::Relaxed);
                let m = measurer.take();
                let (options, candidate) = (item.options.clone(), item.candidate.clone());
                let mut job = tokio::task::spawn_blocking(move || {
                    let mut m = m?;
                    let r = m.measure(&options, &candidate);
                    Some((m, r))
                });
                // Keep the candidate ours while it is measured.
                let mut tick =
                    tokio::time::interval((config.ack_wait / 3).max(Duration::from_millis(100)));
                tick.tick().await;
                let out = loop {
                    tokio::select! {
                        r = &mut job => break r,
                        _ = tick.tick() => { let _ = msg.ack_with(AckKind::Progress).await; }
                    }
                };
                busy.store(false, Ordering::Relaxed);
                match out {
                    Ok(Some((m, r))) => {
                        measurer = Some(m);
                        r
                    }
                    _ => {
                        heartbeat.abort();
                        return Err(HarnessError::Farm("the measurer panicked".into()));
                    }
                }
            };
            let answer = ResultItem {
                v: FARM_VERSION,
                run: item.run.clone(),
                id: item.id,
                worker: name.clone(),
                target: host.clone(),
                result,
            };
            let payload = serde_json::to_vec(&answer)
                .map_err(|e| HarnessError::Farm(format!("cannot encode a result: {e}")))?;
            let copies = if config.duplicate_results { 2 } else { 1 };
            let mut sent = true;
            for copy in 0..copies {
                let msg_id = format!("r-{}-{}-{copy}", item.run, item.id);
                if let Err(e) = publish(&js, &item.reply, &msg_id, payload.clone()).await {
                    say(format!("{e}; the candidate will be delivered again"));
                    sent = false;
                }
            }
            if sent {
                // A lost acknowledgement brings the candidate back; its second result is
                // then dropped by the tuner.
                let _ = msg.double_ack().await;
                answered += 1;
                measured.store(answered, Ordering::Relaxed);
            }
        }
    };
    heartbeat.abort();
    outcome
}
