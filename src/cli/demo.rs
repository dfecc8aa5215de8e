//! `bulletin demo`: the command line of the demo (the demo itself is [`crate::demo`]).

use super::Ctx;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's store and outbox (emptied first).
    #[arg(long, default_value = "demo-output")]
    dir: PathBuf,
}

impl DemoArgs {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        crate::demo::run(&self.dir).await
    }
}
