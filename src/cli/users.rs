//! `bulletin users`: add users with a role, list them, disable or enable one, set a
//! password, issue a personal API token (printed once). Passwords come from the terminal
//! (not echoed, asked twice) or from `--password-file` (`-`: standard input).

use super::{fmt_time, ops_error, table, Ctx};
use crate::ops::users::AddUserInput;
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use secrecy::{ExposeSecret, SecretString};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Add a user with a role and a password.
    Add {
        name: String,
        /// viewer, editor, approver, operator or admin.
        #[arg(long)]
        role: String,
        /// Read the password from this file's first line (`-`: standard input) instead
        /// of asking for it.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Every user with role and state.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their sessions end, their password and token stop working.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set a user's password (their sessions end).
    Password {
        name: String,
        /// Read the password from this file's first line (`-`: standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Issue a personal API token for a user (replacing the earlier one); printed once.
    Token { name: String },
}

/// The password: the file's first line (without its line end), else asked twice on the
/// terminal without echo.
fn read_password(file: Option<&Path>) -> anyhow::Result<SecretString> {
    let first_line = |text: &str| SecretString::from(text.lines().next().unwrap_or("").to_string());
    match file {
        Some(p) if p.as_os_str() == "-" => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            Ok(first_line(&line))
        }
        Some(p) => {
            let bytes = crate::files::read_regular_file(p, 4096)
                .map_err(|e| anyhow!("--password-file {}: {e}", p.display()))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("--password-file {}: not UTF-8", p.display()))?;
            Ok(first_line(&text))
        }
        None => {
            let a = rpassword::prompt_password("Password: ")
                .context("cannot read a password from the terminal (use --password-file)")?;
            let b = rpassword::prompt_password("Again: ")
                .context("cannot read a password from the terminal (use --password-file)")?;
            if a != b {
                bail!("the two passwords differ");
            }
            Ok(SecretString::from(a))
        }
    }
}

impl UsersArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let actor = ctx.actor(None)?;
        let err = |e| ops_error(e, &["name"]);
        match self.command {
            UsersCommand::Add {
                name,
                role,
                password_file,
            } => {
                let password = read_password(password_file.as_deref())?;
                let ops = ctx.ops().await?;
                let u = ops
                    .add_user(
                        &actor,
                        AddUserInput {
                            name: &name,
                            role: &role,
                            password: &password,
                        },
                    )
                    .await
                    .map_err(err)?;
                println!("user `{}` added as {}", u.name, u.role);
            }
            UsersCommand::List { json } => {
                let users = ctx.ops().await?.users().await.map_err(err)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&users)?);
                } else {
                    let mut t = table(&["name", "role", "token", "disabled", "created"]);
                    for u in &users {
                        t.add_row(vec![
                            u.name.clone(),
                            u.role.to_string(),
                            if u.has_token { "yes" } else { "" }.to_string(),
                            fmt_time(u.disabled_at),
                            fmt_time(Some(u.created_at)),
                        ]);
                    }
                    println!("{t}");
                }
            }
            UsersCommand::Disable { name } => {
                let ops = ctx.ops().await?;
                ops.set_user_disabled(&actor, &name, true)
                    .await
                    .map_err(err)?;
                println!("user `{name}` disabled; their sessions ended");
            }
            UsersCommand::Enable { name } => {
                let ops = ctx.ops().await?;
                ops.set_user_disabled(&actor, &name, false)
                    .await
                    .map_err(err)?;
                println!("user `{name}` enabled");
            }
            UsersCommand::Password {
                name,
                password_file,
            } => {
                let ops = ctx.ops().await?;
                // The user first: no password is asked for a mistyped name.
                ops.user(&name).await.map_err(err)?;
                let password = read_password(password_file.as_deref())?;
                ops.set_password(&actor, &name, &password)
                    .await
                    .map_err(err)?;
                println!("password of `{name}` changed; their sessions ended");
            }
            UsersCommand::Token { name } => {
                let ops = ctx.ops().await?;
                let t = ops.issue_token(&actor, &name).await.map_err(err)?;
                eprintln!(
                    "personal API token of `{name}` (shown once; any earlier one no longer works):"
                );
                println!("{}", t.token.expose_secret());
            }
        }
        Ok(())
    }
}
