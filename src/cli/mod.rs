//! The `hark` binary's own modules (not the library's): its flags, and the set-up of the
//! process it runs in.

pub mod args;
pub mod ping;
pub mod setup;
