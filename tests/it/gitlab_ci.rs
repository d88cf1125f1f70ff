//! examples/.gitlab-ci.yml: valid GitLab CI, shaped as the README says, and its commands, run in order,
//! work against the emulator with Workload Identity Federation (fake STS and IAM Credentials).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_yaml::Value;

use crate::credentials::{fresh_token, iam_endpoint, sha256_hex, sts_endpoint, tokens_seen};
use crate::fake::Fake;
use crate::harness::{Natgw, Project, Run};

const PIPELINE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/.gitlab-ci.yml");
const PIPELINE: &str = include_str!("../../examples/.gitlab-ci.yml");
/// Keys of a GitLab CI file that are not jobs.
const GLOBAL_KEYS: &[&str] = &[
    "variables",
    "stages",
    "workflow",
    "default",
    "include",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

fn pipeline() -> Value {
    serde_yaml::from_str(PIPELINE).expect("examples/.gitlab-ci.yml is YAML")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The jobs, in stage order, then file order.
fn jobs(p: &Value) -> Vec<(String, Value)> {
    let map = p.as_mapping().expect("a mapping at the top");
    let mut out = Vec::new();
    for stage in strings(&p["stages"]) {
        for (k, v) in map {
            let name = k.as_str().unwrap_or_default();
            if name.starts_with('.') || GLOBAL_KEYS.contains(&name) {
                continue;
            }
            if v["stage"].as_str() == Some(stage.as_str()) {
                out.push((name.to_string(), v.clone()));
            }
        }
    }
    out
}

/// `${NAME}` and `$NAME` replaced by the pipeline's own variables.
fn expand(text: &str, p: &Value) -> String {
    let mut out = text.to_string();
    if let Some(vars) = p["variables"].as_mapping() {
        for (k, v) in vars {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                continue;
            };
            out = out
                .replace(&format!("${{{k}}}"), v)
                .replace(&format!("${k}"), v);
        }
    }
    out
}

#[test]
#[allow(clippy::print_stderr)]
fn the_example_pipeline_is_valid_gitlab_ci() {
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.gitlab-ci", PIPELINE_PATH])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => eprintln!(
            "SKIPPED: check-jsonschema is not installed ({e}); `pip install check-jsonschema` to run this test"
        ),
        Ok(o) => assert!(
            o.status.success(),
            "GitLab's schema rejects examples/.gitlab-ci.yml:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

#[test]
fn the_example_pipeline_has_the_documented_shape() {
    let p = pipeline();
    let names: Vec<String> = jobs(&p).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["validate", "plan", "apply", "check"]);
    // Merge requests and the default branch only.
    let workflow = serde_yaml::to_string(&p["workflow"]).expect("workflow");
    assert!(workflow.contains("merge_request_event"), "{workflow}");
    assert!(workflow.contains("$CI_DEFAULT_BRANCH"), "{workflow}");

    assert_eq!(strings(&p["validate"]["script"]), ["natgw validate"]);
    assert!(
        p["validate"]["extends"].is_null(),
        "validate needs no credentials"
    );

    // The plan is saved, kept, and its report feeds the merge-request widget.
    let plan = &p["plan"];
    assert_eq!(
        strings(&plan["script"]),
        ["natgw plan --out plan.natgw --gitlab-report plan.json"]
    );
    assert_eq!(strings(&plan["artifacts"]["paths"]), ["plan.natgw"]);
    assert_eq!(
        plan["artifacts"]["reports"]["terraform"].as_str(),
        Some("plan.json")
    );
    assert!(
        plan["rules"].is_null(),
        "plan runs wherever the workflow runs"
    );

    // The reviewed plan, applied by hand, one at a time, on the default branch only.
    let apply = &p["apply"];
    assert_eq!(strings(&apply["script"]), ["natgw apply plan.natgw"]);
    assert_eq!(strings(&apply["needs"]), ["plan"]);
    assert!(
        apply["resource_group"]
            .as_str()
            .is_some_and(|g| !g.is_empty())
    );
    let rules = apply["rules"].as_sequence().expect("apply has rules");
    assert_eq!(rules.len(), 2);
    // Never from a schedule: a monitor must not change the project.
    assert_eq!(
        rules[0]["if"].as_str(),
        Some("$CI_PIPELINE_SOURCE == \"schedule\"")
    );
    assert_eq!(rules[0]["when"].as_str(), Some("never"));
    assert_eq!(
        rules[1]["if"].as_str(),
        Some("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH")
    );
    assert_eq!(rules[1]["when"].as_str(), Some("manual"));

    // check: by itself on a schedule, by hand on the default branch; read-only, so no resource group.
    let check = &p["check"];
    assert_eq!(strings(&check["script"]), ["natgw check"]);
    assert!(check["resource_group"].is_null());
    let rules = check["rules"].as_sequence().expect("check has rules");
    assert_eq!(
        rules[0]["if"].as_str(),
        Some("$CI_PIPELINE_SOURCE == \"schedule\"")
    );
    assert!(rules[0]["when"].is_null(), "on_success: {rules:?}");

    // Workload Identity Federation through an ID token; no key anywhere.
    for job in ["plan", "apply", "check"] {
        assert_eq!(
            p[job]["extends"].as_str(),
            Some(".gcp-credentials"),
            "{job}"
        );
    }
    let aud = expand(
        p[".gcp-credentials"]["id_tokens"]["GCP_ID_TOKEN"]["aud"]
            .as_str()
            .expect("an aud"),
        &p,
    );
    assert_eq!(
        aud,
        "https://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/gitlab/providers/gitlab"
    );
    for word in ["private_key", "GOOGLE_CREDENTIALS", "service_account\""] {
        assert!(
            !PIPELINE.contains(word),
            "the example must not use a key ({word})"
        );
    }
}

/// Runs the credential snippet as a job would, with `id_token` as the job's ID token; returns the path of
/// the credentials file it points GOOGLE_APPLICATION_CREDENTIALS at.
fn run_credentials_snippet(p: &Value, dir: &Path, id_token: &str) -> String {
    let mut script = strings(&p[".gcp-credentials"]["before_script"]).join("\n");
    script.push_str("\nprintf '%s' \"$GOOGLE_APPLICATION_CREDENTIALS\"\n");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("a TMPDIR");
    let mut c = Command::new("sh");
    c.args(["-e", "-c", &script])
        .env("GCP_ID_TOKEN", id_token)
        .env("TMPDIR", &tmp)
        .env("CI_PROJECT_DIR", dir)
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, v) in p["variables"].as_mapping().expect("variables") {
        if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
            c.env(k, v);
        }
    }
    let out = c.output().expect("run sh");
    assert!(
        out.status.success(),
        "the credentials snippet failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("a path")
}

/// The natgw command of one script line, run like a job would (CI set, no terminal), in `dir`.
fn natgw_line(line: &str, dir: &Path, endpoint: &str, credentials: Option<&Path>) -> Run {
    let mut words = line.split_whitespace();
    assert_eq!(
        words.next(),
        Some("natgw"),
        "the example's scripts run natgw only: {line}"
    );
    let natgw = Natgw::new(dir).args(words).env("NATGW_ENDPOINT", endpoint);
    match credentials {
        Some(path) => natgw.env("GOOGLE_APPLICATION_CREDENTIALS", path),
        None => natgw,
    }
    .run()
}

#[test]
fn the_example_pipeline_runs_in_order_against_the_emulator() {
    let p = pipeline();
    let project = Project::new(&[]);
    let id_token = fresh_token("eyJhbGciOiJSUzI1NiJ9.gitlab-id-token");
    let federated = fresh_token("ya29.federated");
    let token = fresh_token("ya29.natgw-sa");
    let audience = expand(
        "//iam.googleapis.com/projects/${GCP_PROJECT_NUMBER}/locations/global/workloadIdentityPools/${GCP_WIF_POOL}/providers/${GCP_WIF_PROVIDER}",
        &p,
    );
    let sts: Fake = sts_endpoint(audience.clone(), id_token.clone(), federated.clone());
    let email = expand("${GCP_SERVICE_ACCOUNT}", &p);
    let iam = iam_endpoint(&email, federated.clone(), token.clone());

    // The snippet writes a Workload Identity Federation config for Google's endpoints; point it at the fakes.
    let written = run_credentials_snippet(&p, &project.dir, &id_token);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&written).expect("the written credentials"))
            .expect("the snippet writes JSON");
    assert_eq!(config["type"], "external_account");
    assert_eq!(config["audience"], audience.as_str());
    assert_eq!(config["token_url"], "https://sts.googleapis.com/v1/token");
    let impersonation = config["service_account_impersonation_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        impersonation,
        format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
        )
    );
    let token_file = config["credential_source"]["file"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("the ID token file"),
        id_token
    );
    // In a temporary directory (TMPDIR here), not in the project directory that artifacts come from.
    assert!(
        Path::new(&token_file).starts_with(project.dir.join("tmp")),
        "{token_file}"
    );
    config["token_url"] = format!("{}/v1/token", sts.url).into();
    config["service_account_impersonation_url"] = impersonation
        .replace("https://iamcredentials.googleapis.com", &iam.url)
        .into();
    let credentials = project.dir.join("tmp/credentials-for-the-fakes.json");
    std::fs::write(&credentials, config.to_string()).expect("write the credentials");

    for (name, job) in jobs(&p) {
        let creds =
            (job["extends"].as_str() == Some(".gcp-credentials")).then_some(credentials.as_path());
        for line in strings(&job["script"]) {
            let run = natgw_line(&line, &project.dir, &project.emu.url, creds);
            run.ok();
            let all = run.all();
            for secret in [&id_token, &federated, &token] {
                assert!(
                    !all.contains(secret.as_str()),
                    "{name}: a token in the output:\n{all}"
                );
            }
            assert!(
                !all.contains('\u{1b}'),
                "{name}: colours in CI output:\n{all}"
            );
        }
        if name == "plan" {
            for path in strings(&job["artifacts"]["paths"]) {
                assert!(
                    project.dir.join(&path).is_file(),
                    "the plan job's artifact {path}"
                );
            }
            let report_path = job["artifacts"]["reports"]["terraform"]
                .as_str()
                .expect("a report");
            let report: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(project.dir.join(report_path)).expect("the report"),
            )
            .expect("the report is JSON");
            assert!(report["create"].as_u64().is_some_and(|n| n > 0), "{report}");
            // The node pool gets the gateway's tag: an update.
            assert_eq!(report["update"], 1, "{report}");
            assert_eq!(report["delete"], 0, "{report}");
        }
    }
    assert!(!project.mutations().is_empty(), "apply changed nothing");
    assert_eq!(
        tokens_seen(&project),
        std::collections::BTreeSet::from([Some(sha256_hex(&token))]),
        "every API call carries the service account's token"
    );
    assert_eq!(
        sts.seen().len(),
        3,
        "one exchange per natgw run (plan, apply, check)"
    );
    assert_eq!(iam.seen().len(), 3);

    // What was applied is what the config says.
    let again = natgw_line(
        "natgw plan",
        &project.dir,
        &project.emu.url,
        Some(&credentials),
    );
    again.ok();
    again.stdout_has("No changes.");
}
