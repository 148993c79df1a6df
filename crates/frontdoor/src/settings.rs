//! The front door's own settings section: flags and `OPENSPINE_…` environment variables,
//! flattened into `openspine serve`.

use crate::{FrontDoorConfig, IdentityProvider};
use std::path::PathBuf;

#[derive(Debug, Clone, clap::Args)]
pub struct FrontDoorArgs {
    /// The app registry: a JSON-lines file, one app per line (see README, "Front door").
    /// Reloaded on SIGHUP. Giving it turns the front door on.
    #[arg(long, env = "OPENSPINE_FRONTDOOR_REGISTRY")]
    pub frontdoor_registry: Option<PathBuf>,
    /// Serve the front door even without a registry (no apps until one is given).
    #[arg(long, env = "OPENSPINE_FRONTDOOR", value_parser = clap::builder::BoolishValueParser::new())]
    pub frontdoor: bool,
    /// Issuer (`iss`) of CIS2 ID tokens accepted by token exchange.
    #[arg(long, env = "OPENSPINE_CIS2_ISSUER", requires = "cis2_jwks_url")]
    pub cis2_issuer: Option<String>,
    /// Where CIS2 publishes its signing keys.
    #[arg(long, env = "OPENSPINE_CIS2_JWKS_URL", requires = "cis2_issuer")]
    pub cis2_jwks_url: Option<String>,
    /// Issuer (`iss`) of NHS login ID tokens accepted by token exchange.
    #[arg(
        long,
        env = "OPENSPINE_NHS_LOGIN_ISSUER",
        requires = "nhs_login_jwks_url"
    )]
    pub nhs_login_issuer: Option<String>,
    /// Where NHS login publishes its signing keys.
    #[arg(
        long,
        env = "OPENSPINE_NHS_LOGIN_JWKS_URL",
        requires = "nhs_login_issuer"
    )]
    pub nhs_login_jwks_url: Option<String>,
    /// The base URL clients call when a proxy is in front (`https://api.example.nhs.uk`):
    /// client assertions must name `<base>/oauth2/token` as their `aud`.
    #[arg(long, env = "OPENSPINE_PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,
    /// The `apikey` header that `/oauth2/_status` requires; unset refuses every call.
    #[arg(long, env = "OPENSPINE_STATUS_API_KEY", hide_env_values = true)]
    pub status_api_key: Option<String>,
    /// Token requests per app per minute (the platform's default: 300; 0 turns it off).
    #[arg(long, env = "OPENSPINE_TOKEN_QUOTA_PER_MINUTE", default_value_t = 300)]
    pub token_quota_per_minute: u64,
}

impl FrontDoorArgs {
    /// The front door runs when a registry is given, when asked for, or with `--demo`.
    pub fn enabled(&self, demo: bool) -> bool {
        self.frontdoor || self.frontdoor_registry.is_some() || demo
    }

    pub fn config(
        &self,
        demo: bool,
        sandbox: bool,
        tls: bool,
        body_idle_timeout: std::time::Duration,
    ) -> FrontDoorConfig {
        let idp = |issuer: &Option<String>, jwks: &Option<String>| match (issuer, jwks) {
            (Some(issuer), Some(jwks_url)) => Some(IdentityProvider {
                issuer: issuer.clone(),
                jwks_url: jwks_url.clone(),
            }),
            _ => None,
        };
        FrontDoorConfig {
            registry: self.frontdoor_registry.clone(),
            demo,
            sandbox,
            cis2: idp(&self.cis2_issuer, &self.cis2_jwks_url),
            nhs_login: idp(&self.nhs_login_issuer, &self.nhs_login_jwks_url),
            public_base_url: self.public_base_url.clone(),
            scheme: if tls { "https" } else { "http" },
            status_api_key: self.status_api_key.clone(),
            token_quota_per_minute: self.token_quota_per_minute,
            body_idle_timeout,
        }
    }
}
