//! Item text to terms: lower-cased Unicode words, optional English stop words, word n-grams.

/// Common English words that carry no taste (a short, fixed list).
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "just", "me", "more", "my", "no", "not", "of", "on", "one", "or", "our", "out", "over",
    "s", "she", "so", "some", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to",
    "up", "us", "was", "we", "were", "what", "when", "which", "who", "will", "with", "would", "you", "your",
];

/// Lower-cased alphanumeric words of `text` (any script).
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// Terms of `text`: its words without stop words (when asked), then every run of 2..=ngrams
/// consecutive kept words joined by a space.
pub fn terms(text: &str, ngrams: usize, stop_words: bool) -> Vec<String> {
    let kept: Vec<String> =
        words(text).into_iter().filter(|w| !(stop_words && STOP_WORDS.binary_search(&w.as_str()).is_ok())).collect();
    let mut out = kept.clone();
    for n in 2..=ngrams.max(1) {
        out.extend(kept.windows(n).map(|w| w.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_stop_words_and_ngrams() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]), "the stop list must stay sorted");
        assert_eq!(words("Toy Story (1995) — Animation|Children's"), ["toy", "story", "1995", "animation", "children", "s"]);
        assert_eq!(words("Amélie ÉTÉ"), ["amélie", "été"]);
        assert_eq!(terms("The Lord of the Rings", 1, true), ["lord", "rings"]);
        assert_eq!(terms("The Lord of the Rings", 2, true), ["lord", "rings", "lord rings"]);
        assert_eq!(terms("the end", 1, false), ["the", "end"]);
    }
}

/// What a model computes from an item text it was not trained on (a TF-IDF vector, a tower's
/// encoding), remembered by the text itself: never stale, as a decoded model's vocabulary and
/// weights do not change. Serving meets the same untrained items on every call. Bounded by
/// `MEMO_TEXTS` texts (cleared when full); not part of the model (cloned empty, always equal).
#[derive(Default)]
pub struct Memo<V>(std::sync::Mutex<std::collections::HashMap<String, V>>);

pub const MEMO_TEXTS: usize = 200_000;

impl<V: Clone> Memo<V> {
    pub fn get_or(&self, text: &str, compute: impl FnOnce() -> V) -> V {
        if let Some(v) = self.get(text) {
            return v;
        }
        let v = compute();
        self.put(text, v.clone());
        v
    }

    pub fn get(&self, text: &str) -> Option<V> {
        self.0.lock().ok()?.get(text).cloned()
    }

    pub fn put(&self, text: &str, v: V) {
        if let Ok(mut memo) = self.0.lock() {
            if memo.len() >= MEMO_TEXTS {
                memo.clear();
            }
            memo.insert(text.to_string(), v);
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |m| m.len())
    }
}

impl<V> Clone for Memo<V> {
    fn clone(&self) -> Self {
        Memo(Default::default())
    }
}

impl<V> PartialEq for Memo<V> {
    fn eq(&self, _: &Memo<V>) -> bool {
        true
    }
}

impl<V> std::fmt::Debug for Memo<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}
