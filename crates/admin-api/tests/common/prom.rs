//! A strict-enough parser of Prometheus text exposition (format 0.0.4) for tests: every line is
//! a `# HELP`/`# TYPE` comment or a sample `name{label="value",...} number`; a family's samples
//! follow its TYPE line. Returns the families with their types and samples.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One sample: its name, labels and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Families by name: (type, samples).
pub type Families = BTreeMap<String, (String, Vec<Sample>)>;

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn family_of(sample: &str, families: &Families) -> Option<String> {
    if families.contains_key(sample) {
        return Some(sample.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families
                .get(base)
                .is_some_and(|(t, _)| t == "histogram" || t == "summary")
            {
                return Some(base.to_owned());
            }
        }
    }
    None
}

fn labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"").ok_or(format!("bad labels {s:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("bad escape in {s:?}")),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or(format!("unterminated label value in {s:?}"))?;
        let k = k.trim_start_matches(',');
        if !valid_name(k) {
            return Err(format!("bad label name {k:?}"));
        }
        out.insert(k.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(out)
}

/// Parses `text`; the first malformed line is the error.
pub fn parse(text: &str) -> Result<Families, String> {
    let mut families: Families = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix("# ") {
            let mut parts = c.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !valid_name(name) {
                        return Err(format!("bad metric name in {line:?}"));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("bad type in {line:?}"));
                    }
                    if families.contains_key(name) {
                        return Err(format!("{name} declared twice"));
                    }
                    families.insert(name.to_owned(), (kind.to_owned(), Vec::new()));
                }
                (Some("HELP"), Some(_), _) => {}
                _ => {}
            }
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').ok_or(format!("no value: {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| format!("bad value in {line:?}"))?,
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (
                n,
                labels(l.strip_suffix('}').ok_or(format!("bad labels: {line:?}"))?)?,
            ),
            None => (name_labels, BTreeMap::new()),
        };
        if !valid_name(name) {
            return Err(format!("bad metric name in {line:?}"));
        }
        let family =
            family_of(name, &families).ok_or(format!("sample before its TYPE: {line:?}"))?;
        families.get_mut(&family).unwrap().1.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(families)
}

/// The metric names docs/metrics.md documents: the first cell of each table row that is a
/// `pgtide_...` name in backticks.
pub fn documented(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .filter(|n| n.starts_with("pgtide_"))
        .collect()
}
