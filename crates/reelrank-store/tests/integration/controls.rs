//! Users' controls: stored apart from the user record, which a sync never undoes.

use reelrank_core::{Timestamp, User};
use reelrank_store::testing;

#[tokio::test]
async fn controls_survive_user_syncs() {
    for t in testing::all().await {
        let store = &t.store;
        let controls = store
            .change_controls("u1", |c| {
                c.hidden_tags.push("horror".into());
                c.reset_at = Some(Timestamp(5_000));
            })
            .await
            .unwrap();
        assert_eq!(controls.hidden_tags, ["horror"], "{}", t.name);
        store.set_personalization("u1", false).await.unwrap();
        let mut user = User::new("u1");
        user.region = Some("DE".into());
        user.minor = Some(true);
        store.upsert_users(&[user]).await.unwrap();
        store.upsert_users(&[User::new("u1")]).await.unwrap();
        let back = store.user("u1").await.unwrap().unwrap();
        assert_eq!((back.personalization, back.minor), (Some(false), Some(true)), "{}", t.name);
        assert_eq!(back.controls, controls, "{}", t.name);
        let again = store.change_controls("u1", |c| c.hidden_tags.clear()).await.unwrap();
        assert!(again.hidden_tags.is_empty() && again.reset_at == Some(Timestamp(5_000)));
        assert_eq!(store.profile_resets().await.unwrap(), [("u1".to_owned(), Timestamp(5_000))]);
    }
}

#[tokio::test]
async fn users_are_found_by_prefix() {
    for t in testing::all().await {
        let store = &t.store;
        let users: Vec<User> = ["ab_1", "ab%2", "abc", "b", "aB"].into_iter().map(User::new).collect();
        store.upsert_users(&users).await.unwrap();
        let ids = |found: Vec<User>| found.into_iter().map(|u| u.user_id).collect::<Vec<_>>();
        assert_eq!(ids(store.users_with_prefix("ab_", 10).await.unwrap()), ["ab_1"], "{}", t.name);
        assert_eq!(ids(store.users_with_prefix("ab%", 10).await.unwrap()), ["ab%2"], "{}", t.name);
        assert_eq!(ids(store.users_with_prefix("ab", 2).await.unwrap()).len(), 2, "{}", t.name);
        assert_eq!(ids(store.users_with_prefix("", 10).await.unwrap()).len(), 5, "{}", t.name);
    }
}
