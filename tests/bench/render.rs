//! Render micro-benchmarks (criterion): one full bulletin render of the seed record, and
//! one personalised e-mail (unsubscribe link, headers, MIME) from an already rendered
//! bulletin — the per-recipient work on the send path — unsigned and DKIM-signed (RSA-2048,
//! Ed25519). Run: `cargo bench --bench render`.

use bulletin::channel::email::EmailChannel;
use bulletin::channel::{Job, PreparedBulletin};
use bulletin::config::Config;
use bulletin::domain::record::parse_record;
use bulletin::domain::ChannelKind;
use bulletin::render::render_bulletin;
use bulletin::store::Claimed;
use bulletin::unsubscribe::UnsubscribeSigner;
use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::sync::Arc;

fn root(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn benches(c: &mut Criterion) {
    let outbox = std::env::temp_dir().join("bulletin-bench-outbox");
    let demo = std::fs::read_to_string(root("config/demo.toml"))
        .unwrap()
        .replace("demo-output/outbox", &outbox.display().to_string())
        .replace(
            "config/examples/cover.png",
            &root("config/examples/cover.png").display().to_string(),
        )
        .replace(
            "demo-output/wechat",
            &outbox.join("wechat").display().to_string(),
        );
    let config = Config::parse(&demo, Path::new("demo.toml"), &|_| None).unwrap();
    let source = std::fs::read_to_string(root(
        "config/examples/records/lmc-2020-parallel-session-2.toml",
    ))
    .unwrap();
    let record = parse_record(&source, "seed", "en").unwrap();
    let records = vec![record];

    c.bench_function("render one bulletin (seed record)", |b| {
        b.iter(|| render_bulletin(&records, &[vec![]], &config.publisher, "en").unwrap())
    });

    let rendered = render_bulletin(&records, &[vec![]], &config.publisher, "en").unwrap();
    let prepared = PreparedBulletin {
        id: 1,
        kind: bulletin::store::BulletinKind::Record,
        language: rendered.language,
        subject: rendered.subject,
        web_url: None,
        html: rendered.html,
        text: rendered.text,
        images: vec![],
        wechat: None,
        email_bodies: Default::default(),
        versions: vec![],
        reader_versions: Default::default(),
    };
    let signer = Arc::new(UnsubscribeSigner::new(
        vec![7; 32],
        "https://news.example.org",
    ));
    let channel = EmailChannel::new(&config.email, signer, "benchtag".into()).unwrap();
    let claimed = Claimed {
        id: 42,
        bulletin_id: 1,
        channel: ChannelKind::Email,
        recipient: "reader@example.org".into(),
        recipient_name: Some("李明宇".into()),
        list_id: Some(1),
        subscriber_id: Some(42),
        attempts: 0,
        ambiguous: false,
        created_at: chrono::Utc::now(),
        lease_until: chrono::Utc::now(),
        suppressed_because: None,
        priority: 0,
        unconfirmed: 0,
        taken_from: None,
        language: None,
    };
    c.bench_function("one personalised e-mail from a rendered bulletin", |b| {
        b.iter(|| {
            let m = channel
                .build(&Job {
                    delivery: &claimed,
                    bulletin: &prepared,
                })
                .unwrap();
            m.formatted().len()
        })
    });

    // The same, DKIM-signed: the body hash and one signature per message (the body
    // differs per recipient, so neither can be shared).
    let keys = std::env::temp_dir().join("bulletin-bench-dkim");
    std::fs::create_dir_all(&keys).unwrap();
    for (alg, name) in [
        (bulletin::dkim::Algorithm::Rsa, "RSA-2048"),
        (bulletin::dkim::Algorithm::Ed25519, "Ed25519"),
    ] {
        use secrecy::ExposeSecret;
        let (_, pem) = bulletin::dkim::DkimKey::generate(alg).unwrap();
        let path = keys.join(format!("{name}.pem"));
        std::fs::write(&path, pem.expose_secret()).unwrap();
        let text = format!(
            "{demo}\n[email.dkim]\ndomain = \"example.org\"\nselector = \"bench\"\nprivate_key_file = \"{}\"\n",
            path.display()
        );
        let config = Config::parse(&text, Path::new("demo.toml"), &|_| None).unwrap();
        let signer = Arc::new(UnsubscribeSigner::new(
            vec![7; 32],
            "https://news.example.org",
        ));
        let channel = EmailChannel::new(&config.email, signer, "benchtag".into()).unwrap();
        c.bench_function(
            &format!("one personalised e-mail, DKIM-signed ({name})"),
            |b| {
                b.iter(|| {
                    let m = channel
                        .build(&Job {
                            delivery: &claimed,
                            bulletin: &prepared,
                        })
                        .unwrap();
                    m.formatted().len()
                })
            },
        );
    }
}

criterion_group!(render, benches);
criterion_main!(render);
