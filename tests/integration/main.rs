//! Drives the real `hark` binary: configs in temp dirs, real files, real processes.

mod alertmanager;
mod brokers;
mod checks_watch;
mod control;
mod daemon;
mod dry_run;
mod faults;
mod file_intake;
mod file_watch;
mod groups;
mod hostile_config;
mod hostile_world;
mod http_server;
mod http_watch;
mod log_watch;
mod metrics;
mod process_watch;
mod reload;
mod shell_action;
mod state_dir;
mod state_rules;
mod systemd;
mod tail;
mod util;
mod validate;
mod webhook;
