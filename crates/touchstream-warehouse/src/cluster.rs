//! The cluster form of the migrations: each single-node statement of `schemas/clickhouse/`
//! becomes the statements that give a ClickHouse cluster the same tables, so the migration
//! files stay the one description of the columns.
//!
//! A table `t` of a migration becomes, on every server of the cluster (`ON CLUSTER`):
//! - `t_local`: the same columns, engine and keys, as `Replicated…MergeTree` with the ZooKeeper
//!   path `/clickhouse/tables/{cluster}/{shard}/<database>/t_local/<migration>` and replica
//!   `{replica}` (the servers' macros). The migration's name in the path keeps a table created
//!   anew under an old name (0003 rebuilds `events`) apart from the renamed old one. The columns
//!   carry no `COMMENT`: ClickHouse 18.16 compares a new replica's columns with the ones kept in
//!   ZooKeeper and refuses the second replica of a table whose columns have comments;
//! - `t`: a `Distributed` table over `t_local`, with the columns and comments of the migration,
//!   sharded by [`SHARDING_KEY`] when the table has `site_id` and `anonymous_id`. A table
//!   without them (those of 0001 and 0002, which 0003 replaces) gets no sharding key: it can be
//!   read, and ClickHouse refuses to write into it through `t`.
//!
//! The runner's own table is replicated on every server as one shard (every server holds every
//! record), and has no Distributed table.
//!
//! - `RENAME TABLE a TO b` renames `a_local` and `a`, then points the Distributed `b` at
//!   `b_local` (a renamed Distributed table still reads the table it was created over);
//! - `DROP TABLE IF EXISTS t` drops `t` and `t_local`;
//! - `ALTER TABLE` has none yet (18.16 refuses `ALTER … ON CLUSTER` of a Distributed table).
//! - `INSERT INTO t … SELECT …` runs as it is, into the Distributed table with
//!   `insert_distributed_sync = 1` (it returns once every shard has its rows) and
//!   `distributed_product_mode = 'global'` (a JOIN reads its right side whole, once).
//!
//! Any other statement has no cluster form, and a unit test checks every migration has one.

use std::hash::Hasher;

/// The Distributed tables' sharding expression. Every row that deduplicates against another
/// (copies and revisions of one event; every credit row and revision of one conversion) has the
/// same site and device, so they all land on one shard and `FINAL` can collapse them there.
/// `schemas/clickhouse/README.md` says why not the person (`identity_id`).
pub const SHARDING_KEY: &str = "sipHash64(concat(site_id, '/', anonymous_id))";

/// The value of [`SHARDING_KEY`] for a row: ClickHouse's `sipHash64` of one string is
/// SipHash-2-4 with a zero key over its bytes (checked against the server by the tests).
pub fn sharding_hash(site_id: &str, anonymous_id: &str) -> u64 {
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4 with a zero key: exactly what is needed
    let mut hasher = std::hash::SipHasher::new();
    hasher.write(site_id.as_bytes());
    hasher.write(b"/");
    hasher.write(anonymous_id.as_bytes());
    hasher.finish()
}

/// One thing the migration runner does on the cluster for one single-node statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A DDL statement `ON CLUSTER`; "already exists" means done.
    Ddl(String),
    /// Make the Distributed table `table` read `table_local`: create it if missing, recreate it
    /// if it reads another table (a renamed one).
    PointDistributed { table: String },
    /// A statement run as it is on the server the runner talks to, with
    /// `insert_distributed_sync = 1`.
    AsIs(String),
}

/// Where a table's rows live on the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Split over the shards by [`SHARDING_KEY`], read through a Distributed table.
    Sharded,
    /// Every server holds every row (the runner's records).
    EveryServer,
}

/// The cluster steps of one single-node `statement` of `migration`.
pub(crate) fn steps(
    statement: &str,
    database: &str,
    cluster: &str,
    migration: &str,
    layout: Layout,
) -> Result<Vec<Step>, String> {
    let code = strip_leading_comments(statement);
    let words: Vec<&str> = code.split_whitespace().take(5).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let starts = |prefix: &[&str]| {
        upper.len() >= prefix.len() && prefix.iter().zip(&upper).all(|(p, w)| p == w)
    };
    let on = format!("ON CLUSTER {cluster}");
    if starts(&["CREATE", "TABLE", "IF", "NOT", "EXISTS"]) {
        let table = parse_create(code)?;
        let name = &table.name;
        match layout {
            Layout::EveryServer => Ok(vec![Step::Ddl(format!(
                "CREATE TABLE IF NOT EXISTS {database}.{name} {on}\n({})\nENGINE = Replicated{}('/clickhouse/tables/{{cluster}}/all/{database}/{name}/{migration}', '{{shard}}-{{replica}}'{}){}",
                table.columns_without_comments(),
                table.engine,
                table.engine_args_after_replica(),
                table.rest
            ))]),
            Layout::Sharded => {
                let key = if table.has_column("site_id") && table.has_column("anonymous_id") {
                    format!(", {SHARDING_KEY}")
                } else {
                    String::new()
                };
                Ok(vec![
                    Step::Ddl(format!(
                        "CREATE TABLE IF NOT EXISTS {database}.{name}_local {on}\n({})\nENGINE = Replicated{}('/clickhouse/tables/{{cluster}}/{{shard}}/{database}/{name}_local/{migration}', '{{replica}}'{}){}",
                        table.columns_without_comments(),
                        table.engine,
                        table.engine_args_after_replica(),
                        table.rest
                    )),
                    Step::Ddl(format!(
                        "CREATE TABLE IF NOT EXISTS {database}.{name} {on}\n({})\nENGINE = Distributed({cluster}, {database}, {name}_local{key})",
                        table.columns
                    )),
                ])
            }
        }
    } else if starts(&["RENAME", "TABLE"]) {
        let rest: Vec<&str> = code.split_whitespace().skip(2).collect();
        let [from, to_word, to] = rest[..] else {
            return Err(format!(
                "a RENAME in a migration renames one table (`RENAME TABLE a TO b`): {code}"
            ));
        };
        if !to_word.eq_ignore_ascii_case("TO") || from.contains('.') || to.contains('.') {
            return Err(format!("cannot read the RENAME: {code}"));
        }
        Ok(vec![
            Step::Ddl(format!(
                "RENAME TABLE {database}.{from}_local TO {database}.{to}_local {on}"
            )),
            Step::Ddl(format!(
                "RENAME TABLE {database}.{from} TO {database}.{to} {on}"
            )),
            Step::PointDistributed { table: to.into() },
        ])
    } else if starts(&["DROP", "TABLE", "IF", "EXISTS"]) {
        let rest: Vec<&str> = code.split_whitespace().skip(4).collect();
        let [table] = rest[..] else {
            return Err(format!("cannot read the DROP: {code}"));
        };
        Ok(vec![
            Step::Ddl(format!("DROP TABLE IF EXISTS {database}.{table} {on}")),
            Step::Ddl(format!(
                "DROP TABLE IF EXISTS {database}.{table}_local {on}"
            )),
        ])
    } else if starts(&["ALTER", "TABLE"]) {
        // `ALTER TABLE t_local ON CLUSTER` would do for the local tables, but 18.16 runs an
        // ALTER ON CLUSTER on one server per shard (internal_replication), which it refuses
        // for the Distributed table ("isn't replicated"); its cluster form would rebuild the
        // Distributed table over the altered local one, which is not written yet.
        Err(format!(
            "ALTER TABLE has no cluster form yet (the Distributed table would have to be \
             rebuilt over the altered local table; see crates/touchstream-warehouse/src/cluster.rs): {code}"
        ))
    } else if starts(&["INSERT", "INTO"]) {
        Ok(vec![Step::AsIs(statement.into())])
    } else {
        Err(format!(
            "no cluster form for this statement (the runner knows CREATE TABLE IF NOT EXISTS, \
             RENAME TABLE, DROP TABLE IF EXISTS and INSERT … SELECT): {code}"
        ))
    }
}

/// The table a Distributed `engine_full` reads: its third argument.
pub(crate) fn distributed_target(engine_full: &str) -> Option<&str> {
    let args = engine_full.strip_prefix("Distributed(")?;
    args.split(',')
        .nth(2)
        .map(|t| t.trim().trim_end_matches(')'))
}

/// A `CREATE TABLE IF NOT EXISTS name (columns) ENGINE = Engine(args) rest`.
#[derive(Debug)]
struct CreateTable {
    name: String,
    /// The text between the parentheses, comments and all.
    columns: String,
    /// The column definitions, split at top-level commas.
    definitions: Vec<String>,
    engine: String,
    /// The engine's arguments, empty without parentheses.
    args: String,
    /// What follows the engine (PARTITION BY, ORDER BY …), with its leading whitespace.
    rest: String,
}

impl CreateTable {
    fn has_column(&self, column: &str) -> bool {
        self.definitions
            .iter()
            .any(|d| d.split_whitespace().next() == Some(column))
    }

    /// Every column definition up to its `COMMENT`.
    fn columns_without_comments(&self) -> String {
        let defs: Vec<String> = self
            .definitions
            .iter()
            .map(|d| {
                let cut = top_level_keyword(d, "COMMENT").unwrap_or(d.len());
                format!("    {}", d[..cut].trim())
            })
            .collect();
        format!("\n{}\n", defs.join(",\n"))
    }

    /// The engine's own arguments, to follow the ZooKeeper path and replica name.
    fn engine_args_after_replica(&self) -> String {
        if self.args.trim().is_empty() {
            String::new()
        } else {
            format!(", {}", self.args.trim())
        }
    }
}

/// The table name after `CREATE TABLE IF NOT EXISTS`, the text of its column list and where
/// that list's closing parenthesis is.
fn column_list(code: &str) -> Result<(String, String, usize), String> {
    let bad = |why: &str| format!("cannot read the CREATE TABLE ({why}): {code}");
    let after: String = code
        .split_whitespace()
        .skip(5)
        .collect::<Vec<_>>()
        .join(" ");
    let name: String = after
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    if name.is_empty() {
        return Err(bad("no table name"));
    }
    let open = code.find('(').ok_or_else(|| bad("no column list"))?;
    let close = matching_paren(code, open).ok_or_else(|| bad("unbalanced parentheses"))?;
    Ok((name, code[open + 1..close].to_string(), close))
}

fn parse_create(code: &str) -> Result<CreateTable, String> {
    let bad = |why: &str| format!("cannot read the CREATE TABLE ({why}): {code}");
    let (name, columns, close) = column_list(code)?;
    if name.contains('.') {
        return Err(bad("a migration names no database"));
    }
    let tail = &code[close + 1..];
    let engine_at = top_level_keyword(tail, "ENGINE").ok_or_else(|| bad("no ENGINE"))?;
    let engine_text = tail[engine_at + "ENGINE".len()..].trim_start();
    let engine_text = engine_text
        .strip_prefix('=')
        .ok_or_else(|| bad("ENGINE without ="))?
        .trim_start();
    let engine: String = engine_text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return Err(bad("the cluster form replicates a plain *MergeTree engine"));
    }
    let after_engine = &engine_text[engine.len()..];
    let (args, rest) = if after_engine.starts_with('(') {
        let end = matching_paren(after_engine, 0).ok_or_else(|| bad("engine arguments"))?;
        (
            after_engine[1..end].to_string(),
            after_engine[end + 1..].to_string(),
        )
    } else {
        (String::new(), after_engine.to_string())
    };
    Ok(CreateTable {
        name,
        definitions: split_top_level(&columns),
        columns,
        engine,
        args,
        rest,
    })
}

/// The statement from its first line that is not a comment.
fn strip_leading_comments(statement: &str) -> &str {
    let mut rest = statement.trim_start();
    while rest.starts_with("--") {
        rest = rest.find('\n').map_or("", |n| rest[n + 1..].trim_start());
    }
    rest
}

/// Walks `text` outside quotes and `--` comments, calling `visit(index, byte, depth)` for each
/// byte there; stops when `visit` returns true and gives that index.
fn scan(text: &str, mut visit: impl FnMut(usize, u8, i32) -> bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            byte => {
                if byte == b'(' {
                    depth += 1;
                }
                if visit(i, byte, depth) {
                    return Some(i);
                }
                if byte == b')' {
                    depth -= 1;
                }
            }
        }
        i += 1;
    }
    None
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let found = scan(&text[open..], |_, byte, depth| byte == b')' && depth == 1)?;
    Some(open + found)
}

/// The column definitions of a column list: split at commas outside parentheses and quotes,
/// `--` comments dropped.
fn split_top_level(columns: &str) -> Vec<String> {
    let mut cuts = Vec::new();
    scan(columns, |i, byte, depth| {
        if byte == b',' && depth == 0 {
            cuts.push(i);
        }
        false
    });
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([columns.len()]) {
        let definition: String = columns[start..cut]
            .lines()
            // A `--` comment outside quotes ends the line's code.
            .map(|line| {
                line[..comment_start(line).unwrap_or(line.len())]
                    .trim()
                    .to_string()
            })
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !definition.is_empty() {
            out.push(definition);
        }
        start = cut + 1;
    }
    out
}

/// Where a `--` comment starts in one line, outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where `keyword` (a whole word, any case) first stands in `text` outside quotes and
/// parentheses.
fn top_level_keyword(text: &str, keyword: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    scan(text, |i, _, depth| {
        let candidate = &text[i..];
        depth == 0
            && candidate.len() >= keyword.len()
            && candidate[..keyword.len()].eq_ignore_ascii_case(keyword)
            && (i == 0 || !word(bytes[i - 1]))
            && bytes.get(i + keyword.len()).is_none_or(|&c| !word(c))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::migrate::{MIGRATIONS, MIGRATIONS_TABLE};
    use crate::sql;

    fn columns_of(create: &str) -> Vec<(String, String)> {
        let (_, columns, _) = column_list(strip_leading_comments(create)).unwrap();
        split_top_level(&columns)
            .iter()
            .map(|d| {
                let cut = top_level_keyword(d, "COMMENT").unwrap_or(d.len());
                let (name, ty) = d[..cut].trim().split_once(' ').unwrap();
                (name.to_string(), ty.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn the_sharding_hash_is_clickhouses_siphash64() {
        // What ClickHouse 18.16 answers to SELECT sipHash64('abc'), sipHash64(''),
        // sipHash64(concat('default', '/', 'anon-1')).
        #[allow(deprecated)]
        let plain = |s: &str| {
            let mut h = std::hash::SipHasher::new();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(plain("abc"), 4_596_069_200_710_135_518);
        assert_eq!(plain(""), 2_202_906_307_356_721_367);
        assert_eq!(
            sharding_hash("default", "anon-1"),
            17_941_792_991_296_998_173
        );
        assert_eq!(sharding_hash("default", "anon-1"), plain("default/anon-1"));
    }

    #[test]
    fn every_migration_statement_has_a_cluster_form() {
        for migration in MIGRATIONS {
            for statement in sql::statements(migration.sql) {
                let made = steps(statement, "db", "c", migration.name, Layout::Sharded)
                    .unwrap_or_else(|e| panic!("{}: {e}", migration.name));
                assert!(!made.is_empty());
            }
        }
        for statement in sql::statements(MIGRATIONS_TABLE) {
            steps(statement, "db", "c", "runner", Layout::EveryServer).unwrap();
        }
    }

    /// The local and the Distributed table of every CREATE have exactly the columns, types and
    /// order of the single-node table; the local one without comments, the Distributed one
    /// with them.
    #[test]
    fn cluster_tables_have_the_single_node_columns() {
        let mut tables = 0;
        for migration in MIGRATIONS {
            for statement in sql::statements(migration.sql) {
                if !strip_leading_comments(statement).starts_with("CREATE TABLE") {
                    continue;
                }
                tables += 1;
                let single = columns_of(statement);
                let made = steps(statement, "db", "c", migration.name, Layout::Sharded).unwrap();
                let [Step::Ddl(local), Step::Ddl(distributed)] = &made[..] else {
                    panic!("{made:?}");
                };
                let local_cols = columns_of(local.replace(" ON CLUSTER c", "").as_str());
                let dist_cols = columns_of(distributed.replace(" ON CLUSTER c", "").as_str());
                assert_eq!(local_cols, single, "{}", migration.name);
                assert_eq!(dist_cols, single, "{}", migration.name);
                let (local_body, _) = local.split_once("ENGINE").unwrap();
                assert!(!local_body.contains("COMMENT"), "{local}");
                assert!(distributed.contains("COMMENT"), "{distributed}");
            }
        }
        assert_eq!(tables, 4);
    }

    #[test]
    fn a_create_becomes_a_replicated_local_table_and_a_distributed_one() {
        let create = "-- note (with parens)\nCREATE TABLE IF NOT EXISTS t\n(\n    site_id String COMMENT 'it''s, (x)',\n    anonymous_id String,\n    e Enum8('a' = 1, 'b' = 2),\n    revision UInt32\n)\nENGINE = ReplacingMergeTree(revision)\nPARTITION BY toYYYYMM(x)\nORDER BY (site_id, e)";
        let created = steps(create, "db", "c", "0009_x", Layout::Sharded).unwrap();
        assert_eq!(
            created,
            [
                Step::Ddl(
                    "CREATE TABLE IF NOT EXISTS db.t_local ON CLUSTER c\n(\n    site_id String,\n    anonymous_id String,\n    e Enum8('a' = 1, 'b' = 2),\n    revision UInt32\n)\nENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{cluster}/{shard}/db/t_local/0009_x', '{replica}', revision)\nPARTITION BY toYYYYMM(x)\nORDER BY (site_id, e)".into()
                ),
                Step::Ddl(format!(
                    "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER c\n(\n    site_id String COMMENT 'it''s, (x)',\n    anonymous_id String,\n    e Enum8('a' = 1, 'b' = 2),\n    revision UInt32\n)\nENGINE = Distributed(c, db, t_local, {SHARDING_KEY})"
                )),
            ]
        );
        // Without the device columns, no sharding key.
        let old = "CREATE TABLE IF NOT EXISTS o (x String) ENGINE = ReplacingMergeTree ORDER BY x";
        let old_steps = steps(old, "db", "c", "m", Layout::Sharded).unwrap();
        assert_eq!(
            old_steps[1],
            Step::Ddl(
                "CREATE TABLE IF NOT EXISTS db.o ON CLUSTER c\n(x String)\nENGINE = Distributed(c, db, o_local)".into()
            )
        );
        let Step::Ddl(local) = &old_steps[0] else {
            panic!()
        };
        assert!(
            local.ends_with("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{cluster}/{shard}/db/o_local/m', '{replica}') ORDER BY x"),
            "{local}"
        );
    }

    #[test]
    fn the_runner_table_is_replicated_on_every_server() {
        let made = steps(MIGRATIONS_TABLE, "db", "c", "runner", Layout::EveryServer).unwrap();
        let [Step::Ddl(create)] = &made[..] else {
            panic!("{made:?}")
        };
        assert!(create.starts_with("CREATE TABLE IF NOT EXISTS db.schema_migrations ON CLUSTER c"));
        assert!(create.contains("ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{cluster}/all/db/schema_migrations/runner', '{shard}-{replica}')"), "{create}");
    }

    #[test]
    fn renames_drops_and_copies() {
        assert_eq!(
            steps(
                "-- @g x\nRENAME TABLE a TO b",
                "db",
                "c",
                "m",
                Layout::Sharded
            )
            .unwrap(),
            [
                Step::Ddl("RENAME TABLE db.a_local TO db.b_local ON CLUSTER c".into()),
                Step::Ddl("RENAME TABLE db.a TO db.b ON CLUSTER c".into()),
                Step::PointDistributed { table: "b".into() },
            ]
        );
        assert_eq!(
            steps("DROP TABLE IF EXISTS a", "db", "c", "m", Layout::Sharded).unwrap(),
            [
                Step::Ddl("DROP TABLE IF EXISTS db.a ON CLUSTER c".into()),
                Step::Ddl("DROP TABLE IF EXISTS db.a_local ON CLUSTER c".into()),
            ]
        );
        assert!(
            steps(
                "ALTER TABLE a ADD COLUMN x String",
                "db",
                "c",
                "m",
                Layout::Sharded
            )
            .is_err()
        );
        let insert = "INSERT INTO a (x) SELECT x FROM b";
        assert_eq!(
            steps(insert, "db", "c", "m", Layout::Sharded).unwrap(),
            [Step::AsIs(insert.into())]
        );
        assert!(
            steps(
                "RENAME TABLE a TO b, c TO d",
                "db",
                "c",
                "m",
                Layout::Sharded
            )
            .is_err()
        );
        assert!(steps("OPTIMIZE TABLE a FINAL", "db", "c", "m", Layout::Sharded).is_err());
        assert!(
            steps(
                "CREATE TABLE IF NOT EXISTS r (x String) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY x",
                "db",
                "c",
                "m",
                Layout::Sharded
            )
            .is_err()
        );
    }

    #[test]
    fn the_target_of_a_distributed_table_is_its_third_argument() {
        assert_eq!(
            distributed_target(
                "Distributed(touchstream, db, events_local, sipHash64(concat(site_id, '/', anonymous_id)))"
            ),
            Some("events_local")
        );
        assert_eq!(
            distributed_target("Distributed(touchstream, db, old_local)"),
            Some("old_local")
        );
        assert_eq!(distributed_target("MergeTree"), None);
    }
}
