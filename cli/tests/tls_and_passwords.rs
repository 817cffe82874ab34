//! End to end: sslmode against a server with TLS on (certificates made here with a
//! throwaway CA), and password sources against password authentication.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BIN, describe, fails_with, json, tviews};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder};
use tviews_tests::{Cluster, ClusterOptions};

mod common;

/// Exit code 0 and the `connection.ssl` field of `status --format json`.
fn ssl_in_use(out: &Output) -> bool {
    json(out, "status")["connection"]["ssl"]
        .as_bool()
        .expect("connection.ssl")
}

// ---- certificates ----

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("P-256");
    PKey::from_ec_key(EcKey::generate(&group).expect("EC key")).expect("pkey")
}

fn name(cn: &str) -> X509Name {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("CN");
    name.build()
}

fn cert_builder(cn: &str, key: &PKey<Private>, serial: u32) -> X509Builder {
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    let serial = BigNum::from_u32(serial).and_then(|n| n.to_asn1_integer());
    b.set_serial_number(&serial.expect("serial"))
        .expect("serial");
    b.set_subject_name(&name(cn)).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("now"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("later"))
        .expect("na");
    b
}

/// A self-signed CA.
fn ca(cn: &str) -> (X509, PKey<Private>) {
    let key = ec_key();
    let mut b = cert_builder(cn, &key, 1);
    b.set_issuer_name(&name(cn)).expect("issuer");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("ext");
    b.sign(&key, MessageDigest::sha256()).expect("sign CA");
    (b.build(), key)
}

/// A server certificate for DNS name `localhost` only (not 127.0.0.1), so that
/// verify-full passes for `-h localhost` and fails for `-h 127.0.0.1`.
fn server_cert(ca: &X509, ca_key: &PKey<Private>) -> (X509, PKey<Private>) {
    let key = ec_key();
    let mut b = cert_builder("localhost", &key, 2);
    b.set_issuer_name(ca.subject_name()).expect("issuer");
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&b.x509v3_context(Some(ca), None))
        .expect("SAN");
    b.append_extension(san).expect("ext");
    b.sign(ca_key, MessageDigest::sha256())
        .expect("sign server");
    (b.build(), key)
}

/// Turns TLS on in a running cluster: certificate files in the data directory, owned
/// like it (the server may run as another user), then a reload (ssl is SIGHUP-settable).
fn enable_tls(cluster: &Cluster, cert: &X509, key: &PKey<Private>) {
    let data = cluster.data_dir();
    let meta = fs::metadata(data).expect("data dir");
    for (name, pem, mode) in [
        ("server.crt", cert.to_pem().expect("pem"), 0o644),
        (
            "server.key",
            key.private_key_to_pem_pkcs8().expect("pem"),
            0o600,
        ),
    ] {
        let path = data.join(name);
        fs::write(&path, pem).expect("write certificate file");
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).expect("chown");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    cluster
        .psql(
            "postgres",
            "ALTER SYSTEM SET ssl_cert_file = 'server.crt';
             ALTER SYSTEM SET ssl_key_file = 'server.key';
             ALTER SYSTEM SET ssl = on;
             SELECT pg_reload_conf();",
        )
        .expect("enable ssl");
    wait_for(cluster, "SHOW ssl", "on");
}

/// Reload is asynchronous: poll until a new session sees the setting.
fn wait_for(cluster: &Cluster, sql: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = cluster.psql("postgres", sql).unwrap_or_default();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} is {got:?}, not {want:?}:\n{}",
            cluster.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A HOME with `~/.postgresql/root.crt` holding `ca` (or no such file).
fn home_with_root(ca: Option<&X509>) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    if let Some(ca) = ca {
        let dir = home.path().join(".postgresql");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("root.crt"), ca.to_pem().expect("pem")).expect("root.crt");
    }
    home
}

fn write_pgpass(home: &Path, contents: &str, mode: u32) -> PathBuf {
    let path = home.join(".pgpass");
    fs::write(&path, contents).expect("write .pgpass");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod .pgpass");
    path
}

#[test]
fn tls_and_passwords() {
    let cluster = Cluster::start(ClusterOptions {
        tcp: true,
        name: "cli-tls".into(),
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e:?}"));
    let port = cluster.port().to_string();

    sslmodes(&cluster, &port);
    password_sources(&cluster, &port);
}

fn sslmodes(cluster: &Cluster, port: &str) {
    let (ca_cert, ca_key) = ca("tviews test CA");
    let (cert, key) = server_cert(&ca_cert, &ca_key);
    enable_tls(cluster, &cert, &key);
    let (other_ca, _) = ca("some other CA");

    let status = |home: &Path, host: &str, mode: &str| {
        tviews(
            home,
            &[
                "status",
                "-h",
                host,
                "-p",
                port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "--sslmode",
                mode,
                "--format",
                "json",
            ],
            &[],
        )
    };

    let bare = home_with_root(None);
    assert!(ssl_in_use(&status(bare.path(), "127.0.0.1", "prefer")));
    assert!(ssl_in_use(&status(bare.path(), "127.0.0.1", "require")));
    assert!(!ssl_in_use(&status(bare.path(), "127.0.0.1", "allow")));
    assert!(!ssl_in_use(&status(bare.path(), "127.0.0.1", "disable")));
    fails_with(
        &status(bare.path(), "localhost", "verify-ca"),
        2,
        "root certificate file",
    );
    // Sockets never use TLS, whatever the mode.
    let socket = cluster.socket_dir().display().to_string();
    assert!(!ssl_in_use(&status(bare.path(), &socket, "require")));

    let trusted = home_with_root(Some(&ca_cert));
    assert!(ssl_in_use(&status(
        trusted.path(),
        "localhost",
        "verify-full"
    )));
    assert!(ssl_in_use(&status(
        trusted.path(),
        "127.0.0.1",
        "verify-ca"
    )));
    fails_with(
        &status(trusted.path(), "127.0.0.1", "verify-full"),
        2,
        "TLS",
    );
    // hostaddr: connect to the address, verify the name.
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full"
    );
    let out = tviews(
        trusted.path(),
        &["status", &conninfo, "--format", "json"],
        &[],
    );
    assert!(ssl_in_use(&out));
    // PGSSLROOTCERT instead of ~/.postgresql/root.crt.
    let ca_file = trusted.path().join(".postgresql/root.crt");
    let out = tviews(
        bare.path(),
        &[
            "status",
            "-h",
            "localhost",
            "-p",
            port,
            "-U",
            "postgres",
            "--format",
            "json",
        ],
        &[
            ("PGSSLROOTCERT", ca_file.to_str().expect("utf-8 path")),
            ("PGSSLMODE", "verify-full"),
            ("PGDATABASE", "postgres"),
        ],
    );
    assert!(ssl_in_use(&out));

    // A root.crt from another CA: require checks the chain like libpq (and fails),
    // prefer falls back to plain text.
    let wrong = home_with_root(Some(&other_ca));
    fails_with(&status(wrong.path(), "localhost", "require"), 2, "TLS");
    assert!(!ssl_in_use(&status(wrong.path(), "localhost", "prefer")));
}

fn password_sources(cluster: &Cluster, port: &str) {
    cluster
        .psql(
            "postgres",
            "SET password_encryption = 'scram-sha-256';
             CREATE ROLE pw LOGIN PASSWORD 'se:cret';",
        )
        .expect("role pw");
    // Password authentication for role pw only, over TCP and the socket, ahead of the
    // harness's trust rules.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = fs::read_to_string(&hba).expect("read pg_hba.conf");
    let rules = "local all pw scram-sha-256\nhost all pw 127.0.0.1/32 scram-sha-256\n\
                 host all pw ::1/128 scram-sha-256\n";
    fs::write(&hba, format!("{rules}{old}")).expect("write pg_hba.conf");
    cluster
        .psql("postgres", "SELECT pg_reload_conf()")
        .expect("reload");
    // Wait until the rule is live (a trust connection as pw would otherwise succeed).
    let deadline = Instant::now() + Duration::from_secs(10);
    let home = tempfile::tempdir().expect("home");
    let tcp = [
        "version",
        "-h",
        "127.0.0.1",
        "-p",
        port,
        "-U",
        "pw",
        "-d",
        "postgres",
    ];
    loop {
        let out = tviews(home.path(), &tcp, &[]);
        if out.status.code() == Some(2) {
            fails_with(&out, 2, "no password supplied");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pg_hba.conf not reloaded: {}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let ok = |out: Output| assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    ok(tviews(home.path(), &tcp, &[("PGPASSWORD", "se:cret")]));
    ok(tviews(
        home.path(),
        &[
            "version",
            &format!("postgresql://pw:se%3Acret@127.0.0.1:{port}/postgres"),
        ],
        &[],
    ));

    // ~/.pgpass, with an escaped colon, for TCP and for the socket ("localhost").
    let pgpass = write_pgpass(
        home.path(),
        &format!("127.0.0.1:{port}:*:pw:se\\:cret\nlocalhost:{port}:postgres:pw:se\\:cret\n"),
        0o600,
    );
    ok(tviews(home.path(), &tcp, &[]));
    let socket = cluster.socket_dir().display().to_string();
    ok(tviews(
        home.path(),
        &[
            "version", "-h", &socket, "-p", port, "-U", "pw", "-d", "postgres",
        ],
        &[],
    ));

    // PGPASSFILE elsewhere.
    let elsewhere = tempfile::tempdir().expect("dir");
    let moved = elsewhere.path().join("passwords");
    fs::rename(&pgpass, &moved).expect("move .pgpass");
    fails_with(&tviews(home.path(), &tcp, &[]), 2, "no password supplied");
    ok(tviews(
        home.path(),
        &tcp,
        &[("PGPASSFILE", moved.to_str().expect("utf-8 path"))],
    ));

    // Group-readable: ignored, with libpq's warning.
    write_pgpass(home.path(), "*:*:*:pw:se\\:cret\n", 0o644);
    let out = tviews(home.path(), &tcp, &[]);
    fails_with(&out, 2, "no password supplied");
    fails_with(&out, 2, "has group or world access");

    // A wrong password from the file says where it came from.
    write_pgpass(home.path(), "*:*:*:pw:wrong\n", 0o600);
    let out = tviews(home.path(), &tcp, &[]);
    fails_with(&out, 2, "password authentication failed for user \"pw\"");
    fails_with(&out, 2, "password retrieved from file");
    fs::remove_file(home.path().join(".pgpass")).expect("rm .pgpass");

    prompts(home.path(), &tcp);
}

/// Runs tviews on a pseudo-terminal (util-linux `script`), typing `input`.
fn on_terminal(home: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    // `script -c` takes one shell command line: quote every argument for sh.
    let quoted: Vec<String> = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    let mut child = Command::new("script")
        .args(["-qec", &quoted.join(" "), "/dev/null"])
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run script(1)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("type");
    }
    child.wait_with_output().expect("script(1) output")
}

/// psql's prompting: when the server asks (stdin a terminal), before connecting with
/// -W, never with -w.
fn prompts(home: &Path, tcp: &[&str]) {
    let transcript = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();

    let out = on_terminal(home, tcp, "se:cret\n");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        transcript(&out).contains("Password for user pw: "),
        "{}",
        describe(&out)
    );

    let mut forced = tcp.to_vec();
    forced.push("-W");
    let out = on_terminal(home, &forced, "se:cret\n");
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let out = on_terminal(home, &forced, "wrong\n");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        transcript(&out).contains("password authentication failed"),
        "{}",
        describe(&out)
    );

    let mut never = tcp.to_vec();
    never.push("-w");
    let out = on_terminal(home, &never, "se:cret\n");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        !transcript(&out).contains("Password for user"),
        "{}",
        describe(&out)
    );
}
