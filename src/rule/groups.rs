//! `group_by`: an event's group (its values of the named fields, as a JSON array), the
//! group's fields for templates, and the book of groups dropped or refused for room
//! (`max_groups`), which both counting mechanisms keep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::head::Head;
use crate::event::{Event, Group};

/// A refused group is logged at most this often per rule.
const REFUSAL_SAID_EVERY: Duration = Duration::from_secs(60);

impl Head {
    /// The event's group key: its values of `group_by`'s fields, as a JSON array;
    /// `None` without `group_by`. A field the event lacks is an error, as in a condition.
    pub fn group_key(&self, event: &Event) -> Result<Option<String>, String> {
        if self.config.group_by.is_empty() {
            return Ok(None);
        }
        let mut values: Vec<std::borrow::Cow<'_, str>> =
            Vec::with_capacity(self.config.group_by.len());
        for f in &self.config.group_by {
            values.push(match f.as_str() {
                "watch" => (&*event.watch).into(),
                "host" => (&*event.host).into(),
                "type" => event.source.into(),
                _ => match event.fields.get(f) {
                    Some(serde_json::Value::String(s)) => s.as_str().into(),
                    Some(other) => other.to_string().into(),
                    None => return Err(format!("the event has no field `{f}` to group by")),
                },
            });
        }
        serde_json::to_string(&values)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// The event's group, with its fields; `None` without `group_by`.
    pub fn group_of(&self, event: &Event) -> Result<Option<Group>, String> {
        Ok(self.group_key(event)?.map(|key| self.group(Arc::from(key))))
    }

    /// The group of key `key`, with its fields.
    pub fn group(&self, key: Arc<str>) -> Group {
        Group {
            fields: self.group_fields(&key),
            key,
        }
    }

    /// The group's fields from its key (its values as a JSON array, in `group_by` order).
    pub fn group_fields(&self, key: &str) -> Arc<BTreeMap<String, String>> {
        let values: Vec<String> = serde_json::from_str(key).unwrap_or_default();
        Arc::new(self.config.group_by.iter().cloned().zip(values).collect())
    }

    /// An event standing for a group restored from the store (its resolve's templates see
    /// the group's fields).
    pub fn group_event(&self, group: &str) -> Arc<Event> {
        let values: Vec<String> = serde_json::from_str(group).unwrap_or_default();
        let fields = self
            .config
            .group_by
            .iter()
            .zip(values)
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v)))
            .collect();
        Arc::new(Event {
            watch: Arc::from(self.config.watches.first().map_or("", String::as_str)),
            source: "restored",
            time: SystemTime::now(),
            host: Arc::from(""),
            edge: true,
            fields,
            cursor: None,
        })
    }
}

/// Groups dropped and refused for room, since the start.
#[derive(Default)]
pub(super) struct GroupBook {
    /// Groups not firing dropped to make room for a new one.
    pub dropped: u64,
    /// New groups not taken for want of room (every group firing).
    pub refused: u64,
    /// When a refusal was last logged, and how many came since.
    refusals_said: Option<(Instant, u64)>,
}

impl GroupBook {
    /// A group dropped for room.
    pub fn drop_one(&mut self, head: &Head) {
        self.dropped += 1;
        crate::metrics::get().group_dropped(&head.config.name);
    }

    /// A new group not taken: counted, and said at most once a minute (a flood of junk
    /// keys that fills the table would otherwise hide the next real one without a word).
    pub fn refuse(&mut self, head: &Head, key: &str, now: Instant) {
        let config = &head.config;
        self.refused += 1;
        crate::metrics::get().group_dropped(&config.name);
        if let Some(since) = self.refusal_to_say(now) {
            let key: String = key.chars().take(200).collect();
            tracing::warn!(
                rule = %config.name,
                max_groups = config.max_groups,
                refused_total = self.refused,
                group = %key,
                "every group this rule holds is firing: a new group was not taken ({since} more refused since this was last said); raise max_groups or shorten resolve_after"
            );
        }
    }

    /// Whether a refusal at `now` is to be said, and how many went unsaid before it.
    pub fn refusal_to_say(&mut self, now: Instant) -> Option<u64> {
        match self.refusals_said {
            Some((at, n)) if now.saturating_duration_since(at) < REFUSAL_SAID_EVERY => {
                self.refusals_said = Some((at, n + 1));
                None
            }
            said => {
                self.refusals_said = Some((now, 0));
                Some(said.map_or(0, |(_, n)| n))
            }
        }
    }
}
