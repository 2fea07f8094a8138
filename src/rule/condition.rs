//! Evaluating a rule's CEL condition on an event's fields.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Map, Value};

/// Converts an event's fields once, for every rule that looks at it.
pub fn cel_fields(fields: &Map<String, Value>) -> Vec<(String, cel::Value)> {
    fields.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect()
}

/// JSON to CEL: whole numbers are `int` (a `uint` only past `int`'s range), fractions
/// `double`; CEL compares the two as a user expects.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<String, cel::Value> =
                o.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// An event's fields as a condition's variables, converted to CEL only when a condition
/// reads them: most conditions read one or two of a dozen fields, and an event is judged
/// by every rule of its watch with one set of variables.
pub struct EventVars<'a> {
    event: &'a crate::event::Event,
}

impl<'a> EventVars<'a> {
    pub fn new(event: &'a crate::event::Event) -> Self {
        EventVars { event }
    }
}

impl cel::context::VariableResolver for EventVars<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<cel::common::value::CowVal<'b, 'b>> {
        let e = self.event;
        let value = match name {
            "watch" => cel::Value::String(Arc::new(e.watch.to_string())),
            "type" => cel::Value::String(Arc::new(e.source.to_string())),
            "host" => cel::Value::String(Arc::new(e.host.to_string())),
            "time" => cel::Value::String(Arc::new(crate::event::rfc3339(e.time))),
            other => to_cel(e.fields.get(other)?),
        };
        let boxed: Box<dyn cel::common::value::Val> = value.try_into().ok()?;
        Some(cel::common::value::CowVal::Owned(boxed))
    }
}

/// What a condition said about one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Match,
    NoMatch,
    /// It could not be evaluated (a field the event lacks, a type mismatch): treated as
    /// no match, and the reason logged once per rule.
    Error(String),
}

/// Shares the CEL standard environment between every evaluation.
pub struct Evaluator {
    env: Arc<cel::Env>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator {
            env: crate::config::cel_env(),
        }
    }
}

impl Evaluator {
    pub fn eval(&self, program: &cel::Program, fields: &[(String, cel::Value)]) -> Outcome {
        let mut ctx = cel::Context::with_env(Arc::clone(&self.env));
        for (k, v) in fields {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
        outcome(program.execute(&ctx))
    }

    /// A context whose variables are the event's fields, read as conditions ask for them.
    pub fn bind<'v>(&self, vars: &'v EventVars<'v>) -> cel::Context<'v, 'v> {
        let mut ctx = cel::Context::with_env(Arc::clone(&self.env));
        ctx.set_variable_resolver(vars);
        ctx
    }

    /// Evaluates `program` in a context from `bind`.
    pub fn eval_in(&self, program: &cel::Program, ctx: &cel::Context<'_, '_>) -> Outcome {
        outcome(program.execute(ctx))
    }
}

fn outcome(result: Result<cel::Value, cel::ExecutionError>) -> Outcome {
    match result {
        Ok(cel::Value::Bool(true)) => Outcome::Match,
        Ok(cel::Value::Bool(false)) => Outcome::NoMatch,
        Ok(other) => Outcome::Error(format!(
            "the condition gave {} instead of a bool",
            other.type_of()
        )),
        Err(cel::ExecutionError::UndeclaredReference(name)) => {
            Outcome::Error(format!("the event has no field `{name}`"))
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// One sub-expression of a condition and what it gave on an event, for `hark explain`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubValue {
    /// The sub-expression as written.
    pub expr: String,
    /// Its value, in CEL's notation, or why it has none.
    pub value: String,
}

impl Evaluator {
    /// Every sub-expression of `program` (the whole first, then its parts as written,
    /// literals left out) with its value on `fields`. The inside of a macro (`all`,
    /// `exists`, ...) is shown whole: its loop variable means nothing outside it.
    pub fn explain(
        &self,
        program: &cel::Program,
        fields: &[(String, cel::Value)],
    ) -> Vec<SubValue> {
        let mut ctx = cel::Context::with_env(Arc::clone(&self.env));
        for (k, v) in fields {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
        let source: Vec<char> = program.source_info().source.chars().collect();
        let mut nodes = Vec::new();
        collect(program.expression(), &mut nodes);
        let mut out: Vec<SubValue> = Vec::new();
        for node in nodes {
            let text = span(program.source_info(), &source, node)
                .map(|(start, stop)| written(&source, start, stop))
                .unwrap_or_default();
            if text.is_empty() || out.iter().any(|s| s.expr == text) {
                continue;
            }
            let value = match cel::Value::resolve(node, &ctx) {
                Ok(v) => cel_text(&v),
                Err(cel::ExecutionError::UndeclaredReference(name)) => {
                    format!("error: the event has no field `{name}`")
                }
                Err(e) => format!("error: {e}"),
            };
            out.push(SubValue {
                expr: text.to_string(),
                value,
            });
        }
        out
    }
}

/// The characters an expression was written in: the parser records one token per node
/// (an operator, a name, the bracket of a call), so the expression's span is that of all
/// its nodes, widened to the name of a function it calls.
fn span(
    info: &cel::common::ast::SourceInfo,
    source: &[char],
    e: &cel::common::ast::IdedExpr,
) -> Option<(usize, usize)> {
    use cel::common::ast::Expr;
    let own = info.offset_for(e.id).map(|(a, b)| (a as usize, b as usize));
    let mut parts: Vec<&cel::common::ast::IdedExpr> = Vec::new();
    match &e.expr {
        Expr::Call(c) => {
            parts.extend(c.target.as_deref());
            parts.extend(c.args.iter());
        }
        Expr::Select(s) => parts.push(&s.operand),
        Expr::List(l) => parts.extend(l.elements.iter()),
        Expr::Comprehension(c) => parts.push(&c.iter_range),
        _ => {}
    }
    let (mut start, stop) = parts
        .into_iter()
        .filter_map(|p| span(info, source, p))
        .chain(own)
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))?;
    let mut stop = stop;
    if let Expr::Select(sel) = &e.expr {
        // A select's own token is its dot: the field's name follows it.
        let name: Vec<char> = sel.field.chars().collect();
        if let Some((dot, _)) = own {
            let mut i = dot + 1;
            while source.get(i).is_some_and(|ch| ch.is_whitespace()) {
                i += 1;
            }
            if source.get(i..i + name.len()) == Some(&name[..]) {
                stop = stop.max(i + name.len() - 1);
            }
        }
    }
    if let Expr::Call(c) = &e.expr {
        let name: Vec<char> = c.func_name.chars().collect();
        let is_function = c.target.is_none()
            && name.first().is_some_and(|ch| ch.is_alphabetic())
            && name.iter().all(|ch| ch.is_alphanumeric() || *ch == '_');
        if is_function {
            let mut i = start;
            while i > 0 && source.get(i - 1).is_some_and(|ch| ch.is_whitespace()) {
                i -= 1;
            }
            if i >= name.len() && source.get(i - name.len()..i) == Some(&name[..]) {
                start = i - name.len();
            }
        }
    }
    Some((start, stop))
}

/// The text from `start` to `stop` (inclusive), running on to close the brackets it
/// opens (a call's closing bracket is no node's token).
fn written(source: &[char], start: usize, stop: usize) -> String {
    if start >= source.len() || stop < start {
        return String::new();
    }
    let stop = stop.min(source.len() - 1);
    let mut open = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut end = start;
    for (i, &c) in source.iter().enumerate().skip(start) {
        if i > stop && open <= 0 && quote.is_none() {
            break;
        }
        end = i;
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => open += 1,
                ')' | ']' | '}' => open -= 1,
                _ => {}
            },
        }
    }
    source[start..=end]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}

/// Pre-order: an expression before its parts.
fn collect<'a>(e: &'a cel::common::ast::IdedExpr, out: &mut Vec<&'a cel::common::ast::IdedExpr>) {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Literal(_) | Expr::Unspecified => {}
        Expr::Call(call) => {
            out.push(e);
            if let Some(t) = &call.target {
                collect(t, out);
            }
            for a in &call.args {
                collect(a, out);
            }
        }
        Expr::Select(s) => {
            out.push(e);
            collect(&s.operand, out);
        }
        Expr::List(l) => {
            out.push(e);
            for x in &l.elements {
                collect(x, out);
            }
        }
        Expr::Ident(_) | Expr::Comprehension(_) | Expr::Map(_) | Expr::Struct(_) => out.push(e),
    }
}

/// A value as CEL would write it: strings quoted and escaped, so a value cannot pass for
/// another or carry a control character to a terminal.
pub fn cel_text(v: &cel::Value) -> String {
    match v {
        cel::Value::String(s) => serde_json::Value::String(s.to_string()).to_string(),
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => format!("{u}u"),
        cel::Value::Float(f) => format!("{f:?}"),
        cel::Value::Bool(b) => b.to_string(),
        cel::Value::Null => "null".into(),
        cel::Value::List(l) => {
            let items: Vec<String> = l.iter().map(cel_text).collect();
            format!("[{}]", items.join(", "))
        }
        // Maps (a JSON body's objects), timestamps, durations and bytes as JSON: what a
        // person wrote the condition against.
        other => match other.json() {
            Ok(j) => j.to_string(),
            Err(_) => serde_json::Value::String(format!("{other:?}")).to_string(),
        },
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod documented_functions;
