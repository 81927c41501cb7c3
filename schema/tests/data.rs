//! The data tests: every model function against SQLite and against a real PostgreSQL, so that
//! both backends stay honest. Each backend runs the same suite on a fresh database.

mod support;

use diesel::prelude::*;
use schema::models::*;
use schema::{Conn, DatabaseLocation, Db, TxError};

async fn suite(db: &Db) {
    let t0 = 1_700_000_000_000i64;

    // Users: create, find, unique email.
    let ada = db
        .interact(move |c| {
            user::create(
                c,
                &user::NewUser {
                    email: Some("ada@example.org"),
                    email_verified: false,
                    display_name: "Ada",
                    password_hash: Some("h"),
                    created_at: t0,
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(ada.email.as_deref(), Some("ada@example.org"));
    let bob = db
        .interact(move |c| {
            user::create(
                c,
                &user::NewUser {
                    email: Some("bob@example.org"),
                    email_verified: true,
                    display_name: "Bob",
                    password_hash: None,
                    created_at: t0,
                },
            )
        })
        .await
        .unwrap();
    assert_ne!(ada.id, bob.id);
    let dup = db
        .interact(move |c| {
            user::create(
                c,
                &user::NewUser {
                    email: Some("ada@example.org"),
                    email_verified: false,
                    display_name: "Ada 2",
                    password_hash: None,
                    created_at: t0,
                },
            )
        })
        .await;
    assert!(
        matches!(
            dup,
            Err(schema::DbError::Query(
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                )
            ))
        ),
        "{dup:?}"
    );
    let found = db
        .interact(|c| user::find_by_email(c, "ada@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, ada);
    let (ada_id, bob_id) = (ada.id, bob.id);
    db.interact(move |c| user::mark_email_verified(c, ada_id))
        .await
        .unwrap();
    assert!(
        db.interact(move |c| user::find(c, ada_id))
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );

    // Identities.
    db.interact(move |c| {
        auth_identity::create(
            c,
            &auth_identity::NewAuthIdentity {
                user_id: bob_id,
                provider: "google",
                subject: "123",
                email: None,
                created_at: t0,
            },
        )
    })
    .await
    .unwrap();
    assert_eq!(
        db.interact(|c| auth_identity::find(c, "google", "123"))
            .await
            .unwrap()
            .unwrap()
            .user_id,
        bob_id
    );
    assert!(
        db.interact(|c| auth_identity::find(c, "google", "999"))
            .await
            .unwrap()
            .is_none()
    );

    // Sessions: active until expiry or revocation.
    let s1 = db
        .interact(move |c| {
            auth_session::create(
                c,
                &auth_session::NewAuthSession {
                    user_id: ada_id,
                    token_hash: "s1",
                    created_at: t0,
                    expires_at: t0 + 1000,
                },
            )
        })
        .await
        .unwrap();
    let s2 = db
        .interact(move |c| {
            auth_session::create(
                c,
                &auth_session::NewAuthSession {
                    user_id: ada_id,
                    token_hash: "s2",
                    created_at: t0,
                    expires_at: t0 + 1000,
                },
            )
        })
        .await
        .unwrap();
    let (s, u) = db
        .interact(move |c| auth_session::find_active(c, "s1", t0 + 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u.id, s.id), (ada_id, s1.id));
    assert!(
        db.interact(move |c| auth_session::find_active(c, "s1", t0 + 1000))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    let s1_id = s1.id;
    assert_eq!(
        db.interact(move |c| auth_session::revoke(c, s1_id, t0 + 2))
            .await
            .unwrap(),
        1
    );
    assert!(
        db.interact(move |c| auth_session::find_active(c, "s1", t0 + 3))
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
    assert!(
        !db.interact(move |c| auth_session::is_active(c, s1_id, t0 + 3))
            .await
            .unwrap()
    );
    let s2_id = s2.id;
    assert!(
        db.interact(move |c| auth_session::is_active(c, s2_id, t0 + 3))
            .await
            .unwrap()
    );
    assert_eq!(
        db.interact(move |c| auth_session::revoke_all(c, ada_id, t0 + 4))
            .await
            .unwrap(),
        1,
        "only s2 was still active"
    );
    assert!(
        !db.interact(move |c| auth_session::is_active(c, s2_id, t0 + 5))
            .await
            .unwrap()
    );

    // API tokens.
    let tok = db
        .interact(move |c| {
            api_token::create(
                c,
                &api_token::NewApiToken {
                    user_id: ada_id,
                    name: "ci",
                    token_hash: "t1",
                    scopes: "read write",
                    created_at: t0,
                },
            )
        })
        .await
        .unwrap();
    let (t, u) = db
        .interact(move |c| api_token::authenticate(c, "t1", t0 + 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.id, u.id), (tok.id, ada_id));
    let listed = db
        .interact(move |c| api_token::list_active(c, ada_id))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(t0 + 9), "use is recorded");
    let tok_id = tok.id;
    assert!(
        !db.interact(move |c| api_token::revoke(c, bob_id, tok_id, t0))
            .await
            .unwrap(),
        "not bob's token"
    );
    assert!(
        db.interact(move |c| api_token::revoke(c, ada_id, tok_id, t0))
            .await
            .unwrap()
    );
    assert!(
        db.interact(move |c| api_token::authenticate(c, "t1", t0))
            .await
            .unwrap()
            .is_none()
    );

    // Login flows: taken once, expire.
    let flow = |state: &str, exp: i64| login_flow::LoginFlow {
        state: state.into(),
        provider: "p".into(),
        pkce_verifier: "v".into(),
        nonce: "n".into(),
        return_to: "/".into(),
        expires_at: exp,
    };
    let (f1, f2) = (flow("st1", t0 + 100), flow("st2", t0 + 10));
    db.interact(move |c| login_flow::create(c, &f1))
        .await
        .unwrap();
    db.interact(move |c| login_flow::create(c, &f2))
        .await
        .unwrap();
    assert_eq!(
        db.interact(move |c| login_flow::take(c, "st1", t0 + 50))
            .await
            .unwrap()
            .unwrap()
            .state,
        "st1"
    );
    assert!(
        db.interact(move |c| login_flow::take(c, "st1", t0 + 50))
            .await
            .unwrap()
            .is_none(),
        "once"
    );
    assert!(
        db.interact(move |c| login_flow::take(c, "st2", t0 + 50))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );

    // Classes: create, update, list what each user may see (with cursor), membership, roles.
    // Ada owns 0 (public), 2 (invite-only) and 4 (unlisted); Bob 1 (invite-only) and 3 (unlisted).
    let visibilities = [
        class::PUBLIC,
        class::INVITE_ONLY,
        class::INVITE_ONLY,
        class::UNLISTED,
        class::UNLISTED,
    ];
    let mut ids = Vec::new();
    for (i, visibility) in visibilities.into_iter().enumerate() {
        let title = format!("Class {i}");
        let owner = if i % 2 == 0 { ada_id } else { bob_id };
        let c = db
            .interact(move |c| {
                class::create(
                    c,
                    &class::NewClass {
                        owner_id: owner,
                        title: &title,
                        description: "",
                        visibility,
                        created_at: t0,
                        updated_at: t0,
                    },
                )
            })
            .await
            .unwrap();
        assert_eq!(c.visibility, visibility);
        ids.push(c.id);
    }
    let listed = |filter: class::Filter| async move {
        db.interact(move |c| class::list(c, filter, None, 10))
            .await
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    let page = db
        .interact(move |c| class::list(c, class::Filter::Visible(ada_id), None, 2))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2]],
        "newest first; not Bob's unlisted or invite-only classes"
    );
    let before = page[1].id;
    let page2 = db
        .interact(move |c| class::list(c, class::Filter::Visible(ada_id), Some(before), 10))
        .await
        .unwrap();
    assert_eq!(page2.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert_eq!(
        listed(class::Filter::Visible(bob_id)).await,
        vec![ids[3], ids[1], ids[0]],
        "own classes and public ones"
    );
    let (c1, c2, c3) = (ids[1], ids[2], ids[3]);
    db.interact(move |c| {
        class_role::assign(
            c,
            &class_role::NewClassRole {
                class_id: c1,
                user_id: ada_id,
                role: class_role::SPEAKER,
                created_at: t0,
            },
        )
    })
    .await
    .unwrap();
    let replaced = db
        .interact(move |c| {
            class_role::assign(
                c,
                &class_role::NewClassRole {
                    class_id: c1,
                    user_id: ada_id,
                    role: class_role::CO_HOST,
                    created_at: t0,
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(replaced.role, "co_host");
    assert_eq!(
        db.interact(move |c| class_role::list_for_class(c, c1))
            .await
            .unwrap()
            .len(),
        1,
        "one role per user and class"
    );
    assert_eq!(
        listed(class::Filter::MemberOf(ada_id)).await,
        vec![ids[4], ids[2], ids[1], ids[0]],
        "owned plus co-hosted"
    );
    assert_eq!(
        listed(class::Filter::Visible(ada_id)).await,
        vec![ids[4], ids[2], ids[1], ids[0]],
        "a role shows an invite-only class"
    );
    assert!(
        db.interact(move |c| class_role::remove(c, c1, ada_id))
            .await
            .unwrap()
    );
    assert!(
        !db.interact(move |c| class_role::remove(c, c1, ada_id))
            .await
            .unwrap()
    );

    // Invited members: see the class in both lists; inviting twice changes nothing.
    let invite = move |c: &mut Conn| {
        class_member::invite(
            c,
            &class_member::NewClassMember {
                class_id: c2,
                user_id: bob_id,
                created_at: t0,
            },
        )
    };
    assert!(db.interact(invite).await.unwrap(), "newly invited");
    assert!(!db.interact(invite).await.unwrap(), "already a member");
    assert!(
        db.interact(move |c| class_member::is_member(c, c2, bob_id))
            .await
            .unwrap()
    );
    assert!(
        !db.interact(move |c| class_member::is_member(c, c2, ada_id))
            .await
            .unwrap()
    );
    let members = db
        .interact(move |c| class_member::list_for_class(c, c2))
        .await
        .unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| (m.class_id, m.user_id))
            .collect::<Vec<_>>(),
        vec![(c2, bob_id)]
    );
    assert_eq!(
        listed(class::Filter::Visible(bob_id)).await,
        vec![ids[3], ids[2], ids[1], ids[0]]
    );
    assert_eq!(
        listed(class::Filter::MemberOf(bob_id)).await,
        vec![ids[3], ids[2], ids[1]],
        "owned plus invited"
    );
    assert!(
        db.interact(move |c| class_member::remove(c, c2, bob_id))
            .await
            .unwrap()
    );
    assert!(
        !db.interact(move |c| class_member::remove(c, c2, bob_id))
            .await
            .unwrap()
    );
    assert_eq!(
        listed(class::Filter::Visible(bob_id)).await,
        vec![ids[3], ids[1], ids[0]]
    );

    let updated = db
        .interact(move |c| {
            class::update(
                c,
                c3,
                &class::ClassChanges {
                    title: Some("Renamed"),
                    description: None,
                    visibility: Some(class::PUBLIC),
                    updated_at: Some(t0 + 1),
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(
        (
            updated.title.as_str(),
            updated.description.as_str(),
            updated.visibility.as_str(),
            updated.updated_at
        ),
        ("Renamed", "", "public", t0 + 1)
    );
    // Ada is invited to c3: the invitation goes when the class does (below).
    db.interact(move |c| {
        class_member::invite(
            c,
            &class_member::NewClassMember {
                class_id: c3,
                user_id: ada_id,
                created_at: t0,
            },
        )
    })
    .await
    .unwrap();

    // Sessions: transitions happen once.
    let session = db
        .interact(move |c| {
            class_session::create(
                c,
                &class_session::NewClassSession {
                    class_id: c3,
                    scheduled_start: t0,
                    scheduled_end: None,
                    state: class_session::SCHEDULED,
                    created_at: t0,
                },
            )
        })
        .await
        .unwrap();
    let sid = session.id;
    let live = db
        .interact(move |c| class_session::start(c, sid, t0 + 5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (live.state.as_str(), live.started_at),
        ("live", Some(t0 + 5))
    );
    assert!(
        db.interact(move |c| class_session::start(c, sid, t0 + 6))
            .await
            .unwrap()
            .is_none(),
        "starts once"
    );
    assert_eq!(
        db.interact(move |c| class_session::live_in_class(c, c3))
            .await
            .unwrap()
            .map(|s| s.id),
        Some(sid)
    );
    let ended = db
        .interact(move |c| class_session::end(c, sid, t0 + 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ended.state.as_str(), ended.ended_at),
        ("ended", Some(t0 + 9))
    );
    assert!(
        db.interact(move |c| class_session::end(c, sid, t0 + 10))
            .await
            .unwrap()
            .is_none(),
        "ends once"
    );
    assert!(
        db.interact(move |c| class_session::start(c, sid, t0 + 11))
            .await
            .unwrap()
            .is_none(),
        "no restart"
    );

    // Participants and recordings hang off the session.
    db.interact(move |c| {
        participant::create(
            c,
            &participant::NewParticipant {
                session_id: sid,
                user_id: bob_id,
                role: "viewer",
                joined_at: t0,
            },
        )
    })
    .await
    .unwrap();
    db.interact(move |c| {
        recording::create(
            c,
            &recording::NewRecording {
                session_id: sid,
                state: "recording",
                created_at: t0,
                updated_at: t0,
            },
        )
    })
    .await
    .unwrap();
    assert_eq!(
        db.interact(move |c| participant::list_for_session(c, sid))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        db.interact(move |c| recording::list_for_session(c, sid))
            .await
            .unwrap()[0]
            .state,
        "recording"
    );

    // Constraints hold: foreign keys and state checks.
    let orphan = db
        .interact(move |c| {
            class::create(
                c,
                &class::NewClass {
                    owner_id: 999_999,
                    title: "x",
                    description: "",
                    visibility: class::UNLISTED,
                    created_at: t0,
                    updated_at: t0,
                },
            )
        })
        .await;
    assert!(orphan.is_err(), "a class needs an existing owner");
    let bad_visibility = db
        .interact(move |c| {
            class::create(
                c,
                &class::NewClass {
                    owner_id: ada_id,
                    title: "x",
                    description: "",
                    visibility: "secret",
                    created_at: t0,
                    updated_at: t0,
                },
            )
        })
        .await;
    assert!(bad_visibility.is_err(), "visibility is checked");
    let bad_state = db
        .interact(move |c| {
            class_session::create(
                c,
                &class_session::NewClassSession {
                    class_id: c3,
                    scheduled_start: t0,
                    scheduled_end: None,
                    state: "paused",
                    created_at: t0,
                },
            )
        })
        .await;
    assert!(bad_state.is_err(), "state is checked");

    // Deleting a class takes its sessions and their records along.
    assert!(db.interact(move |c| class::delete(c, c3)).await.unwrap());
    assert!(
        db.interact(move |c| class_session::find(c, sid))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        db.interact(move |c| recording::list_for_session(c, sid))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !db.interact(move |c| class_member::is_member(c, c3, ada_id))
            .await
            .unwrap(),
        "invitations go with the class"
    );

    // A transaction that aborts leaves nothing behind.
    let aborted: Result<(), &str> = db
        .transaction(move |c| {
            class::create(
                c,
                &class::NewClass {
                    owner_id: ada_id,
                    title: "Half",
                    description: "",
                    visibility: class::UNLISTED,
                    created_at: t0,
                    updated_at: t0,
                },
            )?;
            Err(TxError::Abort("changed my mind"))
        })
        .await
        .unwrap();
    assert_eq!(aborted, Err("changed my mind"));
    let titles: Vec<String> = db
        .interact(|c: &mut Conn| {
            schema::schema::classes::table
                .select(schema::schema::classes::title)
                .load(c)
        })
        .await
        .unwrap();
    assert!(!titles.contains(&"Half".to_owned()), "{titles:?}");
}

/// Reverting every migration and applying them again works (each `down.sql` undoes its `up.sql`).
async fn migrations_redo(db: &Db) {
    db.interact(|c| {
        use diesel_migrations::MigrationHarness;
        let reverted = match c {
            Conn::Sqlite(c) => c
                .revert_all_migrations(schema::SQLITE_MIGRATIONS)
                .map(|v| v.len()),
            Conn::Postgres(c) => c
                .revert_all_migrations(schema::POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        assert!(reverted.expect("revert") >= 1);
        Ok(())
    })
    .await
    .unwrap();
    assert!(db.migrate().await.unwrap() >= 1, "migrations apply again");
}

/// Classes made before classes had a visibility become unlisted: their links keep working, and
/// they no longer show in everyone's list.
async fn existing_classes_become_unlisted(db: &Db) {
    db.interact(|c| {
        use diesel_migrations::MigrationHarness;
        // Back to before the visibility migration (and the ones after it).
        for version in [
            "20261128000001",
            "20261127000003",
            "20261127000002",
            "20261127000001",
        ] {
            let reverted = match c {
                Conn::Sqlite(c) => c.revert_last_migration(schema::SQLITE_MIGRATIONS),
                Conn::Postgres(c) => c.revert_last_migration(schema::POSTGRES_MIGRATIONS),
            };
            assert_eq!(reverted.expect("revert").to_string(), version);
        }
        diesel::sql_query(
            "INSERT INTO users (email, display_name, created_at) VALUES ('old@example.org', 'Old', 0)",
        )
        .execute(c)?;
        diesel::sql_query(
            "INSERT INTO classes (owner_id, title, created_at, updated_at) \
             SELECT id, 'Old class', 0, 0 FROM users WHERE email = 'old@example.org'",
        )
        .execute(c)?;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(db.migrate().await.unwrap(), 4);
    let visibility = db
        .interact(|c| {
            use schema::schema::{classes, users};
            let visibility = classes::table
                .filter(classes::title.eq("Old class"))
                .select(classes::visibility)
                .first::<String>(c)?;
            diesel::delete(users::table.filter(users::email.eq("old@example.org"))).execute(c)?;
            Ok(visibility)
        })
        .await
        .unwrap();
    assert_eq!(visibility, class::UNLISTED);
}

/// Chat pages, one upvote per person and question, one ballot per person and poll: the
/// database itself refuses a second one.
async fn chat_questions_and_polls(db: &Db) {
    db.interact(|c| {
        let now = 1_700_000_000_000i64;
        let mut users = Vec::new();
        for name in ["Host", "Ann"] {
            let email = format!("{}-iq@example.org", name.to_lowercase());
            users.push(
                user::create(
                    c,
                    &user::NewUser {
                        email: Some(&email),
                        email_verified: false,
                        display_name: name,
                        password_hash: None,
                        created_at: now,
                    },
                )?
                .id,
            );
        }
        let cl = class::create(
            c,
            &class::NewClass {
                owner_id: users[0],
                title: "Q",
                description: "",
                visibility: class::UNLISTED,
                created_at: now,
                updated_at: now,
            },
        )?;
        let s = class_session::create(
            c,
            &class_session::NewClassSession {
                class_id: cl.id,
                scheduled_start: now,
                scheduled_end: None,
                state: class_session::LIVE,
                created_at: now,
            },
        )?;
        let mut ids = Vec::new();
        for i in 0..5 {
            let body = format!("m{i}");
            let m = chat_message::create(
                c,
                &chat_message::NewChatMessage {
                    session_id: s.id,
                    user_id: users[1],
                    body: &body,
                    created_at: now + i,
                },
            )?;
            ids.push(m.id);
        }
        assert!(chat_message::delete(c, ids[3], now)?);
        assert!(!chat_message::delete(c, ids[3], now)?, "once");
        let page: Vec<String> = chat_message::page(c, s.id, None, 2)?
            .into_iter()
            .map(|(m, name)| format!("{}:{name}", m.body))
            .collect();
        assert_eq!(page, ["m4:Ann", "m2:Ann"], "newest first, deleted left out");
        let older: Vec<String> = chat_message::page(c, s.id, Some(ids[2]), 10)?
            .into_iter()
            .map(|(m, _)| m.body)
            .collect();
        assert_eq!(older, ["m1", "m0"]);

        let q = question::create(
            c,
            &question::NewQuestion {
                session_id: s.id,
                user_id: users[1],
                body: "why?",
                state: question::OPEN,
                created_at: now,
                anonymous: true,
            },
        )?;
        question::upvote(c, q.id, users[0], now)?;
        let twice = question::upvote(c, q.id, users[0], now);
        assert!(
            matches!(
                twice,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ),
            "{twice:?}"
        );
        question::upvote(c, q.id, users[1], now + 1)?;
        question::set_state(c, q.id, question::ANSWERED, None, now)?;
        let row = question::row(c, q.id)?.expect("the question");
        assert_eq!(row.voters, [users[0], users[1]]);
        assert_eq!(row.asker_name, "Ann");
        assert!(row.question.anonymous);
        assert_eq!(row.question.answered_at, Some(now));
        assert!(question::withdraw_upvote(c, q.id, users[0])?);
        assert_eq!(question::list_for_session(c, s.id)?[0].voters, [users[1]]);

        let p = poll::create(
            c,
            &poll::NewPoll {
                session_id: s.id,
                created_by: users[0],
                question: "which?",
                options: "[\"a\",\"b\",\"c\"]",
                state: poll::OPEN,
                created_at: now,
                multiple_choice: true,
            },
        )?;
        poll::vote(c, p.id, users[1], &[0, 2], now)?;
        assert!(poll::has_voted(c, p.id, users[1])?);
        let again = poll::vote(c, p.id, users[1], &[1], now);
        assert!(
            matches!(
                again,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ),
            "{again:?}"
        );
        assert!(poll::close(c, p.id, now)?);
        poll::set_shared(c, p.id, true)?;
        let row = poll::row(c, p.id)?.expect("the poll");
        assert_eq!(row.ballots, [(users[1], vec![0, 2])]);
        assert!(row.poll.results_shared && row.poll.state == poll::CLOSED);
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sqlite_backend_passes_the_data_suite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&DatabaseLocation::SqliteFile(dir.path().join("t.db")), 4)
        .await
        .unwrap();
    assert_eq!(db.backend(), "sqlite");
    migrations_redo(&db).await;
    existing_classes_become_unlisted(&db).await;
    suite(&db).await;
    chat_questions_and_polls(&db).await;
}

#[tokio::test]
async fn postgres_backend_passes_the_data_suite() {
    let pg = support::Postgres::start();
    let url = pg.create_database("suite");
    let db = Db::open(&DatabaseLocation::Postgres(url), 4).await.unwrap();
    assert_eq!(db.backend(), "postgres");
    migrations_redo(&db).await;
    existing_classes_become_unlisted(&db).await;
    suite(&db).await;
    chat_questions_and_polls(&db).await;
    db.close();
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let err = Db::open(&DatabaseLocation::Postgres(url), 1)
        .await
        .err()
        .expect("no server there");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Read-then-write transactions from many tasks at once, on SQLite: each must commit (none may
/// fail with "database is locked" because another committed between its read and its write), and
/// no increment may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_then_write_transactions_all_commit_on_sqlite() {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&DatabaseLocation::SqliteFile(dir.path().join("c.db")), 8)
        .await
        .unwrap();
    db.interact(|c| {
        diesel::sql_query("CREATE TABLE counter (n BIGINT NOT NULL)").execute(c)?;
        diesel::sql_query("INSERT INTO counter (n) VALUES (0)").execute(c)
    })
    .await
    .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                db.transaction::<_, (), _>(|c| {
                    let N { n } = diesel::sql_query("SELECT n FROM counter").get_result::<N>(c)?;
                    diesel::sql_query(format!("UPDATE counter SET n = {}", n + 1)).execute(c)?;
                    Ok(())
                })
                .await
            })
        })
        .collect();
    let mut failed = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(Ok(())) => {}
            other => failed.push(format!("{other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let total = db
        .interact(|c| diesel::sql_query("SELECT n FROM counter").get_result::<N>(c))
        .await
        .unwrap();
    assert_eq!(total.n, 64, "no increment lost");
}
