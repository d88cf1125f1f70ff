//! Human text and JSON from the same plan (pure). The text reads like Terraform's, so nobody has to learn it.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::model::Resource;
use crate::output::Style;
use crate::plan::{Action, Change, Plan};

fn symbol(action: Action, style: Style) -> String {
    match action {
        Action::Create => format!("  {}", style.green("+")),
        Action::Update => format!("  {}", style.yellow("~")),
        Action::Delete => format!("  {}", style.red("-")),
        Action::Replace => format!("{}{}{}", style.red("-"), "/", style.green("+")),
        Action::NoOp => "   ".into(),
    }
}

fn headline(action: Action) -> &'static str {
    match action {
        Action::Create => "will be created",
        Action::Update => "will be updated in-place",
        Action::Delete => "will be destroyed",
        Action::Replace => "must be replaced",
        Action::NoOp => "is up to date",
    }
}

/// Fields whose value Google decides when they are not set: `null` means known after apply.
const COMPUTED: &[&str] = &["address", "network_ip", "nat_ip", "next_hop_ip"];

/// A value as Terraform shows it.
fn show(field: &str, v: &Value) -> String {
    if let (true, Some(s)) = (field == "startup_script", v.as_str()) {
        return format!("(startup script, {} lines)", s.lines().count());
    }
    match v {
        Value::Null => "(known after apply)".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|i| show("", i)).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} = {}", show(k, v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// The fields of a resource worth showing, in a stable order.
fn fields(r: &Resource) -> Vec<(String, Value)> {
    r.fields()
        .into_iter()
        .filter(|(k, _)| k != "name" && k != "description")
        .collect()
}

fn change_text(c: &Change, style: Style, out: &mut String) {
    let _ = writeln!(
        out,
        "  {}",
        style.bold(&format!("# {} {}", c.address(), headline(c.action)))
    );
    let _ = writeln!(
        out,
        "{} {} {:?} {{",
        symbol(c.action, style),
        c.kind.type_name(),
        c.name
    );
    let mut rows: Vec<(String, String, String)> = Vec::new();
    match c.action {
        Action::Create => {
            if let Some(after) = &c.after {
                for (k, v) in fields(after) {
                    if v.is_null() && !COMPUTED.contains(&k.as_str()) {
                        continue;
                    }
                    rows.push((style.green("+"), k.clone(), show(&k, &v)));
                }
            }
        }
        Action::Delete => {
            if let Some(before) = &c.before {
                for (k, v) in fields(before).into_iter().filter(|(_, v)| !v.is_null()) {
                    rows.push((
                        style.red("-"),
                        k.clone(),
                        format!("{} -> null", show(&k, &v)),
                    ));
                }
            }
        }
        Action::Update | Action::Replace => {
            for d in &c.diffs {
                let after = if d.unknown {
                    "(known after apply)".to_string()
                } else {
                    show(&d.field, &d.after)
                };
                let mut line = format!("{} -> {}", show(&d.field, &d.before), after);
                if d.forces_replacement {
                    line.push_str(&style.red(" # forces replacement"));
                }
                rows.push((style.yellow("~"), d.field.clone(), line));
            }
        }
        Action::NoOp => {}
    }
    let width = rows.iter().map(|(_, k, _)| k.len()).max().unwrap_or(0);
    for (sym, k, v) in rows {
        let _ = writeln!(out, "      {sym} {k:width$} = {v}");
    }
    let _ = writeln!(out, "    }}");
}

/// The plan as text.
pub(crate) fn plan_text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if !plan.has_changes() {
        out.push_str(&style.bold("No changes."));
        out.push_str(" Your infrastructure matches the configuration.\n");
        return out;
    }
    out.push_str("natgw will perform the following actions:\n\n");
    for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
        change_text(c, style, &mut out);
        out.push('\n');
    }
    let s = plan.summary();
    let _ = writeln!(
        out,
        "{} {} to add, {} to change, {} to destroy.",
        style.bold("Plan:"),
        s.add,
        s.change,
        s.destroy
    );
    out
}

/// The plan in Terraform's JSON words (`resource_changes[].change.actions`).
pub(crate) fn plan_json(plan: &Plan) -> Value {
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| {
            let to_map = |r: &Option<Resource>| -> Value {
                match r {
                    Some(r) => Value::Object(fields(r).into_iter().collect::<Map<String, Value>>()),
                    None => Value::Null,
                }
            };
            let mut after_unknown = Map::new();
            if let Some(after) = &c.after {
                for (k, v) in fields(after) {
                    if v.is_null() && COMPUTED.contains(&k.as_str()) {
                        after_unknown.insert(k, Value::Bool(true));
                    }
                }
            }
            for d in c.diffs.iter().filter(|d| d.unknown) {
                after_unknown.insert(d.field.clone(), Value::Bool(true));
            }
            let replace_paths: Vec<Value> =
                c.forces_replacement().iter().map(|f| json!([f])).collect();
            json!({
                "address": c.address(),
                "type": c.kind.type_name(),
                "name": c.name,
                "gateway": c.gateway,
                "change": {
                    "actions": c.action.terraform_actions(),
                    "before": to_map(&c.before),
                    "after": to_map(&c.after),
                    "after_unknown": after_unknown,
                    "replace_paths": replace_paths,
                }
            })
        })
        .collect();
    let s = plan.summary();
    json!({
        "format_version": "1.2",
        "natgw_version": plan.natgw_version,
        "project": plan.project,
        "stack": plan.stack,
        "destroy": plan.destroy,
        "resource_changes": changes,
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy},
    })
}

#[cfg(test)]
mod tests;
