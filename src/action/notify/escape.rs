//! Text made safe for each service: nothing an event field holds can format, mention,
//! link or inject. Control characters go (but newlines and tabs); text is cut to a
//! length, at a character boundary, with a marker, never refused for length.

/// Marks where text was cut.
pub const CUT: &str = "…[cut]";

/// Control characters (but `\n` and `\t`) removed; invalid UTF-8 was replaced already.
pub fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

/// At most `max` characters, the last ones being `CUT` when it was longer.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(CUT.chars().count());
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    format!("{}{CUT}", &s[..end])
}

/// `s` cleaned, each character written by `write`.
fn each(s: &str, write: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).chars() {
        write(c, &mut out);
    }
    out
}

/// Slack's mrkdwn: `&`, `<`, `>` as entities (so `<!channel>` and `<url|text>` are
/// text), and the formatting characters behind a zero-width space so they stay as
/// written.
pub fn slack(s: &str) -> String {
    each(s, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '*' | '_' | '~' | '`' => {
            out.push('\u{200b}');
            out.push(c);
        }
        c => out.push(c),
    })
}

/// HTML text (Telegram's HTML parse mode, Matrix's `formatted_body`, Pushover's html).
pub fn html(s: &str) -> String {
    each(s, |c, out| match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        c => out.push(c),
    })
}

/// Markdown (Discord, Teams' Adaptive Cards, ntfy with markdown): each character that
/// formats behind a backslash, and `@` behind a zero-width space so no mention is
/// written even where a service would parse one.
pub fn markdown(s: &str) -> String {
    each(s, |c, out| match c {
        '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']' | '(' | ')' | '-' | '+'
        | '!' | '<' => {
            out.push('\\');
            out.push(c);
        }
        '@' => out.push_str("@\u{200b}"),
        c => out.push(c),
    })
}

/// Markdown where backslashes would show (Teams' Adaptive Cards): a zero-width space
/// after each character that could start formatting, a link, a heading or a mention,
/// so none is parsed and nothing visible is added.
pub fn defang(s: &str) -> String {
    each(s, |c, out| {
        out.push(c);
        if matches!(c, '*' | '_' | '~' | '`' | ']' | '#' | '@' | '<' | '>' | '[') {
            out.push('\u{200b}');
        }
    })
}

/// Plain text for services that render none (ntfy, Gotify, PagerDuty, Opsgenie):
/// control characters removed.
pub fn plain(s: &str) -> String {
    clean(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mentions_links_and_tags_are_text() {
        assert_eq!(
            slack("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
        assert_eq!(
            html("</b><a href=\"x\">"),
            "&lt;/b&gt;&lt;a href=&quot;x&quot;&gt;"
        );
        assert!(!markdown("@everyone").contains("@everyone"));
        assert!(!defang("[a](http://x) @team **b**").contains("]("));
        assert_eq!(
            markdown("**bold** [a](b)"),
            "\\*\\*bold\\*\\* \\[a\\]\\(b\\)"
        );
        assert_eq!(clean("a\u{0}b\u{1b}[31mc\nd"), "ab[31mc\nd");
    }

    #[test]
    fn text_is_cut_at_a_character_with_a_marker() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(5000);
        let c = cut(&long, 4096);
        assert_eq!(c.chars().count(), 4096);
        assert!(c.ends_with(CUT));
    }

    proptest! {
        #[test]
        fn no_escaped_text_holds_what_would_format(s in "\\PC*") {
            let h = html(&s);
            prop_assert!(!h.contains('<') && !h.contains('>'));
            let sl = slack(&s);
            prop_assert!(!sl.contains('<') && !sl.contains('>'));
            prop_assert!(!markdown(&s).contains("@everyone"));
            for max in [20usize, 100] {
                prop_assert!(cut(&s, max).chars().count() <= max);
            }
        }
    }
}
