//! Global instance templates: immutable instance properties a managed instance group creates its VMs from.
//!
//! Global rather than `regionInstanceTemplates`: a zonal group takes either (compute.v1.json,
//! `InstanceGroupManager.instanceTemplate`), Terraform's `google_compute_instance_template` and gcloud's
//! default are global, and a template is replaced, never edited, so where it lives changes nothing for a roll.

use serde_json::{Value, json};

use super::{Answer, Ctx, check_labels, insert_body, mutate, stamp};
use crate::emulator::api_error::ApiError;
use crate::emulator::catalog;
use crate::emulator::world::{Scope, World, last_segment, obj, str_field};

pub(super) fn insert_template(
    world: &mut World,
    ctx: &Ctx<'_>,
    p: &str,
    body: Option<Value>,
) -> Answer {
    let (mut body, path) = insert_body(
        world,
        "InstanceTemplate",
        "compute.instanceTemplates.insert",
        body,
        |n| format!("projects/{p}/global/instanceTemplates/{n}"),
    )?;
    let props = body.get("properties").cloned().unwrap_or_default();
    check_labels(props.get("labels"))?;
    // compute.v1.json, InstanceProperties.machineType: "The machine type to use for instances that are created
    // from these properties. This field only accepts a machine type name, for example `n2-standard-4`."
    let mt = str_field(&props, "machineType").unwrap_or_default();
    if mt.is_empty() {
        return Err(ApiError::required("resource.properties.machineType"));
    }
    if mt.contains('/') || !catalog::MACHINE_TYPES.iter().any(|(n, ..)| *n == mt) {
        return Err(ApiError::invalid_field(
            "resource.properties.machineType",
            mt,
            "Must be the name of a machine type, such as e2-small.",
        ));
    }
    let boot = props
        .get("disks")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|d| d.get("boot") == Some(&json!(true))));
    if !boot {
        return Err(ApiError::invalid_field(
            "resource.properties.disks",
            "",
            "Boot disk must be specified.",
        ));
    }
    let has_nic = props
        .get("networkInterfaces")
        .and_then(Value::as_array)
        .is_some_and(|n| !n.is_empty());
    if !has_nic {
        return Err(ApiError::invalid_field(
            "resource.properties.networkInterfaces",
            "",
            "At least one network interface is required.",
        ));
    }
    mutate(
        world,
        ctx,
        p,
        &Scope::Global,
        "insert",
        &path.clone(),
        |w| {
            stamp(w, ctx, &mut body, "compute#instanceTemplate", &path);
            w.resources.insert(path.clone(), body);
            Ok(Ok(()))
        },
    )
}

/// The body of `instances.insert` for a group's VM: the template's properties, the zone's machine type, and
/// the metadata Google adds to VMs a group creates.
pub(super) fn instance_body(
    template: &Value,
    template_url: &str,
    name: &str,
    z: &str,
    igm_url: &str,
) -> Value {
    let props = template.get("properties").cloned().unwrap_or_default();
    let mut body = json!({"name": name});
    let o = obj(&mut body);
    // The fields InstanceProperties shares with Instance (compute.v1.json).
    for key in [
        "advancedMachineFeatures",
        "canIpForward",
        "confidentialInstanceConfig",
        "description",
        "disks",
        "guestAccelerators",
        "keyRevocationActionType",
        "labels",
        "metadata",
        "minCpuPlatform",
        "networkInterfaces",
        "networkPerformanceConfig",
        "reservationAffinity",
        "resourcePolicies",
        "scheduling",
        "serviceAccounts",
        "shieldedInstanceConfig",
        "tags",
    ] {
        if let Some(v) = props.get(key) {
            o.insert(key.into(), v.clone());
        }
    }
    let mt = str_field(&props, "machineType").unwrap_or_default();
    o.insert(
        "machineType".into(),
        json!(format!("zones/{z}/machineTypes/{}", last_segment(mt))),
    );
    // Google sets `instance-template` and `created-by` on every VM a managed group creates ("Metadata
    // automatically set by the group", https://cloud.google.com/compute/docs/instance-groups/creating-groups-of-managed-instances).
    let mut metadata = o.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mo = obj(&mut metadata);
    mo.remove("fingerprint");
    mo.remove("kind");
    let mut items = mo
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    items.retain(|i| {
        let k = str_field(i, "key");
        k != Some("instance-template") && k != Some("created-by")
    });
    items.push(json!({"key": "instance-template", "value": template_url}));
    items.push(json!({"key": "created-by", "value": igm_url}));
    mo.insert("items".into(), Value::Array(items));
    o.insert("metadata".into(), metadata);
    body
}
