//! Bounded top-k selection with the project's deterministic order: score descending, then index
//! ascending. Item indices follow ascending external ids, so this is "score desc, item id asc".

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Candidate {
    score: f32,
    index: u32,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    /// Greater means better: higher score, then lower index.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.index.cmp(&self.index))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `k` of `(index, score)` pairs, best first. NaN scores are skipped.
/// Memory is O(k) whatever the input length, and `k` larger than the input is fine.
/// Candidates go to a buffer of up to 2k; when it fills, a selection (linear) keeps its best k
/// and the worst of them becomes a floor that later candidates must pass. Each pair costs one
/// comparison once the floor is high, O(n) in all (a heap of k would sift on every
/// replacement, which dominated EASE's pruning of each row to `keep` weights).
pub fn top_k(items: impl IntoIterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let cap = k.saturating_mul(2);
    let best_first = |a: &Candidate, b: &Candidate| b.cmp(a);
    let mut buf: Vec<Candidate> = Vec::new();
    let mut floor: Option<Candidate> = None;
    for (index, score) in items {
        if score.is_nan() {
            continue;
        }
        let c = Candidate { score, index };
        if floor.is_some_and(|f| c <= f) {
            continue;
        }
        buf.push(c);
        if buf.len() >= cap {
            buf.select_nth_unstable_by(k - 1, best_first);
            buf.truncate(k);
            floor = Some(buf[k - 1]);
        }
    }
    if buf.len() > k {
        buf.select_nth_unstable_by(k - 1, best_first);
        buf.truncate(k);
    }
    buf.sort_unstable_by(best_first);
    buf.into_iter().map(|c| (c.index, c.score)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_in_order_with_ties_by_index() {
        let got = top_k(vec![(5, 1.0), (2, 3.0), (9, 3.0), (1, 0.5), (3, 2.0)], 3);
        assert_eq!(got, vec![(2, 3.0), (9, 3.0), (3, 2.0)]);
    }

    #[test]
    fn k_larger_than_input_and_zero() {
        assert_eq!(top_k(vec![(1, 1.0), (0, 1.0)], 100), vec![(0, 1.0), (1, 1.0)]);
        assert!(top_k(vec![(1, 1.0)], 0).is_empty());
    }

    #[test]
    fn nan_is_skipped_and_negatives_rank_last() {
        let got = top_k(vec![(0, f32::NAN), (1, -1.0), (2, 0.0)], 5);
        assert_eq!(got, vec![(2, 0.0), (1, -1.0)]);
    }

    #[test]
    fn matches_full_sort() {
        let mut r = crate::engine::rng::Rng::new(3);
        // Many ties, indices in no order: every k, below and above the buffer's compactions.
        let items: Vec<(u32, f32)> = (0..500).map(|i| ((i * 7919) % 500, (r.below(20)) as f32)).collect();
        let mut sorted = items.clone();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 2, 37, 249, 250, 251, 499, 500, 1000] {
            assert_eq!(top_k(items.clone(), k), sorted[..k.min(500)].to_vec(), "k = {k}");
        }
    }
}
