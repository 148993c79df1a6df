//! Hot-path micro-benchmarks: every request checks a token, every send parses headers.

use criterion::{criterion_group, criterion_main, Criterion};
use mesh_protocol::{ApiVersion, AuthToken, SendHeaders};
use std::hint::black_box;

fn token_check(c: &mut Criterion) {
    let token = AuthToken::sign(
        "TestKey",
        "X26ABC1",
        "password",
        "3f1c1e4e-4a4c-4f53-9c1e-2c5b6f0a9d11",
        7,
        "202401011200",
    );
    let header = token.header_value();
    c.bench_function("token parse + verify", |b| {
        b.iter(|| {
            let t = AuthToken::parse(Some(black_box(&header)), "X26ABC1").unwrap();
            assert!(t.verify("TestKey", "password"));
        })
    });
}

fn header_parsing(c: &mut Criterion) {
    let headers = [
        ("mex-to", "X26ABC2"),
        ("mex-workflowid", "TEST_WORKFLOW"),
        ("mex-chunk-range", "1:1"),
        ("mex-filename", "report.csv"),
        ("mex-localid", "local-123"),
        ("mex-subject", "Monthly extract"),
        ("mex-content-checksum", "md5:0123456789abcdef"),
        ("content-type", "text/csv"),
    ];
    c.bench_function("send headers parse", |b| {
        b.iter(|| {
            let get = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
            black_box(SendHeaders::parse(get).unwrap())
        })
    });
    c.bench_function("accept negotiation", |b| {
        b.iter(|| ApiVersion::from_accept(Some(black_box("application/vnd.mesh.v2+json"))))
    });
}

criterion_group!(benches, token_check, header_parsing);
criterion_main!(benches);
