//! The search loop: evolutionary search over complete schedules and the task scheduler.
//!
//! Not built yet: this crate's issue ("The search") has not landed. It holds only its documentation
//! so that the workspace layout of `ARCHITECTURE.md` is in place.
