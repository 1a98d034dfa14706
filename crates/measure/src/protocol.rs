//! The worker protocol: one JSON object per line, each carrying the protocol version `"v"`.
//!
//! It is self-contained (a request holds the options and the candidates' workload specs and
//! step logs; nothing refers to the parent's memory or files), so the same messages can
//! later travel over a socket to a remote worker.
//!
//! Version 2: a candidate may carry its loop nest (`"lowered"`, the parent's lowering of
//! its steps), which the worker compiles without replaying and lowering the steps again.
//! A version-1 peer is refused: a worker answers its requests with an error naming the
//! versions, and a parent stops at an old worker's hello with the same.
//!
//! ```text
//! worker → parent  {"v":2,"type":"hello","protocol":2,"tessel":"0.1.0","pid":4242,"target":{...}}
//! parent → worker  {"v":2,"type":"measure","id":1,"options":{...},"candidates":[{"workload":"gmm:b=1,n=64,m=64,k=64","steps":[...],"lowered":{...}}]}
//! worker → parent  {"v":2,"type":"built","id":1,"index":0}        (one per candidate, any order)
//! worker → parent  {"v":2,"type":"running","id":1,"index":0}      (before verifying and timing it)
//! worker → parent  {"v":2,"type":"result","id":1,"index":0,"result":{"timing":{...},"error":null,"phases":{...}}}
//! worker → parent  {"v":2,"type":"done","id":1}
//! parent → worker  {"v":2,"type":"ping","id":2}                   worker → parent {"v":2,"type":"pong","id":2}
//! parent → worker  {"v":2,"type":"shutdown"}
//! ```
//!
//! A request the worker cannot read is answered with `{"v":2,"type":"error","id":null,
//! "message":"..."}` and the worker carries on. A message of another version is refused the
//! same way.

use crate::candidate::Candidate;
use crate::options::MeasureOptions;
use crate::result::MeasureResult;
use crate::target::Target;
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 2;

/// A message from the parent to a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Build, verify and time a batch of candidates.
    Measure {
        /// Request id, echoed in every answer.
        id: u64,
        /// How to measure.
        options: MeasureOptions,
        /// What to measure.
        candidates: Vec<Candidate>,
    },
    /// Answer with a pong at once (liveness and round-trip time).
    Ping {
        /// Request id.
        id: u64,
    },
    /// Exit cleanly.
    Shutdown,
}

/// A message from a worker to the parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Sent once when the worker starts.
    Hello {
        /// The protocol version the worker speaks.
        protocol: u32,
        /// The worker's Tessel version.
        tessel: String,
        /// The worker's process id.
        pid: u32,
        /// The machine it measures on.
        target: Target,
    },
    /// Answer to a ping.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// Candidate `index` of request `id` is built (or failed to build).
    Built {
        /// Request id.
        id: u64,
        /// Position in the request's candidates.
        index: usize,
    },
    /// Candidate `index` of request `id` is built and its workload's reference output is
    /// being computed (once per workload and worker; seconds for large workloads). The
    /// parent allows a build timeout for it, so that the run timeout covers the kernel alone.
    Preparing {
        /// Request id.
        id: u64,
        /// Position in the request's candidates.
        index: usize,
    },
    /// Candidate `index` of request `id` is being verified and timed.
    Running {
        /// Request id.
        id: u64,
        /// Position in the request's candidates.
        index: usize,
    },
    /// The result of candidate `index` of request `id`.
    Result {
        /// Request id.
        id: u64,
        /// Position in the request's candidates.
        index: usize,
        /// The result.
        result: MeasureResult,
    },
    /// Every candidate of request `id` has a result.
    Done {
        /// Request id.
        id: u64,
    },
    /// A request could not be read or carried out.
    Error {
        /// The request's id, if it could be read.
        id: Option<u64>,
        /// What went wrong.
        message: String,
    },
}

/// A message on the wire: the version, then the message's own fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The message.
    #[serde(flatten)]
    pub body: T,
}

/// One line (without the newline) for `body`.
pub fn encode<T: Serialize>(body: &T) -> String {
    let env = Envelope {
        v: PROTOCOL_VERSION,
        body,
    };
    // Serializing these types cannot fail (string keys, finite or null numbers).
    serde_json::to_string(&env).unwrap_or_else(|e| {
        format!(
            "{{\"v\":{PROTOCOL_VERSION},\"type\":\"error\",\"id\":null,\"message\":\"cannot encode: {e}\"}}"
        )
    })
}

/// Reads one line: checks the version, then the message.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Version {
        v: Option<u32>,
    }
    let v: Version = serde_json::from_str(line).map_err(|e| format!("not a message: {e}"))?;
    match v.v {
        Some(PROTOCOL_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "protocol version {other} is not supported (this side speaks {PROTOCOL_VERSION})"
            ))
        }
        None => return Err("message without a protocol version `v`".to_string()),
    }
    let env: Envelope<T> = serde_json::from_str(line).map_err(|e| format!("bad message: {e}"))?;
    Ok(env.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let req = Request::Measure {
            id: 3,
            options: MeasureOptions::default(),
            candidates: vec![Candidate::new("gmm-1", vec![])],
        };
        let line = encode(&req);
        assert!(line.starts_with("{\"v\":2,\"type\":\"measure\""), "{line}");
        assert!(!line.contains("lowered"), "no nest, no field: {line}");
        assert_eq!(decode::<Request>(&line).unwrap(), req);
        let old = line.replacen("\"v\":2", "\"v\":1", 1);
        assert_eq!(
            decode::<Request>(&old).unwrap_err(),
            "protocol version 1 is not supported (this side speaks 2)"
        );
        assert!(decode::<Request>("{\"type\":\"ping\",\"id\":1}").is_err());
        assert!(decode::<Request>("garbage").is_err());
        let pong = encode(&Response::Pong { id: 9 });
        assert_eq!(pong, "{\"v\":2,\"type\":\"pong\",\"id\":9}");
    }
}
