//! The seven keyring verbs as values ([`Op`]), spelled once and applied by
//! every store the same way: [`crate::KeyDir::apply`] under its file lock, the
//! issuer's database keyring inside a locked transaction, and the issuer's
//! `KeyStore` by dispatching to either.
//!
//! Applying is two steps. [`Op::prepare`] does the slow part outside any lock
//! (generating RSA keys takes up to seconds, reading a PEM file may fail),
//! given the keyring as stored before the lock when [`Op::READS_FIRST`] asks
//! for it, and refuses early what cannot succeed. [`Op::apply`] then runs the
//! [`crate::lifecycle`] rule on the manifest the store holds under its lock.

use std::path::{Path, PathBuf};

use crate::error::KeyringError;
use crate::keys::{KeySpec, NewKey};
use crate::lifecycle::{
    self, Change, InitOutcome, Now, PruneOutcome, RevokeOutcome, RotateOutcome,
};
use crate::manifest::{KeyRecord, Manifest};
use crate::policy::{Clock, RotationPolicy};

/// One change to a keyring; see the [module docs](self).
pub trait Op: Send + 'static {
    /// What the change reports.
    type Outcome: Send + 'static;
    /// Whether [`Op::prepare`] needs the keyring as stored before the lock.
    const READS_FIRST: bool = false;
    /// Generates or reads the keys the change needs, outside any lock
    /// (nothing, by default).
    /// `stored`: the manifest before the lock (only if [`Op::READS_FIRST`]);
    /// `location`: where the keyring is, for messages.
    fn prepare(&mut self, stored: Option<&Manifest>, location: &Path) -> Result<(), KeyringError> {
        let _ = (stored, location);
        Ok(())
    }
    /// The change, under the store's lock, on the manifest as stored now.
    fn apply(
        self,
        manifest: &mut Manifest,
        location: &Path,
        clock: &dyn Clock,
        now: Now,
    ) -> Result<Change<Self::Outcome>, KeyringError>;
}

/// Starts an empty keyring: one active key and one pending key.
#[derive(Debug)]
pub struct Init {
    spec: KeySpec,
    keys: Vec<NewKey>,
}

impl Init {
    /// With keys made as `spec` says.
    pub fn new(spec: impl Into<KeySpec>) -> Self {
        Self {
            spec: spec.into(),
            keys: Vec::new(),
        }
    }
}

impl Op for Init {
    type Outcome = InitOutcome;
    const READS_FIRST: bool = true;

    fn prepare(&mut self, stored: Option<&Manifest>, location: &Path) -> Result<(), KeyringError> {
        // Refuse before spending seconds on key generation; re-checked under the lock.
        if let Some(existing) = stored.filter(|m| !m.keys.is_empty()) {
            return Err(lifecycle::already_initialised(location, existing));
        }
        self.keys = vec![NewKey::generate(self.spec)?, NewKey::generate(self.spec)?];
        Ok(())
    }

    fn apply(
        mut self,
        manifest: &mut Manifest,
        location: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<InitOutcome>, KeyringError> {
        let (pending, active) = (spare(&mut self.keys)?, spare(&mut self.keys)?);
        lifecycle::init(manifest, location, active, pending, now)
    }
}

/// Adds a freshly generated pending key.
#[derive(Debug)]
pub struct Generate {
    spec: KeySpec,
    key: Option<NewKey>,
}

impl Generate {
    /// A key made as `spec` says.
    pub fn new(spec: impl Into<KeySpec>) -> Self {
        Self {
            spec: spec.into(),
            key: None,
        }
    }
}

impl Op for Generate {
    type Outcome = KeyRecord;

    fn prepare(&mut self, _: Option<&Manifest>, _: &Path) -> Result<(), KeyringError> {
        self.key = Some(NewKey::generate(self.spec)?);
        Ok(())
    }

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<KeyRecord>, KeyringError> {
        let key = prepared(self.key)?;
        Ok(lifecycle::generate(manifest, key, now))
    }
}

/// Imports a private key (RSA as PKCS#8 or PKCS#1 PEM, EC P-256 or Ed25519
/// as PKCS#8 PEM) as a pending key, stored as PKCS#8 whatever the input was.
#[derive(Debug)]
pub struct Import {
    pem: PathBuf,
    key: Option<NewKey>,
}

impl Import {
    /// The key in the PEM file at `pem`.
    pub fn new(pem: impl Into<PathBuf>) -> Self {
        Self {
            pem: pem.into(),
            key: None,
        }
    }
}

impl Op for Import {
    type Outcome = KeyRecord;

    fn prepare(&mut self, _: Option<&Manifest>, _: &Path) -> Result<(), KeyringError> {
        self.key = Some(NewKey::import_file(&self.pem)?);
        Ok(())
    }

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<KeyRecord>, KeyringError> {
        lifecycle::import(manifest, prepared(self.key)?, now)
    }
}

/// The scheduled rotation: see [`lifecycle::rotate`].
#[derive(Debug)]
pub struct Rotate {
    policy: RotationPolicy,
    force: bool,
    spec: KeySpec,
    fresh: Option<NewKey>,
}

impl Rotate {
    /// Under `policy` (`force`: override its refusal), with a new pending
    /// key made as `spec` says. The key activated is the oldest pending
    /// one, whatever its algorithm: a switch of algorithm takes effect at
    /// the rotation after the one that published the new key, so that key
    /// is published for a JWKS cache lifetime before it signs.
    pub fn new(policy: RotationPolicy, force: bool, spec: impl Into<KeySpec>) -> Self {
        Self {
            policy,
            force,
            spec: spec.into(),
            fresh: None,
        }
    }

    /// The same, with the new pending key made already (tests of concurrent
    /// rotations, which must not wait for key generation).
    pub fn with_key(policy: RotationPolicy, force: bool, fresh: NewKey) -> Self {
        Self {
            policy,
            force,
            spec: KeySpec::from(fresh.alg),
            fresh: Some(fresh),
        }
    }
}

impl Op for Rotate {
    type Outcome = RotateOutcome;

    fn prepare(&mut self, _: Option<&Manifest>, _: &Path) -> Result<(), KeyringError> {
        if self.fresh.is_none() {
            self.fresh = Some(NewKey::generate(self.spec)?);
        }
        Ok(())
    }

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<RotateOutcome>, KeyringError> {
        let fresh = prepared(self.fresh)?;
        lifecycle::rotate(manifest, &self.policy, self.force, fresh, now)
    }
}

/// Withdraws a pending key: see [`lifecycle::retire`].
#[derive(Debug)]
pub struct Retire {
    kid: String,
}

impl Retire {
    /// The key `kid`.
    pub fn new(kid: impl Into<String>) -> Self {
        Self { kid: kid.into() }
    }
}

impl Op for Retire {
    type Outcome = KeyRecord;

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<KeyRecord>, KeyringError> {
        lifecycle::retire(manifest, &self.kid, now)
    }
}

/// Emergency revocation: see [`lifecycle::revoke`].
#[derive(Debug)]
pub struct Revoke {
    kid: String,
    policy: RotationPolicy,
    spec: KeySpec,
    spare: Vec<NewKey>,
}

impl Revoke {
    /// The key `kid`; replacements (if it is active) made as `spec` says.
    pub fn new(kid: impl Into<String>, policy: RotationPolicy, spec: impl Into<KeySpec>) -> Self {
        Self {
            kid: kid.into(),
            policy,
            spec: spec.into(),
            spare: Vec::new(),
        }
    }
}

impl Op for Revoke {
    type Outcome = RevokeOutcome;
    const READS_FIRST: bool = true;

    fn prepare(&mut self, stored: Option<&Manifest>, _: &Path) -> Result<(), KeyringError> {
        // Generate replacements first if the key is active now (the common
        // case for an emergency), so that the new keys' recorded times are
        // not early. If the keyring changes in between, the lifecycle
        // generates what it still needs.
        if stored.is_some_and(|m| lifecycle::revoke_needs_keys(m, &self.kid)) {
            self.spare = vec![NewKey::generate(self.spec)?, NewKey::generate(self.spec)?];
        }
        Ok(())
    }

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        clock: &dyn Clock,
        now: Now,
    ) -> Result<Change<RevokeOutcome>, KeyringError> {
        let spec = self.spec;
        lifecycle::revoke(
            manifest,
            &self.kid,
            &self.policy,
            self.spare,
            &mut || NewKey::generate(spec),
            clock,
            now,
        )
    }
}

/// Deletes what may go: see [`lifecycle::prune`].
#[derive(Debug)]
pub struct Prune {
    policy: RotationPolicy,
    force: bool,
}

impl Prune {
    /// Under `policy` (`force`: also what a rule says to keep).
    pub fn new(policy: RotationPolicy, force: bool) -> Self {
        Self { policy, force }
    }
}

impl Op for Prune {
    type Outcome = PruneOutcome;

    fn apply(
        self,
        manifest: &mut Manifest,
        _: &Path,
        _: &dyn Clock,
        now: Now,
    ) -> Result<Change<PruneOutcome>, KeyringError> {
        Ok(lifecycle::prune(manifest, &self.policy, self.force, now))
    }
}

/// A key `prepare` made (applying an op that was not prepared is a bug in
/// the store, reported rather than panicking).
fn prepared(key: Option<NewKey>) -> Result<NewKey, KeyringError> {
    key.ok_or_else(|| KeyringError::Generate("the operation was not prepared".to_owned()))
}

fn spare(keys: &mut Vec<NewKey>) -> Result<NewKey, KeyringError> {
    prepared(keys.pop())
}
