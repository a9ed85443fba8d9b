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

/// A loopback TCP proxy that can go silent: while `cut` is set it forwards nothing either way
/// and closes nothing, as a network partition does (no FIN, no RST reaches either side).
async fn partition_proxy(target: u16, cut: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to) in [
                (Box::new(cr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>, Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
                (Box::new(sr), Box::new(cw)),
            ] {
                let cut = cut.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while cut.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if to.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_database_steps_down_before_a_follower_takes_over() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pg = Postgres::start();
    let url = pg.create_database("partition");
    let cut = std::sync::Arc::new(AtomicBool::new(false));
    let proxy = partition_proxy(pg.port(), cut.clone()).await;
    let via_proxy = url.replace(&format!(":{}/", pg.port()), &format!(":{proxy}/"));
    assert_ne!(via_proxy, url);
    let opts = LeaseOptions { takeover: TAKEOVER };
    // The replica behind the proxy leads first; the other reaches the database directly.
    let cut_off = Leadership::compete(&via_proxy, opts).unwrap();
    assert_eq!(leaders_within(std::slice::from_ref(&cut_off), TAKEOVER * 2).await, vec![0]);
    let other = Leadership::compete(&url, opts).unwrap();
    tokio::time::sleep(TAKEOVER).await;
    assert!(cut_off.is_leader() && !other.is_leader(), "the first replica keeps the lease");

    // The partition: the old leader's session stays open on both ends, nothing flows.
    let t0 = Instant::now();
    cut.store(true, Ordering::SeqCst);
    let (mut stepped_down, mut took_over) = (None, None);
    while took_over.is_none() && t0.elapsed() < TAKEOVER * 3 {
        let (old, new) = (cut_off.is_leader(), other.is_leader());
        assert!(!(old && new), "two leaders at once, {:?} after the cut", t0.elapsed());
        if !old && stepped_down.is_none() {
            stepped_down = Some(t0.elapsed());
        }
        if new {
            took_over = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let stepped_down = stepped_down.expect("the cut-off leader stepped down");
    let took_over = took_over.expect("the other replica took over (its server ended the cut-off session)");
    assert!(stepped_down < took_over, "stepped down at {stepped_down:?}, taken over at {took_over:?}");
    assert!(took_over <= TAKEOVER + Duration::from_millis(300), "taken over {took_over:?} after the cut (takeover {TAKEOVER:?})");
    // The server ended the cut-off session (idle_session_timeout): one session holds the lease.
    let holders = pg.psql("partition", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted");
    assert_eq!(holders, "1", "one holder of the lease");

    // The network heals: the old replica stays a follower.
    cut.store(false, Ordering::SeqCst);
    tokio::time::sleep(TAKEOVER).await;
    assert!(other.is_leader() && !cut_off.is_leader());
}
