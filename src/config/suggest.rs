//! "Did you mean": a defined name one or two edits from one that is not, within a budget
//! over the whole load.

/// How many names "did you mean" compares, over a whole load: 20,000 undefined names among
/// 20,000 defined ones would otherwise be 400 million comparisons (minutes). Past it, errors
/// come without a suggestion.
pub(crate) const SUGGEST_BUDGET: usize = 2_000_000;

/// ", did you mean `x`?" when a defined name is one or two edits away.
pub(crate) fn suggest<'a>(
    name: &str,
    known: impl Iterator<Item = &'a String>,
    budget: &mut usize,
) -> String {
    let mut best: Option<(usize, &String)> = None;
    for k in known {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        if name.len().abs_diff(k.len()) > 2 {
            continue;
        }
        if let Some(d) = edit_distance_within(name, k, 2) {
            if best.is_none_or(|(b, bk)| (d, k) < (b, bk)) {
                best = Some((d, k));
            }
        }
    }
    best.map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

/// The edit distance of `a` and `b` when it is at most `max`.
fn edit_distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        if cur.iter().min().is_some_and(|m| *m > max) {
            return None;
        }
        prev = cur;
    }
    Some(prev[b.len()]).filter(|d| *d <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_a_near_name_and_stops_at_its_budget() {
        let known: Vec<String> = (0..1000).map(|i| format!("watch_{i:04}")).collect();
        let mut budget = SUGGEST_BUDGET;
        assert_eq!(
            suggest("watch_0007x", known.iter(), &mut budget),
            " (did you mean `watch_0007`?)"
        );
        assert_eq!(budget, SUGGEST_BUDGET - 1000);
        // Regression: 20,000 undefined names among 20,000 took minutes; past the budget,
        // no more comparisons are made.
        let mut spent = 0;
        assert_eq!(suggest("watch_0007x", known.iter(), &mut spent), "");
        assert_eq!(edit_distance_within("kitten", "sitting", 2), None);
        assert_eq!(edit_distance_within("kitten", "sitten", 2), Some(1));
    }
}
