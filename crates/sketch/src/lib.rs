//! The search space: Ansor's sketch rules, random annotation rules and mutation rules.
//!
//! Not built yet: this crate's issue ("Search space") has not landed. It holds only its documentation
//! so that the workspace layout of `ARCHITECTURE.md` is in place.
