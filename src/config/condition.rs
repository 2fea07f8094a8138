//! CEL conditions: the environment every condition is compiled and evaluated in, and the
//! checks `validate` makes so that what it accepts a run can evaluate: nesting within a
//! fixed depth (evaluation recurses once per level, on whatever thread runs it), every
//! function it calls defined, every regex literal valid.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::common::types::{CelBool, CelString};
use toml::Spanned;

use super::diagnostic::offset_of_line_col;
use super::Ctx;

/// The deepest nesting a condition may have. Evaluating, explaining and dropping a
/// condition recurse once per level; at this depth that is a few hundred KiB of stack in
/// a debug build, far below the smallest thread stack hark runs on (2 MiB). A chain like
/// `a + b + c + ...` nests one level per term; hand-written conditions stay below 20.
pub const MAX_DEPTH: usize = 100;

/// The longest condition accepted: the parser recurses per token of a chain, and this
/// bounds it whatever the chain.
pub const MAX_LEN: usize = 16 * 1024;

/// A compiled CEL condition and its source text.
#[derive(Debug, Clone)]
pub struct Condition {
    pub source: String,
    pub program: Arc<cel::Program>,
}

/// The environment of every condition: CEL's standard library with `timestamp()` and
/// `duration()`, and a `matches()` that compiles each pattern once (the library's own
/// compiles it on every call, so on every event).
pub fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    Arc::clone(ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Both fail only when the name is already declared, which it is not: the crate's
        // own `matches` is left out with its `regex` feature.
        let _ = cel::add_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>,
            name = "matches", id = "matches");
        let _ = cel::add_member_overload!(env, fn matches: (CelString, CelString) -> Result<CelBool>,
            name = "matches", id = "string.matches(string)");
        Arc::new(env)
    }))
}

/// Patterns compiled so far. Patterns come from conditions (a few) or from event fields
/// (`path.matches(pattern)`, unbounded): past the cap, the cache starts over.
const REGEX_CACHE: usize = 256;

fn matches(text: &CelString<'_>, pattern: &CelString<'_>) -> Result<CelBool, cel::ExecutionError> {
    let re = compiled(pattern.inner()).map_err(|message| cel::ExecutionError::FunctionError {
        function: "matches".into(),
        message,
    })?;
    Ok(CelBool::from(re.is_match(text.inner())))
}

fn compiled(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(re) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return Ok(Arc::clone(re));
    }
    let re = Arc::new(build_regex(pattern)?);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    if map.len() >= REGEX_CACHE {
        map.clear();
    }
    map.insert(pattern.to_string(), Arc::clone(&re));
    Ok(re)
}

fn build_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            // The regex crate's message draws the pattern over several lines; its last
            // line says what is wrong.
            let text = e.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            format!(
                "not a valid regex: {}",
                last.trim().trim_start_matches("error: ")
            )
        })
}

/// Compiles `value` and checks it; errors point inside the string.
pub fn condition(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Condition> {
    let source = value.get_ref();
    if source.trim().is_empty() {
        ctx.error(
            value.span(),
            "empty condition: remove `when` to match every event",
        );
        return None;
    }
    match compile(source) {
        Ok(program) => Some(Condition {
            source: source.clone(),
            program: Arc::new(program),
        }),
        Err(errors) => {
            for (inner, message) in errors {
                ctx.error_inside_string(value.span(), inner, message);
            }
            None
        }
    }
}

/// A condition compiled in [`env`] and checked: what this accepts, a run can evaluate on
/// any of hark's threads. Errors carry the byte offset in `source` they are about.
pub fn compile(source: &str) -> Result<cel::Program, Vec<(usize, String)>> {
    if source.len() > MAX_LEN {
        return Err(vec![(
            0,
            format!(
                "condition of {} bytes: at most {MAX_LEN} (split it over several rules)",
                source.len()
            ),
        )]);
    }
    let program = env().compile(source).map_err(|errors| {
        let mut out: Vec<(usize, String)> = Vec::new();
        for e in errors.errors {
            // The parser's position is a 1-based line and column within the expression.
            let (line, col) = (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize);
            let message = format!("invalid CEL condition: {}", parser_message(&e.msg));
            // The parser says the same thing again for each token it could not recover at.
            if !out.iter().any(|(_, m)| *m == message) {
                out.push((offset_of_line_col(source, line, col), message));
            }
        }
        if out.len() > 1 {
            out.retain(|(_, m)| !m.contains("error recovery attempt limit"));
        }
        out
    })?;
    let problems = check(&program);
    if problems.is_empty() {
        Ok(program)
    } else {
        Err(problems
            .into_iter()
            .map(|(at, m)| (byte_offset(source, at.start), m))
            .collect())
    }
}

/// The parser's words without the debug dump of its error type around them.
fn parser_message(msg: &str) -> String {
    match msg.split_once("msg: \"") {
        Some((head, rest)) => {
            let inner = rest.split_once('"').map_or(rest, |(m, _)| m);
            let head = head.split_once(':').map_or("", |(h, _)| h);
            if head.is_empty() {
                inner.to_string()
            } else {
                format!("{head}: {inner}")
            }
        }
        None => msg.to_string(),
    }
}

/// Everything wrong with a compiled program that compiling did not say, each with the
/// characters it is about.
pub fn check(program: &cel::Program) -> Vec<(Range<usize>, String)> {
    let info = program.source_info();
    let at = |e: &IdedExpr| {
        info.offset_for(e.id)
            .map_or(0..1, |(a, b)| a as usize..(b as usize).max(a as usize + 1))
    };
    let source: Vec<char> = info.source.chars().collect();
    let mut problems = Vec::new();
    // Iterative, so a condition nested far too deep is measured without recursing.
    let mut stack: Vec<(&IdedExpr, usize)> = vec![(program.expression(), 1)];
    let mut too_deep = false;
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            if !too_deep {
                problems.push((
                    at(e),
                    format!(
                        "condition nested more than {MAX_DEPTH} levels deep (a long chain of \
                         operators counts a level each): split it over several rules"
                    ),
                ));
                too_deep = true;
            }
            continue;
        }
        if let Expr::Call(call) = &e.expr {
            if let Some(problem) = check_call(call) {
                problems.push((named(&source, at(e), &call.func_name), problem));
            }
        }
        for child in children(e) {
            stack.push((child, depth + 1));
        }
    }
    problems.sort_by_key(|(r, _)| r.start);
    problems
}

/// A call's place is its bracket; the function's name just before it is where a person
/// looks.
fn named(source: &[char], at: Range<usize>, name: &str) -> Range<usize> {
    let name: Vec<char> = name.chars().collect();
    let mut end = at.start;
    while end > 0 && source.get(end - 1).is_some_and(|c| c.is_whitespace()) {
        end -= 1;
    }
    match end.checked_sub(name.len()) {
        Some(start) if source.get(start..end) == Some(&name[..]) => start..end,
        _ => at,
    }
}

fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Call(c) => c.target.as_deref().into_iter().chain(&c.args).collect(),
        Expr::Select(s) => vec![&s.operand],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

fn entries(list: &[cel::common::ast::IdedEntryExpr]) -> Vec<&IdedExpr> {
    list.iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}

/// A call to a function that does not exist, or `matches` with a bad regex literal.
fn check_call(call: &cel::common::ast::CallExpr) -> Option<String> {
    let name = call.func_name.as_str();
    // Operators (`_+_`, `!_`, `@in`, `_[_]`) are the parser's own.
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    if name == "matches" {
        if let Some(Expr::Literal(LiteralValue::String(p))) = call.args.last().map(|a| &a.expr) {
            if let Err(e) = build_regex(p.inner()) {
                return Some(format!("matches(): {e}"));
            }
        }
    }
    let qualified = call.target.as_deref().and_then(qualified_name);
    let known = match &call.target {
        None => function_exists(name, false),
        Some(_) => {
            function_exists(name, true)
                || qualified.is_some_and(|q| function_exists(&format!("{q}.{name}"), false))
        }
    };
    (!known).then(|| match &call.target {
        None => {
            format!("no function `{name}()` in CEL (see docs/configuration.md for those there are)")
        }
        Some(_) => {
            format!("no method `.{name}()` in CEL (see docs/configuration.md for those there are)")
        }
    })
}

/// `a.b.c` written as a name, for a call such as `optional.of(x)`.
fn qualified_name(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(n) => Some(n.clone()),
        Expr::Select(s) => Some(format!("{}.{}", qualified_name(&s.operand)?, s.field)),
        _ => None,
    }
}

/// Whether the environment declares a function of that name (a member function when
/// `member`). The crate says so only by calling it: a declared function called with no
/// arguments fails on its arguments, an undeclared one as undeclared. The probe has no
/// variables, so any undeclared reference is the function.
fn function_exists(name: &str, member: bool) -> bool {
    static KNOWN: OnceLock<Mutex<HashMap<(String, bool), bool>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    let key = (name.to_string(), member);
    if let Some(&k) = known.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return k;
    }
    let probe = if member {
        format!("''.{name}()")
    } else {
        format!("{name}()")
    };
    let exists = match env().compile(&probe) {
        Ok(p) => {
            let ctx = cel::Context::with_env(env());
            // `a.b.f()` that names no function evaluates `a`, which is undeclared too.
            !matches!(
                p.execute(&ctx),
                Err(cel::ExecutionError::UndeclaredReference(_))
            )
        }
        Err(_) => false,
    };
    known
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, exists);
    exists
}

/// The byte offset of the `chars`-th character.
fn byte_offset(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(b, _)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<String> {
        let program = env().compile(src).unwrap();
        check(&program).into_iter().map(|(_, m)| m).collect()
    }

    #[test]
    fn standard_functions_pass_and_unknown_ones_are_named() {
        assert!(problems("path.matches('^/srv/.*\\\\.log$') && size(path) > 1").is_empty());
        assert!(problems("timestamp(time) > timestamp('2026-01-01T00:00:00Z')").is_empty());
        assert!(problems("duration('1h') > duration('5m') && int(x) > 0").is_empty());
        assert!(problems("[1].exists(v, v > 0) && has(m.a) && path.startsWith('/')").is_empty());
        assert!(problems("optional.of(1).hasValue()").is_empty());
        let p = problems("path.nosuchfn() || nosuch(1)");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("`.nosuchfn()`"), "{p:?}");
        assert!(p[1].contains("`nosuch()`"), "{p:?}");
    }

    #[test]
    fn a_bad_regex_literal_is_refused() {
        let p = problems("path.matches('([')");
        assert!(p[0].contains("not a valid regex"), "{p:?}");
    }

    #[test]
    fn matches_works_and_compiles_each_pattern_once() {
        let program = env().compile("path.matches('^/srv/.*\\\\.log$')").unwrap();
        let mut ctx = cel::Context::with_env(env());
        ctx.add_variable_from_value("path", "/srv/a.log");
        assert_eq!(program.execute(&ctx), Ok(cel::Value::Bool(true)));
        let a = compiled("^x$").unwrap();
        let b = compiled("^x$").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_long_chain_is_refused_however_it_nests() {
        let chain = vec!["1"; MAX_DEPTH + 5].join(" + ") + " > 0";
        let p = problems(&chain);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("nested more than"), "{p:?}");
        let fine = vec!["1"; MAX_DEPTH - 5].join(" + ") + " > 0";
        assert!(problems(&fine).is_empty());
    }
}
