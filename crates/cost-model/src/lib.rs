//! Predicting a schedule's speed without running it: per-store features and learned models.
//!
//! Not built yet: this crate's issue ("Learned cost model") has not landed. It holds only its documentation
//! so that the workspace layout of `ARCHITECTURE.md` is in place.
