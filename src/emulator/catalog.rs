//! The fixed catalogue of regions, zones and machine types (real names).

use serde_json::{Value, json};

use super::world::{COMPUTE_URL, stable_id};

pub(crate) const REGIONS: &[(&str, &[&str])] = &[
    ("asia-southeast1", &["a", "b", "c"]),
    ("europe-west1", &["b", "c", "d"]),
    ("europe-west4", &["a", "b", "c"]),
    ("us-central1", &["a", "b", "c", "f"]),
    ("us-east1", &["b", "c", "d"]),
];

/// name, vCPUs, memory in MB, shared core.
pub(crate) const MACHINE_TYPES: &[(&str, u32, u32, bool)] = &[
    ("e2-medium", 2, 4096, true),
    ("e2-micro", 2, 1024, true),
    ("e2-small", 2, 2048, true),
    ("e2-standard-2", 2, 8192, false),
    ("e2-standard-4", 4, 16384, false),
    ("e2-standard-8", 8, 32768, false),
    ("n2-standard-2", 2, 8192, false),
    ("n2-standard-4", 4, 16384, false),
    ("n2-standard-8", 8, 32768, false),
];

const CREATED: &str = "1969-12-31T16:00:00.000-08:00";

pub(crate) fn region_exists(region: &str) -> bool {
    REGIONS.iter().any(|(r, _)| *r == region)
}

/// The region of a zone of the catalogue.
pub(crate) fn zone_region(zone: &str) -> Option<&'static str> {
    REGIONS.iter().find_map(|(r, zs)| {
        zone.strip_prefix(r)
            .and_then(|rest| rest.strip_prefix('-'))
            .filter(|z| zs.contains(z))
            .map(|_| *r)
    })
}

pub(crate) fn regions(project: &str) -> Vec<(String, Value)> {
    REGIONS
        .iter()
        .map(|(r, zones)| {
            let zones: Vec<String> = zones
                .iter()
                .map(|z| format!("{COMPUTE_URL}projects/{project}/zones/{r}-{z}"))
                .collect();
            (
                (*r).to_string(),
                json!({
                    "kind": "compute#region",
                    "id": stable_id(r),
                    "creationTimestamp": CREATED,
                    "name": r,
                    "description": r,
                    "status": "UP",
                    "zones": zones,
                    "quotas": [],
                    "selfLink": format!("{COMPUTE_URL}projects/{project}/regions/{r}"),
                    "supportsPzs": false,
                }),
            )
        })
        .collect()
}

pub(crate) fn zones(project: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = REGIONS
        .iter()
        .flat_map(|(r, zones)| {
            zones.iter().map(move |z| {
                let name = format!("{r}-{z}");
                (
                    name.clone(),
                    json!({
                        "kind": "compute#zone",
                        "id": stable_id(&name),
                        "creationTimestamp": CREATED,
                        "name": name,
                        "description": name,
                        "status": "UP",
                        "region": format!("{COMPUTE_URL}projects/{project}/regions/{r}"),
                        "selfLink": format!("{COMPUTE_URL}projects/{project}/zones/{name}"),
                        "availableCpuPlatforms": ["Intel Cascade Lake", "AMD Milan"],
                        "supportsPzs": false,
                    }),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub(crate) fn machine_types(project: &str, zone: &str) -> Vec<(String, Value)> {
    MACHINE_TYPES
        .iter()
        .map(|(name, cpus, mem, shared)| {
            (
                (*name).to_string(),
                json!({
                    "kind": "compute#machineType",
                    "id": stable_id(name),
                    "creationTimestamp": CREATED,
                    "name": name,
                    "description": format!("{cpus} vCPUs, {} GB RAM", mem / 1024),
                    "guestCpus": cpus,
                    "memoryMb": mem,
                    "imageSpaceGb": 0,
                    "maximumPersistentDisks": 128,
                    "maximumPersistentDisksSizeGb": "263168",
                    "zone": zone,
                    "isSharedCpu": shared,
                    "architecture": "X86_64",
                    "selfLink": format!("{COMPUTE_URL}projects/{project}/zones/{zone}/machineTypes/{name}"),
                }),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_belong_to_regions() {
        assert_eq!(zone_region("europe-west1-b"), Some("europe-west1"));
        assert_eq!(zone_region("europe-west1-a"), None);
        assert_eq!(zone_region("mars-1-a"), None);
        assert!(region_exists("us-central1"));
    }
}
