//! The reference evaluator: runs one query (fields resolved) against one document by
//! scanning its tokens. Slow and simple; the index is tested against it.

use super::analysis::{edit_distance_within, token_regex, wildcard_regex, Analyzed};
use super::{Document, Highlights};
use dsl::query::Query;
use regex_automata::meta::Regex;
use std::collections::{BTreeMap, BTreeSet};

type Marks = BTreeMap<String, BTreeSet<usize>>;

/// Evaluate `query` (every clause with a field) on `doc`: `Some(highlights)` on a match.
pub fn evaluate(query: &Query, doc: &Document<'_>) -> Option<Highlights> {
    let mut fields: BTreeMap<String, Analyzed> = BTreeMap::new();
    collect_fields(query, doc, &mut fields);
    let mut marks = Marks::new();
    if !eval(query, &fields, &mut marks) {
        return None;
    }
    let mut out = Highlights::new();
    for (f, ps) in marks {
        if ps.is_empty() {
            continue;
        }
        let a = &fields[&f];
        out.insert(
            f,
            ps.into_iter()
                .map(|p| (a.tokens[p].start as usize, a.tokens[p].end as usize))
                .collect(),
        );
    }
    Some(out)
}

fn collect_fields(q: &Query, doc: &Document<'_>, out: &mut BTreeMap<String, Analyzed>) {
    match q {
        Query::And(cs) | Query::Or(cs) => cs.iter().for_each(|c| collect_fields(c, doc, out)),
        Query::Not(c) => collect_fields(c, doc, out),
        leaf => {
            let f = leaf.field().unwrap_or("");
            if !out.contains_key(f) {
                out.insert(f.to_string(), Analyzed::new(doc.get(f).unwrap_or("")));
            }
        }
    }
}

fn positions(a: &Analyzed, pred: impl Fn(&str) -> bool) -> Vec<usize> {
    (0..a.len()).filter(|&i| pred(a.term(i))).collect()
}

/// Compiled regexes, per thread, bounded (cleared past `REGEX_CACHE_MAX` entries).
const REGEX_CACHE_MAX: usize = 1024;
thread_local! {
    static REGEXES: std::cell::RefCell<std::collections::HashMap<String, Option<Regex>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

fn regex_positions(a: &Analyzed, re: &str) -> Vec<usize> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(re) {
            if cache.len() >= REGEX_CACHE_MAX {
                cache.clear();
            }
            cache.insert(re.to_string(), Regex::new(re).ok());
        }
        match cache.get(re) {
            Some(Some(r)) => positions(a, |t| r.is_match(t)),
            _ => Vec::new(),
        }
    })
}

fn eval(q: &Query, fields: &BTreeMap<String, Analyzed>, marks: &mut Marks) -> bool {
    let leaf_field = q.field().unwrap_or("");
    let a = fields.get(leaf_field);
    let hit = |ps: Vec<usize>, marks: &mut Marks| -> bool {
        if ps.is_empty() {
            return false;
        }
        marks.entry(leaf_field.to_string()).or_default().extend(ps);
        true
    };
    match q {
        Query::And(cs) => {
            let mut local = Marks::new();
            for c in cs {
                if !eval(c, fields, &mut local) {
                    return false;
                }
            }
            merge(marks, local);
            true
        }
        Query::Or(cs) => {
            let mut any = false;
            for c in cs {
                let mut local = Marks::new();
                if eval(c, fields, &mut local) {
                    any = true;
                    merge(marks, local);
                }
            }
            any
        }
        Query::Not(c) => !eval(c, fields, &mut Marks::new()),
        Query::Term { term, .. } => {
            let Some(a) = a else { return false };
            hit(positions(a, |t| t == term), marks)
        }
        Query::Prefix { prefix, .. } => {
            let Some(a) = a else { return false };
            hit(positions(a, |t| t.starts_with(prefix.as_str())), marks)
        }
        Query::Wildcard { pattern, .. } => {
            let Some(a) = a else { return false };
            hit(regex_positions(a, &wildcard_regex(pattern)), marks)
        }
        Query::Regex { pattern, .. } => {
            let Some(a) = a else { return false };
            hit(regex_positions(a, &token_regex(pattern)), marks)
        }
        Query::Fuzzy { term, distance, .. } => {
            let Some(a) = a else { return false };
            hit(
                positions(a, |t| {
                    edit_distance_within(t, term, *distance as usize).is_some()
                }),
                marks,
            )
        }
        Query::Phrase { terms, slop, .. } => {
            let Some(a) = a else { return false };
            let slop = slop.unwrap_or(0) as usize;
            let n = terms.len();
            let mut ps = Vec::new();
            // For every start, the earliest in-order chain; it counts if the gaps add up to
            // at most `slop`.
            for p1 in 0..a.len() {
                if a.term(p1) != terms[0] {
                    continue;
                }
                let mut chain = vec![p1];
                for t in &terms[1..] {
                    let prev = chain[chain.len() - 1];
                    match (prev + 1..a.len()).find(|&i| a.term(i) == t) {
                        Some(i) => chain.push(i),
                        None => break,
                    }
                }
                if chain.len() == n && chain[n - 1] - p1 - (n - 1) <= slop {
                    ps.extend(chain);
                }
            }
            hit(ps, marks)
        }
    }
}

fn merge(into: &mut Marks, from: Marks) {
    for (f, ps) in from {
        into.entry(f).or_default().extend(ps);
    }
}
