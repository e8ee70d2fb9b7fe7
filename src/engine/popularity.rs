//! Popularity: how many distinct users interacted with each item. The baseline, and the
//! cold-start answer of every model for a user with no known history.

use crate::engine::format::Out;
use crate::engine::interactions::{Csr, Interactions};
use crate::engine::model::{Model, Request, Scored};
use crate::engine::neural::DeviceChoice;
use crate::engine::recommender::{Recommender, Trainer};
use crate::engine::{Progress, Result};

/// The popularity model: it has no state beyond the catalogue's popularity.
#[derive(Clone, Debug, PartialEq)]
pub struct Popularity;

impl Trainer for Popularity {
    fn memory_estimate(&self, _: &Interactions, _: usize) -> usize {
        0
    }

    fn fit(&self, _: &Interactions, _: DeviceChoice, _: &rayon::ThreadPool, _: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        Ok(Box::new(Popularity))
    }
}

impl Recommender for Popularity {
    fn name(&self) -> &'static str {
        "popularity"
    }

    /// Every user gets the popularity answer.
    fn score(&self, _: &Model, _: &Request, _: &[(u32, f32)]) -> Result<Option<Scored>> {
        Ok(None)
    }

    fn predict(&self, m: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        Ok((!history.is_empty()).then(|| m.popularity[i]))
    }

    fn store<'a>(&'a self, _: &mut Out<'_, 'a>) -> Result<()> {
        Ok(())
    }
}

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
