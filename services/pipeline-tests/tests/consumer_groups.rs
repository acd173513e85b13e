//! Scenario 3: trackers in one group share the partitions and together track every order;
//! trackers in different groups each see every order.

mod common;

use common::{Pipeline, assigned_partitions, counts, eventually, stop_gracefully, tracked};
use std::collections::HashSet;
use std::time::Duration;

#[test]
fn two_trackers_in_one_group_split_the_partitions_and_track_every_order_once() {
    let pipeline = Pipeline::new(6);
    let mut first = pipeline.tracker("shared").spawn();
    let mut second = pipeline.tracker("shared").spawn();
    // Both must be in the group, each holding a share, before orders flow.
    let both_assigned = || {
        first.wait_until(Duration::from_secs(30), |e| {
            !assigned_partitions(e).is_empty()
        }) && second.wait_until(Duration::from_secs(30), |e| {
            !assigned_partitions(e).is_empty()
        })
    };
    assert!(both_assigned(), "{}\n{}", first.report(), second.report());
    // Let a cooperative rebalance settle (the first member may give partitions away).
    std::thread::sleep(Duration::from_secs(4));

    let delivered = pipeline.produce(400);
    let all_tracked = eventually(Duration::from_secs(60), || {
        tracked(&first.events()).len() + tracked(&second.events()).len() >= 400
    });
    assert!(all_tracked, "{}\n{}", first.report(), second.report());
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut first);
    stop_gracefully(&mut second);

    let from_first = tracked(&first.events());
    let from_second = tracked(&second.events());
    assert!(
        !from_first.is_empty() && !from_second.is_empty(),
        "both did work"
    );
    let partitions_of = |orders: &[common::Tracked]| -> HashSet<String> {
        orders
            .iter()
            .map(|o| o.source.rsplit_once('@').expect("source").0.to_string())
            .collect()
    };
    let (p1, p2) = (partitions_of(&from_first), partitions_of(&from_second));
    assert!(
        p1.is_disjoint(&p2),
        "a partition was read by both: {p1:?} {p2:?}"
    );
    assert_eq!(
        p1.len() + p2.len(),
        6,
        "together they read all six partitions"
    );

    let together: Vec<_> = from_first.into_iter().chain(from_second).collect();
    let per_order = counts(&together);
    assert!(
        per_order.values().all(|n| *n == 1),
        "an order was tracked twice"
    );
    let delivered_ids: HashSet<_> = delivered.into_iter().map(|d| d.order_id).collect();
    assert_eq!(
        per_order.keys().cloned().collect::<HashSet<_>>(),
        delivered_ids
    );
}

#[test]
fn two_groups_each_see_every_order() {
    let pipeline = Pipeline::new(3);
    let delivered = pipeline.produce(150);
    let mut billing = pipeline.tracker("billing").spawn();
    let mut kitchen = pipeline.tracker("kitchen").spawn();
    for tracker in [&billing, &kitchen] {
        assert!(
            common::wait_for_tracked(tracker, 150, Duration::from_secs(60)),
            "{}",
            tracker.report()
        );
    }
    stop_gracefully(&mut billing);
    stop_gracefully(&mut kitchen);
    let delivered_ids: HashSet<_> = delivered.into_iter().map(|d| d.order_id).collect();
    for tracker in [&billing, &kitchen] {
        let per_order = counts(&tracked(&tracker.events()));
        assert!(per_order.values().all(|n| *n == 1));
        assert_eq!(
            per_order.keys().cloned().collect::<HashSet<_>>(),
            delivered_ids
        );
    }
}

#[test]
fn a_stopped_tracker_leaves_the_group_at_once_and_its_partitions_move_without_loss() {
    let pipeline = Pipeline::new(4);
    // librdkafka's group debug log shows the LeaveGroup request.
    let mut leaving = pipeline
        .tracker("scale-down")
        .env("KAFKA_DEBUG", "cgrp")
        .env("RUST_LOG", "info,librdkafka=debug")
        .spawn();
    assert!(leaving.wait_for_message("partitions assigned", Duration::from_secs(40)));
    let mut staying = pipeline.tracker("scale-down").spawn();
    assert!(
        eventually(Duration::from_secs(60), || {
            !assigned_partitions(&staying.events()).is_empty()
                && leaving
                    .events()
                    .iter()
                    .any(|e| e.message.starts_with("partitions revoked"))
        }),
        "{}\n{}",
        leaving.report(),
        staying.report()
    );
    let first = pipeline.produce(100);
    assert!(eventually(Duration::from_secs(30), || {
        tracked(&leaving.events()).len() + tracked(&staying.events()).len() >= 100
    }));

    stop_gracefully(&mut leaving);
    let events = leaving.events();
    let position = |text: &str| events.iter().position(|e| e.message.contains(text));
    assert!(
        position("final commit done").is_some(),
        "final commit logged"
    );
    // librdkafka sends LeaveGroup while closing and does not wait for the answer, so the
    // request ("leave (in state up)") is what the tracker's shutdown guarantees.
    assert!(
        position("\": leave (in state").is_some(),
        "the tracker did not send LeaveGroup when it closed\n{}",
        leaving.report()
    );

    let before = assigned_partitions(&staying.events()).len();
    assert!(
        staying.wait_until(Duration::from_secs(40), |e| assigned_partitions(e).len()
            > before),
        "the survivor did not get the partitions\n{}",
        staying.report()
    );
    let second = pipeline.produce(100);
    assert!(eventually(Duration::from_secs(30), || {
        tracked(&staying.events()).len() + tracked(&leaving.events()).len() >= 200
    }));
    std::thread::sleep(Duration::from_secs(1));
    stop_gracefully(&mut staying);
    let together: Vec<_> = tracked(&leaving.events())
        .into_iter()
        .chain(tracked(&staying.events()))
        .collect();
    let per_order = counts(&together);
    assert!(
        per_order.values().all(|n| *n == 1),
        "no order tracked twice"
    );
    let produced: HashSet<String> = first
        .into_iter()
        .chain(second)
        .map(|d| d.order_id)
        .collect();
    assert_eq!(
        per_order.keys().cloned().collect::<HashSet<_>>(),
        produced,
        "none lost"
    );
}
