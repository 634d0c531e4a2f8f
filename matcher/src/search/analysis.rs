//! Document and query analysis: Unicode words (UAX #29), lowercase, accents folded, with
//! token positions and byte offsets into the original text. Same rules as
//! [`dsl::query::tokenize`] (queries), without a per-token allocation.

use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

const WORD: u8 = 1;
const ALPHA: u8 = 2;
const DIGIT: u8 = 4;
/// Joins two letters (UAX #29 MidLetter / MidNumLet).
const MID_LETTER: u8 = 8;
/// Joins two digits (MidNum / MidNumLet).
const MID_NUM: u8 = 16;

/// Word-break classes of the ASCII bytes.
static ASCII_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        let mut v = 0;
        if b.is_ascii_alphabetic() {
            v |= WORD | ALPHA;
        }
        if b.is_ascii_digit() {
            v |= WORD | DIGIT;
        }
        if b == b'_' {
            v |= WORD;
        }
        if matches!(b, b':' | b'.' | b'\'') {
            v |= MID_LETTER;
        }
        if matches!(b, b',' | b';' | b'.' | b'\'') {
            v |= MID_NUM;
        }
        t[c] = v;
        c += 1;
    }
    t
};

/// How many of the 8 (ASCII) bytes, from the first, are lowercase letters (SWAR: each
/// byte's top bit says whether it is in `a..=z`).
#[inline]
fn lowercase_run(b: &[u8]) -> usize {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    let w = u64::from_le_bytes(x);
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes are < 0x80, so no sum carries into the next byte.
    let ge_a = w + ONES * (0x80 - u64::from(b'a'));
    let gt_z = w + ONES * (0x80 - u64::from(b'z') - 1);
    let letters = ge_a & !gt_z & HIGH;
    let others = !letters & HIGH;
    (others.trailing_zeros() / 8) as usize
}

/// One token: byte range in the original text and in [`Analyzed::norm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpan {
    pub start: u32,
    pub end: u32,
    nstart: u32,
    nend: u32,
}

/// An analyzed field: its tokens in order (position = index).
#[derive(Debug, Clone, Default)]
pub struct Analyzed {
    norm: String,
    pub tokens: Vec<TokenSpan>,
}

/// Append the normalized form of `word` (lowercase, accents folded) to `out`.
pub fn normalize_into(word: &str, out: &mut String) {
    if word.is_ascii() {
        let at = out.len();
        out.push_str(word);
        out[at..].make_ascii_lowercase();
        return;
    }
    let lower = word.to_lowercase();
    let folded: String = lower
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .collect();
    out.extend(folded.nfc());
}

impl Analyzed {
    /// Analyze `text`. Texts longer than `u32::MAX` bytes are cut there.
    pub fn new(text: &str) -> Self {
        let mut a = Analyzed::default();
        a.reset(text);
        a
    }

    /// Re-analyze into this buffer (keeps the allocations).
    pub fn reset(&mut self, text: &str) {
        self.norm.clear();
        self.tokens.clear();
        let text = if text.len() > u32::MAX as usize {
            let mut cut = u32::MAX as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            &text[..cut]
        } else {
            text
        };
        if text.is_ascii() {
            self.ascii_words(text);
        } else {
            self.unicode_words(text);
        }
    }

    /// The general path: UAX #29 words, each lowercased and accent-folded.
    fn unicode_words(&mut self, text: &str) {
        for (start, w) in text.unicode_word_indices() {
            let nstart = self.norm.len();
            normalize_into(w, &mut self.norm);
            if self.norm.len() == nstart {
                continue;
            }
            self.tokens.push(TokenSpan {
                start: start as u32,
                end: (start + w.len()) as u32,
                nstart: nstart as u32,
                nend: self.norm.len() as u32,
            });
        }
    }

    /// UAX #29 words of an ASCII text (the same as `unicode_word_indices`, checked by
    /// property tests): letters/digits/`_` join; `: . '` join two letters; `, ; . '` join
    /// two digits; a run counts as a word when it has a letter or digit. The whole text is
    /// lowercased once; token offsets are the same in the text and in `norm`.
    fn ascii_words(&mut self, text: &str) {
        let Self { norm, tokens } = self;
        norm.push_str(text);
        norm.make_ascii_lowercase();
        let b = norm.as_bytes();
        let class = |c: u8| ASCII_CLASS[c as usize];
        let n = b.len();
        let mut i = 0;
        while i < n {
            if class(b[i]) & WORD == 0 {
                i += 1;
                continue;
            }
            let start = i;
            loop {
                i += 1;
                // Lowercase letters 8 at a time, then one byte at a time.
                while i + 8 <= n {
                    let run = lowercase_run(&b[i..i + 8]);
                    i += run;
                    if run < 8 {
                        break;
                    }
                }
                while i < n && class(b[i]) & WORD != 0 {
                    i += 1;
                }
                if i + 1 < n {
                    let c = class(b[i]);
                    if c & (MID_LETTER | MID_NUM) != 0 {
                        let both = class(b[i - 1]) & class(b[i + 1]);
                        if (both & ALPHA != 0 && c & MID_LETTER != 0)
                            || (both & DIGIT != 0 && c & MID_NUM != 0)
                        {
                            // b[i + 1] is a letter or digit: the loop goes on after it.
                            i += 1;
                            continue;
                        }
                    }
                }
                break;
            }
            if b[start] != b'_' || b[start..i].iter().any(|&c| c != b'_') {
                tokens.push(TokenSpan {
                    start: start as u32,
                    end: i as u32,
                    nstart: start as u32,
                    nend: i as u32,
                });
            }
        }
    }

    /// The normalized text of token `i`.
    #[inline]
    pub fn term(&self, i: usize) -> &str {
        let t = &self.tokens[i];
        &self.norm[t.nstart as usize..t.nend as usize]
    }

    /// The normalized bytes of token `i`.
    #[inline]
    pub fn term_bytes(&self, i: usize) -> &[u8] {
        let t = &self.tokens[i];
        &self.norm.as_bytes()[t.nstart as usize..t.nend as usize]
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Optimal-string-alignment edit distance (insert, delete, substitute, swap adjacent) over
/// chars, or `None` when it exceeds `max`.
pub fn edit_distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    let (n, m) = (a.len(), b.len());
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=n {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    let d = prev[m];
    (d <= max).then_some(d)
}

/// Regex text (whole-token match) for a wildcard pattern: `?` one char, `*` any run.
pub fn wildcard_regex(pattern: &str) -> String {
    let mut re = String::from("^(?s:");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => {
                let mut buf = [0u8; 4];
                re.push_str(&regex_syntax_escape(c.encode_utf8(&mut buf)));
            }
        }
    }
    re.push_str(")$");
    re
}

/// Regex text (whole-token match) for a user regex.
pub fn token_regex(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

fn regex_syntax_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_folding() {
        let a = Analyzed::new("Le Café, l'ÉTÉ — acme's 3.5 Zürich");
        let terms: Vec<&str> = (0..a.len()).map(|i| a.term(i)).collect();
        assert_eq!(terms, ["le", "cafe", "l'ete", "acme's", "3.5", "zurich"]);
        let t = a.tokens[1];
        assert_eq!(
            &"Le Café, l'ÉTÉ — acme's 3.5 Zürich"[t.start as usize..t.end as usize],
            "Café"
        );
    }

    #[test]
    fn same_as_query_analysis() {
        for s in [
            "Ünïcödé wörds, İstanbul ß ﬁne",
            "ＡＢＣ x_y a:b 1,000.5",
            "naïve café",
        ] {
            let a = Analyzed::new(s);
            let mine: Vec<String> = (0..a.len()).map(|i| a.term(i).to_string()).collect();
            let q: Vec<String> = dsl::query::tokenize(s).map(|(_, _, t)| t).collect();
            assert_eq!(mine, q, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn ascii_fast_path_equals_uax29(s in "[aZ09_:.',; \\-]{0,40}") {
            let a = Analyzed::new(&s);
            let mine: Vec<(usize, usize)> =
                a.tokens.iter().map(|t| (t.start as usize, t.end as usize)).collect();
            let want: Vec<(usize, usize)> =
                s.unicode_word_indices().map(|(i, w)| (i, i + w.len())).collect();
            proptest::prop_assert_eq!(mine, want);
            let terms: Vec<&str> = (0..a.len()).map(|i| a.term(i)).collect();
            let lower: Vec<String> = s.unicode_words().map(|w| w.to_lowercase()).collect();
            proptest::prop_assert_eq!(terms, lower);
        }
    }

    fn spans_and_terms(a: &Analyzed) -> Vec<(u32, u32, String)> {
        a.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.start, t.end, a.term(i).to_string()))
            .collect()
    }

    proptest::proptest! {
        /// The ASCII fast path gives exactly what the general (Unicode) path gives, on any
        /// ASCII text (controls, punctuation, mixed case included).
        #[test]
        fn ascii_fast_path_equals_general_path(s in "[\\x00-\\x7f]{0,60}") {
            let fast = Analyzed::new(&s);
            let mut general = Analyzed::default();
            general.unicode_words(&s);
            proptest::prop_assert_eq!(spans_and_terms(&fast), spans_and_terms(&general));
        }

        #[test]
        fn long_words_fast_equals_general(s in "([a-zA-Z]{1,19}[0-9_]{0,2}[ .,:'\\-]{0,2}){0,10}") {
            let fast = Analyzed::new(&s);
            let mut general = Analyzed::default();
            general.unicode_words(&s);
            proptest::prop_assert_eq!(spans_and_terms(&fast), spans_and_terms(&general));
        }

        #[test]
        fn ascii_words_fast_equals_general(s in "([A-Za-z0-9_]{1,4}[ .,;:'_\\-]{0,2}){0,12}") {
            let fast = Analyzed::new(&s);
            let mut general = Analyzed::default();
            general.unicode_words(&s);
            proptest::prop_assert_eq!(spans_and_terms(&fast), spans_and_terms(&general));
        }

        /// Mixed Unicode/ASCII text: the analysis equals UAX #29 words, lowercased and
        /// accent-folded one by one.
        #[test]
        fn mixed_text_equals_reference(s in "[a-zA-Zé É ü ß İ ﬁ 0-9.,'_:\\u{301}\\u{200d}-]{0,40}") {
            let a = Analyzed::new(&s);
            let want: Vec<(u32, u32, String)> = s
                .unicode_word_indices()
                .filter_map(|(i, w)| {
                    let mut n = String::new();
                    normalize_into(w, &mut n);
                    (!n.is_empty()).then(|| (i as u32, (i + w.len()) as u32, n))
                })
                .collect();
            proptest::prop_assert_eq!(spans_and_terms(&a), want);
        }
    }

    #[test]
    fn edit_distance() {
        assert_eq!(edit_distance_within("acme", "acme", 2), Some(0));
        assert_eq!(edit_distance_within("acme", "acne", 2), Some(1));
        assert_eq!(edit_distance_within("acme", "came", 1), Some(1));
        assert_eq!(edit_distance_within("acme", "ac", 2), Some(2));
        assert_eq!(edit_distance_within("acme", "a", 2), None);
        assert_eq!(edit_distance_within("kitten", "sitting", 2), None);
        assert_eq!(edit_distance_within("kitten", "sitting", 3), Some(3));
    }
}
