//! `bulletin check-config`: loads the configuration, prints its warnings and a one-line
//! summary (and the DKIM record to publish, when signing is configured).

use super::Ctx;
use crate::config::EmailTransport;

#[derive(clap::Args, Debug)]
pub struct CheckConfigArgs {}

impl CheckConfigArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = ctx.load_config()?;
        for w in c.warnings() {
            eprintln!("warning: {w}");
        }
        println!(
            "{}: ok ({} schedule(s), store {}, e-mail via {}, admin API on {} ({}), unsubscribe on {})",
            ctx.config.display(),
            c.schedules.len(),
            crate::config::redact_url(&c.store_url),
            match &c.email.transport {
                EmailTransport::Smtp(s) => format!("SMTP {}:{}", s.host, s.port),
                EmailTransport::Outbox(d) => format!("outbox {}", d.display()),
            },
            c.admin.bind,
            if c.admin.token.is_some() {
                "token set".to_string()
            } else {
                format!(
                    "no token: set {} or admin.token_file, or it answers 503",
                    c.admin.token_env
                )
            },
            c.public.bind,
        );
        match (&c.archive.base_url, c.archive.enabled) {
            (_, false) => println!("archive: off (archive.enabled = false)"),
            (Some(b), true) => println!(
                "archive: {b}/archive, linked from every e-mail (\"View in your browser\", Archived-At){}",
                if c.archive.include_notices {
                    ", notices included"
                } else {
                    ""
                }
            ),
            (None, true) => println!(
                "archive: served on {}/archive, but e-mails carry no link to it (no public URL; see the warning)",
                c.public.bind
            ),
        }
        if let Some(d) = &c.email.dkim {
            println!(
                "DKIM: every message signed by d={} s={} with an {} key ({}); the public key must be published at {}:\n{}",
                d.domain,
                d.selector,
                d.key.describe(),
                d.private_key_file.display(),
                d.dns_name(),
                d.dns_record()
            );
        }
        Ok(())
    }
}
