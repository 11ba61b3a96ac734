//! Path patterns: literal segments, `{name}` segments and a trailing `**`.

use super::canonical::canonicalize;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    /// One segment of any value.
    Param,
    /// Zero or more segments; only last.
    Rest,
}

/// A compiled path pattern.
///
/// A trailing slash on the request path is ignored when matching, so
/// `/sessions/` matches `/sessions`; the path is still forwarded as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
}

impl Pattern {
    /// Parses a pattern such as `/api/v1/runs/{run_id}` or `/api/**`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path pattern {text:?} must start with '/'"));
        }
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let body = &text[1..];
        if body.is_empty() {
            return Ok(Self { segments });
        }
        let parts: Vec<&str> = body.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = if *part == "**" {
                if !last {
                    return Err(format!("in {text:?}, '**' may only be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(format!("in {text:?}, invalid parameter name {name:?}"));
                }
                if names.contains(&name) {
                    return Err(format!("in {text:?}, parameter {name:?} appears twice"));
                }
                names.push(name);
                Segment::Param
            } else {
                if part.is_empty() {
                    return Err(format!("path pattern {text:?} has an empty segment"));
                }
                let literal = format!("/{part}");
                let canonical = canonicalize(&literal).ok();
                if part.contains(['*', '{', '}'])
                    || canonical.as_deref() != Some(literal.as_str())
                    || *part == "."
                    || *part == ".."
                {
                    return Err(format!(
                        "in {text:?}, segment {part:?} is not a plain literal: \
                         write it as a client's canonical path would carry it"
                    ));
                }
                Segment::Literal((*part).into())
            };
            segments.push(segment);
        }
        Ok(Self { segments })
    }

    /// Returns true if the canonical `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut parts = (!rest.is_empty())
            .then(|| rest.split('/'))
            .into_iter()
            .flatten();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    if parts.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Returns true if some path matches both patterns.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let mut a = self.segments.iter();
        let mut b = other.segments.iter();
        loop {
            match (a.next(), b.next()) {
                (Some(Segment::Rest), _) | (_, Some(Segment::Rest)) => return true,
                (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(Segment::Literal(x)), Some(Segment::Literal(y))) => {
                    if x != y {
                        return false;
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
    }

    /// Returns true if `prefix` (such as `/api/v1`) equals the pattern's
    /// first literal segments, so that stripping it always ends at a
    /// segment boundary.
    pub fn has_literal_prefix(&self, prefix: &str) -> bool {
        let Some(body) = prefix.strip_prefix('/') else {
            return false;
        };
        let body = body.trim_end_matches('/');
        if body.is_empty() {
            return false;
        }
        let mut segments = self.segments.iter();
        body.split('/').all(
            |part| matches!(segments.next(), Some(Segment::Literal(literal)) if **literal == *part),
        )
    }
}
