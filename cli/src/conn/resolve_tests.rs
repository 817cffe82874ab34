//! Resolution rules end to end, without a server: flags + environment + files in,
//! [`Settings`] out.

use std::path::PathBuf;
use std::time::Duration;

use super::inputs::{Environment, MemoryFiles};
use super::params::{Keyword, Source};
use super::resolve::*;

fn env() -> Environment {
    Environment::empty()
        .with_os_user("osuser")
        .with_home("/home/osuser")
}

fn req() -> ConnRequest {
    ConnRequest::default()
}

fn socket(dir: &str) -> HostSpec {
    HostSpec::Socket(PathBuf::from(dir))
}

fn tcp(h: &str) -> HostSpec {
    HostSpec::Tcp(h.to_string())
}

fn ok(r: &ConnRequest, e: &Environment, f: &MemoryFiles) -> Settings {
    match resolve(r, e, f) {
        Ok(s) => s,
        Err(err) => panic!("resolve failed: {err}"),
    }
}

/// (host, port) of every target.
fn hosts(s: &Settings) -> Vec<(HostSpec, u16)> {
    s.targets.iter().map(|t| (t.host.clone(), t.port)).collect()
}

fn password(s: &Settings) -> Option<(&str, &PasswordSource)> {
    s.targets[0]
        .password
        .as_ref()
        .map(|p| (p.value.as_str(), &p.source))
}

#[test]
fn defaults_are_libpqs() {
    let files = MemoryFiles::new().with_socket("/var/run/postgresql/.s.PGSQL.5432");
    let s = ok(&req(), &env(), &files);
    assert_eq!(hosts(&s), vec![(socket("/var/run/postgresql"), 5432)]);
    assert_eq!(s.user, "osuser");
    assert_eq!(s.dbname, "osuser");
    assert_eq!(s.sslmode, SslMode::Prefer);
    assert_eq!(s.application_name, None);
    assert_eq!(s.fallback_application_name, "tviews");
    assert_eq!(s.connect_timeout, None);
    assert_eq!(s.passfile, Some(PathBuf::from("/home/osuser/.pgpass")));
    assert_eq!(
        s.tls.root_cert,
        Some(PathBuf::from("/home/osuser/.postgresql/root.crt"))
    );
    assert!(!s.tls.root_cert_exists);
    assert!(s.warnings.is_empty());
}

#[test]
fn default_host_searches_socket_dirs_then_localhost() {
    let tmp_only = MemoryFiles::new().with_socket("/tmp/.s.PGSQL.5432");
    assert_eq!(
        hosts(&ok(&req(), &env(), &tmp_only)),
        vec![(socket("/tmp"), 5432)]
    );

    let both = tmp_only
        .clone()
        .with_socket("/var/run/postgresql/.s.PGSQL.5432");
    assert_eq!(
        hosts(&ok(&req(), &env(), &both)),
        vec![(socket("/var/run/postgresql"), 5432)]
    );

    assert_eq!(
        hosts(&ok(&req(), &env(), &MemoryFiles::new())),
        vec![(tcp("localhost"), 5432)]
    );

    // The search uses the resolved port: a socket for another port does not count.
    let e = env().with_var("PGPORT", "5499");
    assert_eq!(
        hosts(&ok(&req(), &e, &tmp_only)),
        vec![(tcp("localhost"), 5499)]
    );
    let files = MemoryFiles::new().with_socket("/tmp/.s.PGSQL.5499");
    assert_eq!(hosts(&ok(&req(), &e, &files)), vec![(socket("/tmp"), 5499)]);
}

#[test]
fn pg_variables_apply() {
    let e = env()
        .with_var("PGHOST", "/run/pg")
        .with_var("PGPORT", "6000")
        .with_var("PGUSER", "alice")
        .with_var("PGDATABASE", "app")
        .with_var("PGSSLMODE", "require")
        .with_var("PGAPPNAME", "nightly")
        .with_var("PGCONNECT_TIMEOUT", "7")
        .with_var("PGOPTIONS", "-c statement_timeout=5s");
    let s = ok(&req(), &e, &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(socket("/run/pg"), 6000)]);
    assert_eq!((s.user.as_str(), s.dbname.as_str()), ("alice", "app"));
    assert_eq!(s.sslmode, SslMode::Require);
    assert_eq!(s.application_name.as_deref(), Some("nightly"));
    assert_eq!(s.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(s.options.as_deref(), Some("-c statement_timeout=5s"));
}

#[test]
fn dbname_defaults_to_the_resolved_user() {
    let r = ConnRequest {
        username: Some("bob".into()),
        ..req()
    };
    let s = ok(&r, &env(), &MemoryFiles::new());
    assert_eq!((s.user.as_str(), s.dbname.as_str()), ("bob", "bob"));
}

#[test]
fn flags_beat_connection_string_beats_environment() {
    let e = env()
        .with_var("PGHOST", "envhost")
        .with_var("PGPORT", "7000")
        .with_var("PGUSER", "envuser")
        .with_var("PGDATABASE", "envdb")
        .with_var("PGAPPNAME", "envapp");
    let r = ConnRequest {
        host: Some("flaghost".into()),
        dbname: Some("host=cshost port=6000 user=csuser dbname=csdb".into()),
        ..req()
    };
    let s = ok(&r, &e, &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(tcp("flaghost"), 6000)]);
    assert_eq!((s.user.as_str(), s.dbname.as_str()), ("csuser", "csdb"));
    assert_eq!(s.application_name.as_deref(), Some("envapp"));

    let r = ConnRequest {
        port: Some("6543".into()),
        username: Some("flaguser".into()),
        sslmode: Some(SslMode::Disable),
        positional: Some("postgresql://cshost:6000/csdb?sslmode=require".into()),
        ..req()
    };
    let s = ok(&r, &e, &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(tcp("cshost"), 6543)]);
    assert_eq!((s.user.as_str(), s.dbname.as_str()), ("flaguser", "csdb"));
    assert_eq!(s.sslmode, SslMode::Disable);
}

#[test]
fn database_url_sits_between_connection_string_and_pg_variables() {
    let e = env()
        .with_var("DATABASE_URL", "postgres://urluser@urlhost:6001/urldb")
        .with_var("PGHOST", "envhost")
        .with_var("PGPASSWORD", "envpw")
        .with_var("PGAPPNAME", "envapp");
    let s = ok(&req(), &e, &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(tcp("urlhost"), 6001)]);
    assert_eq!((s.user.as_str(), s.dbname.as_str()), ("urluser", "urldb"));
    // What the URL leaves out still comes from PG* variables.
    assert_eq!(
        password(&s),
        Some(("envpw", &PasswordSource::Setting(Source::Env("PGPASSWORD"))))
    );
    assert_eq!(s.application_name.as_deref(), Some("envapp"));

    // Flags override it.
    let r = ConnRequest {
        host: Some("flaghost".into()),
        ..req()
    };
    assert_eq!(
        hosts(&ok(&r, &e, &MemoryFiles::new())),
        vec![(tcp("flaghost"), 6001)]
    );

    // A password in the URL beats PGPASSWORD, and says where it came from.
    let e2 = e.clone().with_var("DATABASE_URL", "postgres://u:urlpw@h/d");
    assert_eq!(
        password(&ok(&req(), &e2, &MemoryFiles::new())),
        Some(("urlpw", &PasswordSource::Setting(Source::DatabaseUrl)))
    );
}

#[test]
fn database_url_is_ignored_beside_dbname_or_positional() {
    let e = env()
        .with_var("DATABASE_URL", "postgres://urluser@urlhost:6001/urldb")
        .with_var("PGHOST", "envhost");
    for r in [
        ConnRequest {
            dbname: Some("plain".into()),
            ..req()
        },
        ConnRequest {
            positional: Some("plain".into()),
            ..req()
        },
    ] {
        let s = ok(&r, &e, &MemoryFiles::new());
        assert_eq!(hosts(&s), vec![(tcp("envhost"), 5432)]);
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("osuser", "plain"));
    }
    let r = ConnRequest {
        positional: Some("host=cshost".into()),
        ..req()
    };
    let s = ok(&r, &e, &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(tcp("cshost"), 5432)]);
    assert_eq!(s.dbname, "osuser");
}

#[test]
fn bad_database_url_names_its_origin() {
    let e = env().with_var("DATABASE_URL", "postgres://h/db?nope=1");
    let err = resolve(&req(), &e, &MemoryFiles::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DATABASE_URL: invalid URI query parameter: \"nope\""
    );
}

#[test]
fn dbname_and_positional_together_is_an_error() {
    let r = ConnRequest {
        dbname: Some("a".into()),
        positional: Some("b".into()),
        ..req()
    };
    assert_eq!(
        resolve(&r, &env(), &MemoryFiles::new()),
        Err(ResolveError::DbnameTwice)
    );
}

#[test]
fn uri_with_percent_encoded_socket_directory() {
    let r = ConnRequest {
        positional: Some("postgresql://postgres@%2Ftmp%2Fcluster%201:5499/app".into()),
        ..req()
    };
    let s = ok(&r, &env(), &MemoryFiles::new());
    assert_eq!(hosts(&s), vec![(socket("/tmp/cluster 1"), 5499)]);
    assert_eq!(
        s.targets[0].socket_path(),
        Some(PathBuf::from("/tmp/cluster 1/.s.PGSQL.5499"))
    );
    assert_eq!(s.user, "postgres");
}

#[test]
fn host_lists_ports_and_hostaddr() {
    let r = ConnRequest {
        host: Some("a,/tmp,".into()),
        port: Some("5432,5433,5434".into()),
        ..req()
    };
    let files = MemoryFiles::new().with_socket("/tmp/.s.PGSQL.5434");
    let s = ok(&r, &env(), &files);
    assert_eq!(
        hosts(&s),
        vec![
            (tcp("a"), 5432),
            (socket("/tmp"), 5433),
            (socket("/tmp"), 5434)
        ]
    );

    // One port applies to every host.
    let r = ConnRequest {
        host: Some("a,b".into()),
        port: Some("6000".into()),
        ..req()
    };
    assert_eq!(
        hosts(&ok(&r, &env(), &MemoryFiles::new())),
        vec![(tcp("a"), 6000), (tcp("b"), 6000)]
    );

    let r = ConnRequest {
        host: Some("a,b".into()),
        port: Some("1,2,3".into()),
        ..req()
    };
    assert_eq!(
        resolve(&r, &env(), &MemoryFiles::new()),
        Err(ResolveError::PortCount { ports: 3, hosts: 2 })
    );

    // hostaddr: connect there, keep the name.
    let r = ConnRequest {
        positional: Some("host=db.example hostaddr=10.1.2.3".into()),
        ..req()
    };
    let s = ok(&r, &env(), &MemoryFiles::new());
    assert_eq!(s.targets[0].host, tcp("db.example"));
    assert_eq!(s.targets[0].hostaddr, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(
        s.targets[0].to_string(),
        "server at \"db.example\" (10.1.2.3), port 5432"
    );

    // hostaddr alone.
    let e = env().with_var("PGHOSTADDR", "127.0.0.1");
    let s = ok(&req(), &e, &MemoryFiles::new());
    assert_eq!(s.targets[0].host, tcp("127.0.0.1"));
    assert_eq!(
        s.targets[0].to_string(),
        "server at \"127.0.0.1\", port 5432"
    );

    let r = ConnRequest {
        positional: Some("host=a,b hostaddr=1.2.3.4".into()),
        ..req()
    };
    assert_eq!(
        resolve(&r, &env(), &MemoryFiles::new()),
        Err(ResolveError::HostaddrCount { hosts: 2, addrs: 1 })
    );
    let r = ConnRequest {
        positional: Some("hostaddr=db.example".into()),
        ..req()
    };
    assert_eq!(
        resolve(&r, &env(), &MemoryFiles::new()),
        Err(ResolveError::InvalidHostaddr("db.example".into()))
    );
}

#[test]
fn invalid_values_are_reported_like_libpq() {
    let bad = |r: ConnRequest, e: Environment| {
        resolve(&r, &e, &MemoryFiles::new())
            .unwrap_err()
            .to_string()
    };
    let port = ConnRequest {
        port: Some("54x".into()),
        ..req()
    };
    assert_eq!(bad(port, env()), "invalid port number: \"54x\"");
    let port0 = ConnRequest {
        port: Some("0".into()),
        ..req()
    };
    assert_eq!(bad(port0, env()), "invalid port number: \"0\"");
    assert_eq!(
        bad(req(), env().with_var("PGSSLMODE", "strict")),
        "invalid sslmode value: \"strict\""
    );
    assert_eq!(
        bad(req(), env().with_var("PGCONNECT_TIMEOUT", "soon")),
        "invalid connect_timeout value: \"soon\""
    );
    assert_eq!(
        bad(req(), env().with_var("PGTARGETSESSIONATTRS", "primary")),
        "invalid target_session_attrs value: \"primary\""
    );
    let cs = ConnRequest {
        dbname: Some("host=x bogus=1".into()),
        ..req()
    };
    assert_eq!(
        bad(cs, env()),
        "-d/--dbname: invalid connection option \"bogus\""
    );
    assert_eq!(
        bad(req(), Environment::empty()),
        "could not determine the local user name; give one with -U or PGUSER"
    );
}

#[test]
fn connect_timeout_follows_libpq() {
    let t = |v: &str| {
        ok(
            &req(),
            &env().with_var("PGCONNECT_TIMEOUT", v),
            &MemoryFiles::new(),
        )
        .connect_timeout
    };
    assert_eq!(t("0"), None);
    assert_eq!(t("-3"), None);
    assert_eq!(t("1"), Some(Duration::from_secs(2)));
    assert_eq!(t("10"), Some(Duration::from_secs(10)));
}

#[test]
fn ignored_keywords_warn() {
    let r = ConnRequest {
        positional: Some("host=h keepalives=1 gssencmode=disable".into()),
        ..req()
    };
    let s = ok(&r, &env(), &MemoryFiles::new());
    assert_eq!(
        s.warnings,
        vec![
            "connection option \"keepalives\" is not supported by tviews and was ignored",
            "connection option \"gssencmode\" is not supported by tviews and was ignored",
        ]
    );
}

const PGPASS: &str = "\
localhost:5432:*:alice:socket-pw
db.example:6000:app:alice:tcp-pw
/srv/sock:5433:*:*:dir-pw
";

#[test]
fn pgpass_is_consulted_per_target() {
    let files = MemoryFiles::new()
        .with_file("/home/osuser/.pgpass", 0o600, PGPASS)
        .with_socket("/var/run/postgresql/.s.PGSQL.5432");
    let alice = ConnRequest {
        username: Some("alice".into()),
        ..req()
    };
    // Default socket: matches "localhost".
    let s = ok(&alice, &env(), &files);
    assert_eq!(
        password(&s),
        Some((
            "socket-pw",
            &PasswordSource::PassFile("/home/osuser/.pgpass".into())
        ))
    );

    // TCP: host, port and database must match.
    let r = ConnRequest {
        positional: Some("postgresql://alice@db.example:6000/app".into()),
        ..req()
    };
    assert_eq!(
        password(&ok(&r, &env(), &files)).map(|p| p.0),
        Some("tcp-pw")
    );
    let r = ConnRequest {
        positional: Some("postgresql://alice@db.example:6000/other".into()),
        ..req()
    };
    assert_eq!(password(&ok(&r, &env(), &files)), None);

    // A socket directory matches by its path.
    let r = ConnRequest {
        host: Some("/srv/sock".into()),
        port: Some("5433".into()),
        ..req()
    };
    assert_eq!(
        password(&ok(&r, &env(), &files)).map(|p| p.0),
        Some("dir-pw")
    );

    // Each host of a list gets its own lookup.
    let r = ConnRequest {
        host: Some("/srv/sock,db.example".into()),
        port: Some("5433,6000".into()),
        username: Some("alice".into()),
        dbname: Some("app".into()),
        ..req()
    };
    let s = ok(&r, &env(), &files);
    let pws: Vec<_> = s
        .targets
        .iter()
        .map(|t| t.password.as_ref().map(|p| p.value.as_str()))
        .collect();
    assert_eq!(pws, vec![Some("dir-pw"), Some("tcp-pw")]);
}

#[test]
fn explicit_password_beats_pgpass() {
    let files = MemoryFiles::new().with_file("/home/osuser/.pgpass", 0o600, "*:*:*:*:file-pw");
    let e = env().with_var("PGPASSWORD", "env-pw");
    assert_eq!(
        password(&ok(&req(), &e, &files)).map(|p| p.0),
        Some("env-pw")
    );
    let r = ConnRequest {
        positional: Some("password='cs pw'".into()),
        ..req()
    };
    assert_eq!(
        password(&ok(&r, &e, &files)),
        Some(("cs pw", &PasswordSource::Setting(Source::ConnString)))
    );
}

#[test]
fn pgpassfile_and_permissions() {
    let files = MemoryFiles::new()
        .with_file("/home/osuser/.pgpass", 0o600, "*:*:*:*:home-pw")
        .with_file("/etc/shared.pgpass", 0o640, "*:*:*:*:shared-pw")
        .with_file("/srv/own.pgpass", 0o400, "*:*:*:*:own-pw");
    let e = env().with_var("PGPASSFILE", "/srv/own.pgpass");
    assert_eq!(
        password(&ok(&req(), &e, &files)).map(|p| p.0),
        Some("own-pw")
    );

    let r = ConnRequest {
        positional: Some("passfile=/etc/shared.pgpass".into()),
        ..req()
    };
    let s = ok(&r, &e, &files);
    assert_eq!(password(&s), None);
    assert_eq!(
        s.warnings,
        vec![
            "password file \"/etc/shared.pgpass\" has group or world access; \
             permissions should be u=rw (0600) or less"
        ]
    );
}

#[test]
fn no_home_means_no_password_file() {
    let e = Environment::empty().with_os_user("u");
    let s = ok(&req(), &e, &MemoryFiles::new());
    assert_eq!(s.passfile, None);
    assert_eq!(s.tls.root_cert, None);
}

#[test]
fn service_file_sits_below_connection_string() {
    let files = MemoryFiles::new().with_file(
        "/home/osuser/.pg_service.conf",
        0o600,
        "[prod]\nhost=svc-host\nport=6100\ndbname=svc-db\n",
    );
    let e = env()
        .with_var("PGSERVICE", "prod")
        .with_var("PGHOST", "envhost");
    let s = ok(&req(), &e, &files);
    assert_eq!(hosts(&s), vec![(tcp("svc-host"), 6100)]);
    assert_eq!(s.dbname, "svc-db");

    let r = ConnRequest {
        positional: Some("service=prod dbname=mine".into()),
        ..req()
    };
    let s = ok(&r, &env(), &files);
    assert_eq!(hosts(&s), vec![(tcp("svc-host"), 6100)]);
    assert_eq!(s.dbname, "mine");

    let e = env().with_var("PGSERVICE", "missing");
    assert_eq!(
        resolve(&req(), &e, &files).unwrap_err().to_string(),
        "definition of service \"missing\" not found"
    );
}

#[test]
fn tls_files_default_under_home() {
    let files = MemoryFiles::new()
        .with_file("/home/osuser/.postgresql/root.crt", 0o644, "")
        .with_file("/home/osuser/.postgresql/postgresql.crt", 0o644, "");
    let s = ok(&req(), &env(), &files);
    assert!(s.tls.root_cert_exists);
    assert_eq!(
        s.tls.client_cert,
        Some(PathBuf::from("/home/osuser/.postgresql/postgresql.crt"))
    );
    assert_eq!(
        s.tls.client_key,
        Some(PathBuf::from("/home/osuser/.postgresql/postgresql.key"))
    );
    let e = env().with_var("PGSSLROOTCERT", "/etc/ca.pem");
    let s = ok(&req(), &e, &MemoryFiles::new());
    assert_eq!(s.tls.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    assert!(!s.tls.root_cert_exists);
    assert_eq!(s.tls.client_cert, None);
}

#[test]
fn password_debug_is_redacted() {
    let e = env().with_var("PGPASSWORD", "hunter2");
    let s = ok(&req(), &e, &MemoryFiles::new());
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn keyword_sources_are_tracked() {
    let e = env().with_var("PGPORT", "6000");
    let r = ConnRequest {
        host: Some("h".into()),
        ..req()
    };
    let merged = merge_layers(&r, &e, &MemoryFiles::new()).unwrap();
    assert_eq!(merged.source(Keyword::Host), Some(&Source::Flag));
    assert_eq!(merged.source(Keyword::Port), Some(&Source::Env("PGPORT")));
}
