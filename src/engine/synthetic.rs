//! Deterministic synthetic behaviour data for demos, tests and benchmarks: power-law item
//! popularity, items grouped into genres, and users whose tastes favour two genres — so that
//! collaborative filtering has real signal to find and beats popularity.

use std::collections::HashSet;

use crate::engine::rng::Rng;
use crate::engine::{RecsysError, Result};

#[derive(Clone, Debug)]
pub struct SyntheticParams {
    pub users: i64,
    pub items: i64,
    pub interactions: i64,
    pub seed: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub user_id: i64,
    pub item_id: i64,
    pub rating: f32,
    /// Seconds since 1970-01-01 UTC.
    pub unix_seconds: i64,
}

/// 2024-01-01 00:00:00 UTC: histories start in 2024.
const START: i64 = 1_704_067_200;
const TASTE_SHARE: f64 = 0.8;

pub struct Synthetic {
    seed: u64,
    /// Cumulative popularity weights over all items, and per genre (with its item list).
    global_cdf: Vec<f64>,
    genre_items: Vec<Vec<u32>>,
    genre_cdf: Vec<Vec<f64>>,
    item_genre: Vec<u32>,
    /// Items ordered by popularity, to fill a history when sampling keeps hitting chosen items.
    by_popularity: Vec<u32>,
    counts: Vec<u32>,
    user: usize,
    pending: std::vec::IntoIter<Row>,
}

fn cdf(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights.map(|w| { acc += w; acc }).collect()
}

fn sample(cdf: &[f64], rng: &mut Rng) -> usize {
    let x = rng.next_f64() * cdf[cdf.len() - 1];
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

fn shuffled(n: usize, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
    v
}

pub fn validate(p: &SyntheticParams) -> Result<()> {
    if p.users < 1 || p.users > i32::MAX as i64 {
        return Err(RecsysError::invalid(format!("users must be between 1 and {}, got {}", i32::MAX, p.users)));
    }
    if p.items < 1 || p.items > i32::MAX as i64 {
        return Err(RecsysError::invalid(format!("items must be between 1 and {}, got {}", i32::MAX, p.items)));
    }
    if p.interactions < 0 {
        return Err(RecsysError::invalid(format!("interactions must not be negative, got {}", p.interactions)));
    }
    if p.interactions as i128 > p.users as i128 * p.items as i128 {
        return Err(RecsysError::invalid(format!(
            "interactions ({}) cannot exceed users × items ({}): each pair occurs at most once",
            p.interactions,
            p.users as i128 * p.items as i128
        )));
    }
    Ok(())
}

/// Bytes the generator holds at once: per user its activity and count, per item its popularity,
/// genre and order, and the largest single user's rows being drawn (items, seen set, rows).
pub fn memory_estimate(p: &SyntheticParams) -> u128 {
    let (users, items, rows) = (p.users.max(0) as u128, p.items.max(0) as u128, p.interactions.max(0) as u128);
    users * 20 + items * 48 + rows.min(items) * 64
}

impl Synthetic {
    pub fn new(p: &SyntheticParams) -> Result<Self> {
        validate(p)?;
        let seed = p.seed as u64;
        let mut rng = Rng::new(seed);
        let n_items = p.items as usize;
        let n_users = p.users as usize;
        // Popularity ~ 1 / (rank + 2): a Zipf-like head and long tail, in a seeded item order.
        let rank = shuffled(n_items, &mut rng);
        let weight: Vec<f64> = (0..n_items).map(|i| 1.0 / (rank[i] as f64 + 2.0)).collect();
        let n_genres = (n_items / 50).clamp(1, 20);
        let item_genre: Vec<u32> = (0..n_items).map(|_| rng.below(n_genres as u64) as u32).collect();
        let mut genre_items = vec![Vec::new(); n_genres];
        for (i, &g) in item_genre.iter().enumerate() {
            genre_items[g as usize].push(i as u32);
        }
        let genre_cdf = genre_items.iter().map(|its| cdf(its.iter().map(|&i| weight[i as usize]))).collect();
        let mut by_popularity: Vec<u32> = (0..n_items as u32).collect();
        by_popularity.sort_by_key(|&i| rank[i as usize]);

        // Activity: every user gets one interaction (while they last), the rest by a power law.
        let total = p.interactions as u64;
        let activity_rank = shuffled(n_users, &mut rng);
        let act: Vec<f64> = (0..n_users).map(|u| 1.0 / (activity_rank[u] as f64 + 1.0 + n_users as f64 * 0.05).powf(0.8)).collect();
        let act_sum: f64 = act.iter().sum();
        let base = total.min(n_users as u64);
        let rest = total - base;
        let cap = n_items as u64;
        let mut counts: Vec<u32> = (0..n_users)
            .map(|u| {
                let one = u64::from((u as u64) < base);
                (one + (rest as f64 * act[u] / act_sum).floor() as u64).min(cap) as u32
            })
            .collect();
        let mut assigned: u64 = counts.iter().map(|&c| c as u64).sum();
        let mut u = 0;
        while assigned < total {
            if (counts[u] as u64) < cap {
                counts[u] += 1;
                assigned += 1;
            }
            u = (u + 1) % n_users;
        }
        Ok(Synthetic {
            seed,
            global_cdf: cdf(weight.iter().copied()),
            genre_items,
            genre_cdf,
            item_genre,
            by_popularity,
            counts,
            user: 0,
            pending: Vec::new().into_iter(),
        })
    }

    fn user_rows(&self, u: usize) -> Vec<Row> {
        let c = self.counts[u] as usize;
        let mut rng = Rng::new(self.seed ^ (u as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1));
        let n_genres = self.genre_items.len() as u64;
        let tastes = [rng.below(n_genres) as usize, rng.below(n_genres) as usize];
        let mut chosen: Vec<u32> = Vec::with_capacity(c);
        let mut seen: HashSet<u32> = HashSet::with_capacity(c);
        let mut attempts = 0;
        while chosen.len() < c && attempts < 30 * c + 100 {
            attempts += 1;
            let item = if rng.next_f64() < TASTE_SHARE {
                let g = tastes[usize::from(rng.next_f64() >= 0.6)];
                self.genre_items[g][sample(&self.genre_cdf[g], &mut rng)]
            } else {
                sample(&self.global_cdf, &mut rng) as u32
            };
            if seen.insert(item) {
                chosen.push(item);
            }
        }
        for &item in &self.by_popularity {
            if chosen.len() >= c {
                break;
            }
            if seen.insert(item) {
                chosen.push(item);
            }
        }
        let mut t = START + rng.below(180 * 86_400) as i64;
        chosen
            .into_iter()
            .map(|item| {
                let liked = tastes.contains(&(self.item_genre[item as usize] as usize));
                let base = if liked { 4.2 } else { 2.8 };
                let rating = (base + (rng.next_f64() - 0.5) * 2.0).round().clamp(1.0, 5.0) as f32;
                t += 60 + rng.below(3 * 86_400) as i64;
                Row { user_id: u as i64 + 1, item_id: item as i64 + 1, rating, unix_seconds: t }
            })
            .collect()
    }
}

impl Iterator for Synthetic {
    type Item = Row;
    fn next(&mut self) -> Option<Row> {
        loop {
            if let Some(r) = self.pending.next() {
                return Some(r);
            }
            if self.user >= self.counts.len() {
                return None;
            }
            self.pending = self.user_rows(self.user).into_iter();
            self.user += 1;
        }
    }
}

/// All rows at once (tests and benches; SQL streams the iterator).
pub fn generate(p: &SyntheticParams) -> Result<Vec<Row>> {
    Ok(Synthetic::new(p)?.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(users: i64, items: i64, interactions: i64, seed: i64) -> SyntheticParams {
        SyntheticParams { users, items, interactions, seed }
    }

    #[test]
    fn exact_count_unique_pairs_and_deterministic() {
        let a = generate(&params(50, 40, 700, 1)).unwrap();
        assert_eq!(a.len(), 700);
        let pairs: HashSet<(i64, i64)> = a.iter().map(|r| (r.user_id, r.item_id)).collect();
        assert_eq!(pairs.len(), 700);
        assert!(a.iter().all(|r| (1..=50).contains(&r.user_id) && (1..=40).contains(&r.item_id)));
        assert!(a.iter().all(|r| (1.0..=5.0).contains(&r.rating)));
        assert_eq!(a, generate(&params(50, 40, 700, 1)).unwrap());
        assert_ne!(a, generate(&params(50, 40, 700, 2)).unwrap());
    }

    #[test]
    fn dense_and_edge_sizes() {
        assert_eq!(generate(&params(3, 4, 12, 5)).unwrap().len(), 12);
        assert_eq!(generate(&params(10, 10, 0, 5)).unwrap().len(), 0);
        assert_eq!(generate(&params(10, 10, 3, 5)).unwrap().len(), 3);
        assert!(generate(&params(3, 4, 13, 5)).is_err());
        assert!(generate(&params(0, 4, 1, 5)).is_err());
        assert!(generate(&params(2, 4, -1, 5)).is_err());
    }

    #[test]
    fn popularity_is_skewed() {
        let rows = generate(&params(500, 300, 15_000, 3)).unwrap();
        let mut counts = vec![0usize; 300];
        rows.iter().for_each(|r| counts[r.item_id as usize - 1] += 1);
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts[..30].iter().sum();
        assert!(top as f64 > 0.3 * 15_000.0, "top 10% of items hold {top} of 15000");
    }
}
