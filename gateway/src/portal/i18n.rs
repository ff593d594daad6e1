//! The portal's languages: Finnish, Swedish and English. Every text a page shows is a [`Text`],
//! written once here in all three; dates and times are shown in Finland's time, the way each
//! language writes them, and numbers with each language's grouping.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Fi,
    Sv,
    En,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Fi, Lang::Sv, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fi => "fi",
            Lang::Sv => "sv",
            Lang::En => "en",
        }
    }

    /// The language's name in itself, for the switch.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Fi => "Suomi",
            Lang::Sv => "Svenska",
            Lang::En => "English",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|lang| lang.code() == code)
    }

    /// The first of the three that `Accept-Language` names, by its order of preference (`q`);
    /// Finnish when it names none of them.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok())).unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(lang) = Lang::parse(primary) {
                if best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::Fi, |(_, lang)| lang)
    }

    pub fn t(self, text: Text) -> &'static str {
        let (fi, sv, en) = text.all();
        match self {
            Lang::Fi => fi,
            Lang::Sv => sv,
            Lang::En => en,
        }
    }

    /// A text with its `{}` filled in order.
    pub fn fill(self, text: Text, values: &[&str]) -> String {
        let mut out = String::new();
        let mut values = values.iter();
        let mut parts = self.t(text).split("{}");
        if let Some(first) = parts.next() {
            out.push_str(first);
        }
        for part in parts {
            out.push_str(values.next().copied().unwrap_or(""));
            out.push_str(part);
        }
        out
    }

    /// A whole number, grouped by thousands as the language writes it.
    pub fn number(self, n: usize) -> String {
        let digits = n.to_string();
        let separator = match self {
            Lang::Fi | Lang::Sv => '\u{a0}',
            Lang::En => ',',
        };
        let mut out = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(separator);
            }
            out.push(digit);
        }
        out
    }

    /// A date and time (epoch milliseconds) in Finland's time.
    pub fn date_time(self, millis: i64) -> String {
        let Some(local) = helsinki(millis) else { return String::new() };
        match self {
            Lang::Fi => local.format("%-d.%-m.%Y klo %H.%M").to_string(),
            Lang::Sv => local.format("%-d.%-m.%Y kl. %H.%M").to_string(),
            Lang::En => local.format("%-d %b %Y, %H:%M").to_string(),
        }
    }

    /// A FHIR date or dateTime as the language writes a date (the date part only).
    pub fn date(self, fhir: &str) -> String {
        let Some(date) = fhir.get(..10).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
            return fhir.to_owned();
        };
        match self {
            Lang::Fi | Lang::Sv => date.format("%-d.%-m.%Y").to_string(),
            Lang::En => date.format("%-d %b %Y").to_string(),
        }
    }
}

/// Finland's time: UTC+2, and UTC+3 from 01:00 UTC on the last Sunday of March until 01:00 UTC
/// on the last Sunday of October (the EU's rule, in force since 1996).
fn helsinki(millis: i64) -> Option<chrono::NaiveDateTime> {
    let utc = DateTime::<Utc>::from_timestamp_millis(millis)?.naive_utc();
    let last_sunday = |month: u32| -> Option<chrono::NaiveDateTime> {
        let end = NaiveDate::from_ymd_opt(utc.year(), month, 31)?;
        let back = end.weekday().num_days_from_sunday();
        let sunday = end - Duration::days(i64::from(back));
        debug_assert_eq!(sunday.weekday(), Weekday::Sun);
        sunday.and_hms_opt(1, 0, 0)
    };
    let summer = match (last_sunday(3), last_sunday(10)) {
        (Some(start), Some(end)) => utc >= start && utc < end,
        _ => false,
    };
    Some(utc + Duration::hours(if summer { 3 } else { 2 }))
}

macro_rules! texts {
    ($( $name:ident => $fi:literal, $sv:literal, $en:literal; )+) => {
        /// Every text of the portal.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Text { $( $name ),+ }

        impl Text {
            /// Finnish, Swedish, English.
            fn all(self) -> (&'static str, &'static str, &'static str) {
                match self { $( Text::$name => ($fi, $sv, $en) ),+ }
            }
        }
    };
}

texts! {
    Portal => "Omat terapiatiedot", "Mina terapiuppgifter", "My therapy records";
    SkipToContent => "Siirry sisältöön", "Gå till innehållet", "Skip to content";
    DevBanner => "Kehitystila: tämä kirjautuminen ei ole oikeille potilaille.", "Utvecklingsläge: denna inloggning är inte för riktiga patienter.", "Development mode: this sign-in is not for real patients.";
    MainNavigation => "Päävalikko", "Huvudmeny", "Main menu";
    NavDocuments => "Omat asiakirjat", "Mina dokument", "My documents";
    NavAccess => "Kuka on katsonut tietojani", "Vem har sett mina uppgifter", "Who has seen my data";
    NavRestrictions => "Omat rajoitukset", "Mina begränsningar", "My restrictions";
    Language => "Kieli", "Språk", "Language";
    SignOut => "Kirjaudu ulos", "Logga ut", "Sign out";
    SignInTitle => "Kirjaudu sisään", "Logga in", "Sign in";
    SignInIntro => "Näet asiakirjasi, jokaisen pääsyn tietoihisi ja voit rajata, kuka niitä näkee.", "Du ser dina dokument, varje åtkomst till dina uppgifter och kan begränsa vem som ser dem.", "See your documents, every access to your data, and choose who may see it.";
    SignInOidc => "Kirjaudu tunnistautumalla", "Logga in med identifiering", "Sign in with strong identification";
    HetuLabel => "Henkilötunnus", "Personbeteckning", "Personal identity code";
    HetuHint => "Esimerkiksi 131052-308T", "Till exempel 131052-308T", "For example 131052-308T";
    SignInDev => "Kirjaudu (kehitys)", "Logga in (utveckling)", "Sign in (development)";
    SignInFailed => "Kirjautuminen epäonnistui. Yritä uudelleen.", "Inloggningen misslyckades. Försök igen.", "Signing in failed. Please try again.";
    SignedOut => "Olet kirjautunut ulos.", "Du har loggat ut.", "You have signed out.";
    NoSignIn => "Kirjautumista ei ole määritetty tähän palveluun.", "Inloggning är inte konfigurerad för denna tjänst.", "No sign-in is configured for this service.";
    DocumentsTitle => "Omat asiakirjat", "Mina dokument", "My documents";
    DocumentsEmpty => "Sinusta ei ole tallennettu asiakirjoja.", "Inga dokument om dig har sparats.", "No documents about you are stored.";
    DocumentsCaption => "Asiakirjat, uusin ensin", "Dokument, nyaste först", "Documents, newest first";
    ColDate => "Päivä", "Datum", "Date";
    ColOrganisation => "Organisaatio", "Organisation", "Organisation";
    ColServiceEvent => "Palvelutapahtuma", "Vårdhändelse", "Service event";
    ColType => "Asiakirja", "Dokument", "Document";
    ColAuthor => "Kirjoittaja", "Författare", "Author";
    ColRestricted => "Rajoitettu", "Begränsad", "Restricted";
    RestrictedYes => "Rajoituksesi koskee tätä", "Din begränsning gäller", "Your restriction applies";
    RestrictedNo => "Ei", "Nej", "No";
    Open => "Avaa", "Öppna", "Open";
    Previous => "Edellinen sivu", "Föregående sida", "Previous page";
    Next => "Seuraava sivu", "Nästa sida", "Next page";
    PageOf => "Sivu {} / {}, yhteensä {}", "Sida {} av {}, totalt {}", "Page {} of {}, {} in all";
    PageNumber => "Sivu {}", "Sida {}", "Page {}";
    Pages => "Sivut", "Sidor", "Pages";
    Note => "Muistiinpano", "Anteckning", "Note";
    Diagnoses => "Diagnoosit", "Diagnoser", "Diagnoses";
    Primary => "päädiagnoosi", "huvuddiagnos", "primary";
    Assessments => "Arvioinnit", "Bedömningar", "Assessments";
    Risk => "Riskiarvio", "Riskbedömning", "Risk";
    Plan => "Suunnitelma", "Plan", "Plan";
    None_ => "Ei merkintöjä.", "Inga anteckningar.", "Nothing recorded.";
    BackToDocuments => "Takaisin asiakirjoihin", "Tillbaka till dokumenten", "Back to my documents";
    AccessTitle => "Kuka on katsonut tietojani", "Vem har sett mina uppgifter", "Who has seen my data";
    AccessIntro => "Jokainen pääsy tietoihisi kirjataan. Uudet tapahtumat näkyvät tässä heti.", "Varje åtkomst till dina uppgifter loggas. Nya händelser visas här direkt.", "Every access to your data is logged. New entries appear here as they happen.";
    AccessEmpty => "Kukaan ei ole vielä käsitellyt tietojasi.", "Ingen har ännu behandlat dina uppgifter.", "Nobody has processed your data yet.";
    AccessCaption => "Pääsyt tietoihisi, uusin ensin", "Åtkomster till dina uppgifter, nyaste först", "Accesses to your data, newest first";
    ColWhen => "Milloin", "När", "When";
    ColWho => "Kuka", "Vem", "Who";
    ColRole => "Rooli", "Roll", "Role";
    ColPurpose => "Syy", "Syfte", "Purpose";
    ColWhat => "Mitä tapahtui", "Vad hände", "What happened";
    BreakTheGlass => "Hätäkäyttö", "Nödåtkomst", "Emergency access";
    StatedReason => "Ilmoitettu syy: {}", "Angivet skäl: {}", "Stated reason: {}";
    Released => "Tietoja luovutettiin", "Uppgifter lämnades ut", "Data released";
    WithheldByYou => "Rajoituksesi esti luovutuksen", "Din begränsning hindrade utlämnandet", "Withheld by your restriction";
    WithheldByRule => "Terapiamuistiinpanojen sääntö esti luovutuksen", "Regeln för terapianteckningar hindrade utlämnandet", "Withheld by the therapy-note rule";
    WithheldNotTheirs => "Ei luovutettu: tiedot eivät kuulu pyytäjälle", "Lämnades inte ut: uppgifterna hör inte till den som frågade", "Withheld: not theirs to receive";
    NothingFound => "Ei löytynyt tietoja", "Inga uppgifter hittades", "Nothing found";
    Written => "Tietoja tallennettiin", "Uppgifter sparades", "Data recorded";
    ChoiceChanged => "Rajoitus muuttui", "Begränsningen ändrades", "Restriction changed";
    Refused => "Pääsy evättiin", "Åtkomst nekades", "Access refused";
    Unusual => "Poikkeava käyttö havaittiin", "Ovanlig användning upptäcktes", "Unusual access detected";
    You => "Sinä (portaalissa)", "Du (i portalen)", "You (in the portal)";
    AnotherPatient => "Toinen potilas", "En annan patient", "Another patient";
    Auditor => "Tarkastaja, {}", "Granskare, {}", "Auditor, {}";
    Administrator => "Ylläpitäjä, {}", "Administratör, {}", "Administrator, {}";
    Operator => "Palvelun ylläpito", "Tjänstens drift", "Service operations";
    Unknown => "Tuntematon", "Okänd", "Unknown";
    Terhikki => "Terhikki-numero {}", "Terhikki-nummer {}", "Terhikki number {}";
    Filter => "Rajaa", "Filtrera", "Filter";
    FilterOrganisation => "Organisaatio", "Organisation", "Organisation";
    AllOrganisations => "Kaikki organisaatiot", "Alla organisationer", "All organisations";
    HideMine => "Piilota omat käyntini portaalissa", "Dölj mina egna besök i portalen", "Hide my own visits to the portal";
    FilterFrom => "Alkaen", "Från", "From";
    FilterTo => "Asti", "Till", "Until";
    PurposeTreat => "Hoito", "Vård", "Treatment";
    PurposeEmergency => "Kiireellinen hoito", "Akut vård", "Emergency treatment";
    PurposeBtg => "Hätäkäyttö", "Nödåtkomst", "Break the glass";
    PurposeOwn => "Oma pyyntösi", "Din egen begäran", "Your own request";
    PurposeCompliance => "Valvonta", "Tillsyn", "Compliance review";
    PurposeAdmin => "Ylläpito", "Drift", "System administration";
    RolePsychotherapist => "psykoterapeutti", "psykoterapeut", "psychotherapist";
    RolePsychologist => "psykologi", "psykolog", "psychologist";
    RolePsychiatrist => "psykiatri", "psykiater", "psychiatrist";
    RolePhysician => "lääkäri", "läkare", "physician";
    RoleNurse => "sairaanhoitaja", "sjuksköterska", "nurse";
    RestrictionsTitle => "Omat rajoitukset", "Mina begränsningar", "My restrictions";
    RestrictionsIntro => "Päätä, kuka saa nähdä tietojasi. Näet ennen tallennusta, mitä kukin näkisi.", "Bestäm vem som får se dina uppgifter. Före sparandet ser du vad var och en skulle se.", "Decide who may see your data. Before saving, you see what each would receive.";
    RestrictionsNone => "Sinulla ei ole voimassa olevia rajoituksia.", "Du har inga gällande begränsningar.", "You have no restrictions in force.";
    RestrictionsCurrent => "Voimassa olevat rajoitukset", "Gällande begränsningar", "Restrictions in force";
    NewRestriction => "Uusi rajoitus", "Ny begränsning", "New restriction";
    NoData => "Sinusta ei ole vielä tietoja, joita rajoittaa.", "Det finns ännu inga uppgifter om dig att begränsa.", "There is no data about you to restrict yet.";
    KindLabel => "Mitä haluat tehdä?", "Vad vill du göra?", "What do you want to do?";
    KindOrganisation => "Estä organisaatio", "Neka en organisation", "Deny an organisation";
    KindServiceEvent => "Estä palvelutapahtuma", "Neka en vårdhändelse", "Deny a service event";
    KindRole => "Estä ammattiryhmä", "Neka en yrkesgrupp", "Deny a professional role";
    KindEveryone => "Estä kaikki", "Neka alla", "Deny everyone";
    KindPermit => "Salli nimetty ammattilainen", "Tillåt en namngiven yrkesperson", "Permit a named professional";
    KindEmergency => "Kiellä hätäkäyttö", "Neka nödåtkomst", "Opt out of emergency access";
    OrganisationLabel => "Organisaatio", "Organisation", "Organisation";
    OrganisationOidLabel => "tai organisaation OID", "eller organisationens OID", "or the organisation's OID";
    OrganisationOidHint => "Esimerkiksi 1.2.246.10.12345678.10.1", "Till exempel 1.2.246.10.12345678.10.1", "For example 1.2.246.10.12345678.10.1";
    ServiceEventLabel => "Palvelutapahtuma", "Vårdhändelse", "Service event";
    RoleLabel => "Ammattiryhmä", "Yrkesgrupp", "Professional role";
    PractitionerLabel => "Ammattilaisen Terhikki-numero", "Yrkespersonens Terhikki-nummer", "The professional's Terhikki number";
    ValidFrom => "Voimassa alkaen (valinnainen)", "Gäller från (valfritt)", "In force from (optional)";
    ValidUntil => "Voimassa asti (valinnainen)", "Gäller till (valfritt)", "In force until (optional)";
    Choose => "Valitse", "Välj", "Choose";
    Preview => "Esikatsele", "Förhandsgranska", "Preview";
    Save => "Tallenna", "Spara", "Save";
    Cancel => "Peruuta", "Avbryt", "Cancel";
    Withdraw => "Peru rajoitus", "Återkalla begränsningen", "Withdraw";
    ConfirmWithdraw => "Vahvista peruminen", "Bekräfta återkallelsen", "Confirm withdrawal";
    PreviewTitle => "Esikatselu: mitä kukin näkisi", "Förhandsgranskning: vad var och en skulle se", "Preview: what each would receive";
    PreviewIntro => "Mitään ei ole vielä tallennettu. Vertaa tilannetta ilman muutosta ja muutoksen kanssa.", "Inget har sparats ännu. Jämför läget utan ändringen och med den.", "Nothing is saved yet. Compare what each would receive without the change and with it.";
    TheChange => "Muutos", "Ändringen", "The change";
    AudienceGp => "Lääkäri organisaatiossa {}", "Läkare vid {}", "A GP at {}";
    AudienceOtherClinic => "Muu klinikka", "En annan klinik", "Another clinic";
    AudienceTherapist => "Oma terapeuttisi", "Din egen terapeut", "Your own therapist";
    AudienceEmergency => "Päivystävä lääkäri (hätäkäyttö)", "Jourhavande läkare (nödåtkomst)", "An emergency physician";
    GpOrganisation => "Lääkärin organisaatio esikatselussa", "Läkarens organisation i förhandsgranskningen", "The GP's organisation in the preview";
    Without => "Ilman muutosta", "Utan ändringen", "Without the change";
    With => "Muutoksen kanssa", "Med ändringen", "With the change";
    DocumentsCount => "{} asiakirjaa", "{} dokument", "{} documents";
    ResourcesCount => "{} tietoa yhteensä", "{} uppgifter totalt", "{} items in all";
    NothingVisible => "Ei mitään", "Ingenting", "Nothing";
    Saved => "Rajoitus tallennettiin.", "Begränsningen sparades.", "The restriction was saved.";
    Withdrawn => "Rajoitus peruttiin.", "Begränsningen återkallades.", "The restriction was withdrawn.";
    DenyOrganisation => "Kukaan organisaatiossa {} ei näe tietojani", "Ingen vid {} ser mina uppgifter", "Nobody at {} sees my data";
    DenyServiceEvent => "Kukaan ei näe palvelutapahtuman {} tietoja", "Ingen ser uppgifterna i vårdhändelsen {}", "Nobody sees the data of service event {}";
    DenyRole => "Kukaan ammattiryhmästä {} ei näe tietojani", "Ingen {} ser mina uppgifter", "No {} sees my data";
    DenyEveryone => "Kukaan muu ei näe tietojani", "Ingen annan ser mina uppgifter", "Nobody else sees my data";
    DenyPractitioner => "Ammattilainen {} ei näe tietojani", "Yrkespersonen {} ser inte mina uppgifter", "Professional {} does not see my data";
    PermitPractitioner => "Ammattilainen {} saa nähdä terapiamuistiinpanoni", "Yrkespersonen {} får se mina terapianteckningar", "Professional {} may read my therapy notes";
    DenyEmergency => "Tietojani ei avata hätäkäytössä", "Mina uppgifter öppnas inte vid nödåtkomst", "My data is not opened in emergencies";
    Between => "{} – {}", "{} – {}", "{} – {}";
    FromDate => "alkaen {}", "från {}", "from {}";
    UntilDate => "{} asti", "till {}", "until {}";
    OtherChoice => "Muu rajoitus", "Annan begränsning", "Another restriction";
    ErrorTitle => "Virhe", "Fel", "Error";
    NotFoundTitle => "Sivua ei löytynyt", "Sidan hittades inte", "Page not found";
    NotFoundText => "Hakemaasi sivua tai asiakirjaa ei ole.", "Sidan eller dokumentet du sökte finns inte.", "The page or document you asked for does not exist.";
    FormExpired => "Lomake vanheni tai se ei tullut tältä sivustolta. Mitään ei tallennettu.", "Formuläret har gått ut eller kom inte från denna webbplats. Inget sparades.", "The form has expired or did not come from this site. Nothing was saved.";
    BadForm => "Lomakkeen tiedot olivat virheelliset: {}. Mitään ei tallennettu.", "Formulärets uppgifter var felaktiga: {}. Inget sparades.", "The form was not valid: {}. Nothing was saved.";
    BadHetu => "Henkilötunnus ei ole kelvollinen.", "Personbeteckningen är inte giltig.", "The personal identity code is not valid.";
    Unavailable => "Palvelu ei juuri nyt vastaa. Yritä hetken kuluttua uudelleen.", "Tjänsten svarar inte just nu. Försök igen om en stund.", "The service is not answering right now. Please try again in a moment.";
    Failure => "Jotain meni vikaan. Mitään ei menetetty; yritä uudelleen.", "Något gick fel. Inget gick förlorat; försök igen.", "Something went wrong. Nothing was lost; please try again.";
    SessionEnded => "Istuntosi päättyi. Kirjaudu uudelleen.", "Din session har avslutats. Logga in igen.", "Your session has ended. Please sign in again.";
    BackToStart => "Etusivulle", "Till startsidan", "Back to the start";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_preferred_of_the_three() {
        assert_eq!(Lang::from_accept_language("sv-FI,sv;q=0.9,en;q=0.8"), Lang::Sv);
        assert_eq!(Lang::from_accept_language("de, en;q=0.5, fi;q=0.7"), Lang::Fi);
        assert_eq!(Lang::from_accept_language("en-GB"), Lang::En);
        assert_eq!(Lang::from_accept_language("de"), Lang::Fi);
        assert_eq!(Lang::from_accept_language(""), Lang::Fi);
    }

    #[test]
    fn times_are_finnish_summer_and_winter_time() {
        // 2026-07-01T12:00Z is 15.00 in Helsinki; 2026-12-01T12:00Z is 14.00.
        assert_eq!(Lang::Fi.date_time(1_782_907_200_000), "1.7.2026 klo 15.00");
        assert_eq!(Lang::En.date_time(1_796_126_400_000), "1 Dec 2026, 14:00");
        // The switch: 2026-03-29 is the last Sunday of March.
        assert_eq!(Lang::Sv.date_time(1_774_745_940_000), "29.3.2026 kl. 02.59");
        assert_eq!(Lang::Sv.date_time(1_774_746_000_000), "29.3.2026 kl. 04.00");
    }

    #[test]
    fn numbers_and_fills() {
        assert_eq!(Lang::En.number(1_234_567), "1,234,567");
        assert_eq!(Lang::Fi.number(2000), "2\u{a0}000");
        assert_eq!(Lang::Fi.number(999), "999");
        assert_eq!(Lang::En.fill(Text::PageOf, &["1", "3", "45"]), "Page 1 of 3, 45 in all");
        assert_eq!(Lang::Fi.date("2026-03-02T14:00:00+02:00"), "2.3.2026");
    }
}
