//! Which sketch to spend the search budget on: the `SketchPolicy` trait and its implementations.
//!
//! Not built yet: this crate's issue ("The search / learned policies") has not landed. It holds only its documentation
//! so that the workspace layout of `ARCHITECTURE.md` is in place.
