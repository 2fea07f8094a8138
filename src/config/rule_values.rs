//! The small values of a rule: label names, `during_cooldown`, `trigger_limit`.

use toml::Spanned;

use super::rule::{RawRule, TriggerLimit};
use super::values;
use super::Ctx;

/// Label names as Prometheus and Alertmanager accept them; the names hark sets itself are
/// reserved.
pub(super) fn check_label_name(ctx: &mut Ctx, k: &Spanned<String>) {
    let name = k.get_ref();
    if !values::is_identifier(name) {
        ctx.error(
            k.span(),
            format!(
                "invalid label name {name:?}: letters, digits and `_`, not starting with a digit"
            ),
        );
    } else if name == "alertname" {
        ctx.error(
            k.span(),
            "the `alertname` label is set by hark: it is the rule's name",
        );
    } else if name == "severity" {
        ctx.error(
            k.span(),
            "the `severity` label is set by hark: use the rule's `severity` key",
        );
    }
}

/// `during_cooldown`: whether matches inside the cooldown are dropped (else held).
pub(super) fn during_cooldown(ctx: &mut Ctx, raw: &RawRule) -> bool {
    let drop = match &raw.during_cooldown {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "hold" => false,
            "drop" => true,
            other => {
                ctx.error(
                    v.span(),
                    format!(
                        "unknown `during_cooldown` {other:?}: \"hold\" (the default: matches inside \
                         the cooldown fire once when it ends) or \"drop\""
                    ),
                );
                false
            }
        },
    };
    if let (Some(v), None) = (&raw.during_cooldown, &raw.cooldown) {
        ctx.error(v.span(), "`during_cooldown` needs a `cooldown`");
    }
    drop
}

/// `"100/10s"` (at most 100 firings in any 10 seconds) or `"off"`.
pub(super) fn parse_trigger_limit(
    ctx: &mut Ctx,
    v: &Spanned<String>,
) -> Option<Option<TriggerLimit>> {
    let s = v.get_ref().trim();
    if s == "off" {
        return Some(None);
    }
    let parsed = s.split_once('/').and_then(|(n, d)| {
        let burst: u32 = n.trim().parse().ok().filter(|b| *b > 0)?;
        let interval = humantime::parse_duration(d.trim())
            .ok()
            .filter(|d| !d.is_zero())?;
        Some(TriggerLimit { burst, interval })
    });
    match parsed {
        Some(l) => Some(Some(l)),
        None => {
            ctx.error(
                v.span(),
                format!("invalid trigger_limit {s:?}: write it as \"COUNT/DURATION\" (\"30/10s\") or \"off\""),
            );
            None
        }
    }
}
