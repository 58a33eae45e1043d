//! The perturbed view: character-level edits of a fraction of the words, seeded.
//!
//! The paper generates perturbed calibration texts with an auxiliary LLM that picks edits
//! which change meaning while keeping grammar ("later" -> "alter", "happy" -> "nappy",
//! "host" -> "ghost"). Without an auxiliary model there are two stand-ins, both with the same
//! three kinds of edit (swap two adjacent different letters, replace a letter, insert a
//! letter). [`Perturber::perturb`] (typos): exactly `round(fraction * words)` words, chosen
//! uniformly without replacement, each get one random edit, whatever it makes (mostly a
//! non-word that the tokenizer splits into rarer pieces). [`Perturber::perturb_real`] (real
//! words): an edit is made only if the caller accepts its result (PIP accepts another
//! whole-word token of the tokenizer, so both views keep their length in tokens), and words
//! without such an edit are passed over. A word is a maximal run of alphabetic characters;
//! everything else (spaces, digits, punctuation, word count) stays.

use prunus_core::rng::SplitMix64;

/// One character-level edit of a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// Two adjacent, different letters trade places.
    Swap,
    /// One letter becomes another (case kept).
    Replace,
    /// A lowercase letter goes in after the first letter or later (capitals stay first).
    Insert,
}

/// A perturbed text and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Perturbed {
    /// The perturbed text.
    pub text: String,
    /// Words in the text.
    pub words: usize,
    /// The edit of each changed word, in text order.
    pub edits: Vec<Edit>,
}

/// Perturbs a `fraction` of the words of a text; `seed` and a per-copy `stream` (PIP uses
/// the iteration and the sample index) fix the result.
#[derive(Debug, Clone, Copy)]
pub struct Perturber {
    /// Share of the words changed, in [0, 1]; the count is rounded to nearest.
    pub fraction: f64,
    /// Seed of the choice of words and of their edits.
    pub seed: u64,
}

impl Perturber {
    /// Copy `stream` of `text`, with `round(fraction * words)` words edited once each.
    pub fn perturb(&self, text: &str, stream: u64) -> Perturbed {
        let mut rng = SplitMix64::new(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let chars: Vec<char> = text.chars().collect();
        let words = word_spans(&chars);
        let k = ((self.fraction * words.len() as f64).round() as usize).min(words.len());
        // The first k entries of a partial Fisher-Yates shuffle, in text order.
        let mut order: Vec<usize> = (0..words.len()).collect();
        for i in 0..k {
            let j = i + rng.below((words.len() - i) as u64) as usize;
            order.swap(i, j);
        }
        let mut chosen = order[..k].to_vec();
        chosen.sort_unstable();

        let mut out = String::with_capacity(text.len() + k);
        let mut edits = Vec::with_capacity(k);
        let mut at = 0;
        for w in chosen {
            let (start, end) = words[w];
            out.extend(&chars[at..start]);
            let (word, edit) = edit_word(&chars[start..end], &mut rng);
            out.push_str(&word);
            edits.push(edit);
            at = end;
        }
        out.extend(&chars[at..]);
        Perturbed { text: out, words: words.len(), edits }
    }
}

/// (start, end) char indices of the maximal runs of alphabetic characters.
fn word_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in chars.iter().enumerate() {
        match (c.is_alphabetic(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, chars.len()));
    }
    spans
}

/// A random lowercase ASCII letter other than `not`.
fn letter(rng: &mut SplitMix64, not: Option<char>) -> char {
    loop {
        let c = (b'a' + rng.below(26) as u8) as char;
        if Some(c) != not {
            return c;
        }
    }
}

/// One random edit of `word` (non-empty, all letters); the result always differs.
fn edit_word(word: &[char], rng: &mut SplitMix64) -> (String, Edit) {
    let swaps: Vec<usize> = (0..word.len().saturating_sub(1)).filter(|&i| word[i] != word[i + 1]).collect();
    let kinds: &[Edit] = if swaps.is_empty() { &[Edit::Replace, Edit::Insert] } else { &[Edit::Swap, Edit::Replace, Edit::Insert] };
    let edit = kinds[rng.below(kinds.len() as u64) as usize];
    let mut w = word.to_vec();
    match edit {
        Edit::Swap => {
            let i = swaps[rng.below(swaps.len() as u64) as usize];
            w.swap(i, i + 1);
        }
        Edit::Replace => {
            let i = rng.below(w.len() as u64) as usize;
            let lower = w[i].to_lowercase().next();
            let c = letter(rng, lower);
            w[i] = if w[i].is_uppercase() { c.to_ascii_uppercase() } else { c };
        }
        Edit::Insert => {
            let i = 1 + rng.below(w.len() as u64) as usize;
            w.insert(i, letter(rng, None));
        }
    }
    (w.into_iter().collect(), edit)
}

/// Every single edit of `word` (letters only, at least 3 of them, all lowercase or capitalised)
/// into another string of lowercase ASCII letters, with the case pattern kept: swaps of two
/// adjacent different letters, replacements of one letter, insertions of one letter anywhere
/// ("host" -> "ghost"). Each result appears once (with the first edit that makes it), none
/// equals the word. Other words (acronyms, mixed case, non-ASCII) have none.
pub fn single_edits(word: &str) -> Vec<(Edit, String)> {
    let chars: Vec<char> = word.chars().collect();
    let capitalised = chars.first().is_some_and(|c| c.is_ascii_uppercase()) && chars[1..].iter().all(|c| c.is_ascii_lowercase());
    if chars.len() < 3 || !(capitalised || chars.iter().all(|c| c.is_ascii_lowercase())) {
        return Vec::new();
    }
    let lower: Vec<char> = chars.iter().map(|c| c.to_ascii_lowercase()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut push = |edit: Edit, w: Vec<char>| {
        if w != lower && seen.insert(w.clone()) {
            let mut s: String = w.into_iter().collect();
            if capitalised {
                s[..1].make_ascii_uppercase();
            }
            out.push((edit, s));
        }
    };
    for i in 0..lower.len() - 1 {
        if lower[i] != lower[i + 1] {
            let mut w = lower.clone();
            w.swap(i, i + 1);
            push(Edit::Swap, w);
        }
    }
    for i in 0..lower.len() {
        for c in 'a'..='z' {
            let mut w = lower.clone();
            w[i] = c;
            push(Edit::Replace, w);
        }
    }
    for i in 0..=lower.len() {
        for c in 'a'..='z' {
            let mut w = lower.clone();
            w.insert(i, c);
            push(Edit::Insert, w);
        }
    }
    out
}

impl Perturber {
    /// Copy `stream` of `text` with real-word edits: words are visited in a seeded random
    /// order and each gets one edit drawn from those that `accept` (word, candidate, whether
    /// a space precedes the word) allows, the kind first (uniformly among the kinds with an
    /// allowed edit), then the edit; words with none are passed over, until
    /// `round(fraction * words)` words changed or every word was tried.
    pub fn perturb_real(&self, text: &str, stream: u64, accept: &mut dyn FnMut(&str, &str, bool) -> bool) -> Perturbed {
        let mut rng = SplitMix64::new(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let chars: Vec<char> = text.chars().collect();
        let words = word_spans(&chars);
        let k = ((self.fraction * words.len() as f64).round() as usize).min(words.len());
        let mut order: Vec<usize> = (0..words.len()).collect();
        for i in 0..order.len() {
            let j = i + rng.below((order.len() - i) as u64) as usize;
            order.swap(i, j);
        }
        let mut chosen: Vec<(usize, String, Edit)> = Vec::with_capacity(k);
        for &w in &order {
            if chosen.len() == k {
                break;
            }
            let (start, end) = words[w];
            let word: String = chars[start..end].iter().collect();
            let spaced = start > 0 && chars[start - 1] == ' ';
            let allowed: Vec<(Edit, String)> = single_edits(&word).into_iter().filter(|(_, c)| accept(&word, c, spaced)).collect();
            let kinds: Vec<Edit> = [Edit::Swap, Edit::Replace, Edit::Insert].into_iter().filter(|k| allowed.iter().any(|(e, _)| e == k)).collect();
            if kinds.is_empty() {
                continue;
            }
            let kind = kinds[rng.below(kinds.len() as u64) as usize];
            let of_kind: Vec<&String> = allowed.iter().filter(|(e, _)| *e == kind).map(|(_, c)| c).collect();
            chosen.push((w, of_kind[rng.below(of_kind.len() as u64) as usize].clone(), kind));
        }
        chosen.sort_unstable_by_key(|c| c.0);
        let mut out = String::with_capacity(text.len() + k);
        let mut at = 0;
        for (w, new, _) in &chosen {
            let (start, end) = words[*w];
            out.extend(&chars[at..start]);
            out.push_str(new);
            at = end;
        }
        out.extend(&chars[at..]);
        Perturbed { text: out, words: words.len(), edits: chosen.into_iter().map(|c| c.2).collect() }
    }
}
