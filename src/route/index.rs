//! An index over a virtual host's routes so a large table is not scanned
//! route by route. A byte trie holds the literal paths of case-sensitive
//! `prefix` and `path` routes; walking it along the request path yields the
//! only such routes that can match. Routes it cannot index (regex,
//! case-insensitive) are always candidates. Candidates are tried in route
//! order with the full matcher, so the first match is exactly the one a
//! linear scan finds.

/// Small tables scan faster than they index.
const MIN_ROUTES: usize = 16;
/// Candidates gathered on the stack; more fall back to a linear scan.
const MAX_CANDIDATES: usize = 32;

#[derive(Default)]
struct Node {
    /// (byte, child node), sorted by byte.
    children: Vec<(u8, u32)>,
    /// Routes whose prefix ends at this node.
    prefix: Vec<u32>,
    /// Routes whose exact path ends at this node.
    exact: Vec<u32>,
}

pub struct RouteIndex {
    nodes: Vec<Node>,
    /// Routes the trie cannot answer for, in route order.
    always: Vec<u32>,
}

/// How a route is seen by the index.
pub enum Literal<'a> {
    Prefix(&'a str),
    Exact(&'a str),
    /// Regex or case-insensitive: a candidate for every request.
    Unindexed,
}

pub enum Lookup {
    /// The first matching route.
    Found(usize),
    NoMatch,
    /// Too many candidates for the stack buffer: scan instead.
    Scan,
}

impl RouteIndex {
    pub fn build<'a>(literals: impl ExactSizeIterator<Item = Literal<'a>>) -> Option<RouteIndex> {
        if literals.len() < MIN_ROUTES {
            return None;
        }
        let mut ix = RouteIndex {
            nodes: vec![Node::default()],
            always: Vec::new(),
        };
        for (i, lit) in literals.enumerate() {
            let i = i as u32;
            match lit {
                Literal::Prefix(p) => {
                    let n = ix.insert(p.as_bytes());
                    ix.nodes[n].prefix.push(i);
                }
                Literal::Exact(p) => {
                    let n = ix.insert(p.as_bytes());
                    ix.nodes[n].exact.push(i);
                }
                Literal::Unindexed => ix.always.push(i),
            }
        }
        Some(ix)
    }

    fn insert(&mut self, bytes: &[u8]) -> usize {
        let mut n = 0;
        for &b in bytes {
            n = match self.child(n, b) {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    self.nodes.push(Node::default());
                    let children = &mut self.nodes[n].children;
                    let at = children.partition_point(|(x, _)| *x < b);
                    children.insert(at, (b, c as u32));
                    c
                }
            };
        }
        n
    }

    fn child(&self, n: usize, b: u8) -> Option<usize> {
        let children = &self.nodes[n].children;
        children
            .binary_search_by_key(&b, |(x, _)| *x)
            .ok()
            .map(|i| children[i].1 as usize)
    }

    /// Tries the candidate routes for `path` in route order with `matches`.
    pub fn find(&self, path: &str, mut matches: impl FnMut(usize) -> bool) -> Lookup {
        let mut buf = [0u32; MAX_CANDIDATES];
        let mut n = 0;
        let mut node = 0;
        let mut walked_all = true;
        let mut gather = |list: &[u32], n: &mut usize| -> bool {
            for &r in list {
                if *n == MAX_CANDIDATES {
                    return false;
                }
                buf[*n] = r;
                *n += 1;
            }
            true
        };
        if !gather(&self.nodes[0].prefix, &mut n) {
            return Lookup::Scan;
        }
        for &b in path.as_bytes() {
            match self.child(node, b) {
                Some(c) => {
                    node = c;
                    if !gather(&self.nodes[c].prefix, &mut n) {
                        return Lookup::Scan;
                    }
                }
                None => {
                    walked_all = false;
                    break;
                }
            }
        }
        if walked_all && !gather(&self.nodes[node].exact, &mut n) {
            return Lookup::Scan;
        }
        let candidates = &mut buf[..n];
        candidates.sort_unstable();
        // Merge the two ordered lists, trying each route once, in order.
        let (mut i, mut j) = (0, 0);
        loop {
            let next = match (candidates.get(i), self.always.get(j)) {
                (Some(&a), Some(&b)) if a < b => {
                    i += 1;
                    a
                }
                (_, Some(&b)) => {
                    j += 1;
                    b
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (None, None) => return Lookup::NoMatch,
            };
            if matches(next as usize) {
                return Lookup::Found(next as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(lits: &[(&'static str, char)]) -> RouteIndex {
        let mut all: Vec<Literal<'static>> = lits
            .iter()
            .map(|(p, k)| match k {
                'p' => Literal::Prefix(p),
                'e' => Literal::Exact(p),
                _ => Literal::Unindexed,
            })
            .collect();
        while all.len() < MIN_ROUTES {
            all.push(Literal::Exact("/padding-never-requested"));
        }
        RouteIndex::build(all.into_iter()).unwrap()
    }

    /// Candidates (in order) a lookup offers for `path`.
    fn offered(ix: &RouteIndex, path: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        let _ = ix.find(path, |i| {
            seen.push(i);
            false
        });
        seen
    }

    #[test]
    fn offers_exactly_the_routes_that_can_match_in_order() {
        let ix = index(&[
            ("/api/", 'p'),   // 0
            ("", 'p'),        // 1: empty prefix matches everything
            ("/api/v1", 'e'), // 2
            ("re", 'r'),      // 3: regex: always offered
            ("/a", 'p'),      // 4
            ("/api/v1", 'p'), // 5
        ]);
        assert_eq!(offered(&ix, "/api/v1"), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(offered(&ix, "/api/v1/x"), vec![0, 1, 3, 4, 5]);
        assert_eq!(offered(&ix, "/apx"), vec![1, 3, 4]);
        assert_eq!(offered(&ix, "/b"), vec![1, 3]);
    }

    #[test]
    fn stops_at_the_first_match() {
        let ix = index(&[("/a", 'p'), ("/a/b", 'p'), ("re", 'r')]);
        let mut tried = 0;
        let found = ix.find("/a/b", |i| {
            tried += 1;
            i == 1
        });
        assert!(matches!(found, Lookup::Found(1)));
        assert_eq!(tried, 2);
    }

    #[test]
    fn too_many_candidates_fall_back_to_a_scan() {
        let lits: Vec<(&'static str, char)> = (0..40).map(|_| ("/", 'p')).collect();
        let ix = index(&lits);
        assert!(matches!(ix.find("/x", |_| false), Lookup::Scan));
    }

    #[test]
    fn small_tables_are_not_indexed() {
        assert!(RouteIndex::build([Literal::Prefix("/")].into_iter()).is_none());
    }
}
