//! `bulletin notice send`: an urgent notice queued ahead of scheduled bulletins, then its
//! delivery followed with a progress line ([`progress_line`], over the operations'
//! [`Progress`]) until it is over or Ctrl-C detaches.

use super::{ops_err, Ctx, DeliveriesFailed};
use crate::domain::ChannelKind;
use crate::notice::NoticeRequest;
use crate::ops::deliveries::Progress;
use crate::ops::notices::NoticeInput;
use crate::ops::Ops;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct NoticeArgs {
    #[command(subcommand)]
    command: NoticeCommand,
}

#[derive(Subcommand, Debug)]
pub enum NoticeCommand {
    /// Queue a notice to lists by e-mail, then follow its delivery (Ctrl-C detaches).
    Send {
        /// One line, at most 200 characters.
        #[arg(long)]
        title: String,
        /// Markdown body (at most 10,000 characters); `-` reads standard input.
        #[arg(long)]
        body_file: PathBuf,
        /// Lists to send to, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        lists: Vec<String>,
        /// Channels, comma-separated: email (always) and wechat (a text mass send to the
        /// account's followers, within the mass-send quota).
        #[arg(long, value_delimiter = ',', default_value = "email")]
        channels: Vec<String>,
        /// info or urgent (urgent: marked in the subject and the message).
        #[arg(long, default_value = "info")]
        severity: String,
        /// Idempotency key: a second send with the same key returns the first notice.
        #[arg(long)]
        key: Option<String>,
        /// Who triggers it (kept with the notice). Default: $USER.
        #[arg(long)]
        by: Option<String>,
        /// Print the result as JSON (no progress display); exits once queued unless --wait.
        #[arg(long)]
        json: bool,
        /// With --json: wait until delivery is over, then print the result with the final
        /// counts (exit code 3 if any delivery failed).
        #[arg(long, requires = "json", conflicts_with = "no_wait")]
        wait: bool,
        /// Exit once queued, without following delivery.
        #[arg(long)]
        no_wait: bool,
    },
}

impl NoticeArgs {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let NoticeCommand::Send {
            title,
            body_file,
            lists,
            channels,
            severity,
            key,
            by,
            json,
            wait,
            no_wait,
        } = self.command;
        let body = if body_file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
                .context("cannot read the body from standard input")?
        } else {
            std::fs::read_to_string(&body_file)
                .with_context(|| format!("--body-file {}: cannot read", body_file.display()))?
        };
        let actor = ctx.actor(by.as_deref())?;
        let ops = ctx.ops().await?;
        let req = ops
            .check_notice(
                &actor,
                NoticeInput {
                    title: &title,
                    body: &body,
                    severity: &severity,
                    lists: &lists,
                    key: key.as_deref(),
                    channels: &channels,
                },
            )
            .map_err(ops_err)?;
        if json {
            return send_json(&ops, &actor, &req, wait).await;
        }
        if req.channels.contains(&ChannelKind::Wechat) {
            let q = ops.wechat_quota().await.map_err(ops_err)?;
            println!(
                "WeChat mass-send quota: {} of {} used in the last 24 h",
                q.used, q.limit
            );
        }
        let out = ops.send_notice(&actor, &req).await.map_err(ops_err)?;
        if out.created {
            println!(
                "notice {} queued for {} recipient(s), ahead of scheduled bulletins",
                out.id, out.deliveries
            );
        } else {
            println!(
                "this notice was already triggered as notice {}: not sending it again",
                out.id
            );
        }
        if no_wait {
            return Ok(());
        }
        match follow(&ops, out.id, true).await? {
            Some(fin) => failures(&fin, out.id),
            None => Ok(()),
        }
    }
}

/// `notice send --json`: the result once queued, or with `--wait` once delivery is over
/// (with the final counts).
async fn send_json(
    ops: &Ops,
    actor: &crate::domain::Actor,
    req: &NoticeRequest,
    wait: bool,
) -> anyhow::Result<()> {
    let out = ops.send_notice(actor, req).await.map_err(ops_err)?;
    if !wait {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let Some(fin) = follow(ops, out.id, false).await? else {
        return Ok(());
    };
    let mut v = serde_json::to_value(out)?;
    v["final"] = serde_json::to_value(fin)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    failures(&fin, out.id)
}

/// A followed delivery that is over: an error when rows failed (`main` exits with
/// [`super::EXIT_DELIVERIES_FAILED`]).
fn failures(p: &Progress, id: i64) -> anyhow::Result<()> {
    if p.failed > 0 {
        return Err(DeliveriesFailed {
            bulletin: id,
            failed: p.failed,
        }
        .into());
    }
    Ok(())
}

/// `h:mm:ss` or `m:ss`.
fn clock_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The progress line of `notice send`: at most 80 columns; done of total, what failed,
/// what is left, retrying and held apart (with the next retry time), the rate (rounded),
/// the elapsed time and an ETA. Less important parts are dropped to fit.
pub fn progress_line(
    p: &Progress,
    elapsed: std::time::Duration,
    next_retry: Option<DateTime<Utc>>,
) -> String {
    const WIDTH: usize = 80;
    let secs = elapsed.as_secs_f64();
    let rate = if secs >= 1.0 {
        p.done() as f64 / secs
    } else {
        0.0
    };
    let rate_text = if rate >= 10.0 {
        format!("{rate:.0}/s")
    } else {
        format!("{rate:.1}/s")
    };
    let eta = if p.over() {
        "ETA 0:00".to_string()
    } else if rate > 0.0 {
        let left = (p.remaining + p.retrying) as f64 / rate;
        let eta = clock_duration(std::time::Duration::from_secs_f64(left.min(359_999.0)));
        match next_retry {
            // The rows waiting for a retry cannot finish before it.
            Some(t) if p.remaining == 0 => format!("ETA after {}", t.format("%H:%M:%S")),
            _ => format!("ETA {eta}"),
        }
    } else {
        "ETA --".to_string()
    };
    // (priority, text): the lowest priority goes first when the line is too long.
    let mut parts: Vec<(u8, String)> = vec![(9, format!("{}/{} done", p.done(), p.total))];
    if p.failed > 0 {
        parts.push((8, format!("failed {}", p.failed)));
    }
    parts.push((7, format!("left {}", p.remaining)));
    if p.retrying > 0 {
        let next = next_retry
            .map(|t| format!(" (next {})", t.format("%H:%M:%S")))
            .unwrap_or_default();
        parts.push((6, format!("retrying {}{next}", p.retrying)));
    }
    if p.held > 0 {
        parts.push((6, format!("held {}", p.held)));
    }
    parts.push((4, rate_text));
    parts.push((3, clock_duration(elapsed)));
    parts.push((5, eta));
    let join = |parts: &[(u8, String)]| {
        parts
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join(" · ")
    };
    let mut line = join(&parts);
    while line.chars().count() > WIDTH && parts.len() > 1 {
        let (i, _) = parts
            .iter()
            .enumerate()
            .min_by_key(|(i, (prio, _))| (*prio, std::cmp::Reverse(*i)))
            .expect("parts");
        parts.remove(i);
        line = join(&parts);
    }
    line.chars().take(WIDTH).collect()
}

/// Follows a notice's delivery until nothing is left for the daemon to do (held rows
/// wait for an operator), showing a progress line when `show`; `None` on Ctrl-C.
async fn follow(ops: &Ops, id: i64, show: bool) -> anyhow::Result<Option<Progress>> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = if show {
        ProgressBar::new(0)
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    };
    bar.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
    if show {
        eprintln!("the daemon (`bulletin serve`) sends it; Ctrl-C stops watching, not sending");
    }
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        let (p, next_retry) = ops.progress(id).await.map_err(ops_err)?;
        bar.set_message(progress_line(&p, started.elapsed(), next_retry));
        if p.over() {
            bar.finish_and_clear();
            if show {
                print_summary(id, &p);
            }
            return Ok(Some(p));
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon();
                println!("stopped watching; the daemon keeps sending (`bulletin bulletins`)");
                return Ok(None);
            }
        }
    }
}

/// The lines after a followed delivery is over: the counts, and what needs an operator.
fn print_summary(id: i64, p: &Progress) {
    println!(
        "notice {id}: sent {}, failed {}, suppressed {}",
        p.sent, p.failed, p.suppressed
    );
    if p.unconfirmed > 0 {
        println!(
            "{} unconfirmed (no final reply: may have been delivered); see \
             `bulletin deliveries --bulletin {id} --status unconfirmed`",
            p.unconfirmed
        );
    }
    if p.held > 0 {
        println!(
            "{} held after an expired lease (may have been delivered): decide with \
             `bulletin retry --held --bulletin {id}`",
            p.held
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    #[test]
    fn the_progress_line_fits_80_columns_and_keeps_retrying_and_held_apart() {
        let p = Progress {
            total: 40,
            sent: 20,
            failed: 2,
            retrying: 3,
            held: 1,
            remaining: 14,
            ..Default::default()
        };
        let next = Utc.with_ymd_and_hms(2026, 12, 1, 14, 3, 5).unwrap();
        let line = progress_line(&p, Duration::from_secs(7), Some(next));
        // Too long for 80 columns with everything: the elapsed time and the rate go
        // first (the typical line, below, has them).
        assert_eq!(
            line,
            "22/40 done · failed 2 · left 14 · retrying 3 (next 14:03:05) · held 1 · ETA 0:05"
        );
        assert!(line.chars().count() <= 80, "{line}");
        for want in [
            "22/40 done",
            "failed 2",
            "left 14",
            "retrying 3 (next 14:03:05)",
            "held 1",
        ] {
            assert!(line.contains(want), "`{want}` missing: {line}");
        }

        // Rounded rate, elapsed and ETA when there is room.
        let p = Progress {
            total: 1000,
            sent: 250,
            remaining: 750,
            ..Default::default()
        };
        let line = progress_line(&p, Duration::from_secs(100), None);
        assert_eq!(line, "250/1000 done · left 750 · 2.5/s · 1:40 · ETA 5:00");
        let p = Progress {
            total: 100_000,
            sent: 50_000,
            remaining: 50_000,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p, Duration::from_secs(4000), None),
            "50000/100000 done · left 50000 · 12/s · 1:06:40 · ETA 1:06:40"
        );

        // Huge numbers: still 80 columns, the least useful parts dropped first.
        let p = Progress {
            total: 9_999_999,
            sent: 1_234_567,
            failed: 1_234_567,
            retrying: 1_234_567,
            held: 1_234_567,
            remaining: 5_061_731,
            ..Default::default()
        };
        let line = progress_line(&p, Duration::from_secs(36_000), Some(next));
        assert!(line.chars().count() <= 80, "{line}");
        assert!(
            line.starts_with("2469134/9999999 done · failed 1234567 · left 5061731"),
            "{line}"
        );

        // Nothing sent yet: no rate, no ETA guess.
        let p = Progress {
            total: 5,
            remaining: 5,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&p, Duration::from_millis(300), None),
            "0/5 done · left 5 · 0.0/s · 0:00 · ETA --"
        );
    }

    #[test]
    fn held_rows_do_not_keep_the_follow_waiting_and_failures_set_the_exit_code() {
        let p = Progress {
            total: 3,
            sent: 1,
            failed: 1,
            held: 1,
            ..Default::default()
        };
        assert!(p.over());
        let e = failures(&p, 7).unwrap_err();
        assert!(e.downcast_ref::<DeliveriesFailed>().is_some());
        assert!(failures(
            &Progress {
                total: 1,
                sent: 1,
                ..Default::default()
            },
            7
        )
        .is_ok());
        assert!(!Progress {
            total: 1,
            retrying: 1,
            ..Default::default()
        }
        .over());
    }
}
