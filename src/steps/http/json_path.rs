//! JSONPath for the `http` kind (RFC 9535, by the `serde_json_path` crate): the keys of `json`
//! expectations, checked when the playbook is (`check.rs`) and evaluated against the parsed
//! body when expectations read the result (`Http::lookup` in `mod.rs`; exported as
//! `steps::http::json_path`).

use serde_json::Value as Json;

/// `$…` as written; `[…]` and `name…` are read as `$[…]` and `$.name…`.
fn normalize_path(path: &str) -> String {
    let p = path.trim();
    if p.starts_with('$') {
        p.to_string()
    } else if p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

/// Parses a query the way `json_path` reads it (for `check.rs`).
pub(super) fn parse_path(path: &str) -> Result<serde_json_path::JsonPath, String> {
    serde_json_path::JsonPath::parse(&normalize_path(path)).map_err(|e| e.to_string())
}

/// Whether a query can select at most one node (RFC 9535 §2.3.5.1: names and indexes only).
/// The crate keeps this private, but RFC 9535 allows only singular queries as comparison
/// operands, so the parser itself answers: `$[?QUERY == null]` parses exactly when QUERY is
/// singular.
fn is_singular(path: &str) -> bool {
    serde_json_path::JsonPath::parse(&format!("$[?{path} == null]")).is_ok()
}

/// Evaluates a JSONPath query. A singular query (`$.a.b`, `$.items[0]`) gives its one value,
/// or nothing when it selects none; any other (`$.items[*].id`, filters, slices, `..`) gives the
/// list of every value it selects, possibly empty — the shape depends on the query, never on
/// the data.
pub fn json_path(doc: &Json, path: &str) -> Result<Option<Json>, String> {
    let full = normalize_path(path);
    let query = parse_path(&full)?;
    let nodes = query.query(doc);
    if is_singular(&full) {
        Ok(nodes.all().first().map(|v| (*v).clone()))
    } else {
        Ok(Some(Json::Array(
            nodes.all().into_iter().cloned().collect(),
        )))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A document for the tests here and in `mod.rs`.
    pub(in crate::steps::http) fn doc() -> Json {
        json!({
            "status": "ok",
            "items": [ { "id": 1, "name": "one", "on": true }, { "id": 2, "name": "two", "on": false } ],
            "a-b": 5,
            "nothing": null
        })
    }

    #[test]
    fn singular_queries_give_a_value_others_a_list() {
        let d = doc();
        assert_eq!(json_path(&d, "$.status").unwrap(), Some(json!("ok")));
        assert_eq!(json_path(&d, "status").unwrap(), Some(json!("ok")));
        assert_eq!(
            json_path(&d, "$.items[1].name").unwrap(),
            Some(json!("two"))
        );
        assert_eq!(json_path(&d, "items[0].id").unwrap(), Some(json!(1)));
        assert_eq!(json_path(&d, "$['a-b']").unwrap(), Some(json!(5)));
        assert_eq!(json_path(&d, "$").unwrap(), Some(d.clone()));
        assert_eq!(json_path(&d, "$.missing").unwrap(), None);
        assert_eq!(json_path(&d, "$.nothing").unwrap(), Some(Json::Null));
        assert_eq!(json_path(&d, "$.items[*].id").unwrap(), Some(json!([1, 2])));
        assert_eq!(
            json_path(&d, "$.items[?@.on == true].name").unwrap(),
            Some(json!(["one"]))
        );
        assert_eq!(
            json_path(&d, "$.items[?@.id > 5].name").unwrap(),
            Some(json!([]))
        );
        assert_eq!(
            json_path(&d, "$..name").unwrap(),
            Some(json!(["one", "two"]))
        );
        assert_eq!(
            json_path(&d, "$.items[0:1]").unwrap(),
            Some(json!([d["items"][0]]))
        );
        assert!(json_path(&d, "$.items[").is_err());
        assert!(json_path(&d, "$.a-b").is_err());
        assert!(is_singular("$.a.b[0]['c']"));
        assert!(!is_singular("$.a[*]"));
        assert!(!is_singular("$..a"));
        assert!(!is_singular("$.a[0,1]"));
    }
}
