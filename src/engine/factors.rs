//! What every latent-factor model serves from: user and item factor matrices (row-major, k per
//! row), optional biases, and what is needed to fold a user in from their live history.
//!
//! A user whose current history is the one the model was trained on (same fingerprint) is served
//! from the stored user factors; a new user, or one with new behaviour, is folded in: their vector
//! is solved with the item factors fixed (the ALS normal equations for implicit models, a ridge
//! regression on rating residuals for explicit ones). PureSVD always projects the live history.

use serde_json::Value;

use crate::engine::format::{check_ids, corrupt, In, Out};
use crate::engine::interactions::{index_of, Csr, Interactions};
use crate::engine::knn::range_of;
use crate::engine::linalg::{cholesky_solve, dot, gram_f64, matvec};
use crate::engine::model::{Model, Request, Scored};
use crate::engine::recommender::Recommender;
use crate::engine::topk::top_k;
use crate::engine::{RecsysError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactorKind {
    Svd,
    BiasedMf,
    SvdPp,
    Als,
    Bpr,
}

impl FactorKind {
    pub fn name(self) -> &'static str {
        match self {
            FactorKind::Svd => "svd",
            FactorKind::BiasedMf => "biased_mf",
            FactorKind::SvdPp => "svdpp",
            FactorKind::Als => "als",
            FactorKind::Bpr => "bpr",
        }
    }

    pub fn from_name(name: &str) -> Option<FactorKind> {
        [FactorKind::Svd, FactorKind::BiasedMf, FactorKind::SvdPp, FactorKind::Als, FactorKind::Bpr]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// Rating-prediction models (trained on explicit ratings, scores are ratings).
    pub fn explicit(self) -> bool {
        matches!(self, FactorKind::BiasedMf | FactorKind::SvdPp)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    pub kind: FactorKind,
    pub k: usize,
    /// Users seen in training, ascending; row r of `users` belongs to `user_ids[r]`.
    pub user_ids: Vec<i64>,
    pub users: Vec<f32>,
    pub items: Vec<f32>,
    /// Per item (explicit models and BPR), else empty.
    pub item_bias: Vec<f32>,
    /// Per user (explicit models), else empty.
    pub user_bias: Vec<f32>,
    /// SVD++ implicit-feedback factors y_j (n_items × k), else empty.
    pub implicit: Vec<f32>,
    /// Global mean rating (explicit models).
    pub mean: f32,
    /// Per user: the fingerprint of the history the stored factors were trained on.
    pub fingerprints: Vec<u64>,
    /// Fold-in regularization, and for implicit models the confidence slope (c = 1 + alpha·w).
    pub regularization: f32,
    pub alpha: f32,
    /// Observed rating range (explicit models): predictions are clipped to it.
    pub range: (f32, f32),
    /// YᵀY of the item factors (derived, not stored): the shared part of every fold-in system.
    pub gram: Vec<f64>,
    /// ALS's frequency-scaled regularization (ν, s̄): a user's λ is λ·(s_u / s̄)^ν with s_u the
    /// confidence mass n_items + alpha·Σ|w| of their history; ν = 0 is plain λ.
    pub reg_scale: (f32, f64),
}

/// A user's vector for scoring: factors plus the user's bias (explicit models).
#[derive(Clone, Debug, PartialEq)]
pub struct UserVector {
    pub p: Vec<f32>,
    pub bias: f32,
    /// True when solved from the live history rather than read from the model.
    pub folded_in: bool,
}

/// Fingerprint of a history given as (item index, weight) sorted by item index.
pub fn fingerprint(history: &[(u32, f32)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &(i, w) in history {
        for b in i.to_le_bytes().into_iter().chain(w.to_bits().to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The fingerprint of every row of a user × item matrix (the histories a model was trained on).
pub fn fingerprints(m: &Csr) -> Vec<u64> {
    (0..m.n_rows())
        .map(|u| {
            let (cols, vals) = m.row(u);
            fingerprint(&cols.iter().copied().zip(vals.iter().copied()).collect::<Vec<_>>())
        })
        .collect()
}

impl Factors {
    pub fn n_items(&self) -> usize {
        self.items.len() / self.k.max(1)
    }

    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.k..(i + 1) * self.k]
    }

    pub fn user(&self, r: usize) -> &[f32] {
        &self.users[r * self.k..(r + 1) * self.k]
    }

    /// Fill the derived fields after fitting or decoding.
    pub fn with_gram(mut self) -> Self {
        self.gram = gram_f64(&self.items, self.k);
        self
    }

    /// c = 1 + alpha·|w|: a negative weight (a dislike) is preference 0 with that confidence,
    /// as ALS trains it.
    fn confidence(&self, w: f32) -> f64 {
        1.0 + self.alpha as f64 * w.abs() as f64
    }

    /// SVD++: |N(u)|^-1/2 Σ y_j over the history.
    fn implicit_term(&self, history: &[(u32, f32)]) -> Vec<f32> {
        let mut t = vec![0f32; self.k];
        if self.implicit.is_empty() || history.is_empty() {
            return t;
        }
        let scale = 1.0 / (history.len() as f32).sqrt();
        for &(j, _) in history {
            let y = &self.implicit[j as usize * self.k..(j as usize + 1) * self.k];
            t.iter_mut().zip(y).for_each(|(a, b)| *a += scale * b);
        }
        t
    }

    /// The implicit-feedback normal equations of a user with this history:
    /// A = YᵀY + Σ (c_j − 1) y_j y_jᵀ + λI.
    pub(crate) fn implicit_system(&self, history: &[(u32, f32)]) -> Vec<f64> {
        let k = self.k;
        let mut a = self.gram.clone();
        for &(j, w) in history {
            let y = self.item(j as usize);
            let c1 = self.confidence(w) - 1.0;
            for r in 0..k {
                let yr = c1 * y[r] as f64;
                for s in 0..k {
                    a[r * k + s] += yr * y[s] as f64;
                }
            }
        }
        let lambda = self.user_regularization(history);
        (0..k).for_each(|r| a[r * k + r] += lambda);
        a
    }

    /// The regularization of a user with this history (see `reg_scale`).
    fn user_regularization(&self, history: &[(u32, f32)]) -> f64 {
        let (nu, mean) = self.reg_scale;
        if nu == 0.0 {
            return self.regularization as f64;
        }
        let n_items = (self.items.len() / self.k.max(1)) as f64;
        let mass = n_items + self.alpha as f64 * history.iter().map(|h| h.1.abs() as f64).sum::<f64>();
        self.regularization as f64 * (mass / mean).powf(nu as f64)
    }

    /// Explicit models: features [q_j, 1], residual targets, ridge system A (k+1 square).
    fn explicit_system(&self, history: &[(u32, f32)], implicit: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let d = self.k + 1;
        let mut a = vec![0f64; d * d];
        let mut residuals = Vec::with_capacity(history.len());
        for &(j, r) in history {
            let q = self.item(j as usize);
            let e = r as f64 - self.mean as f64 - self.item_bias[j as usize] as f64 - dot(q, implicit) as f64;
            residuals.push(e);
            for s in 0..d {
                let fs = if s < self.k { q[s] as f64 } else { 1.0 };
                for t in 0..d {
                    let ft = if t < self.k { q[t] as f64 } else { 1.0 };
                    a[s * d + t] += fs * ft;
                }
            }
        }
        let lambda = self.regularization as f64 * history.len().max(1) as f64;
        (0..d).for_each(|s| a[s * d + s] += lambda);
        (a, residuals)
    }

    /// Solve the user's vector from a history (item index, weight), item factors fixed.
    fn fold_in(&self, history: &[(u32, f32)]) -> UserVector {
        let k = self.k;
        match self.kind {
            FactorKind::Svd => {
                let mut p = vec![0f32; k];
                history.iter().for_each(|&(j, w)| crate::engine::linalg::axpy(w, self.item(j as usize), &mut p));
                UserVector { p, bias: 0.0, folded_in: true }
            }
            FactorKind::Als | FactorKind::Bpr => {
                let a = self.implicit_system(history);
                let mut b = vec![0f64; k];
                for &(j, w) in history {
                    let c = if w > 0.0 { self.confidence(w) } else { 0.0 };
                    self.item(j as usize).iter().zip(b.iter_mut()).for_each(|(y, bi)| *bi += c * *y as f64);
                }
                let x = cholesky_solve(&a, &b).unwrap_or_else(|| vec![0.0; k]);
                UserVector { p: x.iter().map(|&v| v as f32).collect(), bias: 0.0, folded_in: true }
            }
            FactorKind::BiasedMf | FactorKind::SvdPp => {
                let implicit = self.implicit_term(history);
                let (a, residuals) = self.explicit_system(history, &implicit);
                let d = k + 1;
                let mut b = vec![0f64; d];
                for (&(j, _), e) in history.iter().zip(&residuals) {
                    let q = self.item(j as usize);
                    (0..k).for_each(|s| b[s] += e * q[s] as f64);
                    b[k] += e;
                }
                let x = cholesky_solve(&a, &b).unwrap_or_else(|| vec![0.0; d]);
                let p = (0..k).map(|s| x[s] as f32 + implicit[s]).collect();
                UserVector { p, bias: x[k] as f32, folded_in: true }
            }
        }
    }

    /// The vector to score a user with: stored when the live history is the trained one,
    /// folded in otherwise. `history` is (item index, weight) sorted by index, known items only.
    /// None for an empty history (the caller falls back to popularity).
    pub fn user_vector(&self, user_id: Option<i64>, history: &[(u32, f32)]) -> Option<UserVector> {
        if history.is_empty() {
            return None;
        }
        if self.kind != FactorKind::Svd {
            if let Some(r) = user_id.and_then(|u| index_of(&self.user_ids, u)) {
                let r = r as usize;
                if self.fingerprints[r] == fingerprint(history) {
                    // Stored vectors already include SVD++'s implicit term.
                    let p = self.user(r).to_vec();
                    let bias = self.user_bias.get(r).copied().unwrap_or(0.0);
                    return Some(UserVector { p, bias, folded_in: false });
                }
            }
        }
        Some(self.fold_in(history))
    }

    /// The model's score of item `i` for a user vector (a rating for explicit models).
    pub fn score(&self, u: &UserVector, i: usize) -> f32 {
        let mut s = [0f32];
        matvec(self.item(i), self.k, &u.p, &mut s);
        self.with_biases(u, i, s[0])
    }

    /// Every item's score for a user vector: one matrix-vector product (the same kernel as
    /// `score`, so the two agree exactly).
    pub fn score_all(&self, u: &UserVector) -> Vec<f32> {
        let mut s = vec![0f32; self.items.len() / self.k.max(1)];
        matvec(&self.items, self.k, &u.p, &mut s);
        s.iter_mut().enumerate().for_each(|(i, x)| *x = self.with_biases(u, i, *x));
        s
    }

    fn with_biases(&self, u: &UserVector, i: usize, dot: f32) -> f32 {
        let mut s = dot;
        if let Some(b) = self.item_bias.get(i) {
            s += b;
        }
        if self.kind.explicit() {
            s += self.mean + u.bias;
        }
        s
    }

    /// A predicted rating, clipped to the observed range (explicit models); a score otherwise.
    pub fn predict(&self, u: &UserVector, i: usize) -> f32 {
        let s = self.score(u, i);
        if self.kind.explicit() {
            s.clamp(self.range.0, self.range.1)
        } else {
            s
        }
    }

    /// Cold users of explicit models: the baseline μ + b_i.
    pub fn baseline(&self, i: usize) -> f32 {
        if self.kind.explicit() {
            (self.mean + self.item_bias[i]).clamp(self.range.0, self.range.1)
        } else {
            0.0
        }
    }

    /// How much each history item contributes to item `i`'s folded-in score, in history order.
    /// The contributions sum to the folded-in score minus the bias terms.
    pub fn explain(&self, history: &[(u32, f32)], i: usize) -> Vec<(u32, f32)> {
        let k = self.k;
        let qi = self.item(i);
        match self.kind {
            FactorKind::Svd => history.iter().map(|&(j, w)| (j, w * dot(self.item(j as usize), qi))).collect(),
            FactorKind::Als | FactorKind::Bpr => {
                let a = self.implicit_system(history);
                let rhs: Vec<f64> = qi.iter().map(|&v| v as f64).collect();
                let z = cholesky_solve(&a, &rhs).unwrap_or_else(|| vec![0.0; k]);
                history
                    .iter()
                    .map(|&(j, w)| {
                        let y = self.item(j as usize);
                        let zy: f64 = z.iter().zip(y).map(|(a, b)| a * *b as f64).sum();
                        (j, (self.confidence(w) * zy) as f32)
                    })
                    .collect()
            }
            FactorKind::BiasedMf | FactorKind::SvdPp => {
                let implicit = self.implicit_term(history);
                let (a, residuals) = self.explicit_system(history, &implicit);
                let mut rhs: Vec<f64> = qi.iter().map(|&v| v as f64).collect();
                rhs.push(1.0);
                let z = cholesky_solve(&a, &rhs).unwrap_or_else(|| vec![0.0; k + 1]);
                let scale = if self.implicit.is_empty() { 0.0 } else { 1.0 / (history.len() as f32).sqrt() };
                history
                    .iter()
                    .zip(&residuals)
                    .map(|(&(j, _), e)| {
                        let q = self.item(j as usize);
                        let zq: f64 = (0..k).map(|s| z[s] * q[s] as f64).sum::<f64>() + z[k];
                        let mut c = (e * zq) as f32;
                        if scale > 0.0 {
                            c += scale * dot(qi, &self.implicit[j as usize * k..(j as usize + 1) * k]);
                        }
                        (j, c)
                    })
                    .collect()
            }
        }
    }

    /// The n rows of `m` (row-major, k per row) most cosine-similar to row `r`, excluding `r`.
    pub fn nearest(m: &[f32], k: usize, r: usize, n: usize) -> Vec<(u32, f32)> {
        let target = &m[r * k..(r + 1) * k];
        if crate::engine::linalg::norm(target) == 0.0 {
            return Vec::new();
        }
        let rows = m.len() / k.max(1);
        top_k(
            (0..rows).filter(|&o| o != r).filter_map(|o| {
                let v = &m[o * k..(o + 1) * k];
                (crate::engine::linalg::norm(v) > 0.0).then(|| (o as u32, crate::engine::linalg::cosine(target, v)))
            }),
            n,
        )
    }
}

impl Factors {
    pub fn load(r: &In, kind: FactorKind, n_items: usize) -> Result<Factors> {
        let user_ids = r.i64s("user_ids")?;
        check_ids(&user_ids, "user ids")?;
        let n_users = user_ids.len();
        let (items, rows, k) = r.matrix("item_factors")?;
        if rows != n_items || k == 0 {
            return Err(corrupt("item_factors do not match the catalogue"));
        }
        let users = r.f32s("user_factors", Some(&[n_users, k]))?;
        let optional = |name: &str, shape: &[usize]| {
            if r.has(name) {
                r.f32s(name, Some(shape))
            } else {
                Ok(Vec::new())
            }
        };
        let item_bias = optional("item_bias", &[n_items])?;
        let user_bias = optional("user_bias", &[n_users])?;
        let implicit = optional("implicit_factors", &[n_items, k])?;
        let fingerprints = r.u64s("fingerprints")?;
        if fingerprints.len() != n_users
            || (kind.explicit() && (item_bias.is_empty() || user_bias.is_empty()))
        {
            return Err(corrupt("factor matrices"));
        }
        Ok(Factors {
            kind,
            k,
            user_ids,
            users,
            items,
            item_bias,
            user_bias,
            implicit,
            mean: r.f32("mean")?,
            fingerprints,
            regularization: r.f32("regularization")?,
            alpha: r.f32("alpha")?,
            range: range_of(r)?,
            gram: Vec::new(),
            reg_scale: match r.get("reg_exponent") {
                Ok(v) => (v.as_f64().ok_or_else(|| corrupt("state \"reg_exponent\" is not a number"))? as f32, r.get("reg_mean")?.as_f64().filter(|m| *m > 0.0).ok_or_else(|| corrupt("state \"reg_mean\" is not a positive number"))?),
                Err(_) => (0.0, 1.0),
            },
        }
        .with_gram())
    }
}

/// Factor matrices trained elsewhere (e.g. by implicit), completed from the live data `data`:
/// ids in any order (rows are sorted by id here), each user's fingerprint from their current
/// history (so a user whose rows are unchanged is served the imported vector, anyone else is
/// folded in), fold-in settings from the state or `fold_in` (regularization, alpha), mean and
/// range from the data when the file has none. Returns the sorted item ids with the factors.
pub fn import(r: &In, kind: FactorKind, fold_in: (f32, f32), data: &Interactions) -> Result<(Vec<i64>, Factors)> {
    let bad = |what: String| RecsysError::invalid(format!("cannot import the model file: {what}"));
    let item_ids = r.i64s("item_ids")?;
    let user_ids = r.i64s("user_ids")?;
    let (items, n_items, k) = r.matrix("item_factors")?;
    let (users, n_users, ku) = r.matrix("user_factors")?;
    if n_items != item_ids.len() || n_users != user_ids.len() || ku != k || k == 0 {
        return Err(bad(format!(
            "item_factors is {n_items} x {k} for {} item_ids, user_factors {n_users} x {ku} for {} user_ids",
            item_ids.len(),
            user_ids.len()
        )));
    }
    let per_row = |name: &str, rows: usize, width: usize| -> Result<Vec<f32>> {
        if r.has(name) {
            r.f32s(name, Some(&if width == 1 { vec![rows] } else { vec![rows, width] }))
        } else {
            Ok(Vec::new())
        }
    };
    let (item_bias, user_bias, implicit) = (per_row("item_bias", n_items, 1)?, per_row("user_bias", n_users, 1)?, per_row("implicit_factors", n_items, k)?);
    if kind.explicit() && (item_bias.is_empty() || user_bias.is_empty()) {
        return Err(bad(format!("{} needs item_bias and user_bias", kind.name())));
    }
    let (item_order, user_order) = (sorted_unique(&item_ids, "item_ids").map_err(bad)?, sorted_unique(&user_ids, "user_ids").map_err(bad)?);
    let rows = |v: &[f32], order: &[usize], width: usize| -> Vec<f32> {
        if v.is_empty() {
            return Vec::new();
        }
        order.iter().flat_map(|&o| v[o * width..(o + 1) * width].iter().copied()).collect()
    };
    let sorted_items: Vec<i64> = item_order.iter().map(|&o| item_ids[o]).collect();
    let sorted_users: Vec<i64> = user_order.iter().map(|&o| user_ids[o]).collect();
    // Each user's live history over the file's catalogue, as serving sees it.
    let to_model: Vec<Option<u32>> = data.item_ids.iter().map(|&id| index_of(&sorted_items, id)).collect();
    let fingerprints = sorted_users
        .iter()
        .map(|&u| match index_of(&data.user_ids, u) {
            None => 0,
            Some(row) => {
                let (cols, vals) = data.matrix.row(row as usize);
                let mut h: Vec<(u32, f32)> = cols.iter().zip(vals).filter_map(|(&c, &w)| to_model[c as usize].map(|i| (i, w))).collect();
                h.sort_unstable_by_key(|p| p.0);
                fingerprint(&h)
            }
        })
        .collect();
    let values = &data.matrix.values;
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64;
    let observed = (values.iter().copied().fold(f32::INFINITY, f32::min), values.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    let scalar = |key: &str, default: f32| r.state.get(key).and_then(Value::as_f64).map_or(default, |v| v as f32);
    let range = if r.state.contains_key("range") { range_of(r)? } else if values.is_empty() { (0.0, 0.0) } else { observed };
    let factors = Factors {
        kind,
        k,
        user_ids: sorted_users,
        users: rows(&users, &user_order, k),
        items: rows(&items, &item_order, k),
        item_bias: rows(&item_bias, &item_order, 1),
        user_bias: rows(&user_bias, &user_order, 1),
        implicit: rows(&implicit, &item_order, k),
        mean: scalar("mean", mean as f32),
        fingerprints,
        regularization: scalar("regularization", fold_in.0),
        alpha: scalar("alpha", fold_in.1),
        range,
        gram: Vec::new(),
            reg_scale: (0.0, 1.0),
    }
    .with_gram();
    if !factors.items.iter().chain(&factors.users).all(|x| x.is_finite()) {
        return Err(bad("the factors hold NaN or infinite values".to_string()));
    }
    Ok((sorted_items, factors))
}

/// The order that sorts `ids`, refusing duplicates.
fn sorted_unique(ids: &[i64], what: &str) -> std::result::Result<Vec<usize>, String> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_unstable_by_key(|&o| ids[o]);
    match order.windows(2).find(|w| ids[w[0]] == ids[w[1]]) {
        Some(w) => Err(format!("{what} has {} twice", ids[w[0]])),
        None => Ok(order),
    }
}

impl Recommender for Factors {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// A user with a stored vector whose history is unchanged is served it; anyone else with
    /// history the model knows is folded in.
    fn score(&self, _: &Model, req: &Request, history: &[(u32, f32)]) -> Result<Option<Scored>> {
        Ok(self.user_vector(req.user_id, history).map(|u| Scored::all(self.score_all(&u))))
    }

    /// With no history to place the user, a rating model predicts μ + b_i.
    fn predict(&self, _: &Model, req: &Request, history: &[(u32, f32)], i: usize) -> Result<Option<f32>> {
        Ok(match self.user_vector(req.user_id, history) {
            Some(u) => Some(Factors::score(self, &u, i)),
            None if self.kind.explicit() => Some(self.baseline(i)),
            None => None,
        })
    }

    fn contributions(&self, _: &Model, _: &Request, history: &[(u32, f32)], i: usize) -> Result<Vec<(u32, f32)>> {
        Ok(if history.is_empty() { Vec::new() } else { self.explain(history, i) })
    }

    fn similar_items(&self, _: &Model, item: Option<usize>, n: usize) -> Result<Vec<(u32, f32)>> {
        Ok(item.map(|i| Factors::nearest(&self.items, self.k, i, n)).unwrap_or_default())
    }

    fn similar_users(&self, user_id: i64, n: usize) -> Result<Vec<(i64, f32)>> {
        Ok(match index_of(&self.user_ids, user_id) {
            None => Vec::new(),
            Some(r) => Factors::nearest(&self.users, self.k, r as usize, n).into_iter().map(|(o, s)| (self.user_ids[o as usize], s)).collect(),
        })
    }

    fn factors(&self) -> Option<&Factors> {
        Some(self)
    }

    fn predicts_ratings(&self) -> bool {
        self.kind.explicit()
    }

    /// The cosine of the item factors (negative: 0).
    fn pair_similarities(&self, items: &[u32]) -> Option<Vec<f32>> {
        let norm = |i: u32| dot(self.item(i as usize), self.item(i as usize)).sqrt().max(1e-12);
        let norms: Vec<f32> = items.iter().map(|&i| norm(i)).collect();
        let mut sim = Vec::with_capacity(items.len() * items.len());
        for (a, &i) in items.iter().enumerate() {
            for (b, &j) in items.iter().enumerate() {
                sim.push((dot(self.item(i as usize), self.item(j as usize)) / (norms[a] * norms[b])).clamp(0.0, 1.0));
            }
        }
        Some(sim)
    }

    /// ALS learned dislikes as preference 0 with confidence; its fold-in does the same.
    fn uses_negative_weights(&self) -> bool {
        self.kind.explicit() || self.kind == FactorKind::Als
    }

    /// Its part of the model file: `user_ids`, `user_factors` (f32 [n_users, k]),
    /// `item_factors` (f32 [n_items, k]), `fingerprints` (u64 [n_users]: the history each stored
    /// user vector was trained on), and where the model has them `item_bias`, `user_bias`,
    /// `implicit_factors` (SVD++'s y_j, [n_items, k]); state: regularization and alpha (fold-in),
    /// mean and range (rating models).
    fn store<'a>(&'a self, out: &mut Out<'_, 'a>) -> Result<()> {
        let (n_users, n_items) = (self.user_ids.len(), self.n_items());
        out.i64s("user_ids", &self.user_ids);
        out.f32s("user_factors", &[n_users, self.k], &self.users);
        out.f32s("item_factors", &[n_items, self.k], &self.items);
        out.u64s("fingerprints", &self.fingerprints);
        if !self.item_bias.is_empty() {
            out.f32s("item_bias", &[n_items], &self.item_bias);
        }
        if !self.user_bias.is_empty() {
            out.f32s("user_bias", &[n_users], &self.user_bias);
        }
        if !self.implicit.is_empty() {
            out.f32s("implicit_factors", &[n_items, self.k], &self.implicit);
        }
        out.set("regularization", self.regularization);
        out.set("alpha", self.alpha);
        if self.reg_scale.0 != 0.0 {
            out.set("reg_exponent", self.reg_scale.0);
            out.set("reg_mean", self.reg_scale.1);
        }
        out.set("mean", self.mean);
        out.set("range", vec![self.range.0, self.range.1]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(kind: FactorKind) -> Factors {
        // 3 items in 2 dimensions; one user trained on history [(0, 1.0)].
        let items = vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let explicit = kind.explicit();
        Factors {
            kind,
            k: 2,
            user_ids: vec![7],
            users: vec![0.5, 0.25],
            items,
            item_bias: if explicit { vec![0.1, -0.1, 0.0] } else { Vec::new() },
            user_bias: if explicit { vec![0.2] } else { Vec::new() },
            implicit: Vec::new(),
            mean: if explicit { 3.5 } else { 0.0 },
            fingerprints: vec![fingerprint(&[(0, 1.0)])],
            regularization: 0.1,
            alpha: 2.0,
            range: (1.0, 5.0),
            gram: Vec::new(),
            reg_scale: (0.0, 1.0),
        }
        .with_gram()
    }

    #[test]
    fn stored_vector_when_history_unchanged_else_fold_in() {
        let m = model(FactorKind::Als);
        let u = m.user_vector(Some(7), &[(0, 1.0)]).unwrap();
        assert!(!u.folded_in);
        assert_eq!(u.p, vec![0.5, 0.25]);
        let v = m.user_vector(Some(7), &[(0, 1.0), (1, 1.0)]).unwrap();
        assert!(v.folded_in);
        // The folded-in vector solves (YᵀY + Σ(c−1)yyᵀ + λI) x = Σ c y.
        let a = m.implicit_system(&[(0, 1.0), (1, 1.0)]);
        let b = [3.0f64, 3.0];
        for r in 0..2 {
            let ax: f64 = (0..2).map(|s| a[r * 2 + s] * v.p[s] as f64).sum();
            assert!((ax - b[r]).abs() < 1e-5, "{ax} vs {}", b[r]);
        }
        assert!(m.user_vector(Some(7), &[]).is_none());
        assert!(m.user_vector(None, &[(2, 1.0)]).unwrap().folded_in);
    }

    #[test]
    fn als_explanations_sum_to_the_folded_score() {
        let m = model(FactorKind::Als);
        let h = [(0u32, 1.0f32), (1, 3.0)];
        let u = m.fold_in(&h);
        let total: f32 = m.explain(&h, 2).iter().map(|c| c.1).sum();
        assert!((total - m.score(&u, 2)).abs() < 1e-5);
    }

    #[test]
    fn explicit_predictions_are_clipped_and_explained() {
        let m = model(FactorKind::BiasedMf);
        let h = [(0u32, 5.0f32), (1, 1.0)];
        let u = m.fold_in(&h);
        let raw = m.score(&u, 0);
        assert_eq!(m.predict(&u, 0), raw.clamp(1.0, 5.0));
        let mut hot = u.clone();
        hot.bias = 100.0;
        assert_eq!(m.predict(&hot, 0), 5.0);
        // explanation + biases = score
        let total: f32 = m.explain(&h, 2).iter().map(|c| c.1).sum();
        let p_part = m.score(&u, 2) - m.mean - m.item_bias[2];
        assert!((total - p_part).abs() < 1e-4, "{total} vs {p_part}");
        assert_eq!(m.baseline(1), 3.4);
    }

    #[test]
    fn svd_projects_the_live_history() {
        let m = model(FactorKind::Svd);
        let u = m.user_vector(Some(7), &[(0, 1.0)]).unwrap();
        assert_eq!(u.p, vec![1.0, 0.0]);
        let total: f32 = m.explain(&[(0, 1.0), (1, 2.0)], 2).iter().map(|c| c.1).sum();
        assert!((total - (0.6 + 1.6)).abs() < 1e-6);
    }

    #[test]
    fn nearest_by_cosine() {
        let m = model(FactorKind::Als);
        let got = Factors::nearest(&m.items, 2, 2, 5);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 0]);
        assert!((got[0].1 - 0.8).abs() < 1e-6);
    }
}
