//! Name helpers: "did you mean" suggestions and readable lists.

/// Edit distance (Levenshtein) over characters, case-insensitive.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `name`, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let len = name.chars().count();
    // Very short names are too close to everything; only suggest a different case.
    let limit = if len <= 2 { 0 } else { (len / 3).clamp(1, 3) };
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, c)| *d <= limit && *c != name)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "`a`, `b`, `c`" (or "none").
pub(crate) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(did_you_mean("lowr", ["lower", "upper"]), Some("lower"));
        assert_eq!(
            did_you_mean("paymnts", ["payments", "orders"]),
            Some("payments")
        );
        assert_eq!(did_you_mean("zzz", ["payments", "orders"]), None);
        assert_eq!(did_you_mean("COUNT", ["count"]), Some("count"));
        assert_eq!(did_you_mean("c", ["a", "n"]), None);
        assert_eq!(did_you_mean("A", ["a", "n"]), Some("a"));
    }
}
