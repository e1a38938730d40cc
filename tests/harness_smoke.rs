//! Each real component the harness starts answers a real client.

mod support;

use support::{BigtableEmulator, Postgres, Redis, cbt};

#[test]
fn bigtable_emulator_stores_and_returns_a_cell() {
    let emulator = BigtableEmulator::start();
    let run = |args: &[&str]| cbt(&emulator, "p", "i", args);
    run(&["createtable", "blocks"]);
    run(&["createfamily", "blocks", "x"]);
    run(&["set", "blocks", "000000000000002a", "x:proto=smoke"]);
    let read = run(&["read", "blocks"]);
    assert!(read.contains("000000000000002a"), "row key missing from cbt read: {read}");
    assert!(read.contains("x:proto") && read.contains("smoke"), "cell missing from cbt read: {read}");
}

#[tokio::test]
async fn postgres_runs_queries() {
    let pg = Postgres::start();
    let (client, connection) =
        tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE checkpoints (job text PRIMARY KEY, slot bigint NOT NULL)").await.unwrap();
    client.execute("INSERT INTO checkpoints VALUES ($1, $2)", &[&"smoke", &42i64]).await.unwrap();
    let row = client.query_one("SELECT slot FROM checkpoints WHERE job = $1", &[&"smoke"]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 42);
    let version: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    assert!(!version.is_empty());
}

#[tokio::test]
async fn redis_sets_and_gets() {
    let server = Redis::start();
    let client = redis::Client::open(server.url()).expect("redis URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect to Redis");
    let _: () = redis::cmd("SET").arg("smoke").arg("ok").query_async(&mut conn).await.unwrap();
    let value: String = redis::cmd("GET").arg("smoke").query_async(&mut conn).await.unwrap();
    assert_eq!(value, "ok");
}
