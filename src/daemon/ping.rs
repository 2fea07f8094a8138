//! `hark ping NAME`: an event for a heartbeat watch, judged and acted on before the
//! answer, so a ping that returned is one the rules have heard.

use std::sync::Arc;

use super::Daemon;
use crate::config::WatchKind;
use crate::control::Response;
use crate::event::Event;

/// The kinds a ping may have.
pub const KINDS: [&str; 3] = ["start", "success", "fail"];

impl Daemon {
    pub(super) async fn ping(
        &mut self,
        watch: &str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Response {
        let is_heartbeat = |k: &WatchKind| matches!(k, WatchKind::Heartbeat(_));
        if !self
            .config
            .watches
            .get(watch)
            .is_some_and(|w| is_heartbeat(&w.kind))
        {
            let names: Vec<&str> = self
                .config
                .watches
                .values()
                .filter(|w| is_heartbeat(&w.kind))
                .map(|w| w.name.as_str())
                .collect();
            let known = match names.is_empty() {
                true => "none is configured (type = \"heartbeat\")".to_string(),
                false => format!("the heartbeat watches are: {}", names.join(", ")),
            };
            return Response::error(format!("no heartbeat watch `{watch}`; {known}"));
        }
        let kind = fields.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if !KINDS.contains(&kind) {
            return Response::error(format!("a ping's kind is one of {KINDS:?}, not {kind:?}"));
        }
        let name: Arc<str> = Arc::from(watch);
        let host: Arc<str> = Arc::from(self.config.daemon.host.as_str());
        let kind = kind.to_string();
        let event = Event::new(&name, "heartbeat", &host, true, fields);
        let firings = self.on_event(Arc::new(event));
        self.act(firings).await;
        Response::message(format!("{watch}: {kind} heard"))
    }
}
