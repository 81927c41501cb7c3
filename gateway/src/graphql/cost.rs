//! What a GraphQL document would cost, measured before anything expands it: every request goes
//! through [`scan`] (its text) and [`measure`] (its parsed document) before async-graphql
//! validates or runs it.
//!
//! Both run in time linear in the size of the document, whatever its shape. [`scan`] counts
//! tokens and bracket nesting on the raw text, so the parser never sees a document too long or
//! nested too deep for its recursion. [`measure`] walks the document once, measuring each fragment
//! once and reusing that measure wherever it is spread (fragments that spread each other twice,
//! 21 levels deep, are 2^21 copies once expanded: measured, they are 22 small sums). It never
//! executes anything, never allocates per expanded field, and never recurses deeper than
//! [`Limits::max_levels`].
//!
//! The cost of a field is 1 plus its children's cost times its page size (`first` or `last`, from
//! the argument, its variable or the schema's default): `classes(first: 100) { edges { node { id }
//! } }` costs 1 + 100 × 3. Depth counts nested fields; what is under `__schema` and `__type` (the
//! introspection that GraphiQL and client libraries send, deeper than any ordinary query) has its
//! own, larger depth limit, and its cost counts like any other.

use std::collections::HashMap;
use std::fmt;

use async_graphql::parser::types::{
    ExecutableDocument, Field, Selection, SelectionSet, ServiceDocument, TypeKind,
    TypeSystemDefinition,
};
use async_graphql::{Value as ConstValue, Variables};

/// The limits a document must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of fields, outside introspection.
    pub max_depth: u32,
    /// Deepest nesting of fields under `__schema` or `__type`.
    pub max_introspection_depth: u32,
    /// Highest cost (see the module docs).
    pub max_cost: u64,
    /// Most fragment definitions.
    pub max_fragments: usize,
    /// Most aliased fields, written (not expanded).
    pub max_aliases: usize,
    /// Most tokens in the text.
    pub max_tokens: usize,
    /// Deepest nesting of `{`, `[` and `(` in the text.
    pub max_nesting: usize,
    /// Deepest nesting of selection sets and fragment spreads together (as async-graphql counts
    /// its recursion depth).
    pub max_levels: u32,
}

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    TooManyTokens {
        limit: usize,
    },
    NestedTooDeep {
        limit: usize,
    },
    TooManyFragments {
        count: usize,
        limit: usize,
    },
    TooManyAliases {
        count: usize,
        limit: usize,
    },
    TooManyLevels {
        limit: u32,
    },
    TooDeep {
        depth: u32,
        limit: u32,
    },
    IntrospectionTooDeep {
        depth: u32,
        limit: u32,
    },
    TooCostly {
        cost: u64,
        limit: u64,
    },
    /// A fragment spreads itself, directly or through others.
    FragmentCycle {
        name: String,
    },
}

impl Refusal {
    /// The `extensions.code` of the error: a cycle makes the document invalid (GraphQL's "No
    /// fragment cycles" rule); everything else is a valid document too costly to accept.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::FragmentCycle { .. } => "GRAPHQL_VALIDATION_FAILED",
            _ => "QUERY_TOO_COMPLEX",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TooManyTokens { limit } => {
                write!(f, "the query is too long: more than {limit} tokens")
            }
            Refusal::NestedTooDeep { limit } => write!(
                f,
                "the query is nested too deep: more than {limit} levels of brackets"
            ),
            Refusal::TooManyFragments { count, limit } => {
                write!(f, "the query has {count} fragments; at most {limit}")
            }
            Refusal::TooManyAliases { count, limit } => {
                write!(f, "the query has {count} aliases; at most {limit}")
            }
            Refusal::TooManyLevels { limit } => write!(
                f,
                "the query is nested too deep: more than {limit} levels of selections and fragments"
            ),
            Refusal::TooDeep { depth, limit } => write!(
                f,
                "the query is nested too deep: {depth} levels of fields; at most {limit}"
            ),
            Refusal::IntrospectionTooDeep { depth, limit } => write!(
                f,
                "the introspection query is nested too deep: {depth} levels; at most {limit}"
            ),
            Refusal::TooCostly { cost, limit } => write!(
                f,
                "the query is too complex: it costs {cost}, at most {limit} (each field counts 1, \
                 and what is inside a page counts once per item: `first: 100` multiplies it by 100)"
            ),
            Refusal::FragmentCycle { name } => {
                write!(f, "fragment `{name}` spreads itself")
            }
        }
    }
}

/// Checks the raw text of a query: at most `max_tokens` tokens, brackets nested at most
/// `max_nesting` deep. A rough lexer: strings, block strings and comments are skipped as GraphQL
/// reads them; anything else it does not know counts as a token for the parser to refuse.
pub fn scan(query: &str, limits: &Limits) -> Result<(), Refusal> {
    let b = query.as_bytes();
    let (mut i, mut tokens, mut nesting) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 3;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                nesting += 1;
                if nesting > limits.max_nesting {
                    return Err(Refusal::NestedTooDeep {
                        limit: limits.max_nesting,
                    });
                }
                i += 1;
            }
            b'}' | b']' | b')' => {
                nesting = nesting.saturating_sub(1);
                i += 1;
            }
            b'.' if b[i..].starts_with(b"...") => i += 3,
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'+' | b'-'))
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > limits.max_tokens {
            return Err(Refusal::TooManyTokens {
                limit: limits.max_tokens,
            });
        }
    }
    Ok(())
}

/// Default page sizes of the schema's paged fields (those with a `first` argument), by field
/// name, read from the SDL so they follow the code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageSizes(HashMap<String, u64>);

impl PageSizes {
    /// Reads every field with a `first` (or `last`) argument and an integer default. A field name
    /// used on several types takes the largest default.
    pub fn from_sdl(sdl: &str) -> PageSizes {
        let mut sizes = HashMap::new();
        let Ok(ServiceDocument { definitions }) = async_graphql::parser::parse_schema(sdl) else {
            return PageSizes(sizes);
        };
        for definition in definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let TypeKind::Object(object) = &ty.node.kind else {
                continue;
            };
            for field in &object.fields {
                for arg in &field.node.arguments {
                    let name = arg.node.name.node.as_str();
                    if !matches!(name, "first" | "last") {
                        continue;
                    }
                    let default = arg
                        .node
                        .default_value
                        .as_ref()
                        .and_then(|v| match &v.node {
                            ConstValue::Number(n) => n.as_u64(),
                            _ => None,
                        })
                        .unwrap_or(1);
                    let entry = sizes
                        .entry(field.node.name.node.to_string())
                        .or_insert(default);
                    *entry = (*entry).max(default);
                }
            }
        }
        PageSizes(sizes)
    }

    fn default_for(&self, field: &str) -> u64 {
        self.0.get(field).copied().unwrap_or(1)
    }
}

/// What a document measures (the largest of its operations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measure {
    /// Field nesting, introspection counted as one level.
    pub depth: u32,
    /// Field nesting under `__schema` / `__type`.
    pub introspection_depth: u32,
    /// Nesting of selection sets and fragment spreads below the top one.
    pub levels: u32,
    /// See the module docs.
    pub cost: u64,
}

impl Measure {
    /// Both side by side (as fields of one selection set).
    fn add(&mut self, other: Measure) {
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
        self.levels = self.levels.max(other.levels);
        self.cost = self.cost.saturating_add(other.cost);
    }
}

/// A fragment's measure while it is being taken (a spread of it then is a cycle) and after.
enum Memo {
    InProgress,
    Done(Measure),
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    /// Integer defaults of the operations' variables, by name.
    defaults: HashMap<&'a str, u64>,
    pages: &'a PageSizes,
    limits: &'a Limits,
    fragments: HashMap<&'a str, Memo>,
}

impl<'a> Walk<'a> {
    /// How many items a field's page holds: its `first` (or `last`) argument, through a variable
    /// or its default, else the schema's default for the field; 1 for anything else.
    fn page_size(&self, field: &Field) -> u64 {
        let given = field
            .arguments
            .iter()
            .find(|(name, _)| matches!(name.node.as_str(), "first" | "last"));
        let Some((_, value)) = given else {
            return self.pages.default_for(field.name.node.as_str());
        };
        let value = value.node.clone().into_const_with(|variable| {
            Ok::<_, std::convert::Infallible>(match self.variables.get(&variable) {
                Some(given) => given.clone(),
                None => self
                    .defaults
                    .get(variable.as_str())
                    .map_or(ConstValue::Null, |n| ConstValue::from(*n)),
            })
        });
        match value {
            Ok(ConstValue::Number(n)) => n.as_u64().unwrap_or(1).max(1),
            // Not a count: validation or the resolver refuses it.
            _ => 1,
        }
    }

    /// Measures a selection set that is `level` selection sets and spreads below the top (the
    /// recursion never goes deeper than the limit).
    fn selection_set(&mut self, set: &'a SelectionSet, level: u32) -> Result<Measure, Refusal> {
        if level > self.limits.max_levels {
            return Err(Refusal::TooManyLevels {
                limit: self.limits.max_levels,
            });
        }
        let mut total = Measure::default();
        for selection in &set.items {
            let measure = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let nested = &field.selection_set.node;
                    let (children, levels) = if nested.items.is_empty() {
                        (Measure::default(), 0)
                    } else {
                        let m = self.selection_set(nested, level + 1)?;
                        (m, m.levels + 1)
                    };
                    let introspection = matches!(field.name.node.as_str(), "__schema" | "__type");
                    Measure {
                        // Introspection's own depth is counted apart.
                        depth: if introspection { 1 } else { children.depth + 1 },
                        introspection_depth: if introspection {
                            children.depth.max(children.introspection_depth) + 1
                        } else {
                            children.introspection_depth
                        },
                        levels,
                        cost: children
                            .cost
                            .saturating_mul(self.page_size(field))
                            .saturating_add(1),
                    }
                }
                Selection::InlineFragment(inline) => {
                    let mut m = self.selection_set(&inline.node.selection_set.node, level + 1)?;
                    m.levels += 1;
                    m
                }
                Selection::FragmentSpread(spread) => {
                    let mut m =
                        self.fragment(spread.node.fragment_name.node.as_str(), level + 1)?;
                    m.levels += 1;
                    m
                }
            };
            total.add(measure);
        }
        Ok(total)
    }

    /// A fragment's measure, taken once (its own, wherever it is spread).
    fn fragment(&mut self, name: &str, level: u32) -> Result<Measure, Refusal> {
        match self.fragments.get(name) {
            Some(Memo::Done(m)) => return Ok(*m),
            Some(Memo::InProgress) => {
                return Err(Refusal::FragmentCycle {
                    name: name.to_owned(),
                });
            }
            None => {}
        }
        let doc = self.doc;
        let Some((key, definition)) = doc.fragments.get_key_value(name) else {
            // Unknown: validation says so.
            return Ok(Measure::default());
        };
        self.fragments.insert(key.as_str(), Memo::InProgress);
        let m = self.selection_set(&definition.node.selection_set.node, level)?;
        self.fragments.insert(key.as_str(), Memo::Done(m));
        Ok(m)
    }
}

/// Measures every operation of `doc` (and every fragment, used or not: validation walks them
/// all) and checks the limits.
pub fn measure(
    doc: &ExecutableDocument,
    variables: &Variables,
    pages: &PageSizes,
    limits: &Limits,
) -> Result<Measure, Refusal> {
    if doc.fragments.len() > limits.max_fragments {
        return Err(Refusal::TooManyFragments {
            count: doc.fragments.len(),
            limit: limits.max_fragments,
        });
    }
    let aliases = count_aliases(doc);
    if aliases > limits.max_aliases {
        return Err(Refusal::TooManyAliases {
            count: aliases,
            limit: limits.max_aliases,
        });
    }
    let defaults = doc
        .operations
        .iter()
        .flat_map(|(_, op)| op.node.variable_definitions.iter())
        .filter_map(|v| match &v.node.default_value.as_ref()?.node {
            ConstValue::Number(n) => Some((v.node.name.node.as_str(), n.as_u64()?)),
            _ => None,
        })
        .collect();
    let mut walk = Walk {
        doc,
        variables,
        defaults,
        pages,
        limits,
        fragments: HashMap::new(),
    };
    let mut worst = Measure::default();
    for (_, op) in doc.operations.iter() {
        let m = walk.selection_set(&op.node.selection_set.node, 0)?;
        worst.depth = worst.depth.max(m.depth);
        worst.introspection_depth = worst.introspection_depth.max(m.introspection_depth);
        worst.levels = worst.levels.max(m.levels);
        worst.cost = worst.cost.max(m.cost);
    }
    for name in doc.fragments.keys() {
        let m = walk.fragment(name.as_str(), 1)?;
        worst.levels = worst.levels.max(m.levels + 1);
    }
    if worst.levels > limits.max_levels {
        return Err(Refusal::TooManyLevels {
            limit: limits.max_levels,
        });
    }
    if worst.depth > limits.max_depth {
        return Err(Refusal::TooDeep {
            depth: worst.depth,
            limit: limits.max_depth,
        });
    }
    if worst.introspection_depth > limits.max_introspection_depth {
        return Err(Refusal::IntrospectionTooDeep {
            depth: worst.introspection_depth,
            limit: limits.max_introspection_depth,
        });
    }
    if worst.cost > limits.max_cost {
        return Err(Refusal::TooCostly {
            cost: worst.cost,
            limit: limits.max_cost,
        });
    }
    Ok(worst)
}

/// Aliased fields as written (fragments counted once).
fn count_aliases(doc: &ExecutableDocument) -> usize {
    // An explicit stack: the text may nest as deep as `scan` allows.
    let mut stack: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .collect();
    let mut n = 0;
    while let Some(set) = stack.pop() {
        for s in &set.items {
            match &s.node {
                Selection::Field(f) => {
                    n += usize::from(f.node.alias.is_some());
                    stack.push(&f.node.selection_set.node);
                }
                Selection::InlineFragment(i) => stack.push(&i.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_depth: 8,
        max_introspection_depth: 15,
        max_cost: 1000,
        max_fragments: 50,
        max_aliases: 50,
        max_tokens: 4000,
        max_nesting: 64,
        max_levels: 32,
    };

    fn pages() -> PageSizes {
        PageSizes::from_sdl(
            "type Query { classes(first: Int! = 20, after: String): ClassConnection! me: User }
             type ClassConnection { nodes: [Class!]! }
             type Class { id: ID! sessions: [Session!]! }
             type Session { id: ID! class: Class! }
             type User { id: ID! }",
        )
    }

    fn check(query: &str, variables: serde_json::Value) -> Result<Measure, Refusal> {
        scan(query, &LIMITS)?;
        let doc = async_graphql::parser::parse_query(query).expect("valid GraphQL");
        let variables = Variables::from_json(variables);
        measure(&doc, &variables, &pages(), &LIMITS)
    }

    fn bomb(levels: usize) -> String {
        let mut q = String::from("fragment F0 on Query { me { id } } ");
        for i in 1..=levels {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{p} ...F{p} }} ",
                p = i - 1
            ));
        }
        q.push_str(&format!("query {{ ...F{levels} }}"));
        q
    }

    #[test]
    fn page_sizes_come_from_the_schema() {
        assert_eq!(pages().default_for("classes"), 20);
        assert_eq!(pages().default_for("me"), 1);
    }

    #[test]
    fn fields_count_once_and_pages_multiply() {
        let m = check("{ me { id } }", serde_json::json!({})).unwrap();
        assert_eq!((m.cost, m.depth), (2, 2));
        // The default page (20) and a given one.
        let m = check("{ classes { nodes { id } } }", serde_json::json!({})).unwrap();
        assert_eq!(m.cost, 1 + 20 * 2);
        let m = check(
            "{ classes(first: 100) { nodes { id } } }",
            serde_json::json!({}),
        )
        .unwrap();
        assert_eq!(m.cost, 1 + 100 * 2);
        let q = "query($n: Int! = 7) { classes(first: $n) { nodes { id } } }";
        assert_eq!(check(q, serde_json::json!({})).unwrap().cost, 1 + 7 * 2);
        assert_eq!(
            check(q, serde_json::json!({ "n": 50 })).unwrap().cost,
            1 + 50 * 2
        );
        let aliased: String = (0..10)
            .map(|i| format!("a{i}: classes(first: 100) {{ nodes {{ id }} }} "))
            .collect();
        assert_eq!(
            check(&format!("{{ {aliased} }}"), serde_json::json!({})),
            Err(Refusal::TooCostly {
                cost: 2010,
                limit: 1000
            })
        );
        // A fragment counts wherever it is spread, inside the page it is spread in.
        let q =
            "fragment C on Class { id sessions { id } } { classes(first: 10) { nodes { ...C } } }";
        assert_eq!(
            check(q, serde_json::json!({})).unwrap().cost,
            1 + 10 * (1 + 3)
        );
    }

    #[test]
    fn the_fragment_bomb_is_measured_without_expanding_it() {
        let started = std::time::Instant::now();
        let refusal = check(&bomb(21), serde_json::json!({})).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooCostly {
                cost: 2 << 21,
                limit: 1000
            }
        );
        // Far deeper: the sums saturate, nothing overflows or expands.
        assert!(matches!(
            check(&bomb(45), serde_json::json!({})),
            Err(Refusal::TooCostly { .. } | Refusal::TooManyLevels { .. })
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Small enough, it passes: 2^3 copies of `me { id }`.
        assert_eq!(check(&bomb(3), serde_json::json!({})).unwrap().cost, 16);
    }

    #[test]
    fn cycles_are_found() {
        for q in [
            "fragment A on Query { ...A } { ...A }",
            "fragment A on Query { ...B } fragment B on Query { me { ...A } } { ...A }",
            // Not spread by any operation: still a cycle.
            "fragment A on Query { ...B } fragment B on Query { ...A } { me { id } }",
        ] {
            assert!(
                matches!(
                    check(q, serde_json::json!({})),
                    Err(Refusal::FragmentCycle { .. })
                ),
                "{q}"
            );
        }
        // A fragment spread twice is not a cycle.
        let q = "fragment A on User { id } { me { ...A ...A } }";
        assert!(check(q, serde_json::json!({})).is_ok());
    }

    #[test]
    fn depth_counts_fields_and_introspection_has_its_own_limit() {
        let deep = "{ me { a { b { c { d { e { f { g { h } } } } } } } } }";
        assert_eq!(
            check(deep, serde_json::json!({})),
            Err(Refusal::TooDeep { depth: 9, limit: 8 })
        );
        let intro = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }";
        let m = check(intro, serde_json::json!({})).unwrap();
        assert_eq!((m.depth, m.introspection_depth), (1, 10));
        let too_deep = format!(
            "{{ __type(name: \"X\") {{ {} name {} }} }}",
            "ofType { ".repeat(20),
            "}".repeat(20)
        );
        assert!(matches!(
            check(&too_deep, serde_json::json!({})),
            Err(Refusal::IntrospectionTooDeep { .. })
        ));
    }

    #[test]
    fn the_text_is_bounded_before_it_is_parsed() {
        let braces = format!("{}{}", "{ a ".repeat(100), "}".repeat(100));
        assert_eq!(
            scan(&braces, &LIMITS),
            Err(Refusal::NestedTooDeep { limit: 64 })
        );
        let long = format!("{{ {} }}", "a ".repeat(5000));
        assert_eq!(
            scan(&long, &LIMITS),
            Err(Refusal::TooManyTokens { limit: 4000 })
        );
        // Brackets in strings, block strings and comments are not nesting.
        let quoted = format!(
            "{{ a(s: \"{}\", t: \"\"\"{}\"\"\") # {}\n }}",
            "{".repeat(100),
            "[\\\"\"\"".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(scan(&quoted, &LIMITS), Ok(()));
    }

    #[test]
    fn a_whole_body_of_the_worst_text_is_checked_quickly() {
        // 64 KiB at most: as many tokens and brackets as allowed, in fragments and aliases.
        let worst: Vec<String> = vec![
            bomb(40),
            format!("{{ {} }}", "a: __typename ".repeat(990)),
            format!("{}{}", "{ a ".repeat(60), "}".repeat(60)).repeat(30),
            format!(
                "{} {{ ...G0 }}",
                (0..50)
                    .map(|i| format!("fragment G{i} on Query {{ ...G{} ...G{} }}", i + 1, i + 1))
                    .collect::<String>()
            ),
        ];
        for q in worst {
            let started = std::time::Instant::now();
            let _ = scan(&q, &LIMITS).and_then(|()| {
                let doc = async_graphql::parser::parse_query(&q)
                    .map_err(|_| Refusal::TooManyTokens { limit: 0 })?;
                measure(&doc, &Variables::default(), &pages(), &LIMITS)
            });
            let took = started.elapsed();
            println!("{} bytes checked in {took:?}", q.len());
            assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        }
    }
}
