//! Hybrid models: several member models trained on the same data, their scores normalised per
//! member and summed with weights (score fusion), or combined by weighted reciprocal rank.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::engine::format::{corrupt, In, Out};
use crate::engine::interactions::Interactions;
use crate::engine::model::{self, Model, Request, Scored, Spec};
use crate::engine::neural::DeviceChoice;
use crate::engine::params::Params;
use crate::engine::recommender::{unsupported, Recommender, Trainer};
use crate::engine::topk::top_k;
use crate::engine::{Progress, RecsysError, Result};

/// Reciprocal-rank constant (Cormack et al. 2009).
pub const RRF_K: f32 = 60.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusion {
    /// Each member's scores as z-scores over the items it reached; weighted sum.
    Score,
    /// Σ weight / (60 + rank) over the members' rankings.
    Rank,
}

impl Fusion {
    pub fn name(self) -> &'static str {
        match self {
            Fusion::Score => "score",
            Fusion::Rank => "rank",
        }
    }

    pub fn from_name(name: &str) -> Option<Fusion> {
        [Fusion::Score, Fusion::Rank].into_iter().find(|f| f.name() == name)
    }

    pub fn from_code(c: u64) -> Option<Fusion> {
        match c {
            0 => Some(Fusion::Score),
            1 => Some(Fusion::Rank),
            _ => None,
        }
    }
}

/// A member as the params name it: an algorithm, its own params, a weight.
#[derive(Debug)]
pub struct MemberSpec<S> {
    pub algorithm: String,
    pub spec: S,
    pub weight: f32,
}

/// Read `members` (an array of {"algorithm", "params", "weight"}) and `fusion`; `parse` checks
/// one member's algorithm and params and returns its spec and effective params.
pub fn parse_params<S>(
    p: &mut Params,
    parse: impl Fn(&str, &Value) -> Result<(S, Value)>,
) -> Result<(Vec<MemberSpec<S>>, Fusion)> {
    let fusion = match p.choice("fusion", "score", &["score", "rank"])? {
        "rank" => Fusion::Rank,
        _ => Fusion::Score,
    };
    let example = "for example '{\"members\": [{\"algorithm\": \"ease\", \"weight\": 0.7}, {\"algorithm\": \"als\", \"weight\": 0.3}]}'";
    let list = match p.raw("members") {
        Some(Value::Array(a)) if a.len() >= 2 && a.len() <= 8 => a,
        _ => {
            return Err(RecsysError::invalid("parameter \"members\" of algorithm \"hybrid\" must be an array of 2 to 8 member models")
                .with_hint(example))
        }
    };
    let mut members = Vec::with_capacity(list.len());
    let mut effective = Vec::with_capacity(list.len());
    for (n, m) in list.iter().enumerate() {
        let Value::Object(o) = m else {
            return Err(RecsysError::invalid(format!("hybrid member {} must be a JSON object", n + 1)).with_hint(example));
        };
        if let Some(k) = o.keys().find(|k| !["algorithm", "params", "weight"].contains(&k.as_str())) {
            return Err(RecsysError::invalid(format!("unknown key \"{k}\" in hybrid member {}", n + 1))
                .with_detail("a member has algorithm, params and weight"));
        }
        let Some(algorithm) = o.get("algorithm").and_then(Value::as_str) else {
            return Err(RecsysError::invalid(format!("hybrid member {} needs an \"algorithm\"", n + 1)).with_hint(example));
        };
        if algorithm == "hybrid" {
            return Err(RecsysError::invalid("a hybrid member cannot itself be a hybrid"));
        }
        let weight = match o.get("weight") {
            None | Some(Value::Null) => 1.0,
            Some(w) => match w.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 && x <= 1e6 => x,
                _ => return Err(RecsysError::invalid(format!("weight of hybrid member {} must be a number above 0, got {w}", n + 1))),
            },
        };
        let (spec, params) = parse(algorithm, o.get("params").unwrap_or(&Value::Null))
            .map_err(|e| RecsysError { message: format!("hybrid member {}: {}", n + 1, e.message), ..e })?;
        effective.push(json!({"algorithm": algorithm, "params": params, "weight": weight}));
        members.push(MemberSpec { algorithm: algorithm.to_string(), spec, weight: weight as f32 });
    }
    p.set("members", Value::Array(effective));
    Ok((members, fusion))
}

/// One member's answer for a request, as the hybrid sees it.
pub struct MemberScores<'a> {
    pub weight: f32,
    /// Scores of the trained items, and which of them the member reached.
    pub scores: &'a [f32],
    pub reached: &'a [bool],
    /// Scores of eligible untrained items (text models).
    pub cold: &'a [(i64, f32)],
}

/// One member's scores mapped onto a common scale: (value per trained item, value per cold
/// item id, value of an item the member did not reach).
fn normalise(fusion: Fusion, m: &MemberScores, item_ids: &[i64]) -> (Vec<f32>, HashMap<i64, f32>, f32) {
    let values = || m.scores.iter().zip(m.reached).filter(|p| *p.1).map(|p| *p.0).chain(m.cold.iter().map(|c| c.1));
    let count = values().count();
    if count == 0 {
        return (vec![0.0; m.scores.len()], HashMap::new(), 0.0);
    }
    match fusion {
        Fusion::Score => {
            let mean = values().map(f64::from).sum::<f64>() / count as f64;
            let var = values().map(|v| (f64::from(v) - mean).powi(2)).sum::<f64>() / count as f64;
            let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
            let z = |v: f32| ((f64::from(v) - mean) / sd) as f32;
            let floor = values().map(z).fold(f32::INFINITY, f32::min);
            let trained = m.scores.iter().zip(m.reached).map(|(&s, &r)| if r { z(s) } else { floor }).collect();
            (trained, m.cold.iter().map(|&(id, s)| (id, z(s))).collect(), floor)
        }
        Fusion::Rank => {
            // Rank reached and cold items together: score desc, then item id asc.
            let mut all: Vec<(f32, i64, Option<usize>)> = m
                .scores
                .iter()
                .zip(m.reached)
                .enumerate()
                .filter(|p| *p.1 .1)
                .map(|(i, (&s, _))| (s, item_ids[i], Some(i)))
                .chain(m.cold.iter().map(|&(id, s)| (s, id, None)))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut trained = vec![0.0; m.scores.len()];
            let mut cold = HashMap::new();
            for (r, (_, id, i)) in all.into_iter().enumerate() {
                let v = 1.0 / (RRF_K + r as f32 + 1.0);
                match i {
                    Some(i) => trained[i] = v,
                    None => {
                        cold.insert(id, v);
                    }
                }
            }
            (trained, cold, 0.0)
        }
    }
}

/// The fused scores of the trained items, which items any member reached, and the fused scores
/// of the cold items any member scored (sorted by id).
pub fn fuse(fusion: Fusion, members: &[MemberScores], item_ids: &[i64]) -> (Vec<f32>, Vec<bool>, Vec<(i64, f32)>) {
    let n = item_ids.len();
    let mut total = vec![0f32; n];
    let mut reached = vec![false; n];
    let parts: Vec<_> = members.iter().map(|m| normalise(fusion, m, item_ids)).collect();
    for (m, (trained, _, _)) in members.iter().zip(&parts) {
        for i in 0..n {
            total[i] += m.weight * trained[i];
            reached[i] |= m.reached[i];
        }
    }
    let mut cold_ids: Vec<i64> = members.iter().flat_map(|m| m.cold.iter().map(|c| c.0)).collect();
    cold_ids.sort_unstable();
    cold_ids.dedup();
    let cold = cold_ids
        .into_iter()
        .map(|id| (id, members.iter().zip(&parts).map(|(m, (_, c, floor))| m.weight * c.get(&id).copied().unwrap_or(*floor)).sum()))
        .collect();
    (total, reached, cold)
}

/// A hybrid's training request: its members' specs and the fusion.
#[derive(Debug)]
pub struct HybridSpec {
    pub members: Vec<MemberSpec<Spec>>,
    pub fusion: Fusion,
}

impl HybridSpec {
    pub fn from_params(p: &mut Params) -> Result<HybridSpec> {
        let (members, fusion) = parse_params(p, Spec::parse_member)?;
        Ok(HybridSpec { members, fusion })
    }
}

impl Trainer for HybridSpec {
    fn needs_ratings(&self) -> bool {
        self.members.iter().any(|m| m.spec.needs_ratings())
    }

    fn rating_column_needed(&self) -> Option<&'static str> {
        self.members.iter().find_map(|m| m.spec.rating_column_needed())
    }

    fn needs_time(&self) -> bool {
        self.members.iter().any(|m| m.spec.needs_time())
    }

    fn needs_item_text(&self) -> bool {
        self.members.iter().any(|m| m.spec.needs_item_text())
    }

    fn is_neural(&self) -> bool {
        self.members.iter().any(|m| m.spec.is_neural())
    }

    fn memory_estimate(&self, data: &Interactions, threads: usize) -> usize {
        self.members.iter().map(|m| m.spec.memory_estimate(data, threads)).sum()
    }

    fn fit(&self, data: &Interactions, device: DeviceChoice, pool: &rayon::ThreadPool, progress: &mut dyn Progress) -> Result<Box<dyn Recommender>> {
        let members = self.members.iter().map(|m| Ok((m.weight, m.spec.fit(data, device, pool, progress)?))).collect::<Result<_>>()?;
        Ok(Box::new(Hybrid { members, fusion: self.fusion }))
    }
}

/// Member models (with their weights) trained on the same data, so on the same catalogue.
#[derive(Debug, PartialEq)]
pub struct Hybrid {
    pub members: Vec<(f32, Model)>,
    pub fusion: Fusion,
}

impl Hybrid {
    /// From a model file: each member's part under its prefix, over the hybrid's catalogue.
    pub fn load(r: &In, item_ids: &[i64], popularity: &[f32]) -> Result<Hybrid> {
        let fusion = Fusion::from_name(r.str("fusion")?).ok_or_else(|| corrupt("hybrid fusion"))?;
        let listed = r.get("members")?.as_array().ok_or_else(|| corrupt("hybrid members"))?;
        let members = listed
            .iter()
            .map(|m| {
                let field = |k: &str| m.get(k).ok_or_else(|| corrupt(&format!("hybrid member {k}")));
                let algorithm = field("algorithm")?.as_str().filter(|a| *a != "hybrid").ok_or_else(|| corrupt("hybrid member algorithm"))?;
                let weight = field("weight")?.as_f64().ok_or_else(|| corrupt("hybrid member weight"))? as f32;
                let prefix = field("prefix")?.as_str().ok_or_else(|| corrupt("hybrid member prefix"))?;
                let state = field("state")?.as_object().ok_or_else(|| corrupt("hybrid member state"))?;
                let algorithm = model::load(algorithm, &In::new_at(r, prefix, state), item_ids, popularity)?;
                Ok((weight, Model { item_ids: item_ids.to_vec(), popularity: popularity.to_vec(), algorithm, params: Value::Null, weighting: Default::default() }))
            })
            .collect::<Result<Vec<_>>>()?;
        if members.len() < 2 {
            return Err(corrupt("hybrid members"));
        }
        Ok(Hybrid { members, fusion })
    }
}

impl Recommender for Hybrid {
    fn name(&self) -> &'static str {
        "hybrid"
    }

    /// Each member answers for itself (a member that cannot place the user gives popularity).
    /// The first member's that has one.
    fn pair_similarities(&self, items: &[u32]) -> Option<Vec<f32>> {
        self.members.iter().find_map(|(_, m)| m.algorithm.pair_similarities(items))
    }

    fn scores_unknown_history(&self) -> bool {
        true
    }

    fn score(&self, m: &Model, req: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        let parts: Vec<(f32, Scored)> = self.members.iter().map(|(w, member)| Ok((*w, member.score(req, history)?))).collect::<Result<_>>()?;
        let members: Vec<MemberScores> =
            parts.iter().map(|(w, s)| MemberScores { weight: *w, scores: &s.scores, reached: &s.reached, cold: &s.cold }).collect();
        let (scores, reached, cold) = fuse(self.fusion, &members, &m.item_ids);
        Ok(Some(Scored { scores, reached, cold, placed: parts.iter().any(|p| p.1.placed) }))
    }

    fn predict(&self, m: &Model, req: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        if history.is_empty() {
            return Ok(None);
        }
        Ok(self.score(m, req, history)?.map(|s| s.scores[i]))
    }

    /// Each member's positive parts as shares of its own total, times its weight, summed.
    fn explain_items(&self, _: &Model, req: &Request, history: &[(u32, f32)], targets: &[Option<usize>]) -> Result<Vec<Vec<(u32, f32)>>> {
        let member_parts = self
            .members
            .iter()
            .map(|(w, member)| Ok((*w, member.algorithm.explain_items(member, req, history, targets)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok((0..targets.len())
            .map(|t| {
                let mut total: HashMap<u32, f32> = HashMap::new();
                for (w, parts) in &member_parts {
                    let parts = top_k(parts[t].iter().copied(), usize::MAX);
                    let sum: f32 = parts.iter().map(|p| p.1.max(0.0)).sum();
                    for &(j, c) in parts.iter().filter(|p| p.1 > 0.0) {
                        *total.entry(j).or_default() += w * c / sum;
                    }
                }
                total.into_iter().filter(|p| p.1 > 0.0).collect()
            })
            .collect())
    }

    /// The highest-weighted member that has item similarities answers for the hybrid.
    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        let mut by_weight: Vec<&(f32, Model)> = self.members.iter().collect();
        by_weight.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, member) in by_weight {
            match member.algorithm.similar_items(member, item, n) {
                Err(e) if e.kind == crate::engine::ErrorKind::Unsupported => continue,
                answer => return answer,
            }
        }
        Err(unsupported("similar_items", "hybrid", "add an item_knn, ease, content or factor member"))
    }

    fn reads_item_text(&self) -> bool {
        self.members.iter().any(|m| m.1.reads_item_text())
    }

    /// Each member's arrays under `members.<i>.`, and in the state the fusion and each
    /// member's algorithm, weight, prefix and state.
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        out.set("fusion", self.fusion.name());
        let mut members = Vec::new();
        for (i, (weight, m)) in self.members.iter().enumerate() {
            let mut part = out.nested(&format!("members.{i}."));
            m.algorithm.store(&mut part)?;
            let prefix = part.prefix().to_string();
            members.push(json!({"algorithm": m.algorithm_name(), "weight": weight, "prefix": prefix, "state": part.state}));
        }
        out.set("members", members);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_fusion_normalises_each_member() {
        // Member a ranks 1 > 0 > 2 on a large scale, b ranks 2 > 1 > 0 on a small one.
        let a = MemberScores { weight: 1.0, scores: &[100.0, 300.0, 0.0], reached: &[true; 3], cold: &[] };
        let b = MemberScores { weight: 1.0, scores: &[0.0, 0.01, 0.02], reached: &[true; 3], cold: &[] };
        let (s, r, _) = fuse(Fusion::Score, &[a, b], &[10, 11, 12]);
        assert!(r.iter().all(|&x| x));
        // z-scores: a = (-0.27, 1.34, -1.07), b = (-1.22, 0, 1.22): item 11 first, 12 last... close
        assert!(s[1] > s[0] && s[1] > s[2], "{s:?}");
        assert!((s.iter().sum::<f32>()).abs() < 1e-5);
    }

    #[test]
    fn weights_and_unreached_items() {
        let a = MemberScores { weight: 3.0, scores: &[1.0, 0.0, 0.0], reached: &[true, false, false], cold: &[] };
        let b = MemberScores { weight: 1.0, scores: &[0.0, 1.0, 2.0], reached: &[true; 3], cold: &[(99, 5.0)] };
        let (s, r, cold) = fuse(Fusion::Rank, &[a, b], &[10, 11, 12]);
        assert_eq!(r, vec![true; 3]);
        // a: item 10 rank 1; b: 99 rank 1, 12 rank 2, 11 rank 3, 10 rank 4
        assert!((s[0] - (3.0 / 61.0 + 1.0 / 64.0)).abs() < 1e-7);
        assert!((s[2] - 1.0 / 62.0).abs() < 1e-7);
        assert_eq!(cold.len(), 1);
        assert!((cold[0].1 - 1.0 / 61.0).abs() < 1e-7);
        // a member that reached nothing adds nothing
        let none = MemberScores { weight: 1.0, scores: &[0.0; 3], reached: &[false; 3], cold: &[] };
        let one = MemberScores { weight: 1.0, scores: &[3.0, 2.0, 1.0], reached: &[true; 3], cold: &[] };
        let (s, _, _) = fuse(Fusion::Score, &[none, one], &[10, 11, 12]);
        assert!(s[0] > s[1] && s[1] > s[2]);
    }
}
