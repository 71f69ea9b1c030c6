//! Reading rsync's list files: rule files (`--exclude-from`, merge and per-directory files)
//! and `--files-from` lists, as rsync reads them.

use std::io::Read as _;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

/// Largest `--files-from` list read (bytes): bounds memory for a runaway producer.
pub const MAX_FILES_FROM: usize = 256 << 20;

/// Reads an rsync `--exclude-from` / `--include-from` file: one pattern per line (`\n`, `\r`
/// or `\r\n` ends a line); blank lines and lines starting with `;` or `#` are skipped. Other
/// whitespace is kept, as rsync keeps it. Patterns may carry the `+ ` / `- ` prefixes.
pub fn read_rules_file(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    split_rules(&data, false).with_context(|| format!("reading {}", path.display()))
}

/// Splits a rule file into rules: lines (skipping blank and comment lines), or with
/// `word_split` whitespace-separated words (no comments), as rsync's `parse_filter_file`.
pub(crate) fn split_rules(data: &[u8], word_split: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if word_split {
        data.split(|b| b.is_ascii_whitespace()).collect()
    } else {
        data.split(|&b| b == b'\n' || b == b'\r').collect()
    };
    for (n, line) in pieces.into_iter().enumerate() {
        if line.is_empty() || (!word_split && (line[0] == b';' || line[0] == b'#')) {
            continue;
        }
        let s = std::str::from_utf8(line)
            .map_err(|_| anyhow::anyhow!("line {}: pattern is not UTF-8", n + 1))?;
        out.push(s.to_owned());
    }
    Ok(out)
}

/// Reads a `--files-from` list (`-` for standard input): one path per line (`\n` or `\r`),
/// or NUL-separated with `from0`; blank lines and (without `from0`) lines starting with `#`
/// or `;` are skipped. Paths are cleaned as rsync cleans them: a leading `/` and `./`
/// components are dropped, `//` collapses, `..` goes up (never above the base). A trailing
/// `/` is kept (a listed `dir/` sends its contents).
pub fn read_files_from(file: &Path, from0: bool) -> Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    let limit = MAX_FILES_FROM as u64 + 1;
    if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut data)
            .context("reading --files-from from standard input")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut data))
            .with_context(|| format!("reading --files-from {}", file.display()))?;
    }
    if data.len() > MAX_FILES_FROM {
        bail!("--files-from list larger than {MAX_FILES_FROM} bytes");
    }
    parse_files_from(&data, from0)
}

pub(crate) fn parse_files_from(data: &[u8], from0: bool) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let lines: Box<dyn Iterator<Item = &[u8]>> = if from0 {
        Box::new(data.split(|&b| b == 0))
    } else {
        Box::new(data.split(|&b| b == b'\n' || b == b'\r'))
    };
    for line in lines {
        if line.is_empty() || (!from0 && (line[0] == b'#' || line[0] == b';')) {
            continue;
        }
        match clean_path(line) {
            Some(p) => out.push(p),
            None => bail!(
                "--files-from: {} leads out of the base",
                crate::escape::text(line)
            ),
        }
    }
    Ok(out)
}

/// rsync's `clean_fname` for a listed path, relative to the base: `None` when `..` would
/// climb above it. `.` stands for the base itself; a trailing `/` is kept.
fn clean_path(p: &[u8]) -> Option<Vec<u8>> {
    let trailing = p.ends_with(b"/") && p.iter().any(|&b| b != b'/');
    let mut comps: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                comps.pop()?;
            }
            c => comps.push(c),
        }
    }
    if comps.is_empty() {
        return Some(if trailing {
            b"./".to_vec()
        } else {
            b".".to_vec()
        });
    }
    let mut out = comps.join(&b'/');
    if trailing {
        out.push(b'/');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_from_lines_comments_and_cleaning() {
        let got = parse_files_from(
            b"# c\n\n;c\n/a/b/y\n./top\nc/\na//x\na/../t2\r\nsp ace \n",
            false,
        )
        .unwrap();
        let want: Vec<&[u8]> = vec![b"a/b/y", b"top", b"c/", b"a/x", b"t2", b"sp ace "];
        assert_eq!(got, want);
        let got = parse_files_from(b"a/x\0#top\0\0", true).unwrap();
        let want: Vec<&[u8]> = vec![b"a/x", b"#top"];
        assert_eq!(got, want);
        assert!(parse_files_from(b"a/../../etc\n", false).is_err());
        assert_eq!(
            parse_files_from(b"/\n.\n", false).unwrap(),
            vec![b".".to_vec(); 2]
        );
    }

    #[test]
    fn rules_file_lines_and_words() {
        let got = split_rules(b"# c\n; c\n\n+ foo\nsub \n- a\r\n #x\n*", false).unwrap();
        assert_eq!(got, ["+ foo", "sub ", "- a", " #x", "*"]);
        let got = split_rules(b"a  b\n#c\td", true).unwrap();
        assert_eq!(got, ["a", "b", "#c", "d"]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules");
        std::fs::write(&p, "*.tmp\n").unwrap();
        assert_eq!(read_rules_file(&p).unwrap(), ["*.tmp"]);
        let err = read_rules_file(dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"));
    }
}
