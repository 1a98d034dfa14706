//! The worker process's main loop ([`serve`]): reads [`Request`]s line by line, measures with
//! an [`Engine`], and writes [`Response`]s. `tessel worker` and the `tessel-measure-worker`
//! binary both call [`serve_stdio`].

use crate::engine::{Engine, Events, FaultMode};
use crate::error::HarnessError;
use crate::protocol::{decode, encode, Request, Response, PROTOCOL_VERSION};
use crate::result::MeasureResult;
use crate::target::Target;
use std::io::{BufRead, Write};
use std::sync::Mutex;

/// Serves requests from `input` until it ends or a shutdown request comes, writing responses
/// to `output` (flushed after every message). Test-only faults are honoured for real (abort,
/// hang). Fails only when `output` cannot be written.
pub fn serve(input: impl BufRead, output: impl Write + Send) -> Result<(), HarnessError> {
    let out = Mutex::new(output);
    send(
        &out,
        &Response::Hello {
            protocol: PROTOCOL_VERSION,
            tessel: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            target: Target::host(),
        },
    )?;
    let mut engine: Option<Engine> = None;
    for line in input.lines() {
        let line = line.map_err(|e| HarnessError::io("cannot read a request", e))?;
        if line.trim().is_empty() {
            continue;
        }
        let req = match decode::<Request>(&line) {
            Ok(r) => r,
            Err(message) => {
                send(&out, &Response::Error { id: None, message })?;
                continue;
            }
        };
        match req {
            Request::Shutdown => break,
            Request::Ping { id } => send(&out, &Response::Pong { id })?,
            Request::Measure {
                id,
                options,
                candidates,
            } => {
                let ready = match engine.as_mut() {
                    Some(e) => e.set_options(options),
                    None => Engine::new(options, FaultMode::Real).map(|e| {
                        engine = Some(e);
                    }),
                };
                let engine = match (ready, engine.as_mut()) {
                    (Ok(()), Some(e)) => e,
                    (Err(e), _) => {
                        let message = e.to_string();
                        send(
                            &out,
                            &Response::Error {
                                id: Some(id),
                                message,
                            },
                        )?;
                        continue;
                    }
                    (Ok(()), None) => continue,
                };
                let events = WireEvents {
                    id,
                    out: &out,
                    failed: Mutex::new(None),
                };
                engine.measure(&candidates, &events);
                if let Some(e) = events.failed.into_inner().ok().flatten() {
                    return Err(e);
                }
                send(&out, &Response::Done { id })?;
            }
        }
    }
    Ok(())
}

/// [`serve`] on the process's stdin and stdout.
pub fn serve_stdio() -> Result<(), HarnessError> {
    let stdin = std::io::stdin();
    serve(stdin.lock(), std::io::stdout())
}

/// Writes one message and flushes.
fn send<W: Write>(out: &Mutex<W>, msg: &Response) -> Result<(), HarnessError> {
    let line = encode(msg);
    let mut w = out
        .lock()
        .map_err(|_| HarnessError::Worker("output lock poisoned".into()))?;
    writeln!(w, "{line}")
        .and_then(|()| w.flush())
        .map_err(|e| HarnessError::io("cannot write a response", e))
}

/// Events of one request, sent as messages.
struct WireEvents<'a, W: Write + Send> {
    id: u64,
    out: &'a Mutex<W>,
    failed: Mutex<Option<HarnessError>>,
}

impl<W: Write + Send> WireEvents<'_, W> {
    fn emit(&self, msg: Response) {
        if let Err(e) = send(self.out, &msg) {
            if let Ok(mut f) = self.failed.lock() {
                f.get_or_insert(e);
            }
        }
    }
}

impl<W: Write + Send> Events for WireEvents<'_, W> {
    fn built(&self, index: usize) {
        self.emit(Response::Built { id: self.id, index });
    }
    fn preparing(&self, index: usize) {
        self.emit(Response::Preparing { id: self.id, index });
    }
    fn running(&self, index: usize) {
        self.emit(Response::Running { id: self.id, index });
    }
    fn done(&self, index: usize, result: &MeasureResult) {
        self.emit(Response::Result {
            id: self.id,
            index,
            result: result.clone(),
        });
    }
}
