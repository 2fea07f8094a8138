//! Metrics in the Prometheus (OpenMetrics) text format, served at `GET /metrics` on
//! `[daemon] metrics` when it is set. Every part counts into one process-wide registry;
//! the endpoint only reads it.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod timing;

pub use timing::{
    watch_runtime, ActionTiming, Quantiles, RuntimeHealth, TimingStatus, Timings, WatchTiming,
};

pub type Labels = Vec<(String, String)>;

/// Latencies from 1 ms to about 16 s.
#[derive(Clone)]
pub struct Seconds;

impl MetricConstructor<Histogram> for Seconds {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.001, 2.0, 15))
    }
}

pub struct Metrics {
    registry: Registry,
    pub events: Family<Labels, Counter>,
    pub check_seconds: Family<Labels, Histogram, Seconds>,
    pub firings: Family<Labels, Counter>,
    pub rules_firing: Family<Labels, Gauge>,
    pub rule_deadline: Family<Labels, Gauge<f64, AtomicU64>>,
    pub action_runs: Family<Labels, Counter>,
    pub action_seconds: Family<Labels, Histogram, Seconds>,
    pub deliveries: Family<Labels, Counter>,
    pub outbox_pending: Gauge,
    pub outbox_failed: Gauge,
    pub outbox_oldest_seconds: Gauge<f64, AtomicU64>,
    pub store_write_errors: Counter,
    pub process_events_dropped: Counter,
    pub groups_dropped: Family<Labels, Counter>,
    pub file_overflows: Counter,
    pub reloads: Family<Labels, Counter>,
    pub reload_seconds: Gauge<f64, AtomicU64>,
    pub event_lag: Family<Labels, Histogram, Seconds>,
    pub action_wait: Family<Labels, Histogram, Seconds>,
    pub event_queue_depth: Gauge,
    pub loop_lag_seconds: Gauge<f64, AtomicU64>,
    pub tasks: Gauge,
    /// Requests and connections the HTTP listener refused or closed, per reason.
    pub http_refused: Family<Labels, Counter>,
    /// `hark_build_info{version}`: always 1, so a dashboard can tell which build runs.
    pub build_info: Family<Labels, Gauge>,
    /// The last samples, for the quantiles of `hark status`.
    pub timings: Timings,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// One label.
pub fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

/// Two labels.
pub fn labels(k1: &str, v1: &str, k2: &str, v2: &str) -> Labels {
    vec![
        (k1.to_string(), v1.to_string()),
        (k2.to_string(), v2.to_string()),
    ]
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            events: Family::default(),
            check_seconds: Family::new_with_constructor(Seconds),
            firings: Family::default(),
            rules_firing: Family::default(),
            rule_deadline: Family::default(),
            action_runs: Family::default(),
            action_seconds: Family::new_with_constructor(Seconds),
            deliveries: Family::default(),
            outbox_pending: Gauge::default(),
            process_events_dropped: Counter::default(),
            groups_dropped: Family::default(),
            file_overflows: Counter::default(),
            outbox_failed: Gauge::default(),
            outbox_oldest_seconds: Gauge::default(),
            store_write_errors: Counter::default(),
            reloads: Family::default(),
            reload_seconds: Gauge::default(),
            event_lag: Family::new_with_constructor(Seconds),
            action_wait: Family::new_with_constructor(Seconds),
            event_queue_depth: Gauge::default(),
            loop_lag_seconds: Gauge::default(),
            tasks: Gauge::default(),
            http_refused: Family::default(),
            build_info: Family::default(),
            timings: Timings::default(),
        };
        let mut r = Registry::with_prefix("hark");
        m.register_flow(&mut r);
        m.register_outcomes(&mut r);
        m.build_info
            .get_or_create(&label("version", env!("CARGO_PKG_VERSION")))
            .set(1);
        m.registry = r;
        m
    }

    /// What flows from watches to rules, and the runtime that carries it.
    fn register_flow(&self, r: &mut Registry) {
        let m = self;
        r.register("events", "Events emitted, per watch", m.events.clone());
        r.register(
            "check_duration_seconds",
            "How long each check took (http, tcp, command watches), per watch",
            m.check_seconds.clone(),
        );
        r.register(
            "firings",
            "Firings handed to actions, per rule and state (firing, resolved)",
            m.firings.clone(),
        );
        r.register(
            "rule_firing",
            "For each rule and watch firing now, how many of its states are firing (1, or the firing groups with group_by)",
            m.rules_firing.clone(),
        );
        r.register(
            "rule_deadline_seconds",
            "For each rule that expects a match (expect_within, expect), the nearest time one is due by, in unix seconds",
            m.rule_deadline.clone(),
        );
        r.register(
            "action_runs",
            "Shell action runs, per action and result (ok, failed, signalled, timeout, killed, error)",
            m.action_runs.clone(),
        );
        r.register(
            "action_duration_seconds",
            "How long shell actions ran, and delivery attempts took, per action",
            m.action_seconds.clone(),
        );
        r.register(
            "action_queue_wait_seconds",
            "From a firing to its action's start (a shell action waiting for a permit, a delivery for its lane), per action",
            m.action_wait.clone(),
        );
        r.register(
            "event_lag_seconds",
            "From an event's occurrence to the rules' verdict on it, per watch",
            m.event_lag.clone(),
        );
        r.register(
            "event_queue_depth",
            "Events waiting for the rule engine",
            m.event_queue_depth.clone(),
        );
        r.register(
            "runtime_loop_lag_seconds",
            "How late the runtime ran its sampler after the clock woke it (a blocked worker shows here)",
            m.loop_lag_seconds.clone(),
        );
        r.register(
            "runtime_tasks",
            "Tasks alive on the runtime",
            m.tasks.clone(),
        );
    }

    /// What actions, the outbox, the store and the daemon itself came to.
    fn register_outcomes(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "deliveries",
            "Delivery attempts of webhook, Alertmanager and broker actions, per action and result (delivered, retry, failed, reposted)",
            m.deliveries.clone(),
        );
        r.register(
            "outbox_pending",
            "Deliveries in the outbox not yet made",
            m.outbox_pending.clone(),
        );
        r.register(
            "outbox_failed",
            "Failed deliveries kept in the outbox",
            m.outbox_failed.clone(),
        );
        r.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet made (0 when none)",
            m.outbox_oldest_seconds.clone(),
        );
        r.register(
            "store_write_errors",
            "Writes to the state store that failed (a full or failing disk)",
            m.store_write_errors.clone(),
        );
        r.register(
            "file_overflows",
            "Times a file watch found the kernel's inotify queue overflowed and recovered what changed meanwhile",
            m.file_overflows.clone(),
        );
        r.register(
            "groups_dropped",
            "Groups of a rule with group_by dropped (the least recently seen not firing) or not taken (every group firing) to stay within max_groups",
            m.groups_dropped.clone(),
        );
        r.register(
            "process_events_dropped",
            "Times the kernel dropped process events (its connector's buffer was full); each is an overflow event of every process watch",
            m.process_events_dropped.clone(),
        );
        r.register(
            "reloads",
            "Configuration reloads, per result (ok, refused)",
            m.reloads.clone(),
        );
        r.register(
            "last_reload_duration_seconds",
            "How long the last reload took",
            m.reload_seconds.clone(),
        );
        r.register(
            "http_refused",
            "Requests and connections the HTTP listener refused or closed, per reason (unauthorized, forbidden, rate_limited, too_large, queue_full, tls_handshake, evicted)",
            m.http_refused.clone(),
        );
        r.register(
            "build_info",
            "The running build: always 1, labelled with its version",
            m.build_info.clone(),
        );
    }

    /// Series at zero for each configured watch and rule, so a scraper tells "none yet"
    /// from "no such watch" (a counter that is absent cannot be alerted on with `rate`).
    pub fn declare<'a>(
        &self,
        watches: impl Iterator<Item = &'a str>,
        rules: impl Iterator<Item = &'a str>,
    ) {
        for w in watches {
            let _ = self.events.get_or_create(&label("watch", w));
        }
        for r in rules {
            for state in ["firing", "resolved"] {
                let _ = self
                    .firings
                    .get_or_create(&labels("rule", r, "state", state));
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn observe_check(&self, watch: &str, seconds: f64) {
        self.check_seconds
            .get_or_create(&label("watch", watch))
            .observe(seconds);
        self.timings.check(watch, seconds);
    }

    /// A rule's group dropped for room (`max_groups`).
    pub fn group_dropped(&self, rule: &str) {
        self.groups_dropped
            .get_or_create(&label("rule", rule))
            .inc();
    }

    /// An event's way from its occurrence to the rules' verdict.
    pub fn observe_lag(&self, watch: &str, lag: Duration) {
        self.event_lag
            .get_or_create(&label("watch", watch))
            .observe(lag.as_secs_f64());
        self.timings.lag(watch, lag.as_secs_f64());
    }

    /// An action's wait from its firing to its start.
    pub fn observe_wait(&self, action: &str, wait: Duration) {
        self.action_wait
            .get_or_create(&label("action", action))
            .observe(wait.as_secs_f64());
        self.timings.wait(action, wait.as_secs_f64());
    }

    pub fn observe_action(&self, action: &str, result: &str, took: Duration) {
        self.action_runs
            .get_or_create(&labels("action", action, "result", result))
            .inc();
        self.observe_run(action, took);
    }

    /// How long a shell action ran or a delivery attempt took.
    pub fn observe_run(&self, action: &str, took: Duration) {
        self.action_seconds
            .get_or_create(&label("action", action))
            .observe(took.as_secs_f64());
        self.timings.run(action, took.as_secs_f64());
    }

    pub fn delivery(&self, action: &str, result: &str) {
        self.deliveries
            .get_or_create(&labels("action", action, "result", result))
            .inc();
    }
}

impl Metrics {
    /// The outbox's gauges, as the outbox counted them (it reports; metrics read no store).
    pub fn set_outbox(&self, pending: i64, failed: i64, oldest_pending: Duration) {
        self.outbox_pending.set(pending);
        self.outbox_failed.set(failed);
        self.outbox_oldest_seconds.set(oldest_pending.as_secs_f64());
    }
}
