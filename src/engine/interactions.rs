//! The user×item interaction matrix in CSR form, with dense index maps for the external ids.
//! Ids are sorted ascending, so index order is id order everywhere in the engine.

use crate::engine::{RecsysError, Result};

/// Compressed sparse rows: row r holds `indices[indptr[r]..indptr[r+1]]` (ascending) and values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Csr {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
    pub n_cols: usize,
}

impl Csr {
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// The entries whose value passes `keep`, same shape.
    pub fn filtered(&self, keep: impl Fn(f32) -> bool) -> Csr {
        let mut out = Csr { indptr: Vec::with_capacity(self.indptr.len()), indices: Vec::new(), values: Vec::new(), n_cols: self.n_cols };
        out.indptr.push(0);
        for r in 0..self.n_rows() {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                if keep(v) {
                    out.indices.push(c);
                    out.values.push(v);
                }
            }
            out.indptr.push(out.indices.len());
        }
        out
    }

    /// The row of every stored entry (entry p belongs to row `owners()[p]`).
    pub fn owners(&self) -> Vec<u32> {
        let mut owner = vec![0u32; self.nnz()];
        for r in 0..self.n_rows() {
            owner[self.indptr[r]..self.indptr[r + 1]].iter_mut().for_each(|o| *o = r as u32);
        }
        owner
    }

    /// The transpose (column-major view as another CSR), rows sorted by construction.
    pub fn transpose(&self) -> Csr {
        let mut counts = vec![0usize; self.n_cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for i in 0..self.n_cols {
            counts[i + 1] += counts[i];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..self.n_rows() {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let slot = next[c as usize];
                indices[slot] = r as u32;
                values[slot] = v;
                next[c as usize] += 1;
            }
        }
        Csr { indptr, indices, values, n_cols: self.n_rows() }
    }
}

/// Interactions read from a behaviour table: duplicate (user, item) pairs are summed.
#[derive(Clone, Debug, PartialEq)]
pub struct Interactions {
    pub user_ids: Vec<i64>,
    pub item_ids: Vec<i64>,
    /// users × items
    pub matrix: Csr,
    /// Each user's items in time order (oldest first), when the source has a time column.
    pub sequences: Option<Sequences>,
    /// Each item's text (by item index), when training reads an items table.
    pub item_text: Option<Vec<String>>,
}

/// Per-user item sequences: user u's items are `items[indptr[u]..indptr[u+1]]`, by time, then
/// item id for equal times; a repeated interaction appears each time it happened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sequences {
    pub indptr: Vec<usize>,
    pub items: Vec<u32>,
}

impl Sequences {
    pub fn row(&self, u: usize) -> &[u32] {
        &self.items[self.indptr[u]..self.indptr[u + 1]]
    }
}

fn sorted_unique(ids: &[i64]) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Position of `id` in an ascending id list.
pub fn index_of(ids: &[i64], id: i64) -> Option<u32> {
    ids.binary_search(&id).ok().map(|i| i as u32)
}

impl Interactions {
    /// Build from parallel columns (user, item, weight). Duplicate pairs are summed.
    pub fn from_triplets(users: &[i64], items: &[i64], weights: &[f32]) -> Result<Self> {
        if users.len() != items.len() || users.len() != weights.len() {
            return Err(RecsysError::invalid("interaction columns have different lengths"));
        }
        if users.is_empty() {
            return Err(RecsysError::invalid("the source has no interactions")
                .with_detail("no row has both a user and an item id"));
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(RecsysError::invalid(format!("rating {w} is not a finite number")));
        }
        let user_ids = sorted_unique(users);
        let item_ids = sorted_unique(items);
        if item_ids.len() > u32::MAX as usize || user_ids.len() > u32::MAX as usize {
            return Err(RecsysError::new(crate::engine::ErrorKind::TooLarge, "more than 2^32 users or items"));
        }
        let u_idx: Vec<u32> = users.iter().map(|&u| index_of(&user_ids, u).unwrap_or(0)).collect();
        // Counting sort by user, then sort each row by item and merge duplicates.
        let mut indptr = vec![0usize; user_ids.len() + 1];
        for &u in &u_idx {
            indptr[u as usize + 1] += 1;
        }
        for i in 0..user_ids.len() {
            indptr[i + 1] += indptr[i];
        }
        let mut next = indptr.clone();
        let mut rows: Vec<(u32, f32)> = vec![(0, 0.0); users.len()];
        for (k, &u) in u_idx.iter().enumerate() {
            let item = index_of(&item_ids, items[k]).unwrap_or(0);
            rows[next[u as usize]] = (item, weights[k]);
            next[u as usize] += 1;
        }
        let mut out_ptr = Vec::with_capacity(user_ids.len() + 1);
        let mut indices = Vec::with_capacity(users.len());
        let mut values = Vec::with_capacity(users.len());
        out_ptr.push(0);
        for u in 0..user_ids.len() {
            let row = &mut rows[indptr[u]..indptr[u + 1]];
            row.sort_unstable_by_key(|p| p.0);
            for &(item, w) in row.iter() {
                if indices.len() > *out_ptr.last().unwrap() && *indices.last().unwrap() == item {
                    *values.last_mut().unwrap() += w;
                } else {
                    indices.push(item);
                    values.push(w);
                }
            }
            out_ptr.push(indices.len());
        }
        let n_cols = item_ids.len();
        Ok(Interactions { user_ids, item_ids, matrix: Csr { indptr: out_ptr, indices, values, n_cols }, sequences: None, item_text: None })
    }

    /// Also keep every user's items in time order (seconds; a NULL time counts as the oldest).
    pub fn with_times(users: &[i64], items: &[i64], weights: &[f32], times: &[Option<f64>]) -> Result<Self> {
        let mut data = Self::from_triplets(users, items, weights)?;
        if times.len() != users.len() {
            return Err(RecsysError::invalid("interaction columns have different lengths"));
        }
        let mut rows: Vec<(u32, f64, u32)> = (0..users.len())
            .map(|k| {
                let u = index_of(&data.user_ids, users[k]).unwrap_or(0);
                let i = index_of(&data.item_ids, items[k]).unwrap_or(0);
                (u, times[k].unwrap_or(f64::NEG_INFINITY), i)
            })
            .collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut indptr = vec![0usize; data.n_users() + 1];
        rows.iter().for_each(|r| indptr[r.0 as usize + 1] += 1);
        for u in 0..data.n_users() {
            indptr[u + 1] += indptr[u];
        }
        data.sequences = Some(Sequences { indptr, items: rows.into_iter().map(|r| r.2).collect() });
        Ok(data)
    }

    /// A user's (item id, weight) history as serving reads it: in time order by each item's
    /// latest interaction when there are sequences, else by item; empty for an unknown user.
    pub fn history_of(&self, user_id: i64) -> Vec<(i64, f32)> {
        let Some(u) = index_of(&self.user_ids, user_id) else { return Vec::new() };
        let (cols, vals) = self.matrix.row(u as usize);
        let mut h: Vec<(u32, f32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        if let Some(seqs) = &self.sequences {
            // Each item's latest position in the sequence, in one pass.
            let last: std::collections::HashMap<u32, usize> = seqs.row(u as usize).iter().enumerate().map(|(p, &i)| (i, p)).collect();
            h.sort_by_key(|&(i, _)| (last.get(&i).copied().unwrap_or(0), i));
        }
        h.into_iter().map(|(i, w)| (self.item_ids[i as usize], w)).collect()
    }

    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }
    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }
    pub fn nnz(&self) -> usize {
        self.matrix.nnz()
    }
}

/// Test data with a known answer: two taste groups of `users` users each over `per_group` items
/// (group 0 has items 0..per_group, group 1 the next ones); every user misses exactly one item of
/// their group (user u misses item u mod per_group of it), which a good model ranks first.
#[cfg(test)]
pub fn two_groups(users: i64, per_group: i64) -> Interactions {
    let (mut u, mut i) = (Vec::new(), Vec::new());
    for user in 0..2 * users {
        let base = if user < users { 0 } else { per_group };
        for item in base..base + per_group {
            if item != base + user % per_group {
                u.push(user);
                i.push(item);
            }
        }
    }
    Interactions::from_triplets(&u, &i, &vec![1.0; u.len()]).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_summed_and_ids_sorted() {
        let m = Interactions::from_triplets(&[10, 5, 10, 10], &[300, 100, 100, 300], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(m.user_ids, vec![5, 10]);
        assert_eq!(m.item_ids, vec![100, 300]);
        assert_eq!(m.nnz(), 3);
        assert_eq!(m.matrix.row(0), (&[0u32][..], &[2.0f32][..]));
        assert_eq!(m.matrix.row(1), (&[0u32, 1][..], &[3.0f32, 5.0][..]));
    }

    #[test]
    fn transpose_round_trips() {
        let m = Interactions::from_triplets(&[1, 1, 2, 3], &[7, 8, 8, 7], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let t = m.matrix.transpose();
        assert_eq!(t.n_rows(), 2);
        assert_eq!(t.row(0), (&[0u32, 2][..], &[1.0f32, 4.0][..]));
        assert_eq!(t.row(1), (&[0u32, 1][..], &[2.0f32, 3.0][..]));
        assert_eq!(t.transpose(), m.matrix);
    }

    #[test]
    fn sequences_follow_time_then_item() {
        let t = [Some(5.0), None, Some(1.0), Some(5.0), Some(2.0)];
        let m = Interactions::with_times(&[1, 1, 1, 1, 2], &[30, 20, 10, 10, 20], &[1.0; 5], &t).unwrap();
        let s = m.sequences.as_ref().unwrap();
        // user 1: item 20 (NULL time, oldest), 10 at 1, then 10 and 30 both at 5 (item order)
        assert_eq!(s.row(0), &[1, 0, 0, 2]);
        assert_eq!(s.row(1), &[1]);
        assert_eq!(m.nnz(), 4);
    }

    #[test]
    fn empty_and_non_finite_are_rejected() {
        assert!(Interactions::from_triplets(&[], &[], &[]).is_err());
        assert!(Interactions::from_triplets(&[1], &[1], &[f32::NAN]).is_err());
    }
}
