//! The complaint store on SQLite and on a real PostgreSQL (a private server
//! started by the test): storing, the queue's order, filters and keyset
//! pages, status moves, optimistic concurrency, the audit log, false-positive
//! term export, and a database that goes away.
mod common;

use common::PgServer;
use kesu_store::{text_sha256, Filter, KeyClaim, NewItem, Patch, Status, Store, StoreError};
use serde_json::json;

fn item(text: &str, priority: &str, flags: &[&str], severity: u8, category: &str, escalation: u8) -> NewItem {
    let hits: Vec<_> = flags.iter().map(|f| json!({"term": format!("{f}-term"), "flag": f, "severity": severity, "text": "x", "start": 0, "end": 1, "negated": false})).collect();
    NewItem {
        caller_id: Some(format!("c-{text}")),
        channel: Some("weibo".into()),
        customer_ref: None,
        customer_ref_given: None,
        text: text.into(),
        result: json!({"flags": {"hits": hits}, "emotion": {"level": escalation}}),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        max_severity: severity,
        category: category.into(),
        escalation,
        priority: priority.into(),
        route: if priority == "P1" { "compliance".into() } else { "senior_agent".into() },
    }
}

/// NUL (U+0000) in any stored string: stored as U+FFFD, one char for one,
/// never a failed transaction (PostgreSQL refuses NUL in text; issue 14).
async fn nul_is_stored_as_replacement_character(store: &Store) {
    let mut it = item("起诉\u{0}你们", "P1", &["litigation"], 3, "service", 3);
    it.caller_id = Some("id\u{0}1".into());
    it.channel = Some("we\u{0}ibo".into());
    it.customer_ref = Some("\u{0}c".into());
    it.result["text"] = json!("起诉\u{0}你们");
    it.result["k\u{0}"] = json!(["\u{0}"]);
    let ids = store.insert(&[it, item("plain", "P3", &[], 0, "service", 1)], "k").await.unwrap();
    let got = store.get(&ids[0]).await.unwrap();
    assert_eq!(got.text, "起诉\u{FFFD}你们");
    assert_eq!(got.text.chars().count(), 5, "char offsets unchanged");
    assert_eq!(
        (got.caller_id.as_deref(), got.channel.as_deref(), got.customer_ref.as_deref()),
        (Some("id\u{FFFD}1"), Some("we\u{FFFD}ibo"), Some("\u{FFFD}c"))
    );
    assert_eq!(got.result["text"], "起诉\u{FFFD}你们");
    assert_eq!(got.result["k\u{FFFD}"][0], "\u{FFFD}");
    let patch = Patch { status: None, assignee: Some("a\u{0}".into()), note: Some("note\u{0}".into()) };
    let up = store.update(&ids[0], 1, &patch, "reviewer").await.unwrap();
    assert_eq!((up.assignee.as_deref(), up.note.as_deref()), (Some("a\u{FFFD}"), Some("note\u{FFFD}")));
    let f = Filter { q: Some("诉\u{0}你".into()), ..Default::default() };
    let page = store.list(&f, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 1, "a NUL in the search finds the stored U+FFFD");
    // NUL in any other filter or an id: an answer, never a database error.
    let f = Filter {
        category: Some("ser\u{0}vice".into()),
        priority: Some("P\u{0}".into()),
        route: Some("\u{0}".into()),
        flag: Some("liti\u{0}gation".into()),
        ..Default::default()
    };
    assert!(store.list(&f, None, 10).await.unwrap().items.is_empty());
    assert!(store.list(&Filter::default(), Some("1.2.x\u{0}"), 10).await.is_ok());
    assert!(matches!(store.get("no\u{0}such").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.history("no\u{0}such").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.update("no\u{0}such", 1, &patch, "r").await, Err(StoreError::NotFound(_))));
}

fn claim(key: &str, text: &str, item: Option<usize>) -> KeyClaim {
    KeyClaim { key: key.into(), text_sha256: text_sha256(text), item }
}

fn count_all(page: &kesu_store::Page) -> usize {
    page.items.len()
}

/// Idempotency claims (issue 14): a key is claimed with its item in one
/// transaction; a second claim of a live key stores nothing; of concurrent
/// claimers exactly one commits; an expired claim is replaced.
async fn idempotency(store: &Store) {
    let before = count_all(&store.list(&Filter::default(), None, 500).await.unwrap());
    let ids = store
        .insert_claimed(
            &[item("idem A", "P1", &[], 0, "service", 3)],
            "k1",
            &[claim("a", "idem A", Some(0)), claim("b", "idem B", None)],
            0,
            &[],
            "k1",
        )
        .await
        .unwrap();
    let seen = store.seen_keys("k1", &["a", "b", "c"], 0).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen["a"].item_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!((seen["b"].item_id.as_deref(), seen["b"].text_sha256.as_str()), (None, text_sha256("idem B").as_str()));
    assert!(store.seen_keys("k2", &["a"], 0).await.unwrap().is_empty(), "keys are per scope");
    // the same key again: nothing stored
    let again = store
        .insert_claimed(
            &[item("idem A", "P1", &[], 0, "service", 3)],
            "k1",
            &[claim("a", "idem A", Some(0))],
            0,
            &[],
            "k1",
        )
        .await;
    assert!(matches!(again, Err(StoreError::KeyTaken(ref k)) if k == "a"), "{again:?}");
    assert_eq!(
        count_all(&store.list(&Filter::default(), None, 500).await.unwrap()),
        before + 1,
        "the loser stored nothing"
    );
    // concurrent claimers of one key: exactly one commits
    let mut tasks = Vec::new();
    for r in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_claimed(
                &[item(&format!("race {r}"), "P2", &[], 0, "service", 2)],
                "k1",
                &[claim("race", "race", Some(0))],
                0,
                &[],
                "k1",
            )
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::KeyTaken(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one concurrent claimer wins");
    assert_eq!(count_all(&store.list(&Filter::default(), None, 500).await.unwrap()), before + 2);
    // outside the window the claim is dead: replaced, and purged
    let later = i64::MAX / 2;
    assert!(store.seen_keys("k1", &["a"], later).await.unwrap().is_empty());
    store.insert_claimed(&[], "k1", &[claim("a", "other text", None)], later, &[], "k1").await.unwrap();
    assert_eq!(store.seen_keys("k1", &["a"], 0).await.unwrap()["a"].text_sha256, text_sha256("other text"));
    assert!(store.purge_keys(later).await.unwrap() >= 2);
    assert!(store.seen_keys("k1", &["b", "race"], 0).await.unwrap().is_empty());
}

/// Deletion per customer and retention (issue 14): exactly that customer's
/// items go (masked references that look alike are told apart by the salted
/// hash of the reference as given), with their history, audit-logged.
async fn deletion_and_retention(store: &Store) {
    let mut a = item("客户甲 起诉", "P1", &["litigation"], 3, "service", 3);
    a.customer_ref = Some("138********".into());
    a.customer_ref_given = Some("13800138000".into());
    let mut b = item("客户乙 投诉", "P2", &[], 0, "service", 2);
    b.customer_ref = Some("138********".into());
    b.customer_ref_given = Some("13811112222".into());
    let ids = store.insert(&[a.clone(), b, a], "intake").await.unwrap();
    let gone = store.delete_customer("13800138000", "admin-1").await.unwrap();
    assert_eq!((gone.items, gone.history_entries), (2, 2));
    assert!(matches!(store.get(&ids[0]).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.history(&ids[2]).await, Err(StoreError::NotFound(_))), "history deleted too");
    assert_eq!(
        store.get(&ids[1]).await.unwrap().customer_ref.as_deref(),
        Some("138********"),
        "the other customer stays"
    );
    let log = store.audit_log(10).await.unwrap();
    assert_eq!((log[0].action.as_str(), log[0].actor.as_str()), ("customer_deleted", "admin-1"));
    assert_eq!(log[0].subject, format!("customer:{}", gone.customer_hash));
    assert!(
        !log[0].subject.contains("13800138000") && !log[0].detail.to_string().contains("1380013"),
        "no reference in the log"
    );
    assert_eq!(log[0].detail["items"], 2);
    assert_eq!(store.delete_customer("13800138000", "admin-1").await.unwrap().items, 0, "deleting again is a no-op");
    // retention: everything received before the cutoff goes, one audit entry
    let all = count_all(&store.list(&Filter::default(), None, 500).await.unwrap());
    assert_eq!(store.purge_items(0, "retention").await.unwrap(), 0, "nothing is older than 1970");
    let n = store.purge_items(i64::MAX / 2, "retention").await.unwrap();
    assert_eq!(n as usize, all);
    assert!(store.list(&Filter::default(), None, 500).await.unwrap().items.is_empty());
    assert!(matches!(store.history(&ids[1]).await, Err(StoreError::NotFound(_))));
    let log = store.audit_log(10).await.unwrap();
    assert_eq!((log[0].action.as_str(), log[0].detail["items"].as_u64()), ("retention_purge", Some(n)));
}

/// Repeat contacts in the store: earlier contacts within the window are
/// counted (the boundary included, at most the cap), older ones are not and
/// are purged; a customer's contacts can be forgotten; two replicas (two
/// `StoreContacts` on one database) see each other's contacts.
async fn contacts(store: &Store) {
    use kesu_core::triage::ContactStore;
    use kesu_store::contacts::{Keying, StoreContacts};
    let (w, t0) = (60_000, 1_000_000_000_000i64);
    for (at, want) in [(t0, 0), (t0 + 1_000, 1), (t0 + w, 2), (t0 + w + 1, 2), (t0 + 3 * w, 0)] {
        assert_eq!(store.record_contact("k:a", at, w, 16, None).await.unwrap(), want, "contact at {at}");
    }
    for i in 0..20 {
        store.record_contact("k:b", t0 + i, w, 3, None).await.unwrap();
    }
    assert_eq!(store.record_contact("k:b", t0 + 30, w, 3, None).await.unwrap(), 3, "capped");
    assert_eq!(store.contact_customers(t0).await.unwrap(), 2);
    assert_eq!(store.purge_contacts(t0 + 2 * w).await.unwrap(), 4 + 21, "a's first four and all of b's");
    assert_eq!(store.record_contact("k:b", t0 + 3 * w, w, 16, None).await.unwrap(), 0);
    // A named contact (an item's scoped idempotency key) counts once however often it is recorded.
    let t1 = t0 + 3 * w;
    for (at, event, want, why) in [
        (t1, Some("ev1"), 0, "first"),
        (t1 + 10, Some("ev1"), 0, "ev1 again: not counted, nothing else there"),
        (t1 + 20, Some("ev2"), 1, "ev2 counts ev1"),
        (t1 + 30, Some("ev1"), 1, "ev1 again: only ev2"),
        (t1 + 40, None, 2, "unnamed: counts both"),
        (t1 + 2 * w, Some("ev1"), 0, "ev1 again after the window: nothing in it"),
    ] {
        assert_eq!(store.record_contact("k:e", at, w, 16, event).await.unwrap(), want, "{why}");
    }
    assert_eq!(store.delete_contacts("k:e").await.unwrap(), 3, "erasure takes the named contacts too");
    assert_eq!(store.record_contact("k:e", t1, w, 16, Some("ev1")).await.unwrap(), 0, "after erasure, ev1 is new");
    store.delete_contacts("k:e").await.unwrap();

    // Through the ContactStore seam, from blocking threads as the pipeline calls it.
    let rt = tokio::runtime::Handle::current();
    let secret = Keying::Secret(std::sync::Arc::new(b"0123456789abcdef-test".to_vec()));
    let a = StoreContacts::new(store.clone(), rt.clone(), std::time::Duration::from_secs(3600), secret.clone());
    let b = StoreContacts::new(store.clone(), rt, std::time::Duration::from_secs(3600), secret);
    assert_eq!(a.key("13800138000"), b.key("13800138000"), "the same key on every replica");
    assert!(!a.key("13800138000").contains("13800138000"), "no reference in the key");
    let now = std::time::SystemTime::now();
    let counts = tokio::task::spawn_blocking(move || {
        let first = a.record("13800138000", now, None).unwrap();
        let second = b.record("13800138000", now, None).unwrap();
        let other = b.record("13900139000", now, None).unwrap();
        b.forget("13800138000").unwrap();
        let after = a.record("13800138000", now, None).unwrap();
        (first, second, other, after)
    })
    .await
    .unwrap();
    assert_eq!(counts, (0, 1, 0, 0), "(first, on the other replica, another customer, after forgetting)");
}

/// PostgreSQL going away: one contact lookup waits (at most `LOOKUP_TIMEOUT`),
/// the next ones within `PAUSE_AFTER_FAILURE` fail at once; after the pause,
/// with the database back, lookups work again.
async fn contacts_outage(pg: &PgServer, store: &Store) {
    use kesu_core::triage::ContactStore;
    use kesu_store::contacts::{Keying, StoreContacts, LOOKUP_TIMEOUT, PAUSE_AFTER_FAILURE};
    use std::time::{Duration, Instant, SystemTime};
    let c = std::sync::Arc::new(StoreContacts::new(
        store.clone(),
        tokio::runtime::Handle::current(),
        Duration::from_secs(3600),
        Keying::DatabaseSalt,
    ));
    pg.stop();
    let c1 = std::sync::Arc::clone(&c);
    let (first, rest) = tokio::task::spawn_blocking(move || {
        let t0 = Instant::now();
        assert!(c1.record("c-outage", SystemTime::now(), None).is_err(), "no database: an error");
        let first = t0.elapsed();
        let t1 = Instant::now();
        for _ in 0..20 {
            let e = c1.record("c-outage", SystemTime::now(), None).unwrap_err();
            assert!(e.0.contains("skipped"), "{}", e.0);
        }
        (first, t1.elapsed())
    })
    .await
    .unwrap();
    assert!(first <= LOOKUP_TIMEOUT + Duration::from_secs(1), "the first lookup waited {first:?}");
    assert!(rest < Duration::from_millis(200), "20 lookups in the pause took {rest:?}");
    pg.start_again();
    tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
    let n = tokio::task::spawn_blocking(move || c.record("c-outage", SystemTime::now(), None)).await.unwrap();
    assert!(n.is_ok(), "after the pause, with the database back: {n:?}");
}

async fn suite(store: Store) {
    // store: committed, version 1, audit entry
    let ids = store
        .insert(
            &[
                item("old P3", "P3", &[], 0, "service", 2),
                item("P1 一起去集体诉讼", "P1", &["collective_action", "litigation"], 3, "service", 3),
                item("P2 记者曝光", "P2", &["media"], 2, "product", 3),
                item("P1 later", "P1", &["self_harm_violence"], 3, "service", 3),
                item("50%_off 骗子", "P3", &["police_crime"], 1, "information_security", 2),
            ],
            "intake-key",
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 5);
    let first = store.get(&ids[0]).await.unwrap();
    assert_eq!((first.version, first.status, first.caller_id.as_deref()), (1, Status::New, Some("c-old P3")));
    let h = store.history(&ids[0]).await.unwrap();
    assert_eq!((h.len(), h[0].action.as_str(), h[0].actor.as_str()), (1, "stored", "intake-key"));

    // queue order: priority, then age; pages of 2 cover everything once
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(&Filter::default(), after.as_deref(), 2).await.unwrap();
        seen.extend(page.items.iter().map(|i| i.text.clone()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["P1 一起去集体诉讼", "P1 later", "P2 记者曝光", "old P3", "50%_off 骗子"]);

    // filters
    let texts = |p: kesu_store::Page| p.items.into_iter().map(|i| i.text).collect::<Vec<_>>();
    let f = |flag: Option<&str>| Filter { flag: flag.map(String::from), ..Filter::default() };
    assert_eq!(texts(store.list(&f(Some("litigation")), None, 50).await.unwrap()), ["P1 一起去集体诉讼"]);
    assert!(texts(store.list(&f(Some("litig")), None, 50).await.unwrap()).is_empty(), "whole flag names only");
    assert_eq!(
        store.list(&Filter { min_severity: Some(2), ..Filter::default() }, None, 50).await.unwrap().items.len(),
        3
    );
    assert_eq!(
        texts(store.list(&Filter { category: Some("product".into()), ..Filter::default() }, None, 50).await.unwrap()),
        ["P2 记者曝光"]
    );
    assert_eq!(
        store
            .list(&Filter { route: Some("compliance".into()), ..Filter::default() }, None, 50)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        texts(store.list(&Filter { q: Some("曝光".into()), ..Filter::default() }, None, 50).await.unwrap()),
        ["P2 记者曝光"]
    );
    assert_eq!(
        texts(store.list(&Filter { q: Some("%_".into()), ..Filter::default() }, None, 50).await.unwrap()),
        ["50%_off 骗子"],
        "LIKE wildcards are literal"
    );
    assert!(matches!(store.list(&Filter::default(), Some("garbage"), 2).await, Err(StoreError::Cursor(_))));

    // moves, audit, conflicts
    let id = &ids[1];
    let it = store
        .update(id, 1, &Patch { status: Some(Status::InReview), assignee: Some("li".into()), note: None }, "reviewer-a")
        .await
        .unwrap();
    assert_eq!((it.version, it.status, it.assignee.as_deref()), (2, Status::InReview, Some("li")));
    assert!(matches!(
        store.update(id, 1, &Patch { status: Some(Status::Confirmed), ..Patch::default() }, "reviewer-b").await,
        Err(StoreError::Conflict { current: 2, given: 1, .. })
    ));
    let it = store
        .update(
            id,
            2,
            &Patch { status: Some(Status::Confirmed), note: Some("真实威胁".into()), ..Patch::default() },
            "reviewer-a",
        )
        .await
        .unwrap();
    assert_eq!(it.version, 3);
    assert!(matches!(
        store.update(id, 3, &Patch { status: Some(Status::New), ..Patch::default() }, "x").await,
        Err(StoreError::Transition { .. })
    ));
    let same = store.update(id, 3, &Patch { status: Some(Status::Confirmed), ..Patch::default() }, "x").await.unwrap();
    assert_eq!(same.version, 3, "a no-op change is not a new version");
    let h = store.history(id).await.unwrap();
    assert_eq!(h.iter().map(|c| c.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(h[1].changes["status"], json!({"from": "new", "to": "in_review"}));
    assert_eq!(h[1].changes["assignee"], json!({"from": null, "to": "li"}));
    assert_eq!((h[2].actor.as_str(), &h[2].changes["note"]["to"]), ("reviewer-a", &json!("真实威胁")));
    let open = store
        .list(&Filter { status: vec![Status::New, Status::InReview], ..Filter::default() }, None, 50)
        .await
        .unwrap();
    assert!(open.items.iter().all(|i| &i.id != id), "a confirmed item leaves the queue");
    assert!(matches!(store.get("nope").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.update("nope", 1, &Patch::default(), "x").await, Err(StoreError::NotFound(_))));

    // several reviewers mark one item at once: exactly one wins
    let target = ids[2].clone();
    let mut tasks = Vec::new();
    for r in 0..8 {
        let (s, t) = (store.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            s.update(
                &t,
                1,
                &Patch { status: Some(Status::FalsePositive), note: Some(format!("r{r}")), ..Patch::default() },
                &format!("r{r}"),
            )
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one concurrent writer wins");
    assert_eq!(store.history(&target).await.unwrap().len(), 2);

    // false-positive feedback per term
    let terms = store.false_positive_terms().await.unwrap();
    assert_eq!(terms.len(), 1);
    assert_eq!((terms[0].term.as_str(), terms[0].flag.as_str(), terms[0].items), ("media-term", "media", 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/kesu.db", dir.path().display());
    let store = Store::open(&url, 4).await.unwrap();
    assert!(dir.path().join("sub/kesu.db").exists(), "created on first open");
    suite(store.clone()).await;
    // reopening migrates nothing and keeps the data
    drop(store);
    let again = Store::open(&url, 1).await.unwrap();
    assert_eq!(again.list(&Filter::default(), None, 50).await.unwrap().items.len(), 5);
    nul_is_stored_as_replacement_character(&again).await;
    idempotency(&again).await;
    deletion_and_retention(&again).await;
    contacts(&again).await;
    // the database going away: an error, never a silent success
    again.pool().close().await;
    assert!(again.insert(&[item("lost?", "P1", &[], 0, "service", 3)], "x").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store() {
    let Some(pg) = PgServer::start() else { return };
    let store = Store::open(&pg.url(), 4).await.unwrap();
    suite(store.clone()).await;
    nul_is_stored_as_replacement_character(&store).await;
    idempotency(&store).await;
    deletion_and_retention(&store).await;
    contacts(&store).await;
    contacts_outage(&pg, &store).await;
    // a second replica on the same database hashes customers the same way
    let replica = Store::open(&pg.url(), 2).await.unwrap();
    assert_eq!(replica.customer_hash("c-1"), store.customer_hash("c-1"));
    assert_eq!(store.url(), pg.url(), "no password to hide");
    pg.stop();
    assert!(
        store.insert(&[item("lost?", "P1", &[], 0, "service", 3)], "x").await.is_err(),
        "stopped database: insert fails"
    );
    assert!(!store.ping().await);
}

/// A version-1 database (before idempotency and deletion) is migrated in
/// place: its items stay, the new tables and the customer column appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_1_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/v1.db", dir.path().display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc")).await.unwrap();
        for q in [
            "CREATE TABLE kesu_schema (version BIGINT NOT NULL)",
            "INSERT INTO kesu_schema (version) VALUES (1)",
            "CREATE TABLE items (id TEXT PRIMARY KEY, caller_id TEXT, channel TEXT, customer_ref TEXT, received_at BIGINT NOT NULL, arrival BIGINT NOT NULL, text TEXT NOT NULL, result TEXT NOT NULL, flags TEXT NOT NULL, max_severity BIGINT NOT NULL, category TEXT NOT NULL, escalation BIGINT NOT NULL, priority TEXT NOT NULL, priority_rank BIGINT NOT NULL, route TEXT NOT NULL, status TEXT NOT NULL, assignee TEXT, note TEXT, version BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            "INSERT INTO items VALUES ('old-1', NULL, NULL, 'c', 1, 1, '旧的', '{}', ',,', 0, 'service', 1, 'P3', 3, 'agent', 'new', NULL, NULL, 1, 1)",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&url, 1).await.unwrap();
    assert_eq!(store.get("old-1").await.unwrap().text, "旧的");
    let mut it = item("新的", "P1", &[], 0, "service", 3);
    it.customer_ref_given = Some("c".into());
    store.insert(&[it], "k").await.unwrap();
    assert_eq!(
        store.delete_customer("c", "admin").await.unwrap().items,
        1,
        "rows stored before version 2 have no customer hash"
    );
    drop(store);
    let again = Store::open(&url, 1).await.unwrap();
    assert_eq!(again.get("old-1").await.unwrap().id, "old-1", "reopening migrates nothing twice");
}
