//! JSON Schemas generated from the types users write (`sortie schema`, and the files in
//! `schemas/`, which a test keeps in sync). The playbook schema is assembled from the play and
//! step-common types and from each registered step kind's argument type, so editors can
//! validate and complete playbooks (`# yaml-language-server: $schema=…`).

use schemars::{Schema, SchemaGenerator, generate::SchemaSettings, json_schema};
use serde_json::{Map, Value, json};

use crate::playbook::{PlayRaw, StepCommon};
use crate::steps::{KIND_NAMES, kind_schemas};

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().into_generator()
}

/// The playbook schema: a play or a list of plays; each step has the common keys and exactly
/// one kind key.
pub fn playbook() -> Schema {
    let mut g = generator();
    let play = g.subschema_for::<PlayRaw>();
    g.subschema_for::<StepCommon>();
    let kinds = kind_schemas(&mut g);
    let mut defs: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    let common_props = defs
        .get("StepCommon")
        .and_then(|c| c.get("properties"))
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let mut props = common_props.as_object().cloned().unwrap_or_default();
    let mut one_of = Vec::new();
    for k in &kinds {
        let mut s = k.args.clone().to_value();
        if k.short_form {
            s = json!({ "anyOf": [ { "type": "string" }, s ] });
        }
        if let Some(obj) = s.as_object_mut() {
            obj.insert(
                "description".into(),
                Value::String(format!("{} Runs {}.", k.summary, k.runs_on.describe())),
            );
        }
        props.insert(k.name.to_string(), s);
        one_of.push(json!({ "required": [k.name] }));
        // `expect` and `timeout` may also stand inside the kind's mapping.
        if k.lifts_step_fields {
            let def_name = k
                .args
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_string);
            if let Some(def) = def_name.and_then(|n| defs.get_mut(&n))
                && let Some(p) = def.get_mut("properties").and_then(Value::as_object_mut)
            {
                if let Some(e) = common_props.get("expect") {
                    p.insert("expect".into(), e.clone());
                }
                if let Some(t) = common_props.get("timeout") {
                    p.insert("timeout".into(), t.clone());
                }
            }
        }
    }
    defs.remove("StepCommon");
    defs.insert(
        "Step".into(),
        json!({
            "description": format!("One step: exactly one kind key ({}) and optional common keys.", KIND_NAMES.join(", ")),
            "type": "object",
            "properties": props,
            "additionalProperties": false,
            "oneOf": one_of,
        }),
    );
    if let Some(p) = defs
        .get_mut("PlayRaw")
        .and_then(|p| p.get_mut("properties"))
        .and_then(Value::as_object_mut)
    {
        p.insert(
            "steps".into(),
            json!({ "type": "array", "items": { "$ref": "#/$defs/Step" }, "description": "The steps, in order; each follows the one before unless it says `needs`." }),
        );
    }
    let play_ref = play.to_value();
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sortie.dev/schemas/playbook.schema.json",
        "title": "sortie playbook",
        "description": "A play, or a list of plays run one after another.",
        "anyOf": [ play_ref.clone(), { "type": "array", "items": play_ref } ],
        "$defs": defs,
    });
    Schema::try_from(root).unwrap_or_else(|_| json_schema!(true))
}
