//! Credentials, resolved the way Google's own tools resolve them, through `google-cloud-auth`:
//! `GOOGLE_OAUTH_ACCESS_TOKEN` (a raw token, as the Terraform provider accepts), then Application Default
//! Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, the metadata server), optionally
//! impersonating a service account. Tokens are never printed.

use google_cloud_auth::credentials::{
    CacheableResource, Credentials, CredentialsProvider, EntityTag, anonymous, impersonated,
};
use http::{Extensions, HeaderMap, HeaderValue};

use crate::cli::CliError;
use crate::cli::Shell;

/// The scope natgw asks for: Compute Engine and GKE both accept it.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

pub(crate) fn anonymous() -> Credentials {
    anonymous::Builder::new().build()
}

/// A raw OAuth access token: sent as is, never refreshed.
struct StaticToken {
    header: HeaderValue,
    tag: EntityTag,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
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

pub(crate) async fn resolve(
    impersonate: Option<&str>,
    shell: &Shell,
) -> Result<Credentials, CliError> {
    let base = match std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN") {
        Ok(token) if !token.trim().is_empty() => {
            shell.debug("credentials: GOOGLE_OAUTH_ACCESS_TOKEN");
            let mut header =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    CliError::Message(
                        "GOOGLE_OAUTH_ACCESS_TOKEN holds characters a token cannot have".into(),
                    )
                })?;
            header.set_sensitive(true);
            Credentials::from(StaticToken {
                header,
                tag: EntityTag::new(),
            })
        }
        _ => {
            shell.debug("credentials: Application Default Credentials");
            google_cloud_auth::credentials::Builder::default()
                .with_scopes([SCOPE])
                .build()
                .map_err(|e| no_credentials(&e.to_string()))?
        }
    };
    match impersonate {
        None => Ok(base),
        Some(email) => {
            shell.debug(&format!("impersonating {email}"));
            impersonated::Builder::from_source_credentials(base)
                .with_target_principal(email)
                .with_scopes([SCOPE])
                .build()
                .map_err(|e| CliError::Message(format!("cannot impersonate {email}: {e}")))
        }
    }
}

fn no_credentials(detail: &str) -> CliError {
    CliError::Message(format!(
        "no Google credentials found ({detail}).\n  Tried: GOOGLE_OAUTH_ACCESS_TOKEN, GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default credentials, the metadata server.\n  Fix: run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a credentials file (service-account key, or a Workload Identity Federation config)."
    ))
}
