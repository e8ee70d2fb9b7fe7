//! Top-N metrics with exactly the definitions of the reference scorer
//! (`shared/eval/evaluate_topn.py`): binary relevance, means over users with at least one test
//! item, coverage over the union of everyone's top-k against the training catalogue.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::engine::interactions::Interactions;
use crate::engine::model::{Model, Request};
use crate::engine::{Progress, Result};

/// Users scored in parallel between two calls to `progress.step`, where the glue checks for
/// cancel: small enough that a cancel lands within a fraction of a second on any model.
const USERS_PER_CHUNK: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct TopN {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub hitrate: f64,
    pub coverage: f64,
    pub users: usize,
    pub catalog: usize,
    pub distinct_recommended: usize,
}

/// One user's contribution: the recommended list (best first) against the held-out items.
struct UserScore {
    precision: f64,
    recall: f64,
    ndcg: f64,
    map: f64,
    hit: f64,
    items: Vec<i64>,
}

fn score_user(recs: &[i64], test: &HashSet<i64>, k: usize) -> UserScore {
    let list = &recs[..recs.len().min(k)];
    let disc = |r: usize| 1.0 / ((r + 2) as f64).log2();
    let (mut hits, mut dcg, mut ap) = (0usize, 0.0f64, 0.0f64);
    for (r, item) in list.iter().enumerate() {
        if test.contains(item) {
            hits += 1;
            dcg += disc(r);
            ap += hits as f64 / (r + 1) as f64;
        }
    }
    if list.is_empty() {
        return UserScore { precision: 0.0, recall: 0.0, ndcg: 0.0, map: 0.0, hit: 0.0, items: Vec::new() };
    }
    let idcg: f64 = (0..test.len().min(k)).map(disc).sum();
    UserScore {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / test.len() as f64,
        ndcg: dcg / idcg,
        map: ap / test.len().min(k) as f64,
        hit: if hits > 0 { 1.0 } else { 0.0 },
        items: list.to_vec(),
    }
}

/// Recommend k items to every test user (their training row is the history, seen items
/// excluded, as `recommend` does; `item_text` is the items table for models that encode item text)
/// and score the lists. `test` holds (user id, held-out item ids);
/// users without test items are not evaluated. Runs on `pool` in chunks of users, calling
/// `progress.step` on the calling thread between chunks (an `Err` there stops it); touches no
/// database.
pub fn evaluate_top_n(
    model: &Model,
    train: &Interactions,
    test: &[(i64, Vec<i64>)],
    item_text: &[(i64, String)],
    k: usize,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<TopN> {
    let test: Vec<&(i64, Vec<i64>)> = test.iter().filter(|(_, items)| !items.is_empty()).collect();
    let mut scores: Vec<UserScore> = Vec::with_capacity(test.len());
    for (c, chunk) in test.chunks(USERS_PER_CHUNK).enumerate() {
        let part: Vec<UserScore> = pool.install(|| {
            chunk
                .par_iter()
                .map(|(user, items)| {
                    let history = train.history_of(*user);
                    let request = Request { user_id: Some(*user), history: &history, n: k, exclude_seen: true, candidates: None, items: item_text, diversity: 0.0 };
                    let recs: Vec<i64> = model.recommend(&request)?.into_iter().map(|(item, _)| item).collect();
                    Ok(score_user(&recs, &items.iter().copied().collect(), k))
                })
                .collect::<Result<_>>()
        })?;
        scores.extend(part);
        progress.step((c + 1) * USERS_PER_CHUNK, test.len())?;
    }
    let n = scores.len();
    let mean = |f: fn(&UserScore) -> f64| if n == 0 { 0.0 } else { scores.iter().map(f).sum::<f64>() / n as f64 };
    let covered: HashSet<i64> = scores.iter().flat_map(|s| s.items.iter().copied()).collect();
    let catalog = model.n_items();
    Ok(TopN {
        k,
        precision: mean(|s| s.precision),
        recall: mean(|s| s.recall),
        ndcg: mean(|s| s.ndcg),
        map: mean(|s| s.map),
        hitrate: mean(|s| s.hit),
        coverage: if catalog == 0 { 0.0 } else { covered.len() as f64 / catalog as f64 },
        users: n,
        catalog,
        distinct_recommended: covered.len(),
    })
}

/// RMSE and MAE of a rating model on held-out (user, item, rating) rows, each user's training row
/// as their history. Where the model gives no prediction (an item it does not know) the training
/// mean stands in, as Surprise does.
#[derive(Clone, Debug, PartialEq)]
pub struct RatingError {
    pub rmse: f64,
    pub mae: f64,
    pub ratings: usize,
}

pub fn rating_error(
    model: &Model,
    train: &Interactions,
    test: &Interactions,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<RatingError> {
    let mean = train.matrix.values.iter().map(|&v| v as f64).sum::<f64>() / train.nnz().max(1) as f64;
    let (mut se, mut ae) = (0f64, 0f64);
    let users = test.n_users();
    for start in (0..users).step_by(USERS_PER_CHUNK) {
        let end = (start + USERS_PER_CHUNK).min(users);
        let part: Vec<(f64, f64)> = pool.install(|| {
            (start..end)
                .into_par_iter()
                .map(|u| {
                    let user = test.user_ids[u];
                    let history = train.history_of(user);
                    let (cols, vals) = test.matrix.row(u);
                    let mut acc = (0f64, 0f64);
                    for (&i, &r) in cols.iter().zip(vals) {
                        let p = model.predict(Some(user), &history, test.item_ids[i as usize])?.map_or(mean, |p| p as f64);
                        let e = p - r as f64;
                        acc = (acc.0 + e * e, acc.1 + e.abs());
                    }
                    Ok(acc)
                })
                .collect::<Result<_>>()
        })?;
        // Summed in user order, so the figure does not depend on the thread count.
        for (a, b) in part {
            se += a;
            ae += b;
        }
        progress.step(end, users)?;
    }
    let n = test.nnz().max(1) as f64;
    Ok(RatingError { rmse: (se / n).sqrt(), mae: ae / n, ratings: test.nnz() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_error_of_a_popularity_model_by_hand() {
        // A popularity model "predicts" its popularity score; item 30 is unknown → training mean.
        let train = Interactions::from_triplets(&[1, 2, 2], &[10, 10, 20], &[4.0, 2.0, 3.0]).unwrap();
        let (spec, _) = crate::engine::model::Spec::parse("popularity", &serde_json::json!({})).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let model = spec.fit(&train, crate::engine::neural::DeviceChoice::Cpu, &pool, &mut crate::engine::NoProgress).unwrap();
        let test = Interactions::from_triplets(&[1, 3], &[20, 30], &[2.0, 5.0]).unwrap();
        let e = rating_error(&model, &train, &test, &pool, &mut crate::engine::NoProgress).unwrap();
        // predictions: item 20 → popularity 1; item 30 → mean 3. errors −1 and −2.
        close(e.rmse, (2.5f64).sqrt());
        close(e.mae, 1.5);
        assert_eq!(e.ratings, 2);
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// A progress sink that says "cancelled" at its `after`-th call, as the glue does on a cancel.
    struct CancelAt {
        calls: usize,
        after: usize,
    }
    impl Progress for CancelAt {
        fn step(&mut self, _done: usize, _total: usize) -> Result<()> {
            self.calls += 1;
            if self.calls >= self.after {
                return Err(crate::engine::RecsysError::new(crate::engine::ErrorKind::NotReady, "cancelled"));
            }
            Ok(())
        }
    }

    #[test]
    fn scoring_stops_between_chunks_when_cancelled() {
        // 1,000 test users: 4 chunks; a cancel at the second check stops after 2 of them.
        let users: Vec<i64> = (0..1000).flat_map(|u| [u, u]).collect();
        let items: Vec<i64> = (0..1000).flat_map(|u| [u % 7, 7 + u % 5]).collect();
        let train = Interactions::from_triplets(&users, &items, &vec![1.0; users.len()]).unwrap();
        let (spec, _) = crate::engine::model::Spec::parse("item_knn", &serde_json::json!({})).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let model = spec.fit(&train, crate::engine::neural::DeviceChoice::Cpu, &pool, &mut crate::engine::NoProgress).unwrap();
        let test: Vec<(i64, Vec<i64>)> = (0..1000).map(|u| (u, vec![(u + 1) % 7])).collect();
        let mut cancel = CancelAt { calls: 0, after: 2 };
        assert!(evaluate_top_n(&model, &train, &test, &[], 10, &pool, &mut cancel).is_err());
        assert_eq!(cancel.calls, 2);
        let mut cancel = CancelAt { calls: 0, after: 1 };
        assert!(rating_error(&model, &train, &train, &pool, &mut cancel).is_err());
        assert_eq!(cancel.calls, 1);
        // Uncancelled, every user is scored.
        let all = evaluate_top_n(&model, &train, &test, &[], 10, &pool, &mut crate::engine::NoProgress).unwrap();
        assert_eq!(all.users, 1000);
    }

    #[test]
    fn one_user_by_hand() {
        // hits at ranks 1 and 3 of 4; 3 test items; k = 4
        let s = score_user(&[1, 2, 3, 4], &[1, 3, 9].into_iter().collect(), 4);
        close(s.precision, 0.5);
        close(s.recall, 2.0 / 3.0);
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        close(s.ndcg, (1.0 + 0.5) / idcg);
        close(s.map, (1.0 + 2.0 / 3.0) / 3.0);
        close(s.hit, 1.0);
    }

    #[test]
    fn short_and_empty_lists() {
        // precision divides by k even when the list is shorter
        let s = score_user(&[5], &[5].into_iter().collect(), 10);
        close(s.precision, 0.1);
        close(s.ndcg, 1.0);
        let e = score_user(&[], &[5].into_iter().collect(), 10);
        close(e.ndcg + e.precision + e.hit, 0.0);
    }
}
