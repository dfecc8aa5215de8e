//! `bulletin preview`: a record's bulletin rendered as it will be sent (e-mail HTML or
//! text, or the WeChat article).

use super::Ctx;
use crate::app::App;
use crate::domain::ChannelKind;
use crate::store::StoredRecord;
use anyhow::{anyhow, Context};
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PreviewArgs {
    /// The record's id.
    id: String,
    /// The e-mail's HTML part or its plain-text part (with the subject).
    #[arg(long, value_enum, default_value = "html")]
    format: PreviewFormat,
    /// `wechat`: the article HTML as it will be uploaded (images still as cid: references).
    #[arg(long, default_value = "email")]
    channel: String,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreviewFormat {
    Html,
    Text,
}

impl PreviewArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let app = ctx.app().await?;
        let id = &self.id;
        let r = app
            .store
            .record(id)
            .await?
            .ok_or_else(|| anyhow!("no record `{id}`"))?;
        let widths = vec![app
            .store
            .record_images(id)
            .await?
            .iter()
            .map(|i| i.width)
            .collect::<Vec<_>>()];
        let rendered = crate::render::render_bulletin(
            std::slice::from_ref(&r.record),
            &widths,
            &app.config.publisher,
            &app.config.default_language,
        )?;
        let preview_url = format!("{}/unsubscribe/PREVIEW", app.config.unsubscribe.base_url);
        let channel = self
            .channel
            .parse::<ChannelKind>()
            .map_err(|e| anyhow!("--channel: {e}"))?;
        let body = match (channel, self.format) {
            (ChannelKind::Wechat, _) => wechat_article(&app, &r)?,
            (ChannelKind::Email, format) => match format {
                PreviewFormat::Html => crate::render::personalise(&rendered.html, &preview_url),
                PreviewFormat::Text => format!(
                    "Subject: {}\n\n{}",
                    rendered.subject,
                    crate::render::personalise(&rendered.text, &preview_url)
                ),
            },
        };
        match &self.out {
            Some(path) => {
                std::fs::write(path, body)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => print!("{body}"),
        }
        Ok(())
    }
}

/// The WeChat article as it will be uploaded, its title, author and digest in a comment
/// first; its size against WeChat's limit goes to standard error.
fn wechat_article(app: &App, r: &StoredRecord) -> anyhow::Result<String> {
    let author = app.config.wechat.as_ref().map_or("", |w| w.author.as_str());
    let a = crate::render::render_wechat_article(
        std::slice::from_ref(&r.record),
        &app.config.publisher,
        &app.config.default_language,
        author,
    )?;
    eprintln!(
        "article: {} of {} characters",
        crate::render::thousands(crate::render::wechat_content_size(&a.html)),
        crate::render::thousands(crate::render::WECHAT_CONTENT_MAX)
    );
    Ok(format!(
        "<!-- title: {} | author: {} | digest: {} -->\n{}\n",
        a.title, a.author, a.digest, a.html
    ))
}
