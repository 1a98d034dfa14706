//! Measurement: build, run, verify and record candidates in an isolated worker process.
//!
//! Not built yet: this crate's issue ("Measurement harness") has not landed. It holds only its documentation
//! so that the workspace layout of `ARCHITECTURE.md` is in place.
