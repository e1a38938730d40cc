//! The ChainSource probe against the loopback node: a live endpoint reports
//! its head, a dead one is unhealthy with a reason (and no URL in it).

mod support;

use std::time::Duration;

use chronicle::controller::probe::probe_endpoints;
use chronicle::crd::ChainSource;
use support::rpc_peer::RpcPeer;
use support::{free_port, real_blocks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_report_head_and_health() {
    let peer = RpcPeer::start(real_blocks().into_iter().collect()).await;
    let dead = format!("http://127.0.0.1:{}/?api-key=SECRET", free_port());
    let source: ChainSource = serde_yaml::from_str(&format!(
        r#"
apiVersion: chronicle.dev/v1alpha1
kind: ChainSource
metadata: {{name: probe, namespace: default}}
spec:
  chain: {{family: solana, network: mainnet-beta}}
  endpoints:
    - {{name: live, url: "{}"}}
    - {{name: dead, url: "{dead}"}}
  store: {{embedded: {{size: 1Gi}}}}
  catalog: {{connectionSecretRef: {{name: catalog, key: url}}}}
"#,
        peer.url()
    ))
    .unwrap();
    let probe = probe_endpoints(
        chronicle::chain::adapter(source.spec.chain.family).unwrap(),
        &source,
        Duration::from_secs(2),
        &Default::default(),
    )
    .await;
    assert_eq!(probe.head, Some(154_808_473));
    let live = &probe.endpoints[0];
    assert!(live.healthy && live.head == Some(154_808_473) && live.last_error.is_none(), "{live:?}");
    let dead = &probe.endpoints[1];
    assert!(!dead.healthy && dead.head.is_none(), "{dead:?}");
    let reason = dead.last_error.as_deref().unwrap();
    assert!(reason.contains("connection failed") && !reason.contains("SECRET"), "{reason}");
}

/// The store probe against the real Bigtable emulator, and a closed port.
#[tokio::test]
async fn the_store_probe_reaches_bigtable_or_says_why_not() {
    use chronicle::controller::probe::probe_store;
    let emulator = support::BigtableEmulator::start();
    let reached = probe_store(&emulator.host(), Duration::from_secs(5)).await.unwrap();
    assert!(reached.contains("reachable"), "{reached}");
    let closed = format!("127.0.0.1:{}", free_port());
    let refused = probe_store(&closed, Duration::from_secs(5)).await.unwrap_err();
    assert!(refused.starts_with(&format!("store endpoint {closed}: ")), "{refused}");
}
