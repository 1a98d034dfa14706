//! Helpers shared by the experiment tests: the fake model, problem pieces and jobs of
//! `tessel_search::testing`.
#![allow(unused_imports)] // each test binary uses its own subset

pub use tessel_search::testing::{job, problem_parts, FakeScorer};
