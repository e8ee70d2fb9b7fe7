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
