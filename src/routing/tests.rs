use super::*;

fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).unwrap()
}

#[test]
fn literal_param_and_rest_segments_match() {
    let runs = pattern("/api/v1/runs/{run_id}");
    assert!(runs.matches("/api/v1/runs/42"));
    assert!(runs.matches("/api/v1/runs/42/"));
    assert!(!runs.matches("/api/v1/runs"));
    assert!(!runs.matches("/api/v1/runs/42/feedback"));
    assert!(!runs.matches("/api/v1/Runs/42"));

    let rest = pattern("/api/**");
    assert!(rest.matches("/api"));
    assert!(rest.matches("/api/"));
    assert!(rest.matches("/api/a/b/c"));
    assert!(!rest.matches("/apis"));
    assert!(!rest.matches("/"));

    let root = pattern("/");
    assert!(root.matches("/"));
    assert!(!root.matches("/a"));
}

#[test]
fn overlap_is_detected_by_shape() {
    let cases = [
        ("/a/**", "/a/b", true),
        ("/a/**", "/a", true),
        ("/a/{x}", "/a/b", true),
        ("/a/{x}", "/a/b/c", false),
        ("/a/b", "/a/c", false),
        ("/**", "/anything/else", true),
        ("/a/{x}/c", "/a/b/{y}", true),
        ("/a/{x}/c", "/a/b/d", false),
    ];
    for (a, b, expected) in cases {
        assert_eq!(pattern(a).overlaps(&pattern(b)), expected, "{a} vs {b}");
        assert_eq!(pattern(b).overlaps(&pattern(a)), expected, "{b} vs {a}");
    }
}

#[test]
fn literal_prefix_ends_at_segment_boundary() {
    let p = pattern("/api/v1/runs/**");
    assert!(p.has_literal_prefix("/api"));
    assert!(p.has_literal_prefix("/api/v1"));
    assert!(p.has_literal_prefix("/api/v1/"));
    assert!(!p.has_literal_prefix("/ap"));
    assert!(!p.has_literal_prefix("/api/v"));
    assert!(!p.has_literal_prefix("/"));
    assert!(!pattern("/{x}/runs").has_literal_prefix("/a"));
}

#[test]
fn invalid_patterns_are_rejected() {
    for text in [
        "",
        "runs",
        "/a//b",
        "/**/a",
        "/a/*",
        "/a/{}",
        "/a/{x}/{x}",
        "/a/..",
        "/a/%2F",
        "/a;b",
    ] {
        assert!(Pattern::parse(text).is_err(), "{text:?} was accepted");
    }
}
