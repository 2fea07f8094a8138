//! hark: watches feed events to rules; rules fire actions.
//!
//! Data flows one way: config → watches → events → rules → firings → actions.

pub mod action;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dry_run;
pub mod event;
pub mod exec;
pub mod fsread;
pub mod metrics;
pub mod rule;
pub mod store;
pub mod systemd_bus;
pub mod tls;
pub mod trace;
pub mod watch;
