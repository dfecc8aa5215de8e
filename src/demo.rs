//! `bulletin demo`: a fresh embedded store, the example record (in English and Chinese:
//! two language versions of one record) and list, approval, a firing and delivery to an
//! outbox folder (each reader gets the version of their language), then a summary.
//! Needs no server.

use crate::app::App;
use crate::config::Config;
use crate::domain::subscriber::CsvSubscribers;
use anyhow::{anyhow, Context};
use std::path::Path;

const MARKER: &str = ".bulletin-demo";
const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const RECORD_FILE: &str = "lmc-2020-parallel-session-2.toml";
const RECORD: &str = include_str!("../config/examples/records/lmc-2020-parallel-session-2.toml");
const RECORD_ZH_FILE: &str = "lmc-2020-parallel-session-2.zh-Hans.toml";
const RECORD_ZH: &str =
    include_str!("../config/examples/records/lmc-2020-parallel-session-2.zh-Hans.toml");
const COVER: &[u8] = include_bytes!("../config/examples/cover.png");
const SUBSCRIBERS: &str = include_str!("../config/examples/subscribers.csv");

pub async fn run(dir: &Path) -> anyhow::Result<()> {
    let d = dir.display().to_string();
    if dir.exists() {
        let ours = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(false);
        if !ours && !empty {
            anyhow::bail!(
                "{d} exists and was not made by `bulletin demo`; choose another folder with --dir"
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {d}"))?;
    }
    std::fs::create_dir_all(dir.join("records")).with_context(|| format!("cannot create {d}"))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `bulletin demo`; the next demo run empties this folder\n",
    )?;
    std::fs::write(dir.join("cover.png"), COVER)?;
    // Absolute paths: the demo's demo.toml then names the same store from any folder
    // (a relative store path is read relative to the configuration file's folder).
    let root = std::path::absolute(dir).with_context(|| format!("cannot resolve {d}"))?;
    let root = root.display().to_string();
    let source = DEMO_CONFIG
        .replace("demo-output/", &format!("{}/", root.trim_end_matches('/')))
        .replace(
            "config/examples/cover.png",
            &format!("{}/cover.png", root.trim_end_matches('/')),
        );
    let config_path = dir.join("demo.toml");
    std::fs::write(&config_path, &source)?;
    let config = Config::parse(&source, Path::new("config/demo.toml"), &|_| None)
        .map_err(|e| anyhow!("{e}"))?;
    let app = App::build(config).await.map_err(|e| anyhow!("{e}"))?;
    let ops = app.ops();
    let actor = crate::domain::Actor::local("demo-approver");

    println!("1. Embedded store created at {d}/bulletin.db");
    let record_path = dir.join("records").join(RECORD_FILE);
    std::fs::write(&record_path, RECORD)?;
    let zh_path = dir.join("records").join(RECORD_ZH_FILE);
    std::fs::write(&zh_path, RECORD_ZH)?;
    // One record, two language versions: the English file (primary) and the Chinese.
    let mut id = String::new();
    let mut versions = Vec::new();
    for f in ops.import_records(&actor, &[record_path, zh_path]).await? {
        let r = f.outcome?;
        id = r.id;
        versions = r.versions;
    }
    println!(
        "2. Imported the example session record `{id}` in {} language versions ({}), a draft",
        versions.len(),
        versions.join(", ")
    );

    ops.create_list(&actor, "partners", "Partners, embassies and press")
        .await?;
    let rows = CsvSubscribers::new(SUBSCRIBERS.as_bytes()).map_err(|e| anyhow!(e))?;
    let imported = ops.import_csv(&actor, "partners", rows).await?;
    println!(
        "3. Created list `partners` with {} subscribers ({} invalid rows)",
        imported.counts.added,
        imported.rejected.len()
    );

    ops.approve(&actor, &id).await?;
    println!("4. Approved `{id}` as demo-approver");

    let schedule = app.config.schedules[0].name.clone();
    let fired = ops.fire(&actor, &schedule).await?;
    if fired.already_fired {
        println!("5. Schedule `{schedule}` had already fired");
    } else {
        println!(
            "5. Fired schedule `{schedule}`: {} bulletin(s), {} deliveries queued",
            fired.bulletins.len(),
            fired.deliveries
        );
    }

    let report = app.dispatcher.drain().await?;
    println!(
        "6. Delivered: {} sent, {} retrying, {} failed (readers in Chinese got the Chinese version, the others the English one)",
        report.sent, report.retrying, report.failed
    );
    if let Some(base) = &ops.config().archive.base_url {
        println!(
            "7. Archived: {base}/archive lists it once per language, and {base}/archive/feed.atom is its feed"
        );
        for id in &fired.bulletins {
            for lang in ops.archive_versions(*id).await? {
                println!(
                    "     {base}{}",
                    crate::ops::archive::version_path(*id, &lang)
                );
            }
        }
        println!(
            "   (served by `bulletin serve --config {}/demo.toml` on the public listener)",
            root.trim_end_matches('/')
        );
    }

    let outbox = dir.join("outbox");
    let mut files: Vec<_> = std::fs::read_dir(&outbox)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    println!(
        "\nThe e-mails are in {}/ (one .eml per recipient; open one in a mail client):",
        outbox.display()
    );
    for f in &files {
        println!("  {}", f.display());
    }
    let wechat = dir.join("wechat");
    if wechat.exists() {
        println!(
            "\nThe WeChat article and the API calls it would make are in {}/ (article.html, calls.json)",
            wechat.display()
        );
    }
    println!("\nDelivery ledger:");
    for c in ops.ledger().await? {
        println!("  {} {}: {}", c.channel, c.status, c.count);
    }
    println!(
        "\nLook around with this demo's configuration, e.g.:\n  bulletin --config {} deliveries\n  bulletin --config {} bulletins\n  bulletin --config {} preview {id} --format text",
        config_path.display(),
        config_path.display(),
        config_path.display()
    );
    Ok(())
}
