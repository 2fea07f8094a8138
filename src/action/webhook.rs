//! `type = "webhook"`: a firing's payload (see payload.rs) POSTed through the outbox.

use super::payload;
use super::render::{Failed, Made, Rendering};
use crate::config::WebhookAction;

/// What a firing makes of the action: one delivery.
pub(super) fn make(w: &WebhookAction, r: &Rendering<'_>) -> Result<Made, Failed> {
    let (body, content_type) = payload::render(&w.payload, r.firing, r.ctx, r.templates)
        .map_err(Failed::of("its payload"))?;
    Ok(Made::Deliveries(vec![r.delivery(body, &content_type)]))
}

/// What it would send, for `hark test`.
pub(super) fn preview(w: &WebhookAction, r: &Rendering<'_>) -> Result<String, Failed> {
    let (body, content_type) = payload::render(&w.payload, r.firing, r.ctx, r.templates)
        .map_err(Failed::of("its payload"))?;
    Ok(format!(
        "webhook `{}`: {} {} ({content_type}) {body}",
        r.name, w.method, w.url
    ))
}
