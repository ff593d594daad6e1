use serde::Deserialize;

/// The deployment's choices where the design leaves one. [`Policy::default`] is the design's
/// default; a deployment that changes a knob does so in its configuration file, and an unknown
/// knob there is an error rather than a silent no-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Whether break-the-glass (`ETREAT`/`BTG` with a stated reason) also opens psychotherapy
    /// notes (`PSYTHPN`, confidentiality `V`). Default `false`: notes stay with their author and
    /// the practitioners the patient named, even in an emergency.
    pub notes_open_to_break_the_glass: bool,
    /// Whether a professional acting for treatment (`TREAT`) receives a patient's data other
    /// than notes without a patient permit naming them. Default `true`, as in Kanta: the patient
    /// restricts by denial. With `false`, only the author, a practitioner the patient permitted,
    /// and break-the-glass receive it.
    pub treating_professionals_see_non_note_data: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { notes_open_to_break_the_glass: false, treating_professionals_see_non_note_data: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_knob_keeps_its_default_and_an_unknown_one_is_refused() {
        let policy: Policy = serde_json::from_str(r#"{"notes_open_to_break_the_glass": true}"#).unwrap();
        assert!(policy.notes_open_to_break_the_glass && policy.treating_professionals_see_non_note_data);
        assert_eq!(serde_json::from_str::<Policy>("{}").unwrap(), Policy::default());
        assert!(serde_json::from_str::<Policy>(r#"{"notes_open_to_everyone": true}"#).is_err());
    }
}
