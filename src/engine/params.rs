//! Typed reading of a model's `params` JSON object: each algorithm asks for the fields it knows,
//! with a default and a range; anything else is an error naming the field and what is allowed.

use serde_json::{Map, Value};

use crate::engine::{RecsysError, Result};

pub struct Params {
    algorithm: String,
    given: Map<String, Value>,
    known: Vec<&'static str>,
    /// The effective parameters (defaults filled in), stored with the model.
    pub effective: Map<String, Value>,
    /// Every parameter asked for, with its type, default and allowed values, in the order the
    /// algorithm asks: what `recsys.algorithms` lists (the same code that checks them).
    pub described: Vec<Value>,
}

impl Params {
    pub fn parse(algorithm: &str, params: &Value) -> Result<Self> {
        let given = match params {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                return Err(RecsysError::invalid(format!(
                    "params must be a JSON object, got {}",
                    json_type(other)
                ))
                .with_hint("for example '{\"k\": 50}'::jsonb"))
            }
        };
        Ok(Params { algorithm: algorithm.to_string(), given, known: Vec::new(), effective: Map::new(), described: Vec::new() })
    }

    fn bad(&self, name: &str, want: String, got: &Value) -> RecsysError {
        RecsysError::invalid(format!(
            "parameter \"{name}\" of algorithm \"{}\" must be {want}, got {got}",
            self.algorithm
        ))
    }

    /// An integer in [min, max].
    pub fn int(&mut self, name: &'static str, default: i64, min: i64, max: i64) -> Result<i64> {
        self.known.push(name);
        self.describe(name, "integer", Value::from(default), "range", Value::from(vec![min, max]));
        let v = match self.given.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => {
                let x = v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64));
                match x {
                    Some(x) if (min..=max).contains(&x) => x,
                    _ => return Err(self.bad(name, format!("an integer between {min} and {max}"), v)),
                }
            }
        };
        self.effective.insert(name.to_string(), Value::from(v));
        Ok(v)
    }

    /// A finite number in [min, max].
    pub fn float(&mut self, name: &'static str, default: f64, min: f64, max: f64) -> Result<f64> {
        self.known.push(name);
        self.describe(name, "number", Value::from(default), "range", Value::from(vec![min, max]));
        let v = match self.given.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() && x >= min && x <= max => x,
                _ => return Err(self.bad(name, format!("a number between {min} and {max}"), v)),
            },
        };
        self.effective.insert(name.to_string(), Value::from(v));
        Ok(v)
    }

    /// One of a fixed set of strings.
    pub fn choice(&mut self, name: &'static str, default: &'static str, allowed: &[&'static str]) -> Result<&'static str> {
        self.known.push(name);
        self.describe(name, "text", Value::from(default), "allowed", Value::from(allowed.to_vec()));
        let v = match self.given.get(name) {
            None | Some(Value::Null) => default,
            Some(v) => match v.as_str().and_then(|s| allowed.iter().find(|a| **a == s)) {
                Some(a) => a,
                None => return Err(self.bad(name, format!("one of {}", allowed.join(", ")), v)),
            },
        };
        self.effective.insert(name.to_string(), Value::from(v));
        Ok(v)
    }

    /// A field's JSON as given (None when absent or null), for structured params; the caller
    /// stores its effective form with `set`.
    pub fn raw(&mut self, name: &'static str) -> Option<Value> {
        self.known.push(name);
        self.describe(name, "json", Value::Null, "", Value::Null);
        self.given.get(name).filter(|v| !v.is_null()).cloned()
    }

    fn describe(&mut self, name: &str, kind: &str, default: Value, key: &str, allowed: Value) {
        if !self.described.iter().any(|d| d["name"] == name) {
            let mut d = serde_json::json!({"name": name, "type": kind, "default": default});
            if !allowed.is_null() {
                d[key] = allowed;
            }
            self.described.push(d);
        }
    }

    pub fn set(&mut self, name: &str, value: Value) {
        self.effective.insert(name.to_string(), value);
    }

    /// Refuse fields the algorithm does not know (a typo must not be silently ignored).
    pub fn finish(self) -> Result<Value> {
        let mut unknown: Vec<&String> = self.given.keys().filter(|k| !self.known.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(first) = unknown.first() {
            let known = if self.known.is_empty() { "none".to_string() } else { self.known.join(", ") };
            return Err(RecsysError::invalid(format!(
                "unknown parameter \"{first}\" for algorithm \"{}\"",
                self.algorithm
            ))
            .with_detail(format!("parameters of {}: {known}", self.algorithm)));
        }
        Ok(Value::Object(self.effective))
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_ranges_and_unknowns() {
        let mut p = Params::parse("item_knn", &json!({"k": 5, "similarity": "jaccard"})).unwrap();
        assert_eq!(p.int("k", 100, 1, 10).unwrap(), 5);
        assert_eq!(p.choice("similarity", "cosine", &["cosine", "jaccard"]).unwrap(), "jaccard");
        assert_eq!(p.float("shrink", 0.0, 0.0, 1e6).unwrap(), 0.0);
        assert_eq!(p.finish().unwrap(), json!({"k": 5, "similarity": "jaccard", "shrink": 0.0}));

        let mut p = Params::parse("item_knn", &json!({"k": 0})).unwrap();
        let e = p.int("k", 100, 1, 10).unwrap_err();
        assert!(e.message.contains("\"k\"") && e.message.contains("between 1 and 10"), "{}", e.message);

        let mut p = Params::parse("item_knn", &json!({"k": "ten"})).unwrap();
        assert!(p.int("k", 100, 1, 10).is_err());

        let mut p = Params::parse("item_knn", &json!({"kk": 3})).unwrap();
        p.int("k", 100, 1, 10).unwrap();
        let e = p.finish().unwrap_err();
        assert!(e.message.contains("\"kk\""));
        assert_eq!(e.detail.as_deref(), Some("parameters of item_knn: k"));

        assert!(Params::parse("x", &json!([1])).is_err());
    }
}
