//! Human text and JSON from the same plan (pure). The text reads like Terraform's, so nobody has to learn it.
//! Apply's and destroy's progress and outcome are in [`apply`], `validate`'s verdict in [`validate`].

pub(crate) mod apply;
pub(crate) mod check;
pub(crate) mod lock;
pub(crate) mod output;
pub(crate) mod validate;

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::model::Resource;
use crate::model::fields::{Display, Field, InstanceField};
use crate::output::Style;
use crate::plan::{Action, Change, Plan, VmAction};

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

/// A field's value as Terraform shows it.
fn show(field: Field, v: &Value) -> String {
    if let (Display::Script, Some(s)) = (field.display(), v.as_str()) {
        return format!("(startup script, {} lines)", s.lines().count());
    }
    show_value(v)
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "(known after apply)".into(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(show_value).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k} = {}", show_value(v)))
                .collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// The fields of a resource worth showing, ordered by name.
fn fields(r: &Resource) -> Vec<(Field, Value)> {
    r.values()
        .into_iter()
        .filter(|(f, _)| f.display() != Display::Hidden && r.has(*f))
        .collect()
}

/// Terraform's import wording, natgw's word: an adopted resource is taken over, then made to match.
fn adopted_headline(action: Action) -> &'static str {
    match action {
        Action::NoOp => "will be adopted",
        Action::Update => "will be adopted, then updated in-place",
        Action::Delete => "will be adopted, then destroyed once natgw's own route is in place",
        Action::Create | Action::Replace => "will be adopted, then replaced",
    }
}

/// What a VM's line means for its power: how it is brought back from its status, a restart left pending by
/// an interrupted apply, a new script's restart.
fn vm_note(c: &Change, field: Field, before: &Value) -> Option<String> {
    if c.action != Action::Update {
        // A new VM boots what it is given.
        return None;
    }
    let restarts = c.vm_actions.contains(&VmAction::Restart);
    match field {
        Field::Instance(InstanceField::Status) => c
            .vm_actions
            .iter()
            .find(|a| **a != VmAction::Restart)
            .map(|a| a.describe(before.as_str().unwrap_or("UNKNOWN"))),
        Field::Instance(InstanceField::RestartPending) => {
            Some("restart pending from an interrupted apply".into())
        }
        Field::Instance(InstanceField::StartupScript) if restarts => Some("restart".into()),
        _ => None,
    }
}

fn change_text(c: &Change, style: Style, out: &mut String) {
    let words = match &c.importing {
        Some(_) => adopted_headline(c.action),
        None => headline(c.action),
    };
    let _ = writeln!(out, "  {}", style.bold(&format!("# {} {words}", c.label())));
    let _ = writeln!(
        out,
        "{} {} {:?} {{",
        symbol(c.action, style),
        c.kind.type_name(),
        c.name
    );
    let mut rows: Vec<(String, &str, String)> = Vec::new();
    match c.action {
        Action::Create => {
            if let Some(after) = &c.after {
                for (f, v) in fields(after) {
                    if v.is_null() && f.display() != Display::Computed {
                        continue;
                    }
                    rows.push((style.green("+"), f.name(), show(f, &v)));
                }
            }
        }
        Action::Delete => {
            if let Some(before) = &c.before {
                for (f, v) in fields(before).into_iter().filter(|(_, v)| !v.is_null()) {
                    rows.push((style.red("-"), f.name(), format!("{} -> null", show(f, &v))));
                }
            }
        }
        Action::Update | Action::Replace => {
            for d in &c.diffs {
                let after = if d.unknown {
                    "(known after apply)".to_string()
                } else {
                    show(d.field, &d.after)
                };
                let mut line = format!("{} -> {}", show(d.field, &d.before), after);
                if let Some(note) = vm_note(c, d.field, &d.before) {
                    let _ = write!(line, " ({note})");
                }
                if d.forces_replacement {
                    line.push_str(&style.red(" # forces replacement"));
                }
                rows.push((style.yellow("~"), d.field.name(), line));
            }
        }
        Action::NoOp => {}
    }
    let width = rows.iter().map(|(_, k, _)| k.len()).max().unwrap_or(0);
    for (sym, k, v) in rows {
        let _ = writeln!(out, "      {sym} {k:width$} = {v}");
    }
    let _ = writeln!(out, "    }}");
    for w in &c.warnings {
        let _ = writeln!(out, "    {} {w}", style.yellow("Warning:"));
    }
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
    for c in plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp || c.importing.is_some())
    {
        change_text(c, style, &mut out);
        out.push('\n');
    }
    let s = plan.summary();
    let adopt = if s.adopt > 0 {
        format!(" {} to adopt,", s.adopt)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{}{adopt} {} to add, {} to change, {} to destroy.",
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
                    Some(r) => Value::Object(
                        fields(r)
                            .into_iter()
                            .map(|(f, v)| (f.name().to_string(), v))
                            .collect::<Map<String, Value>>(),
                    ),
                    None => Value::Null,
                }
            };
            let mut after_unknown = Map::new();
            if let Some(after) = &c.after {
                for (f, v) in fields(after) {
                    if v.is_null() && f.display() == Display::Computed {
                        after_unknown.insert(f.name().into(), Value::Bool(true));
                    }
                }
            }
            for d in c.diffs.iter().filter(|d| d.unknown) {
                after_unknown.insert(d.field.name().into(), Value::Bool(true));
            }
            let replace_paths: Vec<Value> =
                c.forces_replacement().iter().map(|f| json!([f])).collect();
            let mut change = json!({
                "actions": c.action.terraform_actions(),
                "before": to_map(&c.before),
                "after": to_map(&c.after),
                "after_unknown": after_unknown,
                "replace_paths": replace_paths,
            });
            if let (Some(id), Some(m)) = (&c.importing, change.as_object_mut()) {
                m.insert("importing".into(), json!({ "id": id }));
            }
            if let (false, Some(m)) = (c.vm_actions.is_empty(), change.as_object_mut()) {
                m.insert("vm_actions".into(), json!(c.vm_actions));
            }
            let mut rc = json!({
                "address": c.address(),
                "type": c.kind.type_name(),
                "name": c.name,
                "gateway": c.gateway,
                "change": change,
            });
            // Terraform's JSON names a deposed object by a key next to the address it shares.
            if let (true, Some(m)) = (c.deposed, rc.as_object_mut()) {
                m.insert("deposed".into(), json!(c.name));
            }
            if let (false, Some(m)) = (c.warnings.is_empty(), rc.as_object_mut()) {
                m.insert("warnings".into(), json!(c.warnings));
            }
            rc
        })
        .collect();
    let s = plan.summary();
    let mut summary = json!({"add": s.add, "change": s.change, "destroy": s.destroy});
    if let (true, Some(m)) = (s.adopt > 0, summary.as_object_mut()) {
        m.insert("import".into(), json!(s.adopt));
    }
    json!({
        "format_version": "1.2",
        "natgw_version": plan.natgw_version,
        "project": plan.project,
        "stack": plan.stack,
        "destroy": plan.destroy,
        "resource_changes": changes,
        "summary": summary,
    })
}

#[cfg(test)]
pub(crate) mod tests;
