//! Hyper-parameter search: expand a grid, hold out a seeded validation split of the training
//! interactions, and score a fitted model on it with a top-N metric or a rating error.

use serde_json::{Map, Value};

use crate::engine::interactions::Interactions;
use crate::engine::metrics::{evaluate_top_n, rating_error};
use crate::engine::model::Model;
use crate::engine::split::{split, Method, Row};
use crate::engine::{Progress, RecsysError, Result};

/// At most this many grid points per call.
pub const MAX_POINTS: usize = 1000;

/// Every combination of a grid `{"param": [v1, v2, ...], "fixed": v}` (a non-array value is
/// one fixed choice), in the order the arrays list them, the first parameter varying slowest.
pub fn grid_points(grid: &Value) -> Result<Vec<Value>> {
    let Value::Object(map) = grid else {
        return Err(RecsysError::invalid("grid must be a JSON object of parameter → array of values")
            .with_hint("for example '{\"lambda\": [100, 500, 1000]}'::jsonb"));
    };
    let mut points: Vec<Map<String, Value>> = vec![Map::new()];
    for (name, values) in map {
        let choices: Vec<Value> = match values {
            Value::Array(a) if a.is_empty() => {
                return Err(RecsysError::invalid(format!("grid parameter \"{name}\" has no values")))
            }
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        if points.len() * choices.len() > MAX_POINTS {
            return Err(RecsysError::invalid(format!("the grid has more than {MAX_POINTS} points")));
        }
        points = points
            .into_iter()
            .flat_map(|p| {
                choices.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(name.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    Ok(points.into_iter().map(Value::Object).collect())
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    Precision,
    Recall,
    Ndcg,
    Map,
    HitRate,
    Coverage,
    Rmse,
    Mae,
}

pub const METRICS: &[&str] = &["precision", "recall", "ndcg", "map", "hitrate", "coverage", "rmse", "mae"];

impl Metric {
    pub fn parse(name: &str) -> Result<Metric> {
        let m = match name {
            "precision" => Metric::Precision,
            "recall" => Metric::Recall,
            "ndcg" => Metric::Ndcg,
            "map" => Metric::Map,
            "hitrate" => Metric::HitRate,
            "coverage" => Metric::Coverage,
            "rmse" => Metric::Rmse,
            "mae" => Metric::Mae,
            other => {
                return Err(RecsysError::invalid(format!("unknown metric \"{other}\""))
                    .with_detail(format!("known metrics: {}", METRICS.join(", "))))
            }
        };
        Ok(m)
    }

    /// Rating errors (minimised); the top-N metrics are maximised.
    pub fn is_error(self) -> bool {
        matches!(self, Metric::Rmse | Metric::Mae)
    }

    /// The metric's name as `recsys.evaluate` prints it.
    pub fn label(self, k: usize) -> String {
        let base = METRICS[self as usize];
        if self.is_error() {
            base.to_string()
        } else {
            format!("{base}@{k}")
        }
    }

    pub fn better(self, a: f64, b: f64) -> bool {
        if self.is_error() {
            a < b
        } else {
            a > b
        }
    }
}

/// A per-user random hold-out of `fraction` of each user's interactions (users with ≤ 2 stay
/// whole in train), as `recsys.split(..., 'random')` does. Returns (train, validation).
pub fn holdout(data: &Interactions, fraction: f64, seed: i64) -> Result<(Interactions, Interactions)> {
    let m = &data.matrix;
    let mut rows = Vec::with_capacity(data.nnz());
    for u in 0..data.n_users() {
        let (cols, _) = m.row(u);
        for &i in cols {
            rows.push(Row { key: rows.len() as u64, user: data.user_ids[u], item: data.item_ids[i as usize], time: None });
        }
    }
    let test = split(&rows, Method::Random, fraction, seed)?;
    let (mut tr, mut va) = ((Vec::new(), Vec::new(), Vec::new()), (Vec::new(), Vec::new(), Vec::new()));
    for (k, r) in rows.iter().enumerate() {
        let side = if test[k] { &mut va } else { &mut tr };
        side.0.push(r.user);
        side.1.push(r.item);
        side.2.push(m.values[k]);
    }
    if va.0.is_empty() {
        return Err(RecsysError::invalid("too few interactions to hold out a validation split")
            .with_detail("users need at least 3 interactions to give some to validation"));
    }
    Ok((Interactions::from_triplets(&tr.0, &tr.1, &tr.2)?, Interactions::from_triplets(&va.0, &va.1, &va.2)?))
}

/// The model's score on the validation interactions.
/// Scored in chunks of users; `progress` is called between them (where the glue checks cancel).
pub fn score(
    model: &Model,
    train: &Interactions,
    valid: &Interactions,
    metric: Metric,
    k: usize,
    pool: &rayon::ThreadPool,
    progress: &mut dyn Progress,
) -> Result<f64> {
    if metric.is_error() {
        let e = rating_error(model, train, valid, pool, progress)?;
        return Ok(if metric == Metric::Rmse { e.rmse } else { e.mae });
    }
    let test: Vec<(i64, Vec<i64>)> = (0..valid.n_users())
        .map(|u| (valid.user_ids[u], valid.matrix.row(u).0.iter().map(|&i| valid.item_ids[i as usize]).collect()))
        .collect();
    let t = evaluate_top_n(model, train, &test, &[], k, pool, progress)?;
    Ok(match metric {
        Metric::Precision => t.precision,
        Metric::Recall => t.recall,
        Metric::Ndcg => t.ndcg,
        Metric::Map => t.map,
        Metric::HitRate => t.hitrate,
        _ => t.coverage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grid_is_the_cartesian_product() {
        let g = grid_points(&json!({"a": [1, 2], "b": ["x", "y", "z"], "c": 5})).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], json!({"a": 1, "b": "x", "c": 5}));
        assert_eq!(g[5], json!({"a": 2, "b": "z", "c": 5}));
        assert_eq!(grid_points(&json!({})).unwrap(), vec![json!({})]);
        assert!(grid_points(&json!({"a": []})).is_err());
        assert!(grid_points(&json!([1])).is_err());
        let big: Vec<i32> = (0..40).collect();
        assert!(grid_points(&json!({"a": big, "b": big})).is_err());
    }

    #[test]
    fn holdout_keeps_every_interaction_once() {
        let u: Vec<i64> = (0..40).map(|k| k / 10).collect();
        let i: Vec<i64> = (0..40).map(|k| k % 10).collect();
        let data = Interactions::from_triplets(&u, &i, &vec![1.0; 40]).unwrap();
        let (tr, va) = holdout(&data, 0.2, 7).unwrap();
        assert_eq!(tr.nnz() + va.nnz(), 40);
        assert_eq!(va.nnz(), 8);
        assert_eq!(holdout(&data, 0.2, 7).unwrap().1, va);
        assert_eq!(Metric::parse("rmse").unwrap().label(10), "rmse");
        assert_eq!(Metric::parse("ndcg").unwrap().label(10), "ndcg@10");
        assert!(Metric::parse("auc").is_err());
    }
}
