//! Splitting a SQL file into statements: the HTTP interface runs one statement per request.

/// The statements of `sql`, split at `;` outside quotes and comments, without the `;`; the
/// ones with nothing but whitespace and comments are left out.
pub(crate) fn statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    // A backslash escapes the next character; a doubled quote is one quote and
                    // needs nothing special (the loop closes and reopens the literal).
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 1;
            }
            b';' => {
                push_statement(&mut out, &sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    push_statement(&mut out, &sql[start.min(sql.len())..]);
    out
}

fn push_statement<'a>(out: &mut Vec<&'a str>, statement: &'a str) {
    let statement = statement.trim();
    if !strip_comments(statement).trim().is_empty() {
        out.push(statement);
    }
}

/// `sql` without `--` and `/* */` comments (quotes are not considered: only used to see whether
/// anything but comments is left).
fn strip_comments(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |n| &after[n..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |n| &after[n + 2..]);
        } else {
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let sql = "-- a; comment\nCREATE TABLE a (x String COMMENT 'it''s; fine');\n\
                   /* b; */ SELECT 'a\\';b', `c;d`;\n-- trailing; comment\n";
        assert_eq!(
            statements(sql),
            [
                "-- a; comment\nCREATE TABLE a (x String COMMENT 'it''s; fine')",
                "/* b; */ SELECT 'a\\';b', `c;d`",
            ]
        );
    }

    #[test]
    fn a_file_without_a_final_semicolon_still_gives_its_last_statement() {
        assert_eq!(
            statements("SELECT 1;\nSELECT 2\n"),
            ["SELECT 1", "SELECT 2"]
        );
        assert!(statements("-- nothing\n").is_empty());
    }
}
