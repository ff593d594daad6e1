//! The portal's pages as HTML (maud escapes every value it writes, so a note holding markup
//! shows as text). No inline script or style anywhere: the Content-Security-Policy forbids
//! them, and the one stylesheet and script are files. Every page has one `h1`, its `lang`, a
//! link past the navigation, labelled controls, and works without its script.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::portal::choices::{Choice, Restriction};
use crate::portal::i18n::{Lang, Text};
use crate::portal::records::{Document, Summary};

/// Which part of the portal a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    SignIn,
    Documents,
    Access,
    Restrictions,
    Error,
}

/// What every page needs: its language, the mode's banner, the session's CSRF token when
/// signed in, and where it is (for the language switch's links).
pub struct Page<'a> {
    pub lang: Lang,
    pub development: bool,
    pub csrf: Option<&'a str>,
    pub section: Section,
    /// The page's own path and query, without `lang`, for the language links.
    pub here: &'a str,
}

impl Page<'_> {
    pub fn t(&self, text: Text) -> &'static str {
        self.lang.t(text)
    }

    /// The CSRF field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf.unwrap_or("")); }
    }

    fn lang_link(&self, lang: Lang) -> String {
        let separator = if self.here.contains('?') { '&' } else { '?' };
        format!("{}{separator}lang={}", self.here, lang.code())
    }
}

pub fn layout(page: &Page<'_>, title: &str, body: Markup) -> String {
    let nav = [
        (Section::Documents, "/portal/documents", Text::NavDocuments),
        (Section::Access, "/portal/access-log", Text::NavAccess),
        (Section::Restrictions, "/portal/restrictions", Text::NavRestrictions),
    ];
    html! {
        (DOCTYPE)
        html lang=(page.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Vaitio" }
                link rel="stylesheet" href="/portal/static/portal.css";
                script src="/portal/static/portal.js" defer {}
            }
            body {
                a.skip href="#main" { (page.t(Text::SkipToContent)) }
                @if page.development {
                    div.banner role="note" { (page.t(Text::DevBanner)) }
                }
                header {
                    span.brand { "Vaitio · " (page.t(Text::Portal)) }
                    @if page.csrf.is_some() {
                        nav aria-label=(page.t(Text::MainNavigation)) {
                            ul {
                                @for (section, href, text) in nav {
                                    li {
                                        @if section == page.section {
                                            a href=(href) aria-current="page" { (page.t(text)) }
                                        } @else {
                                            a href=(href) { (page.t(text)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div.tools {
                        ul.langs aria-label=(page.t(Text::Language)) {
                            @for lang in Lang::ALL {
                                li {
                                    @if lang == page.lang {
                                        a href=(page.lang_link(lang)) lang=(lang.code()) hreflang=(lang.code()) aria-current="true" { (lang.name()) }
                                    } @else {
                                        a href=(page.lang_link(lang)) lang=(lang.code()) hreflang=(lang.code()) { (lang.name()) }
                                    }
                                }
                            }
                        }
                        @if page.csrf.is_some() {
                            form method="post" action="/portal/logout" {
                                (page.csrf_field())
                                button type="submit" { (page.t(Text::SignOut)) }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

pub fn sign_in(page: &Page<'_>, notice: Option<&str>, dev_token: Option<&str>, oidc: bool) -> String {
    let body = html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        p { (page.t(Text::SignInIntro)) }
        @if oidc {
            p { a.button href="/portal/login/oidc" { (page.t(Text::SignInOidc)) } }
        }
        @if let Some(token) = dev_token {
            form method="post" action="/portal/login/dev" {
                input type="hidden" name="csrf" value=(token);
                div.field {
                    label for="hetu" { (page.t(Text::HetuLabel)) }
                    input #hetu type="text" name="hetu" autocomplete="off" spellcheck="false" maxlength="11" required aria-describedby="hetu-hint";
                    span #hetu-hint .hint { (page.t(Text::HetuHint)) }
                }
                button type="submit" { (page.t(Text::SignInDev)) }
            }
        }
        @if !oidc && dev_token.is_none() { p { (page.t(Text::NoSignIn)) } }
    };
    layout(page, page.t(Text::SignInTitle), body)
}

fn pager(page: &Page<'_>, base: &str, number: usize, pages: usize, total: usize) -> Markup {
    let link = |n: usize| {
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}page={n}")
    };
    html! {
        nav.pager aria-label=(page.t(Text::Pages)) {
            @if number > 1 { a rel="prev" href=(link(number - 1)) { (page.t(Text::Previous)) } }
            span { (page.lang.fill(Text::PageOf, &[&page.lang.number(number), &page.lang.number(pages.max(1)), &page.lang.number(total)])) }
            @if number < pages { a rel="next" href=(link(number + 1)) { (page.t(Text::Next)) } }
        }
    }
}

fn profession(page: &Page<'_>, summary: &Summary) -> String {
    match &summary.profession {
        Some(profession) => format!("{}, {}", summary.author, role_name(page.lang, profession)),
        None => summary.author.clone(),
    }
}

/// A service event for a person: its type and when it began; its OID when the document does
/// not describe it.
fn event(page: &Page<'_>, summary: &Summary) -> Markup {
    html! {
        @match (&summary.service_event_label, &summary.service_event) {
            (Some((display, start)), _) if !start.is_empty() => {
                (display) ", " (page.lang.fill(Text::FromDate, &[&page.lang.date(start)]))
            }
            (Some((display, _)), _) => (display),
            (None, Some(oid)) => span.oid { (oid) },
            (None, None) => "–",
        }
    }
}

/// A role's name in the page's language (the role codes of the professional tokens).
pub fn role_name(lang: Lang, code: &str) -> String {
    let text = match code {
        "psychotherapist" => Text::RolePsychotherapist,
        "psychologist" => Text::RolePsychologist,
        "psychiatrist" => Text::RolePsychiatrist,
        "physician" => Text::RolePhysician,
        "nurse" => Text::RoleNurse,
        other => return other.to_owned(),
    };
    lang.t(text).to_owned()
}

pub fn documents(page: &Page<'_>, total: usize, number: usize, pages: usize, summaries: &[Summary]) -> String {
    let body = html! {
        @if summaries.is_empty() {
            p { (page.t(Text::DocumentsEmpty)) }
        } @else {
            div.scroll {
                table {
                    caption { (page.t(Text::DocumentsCaption)) }
                    thead { tr {
                        th scope="col" { (page.t(Text::ColDate)) }
                        th scope="col" { (page.t(Text::ColType)) }
                        th scope="col" { (page.t(Text::ColOrganisation)) }
                        th scope="col" { (page.t(Text::ColServiceEvent)) }
                        th scope="col" { (page.t(Text::ColAuthor)) }
                        th scope="col" { (page.t(Text::ColRestricted)) }
                    } }
                    tbody {
                        @for s in summaries {
                            tr {
                                td { (page.lang.date(&s.date)) }
                                td { a href={ "/portal/documents/" (s.id) } { (s.kind) } }
                                td { (s.organisation) }
                                td { (event(page, s)) }
                                td { (profession(page, s)) }
                                td { @if s.restricted { strong { (page.t(Text::RestrictedYes)) } } @else { (page.t(Text::RestrictedNo)) } }
                            }
                        }
                    }
                }
            }
            (pager(page, "/portal/documents", number, pages, total))
        }
    };
    layout(page, page.t(Text::DocumentsTitle), body)
}

fn paragraphs(page: &Page<'_>, lines: &[String]) -> Markup {
    html! {
        @if lines.is_empty() { p.muted { (page.t(Text::None_)) } }
        @for line in lines { p { (line) } }
    }
}

pub fn document(page: &Page<'_>, document: &Document) -> String {
    let s = &document.summary;
    let title = format!("{} {}", s.kind, page.lang.date(&s.date));
    let body = html! {
        dl.facts {
            dt { (page.t(Text::ColDate)) } dd { (page.lang.date(&s.date)) }
            dt { (page.t(Text::ColOrganisation)) } dd { (s.organisation) }
            dt { (page.t(Text::ColAuthor)) } dd { (profession(page, s)) }
            dt { (page.t(Text::ColServiceEvent)) } dd { (event(page, s)) }
            dt { (page.t(Text::ColRestricted)) } dd { @if s.restricted { strong { (page.t(Text::RestrictedYes)) } } @else { (page.t(Text::RestrictedNo)) } }
        }
        section aria-labelledby="note" { h2 #note { (page.t(Text::Note)) } (paragraphs(page, &document.note)) }
        section aria-labelledby="diagnoses" {
            h2 #diagnoses { (page.t(Text::Diagnoses)) }
            @if document.diagnoses.is_empty() { p.muted { (page.t(Text::None_)) } }
            ul { @for (code, text, primary) in &document.diagnoses {
                li { strong { (code) } " " (text) @if *primary { " (" (page.t(Text::Primary)) ")" } }
            } }
        }
        section aria-labelledby="assessments" {
            h2 #assessments { (page.t(Text::Assessments)) }
            @if document.assessments.is_empty() { p.muted { (page.t(Text::None_)) } }
            ul { @for (name, value, date) in &document.assessments {
                li { (name) ": " strong { (value) } " (" (page.lang.date(date)) ")" }
            } }
        }
        section aria-labelledby="risk" { h2 #risk { (page.t(Text::Risk)) } (paragraphs(page, &document.risk)) }
        section aria-labelledby="plan" { h2 #plan { (page.t(Text::Plan)) } (paragraphs(page, &document.plan)) }
        p { a href="/portal/documents" { (page.t(Text::BackToDocuments)) } }
    };
    layout(page, &title, body)
}

pub fn error(page: &Page<'_>, title: Text, message: &str) -> String {
    let body = html! {
        p role="alert" { (message) }
        p { a href="/portal/" { (page.t(Text::BackToStart)) } }
    };
    layout(page, page.t(title), body)
}

/// A restriction in plain language; `names` turns OIDs into organisation names.
pub fn describe(lang: Lang, restriction: &Restriction, name: &dyn Fn(&str) -> String) -> String {
    let choice = match &restriction.choice {
        Choice::DenyOrganisation(oid) => lang.fill(Text::DenyOrganisation, &[&name(oid)]),
        Choice::DenyServiceEvent(oid) => lang.fill(Text::DenyServiceEvent, &[oid]),
        Choice::DenyRole(role) => lang.fill(Text::DenyRole, &[&role_name(lang, role.as_str())]),
        Choice::DenyEveryone => lang.t(Text::DenyEveryone).to_owned(),
        Choice::DenyPractitioner(number) => lang.fill(Text::DenyPractitioner, &[number]),
        Choice::PermitPractitioner(number) => lang.fill(Text::PermitPractitioner, &[number]),
        Choice::DenyEmergency => lang.t(Text::DenyEmergency).to_owned(),
        Choice::Other => lang.t(Text::OtherChoice).to_owned(),
    };
    let period = match (&restriction.from, &restriction.until) {
        (Some(from), Some(until)) => format!(" ({})", lang.fill(Text::Between, &[&lang.date(from), &lang.date(until)])),
        (Some(from), None) => format!(" ({})", lang.fill(Text::FromDate, &[&lang.date(from)])),
        (None, Some(until)) => format!(" ({})", lang.fill(Text::UntilDate, &[&lang.date(until)])),
        (None, None) => String::new(),
    };
    format!("{choice}{period}")
}

/// Marks text already escaped by maud as safe to insert (a fragment this file rendered).
pub fn trusted(fragment: String) -> PreEscaped<String> {
    PreEscaped(fragment)
}
