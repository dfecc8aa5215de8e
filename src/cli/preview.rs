//! `bulletin preview`: a record's bulletin rendered as it will be sent (e-mail HTML or
//! text, or the WeChat article).

use super::{ops_error, Ctx};
use crate::domain::ChannelKind;
use crate::ops::records::PreviewInput;
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
    /// The language version to show (its tag, e.g. `th`); default: the primary (for
    /// `--channel wechat`, the version the account publishes).
    #[arg(long)]
    language: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PreviewFormat {
    Html,
    Text,
}

impl From<PreviewFormat> for crate::ops::records::PreviewFormat {
    fn from(f: PreviewFormat) -> Self {
        match f {
            PreviewFormat::Html => Self::Html,
            PreviewFormat::Text => Self::Text,
        }
    }
}

impl PreviewArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let ops = ctx.ops().await?;
        let channel = self
            .channel
            .parse::<ChannelKind>()
            .map_err(|e| anyhow!("--channel: {e}"))?;
        let preview = ops
            .preview(PreviewInput {
                id: &self.id,
                channel,
                format: self.format.into(),
                language: self.language.as_deref(),
            })
            .await
            .map_err(|e| ops_error(e, &["id"]))?;
        // The WeChat article's size against WeChat's limit goes to standard error.
        if let Some(s) = &preview.wechat_size {
            eprintln!(
                "article: {} of {} characters",
                crate::render::thousands(s.size),
                crate::render::thousands(s.max)
            );
        }
        match &self.out {
            Some(path) => {
                std::fs::write(path, preview.body)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            None => print!("{}", preview.body),
        }
        Ok(())
    }
}
