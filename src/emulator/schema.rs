//! Request bodies checked against the schemas of Google's discovery documents (trimmed copies in
//! `discovery/`, made by `discovery/extract.py`): unknown fields, wrong types, bad enum values and missing
//! required fields answer 400 like the real API; output-only fields are dropped, as Google ignores them, and
//! so are fields that only one method may set (`onlyVia`, e.g. `Address.labels`: "These can only be added or
//! modified by the setLabels method") when an insert sends them.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::api_error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Compute,
    Container,
}

fn doc(api: Api) -> &'static Value {
    static COMPUTE: OnceLock<Value> = OnceLock::new();
    static CONTAINER: OnceLock<Value> = OnceLock::new();
    let (cell, text) = match api {
        Api::Compute => (&COMPUTE, include_str!("discovery/compute.json")),
        Api::Container => (&CONTAINER, include_str!("discovery/container.json")),
    };
    cell.get_or_init(|| serde_json::from_str(text).unwrap_or(Value::Null))
}

/// Checks `body` against `schema` and drops output-only fields. `root` names the body in messages
/// (`resource` for Compute, as the API calls its body parameter). `method` is the discovery method id whose
/// required fields are enforced at the top level, e.g. `compute.addresses.insert`.
pub(crate) fn validate(
    api: Api,
    schema: &str,
    method: Option<&str>,
    root: &str,
    body: &mut Value,
) -> Result<(), ApiError> {
    let schemas = doc(api).get("schemas");
    let Some(props) = schemas
        .and_then(|s| s.get(schema))
        .and_then(|s| s.get("properties"))
    else {
        return Ok(());
    };
    let Value::Object(map) = body else {
        return Err(ApiError::bad_json(format!(
            "Invalid JSON payload received. Expected an object at '{root}'."
        )));
    };
    check_object(api, props, root, map)?;
    if let (Some(method), Some(props)) = (method, props.as_object()) {
        if method.ends_with(".insert") {
            map.retain(|name, _| props.get(name).and_then(|s| s.get("onlyVia")).is_none());
        }
        for (name, spec) in props {
            let required = spec
                .get("required")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|m| m.as_str() == Some(method)));
            let present = map.get(name).is_some_and(|v| !v.is_null() && v != "");
            if required && !present {
                return Err(ApiError::required(&format!("{root}.{name}")));
            }
        }
    }
    Ok(())
}

fn check_object(
    api: Api,
    props: &Value,
    at: &str,
    map: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let Some(spec) = props.get(&key) else {
            return Err(ApiError::bad_json(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."
            )));
        };
        let drop = spec.get("readOnly").and_then(Value::as_bool) == Some(true)
            || map.get(&key).is_some_and(Value::is_null);
        if drop {
            map.remove(&key);
            continue;
        }
        if let Some(v) = map.get_mut(&key) {
            check_value(api, spec, &format!("{at}.{key}"), v)?;
        }
    }
    Ok(())
}

fn wrong(at: &str, expected: &str, v: &Value) -> ApiError {
    ApiError::bad_json(format!("Invalid value at '{at}' ({expected}), {v}"))
}

fn check_value(api: Api, spec: &Value, at: &str, v: &mut Value) -> Result<(), ApiError> {
    if let Some(r) = spec.get("$ref").and_then(Value::as_str) {
        let Some(props) = doc(api)
            .get("schemas")
            .and_then(|s| s.get(r))
            .and_then(|s| s.get("properties"))
        else {
            return Ok(());
        };
        return match v {
            Value::Object(m) => check_object(api, props, at, m),
            other => Err(wrong(at, r, other)),
        };
    }
    let ty = spec.get("type").and_then(Value::as_str).unwrap_or("any");
    let format = spec.get("format").and_then(Value::as_str).unwrap_or("");
    match ty {
        "string" => {
            let numeric_ok = matches!(format, "int64" | "uint64");
            match v {
                Value::String(s) => {
                    if numeric_ok && s.parse::<i128>().is_err() {
                        return Err(wrong(at, "TYPE_INT64", v));
                    }
                    if let Some(values) = spec.get("enum").and_then(Value::as_array)
                        && !values.iter().any(|e| e.as_str() == Some(s.as_str()))
                    {
                        return Err(wrong(at, "TYPE_ENUM", v));
                    }
                    Ok(())
                }
                Value::Number(_) if numeric_ok => Ok(()),
                other => Err(wrong(at, "TYPE_STRING", other)),
            }
        }
        "integer" => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            Value::String(s) if s.parse::<i64>().is_ok() => Ok(()),
            other => Err(wrong(at, "TYPE_INT32", other)),
        },
        "number" => match v {
            Value::Number(_) => Ok(()),
            Value::String(s) if s.parse::<f64>().is_ok() => Ok(()),
            other => Err(wrong(at, "TYPE_DOUBLE", other)),
        },
        "boolean" => match v {
            Value::Bool(_) => Ok(()),
            other => Err(wrong(at, "TYPE_BOOL", other)),
        },
        "array" => match v {
            Value::Array(items) => {
                let item_spec = spec.get("items").cloned().unwrap_or(Value::Null);
                for (i, item) in items.iter_mut().enumerate() {
                    check_value(api, &item_spec, &format!("{at}[{i}]"), item)?;
                }
                Ok(())
            }
            other => Err(wrong(at, "TYPE_ARRAY", other)),
        },
        "object" => match v {
            Value::Object(m) => {
                if let Some(ap) = spec.get("additionalProperties") {
                    for (k, item) in m.iter_mut() {
                        check_value(api, ap, &format!("{at}[{k}]"), item)?;
                    }
                }
                Ok(())
            }
            other => Err(wrong(at, "TYPE_MESSAGE", other)),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_field_is_refused_with_googles_message() {
        let mut body = json!({"name": "a", "colour": "red"});
        let err = validate(
            Api::Compute,
            "Address",
            Some("compute.addresses.insert"),
            "resource",
            &mut body,
        )
        .expect_err("unknown field");
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("Unknown name \"colour\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn nested_unknown_field_is_refused() {
        let mut body = json!({"name": "a", "networkInterfaces": [{"foo": 1}]});
        let err =
            validate(Api::Compute, "Instance", None, "resource", &mut body).expect_err("unknown");
        assert!(
            err.message.contains("resource.networkInterfaces[0]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_types_and_enums_are_refused() {
        for body in [
            json!({"name": 5}),
            json!({"name": "a", "addressType": "SIDEWAYS"}),
            json!({"name": "a", "labels": {"k": 1}}),
            json!({"name": "a", "prefixLength": "abc"}),
        ] {
            let mut b = body.clone();
            assert!(
                validate(Api::Compute, "Address", None, "resource", &mut b).is_err(),
                "{body} should be refused"
            );
        }
    }

    #[test]
    fn required_and_output_only_fields() {
        let mut body = json!({"description": "x"});
        let err = validate(
            Api::Compute,
            "Address",
            Some("compute.addresses.insert"),
            "resource",
            &mut body,
        )
        .expect_err("name is required");
        assert_eq!(err.reason, "required");
        let mut body = json!({"name": "a", "id": "123", "selfLink": "x", "status": "IN_USE"});
        validate(
            Api::Compute,
            "Address",
            Some("compute.addresses.insert"),
            "resource",
            &mut body,
        )
        .expect("output-only fields are ignored");
        assert_eq!(body, json!({"name": "a"}));
    }

    #[test]
    fn fields_only_set_labels_may_set_are_not_stored_by_an_insert() {
        for (schema, method) in [
            ("Address", "compute.addresses.insert"),
            ("ForwardingRule", "compute.forwardingRules.insert"),
        ] {
            let mut body = json!({"name": "a", "description": "d", "labels": {"k": "v"}});
            validate(Api::Compute, schema, Some(method), "resource", &mut body).expect("valid");
            assert_eq!(body, json!({"name": "a", "description": "d"}), "{schema}");
        }
        // An instance's labels "can be later modified": an insert keeps them.
        let mut body = json!({"name": "a", "labels": {"k": "v"}});
        validate(
            Api::Compute,
            "Instance",
            Some("compute.instances.insert"),
            "resource",
            &mut body,
        )
        .expect("valid");
        assert_eq!(body["labels"]["k"], "v");
        // setLabels itself stores them.
        let mut body = json!({"labels": {"k": "v"}, "labelFingerprint": "x"});
        validate(
            Api::Compute,
            "RegionSetLabelsRequest",
            None,
            "resource",
            &mut body,
        )
        .expect("valid");
        assert_eq!(body["labels"]["k"], "v");
    }

    #[test]
    fn container_update_with_tags_only_is_accepted() {
        let mut body = json!({"name": "projects/p/locations/l/clusters/c/nodePools/n", "tags": {"tags": ["a"]}, "etag": "x"});
        validate(Api::Container, "UpdateNodePoolRequest", None, "", &mut body)
            .expect("tags-only update");
        let mut body = json!({"tags": {"tagz": ["a"]}});
        assert!(validate(Api::Container, "UpdateNodePoolRequest", None, "", &mut body).is_err());
    }
}
