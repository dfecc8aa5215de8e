//! The store suite: every test is written once against `Arc<dyn Store>` (opened from a
//! URL) and runs twice, on SQLite (`<name>::sqlite`) and on PostgreSQL (`<name>::postgres`,
//! a fresh database per test on the local server; see `pg`).

use crate::harness::small_record;
use bulletin::bounce::{BounceKind, Evidence};
use bulletin::config::ExpiredLease;
use bulletin::domain::record::parse_record;
use bulletin::domain::subscriber::NewSubscriber;
use bulletin::domain::{ChannelKind, DeliveryStatus, ListName, RecordState, SubscriberStatus};
use bulletin::store::{
    self, ApproveOutcome, BulletinKind, BulletinState, DeliveryFilter, FanOutAccounts,
    FiringTrigger, ImageData, ImportOutcome, NewBulletin, NewRecord, NoticeMeta, Outcome,
    OutcomeKind, PauseOutcome, Store, StoreError, WechatJob, WechatMedia,
};
use bulletin::store::{BounceRules, BounceSource, NewBounce};
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Runs each named test on both engines.
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("s.db").display());
                super::$name(&url).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = crate::pg::fresh().await else { return };
                super::$name(&db.url).await;
            }
        }
    )*};
}

both_engines!(
    records_import_approve_and_published_immutability,
    lists_and_subscribers_never_reactivated,
    firings_are_recorded_once,
    records_to_publish_and_bulletins_once_per_schedule,
    fan_out_is_idempotent_and_adds_accounts,
    claims_leases_and_expired_leases,
    outcomes_requeue_and_finishing,
    pause_and_resume,
    notices_dedupe,
    wechat_jobs_and_media,
    unsubscribe_and_suppression,
    ledger_filters_and_counts,
    settings_and_readiness,
    concurrent_claims_never_overlap,
    lost_replies_bounces_and_mass_send_counts,
    urgent_rows_are_found_and_claimed_alone,
    a_late_outcome_from_a_lost_lease_changes_nothing,
    claimed_rows_show_their_claimer,
);

async fn claimed_rows_show_their_claimer(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["a@x.org", "b@x.org"]).await;
    let all = DeliveryFilter::default();
    let rows = s.deliveries(&all).await.unwrap();
    assert!(rows.iter().all(|r| r.claimed_by.is_none()), "{rows:?}");
    let me = s.claimer().current();
    let c = s
        .claim_due(t0(), 1, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .remove(0);
    let row = s.delivery(c.id).await.unwrap().unwrap();
    assert_eq!(row.claimed_by.as_deref(), Some(me.as_str()));
    let listed = s.deliveries(&all).await.unwrap();
    let by: Vec<_> = listed.iter().map(|r| r.claimed_by.clone()).collect();
    assert_eq!(
        by.iter().filter(|b| b.as_deref() == Some(&me)).count(),
        1,
        "{by:?}"
    );
    // Taken over after the lease expired: the row names the new claimer.
    s.claimer().next_generation();
    let later = t0() + Span::seconds(LEASE.as_secs() as i64 + 1);
    s.claim_due(later, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let row = s.delivery(c.id).await.unwrap().unwrap();
    assert_eq!(row.claimed_by, Some(s.claimer().current()));
    assert_ne!(row.claimed_by.as_deref(), Some(me.as_str()));
}

async fn a_late_outcome_from_a_lost_lease_changes_nothing(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["a@x.org"]).await;
    // The first claim's lease expires (its process stalled); another claim takes the row.
    let first = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .remove(0);
    let later = t0() + Span::seconds(LEASE.as_secs() as i64 + 1);
    s.claimer().next_generation(); // another claimer
    let second = s
        .claim_due(later, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(first.id, second.id);
    assert!(second.ambiguous && second.lease_until > first.lease_until);

    // The stalled process wakes and records a failure under its old lease: the row
    // stays with the new owner, though the attempt is kept in the history.
    let mut late = outcome(first.id, OutcomeKind::Failed, later);
    late.code = Some(550);
    late.lease_until = Some(first.lease_until);
    s.record_outcomes(&[late]).await.unwrap();
    let row = |s: Arc<dyn Store>| async move {
        s.deliveries(&DeliveryFilter::default())
            .await
            .unwrap()
            .remove(0)
    };
    assert_eq!(row(s.clone()).await.status, DeliveryStatus::Sending);
    assert_eq!(s.attempts(&[first.id]).await.unwrap().len(), 1);

    // The new owner's outcome is written.
    let mut current = outcome(second.id, OutcomeKind::Sent, later);
    current.lease_until = Some(second.lease_until);
    s.record_outcomes(&[current]).await.unwrap();
    let r = row(s.clone()).await;
    assert_eq!((r.status.as_str(), r.ambiguous), ("sent", true));
    assert_eq!(s.attempts(&[first.id]).await.unwrap().len(), 2);
}

async fn urgent_rows_are_found_and_claimed_alone(url: &str) {
    let s = open(url).await;
    let routine = sending_bulletin(&s, "routine", &["a@x.org", "b@x.org", "c@x.org"]).await;
    assert!(!s.urgent_due(t0(), 100).await.unwrap());
    assert!(s
        .claim_urgent(t0(), 10, LEASE, 100)
        .await
        .unwrap()
        .is_empty());

    list_with(&s, "duty", &["duty@x.org"]).await;
    let mut b = bulletin(None, &["duty"], &[]);
    b.kind = BulletinKind::Notice;
    b.priority = 100;
    let notice = s.create_bulletin(&b, t0()).await.unwrap().unwrap();
    s.fan_out(notice, 100, &FanOutAccounts::default(), t0())
        .await
        .unwrap();
    // Not due before its time; due from then on, for priority 100 but not above.
    assert!(!s.urgent_due(t0() - Span::seconds(1), 100).await.unwrap());
    assert!(s.urgent_due(t0(), 100).await.unwrap());
    assert!(!s.urgent_due(t0(), 101).await.unwrap());

    // The urgent claim takes the notice's row only, and only once.
    let got = s.claim_urgent(t0(), 10, LEASE, 100).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|c| (c.bulletin_id, c.recipient.as_str()))
            .collect::<Vec<_>>(),
        vec![(notice, "duty@x.org")]
    );
    assert!(!s.urgent_due(t0(), 100).await.unwrap());
    assert!(s
        .claim_urgent(t0(), 10, LEASE, 100)
        .await
        .unwrap()
        .is_empty());
    // An expired lease is left to the regular claim (of another process), which flags it
    // ambiguous.
    let later = t0() + Span::seconds(LEASE.as_secs() as i64 + 1);
    s.claimer().next_generation();
    assert!(s
        .claim_urgent(later, 10, LEASE, 100)
        .await
        .unwrap()
        .is_empty());
    let regular = s
        .claim_due(later, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(regular.len(), 4);
    assert_eq!(regular[0].bulletin_id, notice);
    assert!(regular[0].ambiguous);
    assert!(regular[1..]
        .iter()
        .all(|c| c.bulletin_id == routine && !c.ambiguous));
}

async fn lost_replies_bounces_and_mass_send_counts(url: &str) {
    let s = open(url).await;
    // Three bulletins to one address; the first outcome is a lost reply (maybe delivered).
    let mut ids = Vec::new();
    for n in 0..3 {
        let b = sending_bulletin(&s, &format!("l{n}"), &["gone@example.org"]).await;
        let row = s
            .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.bulletin_id == b)
            .unwrap();
        ids.push(row.id);
    }
    let mut lost = outcome(
        ids[0],
        OutcomeKind::Retry {
            at: t0() + Span::seconds(60),
        },
        t0(),
    );
    lost.maybe_delivered = true;
    s.record_outcomes(&[lost]).await.unwrap();
    let r = s
        .deliveries(&DeliveryFilter {
            ambiguous_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[0]]);

    // Hard failures in 2 bulletins: not yet bounced; in 3: bounced on every list.
    let hard = |id| {
        let mut o = outcome(id, OutcomeKind::Failed, t0());
        o.code = Some(550);
        o
    };
    s.record_outcomes(&[hard(ids[1]), hard(ids[2])])
        .await
        .unwrap();
    assert_eq!(
        s.note_hard_failure("gone@example.org", 3, t0())
            .await
            .unwrap(),
        0
    );
    s.claim_due(t0() + Span::seconds(61), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    s.record_outcomes(&[hard(ids[0])]).await.unwrap();
    assert_eq!(
        s.note_hard_failure("gone@example.org", 3, t0())
            .await
            .unwrap(),
        3,
        "bounced on the three lists"
    );
    assert_eq!(
        s.note_hard_failure("gone@example.org", 0, t0())
            .await
            .unwrap(),
        0,
        "0 turns it off"
    );

    // Mass sends counted by time.
    assert_eq!(s.wechat_mass_sends_since(t0()).await.unwrap(), 0);
    let job = WechatJob {
        delivery_id: ids[0],
        msg_id: Some("1".into()),
        ..Default::default()
    };
    s.save_wechat_job(&job, t0()).await.unwrap();
    assert_eq!(s.wechat_mass_sends_since(t0()).await.unwrap(), 1);
    assert_eq!(
        s.wechat_mass_sends_since(t0() + Span::seconds(1))
            .await
            .unwrap(),
        0
    );

    // The shared WeChat token: replaced on put, dropped only if it is the one that failed.
    assert_eq!(s.shared_token("wx1").await.unwrap(), None);
    s.put_shared_token("wx1", "tok-a", t0() + Span::hours(1), t0())
        .await
        .unwrap();
    s.put_shared_token("wx1", "tok-b", t0() + Span::hours(2), t0())
        .await
        .unwrap();
    assert_eq!(
        s.shared_token("wx1").await.unwrap(),
        Some(("tok-b".into(), t0() + Span::hours(2)))
    );
    s.drop_shared_token("wx1", "tok-a").await.unwrap();
    assert!(
        s.shared_token("wx1").await.unwrap().is_some(),
        "a stale failure does not drop the new token"
    );
    s.drop_shared_token("wx1", "tok-b").await.unwrap();
    assert_eq!(s.shared_token("wx1").await.unwrap(), None);
}

async fn open(url: &str) -> Arc<dyn Store> {
    store::open(url).await.expect("store opens")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
}

fn new_record(id: &str, title: &str, images: Vec<ImageData>) -> NewRecord {
    let record = parse_record(&small_record(id, title), "r.toml", "en").unwrap();
    let hashes: Vec<String> = images.iter().map(|i| i.sha256.clone()).collect();
    NewRecord {
        content_hash: record.content_hash(&hashes),
        record,
        images,
        source_file: format!("{id}.toml"),
        preferred_primary: "en".into(),
    }
}

fn image(bytes: &[u8]) -> ImageData {
    ImageData {
        file: "a.png".into(),
        content_type: "image/png".into(),
        sha256: format!("{:x}", bytes.len()),
        width: 3,
        height: 4,
        bytes: bytes.to_vec(),
    }
}

fn bulletin(schedule: Option<&str>, lists: &[&str], records: &[&str]) -> NewBulletin {
    NewBulletin {
        kind: BulletinKind::Record,
        schedule: schedule.map(str::to_string),
        fire_time: Some(t0()),
        language: "en".into(),
        subject: "Subject".into(),
        html: "<p>hi</p>".into(),
        text: "hi".into(),
        lists: lists.iter().map(|l| ListName::parse(l).unwrap()).collect(),
        channels: vec![ChannelKind::Email],
        priority: 0,
        record_ids: records.iter().map(|r| r.to_string()).collect(),
        wechat: None,
        versions: vec![],
    }
}

async fn list_with(s: &Arc<dyn Store>, name: &str, emails: &[&str]) -> i64 {
    let ln = ListName::parse(name).unwrap();
    s.create_list(&ln, "d", t0()).await.unwrap();
    let id = s.list(&ln).await.unwrap().unwrap().id;
    let subs: Vec<_> = emails
        .iter()
        .map(|e| NewSubscriber::parse(e, None, None).unwrap())
        .collect();
    s.upsert_subscribers(id, &subs, t0()).await.unwrap();
    id
}

/// A bulletin (no schedule) to a list of `emails`, fanned out; returns its id.
async fn sending_bulletin(s: &Arc<dyn Store>, list: &str, emails: &[&str]) -> i64 {
    list_with(s, list, emails).await;
    let id = s
        .create_bulletin(&bulletin(None, &[list], &[]), t0())
        .await
        .unwrap()
        .unwrap();
    s.fan_out(id, 100, &FanOutAccounts::default(), t0())
        .await
        .unwrap();
    id
}

fn outcome(id: i64, result: OutcomeKind, at: DateTime<Utc>) -> Outcome {
    Outcome {
        delivery_id: id,
        started_at: at,
        finished_at: at,
        result,
        code: Some(250),
        reply: "reply".into(),
        message_id: Some(format!("<{id}@t>")),
        maybe_delivered: false,
        lease_until: None,
    }
}

const LEASE: Duration = Duration::from_secs(60);

async fn records_import_approve_and_published_immutability(url: &str) {
    let s = open(url).await;
    let r = new_record("r1", "First", vec![image(b"\x89PNG-bytes")]);
    assert_eq!(
        s.import_record(&r, t0()).await.unwrap(),
        ImportOutcome::Created
    );
    assert_eq!(
        s.import_record(&r, t0()).await.unwrap(),
        ImportOutcome::Unchanged
    );
    let imgs = s.record_images("r1").await.unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].bytes, b"\x89PNG-bytes");
    assert_eq!((imgs[0].width, imgs[0].height), (3, 4));
    let r2 = new_record("r1", "First, edited", vec![]);
    assert_eq!(
        s.import_record(&r2, t0()).await.unwrap(),
        ImportOutcome::Updated
    );
    assert!(s.record_images("r1").await.unwrap().is_empty());
    assert_eq!(
        s.approve_record("r1", "ed", t0()).await.unwrap(),
        ApproveOutcome::Approved
    );
    assert_eq!(
        s.approve_record("r1", "ed", t0()).await.unwrap(),
        ApproveOutcome::AlreadyApproved
    );
    let got = s.record("r1").await.unwrap().unwrap();
    assert_eq!(got.state, RecordState::Approved);
    assert_eq!(got.approved_by.as_deref(), Some("ed"));
    assert_eq!(got.approved_at, Some(t0()));
    // Changing an approved record returns it to draft.
    assert_eq!(
        s.import_record(&r, t0()).await.unwrap(),
        ImportOutcome::ReturnedToDraft
    );
    assert_eq!(
        s.record("r1").await.unwrap().unwrap().state,
        RecordState::Draft
    );
    assert!(matches!(
        s.approve_record("nope", "ed", t0()).await,
        Err(StoreError::NotFound(_))
    ));
    s.import_record(&new_record("r2", "Second", vec![]), t0())
        .await
        .unwrap();
    assert_eq!(s.records(None).await.unwrap().len(), 2);
    assert_eq!(s.records(Some(RecordState::Draft)).await.unwrap().len(), 2);
    // Published: the same content is unchanged, other content is refused.
    s.approve_record("r1", "ed", t0()).await.unwrap();
    s.create_bulletin(&bulletin(Some("s"), &["x"], &["r1"]), t0())
        .await
        .unwrap()
        .unwrap();
    let got = s.record("r1").await.unwrap().unwrap();
    assert_eq!(got.state, RecordState::Published);
    assert_eq!(got.published_at, Some(t0()));
    assert_eq!(
        s.import_record(&r, t0()).await.unwrap(),
        ImportOutcome::Unchanged
    );
    let e = s.import_record(&r2, t0()).await.unwrap_err();
    assert!(e.to_string().contains("published"), "{e}");
    assert_eq!(
        s.approve_record("r1", "ed", t0()).await.unwrap(),
        ApproveOutcome::AlreadyApproved
    );
    assert_eq!(
        s.records(Some(RecordState::Published)).await.unwrap().len(),
        1
    );
}

async fn lists_and_subscribers_never_reactivated(url: &str) {
    let s = open(url).await;
    let ln = ListName::parse("partners").unwrap();
    assert!(s.create_list(&ln, "Partners", t0()).await.unwrap());
    assert!(!s.create_list(&ln, "again", t0()).await.unwrap());
    let id = s.list(&ln).await.unwrap().unwrap().id;
    let a = NewSubscriber::parse("a@example.org", Some("A"), None).unwrap();
    let b = NewSubscriber::parse("b@example.org", None, Some("fr")).unwrap();
    let c = s
        .upsert_subscribers(id, &[a.clone(), b], t0())
        .await
        .unwrap();
    assert_eq!((c.added, c.updated, c.unchanged), (2, 0, 0));
    let a2 = NewSubscriber::parse("a@example.org", Some("A. Person"), None).unwrap();
    let c = s
        .upsert_subscribers(id, &[a2, a.clone()], t0())
        .await
        .unwrap();
    assert_eq!((c.added, c.updated, c.unchanged), (0, 2, 0));
    let c = s
        .upsert_subscribers(id, std::slice::from_ref(&a), t0())
        .await
        .unwrap();
    assert_eq!((c.added, c.updated, c.unchanged), (0, 0, 1));
    assert!(s
        .set_subscriber_status(id, "a@example.org", SubscriberStatus::Unsubscribed, t0())
        .await
        .unwrap());
    assert!(!s
        .set_subscriber_status(id, "zz@example.org", SubscriberStatus::Bounced, t0())
        .await
        .unwrap());
    // Importing again never re-activates.
    s.upsert_subscribers(id, &[a], t0()).await.unwrap();
    let page = s.subscribers_page(id, 0, 10).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].email, "a@example.org");
    assert_eq!(page[0].status, SubscriberStatus::Unsubscribed);
    assert_eq!(page[1].language.as_deref(), Some("fr"));
    let next = s.subscribers_page(id, page[0].id, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].email, "b@example.org");
    let sum = s.list(&ln).await.unwrap().unwrap();
    assert_eq!((sum.active, sum.unsubscribed, sum.bounced), (1, 1, 0));
    assert_eq!(sum.description, "Partners");
    assert!(s.remove_subscriber(id, "b@example.org").await.unwrap());
    assert!(!s.remove_subscriber(id, "b@example.org").await.unwrap());
    s.create_list(&ListName::parse("alpha").unwrap(), "", t0())
        .await
        .unwrap();
    let all = s.lists().await.unwrap();
    assert_eq!(
        all.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "partners"]
    );
    assert!(s
        .list(&ListName::parse("none").unwrap())
        .await
        .unwrap()
        .is_none());
}

async fn firings_are_recorded_once(url: &str) {
    let s = open(url).await;
    let at = t0() + Span::hours(9);
    assert!(s
        .record_firing("m", at, FiringTrigger::Cron, t0())
        .await
        .unwrap());
    assert!(!s
        .record_firing("m", at, FiringTrigger::Manual, t0())
        .await
        .unwrap());
    assert!(s
        .record_firing("m", at + Span::days(1), FiringTrigger::Cron, t0())
        .await
        .unwrap());
    assert_eq!(s.last_firing("m").await.unwrap(), Some(at + Span::days(1)));
    assert_eq!(s.last_firing("other").await.unwrap(), None);
    assert_eq!(s.unfinished_firings().await.unwrap().len(), 2);
    s.finish_firing("m", at, 1, t0()).await.unwrap();
    assert_eq!(
        s.unfinished_firings().await.unwrap(),
        vec![("m".to_string(), at + Span::days(1))]
    );
}

async fn records_to_publish_and_bulletins_once_per_schedule(url: &str) {
    let s = open(url).await;
    for (id, at) in [("r1", 2), ("r2", 1), ("r3", 3)] {
        s.import_record(&new_record(id, id, vec![]), t0())
            .await
            .unwrap();
        if id != "r3" {
            s.approve_record(id, "ed", t0() + Span::minutes(at))
                .await
                .unwrap();
        }
    }
    s.record_firing(
        "a",
        t0() + Span::hours(1),
        FiringTrigger::Cron,
        t0() + Span::hours(1),
    )
    .await
    .unwrap();
    let due: Vec<String> = s
        .records_to_publish("a")
        .await
        .unwrap()
        .iter()
        .map(|r| r.record.id.to_string())
        .collect();
    assert_eq!(due, ["r2", "r1"], "oldest approval first; drafts never");
    let b = bulletin(Some("a"), &["x"], &["r2", "r1"]);
    let id = s.create_bulletin(&b, t0()).await.unwrap().unwrap();
    assert_eq!(s.create_bulletin(&b, t0()).await.unwrap(), None);
    assert!(s.records_to_publish("a").await.unwrap().is_empty());
    let stored = s.bulletin(id).await.unwrap().unwrap();
    assert_eq!(stored.record_ids, ["r2", "r1"]);
    assert_eq!(stored.lists, [ListName::parse("x").unwrap()]);
    assert_eq!(stored.channels, [ChannelKind::Email]);
    assert_eq!(stored.state, BulletinState::FanningOut);
    assert_eq!(stored.schedule.as_deref(), Some("a"));
    assert_eq!(s.bulletins_fanning_out().await.unwrap(), vec![id]);
    // A schedule added later does not resend the archive; it takes what is approved after.
    s.record_firing(
        "b",
        t0() + Span::hours(2),
        FiringTrigger::Cron,
        t0() + Span::hours(2),
    )
    .await
    .unwrap();
    assert!(s.records_to_publish("b").await.unwrap().is_empty());
    s.approve_record("r3", "ed", t0() + Span::hours(3))
        .await
        .unwrap();
    let due_b: Vec<String> = s
        .records_to_publish("b")
        .await
        .unwrap()
        .iter()
        .map(|r| r.record.id.to_string())
        .collect();
    assert_eq!(due_b, ["r3"]);
    assert_eq!(s.bulletins(10).await.unwrap().len(), 1);
}

async fn fan_out_is_idempotent_and_adds_accounts(url: &str) {
    let s = open(url).await;
    let list = list_with(&s, "p", &["a@x.org", "b@x.org", "c@x.org", "d@x.org"]).await;
    s.set_subscriber_status(list, "d@x.org", SubscriberStatus::Bounced, t0())
        .await
        .unwrap();
    let mut b = bulletin(None, &["p"], &[]);
    b.channels = vec![ChannelKind::Email, ChannelKind::Wechat];
    b.wechat = Some(bulletin::render::WechatArticle {
        title: "T".into(),
        author: "A".into(),
        digest: "D".into(),
        html: "<p>x</p>".into(),
    });
    let id = s.create_bulletin(&b, t0()).await.unwrap().unwrap();
    let accounts = FanOutAccounts::new(Some("wx-app"));
    // Pages of 2: every active subscriber, once, plus the account.
    assert_eq!(s.fan_out(id, 2, &accounts, t0()).await.unwrap(), 4);
    assert_eq!(s.fan_out(id, 2, &accounts, t0()).await.unwrap(), 0);
    assert!(s.bulletins_fanning_out().await.unwrap().is_empty());
    let stored = s.bulletin(id).await.unwrap().unwrap();
    assert_eq!(stored.state, BulletinState::Sending);
    assert_eq!(stored.wechat.unwrap().title, "T");
    let counts = s.delivery_counts(Some(id)).await.unwrap();
    let n = |ch: ChannelKind| {
        counts
            .iter()
            .filter(|c| c.channel == ch)
            .map(|c| c.count)
            .sum::<i64>()
    };
    assert_eq!((n(ChannelKind::Email), n(ChannelKind::Wechat)), (3, 1));
    let mut missing = bulletin(None, &["nolist"], &[]);
    missing.record_ids.clear();
    let mid = s.create_bulletin(&missing, t0()).await.unwrap().unwrap();
    let e = s
        .fan_out(mid, 10, &FanOutAccounts::default(), t0())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nolist"), "{e}");
}

async fn claims_leases_and_expired_leases(url: &str) {
    let s = open(url).await;
    let b = sending_bulletin(&s, "p", &["a@x.org", "b@x.org", "c@x.org"]).await;
    assert_eq!(s.next_due().await.unwrap(), Some(t0()));
    let first = s
        .claim_due(t0(), 2, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|c| !c.ambiguous && c.attempts == 0));
    assert!(first.iter().all(|c| c.bulletin_id == b));
    let second = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert!(s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .is_empty());
    let sending = DeliveryFilter {
        status: Some(DeliveryStatus::Sending),
        ..Default::default()
    };
    assert_eq!(s.count_deliveries(&sending).await.unwrap(), 3);
    // The lease is the next thing due.
    let lease_end = t0() + Span::seconds(60);
    assert_eq!(s.next_due().await.unwrap(), Some(lease_end));
    // Not yet expired: nothing to take.
    assert!(s
        .claim_due(lease_end, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .is_empty());
    // Expired, but held by this claimer itself (a send that outlasted its lease): a
    // claim never takes back rows its own process holds.
    let later = lease_end + Span::seconds(1);
    assert!(s
        .claim_due(later, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .claim_due(later, 10, LEASE, ExpiredLease::Hold)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.count_deliveries(&sending).await.unwrap(), 3);
    // Another process's claim (here the next claim generation, as after a failed pass)
    // takes them. Expired, Resend: taken again, marked ambiguous, naming the old holder.
    let holder = s.claimer().current();
    s.claimer().next_generation();
    let again = s
        .claim_due(later, 1, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].ambiguous);
    assert_eq!(again[0].taken_from.as_deref(), Some(holder.as_str()));
    // Expired, Hold: the other two are held for an operator, not sent.
    assert!(s
        .claim_due(later, 10, LEASE, ExpiredLease::Hold)
        .await
        .unwrap()
        .is_empty());
    let held = DeliveryFilter {
        status: Some(DeliveryStatus::Held),
        ambiguous_only: true,
        ..Default::default()
    };
    assert_eq!(s.count_deliveries(&held).await.unwrap(), 2);
    let rows = s.deliveries(&held).await.unwrap();
    assert!(rows[0].last_error.as_deref().unwrap().contains("lease"));
    // Held rows keep the bulletin open.
    assert_eq!(s.finish_bulletins().await.unwrap(), 0);
}

async fn outcomes_requeue_and_finishing(url: &str) {
    let s = open(url).await;
    let emails = ["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"];
    let b = sending_bulletin(&s, "p", &emails).await;
    let claimed = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let by: std::collections::HashMap<String, i64> = claimed
        .iter()
        .map(|c| (c.recipient.clone(), c.id))
        .collect();
    let t = t0() + Span::seconds(5);
    let retry_at = t0() + Span::minutes(10);
    let wait_at = t0() + Span::minutes(5);
    s.record_outcomes(&[
        outcome(by["a@x.org"], OutcomeKind::Sent, t),
        outcome(by["b@x.org"], OutcomeKind::Retry { at: retry_at }, t),
        outcome(by["c@x.org"], OutcomeKind::Wait { at: wait_at }, t),
        outcome(by["d@x.org"], OutcomeKind::Failed, t),
        outcome(by["e@x.org"], OutcomeKind::Suppressed, t),
    ])
    .await
    .unwrap();
    let row = |e: &str| {
        let s = s.clone();
        let id = by[e];
        async move { s.delivery(id).await.unwrap().unwrap() }
    };
    let a = row("a@x.org").await;
    assert_eq!((a.status.as_str(), a.attempts), ("sent", 1));
    assert_eq!(a.sent_at, Some(t));
    assert_eq!(
        a.message_id.as_deref(),
        Some(&*format!("<{}@t>", by["a@x.org"]))
    );
    assert_eq!(a.last_error, None);
    let r = row("b@x.org").await;
    assert_eq!((r.status.as_str(), r.attempts), ("retrying", 1));
    assert_eq!(r.next_attempt_at, Some(retry_at));
    assert_eq!(r.last_error.as_deref(), Some("reply"));
    let w = row("c@x.org").await;
    assert_eq!(
        (w.status.as_str(), w.attempts),
        ("retrying", 0),
        "waiting is not an attempt"
    );
    assert_eq!(row("d@x.org").await.status, DeliveryStatus::Failed);
    let sup = row("e@x.org").await;
    assert_eq!((sup.status.as_str(), sup.attempts), ("suppressed", 0));
    let attempts = s
        .attempts(&by.values().copied().collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(attempts.len(), 4, "suppressed rows have no attempt");
    assert!(attempts.iter().any(|a| a.outcome == "waiting"));
    assert_eq!(s.next_due().await.unwrap(), Some(wait_at));
    // Retry and wait rows come back when due, not before.
    assert!(s
        .claim_due(t0() + Span::minutes(4), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .is_empty());
    let back = s
        .claim_due(t0() + Span::minutes(11), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(
        back.iter()
            .find(|c| c.recipient == "b@x.org")
            .unwrap()
            .attempts,
        1
    );
    assert_eq!(s.finish_bulletins().await.unwrap(), 0);
    let t2 = t0() + Span::minutes(12);
    s.record_outcomes(
        &back
            .iter()
            .map(|c| outcome(c.id, OutcomeKind::Sent, t2))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert_eq!(s.finish_bulletins().await.unwrap(), 1);
    assert_eq!(
        s.bulletin(b).await.unwrap().unwrap().state,
        BulletinState::Done
    );
    // Requeue the failed row: due now, fresh budget, the bulletin sends again.
    let t3 = t0() + Span::hours(1);
    assert_eq!(
        s.requeue(Some(b), None, &[DeliveryStatus::Failed], t3)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.requeue(Some(b), None, &[], t3).await.unwrap(), 0);
    let d = row("d@x.org").await;
    assert_eq!((d.status.as_str(), d.attempts), ("queued", 0));
    assert_eq!(
        s.bulletin(b).await.unwrap().unwrap().state,
        BulletinState::Sending
    );
    assert_eq!(
        s.requeue(None, Some(by["d@x.org"]), &[DeliveryStatus::Failed], t3)
            .await
            .unwrap(),
        0
    );
    let again = s
        .claim_due(t3, 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].recipient, "d@x.org");
    assert_eq!(s.attempts(&[by["d@x.org"]]).await.unwrap().len(), 1);
}

async fn pause_and_resume(url: &str) {
    let s = open(url).await;
    let b = sending_bulletin(&s, "p", &["a@x.org"]).await;
    assert_eq!(
        s.set_bulletin_paused(b, true).await.unwrap(),
        PauseOutcome::Changed
    );
    assert_eq!(
        s.set_bulletin_paused(b, true).await.unwrap(),
        PauseOutcome::Unchanged
    );
    assert!(s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.next_due().await.unwrap(), None);
    assert_eq!(
        s.set_bulletin_paused(b, false).await.unwrap(),
        PauseOutcome::Changed
    );
    let c = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    s.record_outcomes(&[outcome(c[0].id, OutcomeKind::Sent, t0())])
        .await
        .unwrap();
    s.finish_bulletins().await.unwrap();
    assert_eq!(
        s.set_bulletin_paused(b, true).await.unwrap(),
        PauseOutcome::NotApplicable
    );
    assert!(matches!(
        s.set_bulletin_paused(9999, true).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn notices_dedupe(url: &str) {
    let s = open(url).await;
    let mut b = bulletin(None, &["p"], &[]);
    b.kind = BulletinKind::Notice;
    b.priority = 10;
    let meta = |key: Option<&str>, content: &str, since: DateTime<Utc>| NoticeMeta {
        severity: bulletin::domain::Severity::Urgent,
        triggered_by: "ops".into(),
        idempotency_key: key.map(str::to_string),
        content_key: content.into(),
        dedupe_since: since,
        wechat_quota: None,
    };
    let before = t0() - Span::hours(1);
    let (id, created) = s
        .create_notice(&b, &meta(None, "c1", before), t0())
        .await
        .unwrap();
    assert!(created);
    // The same content within the window: the first notice.
    assert_eq!(
        s.create_notice(&b, &meta(None, "c1", before), t0())
            .await
            .unwrap(),
        (id, false)
    );
    // Outside the window: a new one.
    let (id2, created2) = s
        .create_notice(
            &b,
            &meta(None, "c1", t0() + Span::seconds(1)),
            t0() + Span::hours(2),
        )
        .await
        .unwrap();
    assert!(created2 && id2 != id);
    // An idempotency key: one notice per key, ever, whatever the content.
    let (k, created_k) = s
        .create_notice(&b, &meta(Some("key-1"), "c2", before), t0())
        .await
        .unwrap();
    assert!(created_k);
    assert_eq!(
        s.create_notice(
            &b,
            &meta(Some("key-1"), "c3", t0() + Span::days(9)),
            t0() + Span::days(10)
        )
        .await
        .unwrap(),
        (k, false)
    );
    let stored = s.bulletin(k).await.unwrap().unwrap();
    assert_eq!(
        (stored.kind.as_str(), stored.state.as_str()),
        ("notice", "fanning_out")
    );
}

async fn wechat_jobs_and_media(url: &str) {
    let s = open(url).await;
    let mut nb = bulletin(None, &[], &[]);
    nb.channels = vec![ChannelKind::Wechat];
    let b = s.create_bulletin(&nb, t0()).await.unwrap().unwrap();
    s.fan_out(b, 10, &FanOutAccounts::new(Some("wx")), t0())
        .await
        .unwrap();
    let d = s.deliveries(&DeliveryFilter::default()).await.unwrap()[0].id;
    assert_eq!(s.wechat_job(d).await.unwrap(), None);
    let mut job = WechatJob {
        delivery_id: d,
        draft_media_id: Some("draft".into()),
        ..Default::default()
    };
    s.save_wechat_job(&job, t0()).await.unwrap();
    assert_eq!(s.wechat_job(d).await.unwrap().as_ref(), Some(&job));
    job.publish_id = Some("pub".into());
    job.publish_status = Some(1);
    job.first_poll_at = Some(t0());
    job.polls = 3;
    job.step = Some("submit".into());
    job.step_started_at = Some(t0());
    s.save_wechat_job(&job, t0()).await.unwrap();
    assert_eq!(s.wechat_job(d).await.unwrap().as_ref(), Some(&job));
    job.article_id = Some("art".into());
    s.save_wechat_job(&job, t0()).await.unwrap();
    // Another delivery's draft or article is recognised as taken; our own is not.
    assert!(!s.wechat_article_recorded("art", d).await.unwrap());
    assert!(s.wechat_article_recorded("art", d + 1).await.unwrap());
    assert!(!s.wechat_draft_recorded("draft", d).await.unwrap());
    assert!(s.wechat_draft_recorded("draft", d + 1).await.unwrap());
    assert!(!s.wechat_draft_recorded("other", d + 1).await.unwrap());
    assert_eq!(s.wechat_media("wx", "h", "material").await.unwrap(), None);
    let m = WechatMedia {
        media_id: Some("m1".into()),
        url: Some("https://x/1".into()),
    };
    s.save_wechat_media("wx", "h", "material", &m, t0())
        .await
        .unwrap();
    assert_eq!(
        s.wechat_media("wx", "h", "material").await.unwrap(),
        Some(m)
    );
    assert_eq!(s.wechat_media("wx", "h", "uploadimg").await.unwrap(), None);
    let m2 = WechatMedia {
        media_id: None,
        url: Some("https://x/2".into()),
    };
    s.save_wechat_media("wx", "h", "material", &m2, t0())
        .await
        .unwrap();
    assert_eq!(
        s.wechat_media("wx", "h", "material").await.unwrap(),
        Some(m2)
    );
}

async fn unsubscribe_and_suppression(url: &str) {
    let s = open(url).await;
    let list = list_with(&s, "p", &["a@x.org", "b@x.org", "c@x.org"]).await;
    let b = s
        .create_bulletin(&bulletin(None, &["p"], &[]), t0())
        .await
        .unwrap()
        .unwrap();
    s.fan_out(b, 10, &FanOutAccounts::default(), t0())
        .await
        .unwrap();
    let page = s.subscribers_page(list, 0, 10).await.unwrap();
    let (a, bb) = (page[0].id, page[1].id);
    let sub = s.subscription(list, a).await.unwrap().unwrap();
    assert_eq!((sub.list.as_str(), sub.email.as_str()), ("p", "a@x.org"));
    assert_eq!(sub.status, SubscriberStatus::Active);
    let u = s
        .unsubscribe(list, a, "a@x.org", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, SubscriberStatus::Unsubscribed);
    let u = s
        .unsubscribe(list, a, "a@x.org", t0())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.status, SubscriberStatus::Unsubscribed);
    s.set_subscriber_status(list, "b@x.org", SubscriberStatus::Bounced, t0())
        .await
        .unwrap();
    assert_eq!(
        s.unsubscribe(list, bb, "b@x.org", t0())
            .await
            .unwrap()
            .unwrap()
            .status,
        SubscriberStatus::Bounced,
        "a bounced address stays bounced"
    );
    assert!(s
        .unsubscribe(list, 9999, "a@x.org", t0())
        .await
        .unwrap()
        .is_none());
    assert!(s.subscription(list + 1, a).await.unwrap().is_none());
    s.remove_subscriber(list, "c@x.org").await.unwrap();
    // Rows of people who left after fan-out are claimed but marked to be suppressed.
    let claimed = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let why = |e: &str| {
        claimed
            .iter()
            .find(|c| c.recipient == e)
            .unwrap()
            .suppressed_because
            .clone()
            .unwrap()
    };
    assert!(why("a@x.org").contains("unsubscribed"));
    assert!(why("b@x.org").contains("bounced"));
    assert!(why("c@x.org").contains("removed"));
}

async fn ledger_filters_and_counts(url: &str) {
    let s = open(url).await;
    let b1 = sending_bulletin(&s, "p", &["a@x.org", "b@x.org"]).await;
    let b2 = sending_bulletin(&s, "q", &["a@x.org"]).await;
    let claimed = s
        .claim_due(t0(), 1, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let later = t0() + Span::hours(1);
    s.record_outcomes(&[outcome(claimed[0].id, OutcomeKind::Sent, later)])
        .await
        .unwrap();
    let all = s.deliveries(&DeliveryFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let f = |f: DeliveryFilter| {
        let s = s.clone();
        async move {
            let n = s.count_deliveries(&f).await.unwrap();
            assert_eq!(s.deliveries(&f).await.unwrap().len() as i64, n);
            n
        }
    };
    assert_eq!(
        f(DeliveryFilter {
            bulletin: Some(b1),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        f(DeliveryFilter {
            recipient: Some("A@X.ORG".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        f(DeliveryFilter {
            status: Some(DeliveryStatus::Sent),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        f(DeliveryFilter {
            since: Some(later),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        f(DeliveryFilter {
            channel: Some(ChannelKind::Wechat),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        f(DeliveryFilter {
            bulletin: Some(b2),
            channel: Some(ChannelKind::Email),
            status: Some(DeliveryStatus::Queued),
            ..Default::default()
        })
        .await,
        1
    );
    let paged = s
        .deliveries(&DeliveryFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].id, all[1].id);
    let counts = s.delivery_counts(None).await.unwrap();
    let total: i64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 3);
    assert!(counts.iter().any(|c| c.status == DeliveryStatus::Sent
        && c.count == 1
        && c.channel == ChannelKind::Email));
    assert_eq!(
        s.delivery_counts(Some(b2))
            .await
            .unwrap()
            .iter()
            .map(|c| c.count)
            .sum::<i64>(),
        1
    );
    assert!(s.delivery(99999).await.unwrap().is_none());
}

async fn settings_and_readiness(url: &str) {
    let s = open(url).await;
    assert_eq!(s.setting_or_insert("k", "first").await.unwrap(), "first");
    assert_eq!(s.setting_or_insert("k", "second").await.unwrap(), "first");
    s.ready().await.unwrap();
    // Opening again (a second instance, a restart) finds every migration applied.
    let again = open(url).await;
    again.ready().await.unwrap();
    assert_eq!(
        again.setting_or_insert("k", "third").await.unwrap(),
        "first"
    );
}

/// Two store handles (as two daemons) claiming at once never get the same row.
async fn concurrent_claims_never_overlap(url: &str) {
    let s = open(url).await;
    let emails: Vec<String> = (0..300).map(|i| format!("r{i}@x.org")).collect();
    let refs: Vec<&str> = emails.iter().map(String::as_str).collect();
    sending_bulletin(&s, "p", &refs).await;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let h = open(url).await;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = h
                    .claim_due(t0(), 7, LEASE, ExpiredLease::Resend)
                    .await
                    .unwrap();
                if c.is_empty() {
                    break;
                }
                mine.extend(c.into_iter().map(|c| c.id));
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "row {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 300);
}

// Issue 18, item 7 (kept apart from the list above so that it merges cleanly).
both_engines!(
    subscriber_ids_are_never_reused,
    a_reused_id_neither_sends_to_nor_unsubscribes_another_address,
);

/// Add A, remove A, add B: B never gets A's id (SQLite without AUTOINCREMENT gave a new
/// row max(id) + 1, so removing the newest subscriber handed their id on).
async fn subscriber_ids_are_never_reused(url: &str) {
    let s = open(url).await;
    let list = list_with(&s, "p", &["a@x.org"]).await;
    let id_of = |email: &'static str| {
        let s = s.clone();
        async move {
            s.subscribers_page(list, 0, 10)
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.email == email)
                .map(|r| r.id)
        }
    };
    let a = id_of("a@x.org").await.unwrap();
    assert!(s.remove_subscriber(list, "a@x.org").await.unwrap());
    let b_sub = NewSubscriber::parse("b@x.org", None, None).unwrap();
    s.upsert_subscribers(list, &[b_sub], t0()).await.unwrap();
    let b = id_of("b@x.org").await.unwrap();
    assert!(b > a, "B got id {b}, A had {a}");
    // A coming back is a new subscriber with a new id too.
    assert!(s.remove_subscriber(list, "b@x.org").await.unwrap());
    let a_sub = NewSubscriber::parse("a@x.org", None, None).unwrap();
    s.upsert_subscribers(list, &[a_sub], t0()).await.unwrap();
    let again = id_of("a@x.org").await.unwrap();
    assert!(again > b, "A again got id {again}, B had {b}");
}

/// Runs one statement on the store's database beside the store (to make what an old store
/// may hold: PostgreSQL stores copied from such a SQLite one hold it too).
async fn raw(url: &str, sql: &str) {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
}

/// A store that reused a removed subscriber's id (SQLite before AUTOINCREMENT; a
/// PostgreSQL store copied from one): the removed address's queued row is suppressed
/// although an active subscriber holds the id, and unsubscribing by that id for the
/// removed address changes nobody.
async fn a_reused_id_neither_sends_to_nor_unsubscribes_another_address(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["a@x.org", "b@x.org"]).await;
    let list = s
        .list(&ListName::parse("p").unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    let page = s.subscribers_page(list, 0, 10).await.unwrap();
    let a = page.iter().find(|r| r.email == "a@x.org").unwrap().id;
    assert!(s.remove_subscriber(list, "a@x.org").await.unwrap());
    let c = NewSubscriber::parse("c@x.org", None, None).unwrap();
    s.upsert_subscribers(list, &[c], t0()).await.unwrap();
    raw(
        url,
        &format!("UPDATE subscribers SET id = {a} WHERE email = 'c@x.org'"),
    )
    .await;
    assert_eq!(
        s.subscription(list, a).await.unwrap().unwrap().email,
        "c@x.org"
    );

    let claimed = s
        .claim_due(t0(), 10, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let to_a = claimed.iter().find(|c| c.recipient == "a@x.org").unwrap();
    assert_eq!(to_a.subscriber_id, Some(a));
    assert!(
        to_a.suppressed_because
            .as_deref()
            .is_some_and(|w| w.contains("removed")),
        "{to_a:?}"
    );
    let to_b = claimed.iter().find(|c| c.recipient == "b@x.org").unwrap();
    assert_eq!(to_b.suppressed_because, None);

    // Unsubscribing id `a` for A's address finds nobody; C stays subscribed.
    assert!(s
        .unsubscribe(list, a, "a@x.org", t0())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.subscription(list, a).await.unwrap().unwrap().status,
        SubscriberStatus::Active
    );
    // The ledger names who was e-mailed under the id: A only, so far.
    assert_eq!(s.link_recipients(list, a).await.unwrap(), ["a@x.org"]);
}

/// The SQLite migration that makes subscriber ids AUTOINCREMENT, on a store made by the
/// migrations before it: every id, address and status is kept, the UNIQUE key, the
/// foreign key to lists and the index are there, and new ids start above every id the
/// table or the ledger names (a removed subscriber's rows included).
#[tokio::test]
async fn the_subscriber_ids_migration_keeps_ids_and_starts_above_the_ledger() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let earlier = dir.path().join("migrations");
    std::fs::create_dir(&earlier).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.as_str() < "20261201000002" {
            std::fs::copy(e.path(), earlier.join(&name)).unwrap();
        }
    }
    let db = dir.path().join("old.db");
    let url = format!("sqlite://{}", db.display());
    {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&db)
                    .create_if_missing(true)
                    .foreign_keys(true),
            )
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(earlier.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for sql in [
            "INSERT INTO lists (id, name, created_at) VALUES (1, 'p', 0)",
            "INSERT INTO subscribers (id, list_id, email, status, created_at, updated_at) VALUES
                (1, 1, 'a@x.org', 'active', 0, 0), (2, 1, 'b@x.org', 'bounced', 0, 0),
                (3, 1, 'c@x.org', 'active', 0, 0)",
            "INSERT INTO bulletins (id, kind, language, subject, html, text, lists, channels, state, created_at)
                VALUES (1, 'record', 'en', 's', 'h', 't', 'p', 'email', 'done', 0)",
            // Subscriber 4 was removed after being e-mailed; 3 was the newest, removed too.
            "INSERT INTO deliveries (bulletin_id, channel, recipient, list_id, subscriber_id, status,
                next_attempt_at, created_at, updated_at) VALUES (1, 'email', 'd@x.org', 1, 4, 'sent', 0, 0, 0)",
            "DELETE FROM subscribers WHERE id = 3",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    let s = open(&url).await;
    let page = s.subscribers_page(1, 0, 10).await.unwrap();
    let kept: Vec<_> = page
        .iter()
        .map(|r| (r.id, r.email.as_str(), r.status))
        .collect();
    assert_eq!(
        kept,
        [
            (1, "a@x.org", SubscriberStatus::Active),
            (2, "b@x.org", SubscriberStatus::Bounced)
        ]
    );
    let e = NewSubscriber::parse("e@x.org", None, None).unwrap();
    s.upsert_subscribers(1, &[e], t0()).await.unwrap();
    let e_id = s
        .subscribers_page(1, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.email == "e@x.org")
        .unwrap()
        .id;
    assert_eq!(e_id, 5, "above the removed 3 and the ledger's 4");
    s.ready().await.unwrap();
    drop(s);

    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let schema: String = sqlx::query_scalar(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert!(
        schema.contains("AUTOINCREMENT") && schema.contains("UNIQUE (list_id, email)"),
        "{schema}"
    );
    let fk = sqlx::query("PRAGMA foreign_key_list(subscribers)")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert_eq!(fk.len(), 1);
    assert_eq!(fk[0].get::<String, _>("table"), "lists");
    assert_eq!(fk[0].get::<String, _>("on_delete"), "CASCADE");
    let indexes: Vec<String> = sqlx::query("PRAGMA index_list(subscribers)")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("name"))
        .collect();
    assert!(
        indexes.iter().any(|i| i == "subscribers_email"),
        "{indexes:?}"
    );
    let problems = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut c)
        .await
        .unwrap();
    assert!(problems.is_empty());
}

both_engines!(wechat_quota_is_reserved_with_the_notice);

/// The WeChat mass-send quota is reserved in the transaction that creates the notice:
/// of notices racing for the last mass send, one is created; the others are refused,
/// except a repeat of an existing notice, which returns its id whatever the quota.
async fn wechat_quota_is_reserved_with_the_notice(url: &str) {
    let s = open(url).await;
    let mut b = bulletin(None, &["p"], &[]);
    b.kind = BulletinKind::Notice;
    b.channels = vec![ChannelKind::Email, ChannelKind::Wechat];
    let meta = |key: &str| NoticeMeta {
        severity: bulletin::domain::Severity::Urgent,
        triggered_by: "ops".into(),
        idempotency_key: Some(key.into()),
        content_key: key.into(),
        dedupe_since: t0() - Span::hours(1),
        wechat_quota: Some(store::WechatQuotaCheck {
            appid: "wx".into(),
            limit: 1,
            since: t0() - Span::hours(24),
        }),
    };
    assert_eq!(
        s.wechat_mass_sends_since(t0() - Span::hours(24))
            .await
            .unwrap(),
        0
    );
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (s, b, m) = (s.clone(), b.clone(), meta(&format!("k{i}")));
            tokio::spawn(async move { s.create_notice(&b, &m, t0()).await })
        })
        .collect();
    let mut created = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok((id, true)) => created.push(id),
            Err(StoreError::Refused(m)) => {
                assert!(m.contains("mass-send quota is used up: 1 of 1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "one notice took the one mass send");
    assert_eq!(
        s.wechat_mass_sends_since(t0() - Span::hours(24))
            .await
            .unwrap(),
        1
    );
    // The same key again returns the first id even with the quota used; the others
    // are still refused.
    let mut repeats = 0;
    for i in 0..4 {
        match s.create_notice(&b, &meta(&format!("k{i}")), t0()).await {
            Ok(r) => {
                assert_eq!(r, (created[0], false));
                repeats += 1;
            }
            Err(e) => assert!(matches!(e, StoreError::Refused(_)), "{e}"),
        }
    }
    assert_eq!(repeats, 1);
    // A day later the reservation no longer counts.
    let later = NoticeMeta {
        wechat_quota: Some(store::WechatQuotaCheck {
            appid: "wx".into(),
            limit: 1,
            since: t0() + Span::seconds(1),
        }),
        ..meta("tomorrow")
    };
    assert!(
        s.create_notice(&b, &later, t0() + Span::hours(25))
            .await
            .unwrap()
            .1
    );
}

both_engines!(
    bounces_are_kept_matched_and_applied,
    bounces_count_soft_ones_in_the_window_and_complaints_unsubscribe,
    a_message_recorded_twice_is_kept_once,
    without_match_by_address_an_address_alone_marks_nobody
);

/// Issue 15: the same received message (same dedupe key) recorded twice is stored and
/// counted once; the second call reports the first bounce and changes nothing, not
/// even when the policy would suppress on a second hard bounce.
async fn a_message_recorded_twice_is_kept_once(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["gone@example.org"]).await;
    let sent = send_all(&s).await;
    let row = sent[0].1;
    let later = t0() + Span::minutes(5);
    let mut b = new_bounce(BounceKind::Hard, Some(row), later);
    b.dedupe_key = Some("mid:dsn.1@relay.example".into());
    let first = s.record_bounce(&b, &rules(2, 5, t0())).await.unwrap();
    assert!(!first.duplicate && first.row_bounced);
    let mut again = b.clone();
    again.source = BounceSource::Imap;
    again.received_at = later + Span::minutes(1);
    let second = s.record_bounce(&again, &rules(2, 5, t0())).await.unwrap();
    assert!(second.duplicate, "{second:?}");
    assert_eq!(second.id, first.id);
    assert_eq!(second.delivery_id, Some(row));
    assert_eq!(second.subscribers_bounced, 0, "not counted twice");
    assert_eq!(s.bounces(None, 10).await.unwrap().len(), 1);
    assert!(statuses(&s, "p")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Active)));
    // Another message (another key) is another bounce: the second hard one suppresses.
    let mut other = b.clone();
    other.dedupe_key = Some("mid:dsn.2@relay.example".into());
    let third = s.record_bounce(&other, &rules(2, 5, t0())).await.unwrap();
    assert!(!third.duplicate);
    assert_eq!(third.subscribers_bounced, 1);
    // No key: never deduplicated.
    s.record_bounce(
        &new_bounce(BounceKind::AutoReply, None, later),
        &rules(2, 5, t0()),
    )
    .await
    .unwrap();
    s.record_bounce(
        &new_bounce(BounceKind::AutoReply, None, later),
        &rules(2, 5, t0()),
    )
    .await
    .unwrap();
    assert_eq!(s.bounces(None, 10).await.unwrap().len(), 4);
}

/// Issue 15's address-only fallback: without `match_by_address`, a bounce with neither
/// a VERP row nor a known Message-ID (so, one anyone could forge) is kept matched to no
/// row and marks nobody; with it, the address's latest sent row is taken.
async fn without_match_by_address_an_address_alone_marks_nobody(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["gone@example.org"]).await;
    let sent = send_all(&s).await;
    let later = t0() + Span::minutes(5);
    let strict = BounceRules {
        match_by_address: false,
        ..rules(1, 5, t0())
    };
    let forged = new_bounce(BounceKind::Hard, None, later);
    let r = s.record_bounce(&forged, &strict).await.unwrap();
    assert_eq!(r.delivery_id, None);
    assert!(!r.row_bounced && r.subscribers_bounced == 0);
    assert_eq!(
        s.delivery(sent[0].1).await.unwrap().unwrap().status,
        DeliveryStatus::Sent
    );
    assert!(statuses(&s, "p")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Active)));
    let r = s.record_bounce(&forged, &rules(1, 5, t0())).await.unwrap();
    assert_eq!(r.delivery_id, Some(sent[0].1));
    assert!(r.row_bounced);
}

fn new_bounce(kind: BounceKind, verp_row: Option<i64>, at: DateTime<Utc>) -> NewBounce {
    NewBounce {
        received_at: at,
        source: BounceSource::Ingest,
        kind,
        evidence: Evidence::Dsn,
        status_code: Some(
            if kind == BounceKind::Soft {
                "4.2.2"
            } else {
                "5.1.1"
            }
            .into(),
        ),
        diagnostic: Some("550 5.1.1 no such user".into()),
        recipient: Some("Gone@Example.org".into()),
        verp_row,
        message_id: None,
        raw: b"From: MAILER-DAEMON\r\n\r\nraw \xff bytes".to_vec(),
        dedupe_key: None,
    }
}

fn rules(hard: u32, soft: u32, since: DateTime<Utc>) -> BounceRules {
    BounceRules {
        hard_to_suppress: hard,
        soft_to_suppress: soft,
        soft_since: since,
        match_by_address: true,
    }
}

async fn statuses(s: &Arc<dyn Store>, list: &str) -> Vec<(String, SubscriberStatus)> {
    let id = s
        .list(&ListName::parse(list).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    s.subscribers_page(id, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.email, r.status))
        .collect()
}

/// Sends every claimable row (outcome `sent`, Message-ID `<id@t>`); returns their ids by
/// recipient.
async fn send_all(s: &Arc<dyn Store>) -> Vec<(String, i64)> {
    let rows = s
        .claim_due(t0(), 100, LEASE, ExpiredLease::Resend)
        .await
        .unwrap();
    let outs: Vec<_> = rows
        .iter()
        .map(|c| outcome(c.id, OutcomeKind::Sent, t0()))
        .collect();
    s.record_outcomes(&outs).await.unwrap();
    rows.into_iter().map(|c| (c.recipient, c.id)).collect()
}

async fn bounces_are_kept_matched_and_applied(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["gone@example.org", "fine@example.org"]).await;
    list_with(&s, "q", &["gone@example.org"]).await;
    let sent = send_all(&s).await;
    let row = |who: &str| sent.iter().find(|(r, _)| r == who).unwrap().1;
    let later = t0() + Span::minutes(5);

    // A vacation reply for the row: recorded, nothing changes.
    let vac = s
        .record_bounce(
            &new_bounce(BounceKind::AutoReply, Some(row("gone@example.org")), later),
            &rules(1, 5, t0()),
        )
        .await
        .unwrap();
    assert_eq!(vac.delivery_id, Some(row("gone@example.org")));
    assert!(!vac.row_bounced && vac.subscribers_bounced == 0);
    assert_eq!(
        s.delivery(row("gone@example.org"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Sent
    );

    // A hard bounce naming a row that does not exist, with an address nobody here was
    // sent: kept, unmatched, no effect.
    let mut stray = new_bounce(BounceKind::Hard, Some(999_999), later);
    stray.recipient = Some("stranger@example.net".into());
    let r = s.record_bounce(&stray, &rules(1, 5, t0())).await.unwrap();
    assert_eq!(r.delivery_id, None);
    assert_eq!(r.subscribers_bounced, 0);

    // A hard bounce by VERP row: the row ends bounced, its history gains the DSN, the
    // address is bounced on every list, the other row stays sent.
    let hard = s
        .record_bounce(
            &new_bounce(BounceKind::Hard, Some(row("gone@example.org")), later),
            &rules(1, 5, t0()),
        )
        .await
        .unwrap();
    assert_eq!(hard.delivery_id, Some(row("gone@example.org")));
    assert!(hard.row_bounced);
    assert_eq!(hard.subscribers_bounced, 2, "both lists");
    let d = s.delivery(row("gone@example.org")).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Bounced);
    assert!(d.last_error.as_deref().unwrap().contains("5.1.1"), "{d:?}");
    let history = s.attempts(&[d.id]).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.outcome, "bounced");
    assert!(
        last.reply.as_deref().unwrap().contains("no such user"),
        "{last:?}"
    );
    assert_eq!(
        s.delivery(row("fine@example.org"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Sent
    );
    assert!(statuses(&s, "p")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Bounced)));
    assert!(statuses(&s, "p")
        .await
        .contains(&("fine@example.org".into(), SubscriberStatus::Active)));
    assert!(statuses(&s, "q")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Bounced)));
    let counts = s.delivery_counts(None).await.unwrap();
    assert!(
        counts
            .iter()
            .any(|c| c.status == DeliveryStatus::Bounced && c.count == 1),
        "{counts:?}"
    );

    // Matched by the returned Message-ID when there is no VERP token.
    let mut by_mid = new_bounce(BounceKind::Delayed, None, later);
    by_mid.message_id = Some(format!("{}@t", row("fine@example.org")));
    by_mid.recipient = None;
    let m = s.record_bounce(&by_mid, &rules(1, 5, t0())).await.unwrap();
    assert_eq!(m.delivery_id, Some(row("fine@example.org")));

    // Listed newest first, filtered by kind, the raw message kept byte for byte.
    let all = s.bounces(None, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, m.id);
    let hards = s.bounces(Some(BounceKind::Hard), 10).await.unwrap();
    assert_eq!(
        hards.iter().map(|b| b.id).collect::<Vec<_>>(),
        vec![hard.id, r.id]
    );
    assert_eq!(hards[0].recipient.as_deref(), Some("gone@example.org"));
    assert_eq!(hards[0].status_code.as_deref(), Some("5.1.1"));
    assert_eq!(hards[1].delivery_id, None);
    let raw = s.bounce_raw(hard.id).await.unwrap().unwrap();
    assert_eq!(raw, new_bounce(BounceKind::Hard, None, later).raw);
    assert_eq!(hards[0].size, raw.len() as i64);
    let since = s.bounce_counts_since(t0()).await.unwrap();
    assert!(since.contains(&(BounceKind::Hard, 2)), "{since:?}");
    assert!(s
        .bounce_counts_since(later + Span::seconds(1))
        .await
        .unwrap()
        .is_empty());

    // Undo: the row back to sent, the subscriptions back to active, recorded; twice is
    // harmless.
    let u = s
        .undo_bounce(hard.id, later + Span::minutes(1))
        .await
        .unwrap();
    assert!(u.undone && u.row_restored);
    assert_eq!(u.subscribers_restored, 2);
    assert_eq!(
        s.delivery(row("gone@example.org"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Sent
    );
    assert!(statuses(&s, "q")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Active)));
    let again = s
        .undo_bounce(hard.id, later + Span::minutes(2))
        .await
        .unwrap();
    assert!(!again.undone && !again.row_restored && again.subscribers_restored == 0);
    let listed = s.bounces(Some(BounceKind::Hard), 10).await.unwrap();
    assert!(listed[0].undone_at.is_some());
    assert!(matches!(
        s.undo_bounce(424_242, later).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn bounces_count_soft_ones_in_the_window_and_complaints_unsubscribe(url: &str) {
    let s = open(url).await;
    sending_bulletin(&s, "p", &["gone@example.org", "angry@example.org"]).await;
    let sent = send_all(&s).await;
    let row = |who: &str| sent.iter().find(|(r, _)| r == who).unwrap().1;
    let soft = |at| new_bounce(BounceKind::Soft, Some(row("gone@example.org")), at);
    // Two soft bounces long ago, outside the window; two inside: not yet three.
    let window_start = t0() + Span::days(10);
    for d in [1, 2, 11, 12] {
        let r = s
            .record_bounce(&soft(t0() + Span::days(d)), &rules(1, 3, window_start))
            .await
            .unwrap();
        assert_eq!(r.subscribers_bounced, 0, "day {d}");
        assert!(!r.row_bounced);
    }
    let third = s
        .record_bounce(&soft(t0() + Span::days(13)), &rules(1, 3, window_start))
        .await
        .unwrap();
    assert_eq!(third.subscribers_bounced, 1);
    assert_eq!(
        s.delivery(row("gone@example.org"))
            .await
            .unwrap()
            .unwrap()
            .status,
        DeliveryStatus::Sent,
        "a soft bounce leaves the row sent"
    );
    assert!(statuses(&s, "p")
        .await
        .contains(&("gone@example.org".into(), SubscriberStatus::Bounced)));

    // A complaint, matched by address alone: unsubscribed from every list.
    let mut c = new_bounce(BounceKind::Complaint, None, t0() + Span::days(14));
    c.evidence = Evidence::Arf;
    c.recipient = Some("ANGRY@example.org".into());
    let r = s
        .record_bounce(&c, &rules(1, 3, window_start))
        .await
        .unwrap();
    assert_eq!(r.delivery_id, Some(row("angry@example.org")));
    assert_eq!(r.subscribers_unsubscribed, 1);
    assert!(statuses(&s, "p")
        .await
        .contains(&("angry@example.org".into(), SubscriberStatus::Unsubscribed)));
    let u = s.undo_bounce(r.id, t0() + Span::days(15)).await.unwrap();
    assert_eq!(u.subscribers_restored, 1);
    assert!(!u.row_restored);
    assert!(statuses(&s, "p")
        .await
        .contains(&("angry@example.org".into(), SubscriberStatus::Active)));
}
