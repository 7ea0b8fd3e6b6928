//! Route table: maps an HTTP verb and request path to the method whose path template
//! matches, for forward authentication.
//!
//! Templates are split into segments once, at build time, and stored in one trie per verb.
//! A lookup walks the request path segment by segment without allocating. Static segments
//! are tried before `prefix{param}suffix` segments, which are tried before whole-segment
//! `{param}`s; the walk backtracks when a more specific branch dead-ends.

use crate::bitset::MethodIdx;

/// The HTTP verbs a method may use, in canonical (uppercase) spelling.
pub const HTTP_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const GET: usize = 0;
const HEAD: usize = 1;

/// The canonical spelling of an HTTP verb, or `None` if it is not supported.
pub fn normalize_http_method(method: &str) -> Option<&'static str> {
    verb_slot(method).and_then(|i| HTTP_METHODS.get(i).copied())
}

#[inline]
fn verb_slot(method: &str) -> Option<usize> {
    let method = method.trim_ascii();
    HTTP_METHODS
        .iter()
        .position(|m| m.len() == method.len() && m.eq_ignore_ascii_case(method))
}

/// One segment of a parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text.
    Static(String),
    /// `{name}`: any non-empty segment.
    Param(String),
    /// `prefix{name}suffix`: a segment with literal text around one parameter.
    Affix {
        prefix: String,
        name: String,
        suffix: String,
    },
}

/// Parses a path template such as `/api/v1/tokens/{token_id}` into segments.
/// A trailing slash is ignored; `/` is the template with no segments.
pub fn parse_template(path: &str) -> Result<Vec<Segment>, String> {
    if !path.starts_with('/') {
        return Err(format!("path '{path}' must start with '/'"));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "path '{path}' must not contain a query string or fragment"
        ));
    }
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    trimmed
        .split('/')
        .map(|seg| parse_segment(seg).map_err(|e| format!("path '{path}': {e}")))
        .collect()
}

fn parse_segment(seg: &str) -> Result<Segment, String> {
    let opens = seg.matches('{').count();
    let closes = seg.matches('}').count();
    if opens == 0 && closes == 0 {
        if seg.is_empty() {
            return Err("empty path segment".to_string());
        }
        return Ok(Segment::Static(seg.to_string()));
    }
    if opens != 1 || closes != 1 {
        return Err(format!(
            "segment '{seg}' must contain at most one '{{param}}'"
        ));
    }
    let (prefix, rest) = seg
        .split_once('{')
        .ok_or_else(|| format!("segment '{seg}' is malformed"))?;
    let (name, suffix) = rest
        .split_once('}')
        .ok_or_else(|| format!("segment '{seg}' has '}}' before '{{'"))?;
    if name.trim().is_empty() {
        return Err(format!("segment '{seg}' has an empty parameter name"));
    }
    if prefix.is_empty() && suffix.is_empty() {
        Ok(Segment::Param(name.to_string()))
    } else {
        Ok(Segment::Affix {
            prefix: prefix.to_string(),
            name: name.to_string(),
            suffix: suffix.to_string(),
        })
    }
}

/// The shape of a template with parameter names erased, e.g. `/a/{}/b`: two templates with
/// the same shape match exactly the same paths.
pub fn template_shape(segments: &[Segment]) -> String {
    let mut out = String::new();
    for seg in segments {
        out.push('/');
        match seg {
            Segment::Static(s) => out.push_str(s),
            Segment::Param(_) => out.push_str("{}"),
            Segment::Affix { prefix, suffix, .. } => {
                out.push_str(prefix);
                out.push_str("{}");
                out.push_str(suffix);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Sort key of a static segment: its length and first eight bytes, so that most
/// comparisons during lookup are integer comparisons instead of `memcmp` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    len: usize,
    head: u64,
}

impl Key {
    #[inline]
    fn of(s: &str) -> Key {
        let bytes = s.as_bytes();
        let mut head = [0u8; 8];
        for (dst, src) in head.iter_mut().zip(bytes) {
            *dst = *src;
        }
        Key {
            len: bytes.len(),
            head: u64::from_be_bytes(head),
        }
    }

    /// Whether two strings with equal keys are necessarily equal.
    #[inline]
    fn is_exact(self) -> bool {
        self.len <= 8
    }
}

#[inline]
fn cmp_static(entry: &(Key, Box<str>, Node), key: Key, seg: &str) -> std::cmp::Ordering {
    entry.0.cmp(&key).then_with(|| {
        if key.is_exact() {
            std::cmp::Ordering::Equal
        } else {
            entry.1.as_ref().cmp(seg)
        }
    })
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Sorted by (key, text) for binary search.
    statics: Vec<(Key, Box<str>, Node)>,
    /// Most specific (longest prefix + suffix) first.
    affixes: Vec<(Box<str>, Box<str>, Node)>,
    param: Option<Box<Node>>,
    target: Option<MethodIdx>,
}

impl Node {
    fn child(&mut self, seg: &Segment) -> &mut Node {
        match seg {
            Segment::Static(s) => {
                let key = Key::of(s);
                let pos = match self.statics.binary_search_by(|e| cmp_static(e, key, s)) {
                    Ok(pos) => pos,
                    Err(pos) => {
                        self.statics
                            .insert(pos, (key, s.as_str().into(), Node::default()));
                        pos
                    }
                };
                &mut self.statics[pos].2
            }
            Segment::Affix { prefix, suffix, .. } => {
                let pos = match self
                    .affixes
                    .iter()
                    .position(|(p, s, _)| **p == **prefix && **s == **suffix)
                {
                    Some(pos) => pos,
                    None => {
                        let weight = prefix.len() + suffix.len();
                        let pos = self
                            .affixes
                            .iter()
                            .position(|(p, s, _)| p.len() + s.len() < weight)
                            .unwrap_or(self.affixes.len());
                        self.affixes.insert(
                            pos,
                            (
                                prefix.as_str().into(),
                                suffix.as_str().into(),
                                Node::default(),
                            ),
                        );
                        pos
                    }
                };
                &mut self.affixes[pos].2
            }
            Segment::Param(_) => self.param.get_or_insert_with(Box::default),
        }
    }

    /// `rest` is the remaining path without its leading slash, or `None` when every
    /// segment has been consumed.
    fn find(&self, rest: Option<&str>) -> Option<MethodIdx> {
        let Some(rest) = rest else {
            return self.target;
        };
        // A plain byte loop: segments are short, and `str::split_once` pays a `memchr` setup
        // and a `memcmp` call per match.
        let (seg, next) = match rest.bytes().position(|b| b == b'/') {
            Some(slash) => (rest.get(..slash).unwrap_or_default(), rest.get(slash + 1..)),
            None => (rest, None),
        };
        if !self.statics.is_empty() {
            let key = Key::of(seg);
            if let Ok(pos) = self.statics.binary_search_by(|e| cmp_static(e, key, seg)) {
                if let Some(found) = self.statics.get(pos).and_then(|(_, _, n)| n.find(next)) {
                    return Some(found);
                }
            }
        }
        for (prefix, suffix, node) in &self.affixes {
            if seg.len() > prefix.len() + suffix.len()
                && seg.starts_with(&**prefix)
                && seg.ends_with(&**suffix)
            {
                if let Some(found) = node.find(next) {
                    return Some(found);
                }
            }
        }
        if seg.is_empty() {
            return None;
        }
        self.param.as_ref().and_then(|n| n.find(next))
    }
}

/// Per-verb tries of path templates.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    roots: [Node; HTTP_METHODS.len()],
    len: usize,
}

impl RouteTable {
    pub fn new() -> RouteTable {
        RouteTable::default()
    }

    /// Adds a route. If a route with the same verb and template shape exists, leaves the
    /// table unchanged and fails with [`RouteInsertError::Conflict`] naming the existing
    /// method.
    pub fn insert(
        &mut self,
        http_method: &str,
        template: &[Segment],
        method: MethodIdx,
    ) -> Result<(), RouteInsertError> {
        let slot = verb_slot(http_method)
            .ok_or_else(|| RouteInsertError::UnknownVerb(http_method.to_string()))?;
        let mut node = self
            .roots
            .get_mut(slot)
            .ok_or_else(|| RouteInsertError::UnknownVerb(http_method.to_string()))?;
        for seg in template {
            node = node.child(seg);
        }
        match node.target {
            Some(existing) => Err(RouteInsertError::Conflict(existing)),
            None => {
                node.target = Some(method);
                self.len += 1;
                Ok(())
            }
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finds the method for a request. The query string and fragment are ignored, as is a
    /// trailing slash; `HEAD` falls back to `GET` routes.
    pub fn route(&self, http_method: &str, path: &str) -> Option<MethodIdx> {
        let slot = verb_slot(http_method)?;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let path = path.split_once('#').map_or(path, |(p, _)| p);
        let path = path.strip_prefix('/').unwrap_or(path);
        let mut end = path.len();
        while end > 0 && path.as_bytes().get(end - 1) == Some(&b'/') {
            end -= 1;
        }
        let path = path.get(..end).unwrap_or(path);
        let rest = if path.is_empty() { None } else { Some(path) };
        let found = self.roots.get(slot).and_then(|root| root.find(rest));
        if found.is_none() && slot == HEAD {
            return self.roots.get(GET).and_then(|root| root.find(rest));
        }
        found
    }
}

/// Why a route could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteInsertError {
    UnknownVerb(String),
    /// Another method already has the same verb and template shape.
    Conflict(MethodIdx),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        let mut t = RouteTable::new();
        for (i, (verb, path)) in routes.iter().enumerate() {
            let segs = parse_template(path).unwrap();
            t.insert(verb, &segs, MethodIdx(i as u32)).unwrap();
        }
        t
    }

    #[test]
    fn parses_templates() {
        assert_eq!(parse_template("/").unwrap(), vec![]);
        assert_eq!(
            parse_template("/api/v1/tokens/{token_id}/").unwrap(),
            vec![
                Segment::Static("api".into()),
                Segment::Static("v1".into()),
                Segment::Static("tokens".into()),
                Segment::Param("token_id".into()),
            ]
        );
        assert_eq!(
            parse_template("/files/{name}.json").unwrap(),
            vec![
                Segment::Static("files".into()),
                Segment::Affix {
                    prefix: String::new(),
                    name: "name".into(),
                    suffix: ".json".into()
                },
            ]
        );
        assert!(parse_template("api/x").is_err());
        assert!(parse_template("/a/{}").is_err());
        assert!(parse_template("/a/{x}{y}").is_err());
        assert!(parse_template("/a/{x").is_err());
        assert!(parse_template("/a/x}").is_err());
        assert!(parse_template("/a//b").is_err());
        assert!(parse_template("/a?b=1").is_err());
    }

    #[test]
    fn shapes_erase_names() {
        let a = parse_template("/t/{id}/x").unwrap();
        let b = parse_template("/t/{token}/x/").unwrap();
        assert_eq!(template_shape(&a), template_shape(&b));
        assert_eq!(template_shape(&a), "/t/{}/x");
        assert_eq!(template_shape(&[]), "/");
    }

    #[test]
    fn params_and_static_priority() {
        let t = table(&[
            ("GET", "/api/v1/tokens/{token_id}"),
            ("GET", "/api/v1/tokens/current"),
            ("DELETE", "/api/v1/tokens/{token_id}"),
            ("GET", "/api/v1/tokens"),
            ("GET", "/"),
        ]);
        assert_eq!(t.route("GET", "/api/v1/tokens/abc"), Some(MethodIdx(0)));
        assert_eq!(t.route("GET", "/api/v1/tokens/current"), Some(MethodIdx(1)));
        assert_eq!(t.route("delete", "/api/v1/tokens/abc"), Some(MethodIdx(2)));
        assert_eq!(
            t.route("DELETE", "/api/v1/tokens/current"),
            Some(MethodIdx(2))
        );
        assert_eq!(t.route("GET", "/api/v1/tokens"), Some(MethodIdx(3)));
        assert_eq!(t.route("GET", "/"), Some(MethodIdx(4)));
        assert_eq!(t.route("GET", ""), Some(MethodIdx(4)));
        assert_eq!(t.route("POST", "/api/v1/tokens"), None);
        assert_eq!(t.route("GET", "/api/v1/tokens/a/b"), None);
        assert_eq!(t.route("GET", "/api/v1"), None);
        assert_eq!(t.route("BREW", "/"), None);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn long_static_segments_with_shared_prefixes() {
        let t = table(&[
            ("GET", "/abcdefgh-one/x"),
            ("GET", "/abcdefgh-two/x"),
            ("GET", "/abcdefgh/x"),
            ("GET", "/abcdefg/x"),
            ("GET", "/environment/x"),
            ("GET", "/environments/x"),
        ]);
        assert_eq!(t.route("GET", "/abcdefgh-one/x"), Some(MethodIdx(0)));
        assert_eq!(t.route("GET", "/abcdefgh-two/x"), Some(MethodIdx(1)));
        assert_eq!(t.route("GET", "/abcdefgh/x"), Some(MethodIdx(2)));
        assert_eq!(t.route("GET", "/abcdefg/x"), Some(MethodIdx(3)));
        assert_eq!(t.route("GET", "/environment/x"), Some(MethodIdx(4)));
        assert_eq!(t.route("GET", "/environments/x"), Some(MethodIdx(5)));
        assert_eq!(t.route("GET", "/abcdefgh-six/x"), None);
        assert_eq!(t.route("GET", "/abcdefgh-on/x"), None);
        assert_eq!(t.route("GET", "/abcdefgh\0/x"), None);
    }

    #[test]
    fn many_siblings() {
        let paths: Vec<String> = (0..300).map(|i| format!("/r/res{i}/{{id}}")).collect();
        let mut t = RouteTable::new();
        for (i, p) in paths.iter().enumerate() {
            t.insert("GET", &parse_template(p).unwrap(), MethodIdx(i as u32))
                .unwrap();
        }
        for i in 0..300u32 {
            assert_eq!(
                t.route("GET", &format!("/r/res{i}/abc")),
                Some(MethodIdx(i))
            );
        }
        assert_eq!(t.route("GET", "/r/res300/abc"), None);
    }

    #[test]
    fn backtracks_from_static_to_param() {
        let t = table(&[("GET", "/a/b/c"), ("GET", "/a/{x}/d")]);
        assert_eq!(t.route("GET", "/a/b/c"), Some(MethodIdx(0)));
        assert_eq!(t.route("GET", "/a/b/d"), Some(MethodIdx(1)));
        assert_eq!(t.route("GET", "/a/z/d"), Some(MethodIdx(1)));
        assert_eq!(t.route("GET", "/a/z/c"), None);
    }

    #[test]
    fn affix_segments() {
        let t = table(&[
            ("GET", "/files/{name}"),
            ("GET", "/files/{name}.json"),
            ("GET", "/files/report-{id}.json"),
        ]);
        assert_eq!(t.route("GET", "/files/readme"), Some(MethodIdx(0)));
        assert_eq!(t.route("GET", "/files/x.json"), Some(MethodIdx(1)));
        assert_eq!(t.route("GET", "/files/report-7.json"), Some(MethodIdx(2)));
        assert_eq!(t.route("GET", "/files/.json"), Some(MethodIdx(0)));
    }

    #[test]
    fn head_query_trailing_slash() {
        let t = table(&[
            ("GET", "/1.0/environment/control/rest/getenvinfo"),
            ("HEAD", "/only-head"),
            ("GET", "/x/{id}"),
            ("HEAD", "/x/special"),
        ]);
        let m = Some(MethodIdx(0));
        assert_eq!(
            t.route("HEAD", "/1.0/environment/control/rest/getenvinfo"),
            m
        );
        assert_eq!(
            t.route(
                "GET",
                "/1.0/environment/control/rest/getenvinfo?envName=a&x=/b"
            ),
            m
        );
        assert_eq!(
            t.route("GET", "/1.0/environment/control/rest/getenvinfo/"),
            m
        );
        assert_eq!(
            t.route("GET", "/1.0/environment/control/rest/getenvinfo/?a=1"),
            m
        );
        assert_eq!(
            t.route("GET", "/1.0/environment/control/rest/getenvinfo#top"),
            m
        );
        assert_eq!(t.route("GET", "/only-head"), None);
        assert_eq!(t.route("HEAD", "/only-head"), Some(MethodIdx(1)));
        assert_eq!(t.route("HEAD", "/x/special"), Some(MethodIdx(3)));
        assert_eq!(t.route("HEAD", "/x/other"), Some(MethodIdx(2)));
    }

    #[test]
    fn params_do_not_match_empty_segments() {
        let t = table(&[("GET", "/a/{x}/b")]);
        assert_eq!(t.route("GET", "/a/1/b"), Some(MethodIdx(0)));
        assert_eq!(t.route("GET", "/a//b"), None);
    }

    #[test]
    fn conflicting_routes() {
        let mut t = table(&[("GET", "/t/{id}")]);
        let segs = parse_template("/t/{token}").unwrap();
        assert_eq!(
            t.insert("get", &segs, MethodIdx(9)),
            Err(RouteInsertError::Conflict(MethodIdx(0)))
        );
        assert!(t.insert("POST", &segs, MethodIdx(9)).is_ok());
        assert!(matches!(
            t.insert("TRACE", &segs, MethodIdx(10)),
            Err(RouteInsertError::UnknownVerb(_))
        ));
    }

    #[test]
    fn normalizes_verbs() {
        assert_eq!(normalize_http_method("get"), Some("GET"));
        assert_eq!(normalize_http_method("Options"), Some("OPTIONS"));
        assert_eq!(normalize_http_method("TRACE"), None);
    }
}
