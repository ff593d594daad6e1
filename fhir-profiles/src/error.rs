use std::fmt;

/// FHIR `IssueType` codes the crate reports (a subset of <http://hl7.org/fhir/issue-type>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueCode {
    Structure,
    Invalid,
    Required,
    Value,
    NotSupported,
    BusinessRule,
    CodeInvalid,
    TooLong,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Structure => "structure",
            IssueCode::Invalid => "invalid",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::NotSupported => "not-supported",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::TooLong => "too-long",
        }
    }
}

/// One problem with a submitted resource: what kind, a message for the integrator, and the
/// FHIRPath of the offending element where one can be named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub code: IssueCode,
    pub diagnostics: String,
    pub expression: Option<String>,
}

impl Issue {
    pub fn new(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue { code, diagnostics: diagnostics.into(), expression: None }
    }

    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
}

/// Why a submitted resource was refused.
///
/// Messages name elements and rules, never values: they are returned to the submitter and may be
/// logged, and a value could be a HETU or note text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// Not JSON, or not UTF-8 (HTTP 400).
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON, but not a FHIR resource of a type the model can read (HTTP 400).
    #[error("{}", .0.first().map(|i| i.diagnostics.as_str()).unwrap_or("invalid resource"))]
    Structure(Vec<Issue>),
    /// A readable resource that breaks a rule of the national profiles (HTTP 422).
    #[error("{}", .0.first().map(|i| i.diagnostics.as_str()).unwrap_or("the resource breaks a profile rule"))]
    Rule(Vec<Issue>),
}

impl ProfileError {
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ProfileError::MalformedJson(message) => {
                vec![Issue::new(IssueCode::Structure, format!("the body is not valid JSON: {message}"))]
            }
            ProfileError::Structure(issues) | ProfileError::Rule(issues) => issues.clone(),
        }
    }

    /// One broken business rule at `expression` (HTTP 422).
    pub fn business_rule(message: impl Into<String>, expression: impl Into<String>) -> Self {
        ProfileError::Rule(vec![Issue::new(IssueCode::BusinessRule, message).at(expression)])
    }

    pub(crate) fn structure(issue: Issue) -> Self {
        ProfileError::Structure(vec![issue])
    }
}

impl fmt::Display for IssueCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an element is, as the FHIRPath an [`Issue`] names, written out only when an issue
/// names it. The validators walk every element of a document; formatting each one's path as
/// they went was a third of validating one.
#[derive(Clone, Copy)]
pub(crate) enum Path<'p> {
    Root(&'p str),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl<'p> Path<'p> {
    pub(crate) fn key(&'p self, key: &'p str) -> Path<'p> {
        Path::Key(self, key)
    }

    pub(crate) fn index(&'p self, index: usize) -> Path<'p> {
        Path::Index(self, index)
    }

    /// The name of the element (the last key), for messages.
    pub(crate) fn element(&self) -> &'p str {
        match *self {
            Path::Root(root) => root.rsplit('.').next().unwrap_or(root),
            Path::Key(_, key) => key,
            Path::Index(parent, _) => parent.element(),
        }
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root(root) => f.write_str(root),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// A name a client sent (a member, an element, a search parameter, a resource type) as it may be
/// echoed in an error: shown only when it is made of letters and `_-:.`, with at most two digits
/// at its end (`icd10`), as every name the FHIR specification and the record contract define is;
/// anything else might be data typed where a name goes (a HETU or a date as a member name) and is
/// shown as `…`.
pub fn printable_name(name: &str) -> String {
    let word = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let reads_as_a_name = (1..=64).contains(&name.len())
        && name.len() - word.len() <= 2
        && word.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && word.bytes().all(|b| b.is_ascii_alphabetic() || b"_-:.".contains(&b));
    if reads_as_a_name {
        name.to_owned()
    } else {
        "…".to_owned()
    }
}

/// An id (or other token of the gateway's own making) as it may be echoed in an error:
/// letters, digits and `_-:.`, bounded. Whatever else a client put in it is dropped, so an
/// error cannot carry markup back.
pub fn printable(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || "_-:.".contains(*c)).take(64).collect()
}

/// `message` with every quoted text (in backticks or double quotes) replaced by `…`:
/// serde quotes the values it could not read, and no submitted value may be echoed.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in message.chars() {
        match quote {
            Some(open) if c == open => {
                out.push('…');
                quote = None;
            }
            Some(_) => {}
            None if matches!(c, '`' | '"') => quote = Some(c),
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_never_reach_a_message() {
        assert_eq!(
            without_values(r#"invalid type: string "131052-308T Virtanen", expected a sequence at line 1"#),
            "invalid type: string …, expected a sequence at line 1"
        );
        assert_eq!(
            without_values("unknown variant `secret`, expected one of `a`, `b`"),
            "unknown variant …, expected one of …, …"
        );
        assert_eq!(without_values(r#"cut "open"#), "cut …");
        assert_eq!(
            without_values("the field 'record_id' is given more than once"),
            "the field 'record_id' is given more than once"
        );
    }
}
