//! A PostgreSQL server that becomes unreachable: calls are refused at once rather than each
//! waiting for a connection, and the store works again once the server is back.

use reelrank_store::{testing, Store, StoreError};
use tokio::net::{TcpListener, TcpStream};

/// Forwards connections from `listener` to `upstream` until the returned task is aborted, which
/// drops every forwarded connection with it: the server, seen through it, is gone.
fn forward(listener: TcpListener, upstream: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            connections.spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&upstream).await {
                    tokio::io::copy_bidirectional(&mut client, &mut server).await.ok();
                }
            });
        }
    })
}

#[tokio::test]
async fn an_unreachable_database_is_refused_at_once_until_it_is_back() {
    let Some(url) = testing::postgres_url().await else { return };
    let (credentials, rest) = url.split_once('@').expect("user in the URL");
    let (upstream, database) = rest.split_once('/').expect("database in the URL");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let proxy = forward(listener, upstream.to_owned());
    let store = Store::open(&format!("{credentials}@{address}/{database}")).await.unwrap();
    assert_eq!(store.counts().await.unwrap().events, 0);

    proxy.abort();
    proxy.await.ok();
    let first = store.counts().await.unwrap_err();
    assert!(matches!(first, StoreError::Database(_)), "the first call finds out: {first}");
    let next = store.counts().await.unwrap_err();
    assert!(matches!(next, StoreError::Unavailable), "the next is refused at once: {next}");

    let _proxy = forward(TcpListener::bind(address).await.unwrap(), upstream.to_owned());
    let mut answer = store.counts().await;
    for _ in 0..100 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = store.counts().await;
    }
    assert_eq!(answer.expect("back once the server is").events, 0);
}
