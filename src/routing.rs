//! Route rules: which upstream serves a request and which permission it
//! requires.
//!
//! Rules are matched against the canonical path (see [`canonical`]), and no
//! two rules may match the same request, so the answer never depends on the
//! order of rules in the file.

pub mod canonical;
mod pattern;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use http::Method;
use toml::Spanned;

use crate::limits::RouteLimits;

pub use pattern::Pattern;

/// A rule as written in the configuration file.
#[derive(Debug)]
pub struct RuleSpec {
    pub id: Spanned<String>,
    pub path: Spanned<String>,
    pub methods: Spanned<Vec<String>>,
    pub permission: Spanned<String>,
    pub upstream: Spanned<String>,
    pub strip_prefix: Option<Spanned<String>>,
    pub forward_credential: bool,
    pub max_body_bytes: Option<u64>,
    pub cors: Option<Spanned<String>>,
    pub limits: RouteLimits,
}

/// CORS preflight handling of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsMode {
    /// The gateway answers preflights itself, without a key.
    Answer,
    /// Preflights go to the upstream, without a key.
    Pass,
}

/// Requirement a route places on the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No credential needed.
    Public,
    /// The caller's role must grant this permission.
    Permission(Arc<str>),
}

/// A validated route rule.
#[derive(Debug)]
pub struct Rule {
    pub id: Arc<str>,
    pub pattern: Pattern,
    pub methods: Vec<Method>,
    pub requirement: Requirement,
    /// Index into the configuration's upstreams.
    pub upstream: usize,
    pub strip_prefix: Option<Box<str>>,
    pub forward_credential: bool,
    /// Largest request body in bytes.
    pub max_body_bytes: Option<u64>,
    pub cors: Option<CorsMode>,
    /// Rate-limit overrides and usage metering.
    pub limits: RouteLimits,
}

impl Rule {
    /// Returns the path to forward for `canonical_path`, which this rule
    /// matched: the path without the rule's strip prefix.
    pub fn upstream_path<'a>(&self, canonical_path: &'a str) -> &'a str {
        match &self.strip_prefix {
            Some(prefix) => {
                let rest = &canonical_path[prefix.len()..];
                if rest.is_empty() {
                    "/"
                } else {
                    rest
                }
            }
            None => canonical_path,
        }
    }
}

/// A rule that could not be built from the file.
#[derive(Debug)]
pub struct RouteError {
    pub field: String,
    pub message: String,
    pub span: Option<Range<usize>>,
}

/// The ordered set of rules. Lookups are by method and canonical path.
#[derive(Debug, Default)]
pub struct RouteTable {
    rules: Vec<Rule>,
}

impl RouteTable {
    /// Validates rule specs; `upstreams` maps upstream names to indexes.
    pub fn build(
        specs: Vec<RuleSpec>,
        upstreams: &HashMap<String, usize>,
    ) -> Result<Self, RouteError> {
        let mut rules: Vec<Rule> = Vec::with_capacity(specs.len());
        let mut ids: HashMap<String, usize> = HashMap::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let error = |name: &str, message: String, span: Range<usize>| RouteError {
                field: format!("routes[{i}].{name}"),
                message,
                span: Some(span),
            };

            let id = spec.id.get_ref();
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(error(
                    "id",
                    format!("invalid rule id {id:?}: use letters, digits, '-', '_' and '.'"),
                    spec.id.span(),
                ));
            }
            if ids.insert(id.clone(), i).is_some() {
                return Err(error(
                    "id",
                    format!("duplicate rule id {id:?}"),
                    spec.id.span(),
                ));
            }

            let pattern = Pattern::parse(spec.path.get_ref())
                .map_err(|message| error("path", message, spec.path.span()))?;

            let methods = parse_methods(spec.methods.get_ref())
                .map_err(|message| error("methods", message, spec.methods.span()))?;

            let requirement = parse_requirement(spec.permission.get_ref())
                .map_err(|message| error("permission", message, spec.permission.span()))?;

            let upstream = *upstreams.get(spec.upstream.get_ref()).ok_or_else(|| {
                error(
                    "upstream",
                    format!("unknown upstream {:?}", spec.upstream.get_ref()),
                    spec.upstream.span(),
                )
            })?;

            let strip_prefix = match &spec.strip_prefix {
                None => None,
                Some(prefix) => {
                    if !pattern.has_literal_prefix(prefix.get_ref()) {
                        return Err(error(
                            "strip_prefix",
                            format!(
                                "{:?} is not a run of leading literal segments of the path {:?}",
                                prefix.get_ref(),
                                spec.path.get_ref()
                            ),
                            prefix.span(),
                        ));
                    }
                    Some(prefix.get_ref().trim_end_matches('/').into())
                }
            };

            let cors = match &spec.cors {
                None => None,
                Some(mode) => Some(match mode.get_ref().as_str() {
                    "answer" => CorsMode::Answer,
                    "pass" => CorsMode::Pass,
                    other => {
                        return Err(error(
                            "cors",
                            format!("unknown CORS mode {other:?}: expected \"answer\" or \"pass\""),
                            mode.span(),
                        ))
                    }
                }),
            };

            let rule = Rule {
                id: id.as_str().into(),
                pattern,
                methods,
                requirement,
                upstream,
                strip_prefix,
                forward_credential: spec.forward_credential,
                max_body_bytes: spec.max_body_bytes,
                cors,
                limits: spec.limits,
            };
            if let Some(other) = rules.iter().find(|other| rules_overlap(other, &rule)) {
                return Err(error(
                    "path",
                    format!(
                        "rule {:?} and rule {:?} can match the same request; \
                         make their paths or methods disjoint",
                        other.id, rule.id
                    ),
                    spec.path.span(),
                ));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Finds the rule for `method` and a canonical `path`.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.methods.contains(method) && rule.pattern.matches(path))
    }

    /// Finds the rule a CORS preflight is about: the one for the requested
    /// method and `path`, if it handles preflights.
    pub fn find_preflight(&self, requested: &Method, path: &str) -> Option<&Rule> {
        self.find(requested, path)
            .filter(|rule| rule.cors.is_some())
    }

    /// Returns the rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

fn rules_overlap(a: &Rule, b: &Rule) -> bool {
    a.methods.iter().any(|m| b.methods.contains(m)) && a.pattern.overlaps(&b.pattern)
}

fn parse_methods(names: &[String]) -> Result<Vec<Method>, String> {
    if names.is_empty() {
        return Err("must list at least one method".to_string());
    }
    let mut methods = Vec::with_capacity(names.len());
    for name in names {
        let method = Method::from_bytes(name.as_bytes())
            .ok()
            .filter(|_| !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase()))
            .ok_or_else(|| {
                format!("invalid method {name:?}: use upper-case names such as \"GET\"")
            })?;
        if methods.contains(&method) {
            return Err(format!("method {name:?} is listed twice"));
        }
        methods.push(method);
    }
    Ok(methods)
}

fn parse_requirement(permission: &str) -> Result<Requirement, String> {
    if permission == "public" {
        return Ok(Requirement::Public);
    }
    let valid = permission.split(':').count() >= 2
        && permission.split(':').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !valid {
        return Err(format!(
            "invalid permission {permission:?}: expected \"resource:action\" \
             (lower-case letters, digits and '-') or \"public\""
        ));
    }
    Ok(Requirement::Permission(permission.into()))
}

#[cfg(test)]
mod tests;
