use super::*;

pub(crate) const GOOD: &str = r#"
[publisher]
names = ["Centre"]

[email]
from = "Centre <news@example.org>"
transport = "smtp"
[email.smtp]
host = "127.0.0.1"
port = 2525
tls = "none"
username = "u"

[[schedules]]
name = "weekly"
cron = "0 0 9 * * Mon"
timezone = "Asia/Shanghai"
lists = ["partners"]
"#;

fn env_with_password(n: &str) -> Option<String> {
    (n == "BULLETIN_SMTP_PASSWORD").then(|| "hunter2-very-secret".to_string())
}

fn with_dkim(domain: &str, selector: &str, key: &Path) -> String {
    format!(
        "{GOOD}\n[email.dkim]\ndomain = \"{domain}\"\nselector = \"{selector}\"\nprivate_key_file = \"{}\"\n",
        key.display()
    )
}

#[test]
fn dkim_key_and_names_are_checked_when_the_configuration_loads() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let (_, pem) = crate::dkim::DkimKey::generate(crate::dkim::Algorithm::Ed25519).unwrap();
    std::fs::write(&key, pem.expose_secret()).unwrap();
    let c = Config::parse(
        &with_dkim("example.org", "s1", &key),
        Path::new("b.toml"),
        &env_with_password,
    )
    .unwrap();
    let d = c.email.dkim.as_ref().unwrap();
    assert_eq!(d.dns_name(), "s1._domainkey.example.org");
    assert_eq!(d.key.describe(), "Ed25519");
    // The key is a secret: not in Debug output.
    let seed = pem.expose_secret().lines().nth(1).unwrap().to_string();
    assert!(!format!("{c:?}").contains(&seed));
    assert!(
        !c.warnings().iter().any(|w| w.contains("dkim")),
        "{:?}",
        c.warnings()
    );

    let fails =
        |text: String| Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap_err();
    let e = fails(with_dkim("example", "s1", &key));
    assert_eq!(e.key.as_deref(), Some("email.dkim.domain"));
    assert!(e.line.is_some());
    let e = fails(with_dkim("example.org", "s 1", &key));
    assert_eq!(e.key.as_deref(), Some("email.dkim.selector"));
    let e = fails(with_dkim("example.org", "s1", &dir.path().join("none.pem")));
    assert_eq!(e.key.as_deref(), Some("email.dkim.private_key_file"));
    assert!(e.message.contains("cannot read the key file"), "{e}");
    // Not a key: refused without quoting the file.
    std::fs::write(&key, "topsecret-not-a-key").unwrap();
    let e = fails(with_dkim("example.org", "s1", &key));
    assert_eq!(e.key.as_deref(), Some("email.dkim.private_key_file"));
    assert!(!e.to_string().contains("topsecret"), "{e}");
    // RSA under 2048 bits.
    use rsa::pkcs8::EncodePrivateKey;
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let small = small.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    std::fs::write(&key, small.as_bytes()).unwrap();
    let e = fails(with_dkim("example.org", "s1", &key));
    assert!(e.message.contains("1024 bits"), "{e}");
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
}

#[test]
fn a_dkim_domain_that_does_not_align_with_from_is_warned_of() {
    use secrecy::ExposeSecret;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let (_, pem) = crate::dkim::DkimKey::generate(crate::dkim::Algorithm::Ed25519).unwrap();
    std::fs::write(&key, pem.expose_secret()).unwrap();
    let c = Config::parse(
        &with_dkim("other.example.net", "s1", &key),
        Path::new("b.toml"),
        &env_with_password,
    )
    .unwrap();
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("email.dkim.domain") && w.contains("DMARC")),
        "{:?}",
        c.warnings()
    );
}

#[test]
fn good_config_loads_and_hides_the_password() {
    let c = Config::parse(GOOD, Path::new("b.toml"), &env_with_password).unwrap();
    assert_eq!(c.schedules.len(), 1);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "secret leaked into Debug");
}

#[test]
fn admin_token_is_hidden_checked_and_binds_are_named() {
    let env = |n: &str| match n {
        "BULLETIN_SMTP_PASSWORD" => Some("hunter2-very-secret".to_string()),
        "BULLETIN_ADMIN_TOKEN" => Some("admin-token-very-secret".to_string()),
        _ => None,
    };
    let c = Config::parse(GOOD, Path::new("b.toml"), &env).unwrap();
    assert!(c.admin.token.is_some());
    assert_eq!(c.admin.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.public.bind.to_string(), "127.0.0.1:8081");
    assert!(!format!("{c:?}").contains("admin-token-very-secret"));

    let short = |n: &str| match n {
        "BULLETIN_ADMIN_TOKEN" => Some("short".to_string()),
        other => env(other),
    };
    let e = Config::parse(GOOD, Path::new("b.toml"), &short).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("admin.token_env"), "{e}");
    assert!(!e.to_string().contains("short\""), "{e}");

    let src = format!("{GOOD}\n[public]\nbind = \"0.0.0.0\"\n");
    let e = Config::parse(&src, Path::new("b.toml"), &env).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("public.bind"), "{e}");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn a_relative_sqlite_path_is_read_from_the_configuration_folder() {
    let c = Config::parse(
        &format!("[store]\nurl = \"sqlite://data/b.db?mode=rwc\"\n{GOOD}"),
        Path::new("/etc/bulletin/bulletin.toml"),
        &env_with_password,
    )
    .unwrap();
    assert_eq!(c.store_url, "sqlite:///etc/bulletin/data/b.db?mode=rwc");
    let r = |u: &str| resolve_sqlite_url(u, Path::new("/etc/bulletin/b.toml"));
    assert_eq!(r("sqlite:b.db"), "sqlite:///etc/bulletin/b.db");
    assert_eq!(r("sqlite:///var/b.db"), "sqlite:///var/b.db");
    assert_eq!(r("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(r("postgres://u@h/db"), "postgres://u@h/db");
    // A configuration named relative to the working folder: made absolute.
    let rel = resolve_sqlite_url("sqlite://b.db", Path::new("config/bulletin.toml"));
    let want = std::env::current_dir().unwrap().join("config/b.db");
    assert_eq!(rel, format!("sqlite://{}", want.display()));
}

#[test]
fn missing_password_is_explained_when_sending_only() {
    // Loads (the commands that do not send need no password) ...
    let c = Config::parse(GOOD, Path::new("b.toml"), &|_| None).unwrap();
    // ... but cannot send, and says why.
    let e = c.ready_to_send().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("email.smtp.username"));
    assert!(e.message.contains("BULLETIN_SMTP_PASSWORD"));
    assert!(
        c.warnings()[0].contains("BULLETIN_SMTP_PASSWORD"),
        "{:?}",
        c.warnings()
    );
}

#[test]
fn a_missing_wechat_secret_stops_only_sending() {
    let cover = tempfile_path("cover.png");
    let src = format!(
        "{GOOD}\n[unsubscribe]\nbase_url = \"https://news.example.org\"\n\n[wechat]\nappid = \"wx1234567890abcdef\"\ncover_image = \"{}\"\n",
        cover.display()
    );
    let c = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap();
    let e = c.ready_to_send().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("wechat.secret_env"), "{e}");
    assert!(e.message.contains("no AppSecret"), "{e}");
}

fn tempfile_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "bulletin-config-test-{}-{name}",
        std::process::id()
    ));
    std::fs::write(&p, b"x").unwrap();
    p
}

#[test]
fn unsubscribe_base_url_is_an_absolute_http_url_and_cannot_inject_markup() {
    let with = |u: &str| {
        Config::parse(
            &format!(
                "{GOOD}\n[unsubscribe]\nbase_url = {}\n",
                toml::Value::String(u.into())
            ),
            Path::new("b.toml"),
            &env_with_password,
        )
    };
    let c = with("https://news.example.org/a\"onmouseover=\"alert(1)'&<b>/").unwrap();
    let b = &c.unsubscribe.base_url;
    assert_eq!(
        b,
        "https://news.example.org/a%22onmouseover=%22alert(1)%27%26%3Cb%3E"
    );
    assert!(!b.contains(['"', '\'', '<', '>', '&', ' ']), "{b}");
    for bad in [
        "news.example.org",
        "ftp://news.example.org",
        "https://",
        "https://news.example.org/?list=1",
        "https://news.example.org/#x",
        "https://user:pw@news.example.org",
        "https://news example.org",
    ] {
        let e = with(bad).expect_err(bad);
        assert_eq!(e.key.as_deref(), Some("unsubscribe.base_url"), "{bad}: {e}");
    }
    assert_eq!(
        with("https://news.example.org/")
            .unwrap()
            .unsubscribe
            .base_url,
        "https://news.example.org"
    );
}

#[test]
fn a_loopback_unsubscribe_url_stops_smtp_sending_unless_allowed() {
    // GOOD has no [unsubscribe]: the default http://127.0.0.1:8081.
    let c = Config::parse(GOOD, Path::new("b.toml"), &env_with_password).unwrap();
    let e = c.ready_to_send().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("unsubscribe.base_url"));
    assert!(e.message.contains("dead"), "{e}");
    assert!(c.warnings().iter().any(|w| w.contains("127.0.0.1:8081")));
    for host in ["http://localhost:8081", "http://[::1]/", "http://127.1.2.3"] {
        let c = Config::parse(
            &format!("{GOOD}\n[unsubscribe]\nbase_url = \"{host}\"\n"),
            Path::new("b.toml"),
            &env_with_password,
        )
        .unwrap();
        assert!(c.ready_to_send().is_err(), "{host}");
    }
    let allowed = Config::parse(
        &format!("{GOOD}\n[unsubscribe]\nallow_loopback = true\n"),
        Path::new("b.toml"),
        &env_with_password,
    )
    .unwrap();
    assert!(allowed.ready_to_send().is_ok());
    let public = Config::parse(
        &format!("{GOOD}\n[unsubscribe]\nbase_url = \"https://news.example.org\"\n"),
        Path::new("b.toml"),
        &env_with_password,
    )
    .unwrap();
    assert!(public.ready_to_send().is_ok() && public.warnings().is_empty());
}

#[test]
fn unknown_key_names_line() {
    let src = GOOD.replace("port = 2525", "prot = 2525");
    let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.to_string().contains("unknown field `prot`"), "{e}");
}

#[test]
fn bad_schedule_names_the_key() {
    let src = GOOD.replace("Asia/Shanghai", "Asia/Atlantis");
    let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("schedules[1].timezone"), "{e}");
}

#[test]
fn postgres_url_takes_the_password_from_env_or_file_and_hides_it() {
    use secrecy::ExposeSecret;
    let src = GOOD.replace(
        "[publisher]",
        "[store]\nurl = \"postgres://bulletin@db.example/bulletin\"\n\n[publisher]",
    );
    let env = |n: &str| match n {
        DATABASE_PASSWORD_ENV => Some("pg-secret-17".to_string()),
        other => env_with_password(other),
    };
    let c = Config::parse(&src, Path::new("b.toml"), &env).unwrap();
    assert_eq!(
        c.store_password
            .as_ref()
            .map(|p| p.expose_secret().to_string()),
        Some("pg-secret-17".into())
    );
    assert!(!format!("{c:?}").contains("pg-secret-17"));
    // A password in the URL wins; none is read from the environment.
    let src2 = src.replace("bulletin@db", "bulletin:inline@db");
    let c2 = Config::parse(&src2, Path::new("b.toml"), &env).unwrap();
    assert!(c2.store_password.is_none());
    // Other schemes are refused, with the password masked.
    let src3 = src.replace("postgres://bulletin@db", "mysql://u:hidden@db");
    let e = Config::parse(&src3, Path::new("b.toml"), &env).unwrap_err();
    assert!(!e.to_string().contains("hidden"), "{e}");
}

#[test]
fn an_unknown_word_is_refused_at_its_line_with_the_accepted_words() {
    let cases = [
        (
            GOOD.replace("tls = \"none\"", "tls = \"ssl\""),
            11,
            TlsMode::TEXTS,
        ),
        (
            GOOD.replace("transport = \"smtp\"", "transport = \"pigeon\""),
            7,
            TransportKind::TEXTS,
        ),
        (
            format!("{GOOD}\n[delivery]\non_expired_lease = \"retry\"\n"),
            21,
            ExpiredLease::TEXTS,
        ),
        (
            GOOD.replace(
                "lists = [\"partners\"]",
                "lists = [\"partners\"]\nmode = \"weekly\"",
            ),
            19,
            crate::domain::ScheduleMode::TEXTS,
        ),
        (
            format!(
                "{GOOD}\n[wechat]\nappid = \"wx1\"\ncover_image = \"c.png\"\nmode = \"broadcast\"\n"
            ),
            23,
            WechatMode::TEXTS,
        ),
    ];
    for (text, line, words) in cases {
        let e = Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap_err();
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.message.contains("unknown variant"), "{e}");
        for w in words {
            assert!(e.message.contains(&format!("`{w}`")), "{e}");
        }
    }
}

#[test]
fn a_missing_smtp_table_is_reported_at_the_transport_line() {
    let src = GOOD.replace("[email.smtp]", "[other]");
    let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
    // `[other]` is no section: refused first.
    assert!(e.message.contains("unknown field `other`"), "{e}");
    let cut = GOOD.find("[email.smtp]").unwrap();
    let end = GOOD.find("[[schedules]]").unwrap();
    let src = format!("{}{}", &GOOD[..cut], &GOOD[end..]);
    let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("email.smtp"), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.message.contains("no [email.smtp] table"), "{e}");
}

#[test]
fn section_checks_name_their_key() {
    let fails =
        |text: String| Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap_err();
    let e = fails(GOOD.replace("port = 2525", "port = 2525\npool_size = 0"));
    assert_eq!(e.key.as_deref(), Some("email.smtp.pool_size"), "{e}");
    // At the table's header.
    assert_eq!(e.line, Some(8), "{e}");
    let e = fails(format!("{GOOD}\n[delivery]\nlease_seconds = 60\n"));
    assert_eq!(e.key.as_deref(), Some("delivery.lease_seconds"), "{e}");
    assert!(e.message.contains("60 s is too short"), "{e}");
    let e = fails(format!("{GOOD}\n[delivery]\nstorm_failure_share = 1.5\n"));
    assert_eq!(
        e.key.as_deref(),
        Some("delivery.storm_failure_share"),
        "{e}"
    );
    let e = fails(format!("{GOOD}\n[admin]\nheader_timeout_seconds = 0\n"));
    assert_eq!(
        e.key.as_deref(),
        Some("admin.header_timeout_seconds"),
        "{e}"
    );
    assert_eq!(e.line, Some(20), "{e}");
    let e = fails(GOOD.replace(
        "names = [\"Centre\"]",
        "names = [\"Centre\", \"two\\nlines\"]",
    ));
    assert_eq!(e.key.as_deref(), Some("publisher.names[2]"), "{e}");
    let e = fails(format!("[defaults]\nlanguage = \"not a tag\"\n{GOOD}"));
    assert_eq!(e.key.as_deref(), Some("defaults.language"), "{e}");
    let e = fails(GOOD.replace("name = \"weekly\"", "name = \"Weekly\""));
    assert_eq!(e.key.as_deref(), Some("schedules[1].name"), "{e}");
    assert!(e.message.contains("schedule name"), "{e}");
}

#[test]
fn toml_errors_name_the_key_they_are_about() {
    let text = "[a]\nx = 1\n\n[[s]]\nname = \"one\"\n[[s]]\nmode = \"weekly\" # = not\n[b.c]\n";
    let at = |needle: &str| key_at(text, text.find(needle).unwrap());
    assert_eq!(at("x = 1").as_deref(), Some("a.x"));
    assert_eq!(at("\"one\"").as_deref(), Some("s[1].name"));
    assert_eq!(at("\"weekly\"").as_deref(), Some("s[2].mode"));
    assert_eq!(at("[b.c]").as_deref(), Some("b.c"));
    assert_eq!(key_at("x = 1\n", 4).as_deref(), Some("x"));
    assert_eq!(key_at("\"quoted key\" = 1\n", 0), None);
    assert_eq!(key_at("[unclosed\n", 0), None);
    assert_eq!(key_at("", 0), None);

    let e = Config::parse(
        &GOOD.replace("tls = \"none\"", "tls = \"ssl\""),
        Path::new("b.toml"),
        &env_with_password,
    )
    .unwrap_err();
    assert_eq!(e.key.as_deref(), Some("email.smtp.tls"), "{e}");
    assert!(
        e.to_string()
            .starts_with("b.toml:11:7: email.smtp.tls: unknown variant `ssl`"),
        "{e}"
    );
    let src = GOOD.replace(
        "lists = [\"partners\"]",
        "lists = [\"partners\"]\nmode = \"weekly\"",
    );
    let e = Config::parse(&src, Path::new("b.toml"), &env_with_password).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("schedules[1].mode"), "{e}");
}

fn env_with_verp(n: &str) -> Option<String> {
    match n {
        "BULLETIN_VERP_SECRET" => Some("verp-key-0123456789abcdef".into()),
        _ => env_with_password(n),
    }
}

#[test]
fn without_bounces_there_is_no_verp_and_the_default_policy() {
    let c = Config::parse(GOOD, Path::new("b.toml"), &env_with_verp).unwrap();
    assert!(c.bounces.verp.is_none());
    assert_eq!(c.bounces.policy, BouncePolicy::default());
    assert_eq!(c.bounces.policy.hard_bounces_to_suppress, 1);
    assert_eq!(c.bounces.policy.soft_bounces_to_suppress, 5);
    assert_eq!(
        c.bounces.policy.soft_window,
        Duration::from_secs(30 * 86_400)
    );
}

#[test]
fn bounces_section_sets_verp_and_policy_and_never_prints_the_key() {
    let text = format!(
        "{GOOD}\n[bounces]\nreturn_path = \"Bounces+{{token}}@B.example.org\"\n\
         hard_bounces_to_suppress = 2\nsoft_bounces_to_suppress = 3\nsoft_window_days = 7\n"
    );
    let c = Config::parse(&text, Path::new("b.toml"), &env_with_verp).unwrap();
    let v = c.bounces.verp.as_ref().expect("verp");
    let a = v.address(42);
    assert!(
        a.starts_with("bounces+42-") && a.ends_with("@b.example.org"),
        "{a}"
    );
    assert_eq!(v.row_id(&a), Some(42));
    assert_eq!(c.bounces.policy.hard_bounces_to_suppress, 2);
    assert_eq!(c.bounces.policy.soft_bounces_to_suppress, 3);
    assert_eq!(
        c.bounces.policy.soft_window,
        Duration::from_secs(7 * 86_400)
    );
    assert!(!format!("{c:?}").contains("verp-key-0123456789abcdef"));
    assert!(c.send_secrets_missing.is_empty());

    // Without the key: commands that only read still load; sending is refused.
    let c = Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap();
    assert!(c.bounces.verp.is_none());
    let e = c.ready_to_send().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("bounces.verp_secret_env"), "{e}");
    assert!(e.message.contains("BULLETIN_VERP_SECRET"), "{e}");
}

#[test]
fn bounces_errors_name_file_line_and_key() {
    let fails = |extra: &str, env: &dyn Fn(&str) -> Option<String>| {
        Config::parse(
            &format!("{GOOD}\n[bounces]\n{extra}"),
            Path::new("b.toml"),
            env,
        )
        .unwrap_err()
    };
    let line = GOOD.lines().count() + 3;
    let e = fails("return_path = \"bounces@b.example.org\"\n", &env_with_verp);
    assert_eq!(e.key.as_deref(), Some("bounces.return_path"), "{e}");
    assert!(
        e.to_string().starts_with(&format!("b.toml:{line}:")),
        "{e} (line {line})"
    );
    assert!(e.message.contains("{token}"), "{e}");
    let e = fails("return_path = \"b+{token}@b.example.org\"\n", &|n: &str| {
        (n == "BULLETIN_VERP_SECRET").then(|| "short".to_string())
    });
    assert_eq!(e.key.as_deref(), Some("bounces.verp_secret_env"), "{e}");
    assert!(!e.to_string().contains("short\""), "{e}");
    let e = fails("soft_window_days = 0\n", &env_with_verp);
    assert_eq!(e.key.as_deref(), Some("bounces.soft_window_days"), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    let e = fails("hard_bounces = 1\n", &env_with_verp);
    assert!(e.to_string().starts_with(&format!("b.toml:{line}:")), "{e}");
    let e = fails(
        "verp_secret_file = \"/nonexistent/verp.key\"\nreturn_path = \"b+{token}@b.example.org\"\n",
        &env_with_password,
    );
    assert_eq!(e.key.as_deref(), Some("bounces.verp_secret_file"), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
}

#[test]
fn bounces_imap_has_defaults_checks_its_words_and_never_prints_the_password() {
    let env = |n: &str| match n {
        "BULLETIN_IMAP_PASSWORD" => Some("imap-pass-never-shown".into()),
        _ => env_with_password(n),
    };
    let text = format!("{GOOD}\n[bounces.imap]\nhost = \"imap.example.org\"\nuser = \"b\"\n");
    let c = Config::parse(&text, Path::new("b.toml"), &env).unwrap();
    let i = c.bounces.imap.as_ref().expect("imap");
    assert_eq!((i.port, i.tls), (993, ImapTls::Implicit));
    assert_eq!(i.folder, "INBOX");
    assert_eq!(i.processed_folder, "Processed");
    assert_eq!(i.interval, Duration::from_secs(60));
    assert!(!c.bounces.match_by_address);
    assert!(c.send_secrets_missing.is_empty());
    assert!(!format!("{c:?}").contains("imap-pass-never-shown"));

    let c = Config::parse(
        &format!("{text}tls = \"starttls\"\n"),
        Path::new("b.toml"),
        &env,
    )
    .unwrap();
    let i = c.bounces.imap.unwrap();
    assert_eq!((i.port, i.tls), (143, ImapTls::StartTls));

    // No password: the daemon will not start (like the SMTP password), other commands do.
    let c = Config::parse(&text, Path::new("b.toml"), &env_with_password).unwrap();
    let e = c.ready_to_send().unwrap_err();
    assert_eq!(e.key.as_deref(), Some("bounces.imap.password_env"), "{e}");
    assert!(e.message.contains("BULLETIN_IMAP_PASSWORD"), "{e}");

    let line = GOOD.lines().count() + 5;
    for (extra, key) in [
        ("tls = \"ssl\"\n", "bounces.imap.tls"),
        (
            "processed_folder = \"INBOX\"\n",
            "bounces.imap.processed_folder",
        ),
        ("interval_seconds = 0\n", "bounces.imap.interval_seconds"),
    ] {
        let e = Config::parse(&format!("{text}{extra}"), Path::new("b.toml"), &env).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert_eq!(e.line, Some(line), "{e}");
    }
}
