//! Top-N metrics with exactly the definitions of the reference scorer
//! (`shared/eval/evaluate_topn.py`): binary relevance, means over users with at least one test
//! item, coverage over the union of everyone's top-k against the training catalogue.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::engine::interactions::Interactions;
use crate::engine::model::{Model, Request};

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
/// users without test items are not evaluated. Runs on `pool`; touches no database.
pub fn evaluate_top_n(
    model: &Model,
    train: &Interactions,
    test: &[(i64, Vec<i64>)],
    item_text: &[(i64, String)],
    k: usize,
    pool: &rayon::ThreadPool,
) -> TopN {
    let scores: Vec<UserScore> = pool.install(|| {
        test.par_iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(user, items)| {
                let history = train.history_of(*user);
                let recs: Vec<i64> = model
                    .recommend(&Request { user_id: Some(*user), history: &history, n: k, exclude_seen: true, candidates: None, items: item_text })
                    .into_iter()
                    .map(|(item, _)| item)
                    .collect();
                score_user(&recs, &items.iter().copied().collect(), k)
            })
            .collect()
    });
    let n = scores.len();
    let mean = |f: fn(&UserScore) -> f64| if n == 0 { 0.0 } else { scores.iter().map(f).sum::<f64>() / n as f64 };
    let covered: HashSet<i64> = scores.iter().flat_map(|s| s.items.iter().copied()).collect();
    let catalog = model.n_items();
    TopN {
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
    }
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

pub fn rating_error(model: &Model, train: &Interactions, test: &Interactions, pool: &rayon::ThreadPool) -> RatingError {
    let mean = train.matrix.values.iter().map(|&v| v as f64).sum::<f64>() / train.nnz().max(1) as f64;
    let (se, ae) = pool.install(|| {
        (0..test.n_users())
            .into_par_iter()
            .map(|u| {
                let user = test.user_ids[u];
                let history = train.history_of(user);
                let (cols, vals) = test.matrix.row(u);
                cols.iter().zip(vals).fold((0f64, 0f64), |(se, ae), (&i, &r)| {
                    let p = model.predict(Some(user), &history, test.item_ids[i as usize]).map_or(mean, |p| p as f64);
                    let e = p - r as f64;
                    (se + e * e, ae + e.abs())
                })
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    let n = test.nnz().max(1) as f64;
    RatingError { rmse: (se / n).sqrt(), mae: ae / n, ratings: test.nnz() }
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
        let e = rating_error(&model, &train, &test, &pool);
        // predictions: item 20 → popularity 1; item 30 → mean 3. errors −1 and −2.
        close(e.rmse, (2.5f64).sqrt());
        close(e.mae, 1.5);
        assert_eq!(e.ratings, 2);
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
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
