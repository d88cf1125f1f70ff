//! Credentials end to end: `natgw plan` against the emulator without `--anonymous`, each source backed by a
//! local fake of Google's side (OAuth token endpoint, STS, IAM Credentials, metadata server). The emulator's
//! request log holds the SHA-256 of every bearer token it received; no token may appear in natgw's output,
//! even with `-v`.

use std::collections::BTreeSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fake::{Fake, Seen, json_reply, json_status};
use crate::harness::{Natgw, Project, Run, example_config};
use crate::support::PROJECT;

/// The golden file of credential errors.
const GOLDEN: &str = "errors-credentials.txt";

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token-looking string unique to this run.
pub fn fresh_token(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}.{}-{nanos:x}", std::process::id())
}

/// The hashes of the bearer tokens the emulator received (`None` for a request without one).
pub fn tokens_seen(project: &Project) -> BTreeSet<Option<String>> {
    project
        .emu
        .requests()
        .iter()
        .map(|r| {
            let auth = r.get("auth")?;
            assert_eq!(
                auth.get("scheme").and_then(|s| s.as_str()),
                Some("Bearer"),
                "{r}"
            );
            auth.get("token_sha256")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .collect()
}

/// natgw succeeded, the emulator saw requests and every one carried exactly `token`, and none of `secrets`
/// appears in natgw's output.
pub fn assert_used_token(project: &Project, run: &Run, token: &str, secrets: &[&str]) {
    run.ok();
    let seen = tokens_seen(project);
    assert!(
        !project.emu.requests().is_empty(),
        "the emulator got no request"
    );
    assert_eq!(
        seen,
        BTreeSet::from([Some(sha256_hex(token))]),
        "the emulator got other tokens"
    );
    let all = run.all();
    for s in secrets.iter().chain([&token]) {
        assert!(!all.contains(s), "natgw printed a secret ({s}):\n{all}");
    }
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create a directory");
    }
    std::fs::write(path, text).expect("write a file");
}

/// `natgw ARGS` resolving credentials from `credentials`, written to `DIR/NAME` and named by
/// GOOGLE_APPLICATION_CREDENTIALS.
fn with_credentials_file(
    project: &Project,
    name: &str,
    credentials: &serde_json::Value,
    args: &[&str],
) -> Natgw {
    let file = project.dir.join(name);
    write(&file, &credentials.to_string());
    project
        .credentialed(args)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &file)
}

/// The example config without its `project` line: the project must come from elsewhere.
fn config_without_project() -> String {
    let text = example_config();
    let out: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("project ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(out, text);
    out
}

/// An OAuth token endpoint for `authorized_user` refresh tokens (JSON body, as google-cloud-auth sends it).
fn oauth_endpoint(refresh_token: String, access_token: String) -> Fake {
    Fake::start(move |req| {
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap_or_default();
        if req.method == "POST"
            && req.path == "/token"
            && body["grant_type"] == "refresh_token"
            && body["refresh_token"] == refresh_token.as_str()
        {
            json_reply(serde_json::json!({
                "access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
            }))
        } else {
            json_status(
                400,
                r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#.into(),
            )
        }
    })
}

#[test]
fn authorized_user_from_gclouds_file_with_its_quota_project() {
    let project = Project::with_config(&config_without_project(), &[]);
    let refresh = fresh_token("1//refresh");
    let token = fresh_token("ya29.user");
    let oauth = oauth_endpoint(refresh.clone(), token.clone());
    let secret = fresh_token("client-secret");
    let adc = serde_json::json!({
        "type": "authorized_user",
        "client_id": "123.apps.googleusercontent.com",
        "client_secret": secret,
        "refresh_token": refresh,
        "quota_project_id": PROJECT,
        "token_uri": format!("{}/token", oauth.url),
    });
    write(
        &project
            .dir
            .join("home/.config/gcloud/application_default_credentials.json"),
        &adc.to_string(),
    );
    let run = project.credentialed(&["plan", "-v"]).run();
    assert_used_token(&project, &run, &token, &[&refresh, &secret]);
    run.stderr_has("credentials: the authorized_user credentials in");
    assert_eq!(
        oauth.seen().len(),
        1,
        "one refresh, cached for every call: {:?}",
        oauth.seen()
    );
}

#[test]
fn a_revoked_login_says_to_log_in_again() {
    let project = Project::new(&[]);
    let oauth = oauth_endpoint("the-valid-one".into(), "unused".into());
    let adc = serde_json::json!({
        "type": "authorized_user", "client_id": "c", "client_secret": "s",
        "refresh_token": "a-revoked-one", "token_uri": format!("{}/token", oauth.url),
    });
    with_credentials_file(&project, "adc.json", &adc, &["plan"])
        .mask(&oauth.url, "[OAUTH]")
        .run()
        .code(1)
        .stderr_has("cannot get an access token from the authorized_user credentials")
        .stderr_has("gcloud auth application-default login")
        .output_lacks("a-revoked-one")
        .golden(GOLDEN, "a revoked login");
    assert!(
        project.emu.requests().is_empty(),
        "no API call without a token"
    );
}

/// STS for `external_account`: checks the form Google's STS receives and answers with `access_token`.
pub fn sts_endpoint(audience: String, subject: String, access_token: String) -> Fake {
    Fake::start(move |req| {
        let ok = req.method == "POST"
            && req.path == "/v1/token"
            && req.form("grant_type").as_deref()
                == Some("urn:ietf:params:oauth:grant-type:token-exchange")
            && req.form("subject_token").as_deref() == Some(subject.as_str())
            && req.form("subject_token_type").as_deref()
                == Some("urn:ietf:params:oauth:token-type:jwt")
            && req.form("audience").as_deref() == Some(audience.as_str());
        if !ok {
            return (400, vec![], format!("unexpected STS request: {req:?}"));
        }
        json_reply(serde_json::json!({
            "access_token": access_token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
    })
}

const SERVICE_ACCOUNT: &str = "natgw@acme-ci.iam.gserviceaccount.com";

/// IAM Credentials' generateAccessToken for `email`: accepts only `Bearer source_token`, answers `token`.
pub fn iam_endpoint(email: &str, source_token: String, token: String) -> Fake {
    let path = format!("/v1/projects/-/serviceAccounts/{email}:generateAccessToken");
    let expected = format!("Bearer {source_token}");
    Fake::start(move |req| {
        if req.method == "POST"
            && req.path == path
            && req.header("authorization") == Some(expected.as_str())
        {
            json_reply(
                serde_json::json!({"accessToken": token, "expireTime": "2099-01-01T00:00:00Z"}),
            )
        } else {
            (
                403,
                vec![],
                format!("unexpected request: {} {}", req.method, req.path),
            )
        }
    })
}

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/gitlab/providers/gitlab-com";

#[test]
fn external_account_exchanges_a_file_sourced_oidc_token_at_sts() {
    let project = Project::new(&[]);
    let oidc = fresh_token("eyJhbGciOiJSUzI1NiJ9.gitlab-oidc");
    let token = fresh_token("ya29.federated");
    let sts = sts_endpoint(AUDIENCE.into(), oidc.clone(), token.clone());
    let oidc_file = project.dir.join("oidc-token");
    write(&oidc_file, &oidc);
    let config = serde_json::json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", sts.url),
        "credential_source": {"file": oidc_file},
    });
    let run = with_credentials_file(&project, "wif.json", &config, &["plan", "-v"]).run();
    assert_used_token(&project, &run, &token, &[&oidc]);
    assert_eq!(sts.seen().len(), 1);
}

#[test]
fn external_account_impersonating_a_service_account() {
    let project = Project::new(&[]);
    let oidc = fresh_token("eyJhbGciOiJSUzI1NiJ9.gitlab-oidc");
    let federated = fresh_token("ya29.federated");
    let token = fresh_token("ya29.impersonated");
    let sts = sts_endpoint(AUDIENCE.into(), oidc.clone(), federated.clone());
    let iam = iam_endpoint(SERVICE_ACCOUNT, federated.clone(), token.clone());
    let oidc_file = project.dir.join("oidc-token");
    write(&oidc_file, &oidc);
    let config = serde_json::json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", sts.url),
        "service_account_impersonation_url": format!(
            "{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
            iam.url
        ),
        "credential_source": {"file": oidc_file},
    });
    let run = with_credentials_file(&project, "wif.json", &config, &["plan", "-v"]).run();
    assert_used_token(&project, &run, &token, &[&oidc, &federated]);
    assert_eq!(iam.seen().len(), 1, "{:?}", iam.seen());
}

#[test]
fn metadata_server_through_gce_metadata_host() {
    let project = Project::new(&[]);
    let token = fresh_token("ya29.metadata");
    let reply_token = token.clone();
    let mds = Fake::start(move |req| {
        let flavor = vec![("metadata-flavor", "Google".to_string())];
        if req.header("metadata-flavor") != Some("Google") {
            return (403, flavor, "Missing Metadata-Flavor:Google header.".into());
        }
        match req.path.as_str() {
            "/computeMetadata/v1/" => (200, flavor, "instance/\nproject/\n".into()),
            "/computeMetadata/v1/instance/service-accounts/default/token" => {
                let body = serde_json::json!({"access_token": reply_token, "expires_in": 3599, "token_type": "Bearer"});
                let mut headers = flavor;
                headers.push(("content-type", "application/json".into()));
                (200, headers, body.to_string())
            }
            _ => (404, flavor, "not found".into()),
        }
    });
    let run = project
        .credentialed(&["plan", "-v"])
        .env("GCE_METADATA_HOST", &mds.host)
        .run();
    assert_used_token(&project, &run, &token, &[]);
    let token_calls: Vec<Seen> = mds
        .seen()
        .into_iter()
        .filter(|r| r.path.ends_with("/token"))
        .collect();
    assert_eq!(token_calls.len(), 1, "{token_calls:?}");
    assert!(token_calls[0].query.contains("scopes="), "{token_calls:?}");
}

#[test]
fn a_raw_access_token_from_the_environment() {
    let project = Project::new(&[]);
    let token = fresh_token("ya29.raw");
    let run = project
        .credentialed(&["plan", "-v"])
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", &token)
        .run();
    assert_used_token(&project, &run, &token, &[]);
}

#[test]
fn no_credentials_says_where_it_looked_and_what_to_do() {
    let project = Project::new(&[]);
    let run = project.credentialed(&["plan"]).run();
    run.code(1).golden(GOLDEN, "no credentials anywhere");
    for want in [
        "no Google credentials found",
        "GOOGLE_OAUTH_ACCESS_TOKEN: not set",
        "GOOGLE_APPLICATION_CREDENTIALS: not set",
        "application_default_credentials.json does not exist",
        "the metadata server (127.0.0.1:",
        "gcloud auth application-default login",
        "Workload Identity Federation",
    ] {
        run.stderr_has(want);
    }
    assert!(project.emu.requests().is_empty());
}

#[test]
fn a_bad_credentials_file_is_named() {
    let project = Project::new(&[]);
    let missing = project.dir.join("nowhere.json");
    let odd = project.dir.join("odd.json");
    write(&odd, r#"{"type": "api_key"}"#);
    let cases: [(&str, &Path, &[&str]); 3] = [
        (
            "a missing credentials file",
            &missing,
            &["GOOGLE_APPLICATION_CREDENTIALS names", "nowhere.json"],
        ),
        (
            "GOOGLE_APPLICATION_CREDENTIALS empty",
            Path::new(""),
            &["GOOGLE_APPLICATION_CREDENTIALS is set but empty"],
        ),
        (
            "a credentials file of an unknown type",
            &odd,
            &["its `type` is \"api_key\"", "external_account"],
        ),
    ];
    for (what, file, wants) in cases {
        let run = project
            .credentialed(&["plan"])
            .env("GOOGLE_APPLICATION_CREDENTIALS", file)
            .run();
        run.code(1).golden(GOLDEN, what);
        for want in wants {
            run.stderr_has(want);
        }
    }
}

#[test]
fn no_project_anywhere_is_a_clear_error() {
    let project = Project::with_config(&config_without_project(), &[]);
    project
        .credentialed(&["validate"])
        .run()
        .code(1)
        .stderr_has("no project")
        .stderr_has("GOOGLE_CLOUD_PROJECT")
        .golden(GOLDEN, "no project anywhere");
}

#[test]
fn a_403_names_the_missing_permission() {
    // A fake Google that denies everything the way Compute does.
    let google = Fake::start(|_| {
        json_status(
            403,
            serde_json::json!({"error": {
                "code": 403,
                "message": format!("Required 'compute.instances.list' permission for 'projects/{PROJECT}'"),
                "errors": [{"message": "Required 'compute.instances.list' permission", "domain": "global", "reason": "forbidden"}],
            }})
            .to_string(),
        )
    });
    let project = Project::new(&[]);
    Natgw::new(&project.dir)
        .args(["plan", "--anonymous"])
        .endpoint(&google.url)
        .config(&project.config)
        .env("NATGW_RETRY_TIMEOUT", "5")
        .run()
        .code(1)
        // No golden file: which of the parallel reads is refused first varies.
        .stderr_has("lack the IAM permission compute.instances.list");
    assert!(!google.seen().is_empty());
}

#[test]
#[allow(clippy::print_stderr)]
fn service_account_key_with_its_project() {
    // A service-account key signs its own tokens (a self-signed JWT): no token endpoint to fake, but a real
    // RSA key is needed.
    let project = Project::with_config(&config_without_project(), &[]);
    let key = project.dir.join("rsa.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .output();
    if !made.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: openssl cannot make an RSA key here ({made:?})");
        return;
    }
    let pem = std::fs::read_to_string(&key).expect("the key");
    let sa = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "1234567890",
        "token_uri": "http://127.0.0.1:1/token",
    });
    let run = with_credentials_file(&project, "sa.json", &sa, &["plan", "-v"]).run();
    run.ok()
        .stderr_has("credentials: the service_account credentials in");
    let seen = tokens_seen(&project);
    assert_eq!(seen.len(), 1, "one token for every call: {seen:?}");
    assert!(
        seen.iter().all(Option::is_some),
        "every call carries a bearer token"
    );
    let key_body: String = pem.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        !key_body.is_empty() && !run.all().contains(&key_body),
        "{}",
        run.all()
    );
}

#[test]
fn a_metadata_server_that_never_answers_is_given_up_on() {
    // Accepts connections (the kernel does, into the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = silent.local_addr().expect("address").to_string();
    let project = Project::new(&[]);
    let run = project
        .credentialed(&["plan"])
        .env("GCE_METADATA_HOST", &host)
        .run();
    run.code(1)
        .stderr_has("no Google credentials found")
        .stderr_has(&format!("the metadata server ({host}): no answer within"))
        .golden(GOLDEN, "a metadata server that never answers");
    drop(silent);
}

#[test]
fn impersonated_service_account_file() {
    // What `gcloud auth application-default login --impersonate-service-account` writes.
    let project = Project::new(&[]);
    let refresh = fresh_token("1//refresh");
    let user_token = fresh_token("ya29.user");
    let token = fresh_token("ya29.sa");
    let oauth = oauth_endpoint(refresh.clone(), user_token.clone());
    let iam = iam_endpoint(SERVICE_ACCOUNT, user_token.clone(), token.clone());
    let config = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!(
            "{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
            iam.url
        ),
        "source_credentials": {
            "type": "authorized_user", "client_id": "c", "client_secret": "s",
            "refresh_token": refresh, "token_uri": format!("{}/token", oauth.url),
        },
    });
    let run = with_credentials_file(&project, "impersonated.json", &config, &["plan", "-v"]).run();
    assert_used_token(&project, &run, &token, &[&refresh, &user_token]);
    assert_eq!(iam.seen().len(), 1, "{:?}", iam.seen());
}
