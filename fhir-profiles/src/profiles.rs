//! The national profiles as data, and the validator that applies them.
//!
//! StructureDefinitions (differentials on base R4), ValueSets and CodeSystems are shipped as JSON
//! in `fhir-profiles/profiles/` and compiled into the crate, so an auditor reads exactly what the
//! gateway enforces, and an integrator can load the same files into any FHIR validator. They are
//! read once ([`profiles`]).
//!
//! The validator interprets the part of the StructureDefinition format the profiles use (see
//! `profiles/README.md`): cardinality (`min`, `max`) per parent instance, `fixed[x]` (exact
//! equality), `pattern[x]` (the instance holds at least the pattern), `required` bindings,
//! `type` restrictions of choice elements, `Reference` targets that must resolve inside the
//! document to an entry declaring the target profile, and slicing by `value`, `pattern`, `type`
//! and `profile` discriminators with open or closed rules. Everything the R4 model itself checks
//! (datatypes, base cardinalities, unknown elements) happens before, in `parse`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::codes::ICD10_SYSTEM;
use crate::error::{Issue, IssueCode, Path};
use crate::json::Member;

// The profiles' URLs live in the leaf `codes`, shared with the record contract and the
// translation; they stay reachable here, where they have always been.
pub use crate::codes::{
    ASSESSMENT_PROFILE, CANONICAL_BASE, COMPOSITION_PROFILE, CONSENT_PROFILE, DIAGNOSIS_PROFILE, DOCUMENT_PROFILE,
    MENTAL_DISORDERS_VALUE_SET, ORGANIZATION_PROFILE, PATIENT_PROFILE, PRACTITIONER_PROFILE, SERVICE_EVENT_PROFILE,
    SESSION_MODALITY_SYSTEM, SESSION_PROFILE, SESSION_SETTING_SYSTEM,
};

macro_rules! artifacts {
    ($($file:literal),* $(,)?) => {
        /// Every shipped artifact: file name and JSON text.
        pub const ARTIFACTS: &[(&str, &str)] = &[$(($file, include_str!(concat!("../profiles/", $file)))),*];
    };
}

artifacts!(
    "StructureDefinition-vaitio-psychotherapy-document.json",
    "StructureDefinition-vaitio-psychotherapy-composition.json",
    "StructureDefinition-vaitio-patient.json",
    "StructureDefinition-vaitio-practitioner.json",
    "StructureDefinition-vaitio-organization.json",
    "StructureDefinition-vaitio-service-event.json",
    "StructureDefinition-vaitio-psychotherapy-session.json",
    "StructureDefinition-vaitio-diagnosis.json",
    "StructureDefinition-vaitio-assessment.json",
    "StructureDefinition-vaitio-consent.json",
    "ValueSet-vaitio-icd10-mental-disorders.json",
    "CodeSystem-icd10-fi-chapter-f.json",
    "ValueSet-vaitio-assessment-instruments.json",
    "CodeSystem-session-modality.json",
    "ValueSet-vaitio-session-modality.json",
    "CodeSystem-session-setting.json",
    "ValueSet-vaitio-session-setting.json",
    "ValueSet-vaitio-session-type.json",
    "ValueSet-vaitio-service-event-type.json",
    "ValueSet-vaitio-encounter-class.json",
    "ValueSet-vaitio-document-type.json",
    "ValueSet-vaitio-section-code.json",
);

/// The shipped profiles, read on first use.
pub fn profiles() -> &'static Profiles {
    static PROFILES: OnceLock<Profiles> = OnceLock::new();
    PROFILES.get_or_init(|| {
        // The artifacts are compiled in and a unit test loads them: a failure here is a build
        // that never passed its tests.
        Profiles::load(ARTIFACTS).unwrap_or_else(|e| panic!("the shipped profiles do not load: {e}"))
    })
}

/// StructureDefinitions, ValueSets and CodeSystems by canonical URL.
#[derive(Debug)]
pub struct Profiles {
    structures: HashMap<String, StructureDefinition>,
    value_sets: HashMap<String, Vec<Include>>,
    code_systems: HashMap<String, CodeSystem>,
}

#[derive(Debug)]
struct StructureDefinition {
    resource_type: String,
    root: Node,
}

/// An element of a profile, its children by name and its slices by slice name.
#[derive(Debug, Default)]
struct Node {
    rule: Rule,
    children: Vec<(String, Node)>,
    slicing: Option<Slicing>,
    slices: Vec<(String, Node)>,
}

#[derive(Debug, Default)]
struct Rule {
    min: usize,
    /// `None`: unbounded, or not constrained by the profile.
    max: Option<usize>,
    fixed: Option<Value>,
    pattern: Option<Value>,
    /// A `required` binding's value set.
    value_set: Option<String>,
    /// `type.code`: for a choice element, the types allowed.
    types: Vec<String>,
    /// `type.targetProfile` of a Reference.
    target_profiles: Vec<String>,
    /// `type.profile` of a contained resource (`Bundle.entry.resource`).
    resource_profile: Option<String>,
}

#[derive(Debug)]
struct Slicing {
    discriminators: Vec<(Discriminator, String)>,
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discriminator {
    Value,
    Pattern,
    Type,
    Profile,
}

#[derive(Debug)]
struct Include {
    system: String,
    concepts: Vec<String>,
    /// `is-a` (the concept or below it) and `descendent-of` (strictly below) filters: the code
    /// must pass each. The flag says whether the concept itself counts.
    below: Vec<(String, bool)>,
}

#[derive(Debug)]
struct CodeSystem {
    /// Code → parent code.
    concepts: HashMap<String, Option<String>>,
    /// ICD-10 notation: a subcategory `F32.1` is-a its category `F32`, which the fragment lists.
    dotted_subcategories: bool,
}

/// Why the shipped artifacts could not be read: the file (or canonical URL) and what in it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct ArtifactError {
    file: String,
    #[source]
    problem: Unreadable,
}

fn artifact_error(file: &str, problem: impl Into<Unreadable>) -> ArtifactError {
    ArtifactError { file: file.to_owned(), problem: problem.into() }
}

/// What in an artifact the validator cannot read, or would misread.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A member the validator needs is missing or not of its type: what is wrong, in words.
    #[error("{0}")]
    Malformed(&'static str),
    #[error("not a StructureDefinition, ValueSet or CodeSystem")]
    UnknownArtifact,
    #[error("element {id} is not on {resource_type}")]
    ElementOnOtherType { id: String, resource_type: String },
    /// A problem of one element of a StructureDefinition, by the element's id.
    #[error("{id}: {problem}")]
    Element { id: String, problem: Box<Unreadable> },
    #[error("'{0}' is not interpreted by the validator")]
    NotInterpreted(String),
    #[error("discriminator type {0:?} is not interpreted")]
    Discriminator(Option<String>),
    #[error("only 'concept is-a' and 'concept descendent-of' filters are interpreted")]
    Filter,
    #[error("names the unknown profile {0}")]
    UnknownProfile(String),
    #[error("binds the unknown value set {0}")]
    UnknownValueSet(String),
    #[error("includes the unshipped code system {0}")]
    UnshippedCodeSystem(String),
}

impl From<&'static str> for Unreadable {
    fn from(what: &'static str) -> Self {
        Unreadable::Malformed(what)
    }
}

impl Unreadable {
    fn at(id: &str) -> impl FnOnce(Unreadable) -> Unreadable + '_ {
        move |problem| Unreadable::Element { id: id.to_owned(), problem: Box::new(problem) }
    }
}

impl Profiles {
    /// Reads artifacts (file name, JSON). Refuses what the validator would misread: an element
    /// feature it does not interpret is an error, not ignored.
    pub fn load(artifacts: &[(&str, &str)]) -> Result<Profiles, ArtifactError> {
        let mut profiles =
            Profiles { structures: HashMap::new(), value_sets: HashMap::new(), code_systems: HashMap::new() };
        for (file, json) in artifacts {
            let value: Value = serde_json::from_str(json).map_err(|e| artifact_error(file, e))?;
            let url = value.text("url").ok_or_else(|| artifact_error(file, "no url"))?.to_owned();
            match value.text("resourceType") {
                Some("StructureDefinition") => {
                    let definition = structure_definition(&value).map_err(|m| artifact_error(file, m))?;
                    profiles.structures.insert(url, definition);
                }
                Some("ValueSet") => {
                    let includes = value
                        .get("compose")
                        .map(|compose| compose.items("include"))
                        .unwrap_or(&[])
                        .iter()
                        .map(|include| include_of(include).map_err(|m| artifact_error(file, m)))
                        .collect::<Result<Vec<_>, _>>()?;
                    profiles.value_sets.insert(url, includes);
                }
                Some("CodeSystem") => {
                    let mut concepts = HashMap::new();
                    flatten_concepts(value.items("concept"), None, &mut concepts);
                    let dotted_subcategories = url == ICD10_SYSTEM;
                    profiles.code_systems.insert(url, CodeSystem { concepts, dotted_subcategories });
                }
                _ => return Err(artifact_error(file, Unreadable::UnknownArtifact)),
            }
        }
        profiles.check_references()?;
        Ok(profiles)
    }

    /// Every canonical an artifact names is one of the artifacts.
    fn check_references(&self) -> Result<(), ArtifactError> {
        fn walk<'a>(node: &'a Node, out: &mut Vec<&'a str>, sets: &mut Vec<&'a str>) {
            out.extend(node.rule.target_profiles.iter().map(String::as_str));
            out.extend(node.rule.resource_profile.as_deref());
            sets.extend(node.rule.value_set.as_deref());
            for (_, child) in node.children.iter().chain(&node.slices) {
                walk(child, out, sets);
            }
        }
        for (url, definition) in &self.structures {
            let (mut structures, mut sets) = (Vec::new(), Vec::new());
            walk(&definition.root, &mut structures, &mut sets);
            if let Some(missing) = structures.into_iter().find(|u| !self.structures.contains_key(*u)) {
                return Err(artifact_error(url, Unreadable::UnknownProfile(missing.to_owned())));
            }
            if let Some(missing) = sets.into_iter().find(|u| !self.value_sets.contains_key(*u)) {
                return Err(artifact_error(url, Unreadable::UnknownValueSet(missing.to_owned())));
            }
        }
        for (url, includes) in &self.value_sets {
            for include in includes {
                let needs_system = include.concepts.is_empty();
                if needs_system && !self.code_systems.contains_key(&include.system) {
                    return Err(artifact_error(url, Unreadable::UnshippedCodeSystem(include.system.clone())));
                }
            }
        }
        Ok(())
    }

    /// The canonical URLs of every profile.
    pub fn structure_definitions(&self) -> impl Iterator<Item = &str> {
        self.structures.keys().map(String::as_str)
    }

    /// Whether `code` (of `system`, when known) is in the value set.
    pub fn value_set_contains(&self, value_set: &str, system: Option<&str>, code: &str) -> bool {
        let Some(includes) = self.value_sets.get(value_set) else { return false };
        includes.iter().any(|include| {
            if system.is_some_and(|s| s != include.system) {
                return false;
            }
            if !include.concepts.is_empty() {
                return include.concepts.iter().any(|c| c == code);
            }
            let Some(code_system) = self.code_systems.get(&include.system) else { return false };
            if include.below.is_empty() {
                code_system.category(code).is_some()
            } else {
                include
                    .below
                    .iter()
                    .all(|(ancestor, itself)| (*itself || code != ancestor) && code_system.is_a(code, ancestor))
            }
        })
    }

    /// Checks a resource against the profiles that apply to it: a document Bundle always against
    /// the national document profile (and each entry against the profile it declares), a Consent
    /// always against the Consent profile; any resource also against the Vaitio profiles it
    /// declares in `meta.profile`. Profiles outside Vaitio's canonical base cannot be checked
    /// offline and are left to their owners.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        let resource_type = resource.text("resourceType").unwrap_or("Resource");
        let mut run = Run { profiles: self, entries: BTreeMap::new(), issues: Vec::new() };
        let document = resource_type == "Bundle" && resource.text("type") == Some("document");
        if document {
            for entry in resource.items("entry") {
                if let (Some(url), Some(resource)) = (entry.text("fullUrl"), entry.member("resource")) {
                    run.entries.insert(url, resource);
                }
            }
        }
        // The profiles a resource is held to whether or not it declares them: what the gateway
        // files and what decides access must not depend on the submitter's choice of profile.
        let mandatory = match resource_type {
            "Bundle" if document => Some(DOCUMENT_PROFILE),
            "Consent" => Some(CONSENT_PROFILE),
            _ => None,
        };
        let declared = resource.member("meta").map(|m| m.items("profile")).unwrap_or(&[]);
        let mut checked_mandatory = false;
        let root = Path::Root(resource_type);
        for (index, url) in declared.iter().enumerate() {
            let Some(url) = url.as_str().filter(|u| u.starts_with(CANONICAL_BASE)) else { continue };
            checked_mandatory |= Some(url) == mandatory;
            let meta = root.key("meta");
            let profile = meta.key("profile");
            run.resource(url, resource, &root, Some(&profile.index(index)));
        }
        if let Some(url) = mandatory.filter(|_| !checked_mandatory) {
            run.resource(url, resource, &root, None);
        }
        run.issues
    }
}

fn structure_definition(value: &Value) -> Result<StructureDefinition, Unreadable> {
    let resource_type = value.text("type").ok_or("no type")?.to_owned();
    let mut root = Node::default();
    let elements = value.get("differential").map(|d| d.items("element")).unwrap_or(&[]);
    for element in elements {
        let id = element.text("id").ok_or("an element without id")?;
        let mut segments = id.split('.');
        if segments.next() != Some(resource_type.as_str()) {
            return Err(Unreadable::ElementOnOtherType { id: id.to_owned(), resource_type });
        }
        let mut node = &mut root;
        for segment in segments {
            let (name, slice) = match segment.split_once(':') {
                Some((name, slice)) => (name, Some(slice)),
                None => (segment, None),
            };
            node = child(&mut node.children, name);
            if let Some(slice) = slice {
                node = child(&mut node.slices, slice);
            }
        }
        node.rule = rule_of(element).map_err(Unreadable::at(id))?;
        if let Some(slicing) = element.get("slicing") {
            node.slicing = Some(slicing_of(slicing).map_err(Unreadable::at(id))?);
        }
    }
    Ok(StructureDefinition { resource_type, root })
}

fn child<'a>(nodes: &'a mut Vec<(String, Node)>, name: &str) -> &'a mut Node {
    let index = match nodes.iter().position(|(n, _)| n == name) {
        Some(index) => index,
        None => {
            nodes.push((name.to_owned(), Node::default()));
            nodes.len() - 1
        }
    };
    &mut nodes[index].1
}

/// The element keys the validator interprets; anything else that constrains is refused at load.
const DESCRIPTIVE_KEYS: &[&str] =
    &["id", "path", "sliceName", "short", "definition", "comment", "requirements", "alias", "mustSupport", "slicing"];

fn rule_of(element: &Value) -> Result<Rule, Unreadable> {
    let mut rule = Rule::default();
    let Some(element) = element.as_object() else { return Err("not an object".into()) };
    for (key, value) in element {
        match key.as_str() {
            "min" => rule.min = value.as_u64().ok_or("min is not a number")? as usize,
            "max" => {
                rule.max = match value.as_str().ok_or("max is not a string")? {
                    "*" => None,
                    n => Some(n.parse().map_err(|_| "max is not * or a number")?),
                }
            }
            key if key.starts_with("fixed") => rule.fixed = Some(value.clone()),
            key if key.starts_with("pattern") => rule.pattern = Some(value.clone()),
            "binding" => match value.text("strength") {
                Some("required") => {
                    rule.value_set = Some(value.text("valueSet").ok_or("a binding without valueSet")?.to_owned())
                }
                // Weaker bindings guide rather than constrain.
                Some("extensible" | "preferred" | "example") => {}
                _ => return Err("a binding without strength".into()),
            },
            "type" => {
                for kind in value.as_array().ok_or("type is not an array")? {
                    rule.types.push(kind.text("code").ok_or("a type without code")?.to_owned());
                    for target in kind.items("targetProfile") {
                        rule.target_profiles.push(target.as_str().ok_or("targetProfile")?.to_owned());
                    }
                    if let Some(profile) = kind.items("profile").first() {
                        rule.resource_profile = Some(profile.as_str().ok_or("profile")?.to_owned());
                    }
                }
            }
            key if DESCRIPTIVE_KEYS.contains(&key) => {}
            other => return Err(Unreadable::NotInterpreted(other.to_owned())),
        }
    }
    Ok(rule)
}

fn slicing_of(slicing: &Value) -> Result<Slicing, Unreadable> {
    let mut discriminators = Vec::new();
    for discriminator in slicing.items("discriminator") {
        let kind = match discriminator.text("type") {
            Some("value") => Discriminator::Value,
            Some("pattern") => Discriminator::Pattern,
            Some("type") => Discriminator::Type,
            Some("profile") => Discriminator::Profile,
            other => return Err(Unreadable::Discriminator(other.map(str::to_owned))),
        };
        discriminators.push((kind, discriminator.text("path").ok_or("a discriminator without path")?.to_owned()));
    }
    if discriminators.is_empty() {
        return Err("slicing without a discriminator".into());
    }
    Ok(Slicing { discriminators, closed: slicing.text("rules") == Some("closed") })
}

fn include_of(include: &Value) -> Result<Include, Unreadable> {
    let system = include.text("system").ok_or("an include without system")?.to_owned();
    let concepts = include.items("concept").iter().filter_map(|c| c.text("code")).map(str::to_owned).collect();
    let mut below = Vec::new();
    for filter in include.items("filter") {
        match (filter.text("property"), filter.text("op"), filter.text("value")) {
            (Some("concept"), Some("is-a"), Some(value)) => below.push((value.to_owned(), true)),
            (Some("concept"), Some("descendent-of"), Some(value)) => below.push((value.to_owned(), false)),
            _ => return Err(Unreadable::Filter),
        }
    }
    Ok(Include { system, concepts, below })
}

fn flatten_concepts(concepts: &[Value], parent: Option<&str>, out: &mut HashMap<String, Option<String>>) {
    for concept in concepts {
        if let Some(code) = concept.text("code") {
            out.insert(code.to_owned(), parent.map(str::to_owned));
            flatten_concepts(concept.items("concept"), Some(code), out);
        }
    }
}

impl CodeSystem {
    /// The listed concept `code` stands for: itself, or for an ICD-10 subcategory its category.
    fn category<'a>(&self, code: &'a str) -> Option<&'a str> {
        if self.concepts.contains_key(code) {
            return Some(code);
        }
        let (category, sub) = code.split_once('.')?;
        let subcategory = self.dotted_subcategories
            && (1..=2).contains(&sub.len())
            && sub.bytes().all(|b| b.is_ascii_digit())
            && self.concepts.contains_key(category);
        subcategory.then_some(category)
    }

    fn is_a(&self, code: &str, ancestor: &str) -> bool {
        let mut current = self.category(code).map(str::to_owned);
        while let Some(code) = current {
            if code == ancestor {
                return true;
            }
            current = self.concepts.get(&code).cloned().flatten();
        }
        false
    }
}

/// One validation: the document's entries by `fullUrl`, and the issues found.
struct Run<'a> {
    profiles: &'a Profiles,
    /// Ordered by comparison: hashing each `urn:uuid:` with SipHash cost more.
    entries: BTreeMap<&'a str, &'a Value>,
    issues: Vec<Issue>,
}

impl<'a> Run<'a> {
    fn issue(&mut self, code: IssueCode, message: String, at: &Path<'_>) {
        self.issues.push(Issue::new(code, message).at(at.to_string()));
    }

    /// `resource` (at `path`) against the profile `url`; `declared_at` is where the resource
    /// names the profile, for an unknown one.
    fn resource(&mut self, url: &str, resource: &'a Value, path: &Path<'_>, declared_at: Option<&Path<'_>>) {
        let profiles = self.profiles;
        let Some(definition) = profiles.structures.get(url) else {
            // The URL is the client's text: named by its place, not echoed.
            let message = "not a profile this gateway publishes".to_owned();
            match declared_at {
                Some(at) => self.issue(IssueCode::NotSupported, message, at),
                None => self.issue(IssueCode::NotSupported, message, &path.key("meta").key("profile")),
            }
            return;
        };
        let actual = resource.text("resourceType").unwrap_or("");
        if actual != definition.resource_type {
            self.issue(IssueCode::Invalid, format!("the profile {url} is for {}", definition.resource_type), path);
            return;
        }
        if let Some(object) = resource.as_object() {
            self.children(&definition.root, object, path);
        }
    }

    fn children(&mut self, node: &Node, object: &'a Map<String, Value>, path: &Path<'_>) {
        for (name, child) in &node.children {
            let (key, value) = match name.strip_suffix("[x]") {
                Some(stem) => {
                    let found = object.iter().find(|(key, _)| {
                        key.strip_prefix(stem).is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                    });
                    if let Some((key, _)) = found {
                        let kind = &key[stem.len()..];
                        if !child.rule.types.is_empty()
                            && !child.rule.types.iter().any(|t| t.eq_ignore_ascii_case(kind))
                        {
                            self.issue(
                                IssueCode::Value,
                                format!("{stem}[x] must be of type {}", child.rule.types.join(" or ")),
                                &path.key(key),
                            );
                        }
                    }
                    (found.map_or(stem, |(k, _)| k.as_str()), found.map(|(_, v)| v))
                }
                None => (name.as_str(), object.member(name)),
            };
            let at = path.key(key);
            match value {
                Some(Value::Array(items)) => {
                    let items: Vec<(Path<'_>, &'a Value)> =
                        items.iter().enumerate().map(|(i, item)| (at.index(i), item)).collect();
                    self.items(child, &items, &at);
                }
                Some(Value::Null) | None => self.items(child, &[], &at),
                Some(item) => self.items(child, &[(at, item)], &at),
            }
        }
    }

    /// `slice` names the kind of item counted, when a slice's cardinality is checked.
    fn cardinality(&mut self, rule: &Rule, count: usize, slice: Option<&str>, at: &Path<'_>) {
        let what = || match slice {
            Some(name) => format!("'{}' of kind '{name}'", at.element()),
            None => format!("'{}'", at.element()),
        };
        if count < rule.min {
            let message = format!("{} must occur at least {} time(s), found {count}", what(), rule.min);
            self.issue(IssueCode::Required, message, at);
        }
        if let Some(max) = rule.max.filter(|max| count > *max) {
            let message = format!("{} may occur at most {max} time(s), found {count}", what());
            self.issue(IssueCode::Structure, message, at);
        }
    }

    fn items(&mut self, node: &Node, items: &[(Path<'_>, &'a Value)], at: &Path<'_>) {
        let element = at.element();
        self.cardinality(&node.rule, items.len(), None, at);
        for (path, item) in items {
            self.item(node, item, path);
        }
        let Some(slicing) = &node.slicing else { return };
        let mut counts = vec![0usize; node.slices.len()];
        for (path, item) in items {
            match node.slices.iter().position(|(_, slice)| matches_slice(slicing, slice, item)) {
                Some(index) => {
                    counts[index] += 1;
                    self.item(&node.slices[index].1, item, path);
                }
                None if slicing.closed => {
                    let names: Vec<&str> = node.slices.iter().map(|(n, _)| n.as_str()).collect();
                    let message = format!("'{element}' matches none of the allowed kinds: {}", names.join(", "));
                    self.issue(IssueCode::Structure, message, path);
                }
                None => {}
            }
        }
        for ((name, slice), count) in node.slices.iter().zip(counts) {
            self.cardinality(&slice.rule, count, Some(name), at);
        }
    }

    fn item(&mut self, node: &Node, item: &'a Value, path: &Path<'_>) {
        let rule = &node.rule;
        if let Some(fixed) = &rule.fixed {
            if item != fixed {
                self.issue(IssueCode::Value, format!("must be exactly {fixed}"), path);
            }
        }
        if let Some(pattern) = &rule.pattern {
            if !matches_pattern(pattern, item) {
                self.issue(IssueCode::Value, format!("must match the pattern {pattern}"), path);
            }
        }
        if let Some(value_set) = &rule.value_set {
            if !self.in_value_set(value_set, item) {
                self.issue(IssueCode::CodeInvalid, format!("the code is not in the value set {value_set}"), path);
            }
        }
        if !rule.target_profiles.is_empty() && !self.entries.is_empty() {
            self.reference(&rule.target_profiles, item, path);
        }
        if let Some(profile) = &rule.resource_profile {
            self.resource(profile, item, path, None);
        }
        if let Some(object) = item.as_object() {
            self.children(node, object, path);
        }
    }

    fn in_value_set(&self, value_set: &str, item: &Value) -> bool {
        let coding = |coding: &Value| {
            coding.text("code").is_some_and(|code| {
                self.profiles.value_set_contains(value_set, Some(coding.text("system").unwrap_or("")), code)
            })
        };
        match item {
            Value::String(code) => self.profiles.value_set_contains(value_set, None, code),
            Value::Object(object) if object.member("coding").is_some() => item.items("coding").iter().any(coding),
            Value::Object(_) => coding(item),
            _ => false,
        }
    }

    /// A reference inside a document must resolve to one of its entries, of a target profile.
    fn reference(&mut self, targets: &[String], item: &Value, path: &Path<'_>) {
        let at = path.key("reference");
        let Some(reference) = item.text("reference") else {
            self.issue(IssueCode::Required, "the reference must name an entry of the document".into(), &at);
            return;
        };
        let Some(resource) = self.entries.get(reference) else {
            self.issue(IssueCode::Invalid, "the reference does not resolve inside the document".into(), &at);
            return;
        };
        let declared = resource.member("meta").map(|m| m.items("profile")).unwrap_or(&[]);
        if !targets.iter().any(|target| declared.iter().any(|d| d.as_str() == Some(target))) {
            let names: Vec<&str> = targets.iter().map(|t| t.rsplit('/').next().unwrap_or(t)).collect();
            self.issue(IssueCode::Invalid, format!("the reference must point to a {}", names.join(" or ")), &at);
        }
    }
}

/// Whether the instance holds at least what the pattern holds.
fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(pattern), Value::Object(value)) => {
            pattern.iter().all(|(key, p)| value.member(key).is_some_and(|v| matches_pattern(p, v)))
        }
        (Value::Array(pattern), Value::Array(values)) => {
            pattern.iter().all(|p| values.iter().any(|v| matches_pattern(p, v)))
        }
        (pattern, value) => pattern == value,
    }
}

/// The value at a dotted path below `value` (objects only; the first item of an array).
fn descend<'v>(mut value: &'v Value, path: &str) -> Option<&'v Value> {
    for key in path.split('.').filter(|k| *k != "$this") {
        value = value.member(key)?;
        if let Value::Array(items) = value {
            value = items.first()?;
        }
    }
    Some(value)
}

/// The rule a slice sets at a dotted path below it.
fn slice_rule<'n>(mut node: &'n Node, path: &str) -> &'n Rule {
    for key in path.split('.').filter(|k| *k != "$this") {
        match node.children.iter().find(|(name, _)| name == key) {
            Some((_, child)) => node = child,
            None => return &EMPTY_RULE,
        }
    }
    &node.rule
}

static EMPTY_RULE: Rule = Rule {
    min: 0,
    max: None,
    fixed: None,
    pattern: None,
    value_set: None,
    types: Vec::new(),
    target_profiles: Vec::new(),
    resource_profile: None,
};

fn matches_slice(slicing: &Slicing, slice: &Node, item: &Value) -> bool {
    slicing.discriminators.iter().all(|(kind, path)| {
        let rule = slice_rule(slice, path);
        let actual = descend(item, path);
        match kind {
            Discriminator::Value | Discriminator::Pattern => match (&rule.fixed, &rule.pattern, actual) {
                (Some(fixed), _, Some(actual)) => fixed == actual,
                (None, Some(pattern), Some(actual)) => matches_pattern(pattern, actual),
                _ => false,
            },
            Discriminator::Type => {
                rule.types.first().is_some_and(|t| actual.and_then(|a| a.text("resourceType")) == Some(t))
            }
            Discriminator::Profile => rule.resource_profile.as_deref().is_some_and(|profile| {
                actual
                    .and_then(|a| a.member("meta"))
                    .is_some_and(|meta| meta.items("profile").iter().any(|p| p.as_str() == Some(profile)))
            }),
        }
    })
}
