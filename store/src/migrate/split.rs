//! Splits a migration file into statements, so a failure can name the one
//! that failed. Understands what PostgreSQL's lexer does at statement level:
//! quoted strings and identifiers, dollar quotes (function bodies), line and
//! nested block comments.

/// One statement of a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Statement<'a> {
    /// The text, without the terminating `;`, trimmed.
    pub sql: &'a str,
    /// 1-based line of the statement's first character.
    pub line: usize,
}

pub(crate) fn split(src: &str) -> Vec<Statement<'_>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_quoted(b, i, b[i]),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'$' => i = skip_dollar(src, i),
            b';' => {
                push(src, start, i, &mut out);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(src, start, b.len(), &mut out);
    out
}

fn push<'a>(src: &'a str, start: usize, end: usize, out: &mut Vec<Statement<'a>>) {
    let text = &src[start..end];
    // Leading comments belong to no statement; a chunk of only comments is none.
    let mut body = text.trim_start();
    loop {
        if body.starts_with("--") {
            body = body.find('\n').map_or("", |p| &body[p..]).trim_start();
        } else if body.starts_with("/*") {
            let skip = skip_block_comment(body.as_bytes(), 0);
            body = body[skip..].trim_start();
        } else {
            break;
        }
    }
    if body.is_empty() {
        return;
    }
    let offset = end - text.len() + (text.len() - body.len());
    let line = src[..offset].matches('\n').count() + 1;
    out.push(Statement {
        sql: body.trim_end(),
        line,
    });
}

fn skip_quoted(b: &[u8], i: usize, q: u8) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2; // doubled quote is an escaped quote
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], i: usize) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j + 1 < b.len() {
        if b[j] == b'/' && b[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else if b[j] == b'*' && b[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    b.len()
}

/// `$tag$ ... $tag$`; a `$` that does not open a tag (e.g. `$1`) is skipped alone.
fn skip_dollar(src: &str, i: usize) -> usize {
    let b = src.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j >= b.len() || b[j] != b'$' || b[i + 1].is_ascii_digit() {
        return i + 1;
    }
    let tag = &src[i..=j];
    match src[j + 1..].find(tag) {
        Some(p) => j + 1 + p + tag.len(),
        None => b.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(src: &str) -> Vec<&str> {
        split(src).into_iter().map(|s| s.sql).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_comments() {
        let src = "-- head; not a statement\nCREATE TABLE a (x text DEFAULT ';');\n/* c; /* nested; */ */\nSELECT \"we;ird\" FROM a;  \n\n";
        assert_eq!(
            sqls(src),
            vec![
                "CREATE TABLE a (x text DEFAULT ';')",
                "SELECT \"we;ird\" FROM a"
            ]
        );
    }

    #[test]
    fn keeps_dollar_quoted_bodies_whole() {
        let src = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\nBEGIN RETURN 1; END;\n$fn$;\nSELECT $1, $$a;b$$;";
        let got = sqls(src);
        assert_eq!(got.len(), 2);
        assert!(got[0].ends_with("$fn$"));
        assert_eq!(got[1], "SELECT $1, $$a;b$$");
    }

    #[test]
    fn reports_the_line_each_statement_starts_on() {
        let src = "\n-- c\nSELECT 1;\n\n  SELECT\n 2;";
        let lines: Vec<usize> = split(src).iter().map(|s| s.line).collect();
        assert_eq!(lines, vec![3, 5]);
    }

    #[test]
    fn doubled_quotes_do_not_end_a_string() {
        assert_eq!(
            sqls("SELECT 'it''s; fine';SELECT 2"),
            vec!["SELECT 'it''s; fine'", "SELECT 2"]
        );
    }

    #[test]
    fn trailing_comment_only_chunk_is_not_a_statement() {
        assert_eq!(sqls("SELECT 1;\n-- the end\n"), vec!["SELECT 1"]);
    }
}
