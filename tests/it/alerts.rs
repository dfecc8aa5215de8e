//! The alert rules (deploy/prometheus-alerts.yml) tested by Prometheus's own promtool
//! against deploy/prometheus-alerts.test.yml, every rule labelled with a severity, and a
//! fresh daemon's /metrics carrying every series the rules read, at zero, so `increase()`
//! sees the first event after a restart.

use crate::harness::*;
use std::path::PathBuf;
use std::process::Command;

fn promtool() -> PathBuf {
    for p in ["/usr/bin/promtool", "/usr/local/bin/promtool"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "promtool is not installed, so the alert rules cannot be tested. \
         Run `tests/run` (it installs Debian's `prometheus` package, which ships promtool) \
         or `apt-get install --no-install-recommends prometheus`."
    );
}

fn run(args: &[&str]) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo_path("deploy"))
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{said}");
    said
}

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let said = run(&["check", "rules", "prometheus-alerts.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
    let said = run(&["test", "rules", "prometheus-alerts.test.yml"]);
    assert!(said.contains("SUCCESS"), "{said}");
}

/// The rules as (alert name, its text up to the next rule).
fn rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path("deploy/prometheus-alerts.yml")).unwrap();
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert:") {
            out.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

#[test]
fn every_alert_rule_has_a_severity() {
    let rules = rules();
    assert!(rules.len() >= 10, "{rules:?}");
    for (name, body) in &rules {
        let severity = body
            .lines()
            .find_map(|l| l.trim().strip_prefix("severity:"))
            .map(str::trim);
        assert!(
            matches!(severity, Some("critical" | "warning" | "info")),
            "{name}: severity {severity:?}"
        );
    }
}

#[tokio::test]
async fn a_fresh_daemon_exports_every_series_the_rules_read_at_zero() {
    let t = spawn_app(Options::default()).await;
    let http = t.start_http().await;
    let m = http
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "bulletin_deliveries_total{channel=\"email\",outcome=\"failed\"} 0",
        "bulletin_deliveries_total{channel=\"email\",outcome=\"sent\"} 0",
        "bulletin_deliveries_total{channel=\"wechat\",outcome=\"failed\"} 0",
        "bulletin_deliveries_total{channel=\"wechat\",outcome=\"retrying\"} 0",
        "bulletin_ambiguous_resends_total{channel=\"email\"} 0",
        "bulletin_ambiguous_resends_total{channel=\"wechat\"} 0",
        "bulletin_channel_pauses_total{channel=\"email\"} 0",
        "bulletin_channel_pauses_total{channel=\"wechat\"} 0",
        "bulletin_delivery_retries_total{channel=\"email\"} 0",
        "bulletin_send_duration_seconds_count{channel=\"email\"} 0",
        "bulletin_wechat_errcodes_total{errcode=\"45009\"} 0",
        "bulletin_wechat_errcodes_total{errcode=\"45028\"} 0",
        "bulletin_wechat_errcodes_total{errcode=\"40164\"} 0",
        "bulletin_scheduler_firings_total{schedule=\"weekday-morning\",trigger=\"cron\"} 0",
        "bulletin_scheduler_firings_total{schedule=\"weekday-morning\",trigger=\"catch-up\"} 0",
        "bulletin_error_storms_total 0",
        "bulletin_store_ready 1",
        "bulletin_ledger_rows{channel=\"email\",status=\"queued\"} 0",
    ] {
        assert!(m.lines().any(|l| l == line), "missing `{line}` in:\n{m}");
    }
    // Every bulletin_* name an alert reads is exported from the start.
    let text = std::fs::read_to_string(repo_path("deploy/prometheus-alerts.yml")).unwrap();
    let mut names: Vec<&str> = text
        .match_indices("bulletin_")
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| n.len() > "bulletin_".len())
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        assert!(
            m.lines()
                .any(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' '])),
            "the rules read `{name}`, which a fresh daemon does not export:\n{m}"
        );
    }
}

#[tokio::test]
async fn metrics_method_counts_ambiguous_resends() {
    let t = spawn_app(Options::default()).await;
    t.app
        .metrics
        .ambiguous_resend(bulletin::domain::ChannelKind::Email);
    let m = t.app.metrics.render(t.app.store.as_ref()).await.unwrap();
    assert!(
        m.lines()
            .any(|l| l == "bulletin_ambiguous_resends_total{channel=\"email\"} 1"),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l == "bulletin_ambiguous_resends_total{channel=\"wechat\"} 0"),
        "{m}"
    );
}
