//! Tessera's issuer. Today it holds the configuration shared by the operator CLI
//! (`tessera-issuer keys ...`); the HTTP service builds on the same [`config`].

pub mod config;
