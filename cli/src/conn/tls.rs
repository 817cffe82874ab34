//! TLS, the libpq way, with OpenSSL (`postgres-openssl`).
//!
//! [`plan`] is pure: it says, for one target, which attempts to make and when to fall
//! back. [`connector`] builds the OpenSSL side of one attempt.
//!
//! | sslmode     | first attempt                  | fallback                                  |
//! |-------------|--------------------------------|-------------------------------------------|
//! | disable     | plain                          | -                                         |
//! | allow       | plain                          | TLS, if the server rejected plain         |
//! | prefer      | TLS if the server offers it    | plain, if the TLS handshake failed        |
//! | require     | TLS, no certificate check (*)  | -                                         |
//! | verify-ca   | TLS, chain checked             | -                                         |
//! | verify-full | TLS, chain and host name       | -                                         |
//!
//! (*) Like libpq: when the root certificate file exists, the chain is checked even for
//! `allow`, `prefer` and `require`. Unix-domain sockets never use TLS (PostgreSQL does
//! not offer it there), whatever the sslmode.

use std::path::Path;

use openssl::error::ErrorStack;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use postgres_openssl::MakeTlsConnector;

use super::resolve::{Settings, SslMode, Target, TlsFiles};

/// How the server certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    Chain,
    ChainAndHostName,
}

/// Whether and how TLS is used in one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    Off,
    /// Ask for TLS; carry on in plain text if the server says no.
    IfOffered(Verify),
    Required(Verify),
}

/// When the second attempt is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryWhen {
    /// The server answered the first attempt with an error (`allow`: e.g. a `hostssl`
    /// pg_hba rule).
    ServerRejected,
    /// The TLS handshake of the first attempt failed (`prefer`).
    TlsFailed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub first: Tls,
    pub fallback: Option<(RetryWhen, Tls)>,
}

/// Chooses the attempts for `target`; an error is libpq's complaint about a missing root
/// certificate.
pub fn plan(sslmode: SslMode, target: &Target, files: &TlsFiles) -> Result<Plan, String> {
    const PLAIN: Plan = Plan {
        first: Tls::Off,
        fallback: None,
    };
    if target.is_socket() {
        return Ok(PLAIN);
    }
    let opportunistic = if files.root_cert_exists {
        Verify::Chain
    } else {
        Verify::Nothing
    };
    let plan = match sslmode {
        SslMode::Disable => PLAIN,
        SslMode::Allow => Plan {
            first: Tls::Off,
            fallback: Some((RetryWhen::ServerRejected, Tls::Required(opportunistic))),
        },
        SslMode::Prefer => Plan {
            first: Tls::IfOffered(opportunistic),
            fallback: Some((RetryWhen::TlsFailed, Tls::Off)),
        },
        SslMode::Require => Plan {
            first: Tls::Required(opportunistic),
            fallback: None,
        },
        SslMode::VerifyCa | SslMode::VerifyFull => {
            const EITHER: &str = "Either provide the file or change sslmode to disable \
                                  server certificate verification.";
            match &files.root_cert {
                None => {
                    return Err(format!(
                        "could not get home directory to locate root certificate file\n{EITHER}"
                    ));
                }
                Some(p) if !files.root_cert_exists => {
                    return Err(format!(
                        "root certificate file \"{}\" does not exist\n{EITHER}",
                        p.display()
                    ));
                }
                Some(_) => {}
            }
            let verify = if sslmode == SslMode::VerifyFull {
                Verify::ChainAndHostName
            } else {
                Verify::Chain
            };
            Plan {
                first: Tls::Required(verify),
                fallback: None,
            }
        }
    };
    Ok(plan)
}

/// The plan for each target of `settings`, in order.
pub fn plans(settings: &Settings) -> Vec<Result<Plan, String>> {
    settings
        .targets
        .iter()
        .map(|t| plan(settings.sslmode, t, &settings.tls))
        .collect()
}

/// Reads every certificate of a PEM file into a fresh store: like libpq, only the
/// `sslrootcert` file is trusted, not the system's certificate directory.
fn root_store(path: &Path) -> Result<openssl::x509::store::X509Store, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "could not read root certificate file \"{}\": {e}",
            path.display()
        )
    })?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| {
        format!(
            "could not load root certificate file \"{}\": {e}",
            path.display()
        )
    })?;
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    for cert in certs {
        store.add_cert(cert).map_err(|e| e.to_string())?;
    }
    Ok(store.build())
}

/// Builds the OpenSSL connector for one attempt. Also used with [`Tls::Off`], where it
/// is never asked to connect: one connector type keeps the connection type the same.
pub fn connector(tls: Tls, files: &TlsFiles) -> Result<MakeTlsConnector, String> {
    let ssl_err = |e: ErrorStack| format!("could not set up TLS: {e}");
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(ssl_err)?;
    let verify = match tls {
        Tls::Off => Verify::Nothing,
        Tls::IfOffered(v) | Tls::Required(v) => v,
    };
    match (verify, &files.root_cert) {
        (Verify::Nothing, _) | (_, None) => builder.set_verify(SslVerifyMode::NONE),
        (_, Some(root)) => {
            builder.set_cert_store(root_store(root)?);
            builder.set_verify(SslVerifyMode::PEER);
        }
    }
    if let (Some(cert), Some(key)) = (&files.client_cert, &files.client_key) {
        builder.set_certificate_chain_file(cert).map_err(|e| {
            format!(
                "could not load client certificate file \"{}\": {e}",
                cert.display()
            )
        })?;
        builder
            .set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| format!("could not load private key file \"{}\": {e}", key.display()))?;
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if verify != Verify::ChainAndHostName {
        // verify-ca and below: the chain may be checked, the name is not (libpq).
        connector.set_callback(|config, _domain| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::resolve::HostSpec;
    use std::path::PathBuf;

    fn tcp() -> Target {
        Target {
            host: HostSpec::Tcp("db".into()),
            hostaddr: None,
            port: 5432,
            password: None,
        }
    }

    fn files(root_exists: bool) -> TlsFiles {
        TlsFiles {
            root_cert: Some(PathBuf::from("/home/u/.postgresql/root.crt")),
            root_cert_exists: root_exists,
            client_cert: None,
            client_key: None,
        }
    }

    #[test]
    fn sockets_never_use_tls() {
        let sock = Target {
            host: HostSpec::Socket("/tmp".into()),
            ..tcp()
        };
        for mode in SslMode::ALL {
            assert_eq!(
                plan(mode, &sock, &files(false)),
                Ok(Plan {
                    first: Tls::Off,
                    fallback: None
                })
            );
        }
    }

    #[test]
    fn modes_without_root_certificate() {
        let f = files(false);
        assert_eq!(plan(SslMode::Disable, &tcp(), &f).unwrap().first, Tls::Off);
        assert_eq!(
            plan(SslMode::Allow, &tcp(), &f),
            Ok(Plan {
                first: Tls::Off,
                fallback: Some((RetryWhen::ServerRejected, Tls::Required(Verify::Nothing)))
            })
        );
        assert_eq!(
            plan(SslMode::Prefer, &tcp(), &f),
            Ok(Plan {
                first: Tls::IfOffered(Verify::Nothing),
                fallback: Some((RetryWhen::TlsFailed, Tls::Off))
            })
        );
        assert_eq!(
            plan(SslMode::Require, &tcp(), &f).unwrap().first,
            Tls::Required(Verify::Nothing)
        );
        let err = plan(SslMode::VerifyCa, &tcp(), &f).unwrap_err();
        assert_eq!(
            err,
            "root certificate file \"/home/u/.postgresql/root.crt\" does not exist\n\
             Either provide the file or change sslmode to disable server certificate verification."
        );
        let no_home = TlsFiles {
            root_cert: None,
            ..f
        };
        assert!(
            plan(SslMode::VerifyFull, &tcp(), &no_home)
                .unwrap_err()
                .starts_with("could not get home directory")
        );
    }

    #[test]
    fn root_certificate_upgrades_require_like_libpq() {
        let f = files(true);
        assert_eq!(
            plan(SslMode::Require, &tcp(), &f).unwrap().first,
            Tls::Required(Verify::Chain)
        );
        assert_eq!(
            plan(SslMode::Prefer, &tcp(), &f).unwrap().first,
            Tls::IfOffered(Verify::Chain)
        );
        assert_eq!(
            plan(SslMode::VerifyCa, &tcp(), &f).unwrap().first,
            Tls::Required(Verify::Chain)
        );
        assert_eq!(
            plan(SslMode::VerifyFull, &tcp(), &f).unwrap().first,
            Tls::Required(Verify::ChainAndHostName)
        );
    }

    #[test]
    fn connector_without_verification_builds() {
        assert!(connector(Tls::Required(Verify::Nothing), &files(false)).is_ok());
        assert!(connector(Tls::Off, &files(false)).is_ok());
        // A missing root file is reported, not panicked on.
        let err = connector(Tls::Required(Verify::Chain), &files(true))
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("could not read root certificate file"),
            "{err}"
        );
    }
}
