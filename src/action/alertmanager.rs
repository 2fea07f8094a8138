//! `type = "alertmanager"`: a firing as an alert for Alertmanager's API (see payload.rs),
//! one delivery per member of the cluster, re-posted while the rule fires (see
//! outbox/alerts.rs).

use super::outbox::{alert_key, Delivery};
use super::payload;
use super::render::{Failed, Made, Rendering};
use crate::config::AlertmanagerAction;

/// What a firing makes of the action: the same delivery, with the same key, for every
/// receiver.
pub(super) fn make(am: &AlertmanagerAction, r: &Rendering<'_>) -> Result<Made, Failed> {
    let body =
        payload::alert(am, r.firing, r.ctx, r.templates).map_err(Failed::of("an annotation"))?;
    let firing = r.firing;
    // An event rule's alert ends by itself; only a firing that fires until it resolves
    // is posted again.
    let alert = firing
        .resolves
        .then(|| alert_key(r.name, &firing.rule, &firing.scope()));
    let first = Delivery {
        alert,
        ..r.delivery(body, "application/json")
    };
    let all = (0..am.endpoints.len() as u32)
        .map(|target| Delivery {
            target,
            ..first.clone()
        })
        .collect();
    Ok(Made::Deliveries(all))
}

/// What it would post, for `hark test`.
pub(super) fn preview(am: &AlertmanagerAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let body =
        payload::alert(am, r.firing, r.ctx, r.templates).map_err(Failed::of("an annotation"))?;
    let urls: Vec<String> = am.endpoints.iter().map(ToString::to_string).collect();
    Ok(format!(
        "alertmanager `{}`: POST /api/v2/alerts of {} {body}",
        r.name,
        urls.join(", ")
    ))
}
