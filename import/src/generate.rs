//! `vaitio dev generate`: plausible v1 records of a clinic's past, to try an import with and to
//! measure one. Deterministic for a seed: record `i` and patient `p` are each made from a random
//! stream of their own (seeded by the seed and their number), so any record can be made alone,
//! in constant memory, and the same seed gives the same file on any machine and any day (dates
//! run up to a fixed day, not today).
//!
//! Each patient has a HETU (across the centuries' signs, with a correct check character), a
//! Finnish or Swedish name, a therapist, one to three service events over the years with weekly
//! sessions in them, diagnoses from ICD-10 chapter F at rough clinical frequencies, PHQ-9 (and
//! GAD-7 for anxiety) series that improve with noise, and notes from one line to several KiB.
//! With `--defects P`, that share of lines carries one realistic defect (`Defect`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Days, NaiveDate};
use serde_json::{json, Value};

use crate::mapping::{Mapping, GENERATED};
use crate::source::Format;
use crate::ImportError;

/// `vaitio dev generate`
#[derive(clap::Args, Clone, Debug)]
pub struct GenerateArgs {
    /// How many records (lines) to write.
    #[arg(long)]
    pub records: u64,
    /// Over how many patients.
    #[arg(long)]
    pub patients: u64,
    /// The file to write, gzip-compressed when the name ends in .gz.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// NDJSON, or CSV (with its column mapping written beside it, FILE.mapping.toml)
    /// [default: csv for a .csv file name, else ndjson].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The share of lines with a realistic defect, from 0 to 1 (0.05 is 5 %).
    #[arg(long, default_value_t = 0.0)]
    pub defects: f64,
    /// The clinic's organisation OID: the organisation of the certificate that will import.
    #[arg(long, default_value = "1.2.246.10.12345678.10.1")]
    pub org: String,
    #[arg(long, default_value = "Example Therapy Clinic")]
    pub org_name: String,
    /// How many therapists the clinic has.
    #[arg(long, default_value_t = 6)]
    pub therapists: u64,
}

/// The defects a line may carry; the importer must report each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Defect {
    /// The HETU's check character is wrong.
    HetuCheck,
    /// The session is dated before its service event starts.
    SessionOutsideEvent,
    /// A diagnosis code outside chapter F.
    UnknownCode,
    /// The note is missing.
    MissingField,
    /// The line is cut short: not JSON.
    BrokenJson,
}

impl Defect {
    const ALL: [Defect; 5] =
        [Defect::HetuCheck, Defect::SessionOutsideEvent, Defect::UnknownCode, Defect::MissingField, Defect::BrokenJson];
}

/// The day the generated past runs up to (sessions end before it).
const UNTIL: (i32, u32, u32) = (2026, 11, 1);

/// SplitMix64: small, fast and fixed, so a seed means the same records for good (a library's
/// generator may change its stream between versions).
struct Random(u64);

impl Random {
    fn new(seed: u64, stream: u64, index: u64) -> Random {
        let mut random =
            Random(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        random.next();
        random
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0 ≤ n < bound.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An item by weight.
    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut at = self.below(u64::from(total)) as u32;
        for (item, weight) in items {
            if at < *weight {
                return item;
            }
            at -= weight;
        }
        &items[0].0
    }
}

const FINNISH_FEMALE: [&str; 16] = [
    "Aino", "Helmi", "Sofia", "Aada", "Eevi", "Emma", "Venla", "Elina", "Johanna", "Kaisa", "Liisa", "Marjatta",
    "Minna", "Sari", "Tuula", "Anneli",
];
const FINNISH_MALE: [&str; 16] = [
    "Juhani", "Mikko", "Matti", "Antero", "Jari", "Timo", "Onni", "Eino", "Väinö", "Leevi", "Kari", "Pekka", "Ville",
    "Tapani", "Olavi", "Heikki",
];
const FINNISH_FAMILY: [&str; 16] = [
    "Korhonen",
    "Virtanen",
    "Mäkinen",
    "Nieminen",
    "Mäkelä",
    "Hämäläinen",
    "Laine",
    "Heikkinen",
    "Koskinen",
    "Järvinen",
    "Lehtonen",
    "Lehtinen",
    "Saarinen",
    "Salminen",
    "Heinonen",
    "Niemi",
];
const SWEDISH_FEMALE: [&str; 8] = ["Ebba", "Linnea", "Astrid", "Karin", "Ingrid", "Maja", "Saga", "Stina"];
const SWEDISH_MALE: [&str; 8] = ["Anders", "Johan", "Erik", "Mats", "Nils", "Henrik", "Viktor", "Axel"];
const SWEDISH_FAMILY: [&str; 8] =
    ["Lindqvist", "Sjöberg", "Holmström", "Nyström", "Åberg", "Lindholm", "Grönroos", "Forsström"];

/// ICD-10 chapter F diagnoses, weighted roughly as they come to outpatient psychotherapy.
const DIAGNOSES: [(&str, u32); 14] = [
    ("F32.1", 22),
    ("F33.1", 14),
    ("F41.1", 14),
    ("F32.0", 8),
    ("F43.1", 8),
    ("F41.0", 6),
    ("F40.1", 6),
    ("F43.2", 6),
    ("F60.3", 4),
    ("F42.2", 3),
    ("F50.2", 3),
    ("F31.3", 2),
    ("F90.0", 2),
    ("F10.2", 2),
];

const OPENINGS: [&str; 8] = [
    "Mood lower this week; sleep has improved.",
    "Arrived on time and engaged well in the session.",
    "Reports more worry about work and finances.",
    "Described a difficult weekend with family.",
    "Energy somewhat better; has resumed short walks.",
    "Tearful at the start, settled as the session went on.",
    "Reports fewer panic episodes since the last session.",
    "Sleep remains fragmented; wakes early most nights.",
];
const WORK: [&str; 10] = [
    "Worked on behavioural activation and planned three small activities.",
    "Explored the link between thoughts, feelings and behaviour in a recent situation.",
    "Practised a grounding exercise and diaphragmatic breathing.",
    "Reviewed the thought record from last week and identified catastrophising.",
    "Discussed boundaries in the relationship with the partner.",
    "Continued graded exposure; the next step was agreed together.",
    "Reflected on early experiences and how they shape current expectations.",
    "Identified early warning signs and ways to respond to them.",
    "Problem-solving around returning to work part time.",
    "Psychoeducation about the cycle of avoidance and anxiety.",
];
const PLANS: [&str; 6] = [
    "Continue weekly sessions; repeat PHQ-9 in four weeks.",
    "Keep the activity diary and bring it next time.",
    "Continue exposure tasks between sessions.",
    "Review the safety plan at the next session.",
    "Move to sessions every other week if the improvement holds.",
    "Liaise with the GP about sleep, with the patient's agreement.",
];

/// What is fixed for a patient across their records.
struct Patient {
    hetu: String,
    birth: NaiveDate,
    female: bool,
    given: Vec<String>,
    family: String,
    therapist: u64,
    diagnoses: Vec<&'static str>,
    anxiety: bool,
    modality: &'static str,
    setting: &'static str,
    /// The first session's day, and the service events' sizes in sessions.
    first_session: NaiveDate,
    episodes: u64,
    per_episode: u64,
    gap_days: u64,
    phq_start: i64,
}

const CHECK_CHARS: &[u8; 31] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";

fn hetu(birth: NaiveDate, sign: char, individual: u32) -> String {
    let (day, month, year2) = (birth.day(), birth.month(), birth.year().rem_euclid(100) as u32);
    let number = day * 10_000_000 + month * 100_000 + year2 * 1_000 + individual;
    format!("{day:02}{month:02}{year2:02}{sign}{individual:03}{}", CHECK_CHARS[(number % 31) as usize] as char)
}

/// Makes the records of one configuration.
pub struct Generator {
    args: GenerateArgs,
    sessions_per_patient: u64,
    until: NaiveDate,
}

impl Generator {
    pub fn new(args: GenerateArgs) -> Result<Generator, ImportError> {
        if args.patients == 0 || args.records == 0 {
            return Err(ImportError::Usage("--records and --patients must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&args.defects) {
            return Err(ImportError::Usage("--defects is a share from 0 to 1 (0.05 is 5 %)".into()));
        }
        let sessions_per_patient = args.records.div_ceil(args.patients);
        let until = NaiveDate::from_ymd_opt(UNTIL.0, UNTIL.1, UNTIL.2).unwrap_or_default();
        Ok(Generator { args, sessions_per_patient, until })
    }

    fn patient(&self, p: u64) -> Patient {
        let mut random = Random::new(self.args.seed, 1, p);
        let female = random.chance(0.68);
        // Mostly adults; some adolescents (the 2000s' signs) and a few born before 1900.
        let (year, signs): (i64, &[(char, u32)]) = match random.below(1000) {
            0..=1 => (random.range(1898, 1899), &[('+', 1)]),
            2..=159 => (random.range(2000, 2011), &[('A', 30), ('B', 1)]),
            _ => (random.range(1936, 1999), &[('-', 40), ('Y', 1), ('X', 1)]),
        };
        let sign = *random.weighted(signs);
        let birth = NaiveDate::from_yo_opt(year as i32, random.range(1, 365) as u32).unwrap_or_default();
        // An odd individual number is a man's, an even one a woman's.
        let individual = (random.range(1, 449) * 2 + i64::from(!female)) as u32;
        let swedish = random.chance(0.06);
        let (first_names, families): (&[&str], &[&str]) = match (swedish, female) {
            (false, true) => (&FINNISH_FEMALE, &FINNISH_FAMILY),
            (false, false) => (&FINNISH_MALE, &FINNISH_FAMILY),
            (true, true) => (&SWEDISH_FEMALE, &SWEDISH_FAMILY),
            (true, false) => (&SWEDISH_MALE, &SWEDISH_FAMILY),
        };
        let mut given = vec![random.pick(first_names).to_string()];
        if random.chance(0.6) {
            given.push(random.pick(first_names).to_string());
        }
        let family = random.pick(families).to_string();
        let mut diagnoses = vec![*random.weighted(&DIAGNOSES)];
        if random.chance(0.3) {
            let second = *random.weighted(&DIAGNOSES);
            if second != diagnoses[0] {
                diagnoses.push(second);
            }
        }
        let anxiety = diagnoses.iter().any(|d| d.starts_with("F41") || d.starts_with("F40"));
        let modality = *random.weighted(&[("individual", 80), ("group", 8), ("couple", 7), ("family", 5)]);
        let setting = *random.weighted(&[("in_person", 70), ("video", 25), ("phone", 5)]);
        let episodes = (1 + random.below(3)).min(self.sessions_per_patient);
        let per_episode = self.sessions_per_patient.div_ceil(episodes);
        let gap_days = random.range(60, 400) as u64;
        let span = self.sessions_per_patient * 7 + (episodes - 1) * gap_days;
        let first_session = self.until - Days::new(span + random.range(7, 3 * 365) as u64);
        Patient {
            hetu: hetu(birth, sign, individual),
            birth,
            female,
            given,
            family,
            therapist: random.below(self.args.therapists.max(1)),
            diagnoses,
            anxiety,
            modality,
            setting,
            first_session,
            episodes,
            per_episode,
            gap_days,
            phq_start: random.range(12, 23),
        }
    }

    /// Record `i` (from 0) as its NDJSON line, and the defect it carries if any.
    pub fn line(&self, i: u64) -> (String, Option<Defect>) {
        let (record, defect) = self.record(i);
        let mut line = record.to_string();
        if defect == Some(Defect::BrokenJson) {
            let cut = line.len() / 2;
            let cut = (0..=cut).rev().find(|&at| line.is_char_boundary(at)).unwrap_or(0);
            line.truncate(cut);
        }
        (line, defect)
    }

    /// Record `i` as a CSV row in `mapping`'s columns; a broken record is a row cut short.
    pub fn row(&self, i: u64, mapping: &Mapping) -> (Vec<String>, Option<Defect>) {
        let (record, defect) = self.record(i);
        let mut row = mapping.row(&record);
        if defect == Some(Defect::BrokenJson) {
            row.truncate(row.len() / 2);
        }
        (row, defect)
    }

    /// Record `i` (from 0), and the defect it carries if any (a broken one is broken when it is
    /// written out).
    pub fn record(&self, i: u64) -> (Value, Option<Defect>) {
        let p = i % self.args.patients;
        let k = i / self.args.patients;
        let patient = self.patient(p);
        let mut random = Random::new(self.args.seed, 2, i);
        let episode = (k / patient.per_episode).min(patient.episodes - 1);
        let first_of_episode = episode * patient.per_episode;
        let last_of_episode = ((episode + 1) * patient.per_episode).min(self.sessions_per_patient) - 1;
        let day_of = |session: u64| patient.first_session + Days::new(session * 7 + episode * patient.gap_days);
        let day = day_of(k);
        let event_start = day_of(first_of_episode) - Days::new(random.range(0, 14) as u64);
        let finished = episode + 1 < patient.episodes;
        let event_end = finished.then(|| day_of(last_of_episode) + Days::new(3));
        // Finnish summer time, near enough: April to October.
        let offset = if (4..=10).contains(&day.month()) { "+03:00" } else { "+02:00" };
        let start = format!("{day}T{:02}:{:02}:00{offset}", random.range(8, 17), *random.pick(&[0, 15, 30, 45]));
        let kind = if k == first_of_episode {
            "intake"
        } else if finished && k == last_of_episode {
            "closing"
        } else {
            "progress"
        };
        let minutes = match patient.modality {
            "group" => 90,
            "individual" => *random.pick(&[45, 45, 60]),
            _ => 60,
        };
        let mut assessments = Vec::new();
        if (k - first_of_episode).is_multiple_of(4) {
            let progress = (k - first_of_episode) as i64;
            let phq = (patient.phq_start - progress / 2 + random.range(-2, 2)).clamp(0, 27);
            assessments.push(json!({"instrument": "PHQ-9", "score": phq, "date": day.to_string()}));
            if patient.anxiety {
                let gad = (patient.phq_start * 3 / 4 - progress / 2 + random.range(-2, 2)).clamp(0, 21);
                assessments.push(json!({"instrument": "GAD-7", "score": gad, "date": day.to_string()}));
            }
        }
        let diagnoses: Vec<Value> =
            patient.diagnoses.iter().enumerate().map(|(n, code)| json!({"icd10": code, "primary": n == 0})).collect();
        let therapist = self.therapist(patient.therapist);
        let mut record = json!({
            "schema": "vaitio.psychotherapy-record/v1",
            "record_id": format!("GEN{}-{:08}", self.args.seed, i + 1),
            "organization": {"oid": self.args.org, "name": self.args.org_name},
            "patient": {
                "hetu": patient.hetu, "given": patient.given, "family": patient.family,
                "birth_date": patient.birth.to_string(), "gender": if patient.female { "female" } else { "male" },
            },
            "therapist": therapist,
            "service_event": {
                "oid": format!("{}.77.{}.{}", self.args.org, p + 1, episode + 1),
                "start": event_start.to_string(),
                "end": event_end.map(|end| end.to_string()),
            },
            "session": {"start": start, "minutes": minutes, "modality": patient.modality, "setting": patient.setting},
            "diagnoses": diagnoses,
            "assessments": assessments,
            "note": {"kind": kind, "text": note(&mut random)},
            "risk": {"suicide": random.weighted(&[("none", 70), ("low", 22), ("moderate", 6), ("high", 2)])},
        });
        if random.chance(0.8) {
            record["plan"] = json!(random.pick(&PLANS));
        }
        let defect = random.chance(self.args.defects).then(|| *random.pick(&Defect::ALL));
        match defect {
            Some(Defect::HetuCheck) => {
                let good = patient.hetu.as_bytes()[10];
                let bad = CHECK_CHARS.iter().find(|&&c| c != good).copied().unwrap_or(b'0');
                let mut wrong = patient.hetu.clone();
                wrong.replace_range(10..11, &(bad as char).to_string());
                record["patient"]["hetu"] = json!(wrong);
            }
            Some(Defect::SessionOutsideEvent) => {
                record["service_event"]["start"] = json!((day + Days::new(10)).to_string());
                record["service_event"]["end"] = Value::Null;
            }
            Some(Defect::UnknownCode) => record["diagnoses"][0]["icd10"] = json!("Z73.0"),
            Some(Defect::MissingField) => {
                if let Some(object) = record.as_object_mut() {
                    object.remove("note");
                }
            }
            Some(Defect::BrokenJson) | None => {}
        }
        (record, defect)
    }

    fn therapist(&self, t: u64) -> Value {
        let mut random = Random::new(self.args.seed, 3, t);
        let female = random.chance(0.75);
        let given = if female { random.pick(&FINNISH_FEMALE) } else { random.pick(&FINNISH_MALE) };
        json!({
            "terhikki": format!("{:011}", 10_012_345_600u64 + t),
            "given": [given],
            "family": random.pick(&FINNISH_FAMILY),
            "profession": random.weighted(&[("psychotherapist", 6), ("psychologist", 3), ("psychiatric nurse", 1)]),
        })
    }
}

/// A note from one line to several KiB.
fn note(random: &mut Random) -> String {
    let sentences = match random.below(100) {
        0..=29 => random.range(1, 2),
        30..=79 => random.range(3, 10),
        80..=94 => random.range(10, 40),
        _ => random.range(40, 120),
    };
    let mut text = String::from(*random.pick(&OPENINGS[..]));
    for _ in 1..sentences {
        text.push(' ');
        text.push_str(random.pick::<&str>(&WORK));
    }
    text
}

/// What `generate` wrote.
#[derive(Debug, Default)]
pub struct Generated {
    pub records: u64,
    pub defects: u64,
    /// The file's size.
    pub bytes: u64,
}

impl Generated {
    fn count(&mut self, defect: Option<Defect>) {
        self.records += 1;
        self.defects += u64::from(defect.is_some());
    }
}

/// Writes the file.
pub fn generate(args: &GenerateArgs) -> Result<Generated, ImportError> {
    let generator = Generator::new(args.clone())?;
    let out = &args.out;
    let file = File::create(out).map_err(|e| ImportError::file(out, e))?;
    let mut writer: Box<dyn Write> = if out.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::write::GzEncoder::new(BufWriter::new(file), flate2::Compression::fast()))
    } else {
        Box::new(BufWriter::new(file))
    };
    let mut generated = Generated::default();
    match args.format.unwrap_or_else(|| Format::of(out)) {
        Format::Ndjson => {
            for i in 0..args.records {
                let (line, defect) = generator.line(i);
                writer.write_all(line.as_bytes()).map_err(|e| ImportError::file(out, e))?;
                writer.write_all(b"\n").map_err(|e| ImportError::file(out, e))?;
                generated.count(defect);
            }
        }
        Format::Csv => {
            let mapping = Mapping::parse(GENERATED).map_err(ImportError::Usage)?;
            let mut path = out.as_os_str().to_owned();
            path.push(".mapping.toml");
            std::fs::write(&path, GENERATED).map_err(|e| ImportError::file(Path::new(&path), e))?;
            // A row cut short (a broken record) is written as it is, so the reader finds it.
            let mut csv = csv::WriterBuilder::new().flexible(true).from_writer(&mut writer);
            csv.write_record(mapping.columns()).map_err(|e| ImportError::file(out, e))?;
            for i in 0..args.records {
                let (row, defect) = generator.row(i, &mapping);
                csv.write_record(&row).map_err(|e| ImportError::file(out, e))?;
                generated.count(defect);
            }
            csv.flush().map_err(|e| ImportError::file(out, e))?;
        }
    }
    writer.flush().map_err(|e| ImportError::file(out, e))?;
    drop(writer);
    generated.bytes = std::fs::metadata(out).map_err(|e| ImportError::file(out, e))?.len();
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fhir_profiles::record::{parse_record, RecordLimits};

    use super::*;

    fn args(records: u64, patients: u64, defects: f64) -> GenerateArgs {
        GenerateArgs {
            records,
            patients,
            out: PathBuf::new(),
            seed: 7,
            defects,
            org: "1.2.246.10.12345678.10.1".into(),
            org_name: "Example Therapy Clinic".into(),
            therapists: 4,
            format: None,
        }
    }

    fn limits() -> RecordLimits {
        RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: 65_536 }
    }

    #[test]
    fn every_record_without_a_defect_passes_the_contract_and_the_same_seed_makes_the_same_lines() {
        let generator = Generator::new(args(3_000, 400, 0.0)).unwrap();
        let mut signs = HashMap::new();
        let mut longest = 0;
        for i in 0..3_000 {
            let (line, defect) = generator.line(i);
            assert_eq!(defect, None);
            let checked = parse_record(line.as_bytes(), &limits())
                .unwrap_or_else(|e| panic!("record {i} is refused: {e:?}\n{line}"));
            *signs.entry(checked.record.patient.hetu.as_bytes()[6]).or_insert(0) += 1;
            longest = longest.max(checked.record.note.text.len());
        }
        for sign in [b'-', b'A'] {
            assert!(signs.contains_key(&sign), "the century sign {} appears: {signs:?}", sign as char);
        }
        assert!(longest > 2048, "some notes run to several KiB: {longest}");
        let again = Generator::new(args(3_000, 400, 0.0)).unwrap();
        assert_eq!(generator.line(1234), again.line(1234));
    }

    #[test]
    fn every_defect_is_refused_by_the_contract() {
        let generator = Generator::new(args(2_000, 100, 0.2)).unwrap();
        let mut seen = HashMap::new();
        for i in 0..2_000 {
            let (line, defect) = generator.line(i);
            if let Some(defect) = defect {
                *seen.entry(defect).or_insert(0) += 1;
                assert!(parse_record(line.as_bytes(), &limits()).is_err(), "{defect:?} passes: {line}");
            }
        }
        assert_eq!(seen.len(), Defect::ALL.len(), "{seen:?}");
        let share = seen.values().sum::<u32>() as f64 / 2_000.0;
        assert!((0.15..0.25).contains(&share), "{share}");
    }
}
