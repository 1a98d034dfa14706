//! Root package of the Tessel workspace. It holds the end-to-end tests (`tests/`) and the
//! criterion benches (`benches/`) that span several crates; the compiler itself lives in
//! `crates/*`. See `README.md` (its Layout section draws the crates).
