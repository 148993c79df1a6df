//! What a subscriber receives (API.md §5): the FHIR notification `Bundle` or the event as
//! JSON, and for webhooks the signature that proves OpenSpine sent it.

use crate::subscription::Payload;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use spine_events::Event;

/// The body of one delivery in the subscription's form. `subscriptions_url`: this
/// service's `…/subscriptions` URL; `notification_id`: a fresh UUID v4 for the Bundle's
/// `Parameters` entry (**OpenSpine**: fresh on every delivery, as in some NHS examples).
pub fn body(
    payload: Payload,
    event: &Event,
    legacy: Option<&Value>,
    subscriptions_url: &str,
    notification_id: &str,
) -> Value {
    match payload {
        Payload::Json => json_form(event, legacy),
        Payload::Fhir => fhir_bundle(event, subscriptions_url, notification_id),
    }
}

/// §5.2: a v1 event as it was published; a CloudEvent without `filtering`
/// (**OpenSpine**, the NHS examples show it so).
pub fn json_form(event: &Event, legacy: Option<&Value>) -> Value {
    if let Some(body) = legacy {
        return body.clone();
    }
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("filtering");
    }
    v
}

/// §5.1: a `history` Bundle whose first entry is the subscription-status `Parameters`
/// with its five parameters in order.
pub fn fhir_bundle(event: &Event, subscriptions_url: &str, notification_id: &str) -> Value {
    let mut notification_event = vec![
        json!({"name": "event-number", "valueString": "1"}),
        json!({"name": "timestamp", "valueInstant": event.time}),
    ];
    if let Some(dataref) = &event.dataref {
        notification_event.push(json!({"name": "focus", "valueReference": {"reference": dataref}}));
    }
    let mut context = vec![
        json!({"name": "event-type", "valueString": event.event_type}),
        json!({"name": "source", "valueUri": event.source}),
    ];
    if let Some(subject) = &event.subject {
        context
            .push(json!({"name": "subject", "valueReference": {"identifier": {"value": subject}}}));
    }
    if let Some(version) = &event.versionid {
        context.push(json!({"name": "version-id", "valueString": version}));
    }
    json!({
        "resourceType": "Bundle",
        "id": event.id,
        "type": "history",
        "timestamp": event.time,
        "entry": [{
            "fullUrl": format!("urn:uuid:{notification_id}"),
            "resource": {
                "resourceType": "Parameters",
                "id": notification_id,
                "meta": {"profile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"]},
                "parameter": [
                    {"name": "subscription", "valueReference": {"reference": subscriptions_url}},
                    {"name": "status", "valueCode": "active"},
                    {"name": "type", "valueCode": "event-notification"},
                    {"name": "notification-event", "part": notification_event},
                    {"name": "additional-context", "part": context},
                ]
            },
            "request": {"method": "GET", "url": subscriptions_url},
            "response": {"status": "200"}
        }]
    })
}

/// The header a webhook delivery is signed in: `t=<unix seconds>,v1=<hex>`, where the hex
/// is HMAC-SHA256 under the subscription's secret of `<t>.<body>`. A receiver recomputes
/// it, compares in constant time, and refuses a `t` far from its clock (replays).
pub const SIGNATURE_HEADER: &str = "X-OpenSpine-Signature";

/// The subscription id a webhook delivery is for.
pub const SUBSCRIPTION_HEADER: &str = "X-OpenSpine-Subscription";

/// A subscription's webhook secret: derived from the service's key and the subscription
/// id, so it needs no storage and changes with the key. Given to the subscriber once, in
/// the answer to the create.
pub fn webhook_secret(service_key: &[u8], subscription_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(service_key).expect("any key length");
    mac.update(b"openspine-webhook-secret:");
    mac.update(subscription_id.as_bytes());
    format!("whsec_{}", hex::encode(mac.finalize().into_bytes()))
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Whether `header` signs `body` under `secret` within `tolerance` seconds of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    use subtle::ConstantTimeEq;
    (now - t).abs() <= tolerance && bool::from(mac(secret, t, body).as_slice().ct_eq(&v1))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new(
            "9f3c1b0e-8a44-4c1e-9d51-5a7d2f3e6b10".into(),
            "https://fhir.nhs.uk/Id/nhsSpineASID/477121000324".into(),
            "pds-change-of-gp-2".into(),
            "2026-03-01T09:30:00.000Z".into(),
        );
        e.subject = Some("9912003888".into());
        e.dataref =
            Some("https://example.nhs.uk/personal-demographics/FHIR/R4/Patient/9912003888".into());
        e.filtering.insert("nhsnumber".into(), "9912003888".into());
        e
    }

    #[test]
    fn the_fhir_form_has_five_parameters_in_order() {
        let url = "https://example.nhs.uk/multicast-notification-service/subscriptions";
        let b = fhir_bundle(&event(), url, "5f2b9a0e-0b7e-4d6c-8f43-2c1a9e7d6b55");
        assert_eq!(b["type"], "history");
        assert_eq!(b["id"], event().id);
        let entry = &b["entry"][0];
        assert_eq!(
            entry["fullUrl"],
            "urn:uuid:5f2b9a0e-0b7e-4d6c-8f43-2c1a9e7d6b55"
        );
        assert_eq!(entry["response"]["status"], "200");
        let names: Vec<&str> = entry["resource"]["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "subscription",
                "status",
                "type",
                "notification-event",
                "additional-context"
            ]
        );
        let p = &entry["resource"]["parameter"];
        assert_eq!(p[0]["valueReference"]["reference"], url);
        assert_eq!(
            p[3]["part"][2]["valueReference"]["reference"],
            event().dataref.unwrap()
        );
        assert_eq!(
            p[4]["part"][2]["valueReference"]["identifier"]["value"],
            "9912003888"
        );
        assert_eq!(
            p[4]["part"].as_array().unwrap().len(),
            3,
            "no version-id without one"
        );
    }

    #[test]
    fn the_json_form_drops_filtering_and_keeps_a_v1_body() {
        let j = json_form(&event(), None);
        assert!(j.get("filtering").is_none());
        assert_eq!(j["type"], "pds-change-of-gp-2");
        let v1 = json!({"id": "x", "type": "pds-change-of-gp-1"});
        assert_eq!(json_form(&event(), Some(&v1)), v1);
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let secret = webhook_secret(b"service key", "e9050741-ae87-4720-beb1-2abd9248e227");
        assert!(secret.starts_with("whsec_"));
        assert_ne!(
            secret,
            webhook_secret(b"service key", "c5a332ca-12ab-4ccf-9eb7-c933713accb3")
        );
        let h = sign(&secret, 1_000, b"{}");
        assert!(verify(&secret, &h, b"{}", 1_010, 300));
        assert!(!verify(&secret, &h, b"{ }", 1_010, 300), "another body");
        assert!(
            !verify("whsec_other", &h, b"{}", 1_010, 300),
            "another secret"
        );
        assert!(!verify(&secret, &h, b"{}", 2_000, 300), "too old");
        assert!(!verify(&secret, "v1=00", b"{}", 1_000, 300));
    }
}
