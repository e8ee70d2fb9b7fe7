//! Train/test splits of interaction rows, deterministic for a seed and independent of the order
//! in which the rows were read: per-user random hold-out, per-user temporal, leave-one-out, and a
//! global time cut-off.

use std::collections::BTreeMap;

use crate::engine::rng::Rng;
use crate::engine::{RecsysError, Result};

pub const METHODS: &[&str] = &["random", "temporal", "leave_one_out", "global_temporal"];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Random,
    Temporal,
    LeaveOneOut,
    /// Rows at or after the cut-off (seconds) are test; `None`: the time quantile that holds out
    /// `fraction` of the rows.
    GlobalTemporal(Option<f64>),
}

impl Method {
    pub fn parse(name: &str, cutoff: Option<f64>) -> Result<Method> {
        match name {
            "random" => Ok(Method::Random),
            "temporal" => Ok(Method::Temporal),
            "leave_one_out" => Ok(Method::LeaveOneOut),
            "global_temporal" => Ok(Method::GlobalTemporal(cutoff)),
            other => Err(RecsysError::invalid(format!("unknown split method \"{other}\""))
                .with_detail(format!("known methods: {}", METHODS.join(", ")))),
        }
    }

    pub fn needs_time(&self) -> bool {
        matches!(self, Method::Temporal | Method::GlobalTemporal(_))
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    /// A stable key for the row (its position in the read); only breaks exact ties.
    pub key: u64,
    pub user: i64,
    pub item: i64,
    /// Seconds; NULL times count as the oldest.
    pub time: Option<f64>,
}

fn held_out(n: usize, fraction: f64) -> usize {
    // round-half-up(fraction × n), and every user keeps at least one training row
    ((fraction * n as f64 + 0.5).floor() as usize).min(n - 1)
}

fn time_order(a: &Row, b: &Row) -> std::cmp::Ordering {
    let t = |r: &Row| r.time.unwrap_or(f64::NEG_INFINITY);
    t(a).total_cmp(&t(b)).then(a.item.cmp(&b.item)).then(a.key.cmp(&b.key))
}

pub fn check_fraction(fraction: f64) -> Result<()> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(RecsysError::invalid(format!("test_fraction must be between 0 and 1 (exclusive), got {fraction}")));
    }
    Ok(())
}

/// `true` for the rows that go to the test set, in the order of `rows`.
pub fn split(rows: &[Row], method: Method, fraction: f64, seed: i64) -> Result<Vec<bool>> {
    check_fraction(fraction)?;
    let mut test = vec![false; rows.len()];
    if let Method::GlobalTemporal(cutoff) = method {
        let cutoff = match cutoff {
            Some(c) => c,
            None => {
                let mut times: Vec<f64> = rows.iter().filter_map(|r| r.time).collect();
                if times.is_empty() {
                    return Ok(test);
                }
                times.sort_by(f64::total_cmp);
                times[(((1.0 - fraction) * times.len() as f64) as usize).min(times.len() - 1)]
            }
        };
        rows.iter().enumerate().for_each(|(k, r)| test[k] = r.time.is_some_and(|t| t >= cutoff));
        return Ok(test);
    }
    let mut by_user: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (k, r) in rows.iter().enumerate() {
        by_user.entry(r.user).or_default().push(k);
    }
    for (user, mut idx) in by_user {
        let n = idx.len();
        let chosen: Vec<usize> = match method {
            Method::Random if n > 2 => {
                // Canonical order first, so the draw does not depend on the scan order.
                idx.sort_by(|&a, &b| rows[a].item.cmp(&rows[b].item).then(time_order(&rows[a], &rows[b])));
                let mut rng = Rng::new((seed as u64) ^ (user as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
                for i in (1..n).rev() {
                    idx.swap(i, rng.below(i as u64 + 1) as usize);
                }
                idx[..held_out(n, fraction)].to_vec()
            }
            Method::Temporal if n > 2 => {
                idx.sort_by(|&a, &b| time_order(&rows[a], &rows[b]));
                idx[n - held_out(n, fraction)..].to_vec()
            }
            Method::LeaveOneOut if n >= 2 => {
                if rows[idx[0]].time.is_some() || idx.iter().any(|&k| rows[k].time.is_some()) {
                    idx.sort_by(|&a, &b| time_order(&rows[a], &rows[b]));
                    vec![idx[n - 1]]
                } else {
                    idx.sort_by(|&a, &b| rows[a].item.cmp(&rows[b].item).then(rows[a].key.cmp(&rows[b].key)));
                    let mut rng = Rng::new((seed as u64) ^ (user as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
                    vec![idx[rng.below(n as u64) as usize]]
                }
            }
            _ => Vec::new(),
        };
        chosen.into_iter().for_each(|k| test[k] = true);
    }
    Ok(test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(i64, i64, Option<f64>)]) -> Vec<Row> {
        spec.iter().enumerate().map(|(k, &(user, item, time))| Row { key: k as u64, user, item, time }).collect()
    }

    fn user_rows(user: i64, n: i64) -> Vec<(i64, i64, Option<f64>)> {
        (0..n).map(|i| (user, 100 + i, Some(i as f64))).collect()
    }

    #[test]
    fn random_holds_out_rounded_fraction_per_user() {
        let mut spec = user_rows(1, 10);
        spec.extend(user_rows(2, 2));
        spec.extend(user_rows(3, 3));
        let r = rows(&spec);
        let t = split(&r, Method::Random, 0.25, 42).unwrap();
        let count = |u: i64| r.iter().zip(&t).filter(|(row, &x)| row.user == u && x).count();
        assert_eq!(count(1), 3); // round-half-up(2.5) = 3
        assert_eq!(count(2), 0); // ≤ 2 interactions: train only
        assert_eq!(count(3), 1); // round-half-up(0.75) = 1
        assert_eq!(t, split(&r, Method::Random, 0.25, 42).unwrap());
        // the scan order does not matter
        let mut rev = r.clone();
        rev.reverse();
        let t_rev = split(&rev, Method::Random, 0.25, 42).unwrap();
        let chosen = |rs: &[Row], ts: &[bool]| {
            let mut v: Vec<(i64, i64)> = rs.iter().zip(ts).filter(|(_, &x)| x).map(|(r, _)| (r.user, r.item)).collect();
            v.sort();
            v
        };
        assert_eq!(chosen(&r, &t), chosen(&rev, &t_rev));
        // another seed, another draw (for a user with enough rows)
        let other = split(&rows(&user_rows(1, 40)), Method::Random, 0.5, 7).unwrap();
        assert_ne!(other, split(&rows(&user_rows(1, 40)), Method::Random, 0.5, 8).unwrap());
    }

    #[test]
    fn temporal_takes_the_latest_and_loo_one() {
        let r = rows(&[(1, 5, Some(3.0)), (1, 6, Some(1.0)), (1, 7, Some(2.0)), (1, 8, Some(4.0)), (2, 1, Some(1.0))]);
        assert_eq!(split(&r, Method::Temporal, 0.5, 1).unwrap(), vec![true, false, false, true, false]);
        assert_eq!(split(&r, Method::LeaveOneOut, 0.5, 1).unwrap(), vec![false, false, false, true, false]);
    }

    #[test]
    fn global_cutoff_and_quantile() {
        let r = rows(&[(1, 1, Some(1.0)), (1, 2, Some(2.0)), (2, 1, Some(3.0)), (2, 2, Some(4.0)), (3, 3, None)]);
        assert_eq!(split(&r, Method::GlobalTemporal(Some(3.0)), 0.5, 1).unwrap(), vec![false, false, true, true, false]);
        assert_eq!(split(&r, Method::GlobalTemporal(None), 0.25, 1).unwrap(), vec![false, false, false, true, false]);
    }

    #[test]
    fn bad_fraction_and_method() {
        let r = rows(&user_rows(1, 5));
        assert!(split(&r, Method::Random, 0.0, 1).is_err());
        assert!(split(&r, Method::Random, 1.0, 1).is_err());
        assert!(split(&r, Method::Random, f64::NAN, 1).is_err());
        assert!(Method::parse("kfold", None).unwrap_err().detail.unwrap().contains("leave_one_out"));
    }
}
