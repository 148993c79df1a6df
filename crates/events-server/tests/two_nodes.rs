//! Two nodes on one PostgreSQL deliver each (event, subscription) pair one at a time, in
//! order, and a node that dies mid-delivery leaves its queue to the other. Each node is an
//! `Events` with its own connection pools and its own tokio runtime, so that dropping the
//! runtime kills everything the node was doing, as a crash would. The subscriber is a real
//! webhook receiver on loopback that notes every delivery's start and end.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use events_protocol::subscription::parse_request;
use events_protocol::Accepted;
use events_server::{Events, EventsConfig};
use events_store::{EventStore, PgEventStore, SubscriptionWrite};
use serde_json::json;
use spine_events::Event;
use spine_store::PgCoordination;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Seen {
    in_flight: HashSet<String>,
    /// First arrival order of event ids, and every arrival.
    arrivals: Vec<String>,
    overlaps: Vec<String>,
}

/// Takes the id out of the in-flight set however the request ends: a request cut off
/// by the sender's crash is dropped by the server, and is then no longer in flight.
struct InFlight {
    seen: Arc<Mutex<Seen>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.seen.lock().unwrap().in_flight.remove(&self.id);
    }
}

async fn hook(State(seen): State<Arc<Mutex<Seen>>>, body: axum::body::Bytes) -> StatusCode {
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let mut s = seen.lock().unwrap();
        if !s.in_flight.insert(id.clone()) {
            s.overlaps.push(id.clone());
        }
    }
    let _guard = InFlight {
        seen: seen.clone(),
        id: id.clone(),
    };
    // Slow enough that a second node acting on the same delivery would overlap.
    tokio::time::sleep(Duration::from_millis(20)).await;
    seen.lock().unwrap().arrivals.push(id);
    StatusCode::NO_CONTENT
}

fn config(lease: Duration) -> EventsConfig {
    EventsConfig {
        webhooks: true,
        webhook_key: b"a test key that is long enough for us".to_vec(),
        lease,
        poll_interval: Duration::from_millis(50),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        attempt_timeout: Duration::from_secs(5),
        ..EventsConfig::default()
    }
}

/// A node: its own runtime, pools and dispatcher.
fn node(url: &str, lease: Duration) -> (tokio::runtime::Runtime, Events) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let events = rt.block_on(async {
        let store: Arc<dyn EventStore> = Arc::new(PgEventStore::connect(url, 4).await.unwrap());
        let coord = Arc::new(PgCoordination::connect(url, 4).await.unwrap());
        let events = Events::new(config(lease), store, coord, None);
        events.spawn_dispatcher();
        events
    });
    (rt, events)
}

fn event(n: usize) -> Accepted {
    Accepted {
        event: Event::new(
            format!("e-{n:04}"),
            "uk.nhs.two-nodes".into(),
            "mns-test-signal-1".into(),
            "2026-12-04T10:00:00Z".into(),
        ),
        legacy: None,
    }
}

#[test]
fn two_nodes_deliver_each_event_once_at_a_time_in_order_and_survive_a_crash() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let Some(url) = main.block_on(spine_store::testing::fresh_database("evn")) else {
        return;
    };
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let receiver = main.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    });

    let lease = Duration::from_secs(1);
    let (rt_a, a) = node(&url, lease);
    let (rt_b, b) = node(&url, lease);
    let request = parse_request(
        &json!({"resourceType": "Subscription", "status": "requested", "reason": "",
                "criteria": "eventType=mns-test-signal-1",
                "channel": {"type": "message", "endpoint": receiver, "payload": "application/json"}}),
        None,
    )
    .unwrap();
    let sub = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        rt_a.block_on(
            a.store()
                .create_subscription("app", &sub, &request, Utc::now())
        )
        .unwrap(),
        SubscriptionWrite::Done
    );

    // Both nodes publish, interleaved.
    for n in 0..120 {
        let (rt, node) = if n % 2 == 0 { (&rt_a, &a) } else { (&rt_b, &b) };
        rt.block_on(node.publish(&event(n), "app")).unwrap();
    }
    // Let deliveries get going, then kill node A with whatever it is doing.
    std::thread::sleep(Duration::from_millis(300));
    rt_a.shutdown_background();
    // Node B finishes the queue, taking it over once A's lease has run out.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = rt_b.block_on(b.store().head(&sub, 1)).unwrap().is_empty();
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue did not drain"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = seen.lock().unwrap();
    assert!(
        s.overlaps.is_empty(),
        "delivered twice at once: {:?}",
        s.overlaps
    );
    let mut first: Vec<String> = Vec::new();
    for id in &s.arrivals {
        if !first.contains(id) {
            first.push(id.clone());
        }
    }
    let expected: Vec<String> = (0..120).map(|n| format!("e-{n:04}")).collect();
    assert_eq!(first, expected, "every event, in order of acceptance");
    let duplicates = s.arrivals.len() - first.len();
    assert!(
        duplicates <= 1,
        "at most the delivery in flight at the crash is repeated: {duplicates}"
    );
    drop(s);
    rt_b.shutdown_background();
}
