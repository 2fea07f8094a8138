//! `hark validate`: every error as FILE:LINE:COL, at the offending key or value.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/validate")
        .join(name)
}

/// Runs `hark validate` on the given files; returns (exit code, stdout, stderr).
fn validate(files: &[PathBuf]) -> (i32, String, String) {
    validate_with(files, None)
}

/// `hark validate` with systemd's credentials directory at `credentials`.
fn validate_with(files: &[PathBuf], credentials: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(HARK);
    cmd.arg("validate");
    if let Some(c) = credentials {
        cmd.env("CREDENTIALS_DIRECTORY", c);
    }
    for f in files {
        // Fixtures are copied into a private temp dir: a checkout's permissions are not ours to trust.
        cmd.arg("-c").arg(f);
    }
    let out = cmd.output().expect("run hark validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies fixtures into a fresh directory with safe permissions.
fn copied(dir: &tempfile::TempDir, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let to = dir.path().join(n);
            std::fs::copy(fixture(n), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
            to
        })
        .collect()
}

/// Asserts that `err` has, for each `(line, col, msg)`, an error of `file` there whose
/// message starts with `msg`.
fn assert_errors(err: &str, file: &Path, wants: &[(usize, usize, &str)]) {
    for (line, col, msg) in wants {
        let want = format!("{}:{line}:{col}: error: {msg}", file.display());
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "want {want} in:\n{err}"
        );
    }
}

/// Asserts that validating `name` fails with an error at `line:col` whose message contains `msg`.
fn assert_error_at(name: &str, line: usize, col: usize, msg: &str) {
    let dir = tempdir();
    let files = copied(&dir, &[name]);
    let (code, _, err) = validate(&files);
    assert_eq!(code, 1, "{err}");
    let want = format!("{}:{line}:{col}: error: ", files[0].display());
    let hit = err.lines().any(|l| l.starts_with(&want) && l.contains(msg));
    assert!(hit, "expected `{want}...{msg}` in:\n{err}");
}

#[test]
fn a_good_config_validates_with_a_one_line_summary() {
    let dir = tempdir();
    let files = copied(&dir, &["good.toml"]);
    let (code, out, err) = validate(&files);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "configuration ok: 1 file, 1 watch, 1 rule, 1 action"
    );
}

#[test]
fn toml_syntax_error_points_at_the_break() {
    assert_error_at("toml_syntax.toml", 3, 18, "TOML syntax");
}

#[test]
fn unknown_key_points_at_the_key() {
    assert_error_at("unknown_key.toml", 4, 1, "unknown key `recursiv` (did you mean `recursive`?); the keys here are `checksum`, `debounce`, `events`, `ignore`, `paths`, `recursive`");
}

#[test]
fn unknown_references_point_at_each_name() {
    assert_error_at(
        "unknown_reference.toml",
        6,
        9,
        "watch `log`, which is not defined (did you mean `logs`?)",
    );
    assert_error_at(
        "unknown_reference.toml",
        7,
        9,
        "action `nope`, which is not defined",
    );
}

#[test]
fn bad_cel_points_inside_the_condition() {
    // `size > > 3`: the second `>` is the 8th character of the expression, column 16 of the line.
    assert_error_at("bad_cel.toml", 7, 16, "invalid CEL condition");
}

#[test]
fn bad_duration_points_at_the_value() {
    assert_error_at(
        "bad_duration.toml",
        4,
        12,
        "invalid duration \"10 parsecs\"",
    );
}

#[test]
fn bad_template_points_inside_the_string() {
    // `{{ event.path }`: the stray `}` is where the template breaks.
    assert_error_at("bad_template.toml", 3, 40, "invalid template");
}

#[test]
fn bad_glob_points_at_the_path() {
    assert_error_at("bad_glob.toml", 3, 10, "invalid glob");
}

#[test]
fn a_duplicate_name_across_files_names_both_places() {
    let dir = tempdir();
    let files = copied(&dir, &["dup_one.toml", "dup_two.toml"]);
    let (code, _, err) = validate(&files);
    assert_eq!(code, 1);
    let want = format!(
        "{}:2:8: error: watch `shared` is defined twice: first at {}:1:8, again here",
        files[1].display(),
        files[0].display()
    );
    assert!(err.contains(&want), "expected {want:?} in:\n{err}");
}

#[test]
fn a_directory_of_files_is_loaded_in_name_order() {
    let dir = tempdir();
    copied(&dir, &["dup_two.toml", "dup_one.toml"]);
    let (code, _, err) = validate(&[dir.path().to_path_buf()]);
    assert_eq!(code, 1);
    // dup_one sorts first, so the error is reported in dup_two.
    assert!(
        err.contains("dup_two.toml:2:8: error: watch `shared` is defined twice"),
        "{err}"
    );
}

#[test]
fn a_file_others_can_write_is_refused() {
    let dir = tempdir();
    let files = copied(&dir, &["good.toml"]);
    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = validate(&files);
    assert_eq!(code, 1);
    let want = format!(
        "{}:1:1: error: refusing a config file that group or others can write (mode 0666)",
        files[0].display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn every_error_is_reported_at_once() {
    let dir = tempdir();
    let files = copied(&dir, &["several.toml"]);
    let (code, _, err) = validate(&files);
    assert_eq!(code, 1);
    let f = files[0].display().to_string();
    for (line, col, msg) in [
        (4, 12, "invalid duration \"soon\""),
        (8, 17, "invalid CEL condition"),
        (9, 12, "invalid duration \"forever\""),
        // Not hidden behind the rule's own errors.
        (10, 9, "names action `missing`, which is not defined"),
        (14, 15, "templates are not expanded in `shell`"),
    ] {
        let want = format!("{f}:{line}:{col}: error: ");
        assert!(
            err.lines().any(|l| l.starts_with(&want) && l.contains(msg)),
            "expected `{want}{msg}` in:\n{err}"
        );
    }
    assert!(err.contains("5 errors found"), "{err}");
}

#[test]
fn a_reference_to_an_item_with_its_own_error_is_not_reported_again() {
    let dir = tempdir();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        "[watch.w]\ntype = \"file\"\npaths = [\"/tmp/x\"]\ndebounce = \"nope\"\n\n[rule.r]\nwatch = \"w\"\n",
    )
    .unwrap();
    let (code, _, err) = validate(&[f]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid duration"), "{err}");
    assert!(!err.contains("not defined"), "a cascading error: {err}");
    assert!(err.contains("1 error found"), "{err}");
}

/// Every complete TOML example in the README and docs/, and the example rules, validate:
/// an example in the docs is a test.
#[test]
fn the_examples_in_the_docs_and_rules_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for doc in ["README.md", "docs/configuration.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (i, block) in text.split("```toml\n").skip(1).enumerate() {
            let body = block.split("```").next().unwrap();
            let dir = tempdir();
            let f = dir.path().join(format!("example{i}.toml"));
            std::fs::write(&f, body).unwrap();
            supply_what_it_names(dir.path(), body);
            let (code, _, err) = validate_with(&[f], Some(&dir.path().join("credentials")));
            assert_eq!(
                code, 0,
                "example {i} of {doc} does not validate:\n{body}\n{err}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the docs lost their examples");
    let (code, _, err) = validate(&[root.join("rules")]);
    assert_eq!(code, 0, "rules/ does not validate:\n{err}");
}

/// What an example expects the reader to have: each `${credential:NAME}` it names (a
/// token in the credentials directory) and its `tls_cert`/`tls_key` (a certificate for
/// localhost made here), relative to `dir`.
fn supply_what_it_names(dir: &Path, body: &str) {
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    for part in body.split("${credential:").skip(1) {
        let name = part.split('}').next().unwrap();
        // Each as the service that issues it shapes it.
        let value = match name {
            n if n.contains("telegram") => "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            n if n.contains("webhook") => "https://hooks.example.org/services/T0/B0/x",
            n if n.contains("pushover") => "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
            _ => "0123456789abcdef0123456789abcdef",
        };
        std::fs::write(creds.join(name), format!("{value}\n")).unwrap();
    }
    let value = |key: &str| {
        body.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(key)?
                    .trim()
                    .strip_prefix('=')?
                    .trim()
                    .strip_prefix('"')?
                    .strip_suffix('"')
            })
            .map(|v| dir.join(v))
    };
    if let (Some(cert), Some(key)) = (value("tls_cert"), value("tls_key")) {
        let made = crate::pki::server(dir, "docs-example", -1, 30);
        std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        std::fs::copy(&made.cert, cert).unwrap();
        std::fs::copy(&made.key, key).unwrap();
    }
}

#[test]
fn http_watch_errors_point_at_each_bad_value() {
    assert_error_at("bad_http.toml", 3, 7, "unsupported URL scheme `ftp`");
    assert_error_at("bad_http.toml", 4, 10, "invalid HTTP method");
    assert_error_at("bad_http.toml", 5, 9, "`every` must be longer than zero");
    assert_error_at("bad_http.toml", 6, 12, "invalid size \"lots\"");
    assert_error_at("bad_http.toml", 7, 20, "follow_redirects must be");
    assert_error_at("bad_http.toml", 8, 25, "invalid value for header `X-Token`");
}

#[test]
fn state_keys_on_a_rule_over_file_watches_only_are_refused() {
    assert_error_at(
        "state_on_file.toml",
        7,
        9,
        "`times` applies to state watches",
    );
}

#[test]
fn thresholds_that_contradict_each_other_are_refused() {
    assert_error_at(
        "threshold_conflicts.toml",
        8,
        7,
        "`for` and `times` cannot be combined",
    );
    assert_error_at("threshold_conflicts.toml", 12, 10, "`within` needs `times`");
}

#[test]
fn process_tcp_and_command_errors_point_at_each_bad_value() {
    assert_error_at(
        "bad_checks.toml",
        1,
        1,
        "a process watch needs one of `name`",
    );
    assert_error_at("bad_checks.toml", 8, 11, "`pidfile` names one process");
    assert_error_at("bad_checks.toml", 12, 11, "invalid regex: unclosed group");
    assert_error_at("bad_checks.toml", 16, 11, "invalid address \"localhost\"");
    assert_error_at("bad_checks.toml", 20, 11, "`command` is empty");
    assert_error_at("bad_checks.toml", 21, 9, "`every` must be longer than zero");
}

#[test]
fn webhook_errors_name_the_secret_reference_never_a_value() {
    assert_error_at(
        "bad_webhook.toml",
        3,
        7,
        "`${env:HARK_TEST_SURELY_UNSET_VARIABLE}` does not resolve",
    );
    assert_error_at(
        "bad_webhook.toml",
        4,
        29,
        "`${file:/nonexistent/hark/token}` does not resolve",
    );
    assert_error_at(
        "bad_webhook.toml",
        6,
        8,
        "give either `json` or `body`, not both",
    );
    assert_error_at("bad_webhook.toml", 7, 9, "`retry` is the most attempts");
}

#[test]
fn alertmanager_and_label_errors_point_at_each_bad_value() {
    let f = "bad_alertmanager.toml";
    assert_error_at(
        f,
        3,
        7,
        "an Alertmanager `url` must be an http:// or https:// URL",
    );
    assert_error_at(f, 4, 17, "the `summary` annotation is the rule's `summary`");
    assert_error_at(f, 4, 46, "invalid template");
    assert_error_at(f, 8, 7, "give either `url`");
    assert_error_at(f, 11, 1, "needs `url`");
    assert_error_at(f, 13, 10, "`resend` must be longer than zero");
    assert_error_at(f, 22, 12, "invalid label name \"team-name\"");
    assert_error_at(f, 22, 33, "the `alertname` label is set by hark");
}

#[test]
fn broker_action_errors_point_at_each_bad_value() {
    assert_error_at("bad_brokers.toml", 4, 24, "invalid template");
    assert_error_at(
        "bad_brokers.toml",
        10,
        7,
        "hark publishes at `qos = 1` only",
    );
    assert_error_at(
        "bad_brokers.toml",
        14,
        7,
        "`url` must be a URL like nats://127.0.0.1:4222",
    );
    assert_error_at("bad_brokers.toml", 15, 11, "`subject` must not be empty");
    assert_error_at("bad_brokers.toml", 20, 1, "unknown key `topic`");
    assert_error_at("bad_brokers.toml", 26, 6, "`ca` has no use without TLS");
    assert_error_at("bad_brokers.toml", 32, 6, "`ca`: cannot read");
    assert_error_at("bad_brokers.toml", 38, 6, "not a regular file");
}

#[test]
fn email_action_errors_point_at_each_bad_value() {
    let f = "bad_email.toml";
    assert_error_at(f, 3, 8, "`smtp` must be a URL like smtp+starttls://");
    assert_error_at(f, 4, 8, "is not a mail address");
    assert_error_at(f, 5, 6, "`to` must name at least one address");
    assert_error_at(f, 6, 15, "invalid template");
    assert_error_at(f, 7, 12, "`username` and `password` go together");
    assert_error_at(f, 11, 8, "not in the URL");
    assert_error_at(f, 17, 8, "a password is not sent over plain smtp://");
}

#[test]
fn journal_and_group_keys_are_checked_with_their_places() {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    std::fs::write(
        &file,
        "[watch.j]\ntype = \"journal\"\nunits = [\"ssh.service\"]\n\
         match = { syslog_identifier = \"sshd\", _SYSTEMD_UNIT = \"x\" }\n\
         priority = \"loud\"\npattern = 'from (?P<ip>[0-9.+)'\n\n\
         [rule.r]\nwatch = \"j\"\ngroup_by = [\"ip\"]\ndebounce = \"1s\"\n",
    )
    .unwrap();
    let (code, _, err) = validate(&[file]);
    assert_eq!(code, 1, "{err}");
    for (at, what) in [
        ("hark.toml:4:11:", "not a journal field name"),
        ("hark.toml:4:39:", "chosen by `units`"),
        ("hark.toml:5:12:", "a priority is 0 to 7"),
        ("hark.toml:6:24:", "invalid regex"),
        (
            "hark.toml:11:12:",
            "`debounce` does not combine with `group_by`",
        ),
    ] {
        assert!(
            err.lines().any(|l| l.contains(at) && l.contains(what)),
            "{at} {what}:\n{err}"
        );
    }
}

#[test]
fn unit_watch_and_systemd_action_keys_are_checked_with_their_places() {
    let dir = tempdir();
    let file = dir.path().join("hark.toml");
    std::fs::write(
        &file,
        "[watch.u]\ntype = \"unit\"\nunits = [\"nginx.service\", \"bad unit\", \"[x\"]\n\n\
         [watch.none]\ntype = \"unit\"\nunits = []\n\n\
         [rule.r]\nwatch = \"u\"\nwhen = 'active_state == \"failed\"'\nthen = [\"fix\", \"fix2\"]\n\n\
         [action.fix]\ntype = \"systemd\"\nunit = \"{{ event.unit \"\nverb = \"bounce\"\n\n\
         [action.fix2]\ntype = \"systemd\"\nverb = \"restart\"\n",
    )
    .unwrap();
    let (code, _, err) = validate(&[file]);
    assert_eq!(code, 1, "{err}");
    for (at, what) in [
        ("hark.toml:3:27:", "is not a unit name"),
        ("hark.toml:3:39:", "invalid glob"),
        ("hark.toml:7:9:", "`units` is empty"),
        ("hark.toml:16:18:", "invalid template"),
        ("hark.toml:17:8:", "unknown verb"),
        ("hark.toml:19:1:", "missing field `unit`"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(at) && l.contains(what)),
            "{at} {what}:\n{err}"
        );
    }

    // A good one validates without a bus, and a rule over it keeps one state per unit.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[watch.u]\ntype = \"unit\"\nunits = [\"nginx.service\", \"*.timer\"]\n\n\
         [rule.r]\nwatch = \"u\"\nwhen = 'active_state == \"failed\"'\nthen = [\"fix\"]\n\n\
         [action.fix]\ntype = \"systemd\"\nunit = \"{{ event.unit }}\"\nverb = \"try-restart\"\n",
    )
    .unwrap();
    let (code, out, err) = validate(&[good]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_client_command_whose_reader_hangs_up_ends_quietly() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // A pipe of one page, so the completions (24 KB) do not fit: hark is still writing
    // when its reader takes a few bytes and goes, as `| head` does.
    let (mut reader, writer) = std::io::pipe().unwrap();
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let child = Command::new(HARK)
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run hark completions");
    let mut first = [0u8; 16];
    reader.read_exact(&mut first).unwrap();
    drop(reader);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn twenty_thousand_errors_of_one_file_are_all_reported_each_at_its_line() {
    let dir = tempdir();
    let mut text = String::from("[watch.w]\ntype = \"file\"\npaths = [\"/tmp/x\"]\n\n");
    for i in 0..20_000 {
        text.push_str(&format!("[rule.r{i}]\nwatch = \"nope{i}\"\n\n"));
    }
    let file = dir.path().join("many.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(HARK)
        .args(["validate", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let located: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(
        located.len(),
        20_000,
        "{}",
        &err[err.len().saturating_sub(500)..]
    );
    // The last rule's `watch` is on line 4 + 3 * 19,999 + 2.
    let f = file.display();
    assert!(
        located
            .iter()
            .any(|l| l.starts_with(&format!("{f}:60003:9: error: "))),
        "{}",
        located[19_999]
    );
}

#[test]
fn a_file_with_independent_mistakes_is_reported_whole_in_one_run() {
    let dir = tempdir();
    let files = copied(&dir, &["six_mistakes.toml"]);
    let (code, _, err) = validate(&files);
    assert_eq!(code, 1, "{err}");
    assert_errors(
        &err,
        &files[0],
        &[
            (5, 1, "unknown key `evry` (did you mean `every`?); the keys here are `body`, `every`, `follow_redirects`, `headers`,"),
            (6, 11, "expected a string in quotes"),
            (14, 17, "invalid CEL condition"),
            (15, 9, "expected a whole number, like 3, not string \"3\""),
            (16, 9, "rule `r` names action `nope`, which is not defined"),
            (17, 15, "invalid template"),
            (21, 10, "`repeat` applies to state watches"),
            (26, 11, "expected a list, like [\"a\", \"b\"], not string \"true\""),
        ],
    );
    assert!(err.contains("8 errors found"), "{err}");
}

#[test]
fn a_mistyped_field_and_a_comparison_across_types_are_refused_at_their_column() {
    let dir = tempdir();
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "[watch.api]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/\"\n\n\
         [rule.a]\nwatch = \"api\"\nwhen = 'stauts == 200'\n\n\
         [rule.b]\nwatch = \"api\"\nwhen = 'ok && status == \"200\"'\n\n\
         [watch.auth]\ntype = \"log\"\npaths = [\"/var/log/auth.log\"]\npattern = 'from (?P<ip>\\S+)'\n\n\
         [rule.c]\nwatch = \"auth\"\nwhen = 'ip == \"10.0.0.1\" && line.contains(\"x\")'\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = validate(std::slice::from_ref(&file));
    assert_eq!(code, 1, "{err}");
    assert_errors(
        &err,
        &file,
        &[
            (7, 9, "the events of watch `api` have no field `stauts` (did you mean `status`?)"),
            (11, 25, "`status` is a number, compared with a string: this comparison never holds (write the number without quotes)"),
        ],
    );
    // The log pattern's groups are fields: rule c is fine.
    assert!(err.contains("2 errors found"), "{err}");
}

/// A pattern group named as a field every event has (`host`, the machine's name) would be
/// hidden by it: every line grouped under one host. Refused where the group is named.
#[test]
fn a_pattern_group_hidden_by_a_field_of_the_event_is_refused() {
    let hides = "has the name of a field every event of this watch carries";
    assert_error_at(
        "shadowed_group.toml",
        4,
        31,
        &format!("the group `host` {hides}"),
    );
    assert_error_at(
        "shadowed_group.toml",
        8,
        21,
        &format!("the group `unit` {hides}"),
    );
}

#[test]
fn dns_watch_errors_point_at_each_bad_value() {
    let f = "bad_dns.toml";
    assert_error_at(f, 3, 8, "invalid name \"exa mple..org\"");
    assert_error_at(
        f,
        4,
        10,
        "unknown record type \"AXFR\" (expected one of: A, AAAA,",
    );
    assert_error_at(
        f,
        5,
        12,
        "invalid server \"ns1.example.org\": write an IP address",
    );
    assert_error_at(f, 5, 31, "invalid server \"127.0.0.1:0\"");
}

#[test]
fn certificate_watch_errors_point_at_each_bad_value() {
    let f = "bad_certificate.toml";
    assert_error_at(f, 4, 7, "`key` belongs to one certificate");
    assert_error_at(f, 8, 11, "invalid address \"mail.example.org\"");
    assert_error_at(f, 9, 12, "unknown `starttls` \"lmtp\"");
    assert_error_at(
        f,
        11,
        1,
        "`paths` (certificate files) or `address` (a TLS endpoint), not both",
    );
}

#[test]
fn container_watch_errors_point_at_each_bad_value() {
    let f = "bad_container.toml";
    assert_error_at(f, 3, 10, "`socket` is the path of the API's unix socket");
    assert_error_at(f, 4, 10, "invalid glob \"web-[a\" in `names`");
    assert_error_at(f, 5, 11, "a label is `key` or `key=value`");
    assert_error_at(f, 6, 18, "unknown container event \"exploded\"");
}

#[test]
fn ping_watch_errors_point_at_each_bad_value() {
    let f = "bad_ping.toml";
    assert_error_at(f, 3, 8, "invalid host \"192.0.2.1:80\"");
    assert_error_at(f, 4, 9, "`count` is probes a round, 1 to 100");
    assert_error_at(f, 5, 12, "`interval` is at least 10ms");
    assert_error_at(f, 12, 9, "takes 10s: `every` must be longer");
}

#[test]
fn listener_token_push_and_maintenance_errors_point_at_each_bad_value() {
    let f = "bad_listener.toml";
    assert_error_at(f, 3, 12, "`tls_cert` and `tls_key` go together");
    assert_error_at(f, 5, 25, "not \"everything\"");
    assert_error_at(f, 8, 14, "user `prometheus`: not a bcrypt hash");
    assert_error_at(f, 11, 10, "a token is at least 16 printable characters");
    assert_error_at(f, 12, 19, "unknown scope \"admin\"");
    assert_error_at(f, 13, 14, "`rate_limit` is requests a second");
    assert_error_at(f, 18, 12, "`max_body` is at most 16MiB");
    assert_error_at(f, 27, 12, "windows would overlap");
    assert_error_at(f, 32, 9, "`until` must be after `from`");
    assert_error_at(
        f,
        35,
        1,
        "maintenance `neither` needs `schedule` and `duration`",
    );
    let g = "bad_maintenance_rule.toml";
    assert_error_at(
        g,
        10,
        10,
        "names rule `job_faild`, which is not defined (did you mean `job_failed`?)",
    );
    assert_error_at(g, 16, 10, "names rule `job_faild`");
}

#[test]
fn a_notify_key_of_the_wrong_shape_is_an_error_at_its_place_naming_no_value() {
    let f = "bad_notify.toml";
    assert_error_at(f, 4, 9, "`token` of telegram: not the bot's token");
    assert_error_at(f, 5, 11, "`chat_id` of telegram");
    assert_error_at(
        f,
        10,
        15,
        "`routing_key` of pagerduty: not an integration's routing key",
    );
    assert_error_at(f, 11, 7, "`url` is not a key of `service = \"pagerduty\"`");
    assert_error_at(
        f,
        15,
        11,
        "unknown service \"slak\" (did you mean `slack`?)",
    );
    assert_error_at(f, 20, 11, "needs `api_url`");
    assert_error_at(f, 22, 8, "`room` of matrix");
    assert_error_at(f, 25, 7, "`url` is where people reach the status page");
    let dir = tempdir();
    let files = copied(&dir, &[f]);
    let (_, _, err) = validate(&files);
    // The messages name no value (the excerpt under each shows the line as written, as
    // for every error; a secret written there as a reference shows as the reference).
    let messages: Vec<&str> = err.lines().filter(|l| l.contains(": error: ")).collect();
    for secret in [
        "1234567890abcdefghijklmnopqrstuvwxyz",
        "syt_abc",
        "ops room",
    ] {
        assert!(messages.iter().all(|m| !m.contains(secret)), "{messages:?}");
    }
}

#[test]
fn two_tokens_with_one_secret_are_refused() {
    assert_error_at(
        "shared_secret.toml",
        5,
        8,
        "push watch `job` has the same secret as token `ci`: give each its own",
    );
}
