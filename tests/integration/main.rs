//! Drives the real `hark` binary: configs in temp dirs, real files, real processes.

mod daemon;
mod file_watch;
mod shell_action;
mod util;
mod validate;
