//! Hyper-parameter search: expand a grid, or sample a space of choices and ranges (random
//! search; successive halving on growing shares of the users), hold out a seeded validation
//! split of the training interactions, and score a fitted model on it with a top-N metric or a
//! rating error. `PORTFOLIO` is what `algorithm => 'auto'` searches.

use serde_json::{json, Map, Value};

use crate::engine::rng::Rng;

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
            Value::Object(_) => {
                return Err(RecsysError::invalid(format!("grid parameter \"{name}\" is a range, and a grid search takes lists"))
                    .with_hint("search => 'random' or 'halving' samples ranges; a grid lists its values"))
            }
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

/// One parameter of a search space.
#[derive(Clone, Debug, PartialEq)]
enum Dim {
    Choice(Vec<Value>),
    /// Uniform in [min, max] (log-uniform when `log`), rounded when `int`.
    Range { min: f64, max: f64, log: bool, int: bool },
}

/// A search space: `{"param": [choices] | {"min": a, "max": b, "log": bool, "int": bool} | value}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Space {
    dims: Vec<(String, Dim)>,
}

impl Space {
    pub fn parse(grid: &Value) -> Result<Space> {
        let Value::Object(map) = grid else {
            return Err(RecsysError::invalid("grid must be a JSON object of parameter → values or range")
                .with_hint("for example '{\"lambda\": {\"min\": 100, \"max\": 2000, \"log\": true}}'::jsonb"));
        };
        let mut dims = Vec::with_capacity(map.len());
        for (name, v) in map {
            let dim = match v {
                Value::Array(a) if a.is_empty() => return Err(RecsysError::invalid(format!("grid parameter \"{name}\" has no values"))),
                Value::Array(a) => Dim::Choice(a.clone()),
                Value::Object(o) => {
                    if let Some(k) = o.keys().find(|k| !["min", "max", "log", "int"].contains(&k.as_str())) {
                        return Err(RecsysError::invalid(format!("unknown key \"{k}\" in the range of \"{name}\"")).with_detail("a range has min, max, and optionally log and int"));
                    }
                    let num = |k: &str| o.get(k).and_then(Value::as_f64);
                    let flag = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
                    let (Some(min), Some(max)) = (num("min"), num("max")) else {
                        return Err(RecsysError::invalid(format!("the range of \"{name}\" needs numbers min and max")));
                    };
                    let log = flag("log");
                    if min > max || (log && min <= 0.0) {
                        return Err(RecsysError::invalid(format!("the range of \"{name}\" is empty or, on a log scale, not positive: [{min}, {max}]")));
                    }
                    Dim::Range { min, max, log, int: flag("int") }
                }
                other => Dim::Choice(vec![other.clone()]),
            };
            dims.push((name.clone(), dim));
        }
        Ok(Space { dims })
    }

    /// One point drawn from the space.
    pub fn sample(&self, rng: &mut Rng) -> Value {
        let mut point = Map::new();
        for (name, dim) in &self.dims {
            let v = match dim {
                Dim::Choice(c) => c[rng.below(c.len() as u64) as usize].clone(),
                Dim::Range { min, max, log, int } => {
                    let u = rng.next_f64();
                    let x = if *log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
                    if *int { json!(x.round() as i64) } else { json!(x) }
                }
            };
            point.insert(name.clone(), v);
        }
        Value::Object(point)
    }
}

/// The rungs of successive halving (Jamieson & Talwalkar 2016) for `trials` configurations and
/// η = 3: (configurations kept, share of the users trained on), the last rung on all of them.
pub fn halving_rungs(trials: usize) -> Vec<(usize, f64)> {
    let mut counts = vec![trials.max(1)];
    while *counts.last().unwrap() > 1 {
        counts.push(counts.last().unwrap().div_ceil(3));
    }
    let r = counts.len();
    counts.into_iter().enumerate().map(|(i, c)| (c, 3f64.powi(i as i32 + 1 - r as i32).max(0.1))).collect()
}

/// The users of train and validation whose seeded hash falls under `share` (all when ≥ 1).
pub fn user_share(train: &Interactions, valid: &Interactions, share: f64, seed: i64) -> Result<(Interactions, Interactions)> {
    if share >= 1.0 {
        return Ok((train.clone(), valid.clone()));
    }
    let keep = |user: i64| {
        let mut r = Rng::new((user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed as u64);
        r.next_f64() < share
    };
    let pick = |d: &Interactions| -> Result<Interactions> {
        let (mut u, mut i, mut w) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..d.n_users() {
            if keep(d.user_ids[r]) {
                let (items, vals) = d.matrix.row(r);
                for (&c, &v) in items.iter().zip(vals) {
                    u.push(d.user_ids[r]);
                    i.push(d.item_ids[c as usize]);
                    w.push(v);
                }
            }
        }
        Interactions::from_triplets(&u, &i, &w)
    };
    Ok((pick(train)?, pick(valid)?))
}

/// What `algorithm => 'auto'` tries: each algorithm's defaults first, then points of its space;
/// then hybrids of every pair of the best HYBRID_TOP. EASE's `dropout` (DLAE) is left out: on
/// the validation splits of ML-100K and ml-latest-small no point with it beat plain EASE, so
/// it only took EASE's trials.
pub const PORTFOLIO: &[(&str, &str)] = &[
    ("ease", r#"{"lambda": {"min": 50, "max": 3000, "log": true}}"#),
    ("als", r#"{"factors": [64, 128], "regularization": {"min": 15, "max": 60, "log": true}, "alpha": {"min": 2, "max": 6, "log": true}, "reg_exponent": [0, 0.5, 1]}"#),
    ("rp3beta", r#"{"alpha": {"min": 0.4, "max": 1.2}, "beta": {"min": 0.2, "max": 0.8}, "k": [100, 200, 400]}"#),
    ("slim", r#"{"alpha": {"min": 0.02, "max": 0.5, "log": true}, "l1_ratio": {"min": 0.001, "max": 0.2, "log": true}, "k": [100, 300]}"#),
    ("item_knn", r#"{"k": [50, 100, 200, 400], "shrink": {"min": 0, "max": 50}}"#),
    ("user_knn", r#"{"k": [20, 50, 100, 200]}"#),
];

/// Hybrid weights tried for each pair (the first member is the better one).
pub const HYBRID_WEIGHTS: &[f64] = &[0.3, 0.5, 0.7];
/// How many of the best algorithms are paired with each other in hybrids (every pair of them).
pub const HYBRID_TOP: usize = 3;

/// The pairs of ranks (better first) among the best `top` of `n` algorithms, best pairs first.
pub fn hybrid_pairs(n: usize, top: usize) -> Vec<(usize, usize)> {
    let top = top.min(n);
    (0..top).flat_map(|a| (a + 1..top).map(move |b| (a, b))).collect()
}

/// A hybrid of two (algorithm, params) members with the first's weight `w`.
/// Members take no weighting of their own (the hybrid's applies to both): it is left out.
pub fn hybrid_of(a: (&str, &Value), b: (&str, &Value), w: f64) -> Value {
    let member = |p: &Value| {
        let mut p = p.clone();
        if let Some(o) = p.as_object_mut() {
            ["weighting", "bm25_k1", "bm25_b"].iter().for_each(|k| {
                o.remove(*k);
            });
        }
        p
    };
    let (a, b) = ((a.0, member(a.1)), (b.0, member(b.1)));
    json!({"members": [
        {"algorithm": a.0, "params": a.1, "weight": w},
        {"algorithm": b.0, "params": b.1, "weight": 1.0 - w}
    ]})
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

    /// Better values first (for sorting by this metric).
    pub fn order(self, a: f64, b: f64) -> std::cmp::Ordering {
        if self.better(a, b) {
            std::cmp::Ordering::Less
        } else if self.better(b, a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
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
    fn hybrids_pair_every_two_of_the_best_three() {
        assert_eq!(hybrid_pairs(6, 3), vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(hybrid_pairs(2, 3), vec![(0, 1)]);
        assert!(hybrid_pairs(1, 3).is_empty());
    }

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
    fn spaces_sample_their_ranges_and_halving_narrows() {
        let s = Space::parse(&json!({"lambda": {"min": 10, "max": 1000, "log": true}, "k": {"min": 1, "max": 9, "int": true}, "f": ["a", "b"], "x": 3})).unwrap();
        let mut rng = Rng::new(5);
        let points: Vec<Value> = (0..200).map(|_| s.sample(&mut rng)).collect();
        assert!(points.iter().all(|p| (10.0..=1000.0).contains(&p["lambda"].as_f64().unwrap()) && p["x"] == 3));
        assert!(points.iter().all(|p| p["k"].is_i64() && (1..=9).contains(&p["k"].as_i64().unwrap())));
        // log-uniform: about half the draws under the geometric middle (100)
        let low = points.iter().filter(|p| p["lambda"].as_f64().unwrap() < 100.0).count();
        assert!((70..130).contains(&low), "{low}");
        assert!(points.iter().any(|p| p["f"] == "a") && points.iter().any(|p| p["f"] == "b"));
        assert!(Space::parse(&json!({"a": {"min": 2, "max": 1}})).is_err());
        assert!(Space::parse(&json!({"a": {"min": 0, "max": 1, "log": true}})).is_err());
        assert!(Space::parse(&json!({"a": {"min": 0, "max": 1, "step": 2}})).is_err());
        assert!(grid_points(&json!({"a": {"min": 0, "max": 1}})).is_err());
        assert_eq!(halving_rungs(9), vec![(9, 1.0 / 9.0), (3, 1.0 / 3.0), (1, 1.0)]);
        assert_eq!(halving_rungs(1), vec![(1, 1.0)]);
        let mut effective = Vec::new();
        for (name, space) in PORTFOLIO {
            let space = Space::parse(&serde_json::from_str(space).unwrap()).unwrap();
            effective.push((*name, crate::engine::model::Spec::parse(name, &space.sample(&mut rng)).unwrap().1));
        }
        // a hybrid of two tuned members (their effective params) parses
        let h = hybrid_of((effective[0].0, &effective[0].1), (effective[1].0, &effective[1].1), 0.7);
        crate::engine::model::Spec::parse("hybrid", &h).unwrap();
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
