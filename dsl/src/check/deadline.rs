//! Rules that can only be decided at their WITHIN deadline (docs/language.md "Time on a
//! quiet stream"): a greedy, unbounded quantifier over a variable with no DEFINE (so it
//! accepts every row, the rows of what follows it included) keeps a longer match possible
//! until the deadline. `weir run` decides at the end of input, so an analyst testing
//! offline sees the match at once; live it comes only at the deadline. The warning names
//! the reluctant form, which ends the match as soon as what follows matches.

use crate::ast::{CreateRule, Pattern};
use crate::error::Diagnostic;

pub(super) fn deadline_warnings(r: &CreateRule, diags: &mut Vec<Diagnostic>) {
    let Some(within) = &r.within else { return };
    // Only what something follows: a greedy tail (`a hit{2,}`) that grows until the
    // deadline is what it says (every row in the window), decided at the deadline by
    // design.
    walk(&r.pattern, &mut |seq| {
        let Pattern::Seq(xs) = seq else { return };
        for p in xs.iter().take(xs.len().saturating_sub(1)) {
            greedy_undefined(r, within.millis, p, diags);
        }
    });
}

fn greedy_undefined(r: &CreateRule, within_ms: u64, p: &Pattern, diags: &mut Vec<Diagnostic>) {
    let undefined = |v: &str| !r.define.iter().any(|d| d.var.name == v);
    {
        let Pattern::Repeat {
            inner,
            min,
            max: None,
            greedy: true,
            span,
        } = p
        else {
            return;
        };
        let Pattern::Var(v) = &**inner else { return };
        if !undefined(&v.name) {
            return;
        }
        let q = match min {
            0 => "*".to_string(),
            1 => "+".to_string(),
            n => format!("{{{n},}}"),
        };
        diags.push(Diagnostic::warning(
            *span,
            format!(
                "rule `{}`: `{v}{q}` is greedy and `{v}` has no DEFINE, so it also accepts the rows of what follows it: a longer match stays possible until the WITHIN deadline ({} ms after the first row), and `weir serve` can emit the match only then (`weir run` decides at the end of input); for the shortest match, write the reluctant form `{v}{q}?`",
                r.name.name, within_ms,
                v = v.name
            ),
        ));
    }
}

fn walk(p: &Pattern, f: &mut impl FnMut(&Pattern)) {
    f(p);
    match p {
        Pattern::Seq(xs) | Pattern::FollowedBy(xs) | Pattern::Alt(xs) => {
            xs.iter().for_each(|x| walk(x, f))
        }
        Pattern::Exclude(x) | Pattern::Repeat { inner: x, .. } => walk(x, f),
        Pattern::Var(_) | Pattern::Absent(_) | Pattern::Anchor { .. } => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::check::Catalog;

    fn warnings(rule: &str) -> Vec<String> {
        let text = format!(
            "CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP) WITH (event_time = 'ts', key = 'card');\n{rule}"
        );
        let mut c = Catalog::new();
        c.check_source(&text)
            .into_iter()
            .filter(|d| !d.is_error() && d.message.contains("WITHIN deadline"))
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn greedy_undefined_variables_are_decided_at_the_deadline() {
        let w = warnings(
            "CREATE RULE fraud AS FROM pay PARTITION BY card PATTERN (n{3,} s) WITHIN 1 DAY DEFINE s AS amount > 500;",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("`n{3,}?`"), "{}", w[0]);
        let w = warnings(
            "CREATE RULE r AS FROM pay PARTITION BY card PATTERN (a x* b) WITHIN 1 MINUTE DEFINE a AS amount < 5, b AS amount > 500;",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("`x*?`"), "{}", w[0]);
    }

    #[test]
    fn reluctant_defined_or_bounded_quantifiers_do_not_warn() {
        for rule in [
            "CREATE RULE r AS FROM pay PARTITION BY card PATTERN (n{3,}? s) WITHIN 1 DAY DEFINE s AS amount > 500;",
            "CREATE RULE r AS FROM pay PARTITION BY card PATTERN (n{3,} s) WITHIN 1 DAY DEFINE n AS amount < 5, s AS amount > 500;",
            "CREATE RULE r AS FROM pay PARTITION BY card PATTERN (n{3} s) WITHIN 1 DAY DEFINE s AS amount > 500;",
            "CREATE RULE r AS FROM pay PARTITION BY card PATTERN (s n{2,}) WITHIN 1 DAY DEFINE s AS amount > 500;",
        ] {
            assert_eq!(warnings(rule), Vec::<String>::new(), "{rule}");
        }
    }
}
