//! A firing's action rendered: what each action type makes of a firing (a local job, or
//! deliveries for the outbox) and what `hark test` shows of it. Each type's own file says
//! how; this file is what they share.

use super::job::Work;
use super::outbox::Delivery;
use super::template::{RenderContext, Templates};
use crate::event::Firing;

/// One action of a firing, as its type's file sees it.
pub(super) struct Rendering<'a> {
    pub firing: &'a Firing,
    pub ctx: &'a RenderContext,
    pub templates: &'a Templates,
    /// The action's name in the configuration.
    pub name: &'a str,
    /// `[daemon] url`: where people reach the status page.
    pub link: Option<&'a str>,
}

/// What an action of a firing comes to.
pub(super) enum Made {
    /// Run here, in a slot (shell, systemd).
    Job(Work),
    /// Handed to the outbox, stored first (webhook, email, broker, Alertmanager).
    Deliveries(Vec<Delivery>),
}

/// A template of an action that failed to render: the action does not run.
#[derive(Debug)]
pub(super) struct Failed {
    /// What failed, in words: `its payload`, `an annotation`, ...
    pub what: &'static str,
    pub error: minijinja::Error,
}

impl Failed {
    pub fn of(what: &'static str) -> impl FnOnce(minijinja::Error) -> Failed {
        move |error| Failed { what, error }
    }
}

impl Rendering<'_> {
    /// Renders one template of the action, as text for logs and messages.
    pub fn text(&self, source: &str, what: &'static str) -> Result<String, Failed> {
        let out = self
            .templates
            .render(source, self.ctx)
            .map_err(Failed::of(what))?;
        Ok(crate::event::display_lossy(&out))
    }

    /// A delivery of the action for the outbox.
    pub fn delivery(&self, body: String, content_type: &str) -> Delivery {
        Delivery::new(self.firing, self.name, body, content_type.to_string())
    }
}
