//! Popularity: how many distinct users interacted with each item. The baseline, and the
//! cold-start answer of every model for a user with no known history.

use crate::engine::interactions::Csr;

/// Distinct users per item of a users × items matrix.
pub fn item_popularity(matrix: &Csr) -> Vec<f32> {
    let mut counts = vec![0f32; matrix.n_cols];
    for &item in &matrix.indices {
        counts[item as usize] += 1.0;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::interactions::Interactions;

    #[test]
    fn counts_distinct_users() {
        let m = Interactions::from_triplets(&[1, 1, 2, 3, 3], &[10, 10, 10, 20, 10], &[1.0; 5]).unwrap();
        assert_eq!(item_popularity(&m.matrix), vec![3.0, 1.0]);
    }
}
