//! The manifest: which keys exist and what state each is in.
//!
//! On disk it is flat, readable JSON (operators look at it); in memory each key's
//! state is an enum whose variants carry only the times valid in that state, so an
//! impossible record (an active key with no activation time) cannot be built.

use std::collections::HashSet;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::alg::Algorithm;
use crate::error::KeyringError;
use crate::policy::format_time;

/// The manifest format this build reads and writes.
const FORMAT: u32 = 1;

/// A key's place in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published in the JWKS, not yet signing.
    Pending,
    /// The one key that signs; published.
    Active {
        /// When it started signing.
        activated: SystemTime,
    },
    /// No longer signs; still published until tokens it signed have expired.
    Retired {
        /// When it signed first, if it ever did.
        activated: Option<SystemTime>,
        /// When it stopped signing.
        retired: SystemTime,
    },
    /// Withdrawn in an emergency: never published again, never signs.
    Revoked {
        /// When it signed first, if it ever did.
        activated: Option<SystemTime>,
        /// When it stopped signing, if it was retired before being revoked.
        retired: Option<SystemTime>,
        /// When it was revoked.
        revoked: SystemTime,
    },
}

impl KeyState {
    /// The state's name as the manifest and the CLI spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active { .. } => "active",
            Self::Retired { .. } => "retired",
            Self::Revoked { .. } => "revoked",
        }
    }

    /// Whether the key's public half belongs in the JWKS.
    pub fn is_published(&self) -> bool {
        !matches!(self, Self::Revoked { .. })
    }
}

/// One key as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The algorithm the key signs with, fixed when it was made.
    pub alg: Algorithm,
    /// The size: the RSA modulus, or 256 for P-256 and Ed25519.
    pub bits: u32,
    /// When the key was added to the keyring, which is when it was first published.
    pub created: SystemTime,
    /// Where it is in its lifecycle.
    pub state: KeyState,
}

impl KeyRecord {
    /// When the key started signing, if it ever did.
    pub fn activated(&self) -> Option<SystemTime> {
        match self.state {
            KeyState::Pending => None,
            KeyState::Active { activated } => Some(activated),
            KeyState::Retired { activated, .. } | KeyState::Revoked { activated, .. } => activated,
        }
    }

    /// When the key stopped signing, if it has.
    pub fn retired(&self) -> Option<SystemTime> {
        match self.state {
            KeyState::Retired { retired, .. } => Some(retired),
            KeyState::Revoked { retired, .. } => retired,
            _ => None,
        }
    }

    /// When the key was revoked, if it was.
    pub fn revoked(&self) -> Option<SystemTime> {
        match self.state {
            KeyState::Revoked { revoked, .. } => Some(revoked),
            _ => None,
        }
    }
}

/// All the keys of a keyring, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The keys, in the order they were added.
    pub keys: Vec<KeyRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    format: u32,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    alg: String,
    bits: u32,
    state: String,
    created: String,
    #[serde(default)]
    activated: Option<String>,
    #[serde(default)]
    retired: Option<String>,
    #[serde(default)]
    revoked: Option<String>,
}

/// Whether `kid` looks like an RFC 7638 SHA-256 thumbprint: 43 base64url
/// characters. Checked before a kid is ever used to build a file name.
pub(crate) fn is_valid_kid(kid: &str) -> bool {
    kid.len() == 43
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Manifest {
    /// The active key, if any.
    pub fn active(&self) -> Option<&KeyRecord> {
        self.keys
            .iter()
            .find(|k| matches!(k.state, KeyState::Active { .. }))
    }

    /// The oldest pending key, the next to be activated.
    pub fn next_pending(&self) -> Option<&KeyRecord> {
        self.keys
            .iter()
            .filter(|k| k.state == KeyState::Pending)
            .min_by_key(|k| k.created)
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&KeyRecord> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    pub(crate) fn get_mut(&mut self, kid: &str) -> Option<&mut KeyRecord> {
        self.keys.iter_mut().find(|k| k.kid == kid)
    }

    /// Parses and validates manifest bytes read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, KeyringError> {
        let file: ManifestFile =
            serde_json::from_slice(bytes).map_err(|source| KeyringError::ManifestSyntax {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |problem: String| KeyringError::ManifestInvalid {
            path: path.to_owned(),
            problem,
        };
        if file.format != FORMAT {
            return Err(invalid(format!(
                "manifest format {} is not supported (this build reads format {FORMAT})",
                file.format
            )));
        }
        let mut seen = HashSet::new();
        let mut keys = Vec::with_capacity(file.keys.len());
        for entry in file.keys {
            let record = entry.into_record().map_err(&invalid)?;
            if !seen.insert(record.kid.clone()) {
                return Err(invalid(format!("key {} is listed twice", record.kid)));
            }
            keys.push(record);
        }
        let active: Vec<&str> = keys
            .iter()
            .filter(|k| matches!(k.state, KeyState::Active { .. }))
            .map(|k| k.kid.as_str())
            .collect();
        if active.len() > 1 {
            return Err(invalid(format!(
                "{} keys are active ({}); exactly one may be",
                active.len(),
                active.join(", ")
            )));
        }
        Ok(Self { keys })
    }

    /// The manifest as pretty JSON, ready to write.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let file = ManifestFile {
            format: FORMAT,
            keys: self.keys.iter().map(KeyEntry::from_record).collect(),
        };
        let mut out = serde_json::to_vec_pretty(&file)?;
        out.push(b'\n');
        Ok(out)
    }
}

fn parse_time(kid: &str, field: &str, value: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(value).map_err(|e| {
        format!("key {kid}: `{field}` is {value:?}, not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})")
    })
}

impl KeyEntry {
    fn into_record(self) -> Result<KeyRecord, String> {
        let kid = self.kid;
        if !is_valid_kid(&kid) {
            return Err(format!(
                "{kid:?} is not a key id (expected an RFC 7638 thumbprint: 43 base64url characters)"
            ));
        }
        let alg = Algorithm::from_name(&self.alg).ok_or_else(|| {
            format!(
                "key {kid}: alg {:?} is not supported (RS256, ES256 or EdDSA)",
                self.alg
            )
        })?;
        match alg.fixed_bits() {
            None if !(crate::MIN_BITS..=crate::MAX_BITS).contains(&(self.bits as usize)) => {
                return Err(format!(
                    "key {kid}: bits {} is outside {}..={}",
                    self.bits,
                    crate::MIN_BITS,
                    crate::MAX_BITS
                ));
            }
            Some(bits) if bits != self.bits => {
                return Err(format!(
                    "key {kid}: an {alg} key has {bits} bits, not {}",
                    self.bits
                ));
            }
            _ => {}
        }
        let created = parse_time(&kid, "created", &self.created)?;
        let time = |field: &str, v: &Option<String>| -> Result<Option<SystemTime>, String> {
            v.as_deref().map(|v| parse_time(&kid, field, v)).transpose()
        };
        let activated = time("activated", &self.activated)?;
        let retired = time("retired", &self.retired)?;
        let revoked = time("revoked", &self.revoked)?;
        let must = |field: &str, v: Option<SystemTime>| {
            v.ok_or_else(|| {
                format!(
                    "key {kid}: state is {} but `{field}` is not set",
                    self.state
                )
            })
        };
        let must_not = |field: &str, v: Option<SystemTime>| match v {
            Some(t) => Err(format!(
                "key {kid}: state is {} but `{field}` is set ({})",
                self.state,
                format_time(t)
            )),
            None => Ok(()),
        };
        let state = match self.state.as_str() {
            "pending" => {
                must_not("activated", activated)?;
                must_not("retired", retired)?;
                must_not("revoked", revoked)?;
                KeyState::Pending
            }
            "active" => {
                must_not("retired", retired)?;
                must_not("revoked", revoked)?;
                KeyState::Active {
                    activated: must("activated", activated)?,
                }
            }
            "retired" => {
                must_not("revoked", revoked)?;
                KeyState::Retired {
                    activated,
                    retired: must("retired", retired)?,
                }
            }
            "revoked" => KeyState::Revoked {
                activated,
                retired,
                revoked: must("revoked", revoked)?,
            },
            other => {
                return Err(format!(
                    "key {kid}: state {other:?} is not one of pending, active, retired, revoked"
                ));
            }
        };
        Ok(KeyRecord {
            kid: kid.clone(),
            alg,
            bits: self.bits,
            created,
            state,
        })
    }

    fn from_record(r: &KeyRecord) -> Self {
        let t = |v: Option<SystemTime>| v.map(format_time);
        Self {
            kid: r.kid.clone(),
            alg: r.alg.name().to_owned(),
            bits: r.bits,
            state: r.state.name().to_owned(),
            created: format_time(r.created),
            activated: t(r.activated()),
            retired: t(r.retired()),
            revoked: t(r.revoked()),
        }
    }
}
