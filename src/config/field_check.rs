//! A rule's condition held against the fields its watches' events carry: a name no event
//! has (`stauts`), or a field compared with a literal of another type (`status == "200"`),
//! would never match, silently; `validate` says so at the place in the condition.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};

use super::fields::{FieldType, Fields};
use super::suggest::{suggest, SUGGEST_BUDGET};

/// One finding: where in the condition's text (bytes) and what.
#[derive(Debug, PartialEq)]
pub struct Finding {
    pub at: usize,
    pub message: String,
}

/// What in `program` cannot match the events `watches` (their names) emit.
pub fn check(program: &cel::Program, fields: &Fields, watches: &str) -> Vec<Finding> {
    let info = program.source_info();
    let source = &info.source;
    let at = |id: u64| -> usize {
        let chars = info.offset_for(id).map_or(0, |(s, _)| s as usize);
        source
            .char_indices()
            .nth(chars)
            .map_or(source.len(), |(b, _)| b)
    };
    let mut out = Vec::new();
    let mut bound = Vec::new();
    walk(
        program.expression(),
        fields,
        watches,
        &mut bound,
        &at,
        &mut out,
    );
    out.sort_by_key(|f| f.at);
    out.dedup();
    out
}

fn walk(
    e: &IdedExpr,
    fields: &Fields,
    watches: &str,
    bound: &mut Vec<String>,
    at: &dyn Fn(u64) -> usize,
    out: &mut Vec<Finding>,
) {
    match &e.expr {
        Expr::Ident(name)
            if !bound.contains(name) && !fields.open && fields.get(name).is_none() =>
        {
            let names: Vec<String> = fields.known.iter().map(|(n, _)| n.clone()).collect();
            let mut budget = SUGGEST_BUDGET;
            out.push(Finding {
                at: at(e.id),
                message: format!(
                    "the events of {watches} have no field `{name}`{}: this condition never matches",
                    suggest(name, names.iter(), &mut budget)
                ),
            });
        }
        Expr::Select(s) => walk(&s.operand, fields, watches, bound, at, out),
        Expr::Call(c) => {
            if COMPARISONS.contains(&c.func_name.as_str()) && c.args.len() == 2 {
                compare(&c.args[0], &c.args[1], fields, bound, at, out);
                compare(&c.args[1], &c.args[0], fields, bound, at, out);
            }
            if let Some(t) = &c.target {
                walk(t, fields, watches, bound, at, out);
            }
            for a in &c.args {
                walk(a, fields, watches, bound, at, out);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, fields, watches, bound, at, out);
            let vars = [Some(&c.iter_var), c.iter_var2.as_ref(), Some(&c.accu_var)];
            let n = bound.len();
            bound.extend(vars.into_iter().flatten().cloned());
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                walk(part, fields, watches, bound, at, out);
            }
            bound.truncate(n);
        }
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, fields, watches, bound, at, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, fields, watches, bound, at, out);
                    walk(&me.value, fields, watches, bound, at, out);
                }
            }
        }
        _ => {}
    }
}

const COMPARISONS: &[&str] = &["_==_", "_!=_", "_<_", "_<=_", "_>_", "_>=_"];

/// `field OP literal` where the literal's type is not the field's.
fn compare(
    field: &IdedExpr,
    literal: &IdedExpr,
    fields: &Fields,
    bound: &[String],
    at: &dyn Fn(u64) -> usize,
    out: &mut Vec<Finding>,
) {
    let (Expr::Ident(name), Expr::Literal(lit)) = (&field.expr, &literal.expr) else {
        return;
    };
    if bound.contains(name) {
        return;
    }
    let Some(have) = fields.get(name) else {
        return;
    };
    let (given, written) = match lit {
        LiteralValue::Int(_) | LiteralValue::UInt(_) | LiteralValue::Double(_) => {
            (FieldType::Number, "a number")
        }
        LiteralValue::String(_) => (FieldType::String, "a string"),
        LiteralValue::Boolean(_) => (FieldType::Bool, "a bool"),
        _ => return,
    };
    if have == FieldType::Other || have == given {
        return;
    }
    let hint = match (have, given) {
        (FieldType::Number, FieldType::String) => " (write the number without quotes)",
        (FieldType::String, FieldType::Number) => " (write it in quotes)",
        (FieldType::Bool, _) => " (write true or false, without quotes)",
        _ => "",
    };
    out.push(Finding {
        at: at(literal.id),
        message: format!(
            "`{name}` is {}, compared with {written}: this comparison never holds{hint}",
            have.name()
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            known: vec![
                ("status".into(), FieldType::Number),
                ("body".into(), FieldType::String),
                ("ok".into(), FieldType::Bool),
                ("json".into(), FieldType::Other),
            ],
            open: false,
        }
    }

    fn findings(expr: &str) -> Vec<(usize, String)> {
        let p = cel::Program::compile(expr).unwrap();
        check(&p, &fields(), "watch `api`")
            .into_iter()
            .map(|f| (f.at, f.message))
            .collect()
    }

    #[test]
    fn a_mistyped_field_is_named_with_the_field_meant() {
        let f = findings("ok && stauts == 200");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, 6);
        assert!(
            f[0].1
                .contains("no field `stauts` (did you mean `status`?)"),
            "{f:?}"
        );
    }

    #[test]
    fn a_number_compared_with_a_string_is_refused_where_the_string_is() {
        let f = findings("status == \"200\" || \"up\" != status");
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].0, 10);
        assert!(
            f[0].1
                .contains("`status` is a number, compared with a string"),
            "{f:?}"
        );
        assert_eq!(f[1].0, 19);
    }

    #[test]
    fn loop_variables_json_paths_and_right_types_pass() {
        assert!(findings("[1, 2].exists(x, x == status) && json.a.b == 'x'").is_empty());
        assert!(findings("status >= 500.0 && body.contains('x') && ok == true").is_empty());
        assert!(findings("has(json.status) && {'a': status}.a == 1").is_empty());
    }

    #[test]
    fn an_open_set_of_fields_takes_any_name() {
        let p = cel::Program::compile("anything == 1").unwrap();
        let open = Fields {
            known: vec![],
            open: true,
        };
        assert!(check(&p, &open, "w").is_empty());
    }
}
