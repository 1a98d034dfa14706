//! The one explicit random-number generator type of Tessel.
//!
//! Every sampler and policy takes a `&mut TesselRng` (never a thread-local RNG), seeded by
//! the user's `--seed`, so that runs are reproducible. Xoshiro256++ is small, fast and its
//! stream is fixed by its definition, so a seed gives the same schedules on every machine
//! and Rust version.
//!
//! ```
//! use rand::RngExt;
//! let mut a = tessel_ir::rng::seeded(42);
//! let mut b = tessel_ir::rng::seeded(42);
//! assert_eq!(a.random_range(0..100u32), b.random_range(0..100u32));
//! ```

use rand::SeedableRng;

/// The RNG passed to every random decision.
pub type TesselRng = rand::rngs::Xoshiro256PlusPlus;

/// A generator seeded with `seed`.
pub fn seeded(seed: u64) -> TesselRng {
    TesselRng::seed_from_u64(seed)
}
