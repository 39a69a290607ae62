//! Policy distribution and service discovery end to end, with real
//! processes: the server reads Istio YAML from a directory and the agent
//! relays each accepted version to sidecars on its feed socket; a workload
//! registers its endpoint through the agent and watchers see it.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use mesh_node::discovery::{Discovery, Endpoint, ServiceKey};
use mesh_node::feed_client::FeedClient;
use mesh_node::node_api::NodeApiError;

const POLICY: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-policy
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/bookinfo/sa/productpage\"]
    to:
    - operation:
        methods: [\"GET\"]
";

fn endpoint(id: &str, port: u16) -> Endpoint {
    Endpoint {
        service: "reviews".into(),
        namespace: "bookinfo".into(),
        address: "127.0.0.1".into(),
        port,
        protocol: "http".into(),
        spiffe_id: id.parse().unwrap(),
        labels: BTreeMap::from([("app".into(), "reviews".into())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_endpoints_reach_sidecars_through_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("reviews.yaml"), POLICY).unwrap();
    let port = free_port();
    let server = start_server_with(
        &tmp.path().join("server"),
        port,
        &format!("policy_dir = {:?}\n", policies.display().to_string()),
    );
    let bundle = tmp.path().join("bundle.pem");
    std::fs::write(&bundle, cli_ok(&server.dir, &["bundle", "show"])).unwrap();
    let agent = start_agent(
        &tmp.path().join("agent"),
        port,
        &bundle,
        Some(&token(&server)),
    );
    let node = agents(&server)[0].clone();
    let me = "spiffe://example.org/ns/bookinfo/sa/reviews";
    cli_ok(
        &server.dir,
        &[
            "entry",
            "create",
            "--spiffe-id",
            me,
            "--parent-id",
            &node,
            "--selector",
            &format!("unix:uid:{}", my_uid()),
        ],
    );
    let feed = FeedClient::new(agent.dir.join("feed.sock"));

    // The policy set in force arrives at once, then every accepted change.
    let end = Instant::now() + Duration::from_secs(15);
    let mut watch = loop {
        match feed.watch_policies().await {
            Ok(w) => break w,
            // Until the agent has signed this workload's SVID it has no
            // identity on the node.
            Err(NodeApiError::PermissionDenied(_)) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("feed: {e}"),
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.files.len(), 1);
    assert_eq!(first.parse().unwrap().authorization.len(), 1);

    let edited = Instant::now();
    std::fs::write(
        policies.join("ratings.yaml"),
        POLICY.replace("reviews", "ratings"),
    )
    .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let took = edited.elapsed();
    eprintln!("policy file written to new version at the sidecar: {took:?}");
    assert_eq!(second.version, 2);
    assert_eq!(second.parse().unwrap().authorization.len(), 2);
    assert!(took < Duration::from_secs(2), "{took:?}");

    // A change that does not validate keeps version 2 and is reported.
    std::fs::write(
        policies.join("broken.yaml"),
        "kind: AuthorizationPolicy\nspec: [\n",
    )
    .unwrap();
    wait_until("the refused change to be reported", 10, || {
        cli_ok(&server.dir, &["policy", "status", "--output", "json"]).contains("broken.yaml")
    });
    let status: serde_json::Value = serde_json::from_str(&cli_ok(
        &server.dir,
        &["policy", "status", "--output", "json"],
    ))
    .unwrap();
    assert_eq!(status["version"], 2);
    assert!(
        tokio::time::timeout(Duration::from_millis(600), watch.next())
            .await
            .is_err(),
        "no new version is sent for a refused change"
    );

    // Discovery: the workload registers its own endpoint through the agent.
    let mut endpoints = feed.watch(vec![ServiceKey {
        service: "reviews".into(),
        namespace: "bookinfo".into(),
    }]);
    let none = tokio::time::timeout(Duration::from_secs(5), endpoints.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(none.endpoints.is_empty());
    let (lease, ttl) = feed
        .register(&endpoint(me, 9080), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(ttl, Duration::from_secs(30));
    let seen = tokio::time::timeout(Duration::from_secs(5), endpoints.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.endpoints, vec![endpoint(me, 9080)]);
    // Not with someone else's identity.
    let err = feed
        .register(
            &endpoint("spiffe://example.org/ns/bookinfo/sa/ratings", 9081),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NodeApiError::PermissionDenied(_)), "{err}");
    assert!(feed.renew(&lease).await.is_ok());
    feed.deregister(&lease).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(5), endpoints.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(gone.endpoints.is_empty());
    assert!(
        feed.renew(&lease).await.is_err(),
        "a lease ends with deregistration"
    );
}
