//! Load: 1,000 concurrent watching clients on one server; one rotation
//! reaches every one of them.

mod common;

use std::sync::Arc;

use common::{World, serve, unix_address};
use futures_util::future::join_all;
use workload_api::WorkloadApiClient;

const CLIENTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_1000_watching_clients() {
    common::within(300, async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry,
        } = World::new("load");
        let running = serve(Arc::clone(&provider), &socket);
        let address = unix_address(&socket);

        let mut streams = Vec::with_capacity(CLIENTS);
        for _ in 0..CLIENTS {
            let mut client = WorkloadApiClient::connect(&address).await.unwrap();
            streams.push(client.watch_x509_context().await.unwrap());
        }
        let firsts = join_all(streams.iter_mut().map(|s| s.next())).await;
        let old_leaf = firsts[0].as_ref().unwrap().as_ref().unwrap().svids[0]
            .svid
            .leaf()
            .clone();
        assert!(
            firsts
                .iter()
                .all(|f| matches!(f, Some(Ok(c)) if c.svids[0].svid.leaf() == &old_leaf))
        );
        assert_eq!(running.server.open_streams(), CLIENTS);

        let new_svid = domain.svid("/web");
        let new_leaf = new_svid.leaf().clone();
        provider.rotate(&entry, new_svid).unwrap();
        let updates = join_all(streams.iter_mut().map(|s| s.next())).await;
        let reached = updates
            .iter()
            .filter(|u| matches!(u, Some(Ok(c)) if c.svids[0].svid.leaf() == &new_leaf))
            .count();
        assert_eq!(reached, CLIENTS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_up_the_others() {
    common::within(300, async move {
        let World {
            dir: _dir,
            socket,
            domain,
            provider,
            entry,
        } = World::new("slow");
        let _running = serve(Arc::clone(&provider), &socket);
        let address = unix_address(&socket);
        // The stalled client opens a stream and then never reads again.
        let mut stalled_client = WorkloadApiClient::connect(&address).await.unwrap();
        let mut stalled = stalled_client.watch_x509_context().await.unwrap();
        let mut client = WorkloadApiClient::connect(&address).await.unwrap();
        let mut active = client.watch_x509_context().await.unwrap();
        active.next().await.unwrap().unwrap();
        // Many rotations: more data than the stalled connection's windows hold.
        const ROTATIONS: usize = 200;
        let mut last = None;
        for _ in 0..ROTATIONS {
            let svid = domain.svid("/web");
            last = Some(svid.leaf().clone());
            provider.rotate(&entry, svid).unwrap();
        }
        let last = last.unwrap();
        loop {
            let ctx = active.next().await.unwrap().unwrap();
            if ctx.svids[0].svid.leaf() == &last {
                break;
            }
        }
        // The stalled client reads again and reaches the newest state: the
        // server dropped nothing it must deliver. (How many older messages
        // arrive first depends on the client's flow-control windows and on
        // when the server found the stream blocked, so it is not asserted.)
        let mut reads = 0;
        loop {
            let ctx = stalled.next().await.unwrap().unwrap();
            reads += 1;
            if ctx.svids[0].svid.leaf() == &last {
                break;
            }
        }
        assert!(
            reads <= ROTATIONS + 1,
            "{reads} messages for {ROTATIONS} rotations"
        );
    })
    .await;
}
