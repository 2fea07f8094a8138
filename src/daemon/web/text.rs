//! `/metrics` in Prometheus' text format for scrapers that do not ask for OpenMetrics.

/// OpenMetrics text as Prometheus' text format 0.0.4 (what a scraper that does not ask
/// for OpenMetrics, and `promtool check metrics`, read): a counter's HELP and TYPE name
/// its `_total` samples, and `# UNIT`, `# EOF` and `_created` samples are left out.
pub fn prometheus_text(openmetrics: &str) -> String {
    // Families whose samples carry a suffix their name lacks: counters (`_total`) and
    // info metrics (`_info`).
    let mut suffixed = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            match rest.split_once(' ') {
                Some((name, "counter")) => suffixed.insert(name.to_string(), "_total"),
                Some((name, "info")) => suffixed.insert(name.to_string(), "_info"),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        if let Some((prefix, rest)) = meta {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let tail = if prefix == "# TYPE " && tail == "info" {
                "gauge"
            } else if prefix == "# TYPE " && tail == "unknown" {
                "untyped"
            } else {
                tail
            };
            let suffix = suffixed.get(name).copied().unwrap_or("");
            out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        if sample
            .strip_suffix("_created")
            .is_some_and(|f| suffixed.get(f) == Some(&"_total"))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_only_lines_go() {
        let om = "# HELP hark_events Events emitted.\n# TYPE hark_events counter\n\
                  hark_events_total{watch=\"a\"} 3\nhark_events_created{watch=\"a\"} 1.7e9\n\
                  # HELP hark_lag_seconds Lag.\n# TYPE hark_lag_seconds histogram\n# UNIT hark_lag_seconds seconds\n\
                  hark_lag_seconds_sum 1.0\n# TYPE hark_build info\nhark_build_info 1\n# EOF\n";
        let text = prometheus_text(om);
        assert_eq!(
            text,
            "# HELP hark_events_total Events emitted.\n# TYPE hark_events_total counter\n\
             hark_events_total{watch=\"a\"} 3\n\
             # HELP hark_lag_seconds Lag.\n# TYPE hark_lag_seconds histogram\n\
             hark_lag_seconds_sum 1.0\n# TYPE hark_build_info gauge\nhark_build_info 1\n"
        );
    }
}
