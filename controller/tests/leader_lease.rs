//! The leader lease on a real PostgreSQL (testkit::postgres): three replicas compete, exactly one
//! leads; when it dies (its session closes) another leads within the configured takeover time;
//! a leader whose database goes away steps down, and one leads again once it is back.

use std::time::{Duration, Instant};

use skycat_controller::leader::{Leadership, LeaseOptions};
use skycat_testkit::postgres::Postgres;

const TAKEOVER: Duration = Duration::from_millis(1500);

async fn leaders_within(replicas: &[Leadership], within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    loop {
        let leaders: Vec<usize> = replicas.iter().enumerate().filter(|(_, r)| r.is_leader()).map(|(i, _)| i).collect();
        if leaders.len() == 1 || Instant::now() > deadline {
            return leaders;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_among_three_and_a_follower_takes_over_within_the_takeover_time() {
    let pg = Postgres::start();
    let url = pg.create_database("lease");
    let opts = LeaseOptions { takeover: TAKEOVER };
    let replicas: Vec<Leadership> = (0..3).map(|_| Leadership::compete(&url, opts).unwrap()).collect();
    let first = leaders_within(&replicas, TAKEOVER * 2).await;
    assert_eq!(first.len(), 1, "exactly one leader: {first:?}");
    // Held steadily: no flapping over a few beats.
    tokio::time::sleep(TAKEOVER).await;
    assert_eq!(leaders_within(&replicas, Duration::ZERO).await, first);
    let leader = first[0];
    assert!(replicas[leader].lease_age().unwrap() >= TAKEOVER);
    assert!(replicas[leader].render_metrics().contains("skycat_replica_leader 1"));

    // The leader dies: its session (and with it the advisory lock) is gone.
    let t0 = Instant::now();
    replicas[leader].resign();
    let deadline = t0 + TAKEOVER + Duration::from_millis(500);
    let next = loop {
        let l: Vec<usize> = (0..3).filter(|&i| i != leader && replicas[i].is_leader()).collect();
        if !l.is_empty() || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let took = t0.elapsed();
    assert_eq!(next.len(), 1, "one follower took over (after {took:?})");
    assert!(took <= TAKEOVER + Duration::from_millis(500), "takeover took {took:?}");
    assert_eq!(replicas[next[0]].changes(), 1);
    assert_eq!(replicas[leader].role(), "follower");

    // The database goes away: nobody can know it leads, so nobody does.
    pg.stop();
    let deadline = Instant::now() + TAKEOVER * 3;
    while replicas.iter().any(Leadership::is_leader) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!replicas.iter().any(Leadership::is_leader), "a leader without its database stepped down");
    pg.restart();
    let again: Vec<usize> = leaders_within(&replicas[..], TAKEOVER * 4).await.into_iter().filter(|&i| i != leader).collect();
    assert_eq!(again.len(), 1, "one leader again once the database is back");
}
