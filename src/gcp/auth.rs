//! Credentials, found where Google's own tools find them and built by `google-cloud-auth`:
//!
//! 1. `GOOGLE_OAUTH_ACCESS_TOKEN`: a raw access token, as the Terraform provider accepts (never refreshed);
//! 2. Application Default Credentials, in Google's order: the file `GOOGLE_APPLICATION_CREDENTIALS` names
//!    (service-account key, `authorized_user`, `external_account` for Workload Identity Federation,
//!    `impersonated_service_account`), gcloud's application-default credentials file, then the metadata
//!    server (GCE, GKE Workload Identity; `GCE_METADATA_HOST` overrides its address);
//! 3. optionally `--impersonate-service-account EMAIL` on top of either.
//!
//! natgw decides which source applies itself (to say so with `-v`, to take the project from it, and to
//! answer "no credentials" within seconds: the metadata server is probed once, briefly), then lets
//! `google-cloud-auth` build the credentials. The first token is fetched before any API call, so a broken
//! login is reported as such, not as a failed API call. Tokens are never printed, not even with `-v`.

use std::path::PathBuf;
use std::time::Duration;

use google_cloud_auth::credentials::{
    self as gauth, CacheableResource, Credentials, CredentialsProvider, EntityTag, anonymous,
    impersonated,
};
use http::{Extensions, HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The scope natgw asks for: Compute Engine and GKE both accept it.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const ACCESS_TOKEN_VAR: &str = "GOOGLE_OAUTH_ACCESS_TOKEN";
const ADC_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
const QUOTA_PROJECT_VAR: &str = "GOOGLE_CLOUD_QUOTA_PROJECT";
const METADATA_HOST_VAR: &str = "GCE_METADATA_HOST";
/// What `google-cloud-auth` talks to when `GCE_METADATA_HOST` is not set.
const METADATA_HOST: &str = "metadata.google.internal";
/// Off Google Cloud the metadata server is usually unresolvable or refuses at once; this bounds the case
/// where its address swallows packets. One attempt, never retried.
const METADATA_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The first token may need a round trip or two (STS, then IAM Credentials).
const FIRST_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The credential types `google-cloud-auth` builds from a file.
const FILE_TYPES: &[&str] = &[
    "service_account",
    "authorized_user",
    "external_account",
    "external_account_authorized_user",
    "impersonated_service_account",
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error(
        "no Google credentials found. natgw looked, in this order, at:\n{tried}\n  Fix: on a workstation, run `gcloud auth application-default login`; in CI, set GOOGLE_APPLICATION_CREDENTIALS to a Workload Identity Federation config or a service-account key (or GOOGLE_OAUTH_ACCESS_TOKEN to an access token); on GCE or GKE, give the VM or the Kubernetes service account an IAM service account."
    )]
    NotFound { tried: String },
    #[error(
        "{origin} names {}, which cannot be read ({source}): point it at a credentials file, or unset it",
        .path.display()
    )]
    Unreadable {
        origin: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} ({origin}) is not a credentials file natgw can use: {reason}. Expected a JSON file whose `type` is one of: {}",
        .path.display(), FILE_TYPES.join(", ")
    )]
    Invalid {
        origin: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "GOOGLE_APPLICATION_CREDENTIALS is set but empty: point it at a credentials file, or unset it"
    )]
    EmptyPath,
    #[error("GOOGLE_OAUTH_ACCESS_TOKEN holds characters an access token cannot have")]
    BadAccessToken,
    #[error("cannot use {from}: {message}")]
    Build { from: String, message: String },
    #[error("cannot get an access token from {from}: {message}\n  {hint}")]
    Token {
        from: String,
        message: String,
        hint: &'static str,
    },
}

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    AccessToken,
    File {
        path: PathBuf,
        origin: &'static str,
        kind: String,
        project: Option<String>,
    },
    Metadata {
        host: String,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::AccessToken => write!(f, "the access token in {ACCESS_TOKEN_VAR}"),
            Source::File {
                path, origin, kind, ..
            } => {
                write!(f, "the {kind} credentials in {} ({origin})", path.display())
            }
            Source::Metadata { host } => write!(f, "the metadata server at {host}"),
        }
    }
}

impl Source {
    fn hint(&self) -> &'static str {
        match self {
            Source::AccessToken => "Get a fresh token, e.g. with `gcloud auth print-access-token`.",
            Source::Metadata { .. } => {
                "Check that the VM, or the Kubernetes service account through Workload Identity, has an IAM service account."
            }
            Source::File { kind, .. } => match kind.as_str() {
                "authorized_user" => {
                    "The login may have expired or been revoked: run `gcloud auth application-default login` again."
                }
                "service_account" => {
                    "The key may have been deleted or disabled: create a new one, or better, use Workload Identity Federation."
                }
                "external_account" => {
                    "Check that the OIDC token file named in `credential_source` exists and is fresh, that the pool's provider accepts it (audience, attribute condition), and that the principal may impersonate the service account, if one is named."
                }
                "impersonated_service_account" => {
                    "The source credentials need roles/iam.serviceAccountTokenCreator on the service account."
                }
                _ => "Check the credentials file.",
            },
        }
    }
}

/// The sources checked so far, for the "no credentials" message.
#[derive(Default)]
struct Tried(Vec<String>);

impl Tried {
    fn push(&mut self, what: impl Into<String>, outcome: impl Into<String>) {
        self.0
            .push(format!("  - {}: {}", what.into(), outcome.into()));
    }
}

pub(crate) fn anonymous() -> Credentials {
    anonymous::Builder::new().build()
}

/// Credentials that gave a first token, and where they came from (never the token): for `-v`.
pub(crate) struct Resolved {
    pub(crate) credentials: Credentials,
    pub(crate) from: String,
}

/// Finds and builds the credentials, fetches a first token, and impersonates `impersonate` if given.
pub(crate) async fn resolve(impersonate: Option<&str>) -> Result<Resolved, AuthError> {
    let mut tried = Tried::default();
    let source = match locate(&mut tried)? {
        Some(source) => source,
        None => {
            let host = metadata_host();
            match probe_metadata(&host).await {
                Ok(()) => Source::Metadata { host },
                Err(why) => {
                    tried.push(format!("the metadata server ({host})"), why);
                    return Err(AuthError::NotFound {
                        tried: tried.0.join("\n"),
                    });
                }
            }
        }
    };
    let base = build(&source)?;
    first_token(&base, &source.to_string(), source.hint()).await?;
    let Some(email) = impersonate else {
        return Ok(Resolved {
            credentials: base,
            from: source.to_string(),
        });
    };
    let from = format!("{source}, impersonating {email}");
    let creds = impersonated::Builder::from_source_credentials(base)
        .with_target_principal(email)
        .with_scopes([SCOPE])
        .build()
        .map_err(|e| AuthError::Build {
            from: from.clone(),
            message: error_chain(&e),
        })?;
    first_token(
        &creds,
        &from,
        "The credentials need roles/iam.serviceAccountTokenCreator on the service account, and the IAM Service Account Credentials API must be enabled.",
    )
    .await?;
    Ok(Resolved {
        credentials: creds,
        from,
    })
}

/// The project the credentials carry, without contacting anything: `GOOGLE_CLOUD_QUOTA_PROJECT`, else the
/// credentials file's `quota_project_id` (or a service-account key's `project_id`). Returns the project and
/// where it was found. Unreadable files are left for `resolve` to report.
pub(crate) fn credentials_project() -> Option<(String, String)> {
    if env(ACCESS_TOKEN_VAR).is_some() {
        return None;
    }
    if let Some(p) = env(QUOTA_PROJECT_VAR) {
        return Some((p, QUOTA_PROJECT_VAR.to_string()));
    }
    match locate(&mut Tried::default()) {
        Ok(Some(Source::File {
            path,
            project: Some(p),
            ..
        })) => Some((p, path.display().to_string())),
        _ => None,
    }
}

/// A non-empty environment variable.
fn env(var: &str) -> Option<String> {
    env_os(var)
        .and_then(|v| v.into_string().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The one door to the environment here: Application Default Credentials are defined by environment
/// variables, so finding them is part of the context edge.
#[allow(clippy::disallowed_methods)]
fn env_os(var: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(var)
}

/// The access token or the credentials file that applies, or `None` when only the metadata server is left
/// (the same order as `google-cloud-auth`'s Application Default Credentials).
fn locate(tried: &mut Tried) -> Result<Option<Source>, AuthError> {
    if env(ACCESS_TOKEN_VAR).is_some() {
        return Ok(Some(Source::AccessToken));
    }
    tried.push(ACCESS_TOKEN_VAR, "not set");
    if let Some(path) = env_os(ADC_VAR) {
        // google-cloud-auth would try to read "" too: say so plainly.
        if path.is_empty() {
            return Err(AuthError::EmptyPath);
        }
        return read_file(PathBuf::from(path), ADC_VAR).map(Some);
    }
    tried.push(ADC_VAR, "not set");
    let Some(path) = gcloud_adc_path() else {
        tried.push(
            "gcloud's application-default credentials",
            "HOME is not set",
        );
        return Ok(None);
    };
    if !path.exists() {
        tried.push(
            "gcloud's application-default credentials",
            format!("{} does not exist", path.display()),
        );
        return Ok(None);
    }
    read_file(path, "gcloud's application-default credentials").map(Some)
}

/// Where `gcloud auth application-default login` writes, and where `google-cloud-auth` reads.
fn gcloud_adc_path() -> Option<PathBuf> {
    let root = if cfg!(windows) {
        env_os("APPDATA")?
    } else {
        env_os("HOME")?
    };
    let dir = if cfg!(windows) {
        PathBuf::from(root).join("gcloud")
    } else {
        PathBuf::from(root).join(".config/gcloud")
    };
    Some(dir.join("application_default_credentials.json"))
}

fn read_file(path: PathBuf, origin: &'static str) -> Result<Source, AuthError> {
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(source) => {
            return Err(AuthError::Unreadable {
                origin,
                path,
                source,
            });
        }
    };
    let invalid = |reason: String| AuthError::Invalid {
        origin,
        path: path.clone(),
        reason,
    };
    // Parse errors carry no content, only a position: safe to show even for a key file.
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON ({e})")))?;
    let kind = json
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| invalid("it has no `type`".into()))?;
    if !FILE_TYPES.contains(&kind) {
        return Err(invalid(format!("its `type` is {kind:?}")));
    }
    let field = |name: &str| {
        json.get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let project = field("quota_project_id").or_else(|| {
        if kind == "service_account" {
            field("project_id")
        } else {
            None
        }
    });
    Ok(Source::File {
        kind: kind.to_string(),
        path,
        origin,
        project,
    })
}

fn build(source: &Source) -> Result<Credentials, AuthError> {
    let built = match source {
        Source::AccessToken => {
            let token = env(ACCESS_TOKEN_VAR).unwrap_or_default();
            let mut header = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| AuthError::BadAccessToken)?;
            header.set_sensitive(true);
            return Ok(Credentials::from(StaticToken {
                header,
                tag: EntityTag::new(),
            }));
        }
        // The same files and the same order: google-cloud-auth reads them again and builds the right type.
        Source::File { .. } | Source::Metadata { .. } => {
            gauth::Builder::default().with_scopes([SCOPE]).build()
        }
    };
    built.map_err(|e| AuthError::Build {
        from: source.to_string(),
        message: error_chain(&e),
    })
}

/// Fetches the first token (which the credentials cache for the API calls that follow).
async fn first_token(creds: &Credentials, from: &str, hint: &'static str) -> Result<(), AuthError> {
    let err = |message: String| AuthError::Token {
        from: from.to_string(),
        message,
        hint,
    };
    match tokio::time::timeout(FIRST_TOKEN_TIMEOUT, creds.headers(Extensions::new())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(err(error_chain(&e))),
        Err(_) => Err(err(format!(
            "no answer within {}s",
            FIRST_TOKEN_TIMEOUT.as_secs()
        ))),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

fn metadata_host() -> String {
    env(METADATA_HOST_VAR).unwrap_or_else(|| METADATA_HOST.to_string())
}

/// One short request to the metadata server: present when it answers with `Metadata-Flavor: Google`.
async fn probe_metadata(host: &str) -> Result<(), String> {
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect ({e})"))?;
        let request = format!(
            "GET /computeMetadata/v1/ HTTP/1.1\r\nHost: {host}\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send a request ({e})"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("cannot read the answer ({e})"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, String>(String::from_utf8_lossy(&head).into_owned())
    };
    let head = tokio::time::timeout(METADATA_PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", METADATA_PROBE_TIMEOUT.as_secs()))??;
    if is_metadata_answer(&head) {
        Ok(())
    } else {
        Err("something answered, but not a metadata server (no `Metadata-Flavor: Google`)".into())
    }
}

fn is_metadata_answer(head: &str) -> bool {
    let mut lines = head.lines();
    let http = lines.next().is_some_and(|l| l.starts_with("HTTP/1."));
    http && lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("metadata-flavor") && v.trim() == "Google"
        })
    })
}

/// A raw OAuth access token: sent as is, never refreshed.
struct StaticToken {
    header: HeaderValue,
    tag: EntityTag,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken([redacted])")
    }
}

impl CredentialsProvider for StaticToken {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, self.header.clone());
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// The IAM permission a 403 says is missing: from the `ErrorInfo` detail's `permission`, else from the
/// message (Compute says "Required 'compute.addresses.list' permission for ...", GKE "Permission
/// 'container.clusters.get' denied on ...").
pub(crate) fn missing_permission(e: &google_cloud_gax::error::Error) -> Option<String> {
    use google_cloud_gax::error::rpc::StatusDetails;
    if let Some(status) = e.status() {
        for d in &status.details {
            if let StatusDetails::ErrorInfo(info) = d
                && let Some(p) = info.metadata.get("permission")
            {
                return Some(p.clone());
            }
        }
        if let Some(p) = permission_in(&status.message) {
            return Some(p);
        }
    }
    e.http_payload()
        .and_then(|b| permission_in(&String::from_utf8_lossy(b)))
}

/// A permission name (`service.resource.verb`) of a service natgw uses, in free text.
fn permission_in(text: &str) -> Option<String> {
    static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = RE
        .get_or_init(|| {
            regex::Regex::new(
                r"\b((?:compute|container|iam|resourcemanager|serviceusage)\.[A-Za-z]+\.[A-Za-z]+)\b",
            )
            .ok()
        })
        .as_ref()?;
    re.captures_iter(text)
        .map(|c| c[1].to_string())
        .find(|p| !p.ends_with(".com"))
}

/// What to add to a 401 or 403 from Google so that it says what to do.
pub(crate) fn denied_hint(e: &google_cloud_gax::error::Error) -> Option<String> {
    match e.http_status_code()? {
        401 => Some(
            "Google rejected the credentials (expired or revoked?): log in again (`gcloud auth application-default login`), or check GOOGLE_APPLICATION_CREDENTIALS / GOOGLE_OAUTH_ACCESS_TOKEN".into(),
        ),
        403 => Some(match missing_permission(e) {
            Some(p) => format!(
                "the credentials lack the IAM permission {p}: grant it (the README lists every permission natgw needs as one custom role)"
            ),
            None => "permission denied: the README lists every permission natgw needs as one custom role".into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::Error;
    use google_cloud_gax::error::rpc::Status;

    fn denied(payload: &str) -> Error {
        let bytes = bytes::Bytes::from(payload.to_string());
        match Status::try_from(&bytes) {
            Ok(s) => Error::service_with_http_metadata(s, Some(403), None),
            Err(_) => Error::http(403, HeaderMap::new(), bytes),
        }
    }

    #[test]
    fn compute_message_names_the_permission() {
        let e = denied(
            r#"{"error":{"code":403,"message":"Required 'compute.addresses.list' permission for 'projects/acme-ci'","errors":[{"message":"Required 'compute.addresses.list' permission for 'projects/acme-ci'","domain":"global","reason":"forbidden"}]}}"#,
        );
        assert_eq!(
            missing_permission(&e).as_deref(),
            Some("compute.addresses.list")
        );
        let hint = denied_hint(&e).expect("a hint for 403");
        assert!(hint.contains("compute.addresses.list"), "{hint}");
    }

    #[test]
    fn error_info_detail_wins() {
        let e = denied(
            r#"{"error":{"code":403,"message":"Permission denied on resource project acme-ci.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"IAM_PERMISSION_DENIED","domain":"container.googleapis.com","metadata":{"permission":"container.clusters.update","resource":"projects/acme-ci"}}]}}"#,
        );
        assert_eq!(
            missing_permission(&e).as_deref(),
            Some("container.clusters.update")
        );
    }

    #[test]
    fn gke_message_and_raw_payload() {
        let e = denied(
            r#"{"error":{"code":403,"message":"Permission 'container.clusters.get' denied on resource '//container.googleapis.com/projects/p/locations/europe-west1/clusters/c' (or it may not exist).","status":"PERMISSION_DENIED"}}"#,
        );
        assert_eq!(
            missing_permission(&e).as_deref(),
            Some("container.clusters.get")
        );
        let raw = denied("<html>compute.instances.setTags is required</html>");
        assert_eq!(
            missing_permission(&raw).as_deref(),
            Some("compute.instances.setTags")
        );
    }

    #[test]
    fn no_permission_named_still_helps() {
        let e = denied(r#"{"error":{"code":403,"message":"Forbidden"}}"#);
        assert_eq!(missing_permission(&e), None);
        assert!(denied_hint(&e).is_some_and(|h| h.contains("custom role")));
        let not_found = Error::http(404, HeaderMap::new(), bytes::Bytes::new());
        assert_eq!(denied_hint(&not_found), None);
    }

    #[test]
    fn domains_are_not_permissions() {
        assert_eq!(permission_in("calling compute.googleapis.com failed"), None);
    }

    #[test]
    fn metadata_answers() {
        assert!(is_metadata_answer(
            "HTTP/1.1 200 OK\r\nmetadata-flavor: Google\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!is_metadata_answer(
            "HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n"
        ));
        assert!(!is_metadata_answer(""));
    }
}
