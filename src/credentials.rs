//! Credentials: the roles a caller can have, the static tokens (kept as SHA-256 digests)
//! and the JWT settings, as configuration reads them. The HTTP layer (`api::auth`) applies
//! them to requests; this module depends on nothing above configuration.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{config::Secret, field::validate_name};

/// Shortest static token accepted: 16 characters (a 96-bit random token in base64).
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest bearer credential read from a request; longer ones are refused unhashed.
pub const MAX_CREDENTIAL_LEN: usize = 8192;
/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    User(String),
    Executor,
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User(_) => "user",
            Role::Executor => "executor",
        }
    }
}
/// `SCHEDULER_AUTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSwitch {
    /// Unset: on when credentials are configured (see `Config::auth_enabled`).
    Auto,
    On,
    Off,
}

#[derive(Clone)]
struct TokenEntry {
    digest: [u8; 32],
    role: Role,
}

/// The configured static tokens, as SHA-256 digests with their roles. `Debug` shows only
/// how many there are of each role.
#[derive(Clone, Default)]
pub struct TokenSet {
    entries: Vec<TokenEntry>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |name| {
            self.entries
                .iter()
                .filter(|e| e.role.name() == name)
                .count()
        };
        f.debug_struct("TokenSet")
            .field("admin", &count("admin"))
            .field("user", &count("user"))
            .field("executor", &count("executor"))
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenSet {
    /// Parses entries separated by commas or newlines; blank entries and lines starting
    /// with `#` are skipped. Errors name the entry by position, never by content.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set = TokenSet::default();
        let entries = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let n = i + 1;
            let (role, token) = match entry.split_once(':') {
                Some(("admin", token)) => (Role::Admin, token),
                Some(("executor", token)) => (Role::Executor, token),
                Some(("user", rest)) => {
                    let (user, token) = rest
                        .rsplit_once(':')
                        .ok_or_else(|| format!("entry {n}: expected user:<user_id>:<token>"))?;
                    validate_name(user, "user_id")
                        .map_err(|e| format!("entry {n}: {}", e.message))?;
                    (Role::User(user.to_owned()), token)
                }
                _ => {
                    return Err(format!(
                        "entry {n}: expected admin:<token>, user:<user_id>:<token> or \
                         executor:<token>"
                    ));
                }
            };
            set.insert(role, token)
                .map_err(|e| format!("entry {n}: {e}"))?;
        }
        Ok(set)
    }

    /// Adds one token; refuses a short one or one already configured.
    pub fn insert(&mut self, role: Role, token: &str) -> Result<(), String> {
        if token.chars().count() < MIN_TOKEN_LEN
            || token.len() > MAX_CREDENTIAL_LEN
            || token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ':')
        {
            return Err(format!(
                "a token must be {MIN_TOKEN_LEN} to {MAX_CREDENTIAL_LEN} characters with no \
                 whitespace or ':'"
            ));
        }
        let digest = digest(token);
        if self.entries.iter().any(|e| e.digest == digest) {
            return Err("the same token is configured twice".into());
        }
        self.entries.push(TokenEntry { digest, role });
        Ok(())
    }

    /// Adds every token of `other`.
    pub fn merge(&mut self, other: TokenSet) -> Result<(), String> {
        for entry in other.entries {
            if self.entries.iter().any(|e| e.digest == entry.digest) {
                return Err("the same token is configured twice".into());
            }
            self.entries.push(entry);
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry whose token is `token`: every digest is compared, in constant time, and
    /// the loop never exits early.
    pub fn find(&self, token: &str) -> Option<(usize, &Role)> {
        let presented = digest(token);
        let mut found = None;
        for (i, entry) in self.entries.iter().enumerate() {
            if bool::from(entry.digest.ct_eq(&presented)) {
                found = Some(i);
            }
        }
        found.map(|i| (i, &self.entries[i].role))
    }
}

/// JWT verification settings. `Debug` never shows the key.
#[derive(Clone)]
pub struct JwtSettings {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithms", &self.validation.algorithms)
            .field("user_claim", &self.user_claim)
            .field("audience", &self.validation.aud)
            .field("issuer", &self.validation.iss)
            .finish_non_exhaustive()
    }
}

impl JwtSettings {
    /// HS256 with a shared secret (at least 32 bytes).
    pub fn hs256(secret: &Secret) -> Result<Self, String> {
        if secret.expose().len() < 32 {
            return Err("the HS256 secret must be at least 32 bytes".into());
        }
        Ok(Self::with_key(
            DecodingKey::from_secret(secret.expose().as_bytes()),
            Algorithm::HS256,
        ))
    }

    /// RS256 with a PEM public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, String> {
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|e| format!("not an RSA public key in PEM form: {e}"))?;
        Ok(Self::with_key(key, Algorithm::RS256))
    }

    fn with_key(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            key,
            validation,
            user_claim: "sub".into(),
        }
    }

    /// Which claim holds the user id (default `sub`).
    pub fn user_claim(mut self, claim: String) -> Self {
        self.user_claim = claim;
        self
    }

    /// Accept only tokens whose `aud` holds `audience`.
    pub fn audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.validation.validate_aud = true;
        self
    }

    /// Accept only tokens whose `iss` is `issuer`.
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.validation.set_issuer(&[issuer]);
        self.validation
            .required_spec_claims
            .insert("iss".to_owned());
        self
    }

    /// The role a valid token grants; `Err` with a reason for the log otherwise.
    pub fn verify(&self, token: &str) -> Result<Role, String> {
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| e.to_string())?;
        match data.claims.get("role").map(|r| r.as_str()) {
            Some(Some("admin")) => return Ok(Role::Admin),
            Some(Some("executor")) => return Ok(Role::Executor),
            None | Some(Some("user")) => {}
            Some(_) => return Err("unknown role claim".into()),
        }
        let user = data
            .claims
            .get(&self.user_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no string claim {:?}", self.user_claim))?;
        validate_name(user, "user_id").map_err(|e| e.message)?;
        Ok(Role::User(user.to_owned()))
    }
}
