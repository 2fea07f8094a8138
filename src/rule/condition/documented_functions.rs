use super::*;
use serde_json::json;

/// Every function docs/configuration.md lists under "Functions", as written there.
#[test]
fn each_function_the_docs_list_works_as_shown() {
    let fields = json!({
        "path": "/etc/nginx/nginx.conf", "size": 120, "cpu_percent": 12.5,
        "tags": ["a", "b"], "json": {"status": "up"}, "line": "Failed password from 10.0.0.1",
        "time": "2026-12-07T03:04:05Z", "exists": true
    });
    let serde_json::Value::Object(map) = fields else {
        panic!()
    };
    for expr in [
        "size(path) == 21 && path.size() == 21 && size(tags) == 2",
        "path.contains('nginx') && path.startsWith('/etc') && path.endsWith('.conf')",
        "line.matches('from [0-9.]+$') && matches(line, 'Failed')",
        "'a' in tags && 'status' in json && has(json.status)",
        "tags.exists(t, t == 'b') && tags.all(t, size(t) == 1) && tags.exists_one(t, t == 'a')",
        "tags.map(t, t + '!') == ['a!', 'b!'] && tags.filter(t, t != 'a') == ['b']",
        "int('42') == 42 && double(size) == 120.0 && string(size) == '120' && uint(size) == 120u",
        "timestamp(time) > timestamp('2026-01-01T00:00:00Z') && duration('1h') > duration('5m')",
        "timestamp(time).getFullYear() == 2026 && timestamp(time).getHours() == 3",
        "timestamp(time).getMinutes() == 4 && timestamp(time).getSeconds() == 5",
        "timestamp(time).getMonth() == 11 && timestamp(time).getDayOfMonth() == 6",
        "timestamp(time).getDayOfWeek() == 1 && timestamp(time).getDayOfYear() == 340",
        "bytes('ab') == b'ab' && dyn(size) == 120",
        "type(size) == int && bool('true') && exists == true",
        "cpu_percent > 10 && size > 100.5",
    ] {
        let program = crate::config::cel_env()
            .compile(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e:?}"));
        assert_eq!(
            Evaluator::default().eval(&program, &cel_fields(&map)),
            Outcome::Match,
            "{expr}"
        );
    }
}
