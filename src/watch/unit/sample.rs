//! A unit's sample: its fields from the properties systemd gives (the unit's, and its
//! type's).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};
use zbus::zvariant::OwnedValue;

/// Whether a `failed` a unit reports may be the step before an automatic restart
/// (`Restart=` other than `no`): only then is it worth asking what the state is now.
pub(super) fn transient_failure(
    props: &HashMap<String, OwnedValue>,
    typed: &HashMap<String, OwnedValue>,
) -> bool {
    text(props, "ActiveState").as_deref() == Some("failed")
        && text(typed, "Restart").is_some_and(|r| r != "no")
}

/// The fields of the bus gone (or never reached): `kind = "disconnected"`, the reason in
/// `error`; `unit` and the states empty, so conditions on them are simply false and a
/// rule can say `when = 'kind == "disconnected"'`.
pub(super) fn disconnected_fields(why: String) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("kind".into(), Value::from("disconnected"));
    for f in ["unit", "active_state", "sub_state", "load_state", "result"] {
        fields.insert(f.into(), Value::from(""));
    }
    fields.insert("error".into(), Value::from(why));
    fields
}

/// The properties a sample is made of.
pub(super) const USED: [&str; 7] = [
    "ActiveState",
    "SubState",
    "LoadState",
    "StateChangeTimestamp",
    "Result",
    "NRestarts",
    "MainPID",
];

/// The interface of a unit's own type, which holds its `Result` (and for services
/// `NRestarts` and `MainPID`).
pub(super) fn type_interface(unit: &str) -> Option<&'static str> {
    Some(match unit.rsplit_once('.')?.1 {
        "service" => "org.freedesktop.systemd1.Service",
        "socket" => "org.freedesktop.systemd1.Socket",
        "timer" => "org.freedesktop.systemd1.Timer",
        "mount" => "org.freedesktop.systemd1.Mount",
        "automount" => "org.freedesktop.systemd1.Automount",
        "swap" => "org.freedesktop.systemd1.Swap",
        "path" => "org.freedesktop.systemd1.Path",
        "scope" => "org.freedesktop.systemd1.Scope",
        _ => return None,
    })
}

fn text(props: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    props
        .get(key)
        .and_then(|v| <&str>::try_from(&**v).ok())
        .map(str::to_string)
}

fn number(props: &HashMap<String, OwnedValue>, key: &str) -> Option<u64> {
    let v = props.get(key)?;
    u64::try_from(&**v)
        .ok()
        .or_else(|| u32::try_from(&**v).ok().map(u64::from))
}

/// A sample's fields from a unit's properties and its type's.
pub fn fields_of(
    unit: &str,
    props: &HashMap<String, OwnedValue>,
    typed: &HashMap<String, OwnedValue>,
) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("kind".into(), Value::from("sample"));
    f.insert("unit".into(), Value::from(unit));
    for (field, key) in [
        ("active_state", "ActiveState"),
        ("sub_state", "SubState"),
        ("load_state", "LoadState"),
    ] {
        f.insert(
            field.into(),
            Value::from(text(props, key).unwrap_or_default()),
        );
    }
    if let Some(usec) = number(props, "StateChangeTimestamp").filter(|u| *u > 0) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(usec);
        f.insert("since".into(), Value::from(crate::event::rfc3339(at)));
    }
    if let Some(r) = text(typed, "Result") {
        f.insert("result".into(), Value::from(r));
    }
    if unit.ends_with(".service") {
        if let Some(n) = number(typed, "NRestarts") {
            f.insert("n_restarts".into(), Value::from(n));
        }
        if let Some(p) = number(typed, "MainPID") {
            f.insert("main_pid".into(), Value::from(p));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, OwnedValue)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.try_clone().unwrap()))
            .collect()
    }

    #[test]
    fn a_failed_service_sample_has_its_result_restarts_and_pid() {
        let unit = props(&[
            (
                "ActiveState",
                OwnedValue::from(zbus::zvariant::Str::from("failed")),
            ),
            (
                "SubState",
                OwnedValue::from(zbus::zvariant::Str::from("failed")),
            ),
            (
                "LoadState",
                OwnedValue::from(zbus::zvariant::Str::from("loaded")),
            ),
            (
                "StateChangeTimestamp",
                OwnedValue::from(1_796_000_000_000_000u64),
            ),
        ]);
        let typed = props(&[
            (
                "Result",
                OwnedValue::from(zbus::zvariant::Str::from("exit-code")),
            ),
            ("NRestarts", OwnedValue::from(3u32)),
            ("MainPID", OwnedValue::from(0u32)),
        ]);
        let f = fields_of("app.service", &unit, &typed);
        assert_eq!(f["kind"], "sample");
        assert_eq!(f["unit"], "app.service");
        assert_eq!(f["active_state"], "failed");
        assert_eq!(f["result"], "exit-code");
        assert_eq!(f["n_restarts"], 3);
        assert_eq!(f["main_pid"], 0);
        assert!(f["since"].as_str().unwrap().starts_with("2026-"), "{f:?}");
    }

    #[test]
    fn a_timer_has_no_restarts_or_pid_and_an_unknown_type_no_result() {
        let unit = props(&[(
            "ActiveState",
            OwnedValue::from(zbus::zvariant::Str::from("active")),
        )]);
        let typed = props(&[
            (
                "Result",
                OwnedValue::from(zbus::zvariant::Str::from("success")),
            ),
            ("NRestarts", OwnedValue::from(1u32)),
        ]);
        let f = fields_of("daily.timer", &unit, &typed);
        assert_eq!(f["result"], "success");
        assert!(!f.contains_key("n_restarts") && !f.contains_key("main_pid"));
        assert!(!f.contains_key("since"));
        assert_eq!(type_interface("x.device"), None);
        assert_eq!(type_interface("noext"), None);
    }
}
