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
